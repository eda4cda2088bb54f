//! Every Arrow type of `docs/TYPES.md` round-trips through our binary COPY into a real PostgreSQL and back, with
//! expected values written out independently of the encoder; the NUL policy; flattened Open Targets fixtures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeListBuilder, Int32Builder, ListBuilder, MapBuilder, StringBuilder, StringViewBuilder,
};
use arrow_array::types::*;
use arrow_array::*;
use arrow_buffer::{i256, IntervalDayTime, IntervalMonthDayNano, NullBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use bytes::BytesMut;
use psystem_core::flatten::{flatten_batch, FlattenOptions};
use psystem_postgres::copy_binary::{encode_copy_binary_with, CopyOptions, NulPolicy};
use psystem_postgres::{encode_copy_binary, pg_type, quote_ident, DestinationError};
use psystem_testkit::db::TestDb;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, Row};

/// Creates `table` from the batch's schema (through `pg_type`), COPYs the batch in with our encoder and the
/// given options, and returns the number of rows PostgreSQL reports.
async fn load(
    conn: &mut PgConnection,
    table: &str,
    batch: &RecordBatch,
    options: &CopyOptions,
) -> u64 {
    let defs: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{} {}", quote_ident(f.name()), pg_type(f).unwrap()))
        .collect();
    sqlx::raw_sql(&format!(
        "CREATE TABLE {} ({})",
        quote_ident(table),
        defs.join(", ")
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    let mut buf = BytesMut::new();
    encode_copy_binary_with(batch, options, &mut buf).unwrap();
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {} FROM STDIN (FORMAT binary)",
            quote_ident(table)
        ))
        .await
        .unwrap();
    copy.send(&buf[..]).await.unwrap();
    copy.finish().await.unwrap()
}

