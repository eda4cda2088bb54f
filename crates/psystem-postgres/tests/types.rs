//! Every supported Arrow type round-trips through our binary COPY into PostgreSQL and back.

mod common;

use std::sync::Arc;

use arrow_array::builder::{BinaryViewBuilder, StringViewBuilder};
use arrow_array::*;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use psystem_core::{LoadMode, TableRef};
use psystem_postgres::{encode_copy_binary, Destination, DestinationError, LoadSpec};
use psystem_testkit::db::TestDb;
use sqlx::{Connection, PgConnection, Row};

const TRICKY: &[&str] = &[
    "tab\there",
    "new\nline and\r\ncrlf",
    "back\\slash \\N \\.",
    "double\"quote",
    "single'quote",
    "emoji 🧬🦠 ünïcødé 中文",
    "",
    "NULL",
    "comma,semi;colon|pipe",
];

fn ndt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

fn micros(s: &str) -> i64 {
    ndt(s).and_utc().timestamp_micros()
}

fn days(s: &str) -> i32 {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

fn time_micros(s: &str) -> i64 {
    let t = NaiveTime::parse_from_str(s, "%H:%M:%S%.f").unwrap();
    (t - NaiveTime::MIN).num_microseconds().unwrap()
}

/// Four rows: typical values, extremes, all NULL, other extremes.
fn all_types_batch() -> RecordBatch {
    let ts_a = "2024-02-29 12:34:56.789123";
    let ts_b = "1969-12-31 23:59:59.999999";
    let ts_c = "1999-12-31 23:59:59";
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    let mut add = |name: &str, dt: DataType, a: ArrayRef| {
        fields.push(Field::new(name, dt, true));
        cols.push(a);
    };
    add(
        "id",
        DataType::Int64,
        Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
    );
    add(
        "i8",
        DataType::Int8,
        Arc::new(Int8Array::from(vec![
            Some(7),
            Some(i8::MIN),
            None,
            Some(i8::MAX),
        ])),
    );
    add(
        "i16",
        DataType::Int16,
        Arc::new(Int16Array::from(vec![
            Some(-7),
            Some(i16::MIN),
            None,
            Some(i16::MAX),
        ])),
    );
    add(
        "i32",
        DataType::Int32,
        Arc::new(Int32Array::from(vec![
            Some(42),
            Some(i32::MIN),
            None,
            Some(i32::MAX),
        ])),
    );
    add(
        "i64",
        DataType::Int64,
        Arc::new(Int64Array::from(vec![
            Some(-42),
            Some(i64::MIN),
            None,
            Some(i64::MAX),
        ])),
    );
    add(
        "u8",
        DataType::UInt8,
        Arc::new(UInt8Array::from(vec![
            Some(1),
            Some(0),
            None,
            Some(u8::MAX),
        ])),
    );
    add(
        "u16",
        DataType::UInt16,
        Arc::new(UInt16Array::from(vec![
            Some(1),
            Some(0),
            None,
            Some(u16::MAX),
        ])),
    );
    add(
        "u32",
        DataType::UInt32,
        Arc::new(UInt32Array::from(vec![
            Some(1),
            Some(0),
            None,
            Some(u32::MAX),
        ])),
    );
    add(
        "u64",
        DataType::UInt64,
        Arc::new(UInt64Array::from(vec![
            Some(10_000),
            Some(0),
            None,
            Some(u64::MAX),
        ])),
    );
    add(
        "f32",
        DataType::Float32,
        Arc::new(Float32Array::from(vec![
            Some(1.5),
            Some(f32::MIN_POSITIVE),
            None,
            Some(f32::INFINITY),
        ])),
    );
    add(
        "f64",
        DataType::Float64,
        Arc::new(Float64Array::from(vec![
            Some(std::f64::consts::PI),
            Some(-0.0),
            None,
            Some(f64::MAX),
        ])),
    );
    add(
        "b",
        DataType::Boolean,
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
        ])),
    );
    add(
        "s",
        DataType::Utf8,
        Arc::new(StringArray::from(vec![
            Some(TRICKY[0]),
            Some(TRICKY[1]),
            None,
            Some(TRICKY[5]),
        ])),
    );
    add(
        "ls",
        DataType::LargeUtf8,
        Arc::new(LargeStringArray::from(vec![
            Some(TRICKY[2]),
            Some(TRICKY[3]),
            None,
            Some(TRICKY[6]),
        ])),
    );
    let mut sv = StringViewBuilder::new();
    sv.append_value(TRICKY[4]);
    sv.append_value("a string longer than twelve bytes, stored out of line 🧬");
    sv.append_null();
    sv.append_value(TRICKY[7]);
    add("sv", DataType::Utf8View, Arc::new(sv.finish()));
    add(
        "bin",
        DataType::Binary,
        Arc::new(BinaryArray::from(vec![
            Some(&[0u8, 1, 2, 255][..]),
            Some(&b""[..]),
            None,
            Some(&b"\\\n\t\0"[..]),
        ])),
    );
    add(
        "lbin",
        DataType::LargeBinary,
        Arc::new(LargeBinaryArray::from(vec![
            Some(&[9u8][..]),
            Some(&[0u8; 300][..]),
            None,
            Some(&b"x"[..]),
        ])),
    );
    let mut bv = BinaryViewBuilder::new();
    bv.append_value([1u8, 2, 3]);
    bv.append_value([7u8; 40]);
    bv.append_null();
    bv.append_value([0u8]);
    add("bv", DataType::BinaryView, Arc::new(bv.finish()));
    add(
        "d",
        DataType::Date32,
        Arc::new(Date32Array::from(vec![
            Some(days("2024-02-29")),
            Some(days("1900-01-01")),
            None,
            Some(days("1970-01-01")),
        ])),
    );
    for (name, unit) in [
        ("s", TimeUnit::Second),
        ("ms", TimeUnit::Millisecond),
        ("us", TimeUnit::Microsecond),
        ("ns", TimeUnit::Nanosecond),
    ] {
        let conv = |s: &str, extra_ns: i64| -> i64 {
            let us = micros(s);
            match unit {
                TimeUnit::Second => us.div_euclid(1_000_000),
                TimeUnit::Millisecond => us.div_euclid(1_000),
                TimeUnit::Microsecond => us,
                TimeUnit::Nanosecond => us * 1_000 + extra_ns,
            }
        };
        let values = vec![
            Some(conv(ts_a, 456)),
            Some(conv(ts_b, 999)),
            None,
            Some(conv(ts_c, 0)),
        ];
        let ts: ArrayRef = match unit {
            TimeUnit::Second => Arc::new(TimestampSecondArray::from(values.clone())),
            TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(values.clone())),
            TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::from(values.clone())),
            TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::from(values.clone())),
        };
        add(&format!("ts_{name}"), DataType::Timestamp(unit, None), ts);
        let tstz: ArrayRef = match unit {
            TimeUnit::Second => {
                Arc::new(TimestampSecondArray::from(values).with_timezone("+02:00"))
            }
            TimeUnit::Millisecond => {
                Arc::new(TimestampMillisecondArray::from(values).with_timezone("+02:00"))
            }
            TimeUnit::Microsecond => {
                Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
            }
            TimeUnit::Nanosecond => {
                Arc::new(TimestampNanosecondArray::from(values).with_timezone("America/New_York"))
            }
        };
        let tz = match unit {
            TimeUnit::Second | TimeUnit::Millisecond => "+02:00",
            TimeUnit::Microsecond => "UTC",
            TimeUnit::Nanosecond => "America/New_York",
        };
        add(
            &format!("tstz_{name}"),
            DataType::Timestamp(unit, Some(tz.into())),
            tstz,
        );
    }
    let t_a = "13:14:15.161718";
    let t_b = "23:59:59.999999";
    add(
        "t32_s",
        DataType::Time32(TimeUnit::Second),
        Arc::new(Time32SecondArray::from(vec![
            Some((time_micros(t_a) / 1_000_000) as i32),
            Some(0),
            None,
            Some(86_399),
        ])),
    );
    add(
        "t32_ms",
        DataType::Time32(TimeUnit::Millisecond),
        Arc::new(Time32MillisecondArray::from(vec![
            Some((time_micros(t_a) / 1_000) as i32),
            Some(0),
            None,
            Some(86_399_999),
        ])),
    );
    add(
        "t64_us",
        DataType::Time64(TimeUnit::Microsecond),
        Arc::new(Time64MicrosecondArray::from(vec![
            Some(time_micros(t_a)),
            Some(0),
            None,
            Some(time_micros(t_b)),
        ])),
    );
    add(
        "t64_ns",
        DataType::Time64(TimeUnit::Nanosecond),
        Arc::new(Time64NanosecondArray::from(vec![
            Some(time_micros(t_a) * 1_000 + 999),
            Some(0),
            None,
            Some(time_micros(t_b) * 1_000),
        ])),
    );
    add("nothing", DataType::Null, Arc::new(NullArray::new(4)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

async fn check_all_types(conn: &mut PgConnection, table: &str) {
    let sql = format!("SELECT *, u64::text AS u64_text, pg_typeof(u64)::text AS u64_type FROM {table} ORDER BY id");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await.unwrap();
    assert_eq!(rows.len(), 4);
    let r = &rows;
    // Integers.
    assert_eq!(r[0].get::<Option<i16>, _>("i8"), Some(7));
    assert_eq!(r[1].get::<Option<i16>, _>("i8"), Some(-128));
    assert_eq!(r[3].get::<Option<i16>, _>("i16"), Some(i16::MAX));
    assert_eq!(r[1].get::<Option<i32>, _>("i32"), Some(i32::MIN));
    assert_eq!(r[1].get::<Option<i64>, _>("i64"), Some(i64::MIN));
    assert_eq!(r[3].get::<Option<i64>, _>("i64"), Some(i64::MAX));
    assert_eq!(r[3].get::<Option<i32>, _>("u8"), Some(255));
    assert_eq!(r[3].get::<Option<i32>, _>("u16"), Some(65_535));
    assert_eq!(r[3].get::<Option<i64>, _>("u32"), Some(4_294_967_295));
    assert_eq!(
        r[0].get::<Option<String>, _>("u64_text").as_deref(),
        Some("10000")
    );
    assert_eq!(
        r[1].get::<Option<String>, _>("u64_text").as_deref(),
        Some("0")
    );
    assert_eq!(
        r[3].get::<Option<String>, _>("u64_text").as_deref(),
        Some("18446744073709551615")
    );
    assert_eq!(r[0].get::<String, _>("u64_type"), "numeric");
    // Floats.
    assert_eq!(r[0].get::<Option<f32>, _>("f32"), Some(1.5));
    assert_eq!(r[1].get::<Option<f32>, _>("f32"), Some(f32::MIN_POSITIVE));
    assert_eq!(r[3].get::<Option<f32>, _>("f32"), Some(f32::INFINITY));
    assert_eq!(
        r[0].get::<Option<f64>, _>("f64"),
        Some(std::f64::consts::PI)
    );
    let neg_zero = r[1].get::<Option<f64>, _>("f64").unwrap();
    assert!(neg_zero == 0.0 && neg_zero.is_sign_negative());
    assert_eq!(r[3].get::<Option<f64>, _>("f64"), Some(f64::MAX));
    assert_eq!(r[1].get::<Option<bool>, _>("b"), Some(false));
    assert_eq!(r[3].get::<Option<bool>, _>("b"), Some(true));
    // Text, byte for byte.
    assert_eq!(
        r[0].get::<Option<String>, _>("s").as_deref(),
        Some(TRICKY[0])
    );
    assert_eq!(
        r[1].get::<Option<String>, _>("s").as_deref(),
        Some(TRICKY[1])
    );
    assert_eq!(
        r[3].get::<Option<String>, _>("s").as_deref(),
        Some(TRICKY[5])
    );
    assert_eq!(
        r[0].get::<Option<String>, _>("ls").as_deref(),
        Some(TRICKY[2])
    );
    assert_eq!(
        r[1].get::<Option<String>, _>("ls").as_deref(),
        Some(TRICKY[3])
    );
    assert_eq!(r[3].get::<Option<String>, _>("ls").as_deref(), Some(""));
    assert_eq!(
        r[0].get::<Option<String>, _>("sv").as_deref(),
        Some(TRICKY[4])
    );
    assert_eq!(
        r[1].get::<Option<String>, _>("sv").as_deref(),
        Some("a string longer than twelve bytes, stored out of line 🧬")
    );
    assert_eq!(r[3].get::<Option<String>, _>("sv").as_deref(), Some("NULL"));
    // Bytes.
    assert_eq!(
        r[0].get::<Option<Vec<u8>>, _>("bin"),
        Some(vec![0, 1, 2, 255])
    );
    assert_eq!(r[1].get::<Option<Vec<u8>>, _>("bin"), Some(vec![]));
    assert_eq!(
        r[3].get::<Option<Vec<u8>>, _>("bin"),
        Some(b"\\\n\t\0".to_vec())
    );
    assert_eq!(r[1].get::<Option<Vec<u8>>, _>("lbin"), Some(vec![0; 300]));
    assert_eq!(r[0].get::<Option<Vec<u8>>, _>("bv"), Some(vec![1, 2, 3]));
    assert_eq!(r[1].get::<Option<Vec<u8>>, _>("bv"), Some(vec![7; 40]));
    // Dates.
    let date = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    assert_eq!(
        r[0].get::<Option<NaiveDate>, _>("d"),
        Some(date("2024-02-29"))
    );
    assert_eq!(
        r[1].get::<Option<NaiveDate>, _>("d"),
        Some(date("1900-01-01"))
    );
    assert_eq!(
        r[3].get::<Option<NaiveDate>, _>("d"),
        Some(date("1970-01-01"))
    );
    // Timestamps, per unit (seconds and milliseconds lose the finer digits; nanoseconds round down).
    let expected_a = [
        ("s", "2024-02-29 12:34:56"),
        ("ms", "2024-02-29 12:34:56.789"),
        ("us", "2024-02-29 12:34:56.789123"),
        ("ns", "2024-02-29 12:34:56.789123"),
    ];
    let expected_b = [
        ("s", "1969-12-31 23:59:59"),
        ("ms", "1969-12-31 23:59:59.999"),
        ("us", "1969-12-31 23:59:59.999999"),
        ("ns", "1969-12-31 23:59:59.999999"),
    ];
    for ((unit, a), (_, b)) in expected_a.iter().zip(expected_b.iter()) {
        let col = format!("ts_{unit}");
        assert_eq!(
            r[0].get::<Option<NaiveDateTime>, _>(col.as_str()),
            Some(ndt(a)),
            "{col}"
        );
        assert_eq!(
            r[1].get::<Option<NaiveDateTime>, _>(col.as_str()),
            Some(ndt(b)),
            "{col}"
        );
        assert_eq!(
            r[2].get::<Option<NaiveDateTime>, _>(col.as_str()),
            None,
            "{col}"
        );
        assert_eq!(
            r[3].get::<Option<NaiveDateTime>, _>(col.as_str()),
            Some(ndt("1999-12-31 23:59:59")),
            "{col}"
        );
        // timestamptz: the Arrow value is the UTC instant, whatever the zone label.
        let col = format!("tstz_{unit}");
        assert_eq!(
            r[0].get::<Option<DateTime<Utc>>, _>(col.as_str()),
            Some(ndt(a).and_utc()),
            "{col}"
        );
        assert_eq!(
            r[1].get::<Option<DateTime<Utc>>, _>(col.as_str()),
            Some(ndt(b).and_utc()),
            "{col}"
        );
        assert_eq!(
            r[2].get::<Option<DateTime<Utc>>, _>(col.as_str()),
            None,
            "{col}"
        );
    }
    // Times.
    let time = |s| NaiveTime::parse_from_str(s, "%H:%M:%S%.f").unwrap();
    assert_eq!(
        r[0].get::<Option<NaiveTime>, _>("t32_s"),
        Some(time("13:14:15"))
    );
    assert_eq!(
        r[0].get::<Option<NaiveTime>, _>("t32_ms"),
        Some(time("13:14:15.161"))
    );
    assert_eq!(
        r[0].get::<Option<NaiveTime>, _>("t64_us"),
        Some(time("13:14:15.161718"))
    );
    assert_eq!(
        r[0].get::<Option<NaiveTime>, _>("t64_ns"),
        Some(time("13:14:15.161718"))
    );
    assert_eq!(
        r[3].get::<Option<NaiveTime>, _>("t32_s"),
        Some(time("23:59:59"))
    );
    assert_eq!(
        r[3].get::<Option<NaiveTime>, _>("t64_us"),
        Some(time("23:59:59.999999"))
    );
    assert_eq!(
        r[1].get::<Option<NaiveTime>, _>("t64_ns"),
        Some(NaiveTime::MIN)
    );
    // NULLs everywhere in row 3, and the Null column is always NULL.
    let non_null: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} t, jsonb_each(to_jsonb(t)) e WHERE t.id = 3 AND e.key <> 'id' AND e.value <> 'null'::jsonb"
    ))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(non_null, 0, "row 3 must be NULL in every column");
    let null_col: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} WHERE nothing IS NOT NULL"
    ))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(null_col, 0);
}

