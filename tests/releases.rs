//! End-to-end tests of release loads (`psystem run` on a release plugin, `psystem releases verify|show`) through
//! the real binary, against a mirror of the real Open Targets fixture files served over HTTP, FTP and file://,
//! and a real PostgreSQL: the error paths (a corrupted byte, a tampered manifest, a truncated Parquet file, no
//! manifest), a cut connection, `kill -9` and Ctrl+C mid-load with resume, schema drift across releases, a hostile
//! column name, duplicate keys, the skip-unless-`--force` rule, verify and key suggestions.
//! They need `PSYSTEM_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` starts a cluster and sets it).

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{Field, Schema};
use psystem_testkit::db::TestDb;
use sqlx::{PgPool, Row};
use support::releases::*;
use support::Env;

async fn pool(db: &TestDb) -> PgPool {
    PgPool::connect(db.url()).await.unwrap()
}

async fn table_exists(pool: &PgPool, table: &str) -> bool {
    sqlx::query_scalar::<_, Option<String>>("SELECT to_regclass($1)::text")
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap()
        .is_some()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
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

/// Writes one Parquet file holding `batch`.
fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), *n != "id"))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

/// Adds a release `name` (layout ≥ 25.03) holding dataset `dataset` = `batch` to the mirror folder `root`.
fn add_release(root: &Path, name: &str, dataset: &str, batch: &RecordBatch) {
    let dir = root.join(name);
    write_parquet(
        &dir.join("output")
            .join(dataset)
            .join("part-00000-0b0e6a2c-c000.snappy.parquet"),
        batch,
    );
    std::fs::write(dir.join("output").join(dataset).join("_SUCCESS"), b"").unwrap();
    write_integrity(&dir).unwrap();
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// `psystem run ot target --release 25.03 --db <db>`.
fn target_run(db: &TestDb) -> [&str; 7] {
    [
        "run",
        "ot",
        "target",
        "--release",
        "25.03",
        "--db",
        db.url(),
    ]
}

/// Whether the completed load of `dataset` is recorded as verified.
async fn load_verified(pool: &PgPool, dataset: &str) -> bool {
    sqlx::query_scalar(
        "SELECT verified FROM psystem.loads WHERE dataset = $1 AND state = 'completed'",
    )
    .bind(dataset)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Completed loads of `dataset`.
async fn completed_loads(pool: &PgPool, dataset: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM psystem.loads WHERE dataset = $1 AND state = 'completed'",
    )
    .bind(dataset)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn target_entry() -> Entry<'static> {
    Entry {
        key: "target",
        dataset: "target",
        table: "target",
        mode: "replace",
        primary_key: &["id"],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_corrupted_byte_is_a_mismatch_and_nothing_is_loaded() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["target"])]).await;
    let file = mirror.parquet_file("25.03", OtLayout::Output, "target");
    let expected = psystem_testkit::opentargets::sha1_hex(&std::fs::read(&file).unwrap());
    flip_a_byte(&file);
    let computed = psystem_testkit::opentargets::sha1_hex(&std::fs::read(&file).unwrap());
    let db = TestDb::create().await;
    let env = Env::new();
    write_plugin(&env, &mirror.url(Via::Http), "ot", &[target_entry()]);

    let out = mirror.run(&env, &target_run(&db));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains(&expected) && all.contains(&computed),
        "names both digests: {all}"
    );
    assert!(all.contains("part-00161"), "names the file: {all}");

    let pool = pool(&db).await;
    assert!(!table_exists(&pool, "ot.target").await, "nothing loaded");
    let row = sqlx::query(
        "SELECT status, algorithm, expected, computed FROM psystem.files WHERE path LIKE '%part-00161%.parquet' \
         AND path NOT LIKE '%.crc'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("status"), "mismatch");
    assert_eq!(row.get::<String, _>("algorithm"), "sha1");
    assert_eq!(row.get::<String, _>("expected"), expected);
    assert_eq!(row.get::<String, _>("computed"), computed);
    let completed = completed_loads(&pool, "target").await;
    assert_eq!(completed, 0);

    // `releases verify` reports the same verdict and exits non-zero.
    let out = mirror.run(
        &env,
        &["releases", "verify", "ot", "25.03", "--db", db.url()],
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("mismatch"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_that_does_not_match_its_sha1_is_refused() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["target"])]).await;
    let manifest = mirror.release("25.03").join("release_data_integrity");
    let mut text_ = std::fs::read_to_string(&manifest).unwrap();
    text_.push_str("0000000000000000000000000000000000000000  ./output/target/extra.parquet\n");
    std::fs::write(&manifest, text_).unwrap();
    let db = TestDb::create().await;
    let env = Env::new();
    write_plugin(&env, &mirror.url(Via::Ftp), "ot", &[target_entry()]);
    let out = mirror.run(&env, &target_run(&db));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("release_data_integrity"),
        "names the manifest: {all}"
    );
    assert!(!table_exists(&pool(&db).await, "ot.target").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_parquet_file_is_a_clear_error_and_the_other_datasets_still_load() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["target", "interaction"])]).await;
    let file = mirror.parquet_file("25.03", OtLayout::Output, "target");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    // The manifest agrees with the truncated file: only the Parquet reader can notice.
    write_integrity(&mirror.release("25.03")).unwrap();
    let db = TestDb::create().await;
    let env = Env::new();
    let interaction = Entry {
        key: "interaction",
        dataset: "interaction",
        table: "interaction",
        mode: "replace",
        primary_key: &[],
    };
    write_plugin(
        &env,
        &mirror.url(Via::Http),
        "ot",
        &[target_entry(), interaction],
    );
    let out = mirror.run(
        &env,
        &[
            "run",
            "ot",
            "target",
            "interaction",
            "--release",
            "25.03",
            "--db",
            db.url(),
        ],
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("part-00161"), "names the file: {all}");
    assert!(
        all.to_lowercase().contains("parquet"),
        "says what is wrong: {all}"
    );
    assert!(all.contains("1 of 2 datasets failed"), "{all}");
    let pool = pool(&db).await;
    assert!(!table_exists(&pool, "ot.target").await);
    assert_eq!(count(&pool, "ot.interaction").await, 100);
    // No staging table is left behind.
    let staging: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'ot' AND tablename <> 'interaction'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(staging, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_without_a_manifest_loads_only_with_allow_unverified() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["target"])]).await;
    for f in ["release_data_integrity", "release_data_integrity.sha1"] {
        std::fs::remove_file(mirror.release("25.03").join(f)).unwrap();
    }
    let db = TestDb::create().await;
    let env = Env::new();
    write_plugin(&env, &mirror.url(Via::Http), "ot", &[target_entry()]);
    let args = target_run(&db);
    let out = mirror.run(&env, &args);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("--allow-unverified"),
        "says how to go on: {all}"
    );
    let pool = pool(&db).await;
    assert!(!table_exists(&pool, "ot.target").await);

    let out = mirror.run(&env, &[&args[..], &["--allow-unverified"]].concat());
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("UNVERIFIED"), "{all}");
    assert_eq!(count(&pool, "ot.target").await, 317);
    let verified = load_verified(&pool, "target").await;
    assert!(!verified, "the ledger says unverified");
    let statuses: Vec<String> = sqlx::query_scalar("SELECT DISTINCT status FROM psystem.files")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(statuses, vec!["unverified".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_file_md5_checksums_verify_a_release_without_a_manifest() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["target"])]).await;
    for f in ["release_data_integrity", "release_data_integrity.sha1"] {
        std::fs::remove_file(mirror.release("25.03").join(f)).unwrap();
    }
    let file = mirror.parquet_file("25.03", OtLayout::Output, "target");
    let md5_of = |path: &Path| {
        let mut h = psystem_sources::manifest::Algorithm::Md5.hasher();
        h.update(&std::fs::read(path).unwrap());
        h.finish()
    };
    let digest = md5_of(&file);
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let sidecar = file.with_file_name(format!("{name}.md5"));
    std::fs::write(&sidecar, format!("{digest}  {name}\n")).unwrap();
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(&env, &mirror.url(Via::Http), "ot", &[target_entry()]);
    let args = target_run(&db);
    let out = mirror.run(&env, &args);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("per-file checksum files (1 files, md5)"),
        "{all}"
    );
    assert_eq!(count(&pool, "ot.target").await, 317);
    let row: (String, String, String, String) = sqlx::query_as(
        "SELECT status, algorithm, expected, computed FROM psystem.files WHERE path LIKE '%.parquet'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "verified".into(),
            "md5".into(),
            digest.clone(),
            digest.clone()
        )
    );

    // A wrong digest in the sidecar: a mismatch naming both digests, nothing loaded.
    let wrong = "0123456789abcdef0123456789abcdef";
    std::fs::write(&sidecar, format!("{wrong}\n")).unwrap();
    let db = TestDb::create().await;
    let out = mirror.run(&env, &target_run(&db));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains(wrong) && all.contains(&digest), "{all}");
    assert!(!table_exists(&self::pool(&db).await, "ot.target").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_connection_resumes_from_the_partial_file_over_http_and_ftp() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["target"])]).await;
    let file = mirror.parquet_file("25.03", OtLayout::Output, "target");
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    for via in [Via::Http, Via::Ftp] {
        let db = TestDb::create().await;
        let env = Env::new();
        write_plugin(&env, &mirror.url(via), "ot", &[target_entry()]);
        match via {
            Via::Http => {
                mirror.http.clear_requests();
                mirror.http.cut_next_download_of(&name, 4096);
            }
            _ => mirror.ftp.cut_next_download_of(&name, 4096),
        }
        // The cut happens on the first data file fetched; psystem retries from the partial file.
        let out = mirror.run(&env, &target_run(&db));
        let all = text(&out);
        assert!(out.status.success(), "{via:?}: {all}");
        let pool = pool(&db).await;
        assert_eq!(count(&pool, "ot.target").await, 317, "{via:?}");
        let verified = load_verified(&pool, "target").await;
        assert!(verified, "{via:?}: verified after the resume");
        match via {
            Via::Http => {
                let resumed: Vec<_> = mirror
                    .http
                    .requests()
                    .into_iter()
                    .filter(|r| {
                        r.method == "GET" && r.range.as_deref().is_some_and(|x| x != "bytes=0-")
                    })
                    .collect();
                assert!(
                    !resumed.is_empty(),
                    "a Range request continued a download: {:?}",
                    mirror.http.requests()
                );
                assert!(
                    resumed.iter().any(|r| r.path.ends_with(&name)
                        && r.range
                            .as_deref()
                            .is_some_and(|x| x.starts_with("bytes=4096-"))),
                    "{resumed:?}"
                );
            }
            _ => {
                let restarts: Vec<_> = mirror
                    .ftp
                    .retrievals()
                    .into_iter()
                    .filter(|r| r.path.ends_with(&name) && r.offset == 4096)
                    .collect();
                assert!(
                    !restarts.is_empty(),
                    "a REST retrieval continued a download: {:?}",
                    mirror.ftp.retrievals()
                );
            }
        }
    }
}

