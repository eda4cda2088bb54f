//! Issue 13, the PostgreSQL side: failures that are not failures (a unit still held must commit, case 11) and
//! errors that must say where and why (the server out of disk, case 15; a target table locked by another
//! session, case 17). Every test runs the real `psystem` binary against a real PostgreSQL
//! (`PSYSTEM_TEST_DATABASE_URL`, `scripts/test-cluster.sh`) and real local servers.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use psystem_core::{LoadMode, TableRef};
use psystem_postgres::copy_binary::CopyOptions;
use psystem_postgres::release_load::{
    open_dataset_load, BatchIter, BoxError, DatasetLoadSpec, UnitSpec,
};
use psystem_postgres::{Destination, DestinationError};
use psystem_testkit::db::TestDb;
use psystem_testkit::mirror::MirrorServer;
use sqlx::{Connection, PgConnection, PgPool};
use support::releases::{every_dataset, write_plugin, Entry, Mirror, OtLayout, Via};
use support::{gho_server, text, wsh8_plugin, Env};

async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn run(env: &Env, args: &[&str]) -> Output {
    tokio::task::block_in_place(|| env.run(args))
}

// --- Case 11: a unit still held commits ----------------------------------------------------------------------

const TINY_DATASETS: usize = 30;
const TINY_FILES: u32 = 4;
const TINY_ROWS: u64 = 8;

/// A release `25.03` (≥ 25.03 layout) of 30 tiny datasets `tiny_01` … `tiny_30`, each 8 rows in 4 part files
/// (psystem-bench's generator), with one `release_data_integrity` over all of them.
fn tiny_release(root: &Path) {
    let output = root.join("25.03/output");
    std::fs::create_dir_all(&output).unwrap();
    for i in 1..=TINY_DATASETS {
        // The generator writes one dataset per release folder: generate aside, then move the dataset in.
        let aside = tempfile::tempdir().unwrap();
        let mut spec = psystem_bench::generate::GenSpec::new(aside.path(), "25.03", TINY_ROWS);
        spec.dataset = format!("tiny_{i:02}");
        spec.files = TINY_FILES;
        spec.seed = i as u64;
        spec.threads = 1;
        psystem_bench::generate::write_release(&spec).unwrap();
        std::fs::rename(
            aside.path().join("25.03/output").join(&spec.dataset),
            output.join(&spec.dataset),
        )
        .unwrap();
    }
    psystem_testkit::opentargets::write_integrity(&root.join("25.03")).unwrap();
}

/// Makes every statement of `db`'s sessions slower to start, the way a busy server is: JIT compilation for every
/// plan (`jit_above_cost = 0`; expressions are compiled when first evaluated, after the statement's snapshot is
/// taken). A real server setting; it widens the window in which a claim's snapshot still sees a unit `pending`
/// that another worker has just claimed (on an idle test server that window is microseconds wide).
async fn slow_statement_start(db: &TestDb) {
    let admin_url = std::env::var(psystem_testkit::db::TEST_DATABASE_URL_ENV).unwrap();
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    for setting in ["jit = on", "jit_above_cost = 0"] {
        sqlx::query(&format!("ALTER DATABASE \"{}\" SET {setting}", db.name()))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    admin.close().await.unwrap();
}

/// Ten runs of a 30-dataset release with `--parallel 2 --workers 2` over HTTP, each into a fresh database: every
/// run must succeed with every table complete. Each dataset is four tiny files, so the two workers of a dataset
/// claim and commit units back to back; a worker's claim takes (and keeps for the rest of its statement) the row
/// lock of a unit the other worker has just claimed, and before the fix the other worker's commit saw that lock
/// as "another transaction is writing it" and failed the dataset.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_release_loads_of_many_small_datasets_never_lose_a_unit() {
    let dir = tempfile::tempdir().unwrap();
    tiny_release(dir.path());
    let http = MirrorServer::start(dir.path().to_path_buf()).await.unwrap();
    let url = http.base_url();
    let names: Vec<String> = (1..=TINY_DATASETS)
        .map(|i| format!("tiny_{i:02}"))
        .collect();
    let entries: Vec<Entry<'_>> = names
        .iter()
        .map(|n| Entry {
            key: n,
            dataset: n,
            table: n,
            mode: "replace",
            primary_key: &[],
        })
        .collect();
    let mut failures = Vec::new();
    const ROUNDS: usize = 10;
    for round in 0..ROUNDS {
        let db = TestDb::create().await;
        slow_statement_start(&db).await;
        let env = Env::new();
        write_plugin(&env, &url, "tiny", &entries);
        let mut args = vec!["run", "ot"];
        args.extend(names.iter().map(String::as_str));
        args.extend([
            "--release",
            "25.03",
            "--source-url",
            &url,
            "--parallel",
            "2",
            "--workers",
            "2",
            "--db",
            db.url(),
        ]);
        let out = run(&env, &args);
        if !out.status.success() {
            failures.push(format!("round {round}:\n{}", text(&out)));
            continue;
        }
        let pool = PgPool::connect(db.url()).await.unwrap();
        for n in &names {
            let rows = scalar_i64(&pool, &format!("SELECT count(*) FROM tiny.{n}")).await;
            assert_eq!(rows, TINY_ROWS as i64, "round {round}: tiny.{n}");
        }
        pool.close().await;
    }
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn unit_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn unit_batch(id: i64) -> BatchIter<std::vec::IntoIter<Result<RecordBatch, BoxError>>> {
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![id]));
    let names: ArrayRef = Arc::new(StringArray::from(vec![format!("row {id}")]));
    let batch = RecordBatch::try_new(unit_schema(), vec![ids, names]).unwrap();
    BatchIter(vec![Ok(batch)].into_iter())
}

