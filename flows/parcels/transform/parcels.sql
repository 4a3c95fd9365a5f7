-- Parcels: one row per source polygon, keyed by its parcel number. Unqualified
-- names are the model's (its schema comes first on the search path).
INSERT INTO parcels (id, zoning, owner, owned_since, area_m2, geom)
SELECT "PARCEL_ID"::integer, "ZONE"::zoning_class, "OWNER", "SINCE",
       ST_Area(geom::geography), geom
FROM source.parcels;
