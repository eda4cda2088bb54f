//! The conformance matrix: every promise a load makes, checked through the `psystem` binary for every source kind
//! and every load mode that kind supports.
//!
//! Rows (one test function each, `row_<kind>_<mode>`): WHO GHO OData (append, replace, merge), files (CSV append,
//! TSV replace, Parquet merge, JSON lines append), an Open Targets release (replace, merge) and a UniProt release
//! (merge, its only mode). Every row is checked for:
//! - `--dry-run` on an empty database and on one holding a clean load: exit 0, a report naming the table, and a
//!   `pg_dump` of the database identical before and after;
//! - Ctrl+C (SIGINT) halfway: exit 3, status.yaml `paused`, then `psystem resume` with no options;
//! - `kill -9` at a random instant after the first checkpoint, then `psystem resume` (or, when the kill came
//!   before any job was recorded, the message says to run it again and a run finishes it);
//! - `psystem cancel` of a paused job (status.yaml and the ledger say `cancelled`, the next run starts over), of
//!   a job running in another process (refused, naming the job; the running load is unharmed) and of a completed
//!   job (refused: nothing to cancel, nothing changed);
//! - a failure whose cause was then fixed: the database connection killed mid-load (same data), and for the files
//!   rows a corrupted file that is then corrected;
//! - the options of the run kept by `resume` (page size, batch size, workers, unit size);
//! - after each of those, every table equals a clean load (row count and an md5 over all rows, in sorted order);
//! - status.yaml tells the truth at each step (its state agrees with the ledger's), and the database password
//!   appears in no file of the psystem home and in no output.
//!
//! A new source kind gets all of this by adding one `Row` constructor and one `matrix_row!` line.
//! Needs `PSYSTEM_TEST_DATABASE_URL` (scripts/test.sh starts a cluster).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use psystem_testkit::db::TestDb;
use psystem_testkit::mirror::MirrorServer;
use psystem_testkit::uniprot::{MirrorRelease, UniprotMirror};
use sqlx::{PgPool, Row as _};
use support::Env;

/// The password put into every database URL: it must never reach a file of the home or any output.
const PASSWORD: &str = "Matrix-s3cret-7Qx";

/// How a row's load shows that it is halfway, so that a test can stop it there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// Paged loads (GHO, files): status.yaml shows a committed page.
    Pages,
    /// Unit loads (releases): a work unit is done in `psystem.work_units`.
    Units,
}

/// A corrupt-then-correct cycle of a row's source file.
struct Corruption {
    file: PathBuf,
    good: Vec<u8>,
    bad: Vec<u8>,
}

/// One row of the matrix: a source kind in one load mode.
struct Row {
    label: &'static str,
    /// Plugin folder name and plugin.yaml text (written into each fresh home).
    plugin: String,
    plugin_yaml: String,
    /// Files to place beside plugin.yaml (name, bytes).
    plugin_files: Vec<(String, Vec<u8>)>,
    /// `run` arguments before `--db` (plugin, entry, options that shape the load).
    run_args: Vec<String>,
    /// The job key in status.yaml.
    job: String,
    /// Extra environment for psystem (e.g. the GCS endpoint); none today.
    progress: Progress,
    /// Tables the load writes, schema-qualified (`public.t`), for the report check.
    tables: Vec<String>,
    /// Holds the servers alive for the row's lifetime.
    _servers: Vec<Box<dyn std::any::Any + Send + Sync>>,
    /// Makes the source slow enough to stop halfway, and back.
    slow: Option<Arc<dyn Fn(bool) + Send + Sync>>,
    /// A corrupted source file and its correction (files rows).
    corruption: Option<Corruption>,
    /// What `psystem.work_units` or status.yaml must show after resume for the run's options to have been kept.
    options_check: OptionsCheck,
}

/// How a row proves that `resume` kept the run's options.
#[derive(Clone, Debug)]
enum OptionsCheck {
    /// status.yaml's job `page_size` equals this.
    PageSize(u64),
    /// The load's work units (their count and the largest's bytes) are those of the clean load, cut with the
    /// run's `--unit-size` (UniProt), and there are more than `min_units` of them (the default size gives one).
    UnitPlan { min_units: i64 },
    /// The load ran with this many workers: status.yaml's job records it.
    Workers(u64),
}