fn unit_spec(units: &[&str]) -> DatasetLoadSpec {
    DatasetLoadSpec {
        job_key: "ot/held".into(),
        plugin: "ot".into(),
        entry: "held".into(),
        source_kind: "opentargets".into(),
        release: "25.03".into(),
        dataset: "held".into(),
        table: TableRef::new("public", "held"),
        mode: LoadMode::Replace,
        primary_key: vec!["id".into()],
        schema: unit_schema(),
        units: units.iter().map(|u| UnitSpec::new(*u, 10)).collect(),
        verified: true,
        allow_casts: false,
        copy_options: CopyOptions::default(),
        heartbeat_timeout: Duration::from_secs(60),
        worker_spec: None,
    }
}

/// Holds the row lock of unit `key` in another transaction for `hold`, then runs `then` (an UPDATE of the unit,
/// or nothing) and commits — what a concurrent claim (or heartbeat) does for a moment.
async fn hold_unit_row(url: &str, key: &str, hold: Duration, then: Option<String>) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT id FROM psystem.work_units WHERE unit_key = $1 FOR UPDATE")
        .bind(key)
        .execute(&mut conn)
        .await
        .unwrap();
    let mut conn2 = PgConnection::connect(url).await.unwrap();
    let key = key.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        if let Some(sql) = then {
            sqlx::query(&sql)
                .bind(&key)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    });
    // A connection for the caller's checks, opened while the lock is held.
    sqlx::query("SELECT 1").execute(&mut conn2).await.unwrap();
    conn2
}

/// A unit whose row another transaction locks for a moment (a concurrent claim or heartbeat) still commits once
/// the lock is gone; a unit that the other transaction really reclaims for another worker is refused and writes
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_momentary_row_lock_is_not_a_lost_unit_but_a_reclaim_is() {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.unwrap();
    let load = open_dataset_load(&dest, unit_spec(&["a", "b"]), false)
        .await
        .unwrap();
    let a = load.claim_unit(&dest, "w1").await.unwrap().unwrap();
    let b = load.claim_unit(&dest, "w1").await.unwrap().unwrap();
    assert_eq!((a.key.as_str(), b.key.as_str()), ("a", "b"));

    // Locked for 700 ms, unchanged: the copy waits for the lock and commits.
    let _c = hold_unit_row(db.url(), "a", Duration::from_millis(700), None).await;
    let report = load
        .copy_unit(&dest, &a, unit_batch(1))
        .await
        .unwrap_or_else(|e| panic!("a unit still held must commit: {e}"));
    assert_eq!(report.rows, 1);

    // Locked, then reclaimed by worker w2 in that transaction: refused, nothing written.
    let _c = hold_unit_row(
        db.url(),
        "b",
        Duration::from_millis(700),
        Some(
            "UPDATE psystem.work_units SET worker = 'w2', attempts = attempts + 1, heartbeat_at = now() \
             WHERE unit_key = $1"
                .into(),
        ),
    )
    .await;
    let err = load.copy_unit(&dest, &b, unit_batch(2)).await.unwrap_err();
    assert!(matches!(err, DestinationError::UnitLost { .. }), "{err}");
    assert!(err.to_string().contains("w2"), "{err}");
    let staged = scalar_i64(
        dest.pool(),
        "SELECT count(*) FROM psystem.work_units WHERE state = 'done'",
    )
    .await;
    assert_eq!(staged, 1, "only unit a is done");
    dest.close().await;
}

