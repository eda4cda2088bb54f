//! End-to-end tests of how a release's checksum manifest governs a load, through the real `psystem` binary,
//! against a local mirror of the real Open Targets fixture files (and the UniProt fixture mirror) and a real
//! PostgreSQL (issue 13, cases 2, 10, 16 and 19):
//! - a file the manifest lists under a dataset but the mirror lacks fails the dataset naming the file, records
//!   `missing` in `psystem.files` and leaves the table as it was (replace and merge); `releases verify` agrees;
//! - a file the manifest does not list is refused like a release without a manifest, and loads (unverified) only
//!   with `--allow-unverified` — for Open Targets and for UniProt's `RELEASE.metalink`;
//! - `releases verify --dataset target` on a ≤ 24.09 release finds the dataset by the entry's aliases;
//! - files of one dataset with different schemas: the error names both files, every differing column and both
//!   its types.
//!
//! They need `PSYSTEM_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` starts a cluster and sets it).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use psystem_testkit::db::TestDb;
use sqlx::PgPool;
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

/// A digest of a table's content ordered by `order` (every column, as text).
async fn digest(pool: &PgPool, table: &str, order: &str) -> String {
    sqlx::query_scalar(&format!(
        "SELECT coalesce(md5(string_agg(t::text, E'\\n' ORDER BY {order})), '') FROM {table} t"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The verdict recorded in `psystem.files` for the file of `release` whose path contains `needle`.
async fn file_status(pool: &PgPool, release: &str, needle: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT status FROM psystem.files WHERE release = $1 AND path LIKE '%' || $2 || '%'",
    )
    .bind(release)
    .bind(needle)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Loads of `dataset` from `release` in state `state`.
async fn loads(pool: &PgPool, release: &str, dataset: &str, state: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM psystem.loads WHERE release = $1 AND dataset = $2 AND state = $3",
    )
    .bind(release)
    .bind(dataset)
    .bind(state)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Reads every row of a Parquet file as one batch.
fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap();
    let mut batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 1, "{path:?}: one batch");
    batches.pop().unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// The name of the second part file [`split_in_two`] writes.
const SECOND_PART: &str = "part-00162-0b0e6a2c-7d1e-4c35-9a51-1f0c2d3e4f50-c000.snappy.parquet";

/// Splits the Parquet file `file` into itself (its first `first_rows` rows) and [`SECOND_PART`] beside it (the
/// rest), as Spark writes a dataset in several part files. Returns the second file.
fn split_in_two(file: &Path, first_rows: usize) -> PathBuf {
    let all = read_parquet(file);
    assert!(
        all.num_rows() > first_rows,
        "{file:?} has {} rows",
        all.num_rows()
    );
    let second = file.with_file_name(SECOND_PART);
    write_parquet(file, &all.slice(0, first_rows));
    write_parquet(&second, &all.slice(first_rows, all.num_rows() - first_rows));
    second
}

/// Removes the lines naming `needle` from the release's `release_data_integrity` and rewrites its `.sha1`, so
/// that the manifest (still matching its `.sha1`) does not list that file.
fn unlist(release_dir: &Path, needle: &str) {
    let path = release_dir.join("release_data_integrity");
    let text: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, &text).unwrap();
    std::fs::write(
        release_dir.join("release_data_integrity.sha1"),
        format!(
            "{}  release_data_integrity\n",
            psystem_testkit::opentargets::sha1_hex(text.as_bytes())
        ),
    )
    .unwrap();
}

fn target_entry(mode: &'static str) -> Entry<'static> {
    Entry {
        key: "target",
        dataset: "target",
        table: "target",
        mode,
        primary_key: &["id"],
    }
}

fn run_args<'a>(release: &'a str, db: &'a TestDb, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "ot",
        "target",
        "--release",
        release,
        "--db",
        db.url(),
    ];
    args.extend_from_slice(extra);
    args
}