impl Row {
    /// A fresh psystem home with this row's plugin.
    fn env(&self) -> Env {
        let env = Env::new();
        let path = env.add_plugin(&self.plugin, &self.plugin_yaml);
        let dir = path.parent().unwrap();
        for (name, bytes) in &self.plugin_files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        env
    }

    fn args<'a>(&'a self, db: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v: Vec<&str> = vec!["run"];
        v.extend(self.run_args.iter().map(String::as_str));
        v.extend(["--db", db]);
        v.extend_from_slice(extra);
        v
    }

    fn set_slow(&self, on: bool) {
        if let Some(f) = &self.slow {
            f(on);
        }
    }
}

/// `url` with [`PASSWORD`] in its user info (the test server trusts local connections, so any password works).
fn with_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

fn text(o: &Output) -> String {
    support::text(o)
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", text(o));
}

/// The password in none of `outputs` and in no file under `home`.
fn assert_no_password(home: &Path, outputs: &[&Output]) {
    for o in outputs {
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains(PASSWORD)
                && !String::from_utf8_lossy(&o.stderr).contains(PASSWORD),
            "the password appears in an output: {}",
            text(o)
        );
    }
    fn walk(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                // The download cache holds the source's own bytes.
                if p.file_name().is_some_and(|n| n != "cache") {
                    walk(&p);
                }
            } else if let Ok(bytes) = std::fs::read(&p) {
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(PASSWORD),
                    "the password appears in {}",
                    p.display()
                );
            }
        }
    }
    walk(home);
}

/// `pg_dump` of the database (schema and data, no owners or privileges).
fn dump(url: &str) -> String {
    let out = Command::new("pg_dump")
        .args(["--no-owner", "--no-privileges", "-d", url])
        .output()
        .expect("pg_dump must be installed (postgresql-client)");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // pg_dump brackets its output with `\restrict KEY` / `\unrestrict KEY`, a random key per run.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every user table outside schema `psystem` (and the system schemas), with its row count and an md5 over its
/// rows' text in sorted order: equal for two loads of the same data. Columns whose values belong to one load
/// rather than to the data (load ids, load times) are left out.
async fn fingerprint(url: &str) -> Vec<(String, i64, String)> {
    let pool = PgPool::connect(url).await.unwrap();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('psystem', 'pg_catalog', 'information_schema') \
         ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for (schema, table) in tables {
        let cols: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
             AND column_name NOT LIKE 'psystem_load%' AND column_name NOT LIKE '%loaded_at%' ORDER BY ordinal_position",
        )
        .bind(&schema)
        .bind(&table)
        .fetch_all(&pool)
        .await
        .unwrap();
        let list = cols
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let q = format!(
            "SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) FROM \
             (SELECT ROW({list})::text AS r FROM \"{schema}\".\"{table}\") s"
        );
        let row = sqlx::query(&q).fetch_one(&pool).await.unwrap();
        out.push((format!("{schema}.{table}"), row.get(0), row.get(1)));
    }
    pool.close().await;
    out
}

/// The state status.yaml gives the job (`None` when the job or the file is missing).
fn status_state(env: &Env, job: &str) -> Option<String> {
    let text = std::fs::read_to_string(env.home.path().join("status.yaml")).ok()?;
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
    v["jobs"][job]["state"].as_str().map(str::to_string)
}

