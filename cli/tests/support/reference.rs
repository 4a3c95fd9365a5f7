//! The reference pipeline, `flows/parcels.flow`, in a folder of its own,
//! with its shapefiles in a SeaweedFS bucket and two fresh databases.

use std::path::{Path, PathBuf};

use flow_db::testing::TestDatabase;

use super::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use super::{Flow, root};

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

pub struct Reference {
    pub dir: PathBuf,
    pub flow: TestDatabase,
    pub api: TestDatabase,
    pub spaces: String,
}

impl Reference {
    /// The pipeline ready to run: `tag` keeps its bucket and databases
    /// apart from other tests'.
    pub async fn new(tag: &str) -> Self {
        let server = S3Server::shared().await;
        let bucket = server.bucket(&format!("spaces{tag}")).await;
        let town = root().join("fixtures/spaces/shapefiles/town");
        for entry in std::fs::read_dir(&town).expect("fixtures").flatten() {
            let key = format!("shapefiles/town/{}", entry.file_name().to_string_lossy());
            bucket
                .put_object(key, &std::fs::read(entry.path()).expect("read"))
                .await
                .expect("upload");
        }
        let dir = std::env::temp_dir().join(format!("flow-reference{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&root().join("flows/parcels"), &dir.join("parcels"));
        std::fs::copy(root().join("flows/parcels.flow"), dir.join("parcels.flow")).expect("flow");
        Reference {
            dir,
            flow: TestDatabase::create(&format!("referencef{tag}"))
                .await
                .expect("flow db"),
            api: TestDatabase::create(&format!("referencea{tag}"))
                .await
                .expect("api db"),
            spaces: server.url(&bucket, ""),
        }
    }

    /// The variables the pipeline reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FLOW_DATABASE_URL", self.flow.url()),
            ("API_DATABASE_URL", self.api.url()),
            ("SPACES_URL", self.spaces.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ]
    }

    pub fn run(&self, args: &[&str]) -> Flow {
        let mut all = vec!["run", "parcels.flow", "--plain"];
        all.extend(args);
        let mut flow = Flow::new(all).dir(&self.dir);
        for (name, value) in self.env() {
            flow = flow.env(name, value);
        }
        flow
    }

    pub async fn api(&self) -> flow_db::tokio_postgres::Client {
        self.api.client().await.expect("api")
    }

    /// The API database holds what the pipeline loads: the fixture's 400
    /// parcels and the 4 zoning classes.
    pub async fn assert_loaded(&self) {
        let parcels: i64 = self.one("SELECT count(*) FROM public.parcels").await;
        let zoning: i64 = self.one("SELECT count(*) FROM public.zoning").await;
        assert_eq!((parcels, zoning), (400, 4), "parcels and zoning classes");
    }

    pub async fn one<T: for<'a> flow_db::tokio_postgres::types::FromSql<'a>>(
        &self,
        sql: &str,
    ) -> T {
        self.api()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