/// The public encoder, through a raw `COPY … FROM STDIN (FORMAT binary)` into a table created from the mapping.
#[tokio::test]
async fn encoder_round_trips_every_type_through_raw_copy() {
    let db = TestDb::create().await;
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let batch = all_types_batch();
    let defs: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                psystem_postgres::quote_ident(f.name()),
                psystem_postgres::pg_type(f).unwrap()
            )
        })
        .collect();
    sqlx::raw_sql(&format!("CREATE TABLE all_types ({})", defs.join(", ")))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    encode_copy_binary(&batch, &mut buf).unwrap();
    let mut copy = conn
        .copy_in_raw("COPY all_types FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    copy.send(&buf[..]).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), 4);
    check_all_types(&mut conn, "all_types").await;
}

/// The same batch through the destination (append: creates the table, COPY, checkpoint).
#[tokio::test]
async fn destination_round_trips_every_type() {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.unwrap();
    let batch = all_types_batch();
    let spec = LoadSpec {
        job_key: "types".into(),
        plugin: "p".into(),
        entry: "e".into(),
        source_kind: "files".into(),
        table: TableRef::new("public", "typed"),
        mode: LoadMode::Append,
        primary_key: vec!["id".into()],
        schema: batch.schema(),
        source_fingerprint: None,
        ids: None,
    };
    let mut load = dest.open_load(spec, false).await.unwrap();
    dest.commit_page(
        &mut load,
        &batch,
        serde_json::json!({"page": 1}),
        123,
        Some(4),
    )
    .await
    .unwrap();
    dest.finish_load(&mut load).await.unwrap();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    check_all_types(&mut conn, "public.typed").await;
    // The column types are the documented ones.
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'public.typed'::regclass AND attnum > 0 ORDER BY attnum",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let ty = |c: &str| types.iter().find(|(n, _)| n == c).unwrap().1.clone();
    assert_eq!(ty("i8"), "smallint");
    assert_eq!(ty("u16"), "integer");
    assert_eq!(ty("u32"), "bigint");
    assert_eq!(ty("u64"), "numeric(20,0)");
    assert_eq!(ty("f32"), "real");
    assert_eq!(ty("sv"), "text");
    assert_eq!(ty("bv"), "bytea");
    assert_eq!(ty("ts_ns"), "timestamp without time zone");
    assert_eq!(ty("tstz_s"), "timestamp with time zone");
    assert_eq!(ty("t32_ms"), "time without time zone");
    assert_eq!(ty("nothing"), "text");
}

