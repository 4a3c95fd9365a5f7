INSERT INTO vendors (id, name) SELECT id::integer, name FROM source.vendors;
