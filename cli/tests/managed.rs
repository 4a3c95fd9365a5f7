//! flow on a managed PostgreSQL: a role that is not a superuser, cannot
//! create databases and owns only its schemas, with the extensions an
//! administrator made.

mod support;

use support::flat;
use support::reference::Reference;

/// Makes `role` (LOGIN, no SUPERUSER, CREATEDB or CREATEROLE) the owner of
/// `public` in `db`, with CREATE on the database (for its own schemas), and
/// PostGIS created by the administrator.
async fn managed(db: &flow_db::testing::TestDatabase, role: &str) {
    let admin = db.client().await.expect("client");
    admin
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS postgis;
             ALTER SCHEMA public OWNER TO {role};
             GRANT CREATE ON DATABASE {} TO {role};",
            db.name
        ))
        .await
        .expect("grants");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reference_pipeline_runs_as_a_role_that_is_not_a_superuser() {
    let reference = Reference::new("managed").await;
    let role = format!("app_{}", std::process::id());
    let password = "app-password-1";
    let admin = reference.flow.client().await.expect("client");
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role};
             CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE;"
        ))
        .await
        .expect("role");
    managed(&reference.flow, &role).await;
    managed(&reference.api, &role).await;
    let superuser: bool = admin
        .query_one(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("role")
        .get(0);
    assert!(!superuser);

    let as_role = |args: &[&str]| {
        reference
            .run(args)
            .env("FLOW_DATABASE_URL", reference.flow.url_as(&role, password))
            .env("API_DATABASE_URL", reference.api.url_as(&role, password))
    };
    as_role(&[]).expect(0);
    assert_eq!(
        reference
            .one::<i64>("SELECT count(*) FROM public.parcels")
            .await,
        400
    );
    let owner: String = reference
        .one("SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = 'parcels'")
        .await;
    assert_eq!(owner, role);
    // A second run (swap, history of runs, skip-unchanged) works the same.
    as_role(&["--force"]).expect(0);
    assert_eq!(
        reference
            .one::<i64>("SELECT count(*) FROM public.parcels")
            .await,
        400
    );

    // An extension the role may not create: the statement an administrator runs.
    let flow = std::fs::read_to_string(reference.dir.join("parcels.flow")).expect("flow");
    std::fs::write(
        reference.dir.join("parcels.flow"),
        flow.replacen(
            "extensions = [postgis]",
            "extensions = [postgis, pg_stat_statements]",
            1,
        ),
    )
    .expect("flow");
    let failed = as_role(&["--group", "configure"]).expect(1);
    let text = flat(&failed.stderr);
    assert!(text.contains("flow::pg::extension_privilege"), "{text}");
    assert!(
        text.contains("CREATE EXTENSION IF NOT EXISTS \"pg_stat_statements\" CASCADE;"),
        "{text}"
    );
    for db in [&reference.api, &reference.flow] {
        let client = db.client().await.expect("client");
        let _ = client
            .batch_execute(&format!(
                "REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}"
            ))
            .await;
    }
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
    drop(admin);
}