/// Tricky strings in a merge (through the temporary table) come back unchanged too.
#[tokio::test]
async fn tricky_strings_round_trip_in_every_mode() {
    let (db, dest) = common::setup().await;
    let pool = dest.pool().clone();
    for (i, mode) in [LoadMode::Append, LoadMode::Merge, LoadMode::Replace]
        .into_iter()
        .enumerate()
    {
        let table = format!("tricky_{i}");
        let rows: Vec<(i64, &str, f64)> = TRICKY
            .iter()
            .enumerate()
            .map(|(n, s)| (n as i64, *s, n as f64))
            .collect();
        let mut load = dest
            .open_load(common::spec(&table, &table, mode, &["id"]), false)
            .await
            .unwrap();
        dest.commit_page(
            &mut load,
            &common::batch(&rows),
            serde_json::json!(1),
            0,
            None,
        )
        .await
        .unwrap();
        dest.finish_load(&mut load).await.unwrap();
        let got = common::rows(&pool, &table).await;
        assert_eq!(got.len(), TRICKY.len(), "{mode}");
        for (n, s) in TRICKY.iter().enumerate() {
            assert_eq!(got[n].1.as_deref(), Some(*s), "{mode} row {n}");
        }
    }
    drop(db);
}

#[tokio::test]
async fn unsupported_types_are_refused_at_open_naming_the_column() {
    let (_db, dest) = common::setup().await;
    let mut spec = common::spec("j", "t", LoadMode::Append, &[]);
    spec.schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "tags",
            DataType::RunEndEncoded(
                Arc::new(Field::new("run_ends", DataType::Int32, false)),
                Arc::new(Field::new("values", DataType::Utf8, true)),
            ),
            true,
        ),
    ]));
    match dest.open_load(spec, false).await.unwrap_err() {
        DestinationError::UnsupportedType { column, .. } => assert_eq!(column, "tags"),
        e => panic!("unexpected {e}"),
    }
    assert!(!common::table_exists(dest.pool(), "public.t").await);
}

