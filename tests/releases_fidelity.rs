//! End-to-end fidelity of Open Targets release loads: `psystem run ot <every entry>` against a release mirror
//! built from the real fixture files (`../shared/fixtures/opentargets/parquet`, both layouts, a real
//! `release_data_integrity`), served over HTTP (Range, Apache index pages), FTP, the GCS JSON API and `file://`,
//! into a real PostgreSQL; then every value of every fixture dataset is compared with the source Parquet file.
//!
//! The expected side is independent of psystem's loader: the Parquet file is read with the `parquet` crate's
//! Arrow reader, rendered to JSON with `arrow-json`, flattened here at the JSON level (a struct column `a` becomes
//! `a_<child>` columns, NULL where `a` is NULL), and the Hive partition folder (`key=value/`) becomes a text
//! column. The loaded side is `to_jsonb(row)` of each table row (session time zone UTC). Both sides are then
//! normalised by the Arrow type of the column (integers exactly, `real` as `f32`, `double precision` as `f64`,
//! timestamps as UTC microseconds, structs/maps/lists recursively, object key order ignored) and compared per
//! column and per row as multisets (a table has no order).

mod support;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, LazyLock, Mutex};

use arrow_array::{Array, ArrayRef, Float32Array, Float64Array, RecordBatch, StructArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use psystem_postgres::release_load::ROW_HASH_COLUMN;
use psystem_testkit::db::TestDb;
use psystem_testkit::opentargets::sha1_hex;
use serde_json::{Map, Number, Value};
use sqlx::{Connection, PgConnection, Row};
use support::releases::{
    every_dataset, text, write_integrity, write_plugin, Mirror, OtLayout, Via, DATASETS,
};
use support::Env;

/// The two releases of the mirror: the ≥ 25.03 layout and the ≤ 24.09 layout.
const RELEASES: [(&str, OtLayout); 2] =
    [("25.03", OtLayout::Output), ("24.09", OtLayout::EtlParquet)];

/// The flattening separator of the test plugin (`flatten: {depth: 1, separator: _}`).
const SEPARATOR: &str = "_";

/// Starts a mirror holding release 25.03 (new layout) and 24.09 (old layout), every fixture dataset in each.
async fn mirror() -> Mirror {
    Mirror::start(&[
        ("25.03", OtLayout::Output, &[]),
        ("24.09", OtLayout::EtlParquet, &[]),
    ])
    .await
}

/// The schema a release is loaded into, e.g. `ot_2503`.
fn schema_of(release: &str) -> String {
    format!("ot_{}", release.replace('.', ""))
}

/// Runs psystem without blocking the servers that run on this test's runtime.
fn run(mirror: &Mirror, env: &Env, args: &[&str]) -> Output {
    tokio::task::block_in_place(|| mirror.run(env, args))
}

/// `psystem run ot <all 7 entries> --release R --source-url URL --db DB`, asserting exit 0.
fn load_release(mirror: &Mirror, env: &Env, url: &str, release: &str, db: &str) -> Output {
    let mut args = vec!["run", "ot"];
    args.extend(DATASETS.iter().map(|d| d.name));
    args.extend(["--release", release, "--source-url", url, "--db", db]);
    let out = run(mirror, env, &args);
    assert!(
        out.status.success(),
        "psystem {} failed:\n{}",
        args.join(" "),
        text(&out)
    );
    out
}

// ---------------------------------------------------------------------------------------------------------------
// The expected side: the Parquet file.
// ---------------------------------------------------------------------------------------------------------------

/// One dataset as the Parquet file says it must be loaded.
struct Expected {
    /// The ≥ 25.03 dataset name (= table name).
    dataset: String,
    /// The Parquet file read.
    file: PathBuf,
    /// What the file holds.
    data: Arc<ParquetData>,
}

/// The content of one Parquet file, flattened, with its partition columns.
struct ParquetData {
    /// Rows per the Parquet footer.
    footer_rows: i64,
    /// The table's columns (flattened), in order, with the Arrow type each one holds.
    columns: Vec<(String, DataType)>,
    /// Every row: column → value as arrow-json renders it (already flattened), not yet normalised.
    rows: Vec<Map<String, Value>>,
    /// Every cell of `rows`, normalised by its column's type, as canonical text ([`cells`]).
    cells: Vec<Vec<String>>,
}

/// Files already read, by sha1 of their bytes and their partition folders (the mirrors of all tests hold copies
/// of the same fixture files; reading each once keeps the debug-build test fast).
static READ: LazyLock<Mutex<HashMap<String, Arc<ParquetData>>>> = LazyLock::new(Default::default);

/// Reads the one Parquet file of `dataset` in `release` of the mirror and flattens it as the plugin asks.
fn expected(mirror: &Mirror, release: &str, layout: OtLayout, dataset: &str) -> Expected {
    let file = mirror.parquet_file(release, layout, dataset);
    let d = DATASETS.iter().find(|d| d.name == dataset).unwrap();
    let dataset_dir = match layout {
        OtLayout::EtlParquet => mirror
            .release(release)
            .join("output/etl/parquet")
            .join(d.legacy_name),
        OtLayout::Output => mirror.release(release).join("output").join(d.name),
    };
    // Hive partition folders between the dataset folder and the file.
    let partitions: Vec<(String, String)> = file
        .parent()
        .unwrap()
        .strip_prefix(&dataset_dir)
        .unwrap()
        .components()
        .filter_map(|c| {
            let s = c.as_os_str().to_string_lossy();
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let key = format!(
        "{} {partitions:?}",
        sha1_hex(&std::fs::read(&file).unwrap())
    );
    let cached = READ.lock().unwrap().get(&key).cloned();
    let data = cached.unwrap_or_else(|| {
        let data = Arc::new(read_parquet(&file, &partitions));
        READ.lock().unwrap().insert(key, data.clone());
        data
    });
    Expected {
        dataset: dataset.to_string(),
        file,
        data,
    }
}

/// Reads `file` with the parquet crate's Arrow reader, renders it with arrow-json, flattens struct columns one
/// level (`parent_child`, NULL where the parent is NULL) and appends the `partitions` that are not file columns.
fn read_parquet(file: &Path, partitions: &[(String, String)]) -> ParquetData {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap()).unwrap();
    let footer_rows = builder.metadata().file_metadata().num_rows();
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(1000).build().unwrap();

    let mut columns = Vec::new();
    for f in schema.fields() {
        match f.data_type() {
            DataType::Struct(children) => {
                for c in children {
                    columns.push((
                        format!("{}{SEPARATOR}{}", f.name(), c.name()),
                        c.data_type().clone(),
                    ));
                }
            }
            dt => columns.push((f.name().clone(), dt.clone())),
        }
    }
    let added: Vec<&(String, String)> = partitions
        .iter()
        .filter(|(k, _)| schema.field_with_name(k).is_err())
        .collect();
    for (k, _) in &added {
        columns.push((k.clone(), DataType::Utf8));
    }

    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let mut json = batch_to_json(&batch);
        patch_non_finite(&batch, &mut json);
        for raw in json {
            let mut row = Map::new();
            for f in schema.fields() {
                let v = raw.get(f.name()).cloned().unwrap_or(Value::Null);
                match f.data_type() {
                    DataType::Struct(children) => {
                        for c in children {
                            let child = if v.is_null() {
                                Value::Null
                            } else {
                                v.get(c.name()).cloned().unwrap_or(Value::Null)
                            };
                            row.insert(format!("{}{SEPARATOR}{}", f.name(), c.name()), child);
                        }
                    }
                    _ => {
                        row.insert(f.name().clone(), v);
                    }
                }
            }
            for (k, v) in &added {
                row.insert(k.clone(), Value::String(v.clone()));
            }
            rows.push(row);
        }
    }
    let cells = cells(&columns, &rows);
    ParquetData {
        footer_rows,
        columns,
        rows,
        cells,
    }
}

/// Every cell of `rows` normalised by its column's Arrow type ([`norm`]), as canonical text ([`canon`]).
fn cells(columns: &[(String, DataType)], rows: &[Map<String, Value>]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            columns
                .iter()
                .map(|(n, dt)| canon(&norm(dt, r.get(n).unwrap_or(&Value::Null))))
                .collect()
        })
        .collect()
}

