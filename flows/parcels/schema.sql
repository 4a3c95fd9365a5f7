-- The API database's schema, release 1.0: what `pg:model:create` builds the
-- model from, and what `pg:target:populate` migrates the API database to.
-- Names carry no schema: the tables land in the model schema (and in
-- `api.public` on populate). Change this file to make a new release.
CREATE TYPE zoning_class AS ENUM ('residential', 'commercial', 'industrial', 'agricultural');

CREATE TABLE parcels (
  id integer PRIMARY KEY,
  zoning zoning_class NOT NULL,
  owner text,
  owned_since date,
  area_m2 double precision NOT NULL CHECK (area_m2 > 0),
  geom geometry(MultiPolygon, 4326) NOT NULL
);

CREATE TABLE zoning (
  class zoning_class PRIMARY KEY,
  parcels integer NOT NULL,
  area_m2 double precision NOT NULL,
  geom geometry(MultiPolygon, 4326) NOT NULL
);