#[tokio::test]
async fn lists_of_strings_round_trip_as_text_arrays() {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    let (_db, dest) = common::setup().await;
    let mut b = ListBuilder::new(StringBuilder::new());
    b.values().append_value("head");
    b.values().append_value("shoulders, \"knees\"\t\\n");
    b.append(true);
    b.append(true); // empty list
    b.append(false); // null list
    b.values().append_null();
    b.values().append_value("ü 🦀");
    b.append(true);
    let tags = b.finish();
    let field = Field::new("tags", tags.data_type().clone(), true);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        field,
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(tags),
        ],
    )
    .unwrap();
    let mut spec = common::spec("j", "tl", LoadMode::Append, &[]);
    spec.schema = schema;
    let mut load = dest.open_load(spec, false).await.unwrap();
    dest.commit_page(&mut load, &batch, serde_json::json!({"p": 1}), 1, None)
        .await
        .unwrap();
    dest.finish_load(&mut load).await.unwrap();
    let rows: Vec<(i64, Option<Vec<Option<String>>>)> =
        sqlx::query_as("SELECT id, tags FROM tl ORDER BY id")
            .fetch_all(dest.pool())
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                1,
                Some(vec![
                    Some("head".to_string()),
                    Some("shoulders, \"knees\"\t\\n".to_string())
                ])
            ),
            (2, Some(vec![])),
            (3, None),
            (4, Some(vec![None, Some("ü 🦀".to_string())])),
        ]
    );
    let ty: String = sqlx::query_scalar("SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'tl'::regclass AND attname = 'tags'")
        .fetch_one(dest.pool())
        .await
        .unwrap();
    assert_eq!(ty, "text[]");
}