// --- Case 17: a target table locked by another session -------------------------------------------------------

/// Another session holding `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` inside an open transaction.
async fn lock_table(url: &str, table: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("SET application_name = 'lock-holder'")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

async fn backend_pid(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

/// Runs `cmd` and returns its output, killing it (and failing the test) when it has not ended within `limit`:
/// a load that waits for a lock without bound would hang the test.
fn output_within(mut cmd: Command, limit: Duration) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "psystem was still waiting after {} s (a load stalled on the lock) and was killed:\n{}",
                limit.as_secs(),
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_locked_message(out: &Output, table: &str, pid: i32) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("table {table} is locked by another session")),
        "{all}"
    );
    assert!(all.contains(&format!("process {pid}")), "{all}");
    assert!(all.contains("lock-holder"), "{all}");
    assert!(all.contains("AccessExclusiveLock"), "{all}");
    assert!(all.contains("psystem resume"), "{all}");
}

/// A GHO merge (page by page into the table itself) into a table another session holds locked: the run waits the lock timeout (2 s here), then fails
/// naming the table and the process holding it; after the lock is released, `resume` completes the load.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_table_fails_a_gho_load_naming_the_holder_and_resume_completes_it() {
    let (gho, _dir) = gho_server(&["WSH_8"]);
    let db = TestDb::create().await;
    let env = Env::new();
    env.add_plugin("wsh8", &wsh8_plugin(&gho.api_url(), "wsh8", "merge"));
    let first = run(&env, &["run", "wsh8test", "--db", db.url()]);
    assert!(first.status.success(), "{}", text(&first));
    let pool = PgPool::connect(db.url()).await.unwrap();
    let fixture = scalar_i64(&pool, "SELECT count(*) FROM public.wsh8").await;
    assert_eq!(fixture, 165);
    let before = digest(&pool, "public.wsh8").await;

    let mut holder = lock_table(db.url(), "public.wsh8").await;
    let pid = backend_pid(&mut holder).await;
    let args = ["run", "wsh8test", "--force", "--db", db.url()];
    let out = tokio::task::block_in_place(|| {
        let mut cmd = env.cmd();
        cmd.env("PSYSTEM_LOCK_TIMEOUT", "2s").args(args);
        output_within(cmd, Duration::from_secs(60))
    });
    assert_locked_message(&out, "public.wsh8", pid);
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();

    let resumed = run(&env, &["resume", "wsh8test/WSH_8", "--db", db.url()]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM public.wsh8").await,
        fixture
    );
    assert_eq!(digest(&pool, "public.wsh8").await, before);
    let completed = scalar_i64(
        &pool,
        "SELECT count(*) FROM psystem.loads WHERE job_key = 'wsh8test/WSH_8' AND state = 'completed'",
    )
    .await;
    assert_eq!(completed, 2, "the resumed merge completed");
    pool.close().await;
}