/// The state of the job's newest load in the ledger (`None` before the first).
async fn ledger_state(pool: &PgPool, job: &str) -> Option<String> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('psystem.loads') IS NOT NULL")
        .fetch_one(pool)
        .await
        .unwrap();
    if !exists {
        return None;
    }
    sqlx::query_scalar(
        "SELECT state::text FROM psystem.loads WHERE job_key = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(job)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// status.yaml and the ledger agree on the job's state, and it is `want`.
async fn assert_state(env: &Env, pool: &PgPool, job: &str, want: &str, step: &str) {
    let status = status_state(env, job);
    let ledger = ledger_state(pool, job).await;
    assert_eq!(
        status.as_deref(),
        Some(want),
        "{step}: status.yaml of {job}"
    );
    assert_eq!(ledger.as_deref(), Some(want), "{step}: ledger of {job}");
}

/// Units done in the database, 0 before the queue exists.
async fn units_done(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM psystem.work_units WHERE state = 'done'")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Starts `args` in `env` and waits until the load is halfway (a page committed or a unit done).
async fn start_halfway(row: &Row, env: &Env, pool: &PgPool, args: &[&str]) -> Child {
    let mut child = env
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let halfway = match row.progress {
            Progress::Pages => {
                let text = std::fs::read_to_string(env.home.path().join("status.yaml"))
                    .unwrap_or_default();
                text.lines()
                    .any(|l| l.trim().strip_prefix("pages: ").is_some_and(|n| n != "0"))
            }
            Progress::Units => units_done(pool).await >= 1,
        };
        if halfway {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "{}: psystem ended ({status}) before the load was halfway: {}",
                row.label,
                text(&out)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{}: not halfway within 120 s",
            row.label
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn signal(child: &Child, sig: &str) {
    let sent = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {sig}");
}

/// Starts the row's run, sends Ctrl+C (SIGINT) once it is halfway, and asserts that it paused (exit 3).
async fn pause_halfway(row: &Row, env: &Env, pool: &PgPool, url: &str) -> Output {
    row.set_slow(true);
    let child = start_halfway(row, env, pool, &row.args(url, &[])).await;
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    row.set_slow(false);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}: Ctrl+C pauses: {}",
        row.label,
        text(&out)
    );
    out
}

/// The whole matrix for one row.
async fn check_row(row: Row) {
    // The clean load every other outcome is compared with.
    let clean = TestDb::create().await;
    let clean_url = with_password(clean.url());
    let env = row.env();
    let out = env.run(&row.args(&clean_url, &[]));
    ok(&out, &format!("{}: clean load", row.label));
    let expected = fingerprint(clean.url()).await;
    assert!(
        expected.iter().any(|(_, n, _)| *n > 0),
        "{}: the clean load wrote rows: {expected:?}",
        row.label
    );
    let clean_pool = PgPool::connect(clean.url()).await.unwrap();
    assert_state(&env, &clean_pool, &row.job, "completed", "clean load").await;
    let mut outputs = vec![out];
    // A completed job has nothing to cancel: refused (exit 2), and nothing changes.
    let out = env.run(&["cancel", &row.job, "--db", &clean_url]);
    assert!(
        out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr).contains("nothing to cancel"),
        "{}: cancel of a completed job is refused: {}",
        row.label,
        text(&out)
    );
    assert_state(
        &env,
        &clean_pool,
        &row.job,
        "completed",
        "cancel of a completed job",
    )
    .await;
    assert_eq!(
        fingerprint(clean.url()).await,
        expected,
        "{}: after a refused cancel",
        row.label
    );
    outputs.push(out);

    dry_run(&row, &clean, &clean_url, &mut outputs).await;
    let clean_plan = Some(unit_plan(&clean_pool).await);
    ctrl_c_then_resume(&row, &expected, clean_plan, &mut outputs).await;
    kill_9_then_resume(&row, &expected, &mut outputs).await;
    cancel_paused(&row, &expected, &mut outputs).await;
    cancel_running(&row, &expected, &mut outputs).await;
    connection_killed_then_resume(&row, &expected, &mut outputs).await;
    if row.corruption.is_some() {
        corrected_file(&row, &expected, &mut outputs).await;
    }
    let refs: Vec<&Output> = outputs.iter().collect();
    assert_no_password(env.home.path(), &refs);
    clean_pool.close().await;
}

/// `--dry-run` on an empty database and on a loaded one: a report naming the tables, and nothing written.
async fn dry_run(row: &Row, loaded: &TestDb, loaded_url: &str, outputs: &mut Vec<Output>) {
    let empty = TestDb::create().await;
    let empty_url = with_password(empty.url());
    for (what, db, url) in [
        ("empty", &empty, empty_url.as_str()),
        ("loaded", loaded, loaded_url),
    ] {
        let env = row.env();
        let before = dump(db.url());
        let out = env.run(&row.args(url, &["--dry-run", "--json"]));
        ok(
            &out,
            &format!("{}: dry run on the {what} database", row.label),
        );
        let after = dump(db.url());
        assert!(
            before == after,
            "{}: the dry run on the {what} database changed it:\n{}",
            row.label,
            first_difference(&before, &after)
        );
        let report = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(&report).unwrap_or_else(|e| {
            panic!(
                "{}: dry-run --json is not JSON ({e}): {}",
                row.label,
                text(&out)
            )
        });
        for table in &row.tables {
            let bare = table.rsplit('.').next().unwrap();
            assert!(
                report.to_string().contains(bare),
                "{}: the dry-run report names table {table}: {report}",
                row.label
            );
        }
        outputs.push(out);
    }
}

fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}: before `{x}`, after `{y}`", i + 1);
        }
    }
    format!(
        "one dump is longer ({} vs {} lines)",
        a.lines().count(),
        b.lines().count()
    )
}

