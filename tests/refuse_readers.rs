//! End-to-end tests (issue 13, cases 5, 6, 7 and 14) of what the file readers and the COPY encoder load or refuse,
//! through the real `psystem` binary, against a real PostgreSQL, for a files plugin (a user plugin in
//! `PSYSTEM_HOME/plugins`) and, for Parquet, an Open Targets release mirror (`file://`, with its
//! `release_data_integrity` manifest):
//!
//! * INT96 timestamps (what Spark writes) outside 1677–2262 load as the exact instant; one PostgreSQL cannot hold
//!   is refused naming the file, the column and the row;
//! * a Parquet file whose footer's row count is not its row groups' is refused naming the file and both counts;
//! * an unclosed CSV quote is refused naming the line it opened on;
//! * a NUL character in a CSV or JSON Lines value is refused naming the file and the line.
//!
//! They need `PSYSTEM_TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` starts a cluster and sets it).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::data_type::{ByteArray, ByteArrayType, Int96, Int96Type};
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use psystem_testkit::db::TestDb;
use sqlx::PgPool;
use support::releases::{write_integrity, write_plugin, Entry};
use support::{text, Env};

/// Julian day number of 0001-01-01 (proleptic Gregorian) minus chrono's days-from-CE of it (1).
const JULIAN_DAY_OF_CE: i64 = 1_721_425;

/// `(Julian day, nanoseconds past midnight)` of a UTC instant given as `YYYY-MM-DD HH:MM:SS`, as INT96 stores it.
fn int96_of(instant: &str) -> (i32, u64) {
    let t = chrono::NaiveDateTime::parse_from_str(instant, "%Y-%m-%d %H:%M:%S").unwrap();
    let day = i64::from(chrono::Datelike::num_days_from_ce(&t.date())) + JULIAN_DAY_OF_CE;
    let nanos = (t.time() - chrono::NaiveTime::MIN)
        .num_nanoseconds()
        .unwrap() as u64;
    (day as i32, nanos)
}

/// Writes a Parquet file the way Spark writes timestamps: `id` (UTF8) and `ts` (INT96), one row per value,
/// through the low-level column writer.
fn write_int96(path: &Path, rows: &[(&str, (i32, u64))]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(
        parse_message_type(
            "message spark_schema { required binary id (UTF8); optional int96 ts; }",
        )
        .unwrap(),
    );
    let file = std::fs::File::create(path).unwrap();
    let props = Arc::new(
        WriterProperties::builder()
            .set_created_by(
                "parquet-mr version 1.12.3 (build f8dced182c4c1fbdec6ccb3185537b5a01e6ed6b)".into(),
            )
            .build(),
    );
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let ids: Vec<ByteArray> = rows.iter().map(|(id, _)| ByteArray::from(*id)).collect();
    let mut column = group.next_column().unwrap().unwrap();
    column
        .typed::<ByteArrayType>()
        .write_batch(&ids, None, None)
        .unwrap();
    column.close().unwrap();
    let values: Vec<Int96> = rows
        .iter()
        .map(|(_, (day, nanos))| {
            let mut v = Int96::new();
            v.set_data(*nanos as u32, (*nanos >> 32) as u32, *day as u32);
            v
        })
        .collect();
    let mut column = group.next_column().unwrap().unwrap();
    column
        .typed::<Int96Type>()
        .write_batch(&values, Some(&vec![1; values.len()]), None)
        .unwrap();
    column.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}

/// Writes a valid Parquet file of `n` rows (`id` int64, `name` text) in one row group.
fn write_rows(path: &Path, n: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(1..=n)),
            Arc::new(StringArray::from_iter_values(
                (1..=n).map(|i| format!("row {i}")),
            )),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Rewrites the footer of the Parquet file at `path`, whose row groups hold 6 rows, so that `FileMetaData.num_rows`
/// says 0, the row groups (and the data) as they were. In the footer's Thrift compact encoding the file's row
/// count is the first `i64` field 3 (header byte `0x16`) and 6 is the zigzag varint `0x0C`; 0 is `0x00`, the same
/// length, so the footer length stays. The result is checked by decoding the footer again.
fn zero_footer_rows(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    let footer = n - 8 - footer_len;
    let at = bytes[footer..n - 8]
        .windows(2)
        .position(|w| w == [0x16, 0x0C])
        .expect("the row count in the footer")
        + footer;
    bytes[at + 1] = 0x00;
    std::fs::write(path, bytes).unwrap();
    let reread = ParquetMetaDataReader::new()
        .parse_and_finish(&std::fs::File::open(path).unwrap())
        .unwrap();
    assert_eq!(reread.file_metadata().num_rows(), 0);
    let groups: i64 = reread.row_groups().iter().map(|g| g.num_rows()).sum();
    assert_eq!(groups, 6);
}