/// A connection with a fixed time zone and interval style, so that the text forms are predictable.
async fn connect(db: &TestDb) -> PgConnection {
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql(
        "SET TimeZone = 'UTC'; SET IntervalStyle = 'iso_8601'; SET DateStyle = 'ISO, YMD'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// `col::text` of every row, ordered by `id`.
async fn texts(conn: &mut PgConnection, table: &str, col: &str) -> Vec<Option<String>> {
    sqlx::query(&format!(
        "SELECT {}::text FROM {} ORDER BY id",
        quote_ident(col),
        quote_ident(table)
    ))
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.get::<Option<String>, _>(0))
    .collect()
}

fn field(name: &str, a: &ArrayRef) -> Field {
    Field::new(name, a.data_type().clone(), true)
}

fn batch_of(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols.iter().map(|(n, a)| field(n, a)).collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

fn days(y: i32, m: u32, d: u32) -> i32 {
    let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

fn micros(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

const TRICKY: [&str; 4] = [
    "tab\there, new\nline, cr\r, back\\slash",
    "double\"quote 'single' \\N \\.",
    "emoji 🧬🦠 ünïcødé 中文",
    "",
];

/// Scalars: four rows (id 0..3) per column, each column with its expected `::text` values.
fn scalar_columns() -> Vec<(&'static str, ArrayRef, [Option<&'static str>; 4])> {
    let ts = [
        micros("1969-12-31 23:59:59.999999"),
        micros("1899-12-31 00:00:00"),
        micros("2024-02-29 12:34:56.789123"),
    ];
    let secs = |m: i64| m.div_euclid(1_000_000);
    let ts_s: Vec<Option<i64>> = vec![Some(secs(ts[1])), Some(-1), None, Some(secs(ts[2]))];
    let ts_ms: Vec<Option<i64>> = vec![
        Some(ts[1] / 1000),
        Some(-1),
        None,
        Some(ts[2].div_euclid(1000)),
    ];
    let ts_us: Vec<Option<i64>> = vec![Some(ts[1]), Some(ts[0]), None, Some(ts[2])];
    let ts_ns: Vec<Option<i64>> =
        vec![Some(ts[1] * 1000), Some(-1), None, Some(ts[2] * 1000 + 999)];
    let exp_s = [
        Some("1899-12-31 00:00:00"),
        Some("1969-12-31 23:59:59"),
        None,
        Some("2024-02-29 12:34:56"),
    ];
    let exp_ms = [
        Some("1899-12-31 00:00:00"),
        Some("1969-12-31 23:59:59.999"),
        None,
        Some("2024-02-29 12:34:56.789"),
    ];
    let exp_us = [
        Some("1899-12-31 00:00:00"),
        Some("1969-12-31 23:59:59.999999"),
        None,
        Some("2024-02-29 12:34:56.789123"),
    ];
    let exp_ns = exp_us;
    let tz = |e: [Option<&'static str>; 4]| -> [Option<&'static str>; 4] {
        e.map(|v| v.map(|s| &*Box::leak(format!("{s}+00").into_boxed_str())))
    };
    let dec = |v: Vec<Option<i128>>, p: u8, s: i8| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(v)
                .with_precision_and_scale(p, s)
                .unwrap(),
        )
    };
    let max38 = 10i128.pow(38) - 1;
    let big = i256::from_string(&format!("-{}", "1234567890".repeat(7) + "123456")).unwrap();
    let bins: Vec<Option<&[u8]>> = vec![Some(b"\x00\x01\xff"), Some(b""), None, Some(b"\\x00")];
    let dict = DictionaryArray::<Int8Type>::new(
        Int8Array::from(vec![Some(1), None, Some(0), Some(1)]),
        Arc::new(StringArray::from(vec![Some("zero\ttab"), None])),
    );
    let dict_int = DictionaryArray::<UInt32Type>::new(
        UInt32Array::from(vec![0, 1, 0, 2]),
        Arc::new(Int64Array::from(vec![i64::MIN, 7, i64::MAX])),
    );
    vec![
        (
            "i8",
            Arc::new(Int8Array::from(vec![
                Some(i8::MIN),
                Some(i8::MAX),
                None,
                Some(0),
            ])),
            [Some("-128"), Some("127"), None, Some("0")],
        ),
        (
            "i16",
            Arc::new(Int16Array::from(vec![
                Some(i16::MIN),
                Some(i16::MAX),
                None,
                Some(-1),
            ])),
            [Some("-32768"), Some("32767"), None, Some("-1")],
        ),
        (
            "i32",
            Arc::new(Int32Array::from(vec![
                Some(i32::MIN),
                Some(i32::MAX),
                None,
                Some(1),
            ])),
            [Some("-2147483648"), Some("2147483647"), None, Some("1")],
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                Some(i64::MAX),
                None,
                Some(0),
            ])),
            [
                Some("-9223372036854775808"),
                Some("9223372036854775807"),
                None,
                Some("0"),
            ],
        ),
        (
            "u8",
            Arc::new(UInt8Array::from(vec![
                Some(0),
                Some(u8::MAX),
                None,
                Some(1),
            ])),
            [Some("0"), Some("255"), None, Some("1")],
        ),
        (
            "u16",
            Arc::new(UInt16Array::from(vec![
                Some(0),
                Some(u16::MAX),
                None,
                Some(1),
            ])),
            [Some("0"), Some("65535"), None, Some("1")],
        ),
        (
            "u32",
            Arc::new(UInt32Array::from(vec![
                Some(0),
                Some(u32::MAX),
                None,
                Some(1),
            ])),
            [Some("0"), Some("4294967295"), None, Some("1")],
        ),
        (
            "u64",
            Arc::new(UInt64Array::from(vec![
                Some(0),
                Some(u64::MAX),
                None,
                Some(10_000),
            ])),
            [Some("0"), Some("18446744073709551615"), None, Some("10000")],
        ),
        (
            "f16",
            Arc::new(Float16Array::from(vec![
                Some(half::f16::from_f32(1.5)),
                Some(half::f16::MAX),
                None,
                Some(half::f16::NEG_INFINITY),
            ])),
            [Some("1.5"), Some("65504"), None, Some("-Infinity")],
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(f32::NAN),
                Some(f32::INFINITY),
                None,
                Some(0.1),
            ])),
            [Some("NaN"), Some("Infinity"), None, Some("0.1")],
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![
                Some(f64::NEG_INFINITY),
                Some(f64::MAX),
                None,
                Some(-0.1),
            ])),
            [
                Some("-Infinity"),
                Some("1.7976931348623157e+308"),
                None,
                Some("-0.1"),
            ],
        ),
        (
            "dec0",
            dec(vec![Some(max38), Some(-max38), None, Some(0)], 38, 0),
            [
                Some("99999999999999999999999999999999999999"),
                Some("-99999999999999999999999999999999999999"),
                None,
                Some("0"),
            ],
        ),
        (
            "dec2",
            dec(vec![Some(12_345), Some(-1), None, Some(100)], 10, 2),
            [Some("123.45"), Some("-0.01"), None, Some("1.00")],
        ),
        (
            "dec38",
            dec(vec![Some(1), Some(-max38), None, Some(0)], 38, 38),
            [
                Some("0.00000000000000000000000000000000000001"),
                Some("-0.99999999999999999999999999999999999999"),
                None,
                Some("0.00000000000000000000000000000000000000"),
            ],
        ),
        (
            "dec_neg_scale",
            dec(vec![Some(123), Some(-5), None, Some(0)], 5, -3),
            [Some("123000"), Some("-5000"), None, Some("0")],
        ),
        (
            "dec256",
            Arc::new(
                Decimal256Array::from(vec![
                    Some(big),
                    Some(i256::from_i128(1)),
                    None,
                    Some(i256::ZERO),
                ])
                .with_precision_and_scale(76, 10)
                .unwrap(),
            ),
            [
                Some(Box::leak(
                    format!(
                        "-{}.{}",
                        &("1234567890".repeat(7) + "123456")[..66],
                        &("1234567890".repeat(7) + "123456")[66..]
                    )
                    .into_boxed_str(),
                )),
                Some("0.0000000001"),
                None,
                Some("0.0000000000"),
            ],
        ),
        (
            "dec32",
            Arc::new(
                Decimal32Array::from(vec![Some(-123_456_789), Some(5), None, Some(0)])
                    .with_precision_and_scale(9, 3)
                    .unwrap(),
            ),
            [Some("-123456.789"), Some("0.005"), None, Some("0.000")],
        ),
        (
            "dec64",
            Arc::new(
                Decimal64Array::from(vec![Some(i64::MAX / 10), Some(-10_000), None, Some(1)])
                    .with_precision_and_scale(18, 4)
                    .unwrap(),
            ),
            [
                Some("92233720368547.7580"),
                Some("-1.0000"),
                None,
                Some("0.0001"),
            ],
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])),
            [Some("true"), Some("false"), None, Some("true")],
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some(TRICKY[0]),
                Some(TRICKY[1]),
                None,
                Some(TRICKY[2]),
            ])),
            [Some(TRICKY[0]), Some(TRICKY[1]), None, Some(TRICKY[2])],
        ),
        (
            "ls",
            Arc::new(LargeStringArray::from(vec![
                Some(TRICKY[3]),
                Some(TRICKY[2]),
                None,
                Some(TRICKY[0]),
            ])),
            [Some(""), Some(TRICKY[2]), None, Some(TRICKY[0])],
        ),
        (
            "sv",
            Arc::new(StringViewArray::from(vec![
                Some(TRICKY[1]),
                Some("a string longer than twelve bytes"),
                None,
                Some("short"),
            ])),
            [
                Some(TRICKY[1]),
                Some("a string longer than twelve bytes"),
                None,
                Some("short"),
            ],
        ),
        (
            "bin",
            Arc::new(BinaryArray::from(bins.clone())),
            [Some("\\x0001ff"), Some("\\x"), None, Some("\\x5c783030")],
        ),
        (
            "lbin",
            Arc::new(LargeBinaryArray::from(bins.clone())),
            [Some("\\x0001ff"), Some("\\x"), None, Some("\\x5c783030")],
        ),
        (
            "bview",
            Arc::new(BinaryViewArray::from(bins)),
            [Some("\\x0001ff"), Some("\\x"), None, Some("\\x5c783030")],
        ),
        (
            "fsb",
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![
                        Some(vec![0u8, 0]),
                        Some(vec![255, 1]),
                        None,
                        Some(vec![0x41, 0]),
                    ]
                    .into_iter(),
                    2,
                )
                .unwrap(),
            ),
            [Some("\\x0000"), Some("\\xff01"), None, Some("\\x4100")],
        ),
        (
            "d32",
            Arc::new(Date32Array::from(vec![
                Some(days(1899, 12, 31)),
                Some(-1),
                None,
                Some(days(2024, 2, 29)),
            ])),
            [
                Some("1899-12-31"),
                Some("1969-12-31"),
                None,
                Some("2024-02-29"),
            ],
        ),
        (
            "d64",
            Arc::new(Date64Array::from(vec![
                Some(days(1, 1, 1) as i64 * 86_400_000),
                Some(-86_400_000),
                None,
                Some(days(2000, 1, 1) as i64 * 86_400_000),
            ])),
            [
                Some("0001-01-01"),
                Some("1969-12-31"),
                None,
                Some("2000-01-01"),
            ],
        ),
        (
            "ts_s",
            Arc::new(TimestampSecondArray::from(ts_s.clone())),
            exp_s,
        ),
        (
            "ts_ms",
            Arc::new(TimestampMillisecondArray::from(ts_ms.clone())),
            exp_ms,
        ),
        (
            "ts_us",
            Arc::new(TimestampMicrosecondArray::from(ts_us.clone())),
            exp_us,
        ),
        (
            "ts_ns",
            Arc::new(TimestampNanosecondArray::from(ts_ns.clone())),
            exp_ns,
        ),
        (
            "tstz_s",
            Arc::new(TimestampSecondArray::from(ts_s).with_timezone("+02:00")),
            tz(exp_s),
        ),
        (
            "tstz_ms",
            Arc::new(TimestampMillisecondArray::from(ts_ms).with_timezone("UTC")),
            tz(exp_ms),
        ),
        (
            "tstz_us",
            Arc::new(TimestampMicrosecondArray::from(ts_us).with_timezone("Europe/Berlin")),
            tz(exp_us),
        ),
        (
            "tstz_ns",
            Arc::new(TimestampNanosecondArray::from(ts_ns).with_timezone("-05:00")),
            tz(exp_ns),
        ),
        (
            "t32_s",
            Arc::new(Time32SecondArray::from(vec![
                Some(0),
                Some(86_399),
                None,
                Some(86_400),
            ])),
            [Some("00:00:00"), Some("23:59:59"), None, Some("24:00:00")],
        ),
        (
            "t32_ms",
            Arc::new(Time32MillisecondArray::from(vec![
                Some(1),
                Some(86_399_999),
                None,
                Some(45_296_500),
            ])),
            [
                Some("00:00:00.001"),
                Some("23:59:59.999"),
                None,
                Some("12:34:56.5"),
            ],
        ),
        (
            "t64_us",
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(1),
                Some(86_399_999_999),
                None,
                Some(0),
            ])),
            [
                Some("00:00:00.000001"),
                Some("23:59:59.999999"),
                None,
                Some("00:00:00"),
            ],
        ),
        (
            "t64_ns",
            Arc::new(Time64NanosecondArray::from(vec![
                Some(1_999),
                Some(86_399_999_999_999),
                None,
                Some(0),
            ])),
            [
                Some("00:00:00.000001"),
                Some("23:59:59.999999"),
                None,
                Some("00:00:00"),
            ],
        ),
        (
            "dur_s",
            Arc::new(DurationSecondArray::from(vec![
                Some(90_061),
                Some(-1),
                None,
                Some(0),
            ])),
            [Some("PT25H1M1S"), Some("PT-1S"), None, Some("PT0S")],
        ),
        (
            "dur_ms",
            Arc::new(DurationMillisecondArray::from(vec![
                Some(-1_500),
                Some(1),
                None,
                Some(0),
            ])),
            [Some("PT-1.5S"), Some("PT0.001S"), None, Some("PT0S")],
        ),
        (
            "dur_us",
            Arc::new(DurationMicrosecondArray::from(vec![
                Some(1),
                Some(3_600_000_000),
                None,
                Some(0),
            ])),
            [Some("PT0.000001S"), Some("PT1H"), None, Some("PT0S")],
        ),
        (
            "dur_ns",
            Arc::new(DurationNanosecondArray::from(vec![
                Some(1_999),
                Some(-1),
                None,
                Some(0),
            ])),
            [
                Some("PT0.000001S"),
                Some("PT-0.000001S"),
                None,
                Some("PT0S"),
            ],
        ),
        (
            "iv_ym",
            Arc::new(IntervalYearMonthArray::from(vec![
                Some(14),
                Some(-1),
                None,
                Some(0),
            ])),
            [Some("P1Y2M"), Some("P-1M"), None, Some("PT0S")],
        ),
        (
            "iv_dt",
            Arc::new(IntervalDayTimeArray::from(vec![
                Some(IntervalDayTime::new(3, 4_000)),
                Some(IntervalDayTime::new(-1, -1)),
                None,
                Some(IntervalDayTime::new(0, 0)),
            ])),
            [Some("P3DT4S"), Some("P-1DT-0.001S"), None, Some("PT0S")],
        ),
        (
            "iv_mdn",
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNano::new(1, 2, 3_000_000_500)),
                Some(IntervalMonthDayNano::new(-13, 0, 0)),
                None,
                Some(IntervalMonthDayNano::new(0, 0, 1_000)),
            ])),
            [Some("P1M2DT3S"), Some("P-1Y-1M"), None, Some("PT0.000001S")],
        ),
        (
            "nothing",
            Arc::new(NullArray::new(4)),
            [None, None, None, None],
        ),
        (
            "dict",
            Arc::new(dict),
            [None, None, Some("zero\ttab"), None],
        ),
        (
            "dict_int",
            Arc::new(dict_int),
            [
                Some("-9223372036854775808"),
                Some("7"),
                Some("-9223372036854775808"),
                Some("9223372036854775807"),
            ],
        ),
    ]
}

