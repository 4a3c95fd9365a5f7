-- Zoning areas, merged per class, with the parcels they hold. Reads
-- `parcels`, so it runs after parcels.sql.
INSERT INTO zoning (class, parcels, area_m2, geom)
SELECT z."ZONE"::zoning_class,
       (SELECT count(*) FROM parcels p WHERE p.zoning = z."ZONE"::zoning_class),
       ST_Area(ST_Union(z.geom)::geography),
       ST_Multi(ST_Union(z.geom))
FROM source.zoning z
GROUP BY z."ZONE";
