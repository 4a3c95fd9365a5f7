-- Zoning areas, merged per class.
INSERT INTO model.zoning (class, geom)
SELECT zone::public.zoning_class, ST_Multi(ST_Union(geom))
FROM source.zoning
GROUP BY zone;