#[tokio::test]
async fn every_scalar_type_round_trips_with_edge_values() {
    let db = TestDb::create().await;
    let mut conn = connect(&db).await;
    let columns = scalar_columns();
    let mut cols: Vec<(&str, ArrayRef)> =
        vec![("id", Arc::new(Int32Array::from(vec![0, 1, 2, 3])))];
    cols.extend(columns.iter().map(|(n, a, _)| (*n, a.clone())));
    let batch = batch_of(cols);
    assert_eq!(
        load(&mut conn, "scalars", &batch, &CopyOptions::default()).await,
        4
    );
    for (name, _, expected) in &columns {
        let got = texts(&mut conn, "scalars", name).await;
        let expected: Vec<Option<String>> =
            expected.iter().map(|e| e.map(str::to_string)).collect();
        assert_eq!(got, expected, "column {name}");
    }
    // The column types are the documented ones.
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'scalars'::regclass AND attnum > 0 ORDER BY attnum",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let ty = |c: &str| types.iter().find(|(n, _)| n == c).unwrap().1.clone();
    for (col, t) in [
        ("f16", "real"),
        ("dec2", "numeric"),
        ("dec256", "numeric"),
        ("u64", "numeric(20,0)"),
        ("fsb", "bytea"),
        ("d64", "date"),
        ("dur_s", "interval"),
        ("iv_mdn", "interval"),
        ("dict", "text"),
        ("dict_int", "bigint"),
        ("nothing", "text"),
    ] {
        assert_eq!(ty(col), t, "{col}");
    }
    // Text comes back byte for byte (not through any text form).
    let s: Vec<Option<String>> = sqlx::query_scalar("SELECT s FROM scalars ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(s[0].as_deref(), Some(TRICKY[0]));
    let bin: Vec<Option<Vec<u8>>> = sqlx::query_scalar("SELECT bin FROM scalars ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(bin[0].as_deref(), Some(&b"\x00\x01\xff"[..]));
}

/// Nested columns and their expected JSON (as PostgreSQL returns it from `jsonb`).
fn nested_columns() -> (RecordBatch, Vec<(&'static str, Vec<Value>)>) {
    // list<int64>: [1, null, i64::MIN], [], null, [u64-ish max of i64]
    let ints = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), None, Some(i64::MIN)]),
        Some(vec![]),
        None,
        Some(vec![Some(i64::MAX)]),
    ])) as ArrayRef;
    // large list<float64> with NaN and infinities → null
    let floats = Arc::new(LargeListArray::from_iter_primitive::<Float64Type, _, _>(
        vec![
            Some(vec![Some(0.1), Some(f64::NAN), Some(f64::INFINITY)]),
            Some(vec![Some(1e300), Some(-2.5e-7)]),
            None,
            Some(vec![Some(1.0)]),
        ],
    )) as ArrayRef;
    // list<u64>
    let u64s = Arc::new(ListArray::from_iter_primitive::<UInt64Type, _, _>(vec![
        Some(vec![Some(u64::MAX)]),
        None,
        Some(vec![Some(0)]),
        Some(vec![]),
    ])) as ArrayRef;
    // struct<name: utf8, inner: struct<x: int32, when: date32, at: timestamp(ns, UTC), bytes: binary, price: decimal(10,2)>>
    // with nulls at each level: row 1 struct null, row 2 inner null, row 3 leaves null.
    let inner_fields = Fields::from(vec![
        Field::new("x", DataType::Int32, true),
        Field::new("when", DataType::Date32, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new(
            "local",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new("bytes", DataType::Binary, true),
        Field::new("price", DataType::Decimal128(10, 2), true),
        Field::new("t", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("d", DataType::Duration(TimeUnit::Second), true),
    ]);
    let inner = StructArray::new(
        inner_fields.clone(),
        vec![
            Arc::new(Int32Array::from(vec![Some(7), Some(8), Some(9), None])),
            Arc::new(Date32Array::from(vec![
                Some(days(1969, 7, 20)),
                None,
                None,
                None,
            ])),
            Arc::new(
                TimestampNanosecondArray::from(vec![Some(-1), None, None, None])
                    .with_timezone("UTC"),
            ),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(micros("2024-02-29 12:34:56.5") / 1000),
                None,
                None,
                None,
            ])),
            Arc::new(BinaryArray::from(vec![
                Some(&b"\x00\xab"[..]),
                None,
                None,
                None,
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(-150), None, None, None])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(3_723_500_000),
                None,
                None,
                None,
            ])),
            Arc::new(DurationSecondArray::from(vec![
                Some(90_061),
                None,
                None,
                None,
            ])),
        ],
        Some(NullBuffer::from(vec![true, true, false, true])),
    );
    let outer_fields = Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("inner", DataType::Struct(inner_fields), true),
    ]);
    let outer = Arc::new(StructArray::new(
        outer_fields,
        vec![
            Arc::new(StringArray::from(vec![
                Some("q\"\\\n🧬"),
                Some("hidden"),
                Some("b"),
                None,
            ])),
            Arc::new(inner),
        ],
        Some(NullBuffer::from(vec![true, false, true, true])),
    )) as ArrayRef;
    // list<struct<k: utf8, v: int32>>
    let item_fields = Fields::from(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int32, true),
    ]);
    let items = StructArray::new(
        item_fields.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            Arc::new(Int32Array::from(vec![Some(1), Some(2), None])),
        ],
        Some(NullBuffer::from(vec![true, true, false])),
    );
    let list_of_structs = Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(item_fields), true)),
        arrow_buffer::OffsetBuffer::new(vec![0, 2, 2, 2, 3].into()),
        Arc::new(items),
        Some(NullBuffer::from(vec![true, true, false, true])),
    )) as ArrayRef;
    // map<utf8, int32> and map<int32, utf8>
    let mut mb = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
    mb.keys().append_value("one");
    mb.values().append_value(1);
    mb.keys().append_value("tab\tkey");
    mb.values().append_null();
    mb.append(true).unwrap();
    mb.append(true).unwrap();
    mb.append(false).unwrap();
    mb.keys().append_value("z");
    mb.values().append_value(-1);
    mb.append(true).unwrap();
    let smap = Arc::new(mb.finish()) as ArrayRef;
    let mut mb = MapBuilder::new(None, Int32Builder::new(), StringBuilder::new());
    mb.keys().append_value(5);
    mb.values().append_value("five");
    mb.append(true).unwrap();
    mb.append(false).unwrap();
    mb.append(true).unwrap();
    mb.keys().append_value(-1);
    mb.values().append_null();
    mb.keys().append_value(2);
    mb.values().append_value("two");
    mb.append(true).unwrap();
    let imap = Arc::new(mb.finish()) as ArrayRef;
    // list<dictionary<int16, utf8>>
    let dict = DictionaryArray::<Int16Type>::new(
        Int16Array::from(vec![Some(0), Some(1), None, Some(0)]),
        Arc::new(StringArray::from(vec!["red", "green"])),
    );
    let list_dict = Arc::new(ListArray::new(
        Arc::new(Field::new("item", dict.data_type().clone(), true)),
        arrow_buffer::OffsetBuffer::new(vec![0, 2, 3, 3, 4].into()),
        Arc::new(dict),
        None,
    )) as ArrayRef;
    // list<list<utf8>> (nested list of strings → jsonb, not text[])
    let mut lb = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
    lb.values().values().append_value("x");
    lb.values().append(true);
    lb.values().append(false);
    lb.append(true);
    lb.append(true);
    lb.append(false);
    lb.values().append(true);
    lb.append(true);
    let nested_lists = Arc::new(lb.finish()) as ArrayRef;
    // fixed-size list<int32> of 2
    let mut fb = FixedSizeListBuilder::new(Int32Builder::new(), 2);
    for row in [
        [Some(1), Some(2)],
        [None, Some(4)],
        [Some(0), Some(0)],
        [Some(-5), None],
    ] {
        for v in row {
            fb.values().append_option(v);
        }
        fb.append(true);
    }
    let fixed = Arc::new(fb.finish()) as ArrayRef;

    let batch = batch_of(vec![
        (
            "id",
            Arc::new(Int32Array::from(vec![0, 1, 2, 3])) as ArrayRef,
        ),
        ("ints", ints),
        ("floats", floats),
        ("u64s", u64s),
        ("outer", outer),
        ("list_of_structs", list_of_structs),
        ("smap", smap),
        ("imap", imap),
        ("list_dict", list_dict),
        ("nested_lists", nested_lists),
        ("fixed", fixed),
    ]);
    let expected = vec![
        (
            "ints",
            vec![
                json!([1, null, i64::MIN]),
                json!([]),
                Value::Null,
                json!([i64::MAX]),
            ],
        ),
        (
            "floats",
            vec![
                json!([0.1, null, null]),
                json!([1e300, -2.5e-7]),
                Value::Null,
                json!([1.0]),
            ],
        ),
        (
            "u64s",
            vec![json!([u64::MAX]), Value::Null, json!([0]), json!([])],
        ),
        (
            "outer",
            vec![
                json!({"name": "q\"\\\n🧬", "inner": {
                    "x": 7, "when": "1969-07-20", "at": "1969-12-31T23:59:59.999999Z",
                    "local": "2024-02-29T12:34:56.5", "bytes": "\\x00ab", "price": -1.5,
                    "t": "01:02:03.5", "d": "PT25H1M1S"}}),
                Value::Null,
                json!({"name": "b", "inner": null}),
                json!({"name": null, "inner": {"x": null, "when": null, "at": null, "local": null,
                    "bytes": null, "price": null, "t": null, "d": null}}),
            ],
        ),
        (
            "list_of_structs",
            vec![
                json!([{"k": "a", "v": 1}, {"k": null, "v": 2}]),
                json!([]),
                Value::Null,
                json!([null]),
            ],
        ),
        (
            "smap",
            vec![
                json!({"one": 1, "tab\tkey": null}),
                json!({}),
                Value::Null,
                json!({"z": -1}),
            ],
        ),
        (
            "imap",
            vec![
                json!([{"key": 5, "value": "five"}]),
                Value::Null,
                json!([]),
                json!([{"key": -1, "value": null}, {"key": 2, "value": "two"}]),
            ],
        ),
        (
            "list_dict",
            vec![
                json!(["red", "green"]),
                json!([null]),
                json!([]),
                json!(["red"]),
            ],
        ),
        (
            "nested_lists",
            vec![json!([["x"], null]), json!([]), Value::Null, json!([[]])],
        ),
        (
            "fixed",
            vec![
                json!([1, 2]),
                json!([null, 4]),
                json!([0, 0]),
                json!([-5, null]),
            ],
        ),
    ];
    (batch, expected)
}