/// Ctrl+C halfway pauses (exit 3, `paused`), and `resume` with no options finishes it, with the run's options.
async fn ctrl_c_then_resume(
    row: &Row,
    expected: &[(String, i64, String)],
    clean_plan: Option<(i64, i64)>,
    outputs: &mut Vec<Output>,
) {
    let db = TestDb::create().await;
    let url = with_password(db.url());
    let pool = PgPool::connect(db.url()).await.unwrap();
    let env = row.env();
    let out = pause_halfway(row, &env, &pool, &url).await;
    assert_state(&env, &pool, &row.job, "paused", "after Ctrl+C").await;
    outputs.push(out);
    let out = env.run(&["resume", &row.job, "--db", &url]);
    ok(&out, &format!("{}: resume after Ctrl+C", row.label));
    assert_eq!(
        fingerprint(db.url()).await,
        expected,
        "{}: after Ctrl+C and resume",
        row.label
    );
    assert_state(&env, &pool, &row.job, "completed", "after resume").await;
    check_options(row, &env, &pool, clean_plan).await;
    outputs.push(out);
    pool.close().await;
}

/// The number of work units of the newest load and the bytes of the largest.
async fn unit_plan(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), coalesce(max(bytes), 0) FROM psystem.work_units \
         WHERE load_id = (SELECT max(load_id) FROM psystem.work_units)",
    )
    .fetch_one(pool)
    .await
    .unwrap_or((0, 0))
}

/// The run's options were applied by the resume; `clean_plan` is the clean load's [`unit_plan`].
async fn check_options(row: &Row, env: &Env, pool: &PgPool, clean_plan: Option<(i64, i64)>) {
    match &row.options_check {
        OptionsCheck::PageSize(n) => {
            let status = env.status();
            assert_eq!(
                status["jobs"][row.job.as_str()]["page_size"].as_u64(),
                Some(*n),
                "{}: the resumed job kept its page size: {status:?}",
                row.label
            );
        }
        OptionsCheck::Workers(n) => {
            let status = env.status();
            let job = &status["jobs"][row.job.as_str()];
            let text = serde_yaml_ng::to_string(job).unwrap();
            assert!(
                text.contains(&format!("workers: {n}")),
                "{}: the resumed job kept --workers {n}: {text}",
                row.label
            );
        }
        OptionsCheck::UnitPlan { min_units } => {
            let plan = unit_plan(pool).await;
            assert!(
                plan.0 > *min_units && Some(plan) == clean_plan,
                "{}: the resumed load kept its unit size: units (count, largest bytes) {plan:?}, a clean load's \
                 {clean_plan:?}",
                row.label
            );
        }
    }
}

/// kill -9 at a random instant after the first checkpoint, then resume: the clean table.
async fn kill_9_then_resume(
    row: &Row,
    expected: &[(String, i64, String)],
    outputs: &mut Vec<Output>,
) {
    let db = TestDb::create().await;
    let url = with_password(db.url());
    let pool = PgPool::connect(db.url()).await.unwrap();
    let env = row.env();
    row.set_slow(true);
    let mut child = start_halfway(row, &env, &pool, &row.args(&url, &[])).await;
    tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 150)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    row.set_slow(false);
    let out = env.run(&["resume", &row.job, "--db", &url]);
    ok(&out, &format!("{}: resume after kill -9", row.label));
    assert_eq!(
        fingerprint(db.url()).await,
        expected,
        "{}: after kill -9 and resume",
        row.label
    );
    assert_state(
        &env,
        &pool,
        &row.job,
        "completed",
        "after kill -9 and resume",
    )
    .await;
    outputs.push(out);
    pool.close().await;
}

