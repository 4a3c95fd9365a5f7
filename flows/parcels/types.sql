-- Custom types of database `api`, written by `drizzle:api:pull`.
-- Applied by `pg:<db>:push`; also applies as written to an empty database.

CREATE SCHEMA IF NOT EXISTS "public";

CREATE TYPE "public"."zoning_class" AS ENUM ('residential', 'commercial', 'industrial', 'agricultural');