/// Rows of the one Parquet file of `dataset` in `release`, per its footer.
fn footer_rows(mirror: &Mirror, release: &str, layout: OtLayout, dataset: &str) -> i64 {
    let file = File::open(mirror.parquet_file(release, layout, dataset)).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows()
}

/// Every row of `batch` as a JSON object (arrow-json, nulls written explicitly).
fn batch_to_json(batch: &RecordBatch) -> Vec<Map<String, Value>> {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::JsonArray>(Vec::new());
    writer.write_batches(&[batch]).unwrap();
    writer.finish().unwrap();
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Vec::new();
    }
    let rows: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    rows.into_iter()
        .map(|r| match r {
            Value::Object(m) => m,
            other => panic!("arrow-json wrote a non-object row {other}"),
        })
        .collect()
}

/// arrow-json writes NaN and ±infinity as `null`; a top-level `real`/`double precision` column keeps them, and
/// `to_jsonb` spells them `"NaN"`, `"Infinity"`, `"-Infinity"`. Patches those values (top-level float columns and
/// float children of flattened structs) into the expected rows.
fn patch_non_finite(batch: &RecordBatch, rows: &mut [Map<String, Value>]) {
    fn non_finite(a: &ArrayRef, i: usize) -> Option<&'static str> {
        let x = match a.data_type() {
            DataType::Float32 => a.as_any().downcast_ref::<Float32Array>()?.value(i) as f64,
            DataType::Float64 => a.as_any().downcast_ref::<Float64Array>()?.value(i),
            _ => return None,
        };
        if x.is_nan() {
            Some("NaN")
        } else if x == f64::INFINITY {
            Some("Infinity")
        } else if x == f64::NEG_INFINITY {
            Some("-Infinity")
        } else {
            None
        }
    }
    for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
        for (i, row) in rows.iter_mut().enumerate() {
            if col.is_null(i) {
                continue;
            }
            if let Some(s) = non_finite(col, i) {
                row.insert(f.name().clone(), Value::String(s.into()));
            }
            if let Some(st) = col.as_any().downcast_ref::<StructArray>() {
                for (c, child) in st.fields().iter().zip(st.columns()) {
                    if child.is_valid(i) {
                        if let Some(s) = non_finite(child, i) {
                            let name = format!("{}{SEPARATOR}{}", f.name(), c.name());
                            row.insert(name, Value::String(s.into()));
                        }
                    }
                }
            }
        }
    }
}