/// A paused job cancelled: `cancelled` everywhere, nothing of it left in the way; the next run starts over.
async fn cancel_paused(row: &Row, expected: &[(String, i64, String)], outputs: &mut Vec<Output>) {
    let db = TestDb::create().await;
    let url = with_password(db.url());
    let pool = PgPool::connect(db.url()).await.unwrap();
    let env = row.env();
    let out = pause_halfway(row, &env, &pool, &url).await;
    outputs.push(out);
    let out = env.run(&["cancel", &row.job, "--db", &url]);
    ok(&out, &format!("{}: cancel of a paused job", row.label));
    assert_state(&env, &pool, &row.job, "cancelled", "after cancel").await;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM psystem.work_units WHERE state IN ('pending', 'running')",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or(0);
    assert_eq!(
        pending, 0,
        "{}: a cancelled load leaves no unit to claim",
        row.label
    );
    outputs.push(out);
    // The next run starts over. An append load keeps what the cancelled one committed, so the table is compared
    // only where the mode replaces or merges.
    let out = env.run(&row.args(&url, &["--restart"]));
    ok(&out, &format!("{}: run after cancel", row.label));
    if !row.label.ends_with("append") {
        assert_eq!(
            fingerprint(db.url()).await,
            expected,
            "{}: run after cancel",
            row.label
        );
    }
    assert_state(&env, &pool, &row.job, "completed", "run after cancel").await;
    outputs.push(out);
    pool.close().await;
}

/// Cancel of a job running in another process is refused, naming the job, and the running load finishes intact.
async fn cancel_running(row: &Row, expected: &[(String, i64, String)], outputs: &mut Vec<Output>) {
    let db = TestDb::create().await;
    let url = with_password(db.url());
    let pool = PgPool::connect(db.url()).await.unwrap();
    let env = row.env();
    row.set_slow(true);
    let child = start_halfway(row, &env, &pool, &row.args(&url, &[])).await;
    let out = env.run(&["cancel", &row.job, "--db", &url]);
    row.set_slow(false);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains(row.job.as_str()),
        "{}: cancel of a running job is refused, naming it: {}",
        row.label,
        text(&out)
    );
    outputs.push(out);
    let out = child.wait_with_output().unwrap();
    ok(
        &out,
        &format!("{}: the load that was not cancelled", row.label),
    );
    assert_eq!(
        fingerprint(db.url()).await,
        expected,
        "{}: load not cancelled",
        row.label
    );
    assert_state(&env, &pool, &row.job, "completed", "load not cancelled").await;
    outputs.push(out);
    pool.close().await;
}

/// The database connections of the load are terminated halfway (as a server restart would): the run fails or
/// recovers; after `resume` (same data) the table is the clean one.
async fn connection_killed_then_resume(
    row: &Row,
    expected: &[(String, i64, String)],
    outputs: &mut Vec<Output>,
) {
    let db = TestDb::create().await;
    let url = with_password(db.url());
    let pool = PgPool::connect(db.url()).await.unwrap();
    let env = row.env();
    row.set_slow(true);
    let child = start_halfway(row, &env, &pool, &row.args(&url, &[])).await;
    let name = db.url().rsplit('/').next().unwrap().to_string();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .execute(&pool)
    .await
    .unwrap();
    let out = child.wait_with_output().unwrap();
    row.set_slow(false);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "{}: a lost connection ends in success or a clear failure (exit 1): {}",
        row.label,
        text(&out)
    );
    if code == Some(1) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("resume"),
            "{}: the failure says how to resume: {}",
            row.label,
            text(&out)
        );
        assert_state(&env, &pool, &row.job, "failed", "after the lost connection").await;
        outputs.push(out);
        let out = env.run(&["resume", &row.job, "--db", &url]);
        ok(
            &out,
            &format!("{}: resume after the lost connection", row.label),
        );
        outputs.push(out);
    } else {
        outputs.push(out);
    }
    assert_eq!(
        fingerprint(db.url()).await,
        expected,
        "{}: after the lost connection",
        row.label
    );
    assert_state(
        &env,
        &pool,
        &row.job,
        "completed",
        "after the lost connection",
    )
    .await;
    pool.close().await;
}

