//! The reference pipeline, `flows/parcels.flow`, end to end: shapefiles in a
//! SeaweedFS bucket, the flow and API databases in PostGIS.

mod support;

use support::reference::{Reference, copy_dir};
use support::{Flow, root};

/// The status of each step in a run's summary table.
fn status(output: &support::Output, step: &str) -> String {
    output
        .stdout
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(step)).then(|| words.next().unwrap_or_default().to_owned())
        })
        .unwrap_or_else(|| panic!("no `{step}` in\n{}", output.stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_pipeline_runs_end_to_end_and_then_only_what_changed() {
    let reference = Reference::new("").await;
    let first = reference.run(&[]).expect(0);
    for step in [
        "minio:download",
        "shp:convert",
        "pg:flow:configure",
        "pg:api:configure",
        "pg:flow:push",
        "pg:source:create",
        "pg:source:load",
        "pg:model:create",
        "pg:model:transform",
        "pg:target:populate",
    ] {
        assert_eq!(status(&first, step), "succeeded", "{step}");
    }
    assert_eq!(
        reference
            .one::<i64>("SELECT count(*) FROM public.parcels")
            .await,
        400
    );
    assert_eq!(
        reference
            .one::<i64>("SELECT count(*) FROM public.parcels WHERE NOT ST_IsValid(geom) OR ST_SRID(geom) <> 4326")
            .await,
        0
    );
    assert_eq!(
        reference
            .one::<Vec<String>>("SELECT enum_range(NULL::public.zoning_class)::text[]")
            .await,
        ["residential", "commercial", "industrial", "agricultural"]
    );
    // Each quadrant holds 100 lots; every seventh has a courtyard (a hole).
    assert_eq!(
        reference
            .one::<String>(
                "SELECT string_agg(class || '=' || parcels, ',' ORDER BY class) FROM public.zoning"
            )
            .await,
        "residential=100,commercial=100,industrial=100,agricultural=100"
    );
    assert_eq!(
        reference
            .one::<i64>("SELECT count(*) FROM public.parcels WHERE ST_NumInteriorRings(ST_GeometryN(geom, 1)) = 1")
            .await,
        57
    );
    assert_eq!(
        reference
            .one::<i32>(
                "SELECT ST_NumGeometries(geom) FROM public.zoning WHERE class = 'industrial'"
            )
            .await,
        2
    );
    assert_eq!(
        reference
            .one::<String>("SELECT owner || ' ' || owned_since FROM public.parcels WHERE id = 1")
            .await,
        "Meier 1991-02-02"
    );
    let area = reference
        .one::<f64>("SELECT area_m2 FROM public.parcels WHERE id = 1")
        .await;
    assert!((1_500.0..1_800.0).contains(&area), "{area}");

    // Nothing changed: every step but the download is skipped, and the
    // download transfers nothing.
    let second = reference.run(&[]).expect(0);
    assert!(
        second.stderr.contains("0 downloaded, 10 unchanged"),
        "{}",
        second.stderr
    );
    for step in [
        "shp:convert",
        "pg:source:load",
        "pg:model:transform",
        "pg:target:populate",
    ] {
        assert_eq!(status(&second, step), "skipped", "{step}");
    }

    // A new release: a column added to parcels. Only what depends on the
    // release runs again, and the API gets the column.
    let schema = std::fs::read_to_string(reference.dir.join("parcels/schema.sql")).expect("schema");
    std::fs::write(
        reference.dir.join("parcels/schema.sql"),
        schema.replace(
            "  owner text,",
            "  owner text,\n  note text DEFAULT 'none',",
        ),
    )
    .expect("release");
    let third = reference
        .run(&["--group", "seed", "--group", "populate"])
        .expect(0);
    assert_eq!(status(&third, "pg:source:load"), "skipped");
    assert_eq!(status(&third, "pg:model:create"), "succeeded");
    assert_eq!(status(&third, "pg:target:populate"), "succeeded");
    assert_eq!(
        reference
            .one::<String>("SELECT DISTINCT note FROM public.parcels")
            .await,
        "none"
    );
    assert_eq!(
        reference
            .one::<i64>(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'public\\_\\_flow\\_prev\\_%'"
            )
            .await,
        2,
        "the two previous releases are kept"
    );

    // The manual step runs when named, and writes the API's types.
    let pulled = reference.run(&["--step", "drizzle:api:pull"]).expect(0);
    assert_eq!(status(&pulled, "drizzle:api:pull"), "succeeded");
    let types = std::fs::read_to_string(reference.dir.join("parcels/types.sql")).expect("types");
    assert!(
        types.contains("CREATE TYPE \"public\".\"zoning_class\" AS ENUM ('residential', 'commercial', 'industrial', 'agricultural');"),
        "{types}"
    );
}

#[test]
fn the_reference_pipeline_runs_on_the_embedded_default() {
    // The repository's layout: the flow under `flows/`, the "bucket" folder
    // under `fixtures/`, nothing configured.
    let dir = std::env::temp_dir().join(format!("flow-reference-embedded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root().join("flows/parcels"), &dir.join("flows/parcels"));
    copy_dir(
        &root().join("fixtures/spaces/shapefiles"),
        &dir.join("fixtures/spaces/shapefiles"),
    );
    std::fs::copy(
        root().join("flows/parcels.flow"),
        dir.join("flows/parcels.flow"),
    )
    .expect("flow");
    let run = |args: &[&str]| {
        let mut all = vec!["run", "flows/parcels.flow", "--plain"];
        all.extend(args);
        Flow::new(all).dir(&dir)
    };
    let first = run(&[]).expect(0);
    assert_eq!(status(&first, "pg:target:populate"), "succeeded");
    assert!(
        first.stderr.contains("400 rows") || first.stderr.contains("404 rows"),
        "{}",
        first.stderr
    );
    let seed = run(&["--group", "seed"]).expect(0);
    assert_eq!(status(&seed, "pg:source:load"), "skipped");
    let populate = run(&["--group", "populate", "--force"]).expect(0);
    assert_eq!(status(&populate, "pg:model:transform"), "succeeded");
    assert_eq!(status(&populate, "pg:target:populate"), "succeeded");
    let diff = Flow::new(["diff", "flows/parcels.flow"])
        .dir(&dir)
        .expect(0);
    assert!(diff.stdout.contains("no schema change"), "{}", diff.stdout);
    let stopped = Flow::new(["db", "status", "flows/parcels.flow"])
        .dir(&dir)
        .run();
    assert!(stopped.stdout.starts_with("stopped"), "{}", stopped.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}