/// The PostgreSQL type (as `format_type` prints it) that docs/TYPES.md gives an Arrow type.
fn pg_type_of(dt: &DataType) -> String {
    match dt {
        DataType::Int8 | DataType::Int16 => "smallint".into(),
        DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => "text".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "bytea".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone".into(),
        DataType::Duration(_) | DataType::Interval(_) => "interval".into(),
        DataType::Dictionary(_, v) => pg_type_of(v),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
            if matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            "text[]".into()
        }
        _ => "jsonb".into(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Normalisation: both sides into one canonical form per Arrow type.
// ---------------------------------------------------------------------------------------------------------------

/// `v` (arrow-json's rendering, or `to_jsonb`'s) in a canonical form for a column of type `dt`.
fn norm(dt: &DataType, v: &Value) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => match v {
            // Exact integers stay exact; anything else stays as it is (and differs).
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            _ => tagged("not an integer", v),
        },
        DataType::Float16 | DataType::Float32 => match v {
            Value::Number(n) => {
                let x = n.as_f64().unwrap() as f32;
                float(x as f64)
            }
            _ => v.clone(),
        },
        DataType::Float64 => match v {
            Value::Number(n) => float(n.as_f64().unwrap()),
            _ => v.clone(),
        },
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => match v {
            Value::Number(n) => float(n.as_f64().unwrap()),
            Value::String(s) => s.parse::<f64>().map(float).unwrap_or_else(|_| v.clone()),
            _ => v.clone(),
        },
        DataType::Timestamp(_, tz) => {
            match v.as_str().and_then(|s| timestamp_micros(s, tz.is_some())) {
                Some(us) => Value::String(format!("timestamp µs {us}")),
                None => tagged("unparsable timestamp", v),
            }
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => match v.as_str() {
            Some(s) => Value::String(s.trim_start_matches("\\x").to_ascii_lowercase()),
            None => v.clone(),
        },
        DataType::Dictionary(_, value) => norm(value, v),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => match v {
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| norm(f.data_type(), i)).collect())
            }
            _ => tagged("not an array", v),
        },
        DataType::Struct(fields) => match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for f in fields {
                    out.insert(
                        f.name().clone(),
                        norm(f.data_type(), m.get(f.name()).unwrap_or(&Value::Null)),
                    );
                }
                // Keys that are not fields of the struct are kept, so that they show up as a difference.
                for (k, x) in m {
                    if fields.find(k).is_none() {
                        out.insert(format!("unexpected key {k}"), x.clone());
                    }
                }
                Value::Object(out)
            }
            _ => tagged("not an object", v),
        },
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return v.clone();
            };
            let value_type = kv[1].data_type();
            match v {
                Value::Object(m) => Value::Object(
                    m.iter()
                        .map(|(k, x)| (k.clone(), norm(value_type, x)))
                        .collect(),
                ),
                _ => v.clone(),
            }
        }
        _ => v.clone(),
    }
}

/// A JSON number holding exactly `x` (non-finite values, which JSON cannot hold, as their PostgreSQL spelling).
fn float(x: f64) -> Value {
    Number::from_f64(x).map(Value::Number).unwrap_or_else(|| {
        Value::String(if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        })
    })
}

/// A value of the wrong JSON kind, marked so that it never equals a well-formed one.
fn tagged(what: &str, v: &Value) -> Value {
    Value::String(format!("<{what}: {v}>"))
}

