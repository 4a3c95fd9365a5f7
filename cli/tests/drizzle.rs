//! `drizzle:<db>:pull` writing a drizzle-orm module: it compiles with `tsc`
//! against drizzle-orm from npm, with the API's own table using its types
//! (an enum array column included); `pg:<db>:push` reads it back; pulled
//! again from the database it was pushed to, it is the same bytes.

mod support;

use std::process::Command;

use flow_db::testing::TestDatabase;
use support::{Flow, Folder};

const API: &str = r#"
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE SCHEMA billing;
CREATE TYPE public.zoning_class AS ENUM ('residential', 'it''s "open"', 'with space', 'class');
CREATE TYPE billing.status AS ENUM ('draft', 'paid');
CREATE TYPE billing.zoning_class AS ENUM ('b');
CREATE DOMAIN public.positive_amount AS numeric(12,2) CHECK (VALUE > 0);
CREATE TYPE public.address AS (street text, zip varchar(10));
CREATE TABLE public.parcels (id integer PRIMARY KEY, zones public.zoning_class[], status billing.status);
"#;

const FLOW: &str = r#"flow types

database flow = env("FLOW_DATABASE_URL")
database api = env("API_DATABASE_URL")

step drizzle:api:pull {
  out = "drizzle/schema.ts"
}

step pg:flow:push {
  types = "drizzle/schema.ts"
}

step drizzle:flow:pull {
  out = "drizzle/flow.ts"
}
"#;

/// The API's own code: a table of the pulled types.
const USES: &str = r#"import { integer, pgTable } from "drizzle-orm/pg-core";
import { address, billingStatus, positiveAmount, zoningClass } from "./drizzle/schema";

export const parcels = pgTable("parcels", {
  id: integer("id").primaryKey(),
  zones: zoningClass("zones").array(),
  status: billingStatus("status"),
  amount: positiveAmount("amount"),
  home: address("home"),
});

const zone: (typeof zoningClass.enumValues)[number] = "it's \"open\"";
export const first = zone;
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_pulled_module_compiles_and_pushes_back_to_the_same_bytes() {
    let folder = Folder::new("drizzle", "module");
    let flow = TestDatabase::create("drizzlef").await.expect("flow db");
    let api = TestDatabase::create("drizzlea").await.expect("api db");
    api.client()
        .await
        .expect("api")
        .batch_execute(API)
        .await
        .expect("types");
    folder.write("types.flow", FLOW);
    let run = Flow::new(["run", "types.flow", "--plain"])
        .dir(&folder.dir)
        .env("FLOW_DATABASE_URL", flow.url())
        .env("API_DATABASE_URL", api.url())
        .run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    let module = folder.read("drizzle/schema.ts");
    for wanted in [
        "import { customType, pgEnum, pgSchema } from \"drizzle-orm/pg-core\";",
        "export const billingSchema = pgSchema(\"billing\");",
        "export const zoningClass = pgEnum(\"zoning_class\", [\"residential\", \"it's \\\"open\\\"\", \"with space\", \"class\"]);",
        "export const billingStatus = billingSchema.enum(\"status\", [\"draft\", \"paid\"]);",
        "export const billingZoningClass = billingSchema.enum(\"zoning_class\", [\"b\"]);",
        "@flow domain \"public\".\"positive_amount\" AS numeric(12,2)",
    ] {
        assert!(module.contains(wanted), "{wanted}\nin\n{module}");
    }
    assert!(
        !module.contains("geometry") && !module.contains("box2d"),
        "no extension's types"
    );
    // Pushed to the flow database and pulled from there: the same bytes.
    assert_eq!(folder.read("drizzle/flow.ts"), module);

    // It compiles as written, and the API's code compiles against it.
    folder.write("uses.ts", USES);
    folder.write(
        "tsconfig.json",
        r#"{"compilerOptions": {"strict": true, "noEmit": true, "target": "es2022",
            "module": "esnext", "moduleResolution": "bundler", "skipLibCheck": true},
           "files": ["drizzle/schema.ts", "uses.ts"]}"#,
    );
    let modules = std::env::var("FLOW_NODE_MODULES").unwrap_or_else(|_| {
        format!(
            "{}/.cache/flow/npm/node_modules",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let _ = std::fs::remove_file(folder.dir.join("node_modules"));
    std::os::unix::fs::symlink(&modules, folder.dir.join("node_modules")).expect("node_modules");
    let tsc = Command::new("node")
        .arg(format!("{modules}/typescript/bin/tsc"))
        .args(["-p", "tsconfig.json"])
        .current_dir(&folder.dir)
        .output()
        .expect("node runs tsc (scripts/test installs typescript and drizzle-orm)");
    assert!(
        tsc.status.success(),
        "{}{}\n{module}",
        String::from_utf8_lossy(&tsc.stdout),
        String::from_utf8_lossy(&tsc.stderr)
    );
    // A label the API's code does not know fails to compile: the types are real.
    folder.write("uses.ts", &USES.replace("it's \\\"open\\\"", "nowhere"));
    let wrong = Command::new("node")
        .arg(format!("{modules}/typescript/bin/tsc"))
        .args(["-p", "tsconfig.json"])
        .current_dir(&folder.dir)
        .output()
        .expect("tsc");
    assert!(!wrong.status.success(), "an unknown label compiled");
}