/// A corrupted source file fails the run naming the file; once corrected, resume (or the restart it recommends)
/// gives the clean table — never committed rows twice.
async fn corrected_file(row: &Row, expected: &[(String, i64, String)], outputs: &mut Vec<Output>) {
    let c = row.corruption.as_ref().unwrap();
    let db = TestDb::create().await;
    let url = with_password(db.url());
    let pool = PgPool::connect(db.url()).await.unwrap();
    let env = row.env();
    let file = env
        .home
        .path()
        .join("plugins")
        .join(&row.plugin)
        .join(c.file.file_name().unwrap());
    std::fs::write(&file, &c.bad).unwrap();
    let out = env.run(&row.args(&url, &[]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}: a corrupted file fails: {}",
        row.label,
        text(&out)
    );
    let name = c.file.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&name),
        "{}: the failure names the file {name}: {}",
        row.label,
        text(&out)
    );
    // A file that cannot be opened fails while the load is planned, before any job exists; then neither
    // status.yaml nor the ledger may show one. Otherwise both say `failed`.
    if status_state(&env, &row.job).is_some() {
        assert_state(&env, &pool, &row.job, "failed", "after the corrupted file").await;
    } else {
        assert_eq!(
            ledger_state(&pool, &row.job).await,
            None,
            "{}: ledger without a job",
            row.label
        );
    }
    outputs.push(out);
    std::fs::write(&file, &c.good).unwrap();
    let out = env.run(&["resume", &row.job, "--db", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.code() == Some(2) && stderr.contains("nothing to resume") {
        // The failure came before any job existed: the message says to run it again.
        outputs.push(out);
        let out = env.run(&row.args(&url, &[]));
        ok(
            &out,
            &format!("{}: the run the message recommends", row.label),
        );
        outputs.push(out);
    } else if !out.status.success() {
        assert!(
            stderr.contains("--restart"),
            "{}: a resume over a changed file is refused with what to run: {}",
            row.label,
            text(&out)
        );
        outputs.push(out);
        let out = env.run(&row.args(&url, &["--restart"]));
        ok(
            &out,
            &format!("{}: the restart the message recommends", row.label),
        );
        outputs.push(out);
    } else {
        outputs.push(out);
    }
    assert_eq!(
        fingerprint(db.url()).await,
        expected,
        "{}: after the corrected file",
        row.label
    );
    assert_state(
        &env,
        &pool,
        &row.job,
        "completed",
        "after the corrected file",
    )
    .await;
    pool.close().await;
}

// ---------------------------------------------------------------------------------------------------------------
// The rows.

/// The real WSH_8 rows (165), copied `copies` times with new ids (`Id * 100 + copy`).
fn wsh8_rows(copies: usize) -> Vec<serde_json::Value> {
    let base = support::fixture_rows();
    let mut out = Vec::new();
    for c in 0..copies {
        for r in &base {
            let mut r = r.clone();
            let id = r["Id"].as_i64().unwrap() * 100 + c as i64;
            r["Id"] = id.into();
            out.push(r);
        }
    }
    out
}

/// The columns of the file rows.
const FILE_COLUMNS: &[&str] = &[
    "Id",
    "IndicatorCode",
    "SpatialDimType",
    "SpatialDim",
    "TimeDim",
    "Value",
    "NumericValue",
    "Low",
    "High",
];

fn delimited(rows: &[serde_json::Value], sep: char) -> Vec<u8> {
    let mut out = FILE_COLUMNS.join(&sep.to_string());
    out.push('\n');
    for r in rows {
        let cells: Vec<String> = FILE_COLUMNS
            .iter()
            .map(|c| match &r[*c] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        out.push_str(&cells.join(&sep.to_string()));
        out.push('\n');
    }
    out.into_bytes()
}

fn jsonl(rows: &[serde_json::Value]) -> Vec<u8> {
    let mut out = String::new();
    for r in rows {
        let obj: serde_json::Map<String, serde_json::Value> = FILE_COLUMNS
            .iter()
            .map(|c| (c.to_string(), r[*c].clone()))
            .collect();
        out.push_str(&serde_json::Value::Object(obj).to_string());
        out.push('\n');
    }
    out.into_bytes()
}

fn parquet(rows: &[serde_json::Value]) -> Vec<u8> {
    use arrow_schema::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("Id", DataType::Int64, false),
        Field::new("IndicatorCode", DataType::Utf8, true),
        Field::new("SpatialDimType", DataType::Utf8, true),
        Field::new("SpatialDim", DataType::Utf8, true),
        Field::new("TimeDim", DataType::Int64, true),
        Field::new("Value", DataType::Utf8, true),
        Field::new("NumericValue", DataType::Float64, true),
        Field::new("Low", DataType::Float64, true),
        Field::new("High", DataType::Float64, true),
    ]));
    let body = jsonl(rows);
    let mut reader = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(500)
        .build(std::io::Cursor::new(body))
        .unwrap();
    let mut buf = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(500))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, Some(props)).unwrap();
    for b in reader.by_ref() {
        w.write(&b.unwrap()).unwrap();
    }
    w.close().unwrap();
    buf
}