/// Adds a files plugin `mine` with one entry `data` loading `path` into table `data` (mode replace), reading
/// `batch_rows` rows per page.
fn files_plugin(env: &Env, path: &Path, batch_rows: usize) {
    env.add_plugin(
        "mine",
        &format!(
            "name: mine\ncreator: tests\nenabled: true\nrun: data\nsource:\n  kind: files\netl:\n  data:\n    file:\n      path: {path}\n      batch_rows: {batch_rows}\n    destination:\n      postgres: {{table: data, mode: replace}}\n",
            path = path.display()
        ),
    );
}

fn run_files(env: &Env, db: &TestDb) -> Output {
    env.run(&["run", "mine", "data", "--db", db.url()])
}

/// Loads `path` with a files plugin in a new home into a new database.
async fn load_file(path: &Path, batch_rows: usize) -> (TestDb, Output) {
    let db = TestDb::create().await;
    let env = Env::new();
    files_plugin(&env, path, batch_rows);
    let out = run_files(&env, &db);
    (db, out)
}

/// A release folder `root/25.03` whose dataset `target` is the one file `part-00000-….parquet` written by `write`
/// (with `_SUCCESS` and the `release_data_integrity` manifest listing it); returns the file's release path.
fn release_of(root: &Path, write: impl FnOnce(&Path)) -> String {
    let dir = root.join("25.03");
    let rel = "output/target/part-00000-0b0e6a2c-c000.snappy.parquet";
    write(&dir.join(rel));
    std::fs::write(dir.join("output/target/_SUCCESS"), b"").unwrap();
    write_integrity(&dir).unwrap();
    rel.to_string()
}

fn run_release(env: &Env, root: &Path, db: &TestDb) -> Output {
    write_plugin(
        env,
        &format!("file://{}/", root.display()),
        "ot",
        &[Entry {
            key: "target",
            dataset: "target",
            table: "target",
            mode: "replace",
            primary_key: &[],
        }],
    );
    env.cmd()
        .args([
            "run",
            "ot",
            "target",
            "--release",
            "25.03",
            "--db",
            db.url(),
        ])
        .output()
        .unwrap()
}

async fn texts(url: &str, sql: &str) -> Vec<String> {
    let pool = PgPool::connect(url).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

async fn table_rows(url: &str, table: &str) -> Option<i64> {
    let pool = PgPool::connect(url).await.unwrap();
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table)
        .fetch_one(&pool)
        .await
        .unwrap();
    let n = match exists {
        Some(_) => Some(
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap(),
        ),
        None => None,
    };
    pool.close().await;
    n
}

/// Instants outside the 1677–2262 that INT96 read as nanoseconds can hold, and one inside.
const INSTANTS: [&str; 4] = [
    "9999-12-31 03:00:00",
    "0001-01-01 00:00:00",
    "1500-06-15 12:34:56",
    "2024-02-29 23:59:59",
];

fn instants() -> Vec<(String, (i32, u64))> {
    INSTANTS
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("r{i}"), int96_of(t)))
        .collect()
}

/// The instants as PostgreSQL prints a `timestamp`, in id order.
fn expected_instants() -> Vec<String> {
    INSTANTS.iter().map(|t| t.to_string()).collect()
}

/// Before the fix: parquet-rs read INT96 as nanoseconds in an i64 and wrapped, so 9999-12-31 03:00:00 loaded as
/// 1816-03-29 08:56:08.066277 (exit 0).
#[tokio::test(flavor = "multi_thread")]
async fn int96_timestamps_outside_1677_to_2262_load_exactly_from_a_files_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spark.parquet");
    let rows = instants();
    let rows: Vec<(&str, (i32, u64))> = rows.iter().map(|(id, v)| (id.as_str(), *v)).collect();
    write_int96(&file, &rows);
    let (db, out) = load_file(&file, 10_000).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        texts(db.url(), "SELECT ts::text FROM data ORDER BY id").await,
        expected_instants()
    );
}

/// Before the fix: as above, through the release reader (the instants loaded wrapped, exit 0).
#[tokio::test(flavor = "multi_thread")]
async fn int96_timestamps_outside_1677_to_2262_load_exactly_from_a_release() {
    let mirror = tempfile::tempdir().unwrap();
    let rows = instants();
    let rows: Vec<(&str, (i32, u64))> = rows.iter().map(|(id, v)| (id.as_str(), *v)).collect();
    release_of(mirror.path(), |p| write_int96(p, &rows));
    let db = TestDb::create().await;
    let env = Env::new();
    let out = run_release(&env, mirror.path(), &db);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        texts(db.url(), "SELECT ts::text FROM ot.target ORDER BY id").await,
        expected_instants()
    );
}

/// Julian day -1 (4714-11-23 BC), the day before PostgreSQL's first: row 2 of the file.
fn before_postgresql() -> Vec<(&'static str, (i32, u64))> {
    vec![
        ("a", int96_of("2000-01-01 00:00:00")),
        ("b", (-1, 0)),
        ("c", int96_of("2000-01-02 00:00:00")),
    ]
}

