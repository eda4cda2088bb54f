//! End-to-end tests through the real binary of what `psystem resume` and `psystem cancel` promise for every
//! source kind (issue 13, cases 9, 12 and 18):
//!
//! - a job stopped (Ctrl+C, kill -9, during the download or mid-load) resumes with every option it was started
//!   with — GHO `--since/--until/--page-size`, a files entry's `--source-url`, `--page-size`, `--since/--until`,
//!   an Open Targets release's `--mode`, `--release`, `--source-url`, `--workers`, `--allow-unverified`, and
//!   UniProt's `--unit-size` and `--skip-bad-entries` — and ends equal to a clean load with those options; an
//!   option that may not change on resume is refused with a message naming the command that starts over;
//! - `psystem cancel` cancels a paused Open Targets or UniProt job (ledger row cancelled, staging table and pending
//!   work units removed, status.yaml updated) and the next run starts over; a job running in another process is
//!   refused;
//! - the hint printed after a double Ctrl+C is a command that works, and `psystem resume` of a job that never
//!   started says there is nothing to resume and which command runs it again.
//!
//! They need `PSYSTEM_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` starts a cluster and sets it).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use psystem_testkit::db::TestDb;
use psystem_testkit::uniprot::{FlatEntry, MirrorRelease, UniprotMirror};
use sqlx::PgPool;
use support::releases::{write_plugin, Entry};
use support::{text, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn pool(db: &TestDb) -> PgPool {
    PgPool::connect(db.url()).await.unwrap()
}

/// A digest of a table's content in `order` (every column, as text).
async fn digest(pool: &PgPool, table: &str, order: &str) -> String {
    sqlx::query_scalar(&format!(
        "SELECT coalesce(md5(string_agg(t::text, E'\\n' ORDER BY {order})), '') FROM {table} t"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A digest of `uniprot.protein` by accession: every column but `loaded_at` (the time of the write).
async fn protein_digest(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT coalesce(md5(string_agg((to_jsonb(t) - 'loaded_at')::text, E'\\n' ORDER BY accession)), '') \
         FROM uniprot.protein t",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

fn sigint(child: &Child) {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "could not send SIGINT");
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to 60 s) until status.yaml has job `key`; fails if `child` ends first.
async fn wait_for_job(env: &Env, key: &str, child: &mut Child) {
    let path = env.home.path().join("status.yaml");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(&format!("{key}:")) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("psystem ended before job {key} appeared in status.yaml: {status:?}");
        }
        assert!(Instant::now() < deadline, "no job {key} within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that sends the answers back `chunk` bytes at a time with
/// `pause` between chunks: a slow mirror, so that a run can be stopped in the middle of its download.
async fn throttled_proxy(upstream: SocketAddr, chunk: usize, pause: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    let _ = server_write.shutdown().await;
                });
                let mut buf = vec![0u8; chunk];
                loop {
                    match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
                let _ = client_write.shutdown().await;
            });
        }
    });
    addr
}

// ------------------------------------------------------------------------------------------------------ GHO --

