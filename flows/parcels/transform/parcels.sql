-- Parcels: one row per source polygon, keyed by its parcel number.
INSERT INTO model.parcels (id, zoning, area_m2, geom)
SELECT parcel_id, zone::public.zoning_class, ST_Area(geom), geom
FROM source.parcels;
