-- Custom types of the API database, written by `drizzle:api:pull`.
CREATE TYPE public.zoning_class AS ENUM ('residential', 'commercial', 'industrial', 'agricultural');
