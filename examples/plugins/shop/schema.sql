CREATE TABLE vendors (
  id integer PRIMARY KEY,
  name text NOT NULL
);
CREATE TABLE products (
  id integer PRIMARY KEY,
  vendor_id integer NOT NULL REFERENCES vendors (id),
  name text NOT NULL,
  price numeric(10, 2)
);