/// A GHO row: WSH_8 from a local OData server, 10 rows a page, slowed down while a test stops it.
fn gho(label: &'static str, mode: &str) -> Row {
    let (server, dir) = support::gho_server(&["WSH_8"]);
    let server = Arc::new(server);
    let yaml = support::wsh8_plugin(&server.api_url(), "gho_matrix", mode);
    let slow_server = server.clone();
    Row {
        label,
        plugin: "wsh8test".into(),
        plugin_yaml: yaml,
        plugin_files: Vec::new(),
        run_args: vec!["wsh8test".into(), "--page-size".into(), "10".into()],
        job: "wsh8test/WSH_8".into(),
        progress: Progress::Pages,
        tables: vec!["public.gho_matrix".into()],
        _servers: vec![Box::new(server), Box::new(dir)],
        slow: Some(Arc::new(move |on| {
            slow_server.set_delay(if on {
                Duration::from_millis(40)
            } else {
                Duration::ZERO
            })
        })),
        corruption: None,
        options_check: OptionsCheck::PageSize(10),
    }
}

/// A files row: the WSH_8 rows ×100 (16,500) in `format`, 100 rows a checkpoint.
fn files(label: &'static str, format: &str, mode: &str) -> Row {
    let rows = wsh8_rows(100);
    let (name, good, bad) = match format {
        "csv" | "tsv" => {
            let sep = if format == "csv" { ',' } else { '\t' };
            let good = delimited(&rows, sep);
            // Row 8,000 gets a text Id: the Int column cannot hold it.
            let text = String::from_utf8(good.clone()).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            let fields: Vec<&str> = lines[8000].split(sep).collect();
            let broken = std::iter::once("not-a-number")
                .chain(fields[1..].iter().copied())
                .collect::<Vec<_>>()
                .join(&sep.to_string());
            lines[8000] = broken;
            (
                format!("wsh8.{format}"),
                good,
                (lines.join("\n") + "\n").into_bytes(),
            )
        }
        "jsonl" => {
            let good = jsonl(&rows);
            let text = String::from_utf8(good.clone()).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines[8000] = "{\"Id\": ".into(); // a line cut in the middle of an object
            (
                "wsh8.jsonl".into(),
                good,
                (lines.join("\n") + "\n").into_bytes(),
            )
        }
        "parquet" => {
            let good = parquet(&rows);
            let bad = good[..good.len() / 2].to_vec(); // truncated: no footer
            ("wsh8.parquet".into(), good, bad)
        }
        other => panic!("no such format {other}"),
    };
    let pk = if mode == "append" {
        String::new()
    } else {
        "        primary_key: [Id]\n".into()
    };
    let yaml = format!(
        "name: filesmatrix\ncreator: tests\nenabled: true\nrun: wsh8\nsource:\n  kind: files\netl:\n  wsh8:\n    file:\n      path: {name}\n      batch_rows: 100\n    destination:\n      postgres:\n        table: files_matrix\n        mode: {mode}\n{pk}"
    );
    Row {
        label,
        plugin: "filesmatrix".into(),
        plugin_yaml: yaml,
        plugin_files: vec![(name.clone(), good.clone())],
        run_args: vec!["filesmatrix".into()],
        job: "filesmatrix/wsh8".into(),
        progress: Progress::Pages,
        tables: vec!["public.files_matrix".into()],
        _servers: Vec::new(),
        slow: None,
        corruption: Some(Corruption {
            file: PathBuf::from(name),
            good,
            bad,
        }),
        options_check: OptionsCheck::PageSize(100),
    }
}

