//! Shared helpers of the CLI end-to-end tests: a psystem home per test, running the real `psystem` binary,
//! and comparing a loaded table with the WHO GHO fixture.

#![allow(dead_code)]

pub mod releases;

use psystem_testkit::gho_server::GhoServer;
use serde_json::Value;
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The WSH_8 fixture (165 real rows).
pub fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/who_gho/WSH_8.json")
}

/// The fixture's rows.
pub fn fixture_rows() -> Vec<Value> {
    let v: Value = serde_json::from_slice(&std::fs::read(fixture_path()).unwrap()).unwrap();
    v["value"].as_array().unwrap().clone()
}

/// A GHO server serving WSH_8.json under the given indicator names.
pub fn gho_server(indicators: &[&str]) -> (GhoServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for name in indicators {
        std::fs::copy(fixture_path(), dir.path().join(format!("{name}.json"))).unwrap();
    }
    (GhoServer::start(dir.path()).unwrap(), dir)
}

/// A psystem home for one test, with helpers to run the binary in it.
pub struct Env {
    pub home: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// `psystem` with this home, the repository's assets, and no DATABASE_URL from the outside.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_psystem"));
        c.env("PSYSTEM_HOME", self.home.path())
            .env(
                "PSYSTEM_ASSETS",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"),
            )
            .env_remove("DATABASE_URL")
            .env_remove("GHOTopOSTGRES_DATABASE_URL")
            .env_remove("PSYSTEM_WHO_GHO_DATABASE_URL")
            .env_remove("PSYSTEM_UNIPROT_DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// Starts `psystem worker --db <db> --exit-when-idle --threads 1 --poll 300ms` in this home (stderr piped).
    pub fn spawn_worker(&self, db: &str) -> std::process::Child {
        self.cmd()
            .args([
                "worker",
                "--db",
                db,
                "--exit-when-idle",
                "--threads",
                "1",
                "--poll",
                "300ms",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs psystem with `args` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Starts psystem with `args`, waits until status.yaml shows a committed page, sends it SIGINT (Ctrl+C)
    /// `after` that, and returns its output.
    pub async fn run_and_interrupt(&self, args: &[&str], after: std::time::Duration) -> Output {
        let child = self
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the first committed page (a slow machine may take a while to start), then for `after`.
        self.wait_for_first_page().await;
        tokio::time::sleep(after).await;
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "could not send SIGINT");
        child.wait_with_output().unwrap()
    }

    /// Waits (up to 30 s) until status.yaml shows a committed page.
    pub async fn wait_for_first_page(&self) {
        let status = self.home.path().join("status.yaml");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&status).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.trim().strip_prefix("pages: ").is_some_and(|n| n != "0"))
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no page committed within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Adds a user plugin folder `name` with `plugin.yaml` = `text`.
    pub fn add_plugin(&self, folder: &str, text: &str) -> PathBuf {
        let dir = self.home.path().join("plugins").join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plugin.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// status.yaml parsed.
    pub fn status(&self) -> serde_yaml_ng::Value {
        let text = std::fs::read_to_string(self.home.path().join("status.yaml")).unwrap();
        serde_yaml_ng::from_str(&text).unwrap()
    }
}

/// A user plugin loading WSH_8 from `api` in `mode` into `table` (no primary key for append).
pub fn wsh8_plugin(api: &str, table: &str, mode: &str) -> String {
    let pk = if mode == "append" {
        String::new()
    } else {
        "        primary_key: [Id]\n".to_string()
    };
    format!(
        "# test plugin\nname: wsh8test\ncreator: tests\nenabled: true\nrun: WSH_8\netl:\n  WSH_8:\n    indicator: WSH_8\n    api: {api}\n    destination:\n      postgres:\n        table: {table}\n        mode: {mode}\n{pk}"
    )
}

pub fn text(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that `table` holds exactly the fixture's rows: same count, no duplicate Id, and every value equal.
pub async fn assert_table_equals_fixture(url: &str, table: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let sql = format!(
        "SELECT to_jsonb(t) AS j, extract(epoch from \"Date\")::float8 AS d, extract(epoch from \"TimeDimensionBegin\")::float8 AS b FROM \"{table}\" t ORDER BY \"Id\""
    );
    let rows = sqlx::query(&sql).fetch_all(&pool).await.unwrap();
    let mut fixture = fixture_rows();
    fixture.sort_by_key(|r| r["Id"].as_i64().unwrap());
    assert_eq!(rows.len(), fixture.len(), "row count of {table}");
    for (row, want) in rows.iter().zip(&fixture) {
        let got: Value = row.get("j");
        for (k, v) in want.as_object().unwrap() {
            match k.as_str() {
                "Date" | "TimeDimensionBegin" | "TimeDimensionEnd" => {
                    if k == "Date" {
                        let secs: f64 = row.get("d");
                        let expect =
                            chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
                        let expect = expect.timestamp_micros() as f64 / 1e6;
                        assert!(
                            (secs - expect).abs() < 1e-6,
                            "Date of Id {}: {secs} != {expect}",
                            want["Id"]
                        );
                    }
                    if k == "TimeDimensionBegin" {
                        let secs: f64 = row.get("b");
                        let expect = chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
                            .unwrap()
                            .timestamp() as f64;
                        assert_eq!(secs, expect, "TimeDimensionBegin of Id {}", want["Id"]);
                    }
                }
                "NumericValue" | "Low" | "High" => {
                    assert_eq!(got[k].as_f64(), v.as_f64(), "{k} of Id {}", want["Id"]);
                }
                _ => assert_eq!(&got[k], v, "{k} of Id {}", want["Id"]),
            }
        }
    }
    pool.close().await;
}

/// Row count of a table.
pub async fn count(url: &str, table: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// Row count of a table, 0 when it does not exist yet.
pub async fn count_if_exists(url: &str, table: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("\"{table}\""))
        .fetch_one(&pool)
        .await
        .unwrap();
    let n = if exists {
        sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
            .fetch_one(&pool)
            .await
            .unwrap()
    } else {
        0
    };
    pool.close().await;
    n
}

/// Waits for `child` to exit, at most `timeout`; then kills it and fails the test naming `what` (with its stderr).
#[allow(dead_code)]
pub fn wait_for(
    child: &mut std::process::Child,
    what: &str,
    timeout: std::time::Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} did not finish within {timeout:?}: {err}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Polls `psystem.work_units` until at least `min_done` units are done and the worker process `pid` holds one
/// (state `running`, worker name `<host>:<pid>/<n>`): the moment to SIGKILL it mid-unit. Fails the test when all
/// `units` finish first or nothing moves for 120 s.
#[allow(dead_code)]
pub async fn wait_until_holding_a_unit(pool: &sqlx::PgPool, pid: u32, min_done: i64, units: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE state = 'done') AS done, \
             count(*) FILTER (WHERE state = 'running' AND worker LIKE $1) AS held FROM psystem.work_units",
        )
        .bind(format!("%:{pid}/%"))
        .fetch_one(pool)
        .await
        .unwrap();
        let (done, held): (i64, i64) = (row.get("done"), row.get("held"));
        if done >= min_done && held > 0 {
            return;
        }
        assert!(
            done < units,
            "every unit was done before the victim could be killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the workers made no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