/// A timestamp string (arrow-json's or PostgreSQL's rendering) as microseconds since the epoch (floored, as
/// psystem stores nanoseconds); with `zoned` an offset is honoured (`Z`, `+00:00`), without it the wall-clock
/// time is taken as it is.
fn timestamp_micros(s: &str, zoned: bool) -> Option<i64> {
    if zoned {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Some(t.timestamp_micros());
        }
        if let Ok(t) = chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%#z") {
            return Some(t.timestamp_micros());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// A canonical text of `v`: object keys sorted at every level, numbers as serde_json prints them.
fn canon(v: &Value) -> String {
    let mut out = String::new();
    canon_into(v, &mut out);
    out
}

fn canon_into(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<(&String, &Value)> = m.iter().collect();
            keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, x)) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canon_into(x, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canon_into(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// At most `n` characters of `s`.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The loaded side and the comparison.
// ---------------------------------------------------------------------------------------------------------------

/// The table's columns with their PostgreSQL types (`format_type`), in order.
async fn table_columns(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Vec<(String, String)> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let typed: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        names,
        typed.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "information_schema and pg_attribute disagree on {schema}.{table}"
    );
    typed
}

/// Compares table `schema.<dataset>` with the Parquet file; returns every difference found (empty = equal).
async fn compare(conn: &mut PgConnection, schema: &str, want: &Expected) -> Vec<String> {
    let table = &want.dataset;
    let at = format!(
        "dataset {table} (table {schema}.{table}, file {})",
        want.file.display()
    );
    let mut problems = Vec::new();

    // Columns and types.
    let data = &want.data;
    let have = table_columns(conn, schema, table).await;
    if have.is_empty() {
        return vec![format!("{at}: the table does not exist")];
    }
    // The release's columns, then the row hash psystem adds (docs/LOAD_MODES.md, "The row hash").
    let want_cols: Vec<(String, String)> = data
        .columns
        .iter()
        .map(|(n, dt)| (n.clone(), pg_type_of(dt)))
        .chain([(ROW_HASH_COLUMN.to_string(), "bigint".to_string())])
        .collect();
    if have.iter().map(|c| &c.0).ne(want_cols.iter().map(|c| &c.0)) {
        problems.push(format!(
            "{at}: columns differ\n  expected {:?}\n  got      {:?}",
            want_cols.iter().map(|c| &c.0).collect::<Vec<_>>(),
            have.iter().map(|c| &c.0).collect::<Vec<_>>()
        ));
    }
    for (name, ty) in &want_cols {
        if let Some((_, got)) = have.iter().find(|(n, _)| n == name) {
            if got != ty {
                let dt = &data.columns.iter().find(|c| &c.0 == name).unwrap().1;
                problems.push(format!(
                    "{at}, column {name} (Arrow {dt}): type {got}, expected {ty}"
                ));
            }
        }
    }

    // Rows.
    let sql = format!(
        "SELECT to_jsonb(t) AS j FROM {}.{} t",
        quote_ident(schema),
        quote_ident(table)
    );
    let got_rows: Vec<Map<String, Value>> = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| match r.get::<Value, _>("j") {
            Value::Object(m) => m,
            other => panic!("to_jsonb gave {other}"),
        })
        .collect();
    let mut got_rows = got_rows;
    for row in &mut got_rows {
        match row.remove(ROW_HASH_COLUMN) {
            Some(Value::Number(_)) => {}
            other => problems.push(format!(
                "{at}: a row's {ROW_HASH_COLUMN} is {other:?}, not a number"
            )),
        }
    }
    if got_rows.len() as i64 != data.footer_rows || data.rows.len() as i64 != data.footer_rows {
        problems.push(format!(
            "{at}: {} rows in PostgreSQL, {} in the Parquet footer ({} read from the file)",
            got_rows.len(),
            data.footer_rows,
            data.rows.len()
        ));
    }

    // Every cell normalised by its column's Arrow type, as canonical text.
    let want_c = &want.data.cells;
    let got_c = cells(&want.data.columns, &got_rows);

    // Per column, as multisets of values.
    for (j, (name, dt)) in data.columns.iter().enumerate() {
        if !have.iter().any(|(n, _)| n == name) {
            continue;
        }
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for r in want_c {
            *counts.entry(r[j].as_str()).or_default() += 1;
        }
        for r in &got_c {
            *counts.entry(r[j].as_str()).or_default() -= 1;
        }
        let missing = counts.iter().find(|(_, c)| **c > 0).map(|(v, _)| *v);
        let extra = counts.iter().find(|(_, c)| **c < 0).map(|(v, _)| *v);
        if missing.is_some() || extra.is_some() {
            let row = missing.and_then(|m| {
                data.rows
                    .iter()
                    .zip(want_c)
                    .find(|(_, c)| c[j] == m)
                    .map(|(r, _)| clip(&Value::Object(r.clone()).to_string(), 600))
            });
            problems.push(format!(
                "{at}, column {name} (Arrow {dt}): {} values differ\n  expected but not loaded: {}\n  loaded but not expected: {}\n  a source row with the expected value: {}",
                counts.values().filter(|c| **c != 0).count(),
                missing.map(|m| clip(m, 600)).unwrap_or_else(|| "-".into()),
                extra.map(|m| clip(m, 600)).unwrap_or_else(|| "-".into()),
                row.unwrap_or_else(|| "-".into()),
            ));
        }
    }

    // Whole rows, as multisets (the columns may each match while values sit in the wrong rows).
    if problems.is_empty() {
        let rows = |c: &[Vec<String>]| -> Vec<String> {
            let mut v: Vec<String> = c
                .iter()
                .map(|cells| {
                    data.columns
                        .iter()
                        .zip(cells)
                        .map(|((n, _), x)| format!("{n}={x}"))
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect();
            v.sort_unstable();
            v
        };
        let (w, g) = (rows(want_c), rows(&got_c));
        if let Some((a, b)) = w.iter().zip(&g).find(|(a, b)| a != b) {
            problems.push(format!(
                "{at}: the columns match one by one but the rows do not\n  expected row {}\n  loaded row   {}",
                clip(a, 800),
                clip(b, 800)
            ));
        }
    }
    problems
}

/// A double-quoted SQL identifier.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A connection to `url` with the session time zone UTC (how `to_jsonb` prints `timestamptz`).
async fn connect(url: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("SET TimeZone TO 'UTC'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Asserts that every fixture dataset of `release` equals its Parquet file in schema `schema_of(release)`.
async fn assert_release_equals_source(
    mirror: &Mirror,
    db: &str,
    release: &str,
    layout: OtLayout,
    via: &str,
) {
    let mut conn = connect(db).await;
    let schema = schema_of(release);
    let mut problems = Vec::new();
    for d in DATASETS {
        let want = expected(mirror, release, layout, d.name);
        problems.extend(compare(&mut conn, &schema, &want).await);
    }
    assert!(
        problems.is_empty(),
        "release {release} ({layout:?}) via {via}: {} difference(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    conn.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// The ledger.
// ---------------------------------------------------------------------------------------------------------------

/// `psystem.loads` has one completed, verified row per dataset with the release and the Parquet row count;
/// `psystem.files` has every data file of the release with sha1 expected = computed = the file's real sha1.
async fn assert_ledger(mirror: &Mirror, db: &str, release: &str, layout: OtLayout) {
    let mut conn = connect(db).await;
    let schema = schema_of(release);
    let loads = sqlx::query(
        "SELECT target_table, release, dataset, rows, verified, state FROM psystem.loads \
         WHERE target_schema = $1 ORDER BY id",
    )
    .bind(&schema)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for d in DATASETS {
        let rows: Vec<_> = loads
            .iter()
            .filter(|r| r.get::<Option<String>, _>("target_table").as_deref() == Some(d.name))
            .collect();
        let completed: Vec<_> = rows
            .iter()
            .filter(|r| r.get::<Option<String>, _>("state").as_deref() == Some("completed"))
            .collect();
        assert_eq!(
            completed.len(),
            1,
            "release {release}, dataset {}: psystem.loads rows {:?}",
            d.name,
            rows.iter()
                .map(|r| (
                    r.get::<Option<String>, _>("state"),
                    r.get::<Option<String>, _>("dataset")
                ))
                .collect::<Vec<_>>()
        );
        let r = completed[0];
        let footer_rows = footer_rows(mirror, release, layout, d.name);
        let dataset: Option<String> = r.get("dataset");
        let folder = match layout {
            OtLayout::Output => d.name,
            OtLayout::EtlParquet => d.legacy_name,
        };
        assert_eq!(
            dataset.as_deref(),
            Some(folder),
            "release {release}, dataset {}: psystem.loads.dataset is the release's folder name",
            d.name
        );
        assert_eq!(
            r.get::<Option<String>, _>("release").as_deref(),
            Some(release)
        );
        assert_eq!(
            r.get::<i64, _>("rows"),
            footer_rows,
            "release {release}, dataset {}: psystem.loads.rows",
            d.name
        );
        assert_eq!(
            r.get::<Option<bool>, _>("verified"),
            Some(true),
            "release {release}, dataset {}: psystem.loads.verified",
            d.name
        );
    }

    // psystem.files: every Parquet data file of the release, hashed by us.
    let files = sqlx::query(
        "SELECT path, size, algorithm, expected, computed, status FROM psystem.files WHERE release = $1",
    )
    .bind(release)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    // Every file recorded (side files such as `_SUCCESS` and `.crc` included) was verified.
    for r in &files {
        let path: String = r.get("path");
        let (algorithm, want, got, status): (
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        ) = (
            r.get("algorithm"),
            r.get("expected"),
            r.get("computed"),
            r.get("status"),
        );
        assert!(
            algorithm.as_deref() == Some("sha1") && want.is_some() && want == got && status == "verified",
            "release {release}, psystem.files {path}: {algorithm:?} expected {want:?} computed {got:?} {status}"
        );
    }
    let root = mirror.release(release);
    for d in DATASETS {
        let file = mirror.parquet_file(release, layout, d.name);
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&file).unwrap();
        let sha1 = sha1_hex(&bytes);
        let row = files
            .iter()
            .find(|r| r.get::<String, _>("path").trim_start_matches("./") == rel)
            .unwrap_or_else(|| {
                panic!(
                    "release {release}: {rel} is not in psystem.files ({:?})",
                    files
                        .iter()
                        .map(|r| r.get::<String, _>("path"))
                        .collect::<Vec<_>>()
                )
            });
        assert_eq!(
            row.get::<Option<String>, _>("algorithm").as_deref(),
            Some("sha1"),
            "{rel}"
        );
        assert_eq!(
            row.get::<Option<String>, _>("expected").as_deref(),
            Some(sha1.as_str()),
            "{rel}"
        );
        assert_eq!(
            row.get::<Option<String>, _>("computed").as_deref(),
            Some(sha1.as_str()),
            "{rel}"
        );
        assert_eq!(row.get::<String, _>("status"), "verified", "{rel}");
        assert_eq!(
            row.get::<Option<i64>, _>("size"),
            Some(bytes.len() as i64),
            "{rel}"
        );
    }
    conn.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------------------------

/// Loads both releases (both layouts) over `via`, each into its own schema of one database, and checks every
/// value and the ledger.
async fn load_both_layouts_and_compare(via: Via) -> (Mirror, TestDb) {
    let mirror = mirror().await;
    let db = TestDb::create().await;
    let url = mirror.url(via);
    for (release, layout) in RELEASES {
        let env = Env::new();
        write_plugin(&env, &url, &schema_of(release), &every_dataset());
        load_release(&mirror, &env, &url, release, db.url());
        assert_release_equals_source(&mirror, db.url(), release, layout, &format!("{via:?}")).await;
        assert_ledger(&mirror, db.url(), release, layout).await;
    }
    (mirror, db)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mirror_loads_every_value_of_both_layouts() {
    let (mirror, _db) = load_both_layouts_and_compare(Via::Http).await;
    // The data came over HTTP: every Parquet file was fetched from the server.
    let gets: Vec<String> = mirror
        .http
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(".parquet"))
        .map(|r| r.path)
        .collect();
    for (release, layout) in RELEASES {
        for d in DATASETS {
            let file = mirror.parquet_file(release, layout, d.name);
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                gets.iter()
                    .any(|p| p.starts_with(&format!("/{release}/")) && p.ends_with(&name)),
                "{release}/{}: no HTTP GET of {name} in {gets:?}",
                d.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ftp_mirror_loads_every_value_of_both_layouts() {
    let (mirror, _db) = load_both_layouts_and_compare(Via::Ftp).await;
    assert!(
        mirror.ftp.retrievals().len() >= 2 * DATASETS.len(),
        "FTP retrievals: {:?}",
        mirror.ftp.retrievals()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_mirror_loads_every_value_of_both_layouts() {
    let (mirror, _db) = load_both_layouts_and_compare(Via::Gcs).await;
    let media = mirror
        .http
        .requests()
        .into_iter()
        .filter(|r| {
            r.path.starts_with("/storage/v1/b/")
                && r.query.as_deref().is_some_and(|q| q.contains("alt=media"))
        })
        .count();
    assert!(media >= 2 * DATASETS.len(), "GCS media downloads: {media}");
}

/// `file://` once (release 25.03), then `releases list` and `releases show --schema` against what was loaded,
/// and the comparison itself proven able to fail (a changed value, a deleted row).
#[tokio::test(flavor = "multi_thread")]
async fn file_mirror_loads_and_releases_show_matches_loaded_tables() {
    let mirror = mirror().await;
    let db = TestDb::create().await;
    let url = mirror.url(Via::File);
    let env = Env::new();
    write_plugin(&env, &url, &schema_of("25.03"), &every_dataset());
    load_release(&mirror, &env, &url, "25.03", db.url());
    assert_release_equals_source(&mirror, db.url(), "25.03", OtLayout::Output, "file").await;
    assert_ledger(&mirror, db.url(), "25.03", OtLayout::Output).await;

    // releases list: both releases, newest first.
    for source in [url.clone(), mirror.url(Via::Http)] {
        let out = run(
            &mirror,
            &env,
            &["releases", "list", "ot", "--source-url", &source, "--json"],
        );
        assert!(out.status.success(), "{}", text(&out));
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            list,
            serde_json::json!([{"name": "25.03", "latest": true}, {"name": "24.09", "latest": false}]),
            "releases list via {source}"
        );
        let out = run(
            &mirror,
            &env,
            &["releases", "list", "ot", "--source-url", &source],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, ["25.03  (latest)", "24.09"], "{}", text(&out));
    }

    // releases show --schema: every dataset's columns are the loaded table's columns, with their types.
    let out = run(
        &mirror,
        &env,
        &[
            "releases",
            "show",
            "ot",
            "25.03",
            "--schema",
            "--source-url",
            &url,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let show: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(show["release"], "25.03");
    let shown = show["datasets"].as_array().unwrap();
    assert_eq!(
        shown.len(),
        DATASETS.len(),
        "datasets shown: {:?}",
        shown.iter().map(|d| &d["name"]).collect::<Vec<_>>()
    );
    let mut conn = connect(db.url()).await;
    for d in DATASETS {
        let ds = shown
            .iter()
            .find(|x| x["name"] == d.name)
            .unwrap_or_else(|| panic!("{} not shown", d.name));
        let columns: Vec<(String, String)> = ds["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c[0].as_str().unwrap().to_string(),
                    c[2].as_str().unwrap().to_string(),
                )
            })
            .collect();
        // The table has the release's columns and, last, the row hash psystem adds.
        let mut table = table_columns(&mut conn, &schema_of("25.03"), d.name).await;
        assert_eq!(
            table.pop(),
            Some((ROW_HASH_COLUMN.to_string(), "bigint".to_string()))
        );
        assert_eq!(
            columns.iter().map(|c| &c.0).collect::<Vec<_>>(),
            table.iter().map(|c| &c.0).collect::<Vec<_>>(),
            "releases show columns of {} vs information_schema",
            d.name
        );
        for ((name, shown_ty), (_, table_ty)) in columns.iter().zip(&table) {
            assert!(
                shown_ty == table_ty || (shown_ty == "text[]" && table_ty == "text[]"),
                "{}.{name}: releases show says {shown_ty}, the table has {table_ty}",
                d.name
            );
        }
        let rows = footer_rows(&mirror, "25.03", OtLayout::Output, d.name);
        assert_eq!(ds["rows"].as_i64(), Some(rows), "rows of {} shown", d.name);
    }
    // Human form names every dataset.
    let out = run(
        &mirror,
        &env,
        &[
            "releases",
            "show",
            "ot",
            "25.03",
            "--schema",
            "--source-url",
            &url,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for d in DATASETS {
        assert!(stdout.contains(d.name), "{} missing from\n{stdout}", d.name);
    }

    // The comparison can fail: change one value, then delete one row.
    let schema = schema_of("25.03");
    let want = expected(&mirror, "25.03", OtLayout::Output, "interaction");
    let (col, _) = want
        .data
        .columns
        .iter()
        .find(|(_, dt)| matches!(dt, DataType::Utf8))
        .expect("interaction has a text column")
        .clone();
    let changed = sqlx::query(&format!(
        "UPDATE {s}.interaction SET {c} = 'tampered' WHERE ctid = (SELECT ctid FROM {s}.interaction WHERE {c} IS NOT NULL LIMIT 1)",
        s = quote_ident(&schema),
        c = quote_ident(&col)
    ))
    .execute(&mut conn)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(changed, 1);
    let problems = compare(&mut conn, &schema, &want).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("dataset interaction")
            && problems[0].contains(&format!("column {col} "))
            && problems[0].contains("\"tampered\""),
        "{}",
        problems[0]
    );
    sqlx::query(&format!(
        "DELETE FROM {s}.interaction WHERE ctid = (SELECT ctid FROM {s}.interaction LIMIT 1)",
        s = quote_ident(&schema)
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let problems = compare(&mut conn, &schema, &want).await;
    assert!(
        problems.iter().any(|p| p.contains(&format!(
            "{} rows in PostgreSQL, {} in the Parquet footer",
            want.data.footer_rows - 1,
            want.data.footer_rows
        ))),
        "{problems:?}"
    );

    // A nested value inside jsonb, a float4 moved by a few ULPs, and two values swapped between rows (each
    // column still holds the same multiset; only the row-level check sees it).
    let tampers = [
        (
            "target",
            "go",
            r#"UPDATE {s}.target SET go = jsonb_set(go, '{0,aspect}', '"X"') WHERE ctid = (SELECT ctid FROM {s}.target WHERE jsonb_array_length(go) > 0 LIMIT 1)"#,
            "column go ",
        ),
        (
            "credible_set",
            "pValueMantissa",
            r#"UPDATE {s}.credible_set SET "pValueMantissa" = "pValueMantissa" * 1.0000003 WHERE ctid = (SELECT ctid FROM {s}.credible_set WHERE "pValueMantissa" <> 0 LIMIT 1)"#,
            "column pValueMantissa ",
        ),
        (
            "credible_set_extended",
            "studyId",
            r#"WITH two AS (SELECT ctid, "studyId", row_number() OVER () AS n FROM {s}.credible_set_extended
                 WHERE "studyId" IN (SELECT "studyId" FROM {s}.credible_set_extended GROUP BY 1 ORDER BY 1 LIMIT 2)
                 AND ctid IN (SELECT min(ctid) FROM {s}.credible_set_extended GROUP BY "studyId"))
               UPDATE {s}.credible_set_extended t SET "studyId" = o."studyId"
                 FROM two me, two o WHERE t.ctid = me.ctid AND me.n <> o.n AND me.n <= 2 AND o.n <= 2"#,
            "the columns match one by one but the rows do not",
        ),
    ];
    for (dataset, column, sql, says) in tampers {
        let changed = sqlx::query(&sql.replace("{s}", &quote_ident(&schema)))
            .execute(&mut conn)
            .await
            .unwrap()
            .rows_affected();
        assert!(changed >= 1, "{dataset}.{column}: nothing tampered");
        let want = expected(&mirror, "25.03", OtLayout::Output, dataset);
        let problems = compare(&mut conn, &schema, &want).await;
        assert!(
            problems.len() == 1
                && problems[0].contains(&format!("dataset {dataset} "))
                && problems[0].contains(says),
            "tampered {dataset}.{column}, expected one problem saying {says:?}: {problems:#?}"
        );
    }
    conn.close().await.unwrap();
}

/// A data file whose bytes no longer match `release_data_integrity`: the run fails, naming it; psystem.files
/// records the mismatch with both digests; nothing of that dataset is loaded; the other datasets load intact.
#[tokio::test(flavor = "multi_thread")]
async fn corrupted_file_fails_its_dataset_and_the_others_load_intact() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &[])]).await;
    let db = TestDb::create().await;
    let url = mirror.url(Via::Http);
    let env = Env::new();
    write_plugin(&env, &url, &schema_of("25.03"), &every_dataset());

    let bad = mirror.parquet_file("25.03", OtLayout::Output, "interaction");
    let good_sha1 = sha1_hex(&std::fs::read(&bad).unwrap());
    let mut bytes = std::fs::read(&bad).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let bad_sha1 = sha1_hex(&bytes);

    let mut args = vec!["run", "ot"];
    args.extend(DATASETS.iter().map(|d| d.name));
    args.extend(["--release", "25.03", "--source-url", &url, "--db", db.url()]);
    let out = run(&mirror, &env, &args);
    assert!(
        !out.status.success(),
        "a corrupted file must fail the run:\n{}",
        text(&out)
    );
    let all = text(&out);
    assert!(
        all.contains("interaction"),
        "the failure must name the dataset:\n{all}"
    );

    let mut conn = connect(db.url()).await;
    let rel = bad
        .strip_prefix(mirror.release("25.03"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let row = sqlx::query("SELECT path, algorithm, expected, computed, status FROM psystem.files WHERE release = '25.03'")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.get::<String, _>("path").trim_start_matches("./") == rel)
        .unwrap_or_else(|| panic!("{rel} not in psystem.files"));
    assert_eq!(row.get::<String, _>("status"), "mismatch");
    assert_eq!(
        row.get::<Option<String>, _>("expected").as_deref(),
        Some(good_sha1.as_str())
    );
    assert_eq!(
        row.get::<Option<String>, _>("computed").as_deref(),
        Some(bad_sha1.as_str())
    );

    let schema = schema_of("25.03");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{}.interaction", quote_ident(&schema)))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "the corrupted dataset must not be loaded");
    let completed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM psystem.loads WHERE target_table = 'interaction' AND state = 'completed'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(completed, 0);

    for d in DATASETS.iter().filter(|d| d.name != "interaction") {
        let want = expected(&mirror, "25.03", OtLayout::Output, d.name);
        let problems = compare(&mut conn, &schema, &want).await;
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
    conn.close().await.unwrap();
}

/// A file that matches the manifest but is not valid Parquet (truncated upstream, manifest computed over the
/// truncated bytes): the checksum verifies, then reading fails; the run fails naming the file, nothing of that
/// dataset is loaded (no table, no completed load), and the other dataset of the run loads intact.
#[tokio::test(flavor = "multi_thread")]
async fn truncated_parquet_with_matching_manifest_fails_without_partial_rows() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["interaction", "disease"])]).await;
    let db = TestDb::create().await;
    let url = mirror.url(Via::File);
    let env = Env::new();
    let entries: Vec<_> = every_dataset()
        .into_iter()
        .filter(|e| e.dataset == "disease" || e.dataset == "interaction")
        .collect();
    write_plugin(&env, &url, &schema_of("25.03"), &entries);

    let bad = mirror.parquet_file("25.03", OtLayout::Output, "interaction");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    write_integrity(&mirror.release("25.03")).unwrap();
    let name = bad.file_name().unwrap().to_string_lossy().into_owned();

    let out = run(
        &mirror,
        &env,
        &[
            "run",
            "ot",
            "interaction",
            "disease",
            "--release",
            "25.03",
            "--source-url",
            &url,
            "--db",
            db.url(),
        ],
    );
    assert!(
        !out.status.success(),
        "a truncated Parquet file must fail the run:\n{}",
        text(&out)
    );
    let all = text(&out);
    assert!(
        all.contains(&name),
        "the failure must name the file {name}:\n{all}"
    );

    let mut conn = connect(db.url()).await;
    let schema = schema_of("25.03");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{}.interaction", quote_ident(&schema)))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "nothing of the unreadable dataset may be loaded");
    let states: Vec<String> = sqlx::query_scalar(
        "SELECT state FROM psystem.loads WHERE target_table = 'interaction' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        !states.iter().any(|s| s == "completed"),
        "interaction loads: {states:?}"
    );
    let status: String = sqlx::query_scalar(
        "SELECT status FROM psystem.files WHERE release = '25.03' AND path LIKE '%' || $1",
    )
    .bind(&name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        status, "verified",
        "the truncated file does match its manifest"
    );

    let want = expected(&mirror, "25.03", OtLayout::Output, "disease");
    let problems = compare(&mut conn, &schema, &want).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    conn.close().await.unwrap();
}

/// With the default `--parallel 2`, two datasets open their loads at the same time into a schema that does not
/// exist yet; `CREATE SCHEMA IF NOT EXISTS` alone is not safe against a concurrent creator (the second fails on
/// `pg_namespace_nspname_index`), so psystem serialises it (destination.rs `ensure_schema`). Each round loads two
/// small datasets into a new schema; every round must succeed (before the fix, 4 of 6 rounds failed).
#[tokio::test(flavor = "multi_thread")]
async fn parallel_datasets_create_a_new_schema_once() {
    let mirror = Mirror::start(&[("25.03", OtLayout::Output, &["disease", "interaction"])]).await;
    let db = TestDb::create().await;
    let url = mirror.url(Via::File);
    let entries: Vec<_> = every_dataset()
        .into_iter()
        .filter(|e| e.dataset == "disease" || e.dataset == "interaction")
        .collect();
    let mut failures = Vec::new();
    for round in 0..6 {
        let env = Env::new();
        let schema = format!("fresh_{round}");
        write_plugin(&env, &url, &schema, &entries);
        let out = run(
            &mirror,
            &env,
            &[
                "run",
                "ot",
                "disease",
                "interaction",
                "--release",
                "25.03",
                "--source-url",
                &url,
                "--db",
                db.url(),
            ],
        );
        if !out.status.success() {
            failures.push(format!("round {round} (schema {schema}):\n{}", text(&out)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 6 rounds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn canonical_forms_tell_values_apart() {
    use arrow_schema::{Field, Fields};
    // Floats: an f32 printed shortest and widened exactly are the same real; different f64s differ.
    assert_eq!(
        norm(&DataType::Float32, &serde_json::json!(0.1)),
        norm(&DataType::Float32, &serde_json::json!(0.10000000149011612))
    );
    assert_ne!(
        norm(&DataType::Float64, &serde_json::json!(0.1)),
        norm(&DataType::Float64, &serde_json::json!(0.10000000149011612))
    );
    assert_eq!(
        norm(&DataType::Float64, &serde_json::json!(1)),
        norm(&DataType::Float64, &serde_json::json!(1.0))
    );
    // Integers never equal floats.
    assert_ne!(
        norm(&DataType::Int64, &serde_json::json!(1)),
        norm(&DataType::Int64, &serde_json::json!(1.0))
    );
    // Timestamps by instant.
    let tz = DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(
        norm(&tz, &serde_json::json!("2024-01-02T03:04:05.5Z")),
        norm(&tz, &serde_json::json!("2024-01-02T03:04:05.5+00:00"))
    );
    assert_ne!(
        norm(&tz, &serde_json::json!("2024-01-02T03:04:05Z")),
        norm(&tz, &serde_json::json!("2024-01-02T03:04:06Z"))
    );
    // Struct key order does not matter, a missing field is null, an extra key differs.
    let st = DataType::Struct(Fields::from(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    let a = norm(&st, &serde_json::json!({"a": 1, "b": null}));
    assert_eq!(
        canon(&a),
        canon(&norm(&st, &serde_json::json!({"b": null, "a": 1})))
    );
    assert_eq!(canon(&a), canon(&norm(&st, &serde_json::json!({"a": 1}))));
    assert_ne!(
        canon(&a),
        canon(&norm(&st, &serde_json::json!({"a": 1, "b": null, "c": 2})))
    );
    // Lists keep their order.
    let l = DataType::List(std::sync::Arc::new(Field::new(
        "item",
        DataType::Utf8,
        true,
    )));
    assert_ne!(
        canon(&norm(&l, &serde_json::json!(["x", "y"]))),
        canon(&norm(&l, &serde_json::json!(["y", "x"])))
    );
}
