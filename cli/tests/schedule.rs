//! `flow schedule` against a real PostgreSQL: fires recorded once whatever
//! the number of instances, leader takeover, no overlap, missed-fire
//! policies after downtime, graceful stop, and `flow schedule list`.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flow_db::testing::TestDatabase;
use support::{Flow, Folder};

struct Project {
    /// Removed with the project.
    _folder: Folder,
    dir: PathBuf,
    db: TestDatabase,
}

impl Project {
    /// A flow whose one step runs `command` (and always runs: the file it
    /// declares is removed each time) on `schedule`.
    async fn new(name: &str, schedule: &str, command: &str) -> Self {
        let folder = Folder::new("schedule", name);
        let flow = format!(
            "flow ticks\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n\ngroups work\n\n\
             step sh:run stamp {{\n  group = work\n  command = \"sh\"\n  args = [\"-c\", \"{command}; rm -f out.txt\"]\n  writes = [\"out.txt\"]\n}}\n\n\
             schedule tick {{\n{schedule}  run = [work]\n}}\n"
        );
        folder.write("ticks.flow", &flow);
        let db = TestDatabase::create(name).await.expect("database");
        let dir = folder.dir.clone();
        Self {
            _folder: folder,
            dir,
            db,
        }
    }

    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_flow"))
            .args(["schedule", "ticks.flow", "--tick-ms", "100"])
            .current_dir(&self.dir)
            .env("FLOW_DATABASE_URL", self.db.url())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flow schedule starts")
    }

    /// (fire time in microseconds, status, run id), oldest first.
    async fn fires(&self) -> Vec<(i64, String, Option<i64>)> {
        let client = self.db.client().await.expect("connect");
        let exists: bool = client
            .query_one("SELECT to_regclass('_flow.fires') IS NOT NULL", &[])
            .await
            .expect("q")
            .get(0);
        if !exists {
            return Vec::new();
        }
        client
            .query(
                "SELECT (extract(epoch FROM fire_at) * 1000000)::bigint, status, run_id FROM _flow.fires
                 WHERE status <> 'registered' ORDER BY fire_at",
                &[],
            )
            .await
            .expect("fires")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    async fn runs(&self) -> i64 {
        let client = self.db.client().await.expect("connect");
        client
            .query_one("SELECT count(*) FROM _flow.runs", &[])
            .await
            .expect("runs")
            .get(0)
    }
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn stopped_within(mut child: Child, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use std::io::Read as _;
                let _ = stderr.read_to_string(&mut err);
            }
            assert!(status.success(), "the scheduler exits cleanly: {err}");
            return err;
        }
        assert!(
            started.elapsed() < limit,
            "the scheduler did not stop in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_fire_each_time_once_and_the_standby_takes_over() {
    let project = Project::new("twice", "  every = 2s\n", "true").await;
    let mut first = project.spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = project.spawn();
    tokio::time::sleep(Duration::from_millis(6500)).await;

    let fires = project.fires().await;
    assert!(fires.len() >= 2, "{fires:?}");
    for pair in fires.windows(2) {
        assert_eq!(
            pair[1].0 - pair[0].0,
            2_000_000,
            "one fire every 2s, none twice: {fires:?}"
        );
    }
    let succeeded = fires.iter().filter(|f| f.1 == "succeeded").count() as i64;
    assert!(succeeded >= 2, "{fires:?}");
    assert!(
        fires.iter().all(|f| f.1 == "succeeded" || f.1 == "started"),
        "{fires:?}"
    );
    let runs = project.runs().await;
    assert!(
        runs >= succeeded && runs <= succeeded + 1,
        "one run per fire: {runs} runs, {fires:?}"
    );

    // The first instance leads; once it dies, the second takes over.
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let before = project.fires().await.len();
    tokio::time::sleep(Duration::from_millis(6000)).await;
    let after = project.fires().await;
    assert!(
        after.len() >= before + 2,
        "the standby took over: {after:?}"
    );
    for pair in after.windows(2) {
        assert!(pair[1].0 > pair[0].0);
    }

    terminate(&second);
    let log = stopped_within(second, Duration::from_secs(10));
    assert!(log.contains("leading the schedules"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fire_while_the_previous_run_goes_on_is_skipped() {
    let project = Project::new("overlap", "  every = 1s\n", "sleep 2.6").await;
    let child = project.spawn();
    tokio::time::sleep(Duration::from_millis(6000)).await;
    terminate(&child);
    stopped_within(child, Duration::from_secs(15));
    let fires = project.fires().await;
    assert!(fires.iter().any(|f| f.1 == "skipped"), "{fires:?}");
    let ran: Vec<&(i64, String, Option<i64>)> = fires.iter().filter(|f| f.2.is_some()).collect();
    for pair in ran.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= 2_000_000,
            "runs never overlap: {fires:?}"
        );
    }
}

async fn downtime(policy: &str) -> (Vec<(i64, String, Option<i64>)>, i64, i64) {
    let (_, fires, down, up, _) = downtime_of(
        &format!("down{policy}"),
        &format!("  every = 1s\n  missed = {policy}\n  max_missed = 10\n"),
    )
    .await;
    (fires, down, up)
}

/// Runs the scheduler 2.5 s, stops it 4.5 s, runs it again 3.5 s: the
/// project, its fires, when it went down and came up (microseconds), and
/// what the second scheduler said.
async fn downtime_of(
    name: &str,
    schedule: &str,
) -> (Project, Vec<(i64, String, Option<i64>)>, i64, i64, String) {
    let project = Project::new(name, schedule, "true").await;
    let child = project.spawn();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    terminate(&child);
    stopped_within(child, Duration::from_secs(10));
    let down = jiff::Timestamp::now().as_microsecond();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let up = jiff::Timestamp::now().as_microsecond();
    let child = project.spawn();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    terminate(&child);
    let log = stopped_within(child, Duration::from_secs(10));
    let fires = project.fires().await;
    (project, fires, down, up, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_downtime_skip_runs_none_of_the_missed_fires() {
    let (fires, down, up) = downtime("skip").await;
    // Fires due while the scheduler was down, and found more than 2s late.
    let missed: Vec<_> = fires
        .iter()
        .filter(|f| f.0 > down && f.0 < up - 2_000_000)
        .collect();
    assert!(
        missed.len() >= 2 && missed.iter().all(|f| f.1 == "missed"),
        "{fires:?}"
    );
    assert!(
        fires.iter().any(|f| f.0 > up && f.1 == "succeeded"),
        "it fires again once up: {fires:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_downtime_latest_runs_only_the_newest_missed_fire() {
    let (fires, down, up) = downtime("latest").await;
    // Of the fires due while down, the newest may run (unless a newer one
    // came due, on time, as the scheduler started); the others are missed.
    let window: Vec<_> = fires.iter().filter(|f| f.0 > down && f.0 <= up).collect();
    assert!(window.len() >= 3, "{fires:?}");
    let ran = window.iter().filter(|f| f.1 == "succeeded").count();
    assert!(ran <= 1, "{fires:?}");
    assert!(
        window.iter().filter(|f| f.1 == "missed").count() >= 2,
        "{fires:?}"
    );
    let newest = window.last().expect("a fire");
    assert!(
        newest.1 == "succeeded" || fires.iter().any(|f| f.0 > up && f.1 == "succeeded"),
        "{fires:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_downtime_all_runs_every_missed_fire() {
    let (fires, down, up) = downtime("all").await;
    let window: Vec<_> = fires.iter().filter(|f| f.0 > down && f.0 <= up).collect();
    assert!(window.len() >= 3, "{fires:?}");
    assert!(
        window
            .iter()
            .all(|f| f.1 == "succeeded" || f.1 == "skipped" || f.1 == "started"),
        "{fires:?}"
    );
    assert!(
        window.iter().filter(|f| f.1 == "succeeded").count() >= 3,
        "{fires:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_last_and_next_fires() {
    let project = Project::new(
        "list",
        "  cron = \"0 2 * * *\"\n  timezone = \"Europe/Berlin\"\n",
        "true",
    )
    .await;
    let output = Flow::new(["schedule", "list", "ticks.flow"])
        .dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .expect(0);
    let line = output
        .stdout
        .lines()
        .find(|l| l.starts_with("ticks"))
        .expect("a line for the schedule");
    assert!(line.contains("tick"), "{line}");
    let json = Flow::new(["schedule", "list", "ticks.flow", "--json"])
        .dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .expect(0);
    let jobs: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(jobs[0]["job"], "tick");
    assert!(jobs[0]["next_fire"].is_string(), "{}", json.stdout);
    // 02:00 in Berlin is 00:00 or 01:00 UTC.
    assert!(
        line.contains(" 00:00:00") || line.contains(" 01:00:00"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn for_each_makes_one_job_per_item_each_with_its_item() {
    let project = Project::new(
        "fanout",
        "  every = 2s\n  for_each = [\"hallmark\", \"ornaments\"]\n",
        "echo $FLOW_ITEM >> items.txt",
    )
    .await;
    let child = project.spawn();
    // Stop between fires, once each job has run: the last result of each
    // is then `succeeded`.
    let client = project.db.client().await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "the jobs never both ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let quiet: Option<bool> = client
            .query_one(
                "SELECT count(DISTINCT schedule) FILTER (WHERE status = 'succeeded') = 2
                        AND count(*) FILTER (WHERE status = 'started') = 0
                 FROM _flow.fires",
                &[],
            )
            .await
            .ok()
            .map(|r| r.get(0));
        if quiet == Some(true) {
            break;
        }
    }
    terminate(&child);
    stopped_within(child, Duration::from_secs(10));
    let jobs: Vec<String> = client
        .query(
            "SELECT DISTINCT schedule FROM _flow.fires WHERE status = 'succeeded' ORDER BY 1",
            &[],
        )
        .await
        .expect("fires")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(jobs, ["tick[hallmark]", "tick[ornaments]"]);
    let items = std::fs::read_to_string(project.dir.join("items.txt")).expect("items");
    assert!(
        items.lines().any(|l| l == "hallmark") && items.lines().any(|l| l == "ornaments"),
        "{items}"
    );
    let list = Flow::new(["schedule", "list", "ticks.flow"])
        .dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .expect(0);
    assert!(
        list.stdout.contains("tick[hallmark]") && list.stdout.contains("succeeded"),
        "{}",
        list.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_downtime_all_runs_no_more_than_max_missed_late_fires() {
    // Fires every 3 s (from the epoch). The second scheduler starts 1.3 s
    // after a fire and looks at the clock about a second later (it waits
    // that long after taking the lead), so that every fire it finds due is
    // more than 2 s late: of those, `max_missed = 1` runs one.
    let project = Project::new(
        "downmax",
        "  every = 3s\n  missed = all\n  max_missed = 1\n",
        "true",
    )
    .await;
    let child = project.spawn();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    terminate(&child);
    stopped_within(child, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(7000)).await;
    let phase = jiff::Timestamp::now().as_millisecond().rem_euclid(3000);
    let wait = (1300 - phase).rem_euclid(3000);
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    let child = project.spawn();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    terminate(&child);
    let log = stopped_within(child, Duration::from_secs(10));
    let fires = project.fires().await;
    let ran_late = log
        .lines()
        .filter(|l| l.contains("runs its fire at") && l.ends_with(" late"))
        .count();
    let missed = log
        .lines()
        .filter(|l| l.contains("missed its fire at"))
        .count();
    assert_eq!(ran_late, 1, "one late fire runs, no more: {log}\n{fires:?}");
    assert!(missed >= 1, "{log}\n{fires:?}");
    assert!(
        !log.lines()
            .any(|l| l.contains("fires (") && !l.contains("late"))
            || ran_late == 1,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_leaders_fire_is_closed_and_its_commands_die_with_it() {
    let project = Project::new(
        "deadleader",
        "  every = 2s\n",
        "echo began >> began.txt; sleep 2.5; echo late >> late.txt",
    )
    .await;
    let mut first = project.spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = project.spawn();

    // The leader's command is running: kill the leader.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !project.dir.join("began.txt").exists() {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let killed = jiff::Timestamp::now().as_microsecond();
    let fires = project.fires().await;
    let (fire_at, status, _) = fires.last().expect("a fire").clone();
    assert_eq!(status, "started", "{fires:?}");

    // The dead leader's command would write `late.txt` 2.5 s after its fire;
    // the new leader's first run, at the next fire, cannot before 4.5 s.
    let check = fire_at + 3_800_000 - jiff::Timestamp::now().as_microsecond();
    tokio::time::sleep(Duration::from_micros(u64::try_from(check).unwrap_or(0))).await;
    assert!(
        !project.dir.join("late.txt").exists(),
        "the dead leader's command went on running"
    );

    let client = project.db.client().await.expect("connect");
    let row = client
        .query_one(
            "SELECT status, (extract(epoch FROM closed_at) * 1000000)::bigint FROM _flow.fires
             WHERE fire_at = timestamptz 'epoch' + $1::bigint * interval '1 microsecond'",
            &[&fire_at],
        )
        .await
        .expect("the fire");
    let (status, closed): (String, Option<i64>) = (row.get(0), row.get(1));
    assert_eq!(status, "interrupted");
    assert!(
        closed.is_some_and(|c| c > killed),
        "closed when noticed: {closed:?}"
    );

    // The new leader goes on, its runs one after another.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    terminate(&second);
    let log = stopped_within(second, Duration::from_secs(10));
    assert!(log.contains("was interrupted"), "{log}");
    let fires = project.fires().await;
    assert!(
        fires.iter().any(|f| f.0 > fire_at && f.1 == "succeeded"),
        "{fires:?}"
    );
    assert!(
        fires.iter().all(|f| f.1 != "started"),
        "no fire left started: {fires:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn for_each_over_named_lists_makes_one_job_per_combination() {
    let project = Project::new(
        "fanout2",
        "  every = 2s\n  for_each = { vendor = [\"hallmark\", \"ornaments\"], year = [\"2024\", \"2025\"] }\n",
        "echo $FLOW_VENDOR-$FLOW_YEAR >> items.txt",
    )
    .await;
    let child = project.spawn();
    let client = project.db.client().await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the jobs never all ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done: Option<i64> = client
            .query_one(
                "SELECT count(DISTINCT schedule) FROM _flow.fires WHERE status = 'succeeded'",
                &[],
            )
            .await
            .ok()
            .map(|r| r.get(0));
        if done == Some(4) {
            break;
        }
    }
    terminate(&child);
    stopped_within(child, Duration::from_secs(10));
    let jobs: Vec<String> = client
        .query(
            "SELECT DISTINCT schedule FROM _flow.fires WHERE status = 'succeeded' ORDER BY 1",
            &[],
        )
        .await
        .expect("fires")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        jobs,
        [
            "tick[hallmark,2024]",
            "tick[hallmark,2025]",
            "tick[ornaments,2024]",
            "tick[ornaments,2025]"
        ]
    );
    let items = std::fs::read_to_string(project.dir.join("items.txt")).expect("items");
    for expected in [
        "hallmark-2024",
        "hallmark-2025",
        "ornaments-2024",
        "ornaments-2025",
    ] {
        assert!(items.lines().any(|l| l == expected), "{expected}: {items}");
    }
}