#[tokio::test]
async fn nested_values_round_trip_as_jsonb() {
    let db = TestDb::create().await;
    let mut conn = connect(&db).await;
    let (batch, expected) = nested_columns();
    assert_eq!(
        load(&mut conn, "nested", &batch, &CopyOptions::default()).await,
        4
    );
    for (name, want) in &expected {
        let got: Vec<Value> = texts(&mut conn, "nested", name)
            .await
            .into_iter()
            .map(|t| t.map_or(Value::Null, |t| serde_json::from_str(&t).unwrap()))
            .collect();
        assert_eq!(&got, want, "column {name}");
        let ty: String = sqlx::query_scalar(&format!(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'nested'::regclass AND attname = '{name}'"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(ty, "jsonb", "{name}");
    }
    // Decimals keep their exact digits (scale 2) inside jsonb, u64::MAX and i64::MIN are exact.
    let price: String =
        sqlx::query_scalar("SELECT (\"outer\" #> '{inner,price}')::text FROM nested WHERE id = 0")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(price, "-1.50");
    let u: String = sqlx::query_scalar("SELECT (u64s -> 0)::text FROM nested WHERE id = 0")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(u, "18446744073709551615");
    let i: String = sqlx::query_scalar("SELECT (ints -> 2)::text FROM nested WHERE id = 0")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(i, "-9223372036854775808");
}

#[tokio::test]
async fn lists_of_strings_are_text_arrays_of_every_list_kind() {
    let db = TestDb::create().await;
    let mut conn = connect(&db).await;
    let mut lb = ListBuilder::new(StringBuilder::new());
    lb.values().append_value(TRICKY[0]);
    lb.values().append_null();
    lb.values().append_value(TRICKY[2]);
    lb.append(true);
    lb.append(true);
    lb.append(false);
    lb.values().append_value("");
    lb.append(true);
    let list = lb.finish();
    let large = arrow_cast_large(&list);
    let mut fb = FixedSizeListBuilder::new(StringViewBuilder::new(), 2);
    for row in [
        [Some("a"), Some(TRICKY[1])],
        [None, None],
        [Some("x"), None],
        [Some(""), Some("")],
    ] {
        for v in row {
            fb.values().append_option(v);
        }
        fb.append(true);
    }
    let fixed = fb.finish();
    let batch = batch_of(vec![
        (
            "id",
            Arc::new(Int32Array::from(vec![0, 1, 2, 3])) as ArrayRef,
        ),
        ("l", Arc::new(list)),
        ("ll", Arc::new(large)),
        ("fl", Arc::new(fixed)),
    ]);
    load(&mut conn, "arrays", &batch, &CopyOptions::default()).await;
    let s = |v: &str| Some(v.to_string());
    let want_l = vec![
        Some(vec![s(TRICKY[0]), None, s(TRICKY[2])]),
        Some(vec![]),
        None,
        Some(vec![s("")]),
    ];
    let want_fl = vec![
        Some(vec![s("a"), s(TRICKY[1])]),
        Some(vec![None, None]),
        Some(vec![s("x"), None]),
        Some(vec![s(""), s("")]),
    ];
    for (col, want) in [("l", &want_l), ("ll", &want_l), ("fl", &want_fl)] {
        let got: Vec<Option<Vec<Option<String>>>> =
            sqlx::query_scalar(&format!("SELECT {col} FROM arrays ORDER BY id"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(&got, want, "{col}");
        let ty: String = sqlx::query_scalar(&format!(
            "SELECT pg_typeof({col})::text FROM arrays LIMIT 1"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(ty, "text[]");
    }
}

/// `List<Utf8>` → `LargeList<Utf8>` without arrow-cast: rebuild with i64 offsets.
fn arrow_cast_large(list: &ListArray) -> LargeListArray {
    let offsets: Vec<i64> = list.value_offsets().iter().map(|&o| o as i64).collect();
    let values = list
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let values: LargeStringArray = values.iter().collect();
    LargeListArray::new(
        Arc::new(Field::new("item", DataType::LargeUtf8, true)),
        arrow_buffer::OffsetBuffer::new(offsets.into()),
        Arc::new(values),
        list.nulls().cloned(),
    )
}

/// A batch with NUL characters in text (row 1), a `text[]` item (row 2) and a jsonb string and key (row 3).
fn nul_batch() -> RecordBatch {
    let mut lb = ListBuilder::new(StringBuilder::new());
    for row in [vec!["a"], vec![], vec!["x\0y", "ok"], vec![]] {
        for v in row {
            lb.values().append_value(v);
        }
        lb.append(true);
    }
    let fields = Fields::from(vec![
        Field::new("v", DataType::Utf8, true),
        Field::new("k\0ey", DataType::Int32, true),
    ]);
    let s = StructArray::new(
        fields,
        vec![
            Arc::new(StringArray::from(vec!["p", "q", "r", "\0s\0"])),
            Arc::new(Int32Array::from(vec![1, 2, 3, 4])),
        ],
        Some(NullBuffer::from(vec![false, false, false, true])),
    );
    batch_of(vec![
        (
            "id",
            Arc::new(Int32Array::from(vec![0, 1, 2, 3])) as ArrayRef,
        ),
        (
            "t",
            Arc::new(StringArray::from(vec!["clean", "a\0b\0", "", "z"])),
        ),
        ("tags", Arc::new(lb.finish())),
        ("doc", Arc::new(s)),
    ])
}

#[tokio::test]
async fn nul_policy_error_names_column_and_row() {
    let batch = nul_batch();
    let mut out = BytesMut::new();
    match encode_copy_binary(&batch, &mut out).unwrap_err() {
        DestinationError::NulInText { column, row } => assert_eq!((column.as_str(), row), ("t", 1)),
        e => panic!("{e}"),
    }
    assert!(out.is_empty());
    // Each column on its own: the text[] item and the jsonb string are found too.
    for (col, row) in [("tags", 2), ("doc", 3)] {
        let b = batch
            .project(&[batch.schema().index_of(col).unwrap()])
            .unwrap();
        match encode_copy_binary(&b, &mut out).unwrap_err() {
            DestinationError::NulInText { column, row: r } => {
                assert_eq!((column.as_str(), r), (col, row))
            }
            e => panic!("{e}"),
        }
        let msg = encode_copy_binary(&b, &mut out).unwrap_err().to_string();
        assert!(
            msg.contains(col) && msg.contains(&format!("row {row}")),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn nul_policies_strip_and_replace_load_the_documented_text() {
    let db = TestDb::create().await;
    let mut conn = connect(&db).await;
    let batch = nul_batch();
    for (table, nul, r) in [
        ("stripped", NulPolicy::Strip, ""),
        ("replaced", NulPolicy::Replace, "\u{FFFD}"),
    ] {
        load(&mut conn, table, &batch, &CopyOptions { nul }).await;
        assert_eq!(
            texts(&mut conn, table, "t").await[1].as_deref(),
            Some(format!("a{r}b{r}").as_str())
        );
        let tags: Vec<Option<Vec<String>>> =
            sqlx::query_scalar(&format!("SELECT tags FROM {table} ORDER BY id"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(tags[2], Some(vec![format!("x{r}y"), "ok".to_string()]));
        let doc: Value =
            serde_json::from_str(&texts(&mut conn, table, "doc").await[3].clone().unwrap())
                .unwrap();
        let mut want = serde_json::Map::new();
        want.insert("v".into(), json!(format!("{r}s{r}")));
        want.insert(format!("k{r}ey"), json!(4));
        assert_eq!(doc, Value::Object(want), "{table}");
    }
}

#[tokio::test]
async fn values_out_of_range_and_unsupported_types_are_errors() {
    let cases: Vec<(&str, ArrayRef)> = vec![
        (
            "ts",
            Arc::new(TimestampSecondArray::from(vec![0, i64::MAX])),
        ),
        ("t", Arc::new(Time32SecondArray::from(vec![0, 86_401]))),
        (
            "dur",
            Arc::new(DurationSecondArray::from(vec![0, i64::MIN])),
        ),
        ("d64", Arc::new(Date64Array::from(vec![0, i64::MAX]))),
    ];
    for (name, array) in cases {
        let batch = batch_of(vec![(name, array)]);
        match encode_copy_binary(&batch, &mut BytesMut::new()).unwrap_err() {
            DestinationError::ValueOutOfRange { column, row, .. } => {
                assert_eq!((column.as_str(), row), (name, 1))
            }
            e => panic!("{name}: {e}"),
        }
    }
    let run_ends = Int32Array::from(vec![2]);
    let ree = RunArray::<Int32Type>::try_new(&run_ends, &StringArray::from(vec!["a"])).unwrap();
    let batch = batch_of(vec![("r", Arc::new(ree) as ArrayRef)]);
    match encode_copy_binary(&batch, &mut BytesMut::new()).unwrap_err() {
        DestinationError::UnsupportedType { column, .. } => assert_eq!(column, "r"),
        e => panic!("{e}"),
    }
    // A server-side refusal is visible too: a time beyond 24:00 inside jsonb is caught by us, not the server.
    let inner = StructArray::new(
        Fields::from(vec![Field::new(
            "t",
            DataType::Time32(TimeUnit::Second),
            true,
        )]),
        vec![Arc::new(Time32SecondArray::from(vec![1, -1])) as ArrayRef],
        None,
    );
    let batch = batch_of(vec![("s", Arc::new(inner) as ArrayRef)]);
    assert!(matches!(
        encode_copy_binary(&batch, &mut BytesMut::new()),
        Err(DestinationError::ValueOutOfRange { row: 1, .. })
    ));
}

// ---------------------------------------------------------------------------------------------------------------
// Open Targets fixtures
// ---------------------------------------------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/opentargets/parquet")
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if p.is_dir() {
            parquet_files(&p, out);
        } else if name.ends_with(".parquet") {
            out.push(p);
        }
    }
}

/// Two JSON values are the same, numbers compared as f64 when either is not an integer (PostgreSQL prints
/// `double precision` 1.0 as `1`), within 1e-15 relative: serde_json's default float parser is not correctly
/// rounded for long decimal expansions (PostgreSQL prints the jsonb number `4e-45` as 0.000…4, which serde_json
/// reads as 4.0000000000000006e-45).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The rows of `batch` as JSON objects, rendered by arrow-json (explicit nulls), independently of our encoder.
fn arrow_json_rows(batch: &RecordBatch) -> Vec<serde_json::Map<String, Value>> {
    let mut buf = Vec::new();
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::JsonArray>(&mut buf);
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    match serde_json::from_slice::<Value>(&buf).unwrap() {
        Value::Array(rows) => rows
            .into_iter()
            .map(|r| match r {
                Value::Object(m) => m,
                other => panic!("{other}"),
            })
            .collect(),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn open_targets_fixtures_flatten_copy_and_read_back_exactly() {
    let mut files = Vec::new();
    parquet_files(&fixtures(), &mut files);
    assert!(files.len() >= 7, "fixtures: {files:?}");
    let db = TestDb::create().await;
    let mut conn = connect(&db).await;
    let options = FlattenOptions::default();
    let mut saw_target = false;
    for (n, path) in files.iter().enumerate() {
        let file = std::fs::File::open(path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .with_batch_size(100_000)
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let original = arrow_select_concat(&batches);
        let rows = original.num_rows();
        // Add a row number to read back in order.
        let flat = flatten_batch(&original, &options).unwrap();
        let mut fields: Vec<Field> = vec![Field::new("__row", DataType::Int64, false)];
        fields.extend(flat.schema().fields().iter().map(|f| f.as_ref().clone()));
        let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(0..rows as i64))];
        cols.extend(flat.columns().iter().cloned());
        let flat = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let table = format!("fixture_{n}");
        assert_eq!(
            load(&mut conn, &table, &flat, &CopyOptions::default()).await,
            rows as u64,
            "{path:?}"
        );
        if path.to_string_lossy().contains("/target/") {
            assert_eq!(rows, 317);
            saw_target = true;
        }
        // Expected values: arrow-json on the ORIGINAL (unflattened) batch, navigated to each flattened column.
        let expected = arrow_json_rows(&original);
        let mut checked = 0;
        for f in original.schema().fields() {
            let paths: Vec<(String, Vec<String>)> = match f.data_type() {
                DataType::Struct(children) => children
                    .iter()
                    .map(|c| {
                        (
                            format!("{}_{}", f.name(), c.name()),
                            vec![f.name().clone(), c.name().clone()],
                        )
                    })
                    .collect(),
                _ => vec![(f.name().clone(), vec![f.name().clone()])],
            };
            for (col, path) in paths {
                let got: Vec<Option<String>> = sqlx::query_scalar(&format!(
                    "SELECT to_jsonb({})::text FROM {} ORDER BY __row",
                    quote_ident(&col),
                    quote_ident(&table)
                ))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                assert_eq!(got.len(), rows);
                for (r, g) in got.iter().enumerate() {
                    let mut want = expected[r].get(&path[0]).cloned().unwrap_or(Value::Null);
                    if path.len() == 2 {
                        want = want.get(&path[1]).cloned().unwrap_or(Value::Null);
                    }
                    let g = g
                        .as_deref()
                        .map_or(Value::Null, |t| serde_json::from_str(t).unwrap());
                    assert!(
                        same(&g, &want),
                        "{path:?} column {col} row {r}:\n got  {g}\n want {want}"
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(checked, flat.num_columns() - 1, "{path:?}");
    }
    assert!(saw_target, "the target fixture was read");
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert!(!batches.is_empty());
    let schema = batches[0].schema();
    let columns = (0..schema.fields().len())
        .map(|i| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
            arrow_select::concat::concat(&arrays).unwrap()
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}
