//! Helpers shared by the destination tests (real PostgreSQL via `TestDb`).
#![allow(dead_code)]

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use psystem_core::{LoadMode, TableRef};
use psystem_postgres::{Destination, LoadSpec};
use psystem_testkit::db::TestDb;
use sqlx::PgPool;

/// A fresh database and a destination connected to it.
pub async fn setup() -> (TestDb, Destination) {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.expect("connect");
    (db, dest)
}

/// `id bigint, name text, value double precision`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
    ]))
}

/// A batch of `schema()`.
pub fn batch(rows: &[(i64, &str, f64)]) -> RecordBatch {
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

/// A load spec of `schema()` into `public.<table>`.
pub fn spec(job: &str, table: &str, mode: LoadMode, pk: &[&str]) -> LoadSpec {
    LoadSpec {
        job_key: job.to_string(),
        plugin: "test-plugin".into(),
        entry: "test-entry".into(),
        source_kind: "files".into(),
        table: TableRef::new("public", table),
        mode,
        primary_key: pk.iter().map(|s| s.to_string()).collect(),
        schema: schema(),
        source_fingerprint: None,
        ids: None,
    }
}

/// All rows of a `schema()` table, ordered by id then name.
pub async fn rows(pool: &PgPool, table: &str) -> Vec<(i64, Option<String>, Option<f64>)> {
    sqlx::query_as(&format!(
        "SELECT id, name, value FROM public.\"{table}\" ORDER BY id, name"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The number of rows in `public.<table>`.
pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM public.\"{table}\""))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Names of tables that look like psystem staging tables.
pub async fn staging_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE tablename LIKE '%\\_\\_psystem\\_load\\_%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Whether a table exists.
pub async fn table_exists(pool: &PgPool, qualified_quoted: &str) -> bool {
    sqlx::query_scalar::<_, Option<i64>>("SELECT to_regclass($1)::oid::bigint")
        .bind(qualified_quoted)
        .fetch_one(pool)
        .await
        .unwrap()
        .is_some()
}