/// WSH_8's 165 real rows with `TimeDim` spread over 2000–2009 (the fixture's are all 2004), under indicator
/// `WSH_8`; returns the folder and the Ids whose year is in `since..=until`.
fn gho_years_fixture(since: i64, until: i64) -> (tempfile::TempDir, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::fixture_path()).unwrap()).unwrap();
    let mut wanted = Vec::new();
    for (i, row) in doc["value"].as_array_mut().unwrap().iter_mut().enumerate() {
        let year = 2000 + (i as i64 % 10);
        row["TimeDim"] = serde_json::json!(year);
        if (since..=until).contains(&year) {
            wanted.push(row["Id"].as_i64().unwrap());
        }
    }
    std::fs::write(
        dir.path().join("WSH_8.json"),
        serde_json::to_vec(&doc).unwrap(),
    )
    .unwrap();
    wanted.sort();
    (dir, wanted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gho_resume_keeps_since_until_and_page_size() {
    let (dir, wanted) = gho_years_fixture(2003, 2006);
    assert!(wanted.len() > 30, "several pages of 10 rows in the window");
    let server = psystem_testkit::gho_server::GhoServer::start(dir.path()).unwrap();
    server.set_delay(Duration::from_millis(150));
    let db = TestDb::create().await;
    let env = Env::new();
    env.add_plugin(
        "t",
        &support::wsh8_plugin(&server.api_url(), "windowed", "merge"),
    );
    let out = env
        .run_and_interrupt(
            &[
                "run",
                "wsh8test",
                "--db",
                db.url(),
                "--since",
                "2003",
                "--until",
                "2006",
                "--page-size",
                "10",
            ],
            Duration::from_millis(100),
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "paused: {}", text(&out));
    let status = env.status();
    let job = &status["jobs"]["wsh8test/WSH_8"];
    assert_eq!(job["state"].as_str(), Some("paused"), "{status:?}");
    assert_eq!(job["options"]["since"].as_i64(), Some(2003), "{status:?}");
    assert_eq!(job["options"]["until"].as_i64(), Some(2006), "{status:?}");

    // Changing the window on resume would mix two loads: refused, naming the command that starts over.
    let out = env.run(&["resume", "wsh8test/WSH_8", "--since", "2001"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was started with --since 2003")
            && err.contains("psystem run wsh8test WSH_8 --since 2001 --restart"),
        "{}",
        text(&out)
    );
    assert!(!err.contains("Some("), "{err}");
    // A release-only option does not apply to a GHO job.
    let out = env.run(&["resume", "wsh8test/WSH_8", "--mode", "replace"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--mode applies to release jobs"),
        "{}",
        text(&out)
    );

    // Resume with no option at all: the window and the page size the job started with.
    server.set_delay(Duration::ZERO);
    let out = env.run(&["resume", "wsh8test/WSH_8"]);
    assert!(out.status.success(), "{}", text(&out));
    let pool = pool(&db).await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT \"Id\" FROM windowed ORDER BY \"Id\"")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        ids, wanted,
        "exactly the rows of 2003–2006, each once, as a clean load with --since/--until"
    );
    let job = &env.status()["jobs"]["wsh8test/WSH_8"];
    assert_eq!(job["state"].as_str(), Some("completed"));
    assert_eq!(job["page_size"].as_u64(), Some(10));
    assert_eq!(
        job["pages"].as_u64(),
        Some(wanted.len().div_ceil(10) as u64),
        "pages of 10 rows throughout"
    );
    // Every page request, before and after the pause, asked for the window and 10 rows.
    for r in server.requests() {
        if r.path.ends_with("/WSH_8") && r.skip.is_some() {
            assert_eq!(r.top, Some(10), "{r:?}");
            assert!(
                r.filter
                    .as_deref()
                    .is_some_and(|f| f.contains("2003") && f.contains("2006")),
                "{r:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------- files --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_resume_keeps_source_url_page_size_and_window() {
    let dir = tempfile::tempdir().unwrap();
    // The plugin names a.csv; the run reads b.csv instead (--source-url), 4,000 rows in pages of 7.
    let a = dir.path().join("a.csv");
    std::fs::write(&a, "id,name\n1,wrong\n").unwrap();
    let b = dir.path().join("b.csv");
    let mut csv = String::from("id,name\n");
    for i in 0..4000 {
        csv.push_str(&format!("{i},row {i}\n"));
    }
    std::fs::write(&b, &csv).unwrap();
    let db = TestDb::create().await;
    let env = Env::new();
    env.add_plugin(
        "f",
        &format!(
            "name: filetest\ncreator: tests\nenabled: true\nsource:\n  kind: files\nrun: rows\netl:\n  rows:\n    file:\n      path: {}\n    destination:\n      postgres:\n        table: rows\n        mode: append\n",
            a.display()
        ),
    );
    let b_path = b.display().to_string();
    let out = env
        .run_and_interrupt(
            &[
                "run",
                "filetest",
                "--db",
                db.url(),
                "--source-url",
                &b_path,
                "--page-size",
                "7",
                "--since",
                "2000",
                "--until",
                "2999",
            ],
            Duration::from_millis(50),
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "paused: {}", text(&out));
    let status = env.status();
    let job = &status["jobs"]["filetest/rows"];
    assert_eq!(job["state"].as_str(), Some("paused"), "{status:?}");
    assert_eq!(job["options"]["since"].as_i64(), Some(2000), "{status:?}");
    assert_eq!(job["options"]["until"].as_i64(), Some(2999), "{status:?}");

    let out = env.run(&["resume", "filetest/rows", "--until", "2050"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was started with --until 2999"),
        "{}",
        text(&out)
    );
    let out = env.run(&[
        "resume",
        "filetest/rows",
        "--source-url",
        &a.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let out = env.run(&["resume", "filetest/rows"]);
    assert!(out.status.success(), "{}", text(&out));
    let pool = pool(&db).await;
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM rows ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let expected: Vec<(i64, String)> = (0..4000).map(|i| (i, format!("row {i}"))).collect();
    assert_eq!(rows, expected, "b.csv's rows, each once");
    let job = &env.status()["jobs"]["filetest/rows"];
    assert_eq!(job["state"].as_str(), Some("completed"));
    assert_eq!(job["page_size"].as_u64(), Some(7));
    assert_eq!(job["pages"].as_u64(), Some(4000u64.div_ceil(7)));
}

// -------------------------------------------------------------------------------------------- Open Targets --

fn generated_release(root: &Path, release: &str, rows: u64) {
    let mut spec = psystem_bench::generate::GenSpec::new(root, release, rows);
    spec.threads = 1;
    psystem_bench::generate::write_release(&spec).unwrap();
}

fn bench_entry() -> Entry<'static> {
    Entry {
        key: "entity",
        dataset: "bench_entity",
        table: "entity",
        mode: "replace",
        primary_key: &["id"],
    }
}

/// Units of psystem.work_units that are done.
async fn units_done(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM psystem.work_units WHERE state = 'done'")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Starts psystem with `args` and waits until at least one work unit (of 8) is done and not all are.
async fn start_and_wait_for_a_unit(env: &Env, args: &[&str], pool: &PgPool) -> Child {
    let mut child = spawn(env, args);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = units_done(pool).await;
        if done >= 1 {
            assert!(
                done < 8,
                "the whole load finished before it could be stopped"
            );
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "psystem ended before a unit was done: {status:?}\n{}",
                text(&out)
            );
        }
        assert!(Instant::now() < deadline, "no unit done within 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two generated releases (25.03: 160,000 rows in 8 files, without a checksum manifest; 25.06, the latest:
/// 1,000 rows) in a folder; returns it and its `file://` URL.
fn two_releases() -> (tempfile::TempDir, String) {
    let root = tempfile::tempdir().unwrap();
    generated_release(root.path(), "25.03", 160_000);
    generated_release(root.path(), "25.06", 1_000);
    for f in ["release_data_integrity", "release_data_integrity.sha1"] {
        std::fs::remove_file(root.path().join("25.03").join(f)).unwrap();
    }
    let url = format!("file://{}/", root.path().display());
    (root, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn opentargets_resume_after_kill_9_keeps_mode_release_source_workers_and_unverified() {
    let (_root, url) = two_releases();
    // The plugin's own source.url leads nowhere: only the run's --source-url has the releases.
    let nowhere = format!("file://{}/", tempfile::tempdir().unwrap().path().display());
    let run = |db: &str| -> Vec<String> {
        [
            "run",
            "ot",
            "entity",
            "--release",
            "25.03",
            "--mode",
            "merge",
            "--source-url",
            url.as_str(),
            "--workers",
            "1",
            "--allow-unverified",
            "--db",
            db,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    let clean = TestDb::create().await;
    let env = Env::new();
    write_plugin(&env, &nowhere, "ot", &[bench_entry()]);
    let args = run(clean.url());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    let clean_pool = pool(&clean).await;
    let expected = digest(&clean_pool, "ot.entity", "id").await;
    assert_eq!(count(&clean_pool, "ot.entity").await, 160_000);

    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(&env, &nowhere, "ot", &[bench_entry()]);
    let args = run(db.url());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = start_and_wait_for_a_unit(&env, &args, &pool).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_load: i64 = sqlx::query_scalar("SELECT max(id) FROM psystem.loads")
        .fetch_one(&pool)
        .await
        .unwrap();

    // A different mode or release on resume is refused, naming the command that starts over.
    let out = env.run(&["resume", "ot/entity", "--mode", "replace"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was started with --mode merge")
            && err.contains("psystem run ot entity --mode replace --restart"),
        "{}",
        text(&out)
    );
    let out = env.run(&["resume", "ot/entity", "--release", "25.06"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was started with --release 25.03"),
        "{}",
        text(&out)
    );
    let out = env.run(&["resume", "ot/entity", "--page-size", "5"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Resume with no option: the same release, mode, mirror, workers and --allow-unverified.
    let out = env.run(&["resume", "ot/entity"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&pool, "ot.entity").await, 160_000);
    assert_eq!(digest(&pool, "ot.entity", "id").await, expected);
    let (state, release, mode, verified): (String, String, String, bool) = sqlx::query_as(
        "SELECT state, release, mode, verified FROM psystem.loads WHERE dataset = 'bench_entity' \
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (state.as_str(), release.as_str(), mode.as_str(), verified),
        ("completed", "25.03", "merge", false)
    );
    let last: i64 = sqlx::query_scalar("SELECT max(id) FROM psystem.loads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        last, killed_load,
        "the killed load was resumed, not restarted"
    );
    // One worker (`<host>:<pid>/0`), as the run asked: no unit was copied by a second one.
    let workers: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT worker FROM psystem.work_units WHERE load_id = $1 AND worker IS NOT NULL",
    )
    .bind(last)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        !workers.is_empty() && workers.iter().all(|w| w.ends_with("/0")),
        "{workers:?}"
    );
    let status = env.status();
    let job = &status["jobs"]["ot/entity"];
    assert_eq!(job["state"].as_str(), Some("completed"), "{status:?}");
    assert_eq!(job["options"]["workers"].as_u64(), Some(1), "{status:?}");
    assert_eq!(
        job["options"]["allow_unverified"].as_bool(),
        Some(true),
        "{status:?}"
    );
}

// --------------------------------------------------------------------------------------------------- UniProt --

/// A UniProt accession of the 6-character form `[A-NR-Z][0-9][A-Z][A-Z0-9]{2}[0-9]` for `n` < 129,600.
fn accession(n: usize) -> String {
    const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    format!(
        "B{}Z{}{}{}",
        n % 10,
        ALNUM[(n / 10) % 36] as char,
        ALNUM[(n / 360) % 36] as char,
        (n / 12_960) % 10
    )
}

/// `copies` copies of the reviewed fixture entries with new accessions and entry names.
fn many_entries(copies: usize) -> Vec<FlatEntry> {
    let base: Vec<FlatEntry> = psystem_testkit::uniprot::fixture_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.reviewed)
        .collect();
    let mut out = Vec::new();
    for _ in 0..copies {
        for e in &base {
            let n = out.len();
            let acc = accession(n);
            let name = format!("T{n}_TEST");
            let text = e
                .text
                .replacen(
                    &format!("AC   {};", e.accession),
                    &format!("AC   {acc};"),
                    1,
                )
                .replacen(
                    &format!("ID   {}", e.entry_name),
                    &format!("ID   {name:<w$}", w = e.entry_name.len().max(name.len())),
                    1,
                );
            out.push(FlatEntry::from_text(text).unwrap());
        }
    }
    out
}

/// `entries` with entry 5's sequence one residue short of what its ID and SQ lines announce (a malformed entry);
/// returns them and the victim's accession.
fn with_a_malformed_entry(mut entries: Vec<FlatEntry>) -> (Vec<FlatEntry>, String) {
    let victim = entries[5].clone();
    let seq_start = victim.text.find("\nSQ   ").unwrap();
    let first_residue = victim.text[seq_start..].find("\n     ").unwrap() + seq_start + 6;
    let mut broken = victim.text.clone();
    broken.remove(first_residue);
    entries[5] = FlatEntry {
        text: broken,
        ..victim.clone()
    };
    (entries, victim.accession)
}

const UNIT: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniprot_paused_during_the_download_resumes_with_its_unit_size_and_skip_bad_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (entries, victim) = with_a_malformed_entry(many_entries(4));
    let release = MirrorRelease::with_entries("2024_01", entries.clone(), Vec::new()).unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release]).unwrap();
    let server = mirror.serve().await.unwrap();
    let gz = std::fs::metadata(mirror.release_dir("2024_01").join("uniprot_sprot.dat.gz"))
        .unwrap()
        .len() as usize;
    // About 4 s for the flat file.
    let proxy = throttled_proxy(server.addr(), (gz / 80).max(512), Duration::from_millis(50)).await;
    let slow_url = format!("http://{proxy}/");
    let options = ["--unit-size", "100KiB", "--skip-bad-entries"];

    // The clean load with those options.
    let clean = TestDb::create().await;
    let env = Env::new();
    let base_url = server.base_url();
    let mut args = vec![
        "run",
        "uniprot",
        "--source-url",
        &base_url,
        "--db",
        clean.url(),
    ];
    args.extend_from_slice(&options);
    let out = env.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    let clean_pool = pool(&clean).await;
    let expected = protein_digest(&clean_pool).await;

    // The paused one: Ctrl+C while the flat file downloads from the slow mirror.
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    let mut args = vec![
        "run",
        "uniprot",
        "--source-url",
        &slow_url,
        "--db",
        db.url(),
    ];
    args.extend_from_slice(&options);
    let mut child = spawn(&env, &args);
    wait_for_job(&env, "uniprot/sprot", &mut child).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "paused: {}", text(&out));
    let units: i64 = sqlx::query_scalar("SELECT count(*) FROM psystem.work_units")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(units, 0, "paused before the file was split into units");
    let status = env.status();
    let job = &status["jobs"]["uniprot/sprot"];
    assert_eq!(
        job["options"]["unit_bytes"].as_u64(),
        Some(UNIT),
        "{status:?}"
    );
    assert_eq!(
        job["options"]["skip_bad_entries"].as_bool(),
        Some(true),
        "{status:?}"
    );

    let out = env.run(&["resume", "uniprot/sprot", "--unit-size", "1MiB"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was started with --unit-size"),
        "{}",
        text(&out)
    );

    // Resume with no option: units of 100 KiB, the malformed entry skipped.
    let out = env.run(&["resume", "uniprot/sprot"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 malformed entry skipped"),
        "{}",
        text(&out)
    );
    let (n, max): (i64, i64) =
        sqlx::query_as("SELECT count(*), max(bytes) FROM psystem.work_units")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        n > 1 && (max as u64) < 2 * UNIT,
        "units of about 100 KiB (not one of 64 MiB): {n} units, the largest {max} bytes"
    );
    assert_eq!(
        count(&pool, "uniprot.protein").await as usize,
        entries.len() - 1
    );
    let victim_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM uniprot.protein WHERE accession = $1")
            .bind(&victim)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(victim_rows, 0);
    assert_eq!(
        protein_digest(&pool).await,
        expected,
        "equal to the clean load with --unit-size 100KiB --skip-bad-entries"
    );
}

// ------------------------------------------------------------------------------------------------- cancel --

#[tokio::test(flavor = "multi_thread")]
async fn cancel_a_paused_opentargets_job_then_the_next_run_starts_over() {
    let root = tempfile::tempdir().unwrap();
    generated_release(root.path(), "25.03", 160_000);
    let url = format!("file://{}/", root.path().display());
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(&env, &url, "ot", &[bench_entry()]);
    let args = [
        "run",
        "ot",
        "entity",
        "--release",
        "25.03",
        "--workers",
        "1",
        "--db",
        db.url(),
    ];
    let child = start_and_wait_for_a_unit(&env, &args, &pool).await;
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "paused: {}", text(&out));
    let (load, staging): (i64, String) =
        sqlx::query_as("SELECT id, staging_table FROM psystem.loads ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();

    let out = env.run(&["cancel", "ot/entity"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("plan_release"),
        "no internal names: {}",
        text(&out)
    );
    let state: String = sqlx::query_scalar("SELECT state FROM psystem.loads WHERE id = $1")
        .bind(load)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "cancelled");
    let staging_left: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("ot.\"{staging}\""))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(staging_left, None, "the staging table is dropped");
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM psystem.work_units WHERE load_id = $1 AND state <> 'done'",
    )
    .bind(load)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 0, "no pending work unit is left to claim");
    assert_eq!(
        env.status()["jobs"]["ot/entity"]["state"].as_str(),
        Some("cancelled")
    );

    let out = env.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    let (new_load, done): (i64, i64) = sqlx::query_as(
        "SELECT l.id, (SELECT count(*) FROM psystem.work_units w WHERE w.load_id = l.id AND w.state = 'done') \
         FROM psystem.loads l WHERE l.state = 'completed' ORDER BY l.id DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(new_load > load, "a new load");
    assert_eq!(done, 8, "the new load copied every file itself");
    assert_eq!(count(&pool, "ot.entity").await, 160_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_paused_uniprot_job_then_the_next_run_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let entries = many_entries(6);
    let release = MirrorRelease::with_entries("2024_01", entries.clone(), Vec::new()).unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release]).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    let base = server.base_url();
    let args = [
        "run",
        "uniprot",
        "--source-url",
        base.as_str(),
        "--db",
        db.url(),
        "--unit-size",
        "8KiB",
        "--workers",
        "1",
    ];
    let mut child = spawn(&env, &args);
    // Wait for a unit written, then Ctrl+C: the job pauses at the next unit boundary.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if units_done(&pool).await >= 1 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("psystem ended before a unit was written: {status:?}");
        }
        assert!(Instant::now() < deadline, "no unit written within 120 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "paused: {}", text(&out));
    let (load, seen): (i64, String) =
        sqlx::query_as("SELECT id, staging_table FROM psystem.loads ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM psystem.work_units WHERE load_id = $1 AND state <> 'done'",
    )
    .bind(load)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(pending > 0, "units were left when it paused");

    let out = env.run(&["cancel", "uniprot/sprot"]);
    assert!(out.status.success(), "{}", text(&out));
    let state: String = sqlx::query_scalar("SELECT state FROM psystem.loads WHERE id = $1")
        .bind(load)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "cancelled");
    let seen_left: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("uniprot.\"{seen}\""))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(seen_left, None, "the load's seen table is dropped");
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM psystem.work_units WHERE load_id = $1 AND state <> 'done'",
    )
    .bind(load)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 0, "no pending work unit is left to claim");
    assert_eq!(
        env.status()["jobs"]["uniprot/sprot"]["state"].as_str(),
        Some("cancelled")
    );

    let out = env.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    let new_load: i64 =
        sqlx::query_scalar("SELECT max(id) FROM psystem.loads WHERE state = 'completed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(new_load > load, "a new load");
    assert_eq!(
        count(&pool, "uniprot.protein").await as usize,
        entries.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_of_a_release_job_running_in_another_process_is_refused() {
    let root = tempfile::tempdir().unwrap();
    generated_release(root.path(), "25.03", 160_000);
    let url = format!("file://{}/", root.path().display());
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(&env, &url, "ot", &[bench_entry()]);
    let args = [
        "run",
        "ot",
        "entity",
        "--release",
        "25.03",
        "--workers",
        "1",
        "--db",
        db.url(),
    ];
    let mut child = start_and_wait_for_a_unit(&env, &args, &pool).await;
    let out = env.run(&["cancel", "ot/entity"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is running in another psystem process"),
        "{}",
        text(&out)
    );
    // The running load goes on to the end, untouched.
    let status = support::wait_for(&mut child, "the running load", Duration::from_secs(300));
    assert!(status.success());
    assert_eq!(count(&pool, "ot.entity").await, 160_000);
    assert_eq!(
        env.status()["jobs"]["ot/entity"]["state"].as_str(),
        Some("completed")
    );
}

// ---------------------------------------------------------------------------------------------------- hints --

#[tokio::test(flavor = "multi_thread")]
async fn the_hint_after_a_double_ctrl_c_of_a_release_run_works() {
    let root = tempfile::tempdir().unwrap();
    generated_release(root.path(), "25.03", 160_000);
    let url = format!("file://{}/", root.path().display());
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(&env, &url, "ot", &[bench_entry()]);
    let args = [
        "run",
        "ot",
        "entity",
        "--release",
        "25.03",
        "--workers",
        "1",
        "--db",
        db.url(),
    ];
    let child = start_and_wait_for_a_unit(&env, &args, &pool).await;
    sigint(&child);
    tokio::time::sleep(Duration::from_millis(30)).await;
    sigint(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let hint = err
        .lines()
        .find_map(|l| l.split("Resume with: ").nth(1))
        .unwrap_or_else(|| panic!("no resume hint: {err}"))
        .trim()
        .to_string();
    let words: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(words[0], "psystem", "{err}");
    let out = env.run(&words[1..]);
    assert!(out.status.success(), "`{hint}` works: {}", text(&out));
    assert_eq!(hint, "psystem resume ot/entity", "{err}");
    assert_eq!(count(&pool, "ot.entity").await, 160_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_of_a_job_that_never_started_says_run_it_again() {
    let env = Env::new();
    write_plugin(&env, "file:///nowhere/", "ot", &[bench_entry()]);
    let out = env.run(&["resume", "ot/entity"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing to resume") && err.contains("run it again: `psystem run ot entity`"),
        "{}",
        text(&out)
    );
}