/// Before the fix: the value wrapped and loaded as another date, exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_timestamp_postgresql_cannot_hold_is_refused_naming_file_column_and_row() {
    // A files plugin.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("early.parquet");
    write_int96(&file, &before_postgresql());
    let (db, out) = load_file(&file, 10_000).await;
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let place = format!("{}, row 2, column `ts`", file.display());
    assert!(all.contains(&place), "names {place}: {all}");
    assert!(
        all.contains("4714-11-23 00:00:00 BC"),
        "shows the value: {all}"
    );
    assert!(all.contains("outside the range"), "{all}");
    assert_eq!(table_rows(db.url(), "data").await.unwrap_or(0), 0);

    // A release.
    let mirror = tempfile::tempdir().unwrap();
    let rel = release_of(mirror.path(), |p| write_int96(p, &before_postgresql()));
    let db = TestDb::create().await;
    let env = Env::new();
    let out = run_release(&env, mirror.path(), &db);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let place = format!("{rel}, row 2, column `ts`");
    assert!(all.contains(&place), "names {place}: {all}");
    assert!(
        all.contains("4714-11-23 00:00:00 BC"),
        "shows the value: {all}"
    );
    assert_eq!(table_rows(db.url(), "ot.target").await, None);
}

/// Before the fix: parquet-rs read no more rows than the footer says, so both paths loaded 0 rows, exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_parquet_footer_that_disagrees_with_its_row_groups_is_refused() {
    let write = |p: &Path| {
        write_rows(p, 6);
        zero_footer_rows(p);
    };
    // A files plugin.
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("zero.parquet");
    write(&file);
    let (db, out) = load_file(&file, 10_000).await;
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains(&file.display().to_string()),
        "names the file: {all}"
    );
    assert!(
        all.contains("footer says it holds 0 rows but its row groups hold 6"),
        "{all}"
    );
    assert_eq!(table_rows(db.url(), "data").await, None);

    // A release.
    let mirror = tempfile::tempdir().unwrap();
    let rel = release_of(mirror.path(), write);
    let db = TestDb::create().await;
    let env = Env::new();
    let out = run_release(&env, mirror.path(), &db);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains(&rel), "names the file: {all}");
    assert!(
        all.contains("footer says it holds 0 rows but its row groups hold 6"),
        "{all}"
    );
    assert_eq!(table_rows(db.url(), "ot.target").await, None);
}

/// Before the fix: the quote swallowed the rest of the file into one cell and the load succeeded with 2 rows.
#[tokio::test(flavor = "multi_thread")]
async fn an_unclosed_csv_quote_is_refused_naming_the_line_it_opened_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("open.csv");
    // Line 3 holds a closed multi-line value (lines 3-4), line 5 opens a quote that is never closed.
    std::fs::write(
        &file,
        "id,name\n1,a\n2,\"two\nlines\"\n3,\"never closed\n4,d\n5,e\n",
    )
    .unwrap();
    let (db, out) = load_file(&file, 10_000).await;
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let place = format!("{}, line 5", file.display());
    assert!(all.contains(&place), "names {place}: {all}");
    assert!(all.contains("quote opened here is never closed"), "{all}");
    assert_eq!(table_rows(db.url(), "data").await, None);

    // The same quote in the last column of the last line, no line break at the end.
    std::fs::write(&file, "id,name\n1,a\n2,\"b").unwrap();
    let (_db, out) = load_file(&file, 10_000).await;
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains(&format!("{}, line 3", file.display())),
        "{all}"
    );
    assert!(all.contains("quote opened here is never closed"), "{all}");

    // Quotes that close, doubled quotes and a quote inside an unquoted value load as they are.
    std::fs::write(
        &file,
        "id,name\r\n1,\"say \"\"hi\"\"\"\r\n2,5\"\r\n3,\"x,\ny\"",
    )
    .unwrap();
    let (db, out) = load_file(&file, 10_000).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        texts(db.url(), "SELECT name FROM data ORDER BY id").await,
        vec!["say \"hi\"", "5\"", "x,\ny"]
    );
}

/// Before the fix: "column \"name\", row 1 of the page (0-based) contains a NUL …", no file, no line.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_in_a_value_is_refused_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // CSV: pages of 2 rows; the NUL is in row 2 of the second page, on line 6 (row 2 spans lines 3-4).
    let csv = dir.path().join("nul.csv");
    std::fs::write(&csv, "id,name\n1,a\n2,\"two\nlines\"\n3,c\n4,d\0e\n5,f\n").unwrap();
    let (_db, out) = load_file(&csv, 2).await;
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let place = format!("{}, line 6, column `name`", csv.display());
    assert!(all.contains(&place), "names {place}: {all}");
    assert!(all.contains("NUL"), "{all}");
    assert!(!all.contains("of the page"), "{all}");

    // JSON Lines: the second row, on line 3 (the blank line 2 is skipped).
    let jsonl = dir.path().join("nul.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\": 1, \"name\": \"c\"}\n\n{\"id\": 2, \"name\": \"a\\u0000b\"}\n",
    )
    .unwrap();
    let (_db, out) = load_file(&jsonl, 10_000).await;
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    let place = format!("{}, line 3, column `name`", jsonl.display());
    assert!(all.contains(&place), "names {place}: {all}");
}
