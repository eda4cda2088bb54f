//! `psystem run --dry-run` of release plugins, through the real binary (issue 13, case 1): an Open Targets release
//! (Parquet files this test writes, with a real `release_data_integrity`) and a UniProt release (the fixture
//! entries served by the UniProt mirror over HTTP), into a real PostgreSQL.
//!
//! - a dry run writes nothing to the database: a `pg_dump` before and after is identical (no table, no staging
//!   table, no ledger row, no sequence moved), first load and over a loaded table alike;
//! - it reports per dataset the rows that would be inserted, updated and deleted, counted here from the data
//!   itself (and checked against what the real load then reports);
//! - `--output DIR` writes what would be loaded (row count checked by reading the file back);
//! - options that do not apply to a plugin's kind are refused with exit code 2, naming the option.
//!
//! They need `PSYSTEM_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` starts a cluster and sets it).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use psystem_testkit::db::TestDb;
use psystem_testkit::opentargets::write_integrity;
use psystem_testkit::uniprot::{MirrorRelease, UniprotMirror};
use serde_json::Value;
use sqlx::Row;
use support::{text, Env};

/// `pg_dump` of the database at `url` (schema and data), without the `\restrict`/`\unrestrict` lines whose random
/// key newer pg_dump versions write (so that two dumps of the same database compare equal).
fn pg_dump(url: &str) -> String {
    let out = std::process::Command::new("/usr/bin/pg_dump")
        .args(["--no-password", "-d", url])
        .output()
        .expect("run /usr/bin/pg_dump");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Asserts that two dumps are the same, showing the first differing lines otherwise.
fn assert_same_dump(before: &str, after: &str, what: &str) {
    if before != after {
        let diff: Vec<String> = after
            .lines()
            .filter(|l| !before.lines().any(|b| b == *l))
            .take(20)
            .map(str::to_string)
            .collect();
        panic!(
            "{what}: the database changed; new lines in the dump:\n{}",
            diff.join("\n")
        );
    }
}

/// The rows of one release of the test dataset: id → (score, label).
type Rows = BTreeMap<String, (i64, String)>;

fn release_rows(first: bool) -> Rows {
    let mut rows = Rows::new();
    for i in 0..20 {
        rows.insert(format!("T{i:02}"), (i, format!("label {i}")));
    }
    if first {
        return rows;
    }
    // The next release: 5 removed, 3 changed, 6 new, the rest unchanged.
    for i in 0..5 {
        rows.remove(&format!("T{i:02}"));
    }
    for i in 5..8 {
        rows.insert(format!("T{i:02}"), (i * 100, format!("label {i}, revised")));
    }
    for i in 0..6 {
        rows.insert(format!("N{i:02}"), (1000 + i, format!("new {i}")));
    }
    rows
}

/// What a merge (or a replace, counted by key) of `new` over `old` changes: (inserted, updated, deleted).
fn changes(old: &Rows, new: &Rows) -> (u64, u64, u64) {
    let inserted = new.keys().filter(|k| !old.contains_key(*k)).count() as u64;
    let updated = new
        .iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
        .count() as u64;
    let deleted = old.keys().filter(|k| !new.contains_key(*k)).count() as u64;
    (inserted, updated, deleted)
}

/// Writes release `name` (layout ≥ 25.03) with dataset `things` = `rows` in one Parquet file, and its manifest.
fn write_release(root: &Path, name: &str, rows: &Rows) {
    let dir = root.join(name);
    let data = dir.join("output/things");
    std::fs::create_dir_all(&data).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("score", DataType::Int64, true),
        Field::new("label", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.keys())),
            Arc::new(Int64Array::from_iter_values(rows.values().map(|v| v.0))),
            Arc::new(StringArray::from_iter_values(
                rows.values().map(|v| v.1.as_str()),
            )),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(data.join("part-00000.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    write_integrity(&dir).unwrap();
}

/// A release plugin `ot` over the folder `root`, entry `things` into `ot.things` keyed by `id`, mode replace.
fn write_ot_plugin(env: &Env, root: &Path) {
    env.add_plugin(
        "ot",
        &format!(
            "name: ot\ncreator: tests\ndescription: dry run test releases\nenabled: true\nrun: things\nsource:\n  \
             kind: release\n  provider: opentargets\n  url: file://{}/\netl:\n  things:\n    dataset: things\n    \
             destination:\n      postgres:\n        schema: ot\n        table: things\n        mode: replace\n        \
             primary_key: [id]\n",
            root.display()
        ),
    );
}

/// The one dataset report of a `--json` dry run.
fn report(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", text(out)));
    let list = doc
        .as_array()
        .unwrap_or_else(|| panic!("not a list of reports: {doc}"));
    assert_eq!(list.len(), 1, "{doc}");
    list[0].clone()
}

fn counts(r: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| {
        r["report"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {r}"))
    };
    (n("rows"), n("inserted"), n("updated"), n("deleted"))
}

fn parquet_rows(path: &Path) -> usize {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_targets_first_load_dry_run_writes_nothing_and_reports_every_row() {
    let mirror = tempfile::tempdir().unwrap();
    let rows = release_rows(true);
    write_release(mirror.path(), "25.03", &rows);
    let db = TestDb::create().await;
    let env = Env::new();
    write_ot_plugin(&env, mirror.path());
    let out_dir = tempfile::tempdir().unwrap();

    let before = pg_dump(db.url());
    let out = env.run(&[
        "run",
        "ot",
        "things",
        "--dry-run",
        "--db",
        db.url(),
        "--json",
        "--output",
        out_dir.path().to_str().unwrap(),
    ]);
    let r = report(&out);
    assert_same_dump(&before, &pg_dump(db.url()), "dry run of a first load");
    assert_eq!(r["job"], "ot/things", "{r}");
    assert_eq!(r["report"]["table_exists"], false, "{r}");
    let n = rows.len() as u64;
    assert_eq!(counts(&r), (n, n, 0, 0), "{r}");
    let written = out_dir.path().join("things.parquet");
    assert_eq!(r["output"], written.display().to_string(), "{r}");
    assert_eq!(parquet_rows(&written), rows.len());
    assert!(
        !env.home.path().join("status.yaml").exists()
            || !std::fs::read_to_string(env.home.path().join("status.yaml"))
                .unwrap()
                .contains("ot/things"),
        "a dry run leaves status.yaml alone"
    );

    // CSV, in text mode: the same rows, and the report says nothing was written.
    let csv_dir = tempfile::tempdir().unwrap();
    let out = env.run(&[
        "run",
        "ot",
        "--dry-run",
        "--db",
        db.url(),
        "--output",
        csv_dir.path().to_str().unwrap(),
        "--output-format",
        "csv",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing was written"),
        "{}",
        text(&out)
    );
    let csv = std::fs::read_to_string(csv_dir.path().join("things.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        rows.len() + 1,
        "header + one line per row:\n{csv}"
    );
    assert_same_dump(
        &before,
        &pg_dump(db.url()),
        "dry run with --output-format csv",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_targets_dry_run_over_a_loaded_table_counts_replace_and_merge() {
    let mirror = tempfile::tempdir().unwrap();
    let (old, new) = (release_rows(true), release_rows(false));
    write_release(mirror.path(), "25.03", &old);
    write_release(mirror.path(), "25.06", &new);
    let db = TestDb::create().await;
    let env = Env::new();
    write_ot_plugin(&env, mirror.path());

    let out = env.run(&["run", "ot", "--release", "25.03", "--db", db.url()]);
    assert!(out.status.success(), "{}", text(&out));
    let before = pg_dump(db.url());
    let expected = changes(&old, &new);
    assert!(
        expected.0 > 0 && expected.1 > 0 && expected.2 > 0,
        "{expected:?}"
    );
    let n = new.len() as u64;

    // Replace: the new release's rows, compared with the table by key.
    let out = env.run(&[
        "run",
        "ot",
        "--release",
        "25.06",
        "--dry-run",
        "--db",
        db.url(),
        "--json",
    ]);
    let r = report(&out);
    assert_same_dump(&before, &pg_dump(db.url()), "dry run of a replace");
    assert_eq!(r["report"]["mode"], "replace", "{r}");
    assert_eq!(r["report"]["table_exists"], true, "{r}");
    assert_eq!(counts(&r), (n, expected.0, expected.1, expected.2), "{r}");

    // Merge, with --output: the same changes; the file holds the release's rows.
    let out_dir = tempfile::tempdir().unwrap();
    let out = env.run(&[
        "run",
        "ot",
        "--release",
        "25.06",
        "--mode",
        "merge",
        "--dry-run",
        "--db",
        db.url(),
        "--json",
        "--output",
        out_dir.path().to_str().unwrap(),
    ]);
    let r = report(&out);
    assert_same_dump(&before, &pg_dump(db.url()), "dry run of a merge");
    assert_eq!(r["report"]["mode"], "merge", "{r}");
    assert_eq!(counts(&r), (n, expected.0, expected.1, expected.2), "{r}");
    assert_eq!(
        parquet_rows(&out_dir.path().join("things.parquet")),
        new.len()
    );

    // The real merge changes exactly what the dry run said.
    let out = env.run(&[
        "run",
        "ot",
        "--release",
        "25.06",
        "--mode",
        "merge",
        "--db",
        db.url(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let ledger = sqlx::query(
        "SELECT rows_inserted, rows_updated, rows_deleted FROM psystem.loads WHERE release = '25.06' \
         AND state = 'completed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let got = (
        ledger.get::<i64, _>("rows_inserted") as u64,
        ledger.get::<i64, _>("rows_updated") as u64,
        ledger.get::<i64, _>("rows_deleted") as u64,
    );
    assert_eq!(got, expected, "the real merge");
    let table: i64 = sqlx::query_scalar("SELECT count(*) FROM ot.things")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(table as usize, new.len());
    pool.close().await;

    // The dump does see a real load (so the comparisons above can fail).
    assert_ne!(
        before,
        pg_dump(db.url()),
        "the real merge shows in the dump"
    );

    // The release is loaded now: a dry run says a run would skip it, and changes nothing either.
    let before = pg_dump(db.url());
    let out = env.run(&[
        "run",
        "ot",
        "--release",
        "25.06",
        "--dry-run",
        "--db",
        db.url(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already loaded"),
        "{}",
        text(&out)
    );
    assert_same_dump(&before, &pg_dump(db.url()), "dry run of a loaded release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniprot_dry_run_writes_nothing_and_counts_entries() {
    let dir = tempfile::tempdir().unwrap();
    let first = MirrorRelease::from_fixtures("2024_01").unwrap();
    let (second, change) = first.successor("2024_02").unwrap();
    let mirror = UniprotMirror::build(dir.path(), &[first.clone(), second.clone()]).unwrap();
    let server = mirror.serve().await.unwrap();
    let url = server.base_url();
    let db = TestDb::create().await;
    let env = Env::new();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "uniprot",
            "--source-url",
            url.as_str(),
            "--db",
            db.url(),
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };

    // First load.
    let before = pg_dump(db.url());
    let r = report(&run(&["--release", "2024_01", "--dry-run", "--json"]));
    assert_same_dump(
        &before,
        &pg_dump(db.url()),
        "UniProt dry run of a first load",
    );
    let n = first.sprot.len() as u64;
    assert_eq!(counts(&r), (n, n, 0, 0), "{r}");
    assert_eq!(r["report"]["table"], "uniprot.protein", "{r}");

    // Over a loaded release: the next one's changes, counted from the mirror's edits.
    let out = run(&["--release", "2024_01"]);
    assert!(out.status.success(), "{}", text(&out));
    let before = pg_dump(db.url());
    let r = report(&run(&["--dry-run", "--json"]));
    assert_same_dump(
        &before,
        &pg_dump(db.url()),
        "UniProt dry run over a loaded release",
    );
    assert_eq!(
        counts(&r),
        (
            second.sprot.len() as u64,
            change.added.len() as u64,
            change.changed.len() as u64,
            change.removed.len() as u64
        ),
        "{r}"
    );
    // The loaded release again, forced: every entry unchanged.
    let r = report(&run(&[
        "--release",
        "2024_01",
        "--dry-run",
        "--force",
        "--json",
    ]));
    assert_eq!(counts(&r), (n, 0, 0, 0), "{r}");
    assert_same_dump(&before, &pg_dump(db.url()), "forced UniProt dry run");

    // --output has no table of rows to write for UniProt: refused, not ignored.
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(&["--dry-run", "--output", out_dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--output"),
        "{}",
        text(&out)
    );
    assert_same_dump(&before, &pg_dump(db.url()), "refused UniProt --output");
}

#[test]
fn options_that_do_not_apply_to_a_plugin_kind_are_refused() {
    let mirror = tempfile::tempdir().unwrap();
    write_release(mirror.path(), "25.03", &release_rows(true));
    let env = Env::new();
    write_ot_plugin(&env, mirror.path());
    // An unreachable database: a refusal must come before anything is tried.
    let db = "postgres://psystem@127.0.0.1:1/none";
    let refused = |args: &[&str], flag: &str| {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(flag),
            "{args:?} names {flag}: {}",
            text(&out)
        );
        assert!(!stderr.contains("Some("), "{}", text(&out));
    };
    for (flag, value) in [
        ("--since", Some("2010")),
        ("--until", Some("2020")),
        ("--page-size", Some("10")),
    ] {
        let mut args = vec!["run", "ot", "--db", db, flag];
        args.extend(value);
        refused(&args, flag);
        args.push("--dry-run");
        refused(&args, flag);
    }
    let gho = [
        "run",
        "who_gho",
        "WSH_8",
        "--db",
        db,
        "--source-url",
        "http://127.0.0.1:1/api",
    ];
    for (flag, value) in [
        ("--release", Some("25.03")),
        ("--mode", Some("merge")),
        ("--parallel", Some("2")),
        ("--workers", Some("2")),
        ("--unit-size", Some("1MiB")),
        ("--skip-bad-entries", None),
        ("--heartbeat-timeout", Some("30s")),
        ("--fail-fast", None),
        ("--allow-unverified", None),
        ("--allow-casts", None),
    ] {
        let mut args = gho.to_vec();
        args.push(flag);
        args.extend(value);
        refused(&args, flag);
    }
}