/// An Open Targets row: a generated release of 160,000 rows in 8 Parquet files, one worker.
fn opentargets(label: &'static str, mode: &str) -> Row {
    let root = tempfile::tempdir().unwrap();
    let mut spec = psystem_bench::generate::GenSpec::new(root.path(), "25.03", 160_000);
    spec.threads = 1;
    psystem_bench::generate::write_release(&spec).unwrap();
    let url = format!("file://{}/", root.path().display());
    let yaml = format!(
        "name: ot\ncreator: tests\nenabled: true\nsource:\n  kind: release\n  provider: opentargets\n  url: {url}\netl:\n  entity:\n    dataset: bench_entity\n    destination:\n      postgres:\n        schema: ot\n        table: entity\n        mode: {mode}\n        primary_key: [id]\n"
    );
    Row {
        label,
        plugin: "ot".into(),
        plugin_yaml: yaml,
        plugin_files: Vec::new(),
        run_args: vec![
            "ot".into(),
            "entity".into(),
            "--release".into(),
            "25.03".into(),
            "--workers".into(),
            "1".into(),
        ],
        job: "ot/entity".into(),
        progress: Progress::Units,
        tables: vec!["ot.entity".into()],
        _servers: vec![Box::new(root)],
        slow: None,
        corruption: None,
        options_check: OptionsCheck::Workers(1),
    }
}

/// A UniProt row: the fixture release on a local HTTP mirror, split into small units.
async fn uniprot(label: &'static str) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let release = MirrorRelease::from_fixtures("2024_01").unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release]).unwrap();
    let server: MirrorServer = mirror.serve().await.unwrap();
    let url = server.base_url();
    let yaml = format!(
        "name: up\ncreator: tests\nenabled: true\nrun: sprot\nsource:\n  kind: release\n  provider: uniprot\n  url: {url}\netl:\n  sprot:\n    dataset: sprot\n    destination:\n      postgres:\n        schema: uniprot\n        table: protein\n        mode: merge\n        primary_key: [accession]\n"
    );
    Row {
        label,
        plugin: "up".into(),
        plugin_yaml: yaml,
        plugin_files: Vec::new(),
        run_args: vec![
            "up".into(),
            "--unit-size".into(),
            "16KiB".into(),
            "--workers".into(),
            "1".into(),
        ],
        job: "up/sprot".into(),
        progress: Progress::Units,
        tables: vec!["uniprot.protein".into()],
        _servers: vec![Box::new(server), Box::new(mirror), Box::new(dir)],
        slow: None,
        corruption: None,
        options_check: OptionsCheck::UnitPlan { min_units: 5 },
    }
}

macro_rules! matrix_row {
    ($name:ident, $row:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            check_row($row).await;
        }
    };
}

matrix_row!(row_gho_append, gho("gho append", "append"));
matrix_row!(row_gho_replace, gho("gho replace", "replace"));
matrix_row!(row_gho_merge, gho("gho merge", "merge"));
matrix_row!(row_files_csv_append, files("csv append", "csv", "append"));
matrix_row!(
    row_files_tsv_replace,
    files("tsv replace", "tsv", "replace")
);
matrix_row!(
    row_files_parquet_merge,
    files("parquet merge", "parquet", "merge")
);
matrix_row!(
    row_files_jsonl_append,
    files("jsonl append", "jsonl", "append")
);
matrix_row!(
    row_opentargets_replace,
    opentargets("opentargets replace", "replace")
);
matrix_row!(
    row_opentargets_merge,
    opentargets("opentargets merge", "merge")
);
matrix_row!(row_uniprot_merge, uniprot("uniprot merge").await);