/// Case 2: 25.03 and 25.06 hold `target` in two part files (200 + 117 rows); 25.06's manifest lists both but the
/// mirror lost the second. Loading 25.06 over a complete 25.03 table must fail naming the file, record it
/// `missing`, and change nothing — in replace and in merge mode; `releases verify` says the same and fails.
/// (Before the fix the replace exited 0 with 200 rows, verified, and the merge deleted 117 rows.)
#[tokio::test(flavor = "multi_thread")]
async fn a_file_the_manifest_lists_but_the_mirror_lacks_fails_the_dataset_and_changes_nothing() {
    let mirror = Mirror::start(&[
        ("25.03", OtLayout::Output, &["target"]),
        ("25.06", OtLayout::Output, &["target"]),
    ])
    .await;
    let mut lost = PathBuf::new();
    for release in ["25.03", "25.06"] {
        let file = mirror.parquet_file(release, OtLayout::Output, "target");
        lost = split_in_two(&file, 200);
        write_integrity(&mirror.release(release)).unwrap();
    }
    // The manifest of 25.06 lists the second part; the server no longer has it.
    std::fs::remove_file(&lost).unwrap();
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();

    for (mode, via) in [("replace", Via::Http), ("merge", Via::File)] {
        write_plugin(&env, &mirror.url(via), "ot", &[target_entry(mode)]);
        let out = mirror.run(&env, &run_args("25.03", &db, &["--force"]));
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(count(&pool, "ot.target").await, 317);
        let before = digest(&pool, "ot.target", "id").await;
        sqlx::query("DELETE FROM psystem.files WHERE release = '25.06'")
            .execute(&pool)
            .await
            .unwrap();

        let out = mirror.run(&env, &run_args("25.06", &db, &[]));
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{mode}: {all}");
        assert!(all.contains(SECOND_PART), "{mode}: names the file: {all}");
        assert!(
            all.contains("not in the release folder"),
            "{mode}: says what is wrong: {all}"
        );
        let streams = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!streams.contains("Some("), "{mode}: no debug text: {all}");
        assert_eq!(
            file_status(&pool, "25.06", SECOND_PART).await.as_deref(),
            Some("missing"),
            "{mode}"
        );
        assert_eq!(count(&pool, "ot.target").await, 317, "{mode}");
        assert_eq!(digest(&pool, "ot.target", "id").await, before, "{mode}");
        assert_eq!(
            loads(&pool, "25.06", "target", "completed").await,
            0,
            "{mode}"
        );
    }

    // `releases verify` reports the missing file and exits non-zero, also when the dataset is named.
    for extra in [&[][..], &["--dataset", "target"][..]] {
        let mut args = vec!["releases", "verify", "ot", "25.06", "--db", db.url()];
        args.extend_from_slice(extra);
        let out = mirror.run(&env, &args);
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(
            all.contains("missing") && all.contains(SECOND_PART),
            "{all}"
        );
        assert!(all.contains("1 missing"), "{all}");
    }
    // The complete release verifies.
    let out = mirror.run(&env, &["releases", "verify", "ot", "25.03"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Case 10: a file of the dataset that the manifest does not list is refused (naming it, suggesting
/// `--allow-unverified`), as a release without a manifest is; with `--allow-unverified` it loads, unverified.
/// (Before the fix it loaded without the flag, exit 0.)
#[tokio::test(flavor = "multi_thread")]
async fn a_file_the_manifest_does_not_list_loads_only_with_allow_unverified() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["target"])]).await;
    let file = mirror.parquet_file("25.03", OtLayout::Output, "target");
    split_in_two(&file, 200);
    write_integrity(&mirror.release("25.03")).unwrap();
    unlist(&mirror.release("25.03"), SECOND_PART);
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(
        &env,
        &mirror.url(Via::Http),
        "ot",
        &[target_entry("replace")],
    );

    let out = mirror.run(&env, &run_args("25.03", &db, &[]));
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains(SECOND_PART), "names the file: {all}");
    assert!(all.contains("not listed"), "says why: {all}");
    assert!(
        all.contains("--allow-unverified"),
        "says how to go on: {all}"
    );
    assert!(!table_exists(&pool, "ot.target").await, "nothing loaded");
    assert_eq!(
        file_status(&pool, "25.03", SECOND_PART).await.as_deref(),
        Some("unverified")
    );

    // `releases verify` says the same and fails.
    let out = mirror.run(&env, &["releases", "verify", "ot", "25.03"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("not listed in release_data_integrity"),
        "{all}"
    );
    assert!(all.contains("1 not in the manifest"), "{all}");

    let out = mirror.run(&env, &run_args("25.03", &db, &["--allow-unverified"]));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("UNVERIFIED"), "{all}");
    assert_eq!(count(&pool, "ot.target").await, 317);
    let verified: bool = sqlx::query_scalar(
        "SELECT verified FROM psystem.loads WHERE dataset = 'target' AND state = 'completed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!verified, "the ledger says unverified");
    assert_eq!(
        file_status(&pool, "25.03", SECOND_PART).await.as_deref(),
        Some("unverified")
    );
    assert_eq!(
        file_status(&pool, "25.03", "part-00161").await.as_deref(),
        Some("verified")
    );
}