/// An md5 over every row of `table`, in a stable order.
async fn digest(pool: &PgPool, table: &str) -> String {
    sqlx::query_scalar::<_, String>(&format!(
        "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A release replace whose finish meets a target table locked by another session: it fails after the lock
/// timeout naming the table and the holder, keeps its staging table (the units are not copied again) and
/// `resume` finishes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_table_fails_a_release_finish_naming_the_holder_and_resume_finishes_it() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["disease"])]).await;
    let db = TestDb::create().await;
    let env = Env::new();
    let url = mirror.url(Via::File);
    let entries: Vec<_> = every_dataset()
        .into_iter()
        .filter(|e| e.dataset == "disease")
        .collect();
    write_plugin(&env, &url, "ot", &entries);
    let args = [
        "run",
        "ot",
        "disease",
        "--release",
        "25.03",
        "--source-url",
        &url,
        "--db",
        db.url(),
    ];
    let first = run(&env, &args);
    assert!(first.status.success(), "{}", text(&first));
    let pool = PgPool::connect(db.url()).await.unwrap();
    let rows = scalar_i64(&pool, "SELECT count(*) FROM ot.disease").await;
    assert!(rows > 0);
    let before = digest(&pool, "ot.disease").await;

    let mut holder = lock_table(db.url(), "ot.disease").await;
    let pid = backend_pid(&mut holder).await;
    let mut forced = args.to_vec();
    forced.push("--force");
    let out = tokio::task::block_in_place(|| {
        let mut cmd = env.cmd();
        cmd.env("PSYSTEM_LOCK_TIMEOUT", "2s").args(&forced);
        output_within(cmd, Duration::from_secs(60))
    });
    assert_locked_message(&out, "ot.disease", pid);
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    let staging = scalar_i64(
        &pool,
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'disease\\_\\_psystem\\_stage\\_%'",
    )
    .await;
    assert_eq!(staging, 1, "the staging table is kept for resume");

    let resumed = run(&env, &["resume", "ot/disease", "--db", db.url()]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(
        scalar_i64(&pool, "SELECT count(*) FROM ot.disease").await,
        rows
    );
    assert_eq!(digest(&pool, "ot.disease").await, before);
    let attempts = scalar_i64(
        &pool,
        "SELECT max(attempts)::bigint FROM psystem.work_units w JOIN psystem.loads l ON l.id = w.load_id \
         WHERE l.id = (SELECT max(id) FROM psystem.loads WHERE job_key = 'ot/disease')",
    )
    .await;
    assert_eq!(attempts, 1, "the units were not copied again");
    pool.close().await;
}

// --- Case 15: the server out of disk ----------------------------------------------------------------------

/// A tmpfs of `size` mounted on a new folder (root only), removed when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let uid = unsafe_free_uid();
        assert_eq!(
            uid, "0",
            "this test mounts a small tmpfs as the server's disk and needs root (CI runs as root); run it as root"
        );
        let dir =
            std::env::temp_dir().join(format!("psystem-small-disk-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs on {dir:?} failed");
        let status = Command::new("chown")
            .arg("postgres")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "chown postgres {dir:?} failed");
        SmallDisk { dir }
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "remount of {:?} failed", self.dir);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn unsafe_free_uid() -> String {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A CSV file of `rows` rows: `id,name,value`.
fn big_csv(path: &Path, rows: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "id,name,value").unwrap();
    for i in 1..=rows {
        writeln!(
            f,
            "{i},name of row {i} padded to fill the disk a little faster,{}",
            i * 3
        )
        .unwrap();
    }
    f.flush().unwrap();
}

/// The server's disk fills during a files load (its tables live in a tablespace on a 3 MiB tmpfs): the run fails
/// saying the server ran out of disk space, naming the table, and what to do; after space is freed `resume`
/// completes the load with every row exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_server_disk_says_so_and_the_load_resumes_after_space_is_freed() {
    let disk = SmallDisk::mount("3m");
    let db = TestDb::create().await;
    let admin_url = std::env::var(psystem_testkit::db::TEST_DATABASE_URL_ENV).unwrap();
    let space = format!("small_{}", db.name().trim_start_matches("psystem_test_"));
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!(
        "CREATE TABLESPACE {space} LOCATION '{}'",
        disk.dir.display()
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" SET default_tablespace = {space}",
        db.name()
    ))
    .execute(&mut admin)
    .await
    .unwrap();

    let env = Env::new();
    let rows = 120_000u64;
    let plugin = env.add_plugin(
        "bigfiles",
        "name: bigfiles\nsource: {kind: files}\netl:\n  big:\n    file: {path: big.csv}\n    destination:\n      postgres: {table: big, mode: append}\n",
    );
    big_csv(&plugin.parent().unwrap().join("big.csv"), rows);
    let out = run(&env, &["run", "bigfiles", "--db", db.url()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("the database server ran out of disk space"),
        "{all}"
    );
    assert!(all.contains("public.big"), "{all}");
    assert!(all.contains("free space"), "{all}");
    assert!(all.contains("psystem resume bigfiles/big"), "{all}");

    disk.grow("256m");
    let resumed = run(&env, &["resume", "bigfiles/big", "--db", db.url()]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    let pool = PgPool::connect(db.url()).await.unwrap();
    let (n, distinct, sum): (i64, i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id), sum(id)::bigint FROM public.big")
            .fetch_one(&pool)
            .await
            .unwrap();
    let expected_sum = (rows * (rows + 1) / 2) as i64;
    assert_eq!((n, distinct, sum), (rows as i64, rows as i64, expected_sum));
    pool.close().await;
    drop(db);
    sqlx::query(&format!("DROP TABLESPACE {space}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}
