-- flow: after vendors.sql
INSERT INTO products (id, vendor_id, name, price)
SELECT id::integer, vendor_id::integer, name, price::numeric FROM source.products;