/// A generated release big enough to stop mid-load: 8 files of `rows / 8` rows (dataset `bench_entity`).
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

/// Units of the dataset's current load that are done.
async fn units_done(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM psystem.work_units WHERE state = 'done'")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Starts psystem with `args` and waits until at least one work unit (of 8) is done and not all are.
async fn start_and_wait_for_a_unit(env: &Env, args: &[&str], pool: &PgPool) -> std::process::Child {
    let mut child = env
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
            panic!("psystem ended before a unit was done: {status:?}");
        }
        assert!(Instant::now() < deadline, "no unit done within 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_load_then_resume_ends_identical_to_a_clean_load() {
    let root = tempfile::tempdir().unwrap();
    generated_release(root.path(), "25.03", 160_000);
    let url = format!("file://{}/", root.path().display());
    let env = Env::new();
    write_plugin(&env, &url, "ot", &[bench_entry()]);

    // The clean load.
    let clean = TestDb::create().await;
    let out = env.run(&[
        "run",
        "ot",
        "entity",
        "--release",
        "25.03",
        "--workers",
        "1",
        "--db",
        clean.url(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let clean_pool = pool(&clean).await;
    let expected = digest(&clean_pool, "ot.entity", "id").await;
    assert_eq!(count(&clean_pool, "ot.entity").await, 160_000);

    // The killed one.
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
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_before: Vec<String> = sqlx::query_scalar(
        "SELECT unit_key FROM psystem.work_units WHERE state = 'done' ORDER BY unit_key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!done_before.is_empty() && done_before.len() < 8);
    assert!(
        !table_exists(&pool, "ot.entity").await,
        "the table appears only when the load finishes"
    );
    let status = std::fs::read_to_string(env.home.path().join("status.yaml")).unwrap();
    assert!(status.contains("ot/entity"), "{status}");

    let out = env.run(&["resume", "ot/entity", "--db", db.url()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&pool, "ot.entity").await, 160_000);
    assert_eq!(digest(&pool, "ot.entity", "id").await, expected);
    // The units done before the kill were not copied again.
    let attempts: Vec<i32> = sqlx::query_scalar(
        "SELECT attempts FROM psystem.work_units WHERE unit_key = ANY($1) ORDER BY unit_key",
    )
    .bind(&done_before)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(attempts.iter().all(|a| *a == 1), "{attempts:?}");
    let loads: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, rows_inserted FROM psystem.loads WHERE dataset = 'bench_entity' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(loads.last().unwrap(), &("completed".to_string(), 160_000));
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_pauses_at_a_unit_boundary_and_resume_completes() {
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
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit 3 = paused: {}",
        text(&out)
    );
    let status = env.status();
    let job = &status["jobs"]["ot/entity"];
    assert_eq!(job["state"].as_str(), Some("paused"), "{status:?}");
    let done = units_done(&pool).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(units_done(&pool).await, done, "nothing runs while paused");

    let out = env.run(&["resume", "--db", db.url()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&pool, "ot.entity").await, 160_000);
    assert_eq!(
        env.status()["jobs"]["ot/entity"]["state"].as_str(),
        Some("completed")
    );
}

fn drift_batch(n: ArrayRef, f: ArrayRef, last: (&str, &[Option<&str>])) -> RecordBatch {
    batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        ("n", n),
        ("f", f),
        (
            last.0,
            Arc::new(StringArray::from(last.1.to_vec())) as ArrayRef,
        ),
    ])
}

async fn column_types(pool: &PgPool, table: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'ot' AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_drift_across_releases_adds_widens_keeps_and_refuses() {
    let root = tempfile::tempdir().unwrap();
    add_release(
        root.path(),
        "25.03",
        "drift",
        &drift_batch(
            Arc::new(Int32Array::from(vec![10, 20, 30])),
            Arc::new(Float32Array::from(vec![0.5, 1.5, 2.5])),
            ("gone", &[Some("a"), Some("b"), Some("c")]),
        ),
    );
    add_release(
        root.path(),
        "25.06",
        "drift",
        &batch(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2, 4])) as ArrayRef),
            ("n", Arc::new(Int64Array::from(vec![10, 5_000_000_000, 40]))),
            ("f", Arc::new(Float64Array::from(vec![0.5, 1.25, 4.125]))),
            (
                "added",
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])),
            ),
        ]),
    );
    // 25.09: `n` becomes boolean — neither type widens to the other.
    add_release(
        root.path(),
        "25.09",
        "drift",
        &batch(vec![
            ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("n", Arc::new(arrow_array::BooleanArray::from(vec![true]))),
            ("f", Arc::new(Float64Array::from(vec![0.5]))),
            ("added", Arc::new(StringArray::from(vec!["x"]))),
        ]),
    );
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    let entry = Entry {
        key: "drift",
        dataset: "drift",
        table: "drift",
        mode: "merge",
        primary_key: &["id"],
    };
    write_plugin(
        &env,
        &format!("file://{}/", root.path().display()),
        "ot",
        &[entry],
    );
    let run = |release: &str, extra: &[&str]| {
        let mut args = vec!["run", "ot", "drift", "--release", release, "--db", db.url()];
        args.extend_from_slice(extra);
        env.run(&args)
    };

    let out = run("25.03", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        column_types(&pool, "drift").await,
        vec![
            ("id".into(), "bigint".into()),
            ("n".into(), "integer".into()),
            ("f".into(), "real".into()),
            ("gone".into(), "text".into()),
            ("psystem_row_hash".into(), "bigint".into())
        ]
    );

    let out = run("25.06", &[]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("new columns: added"), "{all}");
    assert!(all.contains("n widened"), "{all}");
    assert!(
        all.contains("gone"),
        "reports the column that disappeared: {all}"
    );
    assert_eq!(
        column_types(&pool, "drift").await,
        vec![
            ("id".into(), "bigint".into()),
            ("n".into(), "bigint".into()),
            ("f".into(), "double precision".into()),
            ("gone".into(), "text".into()),
            ("psystem_row_hash".into(), "bigint".into()),
            ("added".into(), "text".into())
        ]
    );
    type DriftRow = (i64, i64, f64, Option<String>, Option<String>);
    let rows: Vec<DriftRow> =
        sqlx::query_as("SELECT id, n, f, gone, added FROM ot.drift ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            (1, 10, 0.5, Some("a".into()), Some("x".into())),
            (2, 5_000_000_000, 1.25, Some("b".into()), None),
            (4, 40, 4.125, None, Some("z".into())),
        ],
        "merged: 3 deleted, 4 inserted, 1 and 2 updated; `gone` keeps its values, NULL for the new row"
    );

    let before = digest(&pool, "ot.drift", "id").await;
    let out = run("25.09", &[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("`n`") || all.contains(" n "),
        "names the column: {all}"
    );
    assert!(
        all.contains("bigint") && all.contains("boolean"),
        "names both types: {all}"
    );
    assert!(all.contains("--allow-casts"), "{all}");
    assert_eq!(
        digest(&pool, "ot.drift", "id").await,
        before,
        "nothing changed"
    );
    assert_eq!(
        column_types(&pool, "drift").await[1],
        ("n".into(), "bigint".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_column_name_loads_as_a_column_of_that_name() {
    let hostile = "a\"; DROP TABLE x; --";
    let root = tempfile::tempdir().unwrap();
    add_release(
        root.path(),
        "25.03",
        "hostile",
        &batch(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (hostile, Arc::new(StringArray::from(vec!["one", "two"]))),
        ]),
    );
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    sqlx::query("CREATE TABLE x (keep int)")
        .execute(&pool)
        .await
        .unwrap();
    let env = Env::new();
    let entry = Entry {
        key: "hostile",
        dataset: "hostile",
        table: "hostile",
        mode: "replace",
        primary_key: &["id"],
    };
    write_plugin(
        &env,
        &format!("file://{}/", root.path().display()),
        "ot",
        &[entry],
    );
    let out = env.run(&[
        "run",
        "ot",
        "hostile",
        "--release",
        "25.03",
        "--db",
        db.url(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(table_exists(&pool, "public.x").await, "x is still there");
    let cols: Vec<String> = column_types(&pool, "hostile")
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(
        cols,
        vec![
            "id".to_string(),
            hostile.to_string(),
            "psystem_row_hash".to_string()
        ]
    );
    let values: Vec<String> =
        sqlx::query_scalar("SELECT \"a\"\"; DROP TABLE x; --\" FROM ot.hostile ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(values, vec!["one", "two"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_keys_are_reported_with_examples_and_nothing_is_loaded() {
    let root = tempfile::tempdir().unwrap();
    add_release(
        root.path(),
        "25.03",
        "dups",
        &batch(vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 2, 3, 3])) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from(vec!["a", "b", "c", "b2", "c2", "c3"])),
            ),
        ]),
    );
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    // Twice with replace (the second run meets the first's failed load), then with merge (--restart: a new mode).
    for (mode, extra) in [
        ("replace", None),
        ("replace", None),
        ("merge", Some("--restart")),
    ] {
        let entry = Entry {
            key: "dups",
            dataset: "dups",
            table: "dups",
            mode,
            primary_key: &["id"],
        };
        write_plugin(
            &env,
            &format!("file://{}/", root.path().display()),
            "ot",
            &[entry],
        );
        let mut args = vec!["run", "ot", "dups", "--release", "25.03", "--db", db.url()];
        args.extend(extra);
        let out = env.run(&args);
        let all = text(&out);
        assert!(!out.status.success(), "{mode}: {all}");
        assert!(all.contains("more than once"), "{mode}: {all}");
        assert!(
            all.contains("(3) ×3") && all.contains("(2) ×2"),
            "{mode}: examples: {all}"
        );
        assert!(!table_exists(&pool, "ot.dups").await, "{mode}");
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'ot'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(left, 0, "{mode}: no staging table is left behind");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loaded_release_is_skipped_unless_forced() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["target"])]).await;
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(&env, &mirror.url(Via::Gcs), "ot", &[target_entry()]);
    let args = target_run(&db);
    let out = mirror.run(&env, &args);
    assert!(out.status.success(), "{}", text(&out));
    let out = mirror.run(&env, &args);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("skipped"), "{all}");
    let out = mirror.run(&env, &[&args[..], &["--force"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let loads = completed_loads(&pool, "target").await;
    assert_eq!(
        loads, 2,
        "the skipped run loaded nothing, --force loaded again"
    );
    assert_eq!(count(&pool, "ot.target").await, 317);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_records_every_file_and_suggest_keys_finds_the_unique_ones() {
    let mirror = Mirror::start(&[
        ("24.09", OtLayout::EtlParquet, &["target", "disease"]),
        ("25.03", OtLayout::Output, &["target", "disease"]),
    ])
    .await;
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(&env, &mirror.url(Via::Ftp), "ot", &[target_entry()]);
    let out = mirror.run(
        &env,
        &["releases", "verify", "ot", "24.09", "--db", db.url()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let manifest =
        std::fs::read_to_string(mirror.release("24.09").join("release_data_integrity")).unwrap();
    let recorded: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT path, expected, computed FROM psystem.files WHERE release = '24.09' AND status = 'verified' ORDER BY path",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(recorded.len(), manifest.lines().count(), "{recorded:?}");
    for (path, expected, computed) in &recorded {
        assert_eq!(expected, computed, "{path}");
        assert!(
            manifest.contains(&format!("{expected}  ./{}", path.trim_start_matches("./"))),
            "{path}"
        );
    }

    let out = mirror.run(
        &env,
        &[
            "--json",
            "releases",
            "show",
            "ot",
            "25.03",
            "--suggest-keys",
            "--dataset",
            "target",
            "--dataset",
            "disease",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys_of = |name: &str| -> Vec<Vec<String>> {
        let d = v["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {v}"));
        d["keys"]["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("keys of {name}: {d}"))
            .iter()
            .map(|k| serde_json::from_value(k["columns"].clone()).unwrap())
            .collect()
    };
    assert!(keys_of("target").contains(&vec!["id".to_string()]), "{v}");
    assert!(keys_of("disease").contains(&vec!["id".to_string()]), "{v}");
    // Columns with repeats or NULLs are rejected, with the reason.
    let rejected = v["datasets"][0]["keys"]["rejected"].to_string();
    assert!(
        rejected.contains("approvedSymbol") && rejected.contains("Y_RNA"),
        "{rejected}"
    );
    assert!(
        rejected.contains("canonicalTranscript_id") && rejected.contains("NULL"),
        "{rejected}"
    );
}