/// Case 10 for UniProt: `RELEASE.metalink` that does not list `uniprot_sprot.dat.gz` refuses the load, naming the
/// file; `--allow-unverified` loads it, recorded unverified.
#[tokio::test(flavor = "multi_thread")]
async fn a_uniprot_file_the_metalink_does_not_list_loads_only_with_allow_unverified() {
    use psystem_testkit::uniprot::{MirrorRelease, UniprotMirror};
    let dir = tempfile::tempdir().unwrap();
    let release = MirrorRelease::from_fixtures("2024_01").unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[release]).unwrap();
    let metalink = mirror.release_dir("2024_01").join("RELEASE.metalink");
    let xml = std::fs::read_to_string(&metalink).unwrap();
    let start = xml
        .find("<file name=\"uniprot_sprot.dat.gz\">")
        .expect("the metalink lists sprot");
    let end = start + xml[start..].find("</file>").unwrap() + "</file>".len();
    std::fs::write(&metalink, format!("{}{}", &xml[..start], &xml[end..])).unwrap();
    let server = mirror.serve().await.unwrap();
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    let url = server.base_url();
    let args = ["run", "uniprot", "--source-url", &url, "--db", db.url()];

    let out = env.run(&args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("uniprot_sprot.dat.gz"),
        "names the file: {all}"
    );
    assert!(
        all.contains("RELEASE.metalink"),
        "names the manifest: {all}"
    );
    assert!(
        all.contains("--allow-unverified"),
        "says how to go on: {all}"
    );
    assert!(
        !table_exists(&pool, "uniprot.protein").await,
        "nothing loaded"
    );

    let out = env.run(&[&args[..], &["--allow-unverified"]].concat());
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(count(&pool, "uniprot.protein").await > 0, "{all}");
    assert_eq!(
        file_status(&pool, "2024_01", "uniprot_sprot.dat.gz")
            .await
            .as_deref(),
        Some("unverified")
    );
}

/// Case 19: `releases verify … --dataset target` on a ≤ 24.09 release, where the folder is `targets`, finds it by
/// the entry's aliases (as `run` does) and checks its files. (Before the fix: "no dataset target".)
#[tokio::test(flavor = "multi_thread")]
async fn verify_of_an_old_release_finds_the_dataset_by_its_aliases() {
    let mirror = Mirror::start(&[("24.09", OtLayout::EtlParquet, &["target", "disease"])]).await;
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(
        &env,
        &mirror.url(Via::Http),
        "ot",
        &[target_entry("replace")],
    );
    let out = mirror.run(
        &env,
        &[
            "--json",
            "releases",
            "verify",
            "ot",
            "24.09",
            "--dataset",
            "target",
            "--db",
            db.url(),
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let file = mirror.parquet_file("24.09", OtLayout::EtlParquet, "target");
    let expected = file
        .strip_prefix(mirror.release("24.09"))
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert_eq!(
        paths,
        vec![expected.as_str()],
        "only the targets files: {all}"
    );
    assert!(
        report["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["status"] == "verified"),
        "{all}"
    );
    assert_eq!(
        file_status(&pool, "24.09", "targets/part-")
            .await
            .as_deref(),
        Some("verified")
    );
    // `run` loads the same dataset under the same name.
    let out = mirror.run(&env, &run_args("24.09", &db, &[]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&pool, "ot.target").await, 317);
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

/// Case 16: two files of one dataset, the second with `score` as text instead of a double and an extra column
/// `note`: the error names both files, both columns and both types of `score`; nothing is loaded.
/// (Before the fix: "it has 3 columns, the dataset has 2", naming neither column nor the first file.)
#[tokio::test(flavor = "multi_thread")]
async fn files_with_different_schemas_are_refused_naming_the_columns_types_and_files() {
    let mirror = Mirror::start(&[]).await;
    let folder = mirror.release("25.03").join("output/scores");
    let first = "part-00000-aaaa-c000.snappy.parquet";
    let second = "part-00001-bbbb-c000.snappy.parquet";
    write_parquet(
        &folder.join(first),
        &batch(vec![
            (
                "id",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            ("score", Arc::new(Float64Array::from(vec![0.5, 0.25]))),
        ]),
    );
    write_parquet(
        &folder.join(second),
        &batch(vec![
            ("id", Arc::new(StringArray::from(vec!["c"])) as ArrayRef),
            ("score", Arc::new(StringArray::from(vec!["high"]))),
            ("note", Arc::new(StringArray::from(vec!["x"]))),
        ]),
    );
    write_integrity(&mirror.release("25.03")).unwrap();
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let env = Env::new();
    write_plugin(
        &env,
        &mirror.url(Via::File),
        "ot",
        &[Entry {
            key: "scores",
            dataset: "scores",
            table: "scores",
            mode: "replace",
            primary_key: &["id"],
        }],
    );
    let out = mirror.run(
        &env,
        &[
            "run",
            "ot",
            "scores",
            "--release",
            "25.03",
            "--db",
            db.url(),
        ],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(first) && all.contains(second),
        "both files: {all}"
    );
    assert!(
        all.contains("column score is Float64 in") && all.contains("but Utf8 in"),
        "the column and both types: {all}"
    );
    assert!(
        all.contains("column note (Utf8)"),
        "the extra column: {all}"
    );
    assert!(!table_exists(&pool, "ot.scores").await, "nothing loaded");
}
