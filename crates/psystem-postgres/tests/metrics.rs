//! Run metrics on a real PostgreSQL: page totals commit or roll back with the page, distinct counts after the
//! load, and the run history.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use psystem_core::{JobState, LoadMode, TableRef};
use psystem_postgres::metrics::{self, page_metrics_nulls, record_page, PageMetrics};
use psystem_postgres::{Destination, LoadHandle, LoadSpec};
use psystem_testkit::db::TestDb;
use serde_json::json;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
    ]))
}

fn batch(rows: &[(i64, Option<&str>, Option<f64>)]) -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
    ));
    let names: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    ));
    let values: ArrayRef = Arc::new(Float64Array::from(
        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(schema(), vec![ids, names, values]).unwrap()
}

async fn open(dest: &Destination, table: &str) -> LoadHandle {
    dest.open_load(
        LoadSpec {
            job_key: format!("job-{table}"),
            plugin: "p".into(),
            entry: "e".into(),
            source_kind: "files".into(),
            table: TableRef::new("public", table),
            mode: LoadMode::Append,
            primary_key: vec![],
            schema: schema(),
            source_fingerprint: None,
            ids: None,
        },
        false,
    )
    .await
    .unwrap()
}

fn page(rows: u64, bytes: u64, phases: &[(&str, u64)], nulls: &[(&str, u64)]) -> PageMetrics {
    PageMetrics {
        rows_read: rows + 1,
        rows_written: rows,
        rows_rejected: 1,
        bytes,
        phase_ms: phases.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        nulls: nulls.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

#[test]
fn nulls_are_counted_per_column() {
    let b = batch(&[
        (1, None, Some(1.0)),
        (2, None, None),
        (3, Some("c"), Some(3.0)),
    ]);
    assert_eq!(
        page_metrics_nulls(&b),
        BTreeMap::from([
            ("id".to_string(), 0),
            ("name".to_string(), 2),
            ("value".to_string(), 1)
        ])
    );
}

#[tokio::test]
async fn page_metrics_commit_and_roll_back_with_the_page() {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.unwrap();
    let pool = dest.pool();
    let load = open(&dest, "t").await;
    let id = load.load_id;

    // A rolled-back transaction leaves nothing.
    let mut tx = pool.begin().await.unwrap();
    record_page(
        &mut tx,
        id,
        &page(10, 100, &[("download", 5)], &[("name", 3)]),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let detail = metrics::run(pool, id).await.unwrap().unwrap();
    assert!(detail.metrics.is_none());

    // Committed pages add up.
    for p in [
        page(
            10,
            100,
            &[("download", 5), ("load", 7)],
            &[("name", 3), ("id", 0)],
        ),
        page(
            20,
            250,
            &[("download", 10), ("transform", 2)],
            &[("name", 1), ("value", 4)],
        ),
    ] {
        let mut tx = pool.begin().await.unwrap();
        record_page(&mut tx, id, &p).await.unwrap();
        tx.commit().await.unwrap();
    }
    // A third page rolled back does not count.
    let mut tx = pool.begin().await.unwrap();
    record_page(
        &mut tx,
        id,
        &page(1000, 1000, &[("download", 1000)], &[("name", 1000)]),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    let m = metrics::run(pool, id)
        .await
        .unwrap()
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(
        (m.rows_read, m.rows_written, m.rows_rejected, m.bytes),
        (32, 30, 2, 350)
    );
    assert_eq!(
        m.phase_ms,
        BTreeMap::from([
            ("download".to_string(), 15),
            ("load".to_string(), 7),
            ("transform".to_string(), 2)
        ])
    );
    let nulls: BTreeMap<&str, u64> = m
        .columns
        .iter()
        .map(|(k, c)| (k.as_str(), c.nulls))
        .collect();
    assert_eq!(
        nulls,
        BTreeMap::from([("id", 0), ("name", 4), ("value", 4)])
    );
    assert!(m.columns.values().all(|c| c.distinct.is_none()));
}

#[tokio::test]
async fn finish_counts_distinct_values_and_skips_json() {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.unwrap();
    let pool = dest.pool();
    let mut load = open(&dest, "t").await;
    let rows = batch(&[
        (1, Some("a"), Some(1.0)),
        (2, Some("a"), None),
        (3, None, Some(1.0)),
        (4, Some("b"), Some(2.5)),
    ]);
    // commit_page records the page's metrics (rows, bytes, nulls) in its own transaction.
    dest.commit_page(&mut load, &rows, json!({"page": 1}), 10, Some(4))
        .await
        .unwrap();
    dest.finish_load(&mut load).await.unwrap();
    metrics::finish(pool, load.load_id, &TableRef::new("public", "t"))
        .await
        .unwrap();

    let detail = metrics::run(pool, load.load_id).await.unwrap().unwrap();
    let m = detail.metrics.unwrap();
    let got: BTreeMap<&str, (u64, Option<u64>)> = m
        .columns
        .iter()
        .map(|(k, c)| (k.as_str(), (c.nulls, c.distinct)))
        .collect();
    assert_eq!(
        got,
        BTreeMap::from([
            ("id", (0, Some(4))),
            ("name", (1, Some(2))),
            ("value", (1, Some(2)))
        ])
    );
    assert_eq!(detail.summary.state, JobState::Completed);
    assert_eq!(detail.summary.rows, 4);
    assert_eq!(detail.position, Some(json!({"page": 1})));

    // A table with columns without equality (json, xml, point, json[]) and a domain and an array that have it.
    sqlx::raw_sql(
        "CREATE DOMAIN public.code AS varchar(10); \
         CREATE TABLE public.odd (j json, x xml, p point, ja json[], jb jsonb, c public.code, ia int[], v varchar); \
         INSERT INTO public.odd VALUES ('{}', '<a/>', '(1,2)', ARRAY['1'::json], '{\"a\": 1}', 'x', '{1,2}', 'v'), \
                                       ('[]', '<b/>', '(1,2)', NULL, '{\"a\": 1}', 'y', '{1,2}', NULL);",
    )
    .execute(pool)
    .await
    .unwrap();
    let other = open(&dest, "other").await;
    metrics::finish(pool, other.load_id, &TableRef::new("public", "odd"))
        .await
        .unwrap();
    let m = metrics::run(pool, other.load_id)
        .await
        .unwrap()
        .unwrap()
        .metrics
        .unwrap();
    let distinct: BTreeMap<&str, Option<u64>> = m
        .columns
        .iter()
        .map(|(k, c)| (k.as_str(), c.distinct))
        .collect();
    assert_eq!(
        distinct,
        BTreeMap::from([
            ("jb", Some(1)),
            ("c", Some(2)),
            ("ia", Some(1)),
            ("v", Some(1))
        ])
    );
}

#[tokio::test]
async fn runs_lists_loads_newest_first() {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.unwrap();
    let pool = dest.pool();
    let mut first = open(&dest, "a").await;
    dest.commit_page(
        &mut first,
        &batch(&[(1, Some("x"), None)]),
        json!({"p": 1}),
        42,
        None,
    )
    .await
    .unwrap();
    dest.finish_load(&mut first).await.unwrap();
    let second = open(&dest, "b").await;

    let list = metrics::runs(pool, 10).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, second.load_id);
    assert_eq!(list[0].state, JobState::Running);
    assert_eq!(list[1].id, first.load_id);
    assert_eq!(list[1].state, JobState::Completed);
    assert_eq!((list[1].rows, list[1].bytes, list[1].pages), (1, 42, 1));
    assert_eq!(list[1].table, TableRef::new("public", "a"));
    assert!(list[1].finished_at.is_some());
    assert_eq!(metrics::runs(pool, 1).await.unwrap().len(), 1);
    assert!(metrics::runs(pool, -5).await.unwrap().is_empty());
    assert!(metrics::run(pool, 999_999).await.unwrap().is_none());
    // Serializable for --json.
    let v =
        serde_json::to_value(metrics::run(pool, first.load_id).await.unwrap().unwrap()).unwrap();
    assert_eq!(v["id"], json!(first.load_id));
    assert_eq!(v["state"], json!("completed"));
    assert!(v.get("metrics").is_some());
}
