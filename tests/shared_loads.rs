//! `psystem worker` processes joining an Open Targets release load through the database: the run records the
//! load with a worker spec and (with `--workers 0`) only coordinates; two worker processes download, verify and
//! copy its Parquet files — one is killed with SIGKILL while it holds a file — and the run finishes the table when
//! every unit is done. Real binary, real PostgreSQL, a release mirror served over HTTP.
//!
//! Needs `PSYSTEM_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` starts a cluster and sets it).

mod support;

use std::process::{Child, Stdio};

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use psystem_testkit::db::TestDb;
use psystem_testkit::mirror::MirrorServer;
use sqlx::PgPool;
use support::releases::{write_integrity, write_plugin, Entry};
use support::{text, Env};

const FILES: usize = 12;
const ROWS_PER_FILE: i64 = 60_000;

/// Release 25.03 with dataset `many`: FILES Parquet files of ROWS_PER_FILE rows (`id`, `label`).
fn build_release(root: &std::path::Path) {
    let dir = root.join("25.03/output/many");
    std::fs::create_dir_all(&dir).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("label", DataType::Utf8, true),
    ]));
    for f in 0..FILES as i64 {
        let ids: Vec<i64> = (0..ROWS_PER_FILE).map(|i| f * ROWS_PER_FILE + i).collect();
        let labels: Vec<String> = ids.iter().map(|i| format!("row {i}\twith a tab")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)) as ArrayRef,
                Arc::new(StringArray::from(labels)) as ArrayRef,
            ],
        )
        .unwrap();
        let file =
            std::fs::File::create(dir.join(format!("part-{f:05}-c000.snappy.parquet"))).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    std::fs::write(dir.join("_SUCCESS"), b"").unwrap();
    write_integrity(&root.join("25.03")).unwrap();
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_copy_the_files_of_an_open_targets_load_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    build_release(dir.path());
    let http = MirrorServer::start(dir.path().to_path_buf()).await.unwrap();
    let db = TestDb::create().await;
    let pool = PgPool::connect(db.url()).await.unwrap();
    let env = Env::new();
    write_plugin(
        &env,
        &http.base_url(),
        "ot",
        &[Entry {
            key: "many",
            dataset: "many",
            table: "many",
            mode: "replace",
            primary_key: &["id"],
        }],
    );

    // The run only coordinates: it records the load and waits for workers.
    let mut run = env
        .cmd()
        .args([
            "run",
            "ot",
            "many",
            "--release",
            "25.03",
            "--db",
            db.url(),
            "--workers",
            "0",
            "--heartbeat-timeout",
            "2s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready: Option<i64> = sqlx::query_scalar(
            "SELECT count(*) FROM psystem.work_units u JOIN psystem.loads l ON l.id = u.load_id \
             WHERE l.worker_spec IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .ok();
        if ready == Some(FILES as i64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not record its shared load"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let homes: Vec<Env> = (0..2).map(|_| Env::new()).collect();
    let mut workers: Vec<Child> = homes.iter().map(|h| h.spawn_worker(db.url())).collect();
    let victim = workers[0].id();
    support::wait_until_holding_a_unit(&pool, victim, 2, FILES as i64).await;
    workers[0].kill().unwrap(); // SIGKILL while it holds a file
    workers[0].wait().unwrap();
    assert!(support::wait_for(
        &mut workers[1],
        "the surviving worker",
        Duration::from_secs(180)
    )
    .success());
    let status = support::wait_for(&mut run, "the run", Duration::from_secs(120));
    let out = run.wait_with_output().unwrap();
    assert!(status.success(), "{}", text(&out));

    let rows = scalar(&pool, "SELECT count(*) FROM ot.many").await;
    assert_eq!(rows, FILES as i64 * ROWS_PER_FILE, "every row once");
    assert_eq!(
        scalar(&pool, "SELECT count(DISTINCT id) FROM ot.many").await,
        rows
    );
    let n = FILES as i64 * ROWS_PER_FILE;
    assert_eq!(
        scalar(&pool, "SELECT sum(id)::bigint FROM ot.many").await,
        n * (n - 1) / 2
    );
    let label: String = sqlx::query_scalar("SELECT label FROM ot.many WHERE id = 42")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(label, "row 42\twith a tab");
    let state: String = sqlx::query_scalar("SELECT state FROM psystem.loads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "completed");
    assert!(
        scalar(
            &pool,
            "SELECT count(*) FROM psystem.work_units WHERE attempts > 1"
        )
        .await
            >= 1,
        "the killed worker's file was taken over"
    );
    let by_coordinator = scalar(
        &pool,
        "SELECT count(*) FROM psystem.work_units WHERE worker IS NULL OR worker NOT LIKE '%/%'",
    )
    .await;
    assert_eq!(by_coordinator, 0, "every unit was copied by a worker");
    let verified = scalar(
        &pool,
        "SELECT count(*) FROM psystem.files WHERE status = 'verified'",
    )
    .await;
    assert!(verified >= FILES as i64);
}
