//! Run metrics: what each load read, wrote and rejected, how long its phases took, and column statistics.
//!
//! Stored per load in `psystem.run_metrics` (ledger migration 3; deleted with the load):
//! `rows_read`, `rows_written`, `rows_rejected`, `bytes`, `phase_ms` (`{"download": ms, "verify": ms,
//! "transform": ms, "load": ms}` — any phase names the runner uses) and `columns`
//! (`{"col": {"nulls": n, "distinct": n}}`).
//!
//! - [`record_page`] **adds** one page's numbers to the load's totals inside the caller's transaction — the one
//!   that commits the page's rows and checkpoint — so the totals always describe exactly the committed pages, also
//!   for a load that was interrupted and resumed.
//! - [`finish`] adds the per-column distinct counts once the load is complete.
//! - [`runs`] and [`run`] read the history (`psystem.loads` joined with the metrics).

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use psystem_core::{JobState, LoadMode, TableRef};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{Acquire, PgConnection, PgPool, Row};
use tracing::{debug, warn};

use crate::ledger::{LoadRecord, LOAD_COLUMNS};
use crate::{quote_ident, quote_table, DestinationError};

/// The numbers of one committed page (or of a load so far).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PageMetrics {
    /// Rows read from the source.
    pub rows_read: u64,
    /// Rows written to the destination.
    pub rows_written: u64,
    /// Rows refused (by a transform or a check) and not written.
    pub rows_rejected: u64,
    /// Bytes read from the source.
    pub bytes: u64,
    /// Milliseconds per phase (`download`, `verify`, `transform`, `load`, …).
    pub phase_ms: BTreeMap<String, u64>,
    /// Null values per column (see [`page_metrics_nulls`]).
    pub nulls: BTreeMap<String, u64>,
}

/// The null count of every column of a batch (columns without nulls have 0), by column name.
///
/// Logical nulls: a dictionary entry pointing at a null value, and every row of a `Null` column, count.
pub fn page_metrics_nulls(batch: &RecordBatch) -> BTreeMap<String, u64> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| (field.name().clone(), column.logical_null_count() as u64))
        .collect()
}

/// Statistics of one column of a load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ColumnMetrics {
    /// Null values in the pages the load committed.
    pub nulls: u64,
    /// Distinct non-null values in the table after the load (set by [`finish`]; `None` before, or for a type
    /// without equality such as `json`).
    pub distinct: Option<u64>,
}

/// The metrics of one load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunMetrics {
    /// Rows read from the source.
    pub rows_read: u64,
    /// Rows written to the destination.
    pub rows_written: u64,
    /// Rows refused and not written.
    pub rows_rejected: u64,
    /// Bytes read from the source.
    pub bytes: u64,
    /// Milliseconds per phase.
    pub phase_ms: BTreeMap<String, u64>,
    /// Per-column statistics.
    pub columns: BTreeMap<String, ColumnMetrics>,
    /// When the metrics last changed.
    pub updated_at: DateTime<Utc>,
}

/// One load in the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The load id (`psystem.loads.id`; the `run` of the ID cache).
    pub id: i64,
    /// The job key.
    pub job_key: String,
    /// The plugin.
    pub plugin: String,
    /// The ETL entry.
    pub entry: String,
    /// The state of the load.
    pub state: JobState,
    /// The load mode.
    pub mode: LoadMode,
    /// The destination table.
    pub table: TableRef,
    /// When the load started.
    pub started_at: DateTime<Utc>,
    /// When it completed or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Pages committed.
    pub pages: u64,
    /// Rows committed.
    pub rows: u64,
    /// Bytes read from the source.
    pub bytes: u64,
    /// The number of rows the source announced, when known.
    pub total_rows: Option<u64>,
    /// Milliseconds from the start to the end — or, for an unfinished load, to its last commit.
    pub duration_ms: u64,
    /// The last error of a failed load.
    pub last_error: Option<String>,
}

/// One load with its metrics and checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetail {
    /// The load.
    #[serde(flatten)]
    pub summary: RunSummary,
    /// Its metrics; `None` when it recorded none (e.g. made by a psystem without metrics).
    pub metrics: Option<RunMetrics>,
    /// The committed checkpoint position.
    pub position: Option<serde_json::Value>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Adds one page's numbers to the load's metrics (creating its row on the first page): counters and phase
/// milliseconds are summed, null counts are summed per column.
///
/// Run it on the transaction that commits the page (rows and checkpoint): if that transaction rolls back, the
/// page's metrics go with it, so the totals of a resumed load count every committed page exactly once. The load
/// must exist in `psystem.loads`. Values beyond `i64::MAX` are stored as `i64::MAX`.
pub async fn record_page(
    conn: &mut PgConnection,
    load_id: i64,
    m: &PageMetrics,
) -> Result<(), DestinationError> {
    let phase_ms: BTreeMap<&str, i64> = m
        .phase_ms
        .iter()
        .map(|(k, v)| (k.as_str(), to_i64(*v)))
        .collect();
    let columns: BTreeMap<&str, serde_json::Value> = m
        .nulls
        .iter()
        .map(|(k, v)| (k.as_str(), serde_json::json!({ "nulls": to_i64(*v) })))
        .collect();
    sqlx::query(
        "INSERT INTO psystem.run_metrics AS m \
             (load_id, rows_read, rows_written, rows_rejected, bytes, phase_ms, columns, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
         ON CONFLICT (load_id) DO UPDATE SET \
             rows_read = m.rows_read + EXCLUDED.rows_read, \
             rows_written = m.rows_written + EXCLUDED.rows_written, \
             rows_rejected = m.rows_rejected + EXCLUDED.rows_rejected, \
             bytes = m.bytes + EXCLUDED.bytes, \
             phase_ms = COALESCE((SELECT jsonb_object_agg(p.k, p.total) FROM ( \
                 SELECT u.k, sum(u.v) AS total FROM ( \
                     SELECT key AS k, (value #>> '{}')::bigint AS v FROM jsonb_each(m.phase_ms) \
                     UNION ALL \
                     SELECT key, (value #>> '{}')::bigint FROM jsonb_each(EXCLUDED.phase_ms)) u \
                 GROUP BY u.k) p), '{}'::jsonb), \
             columns = COALESCE((SELECT jsonb_object_agg(COALESCE(o.key, n.key), \
                     COALESCE(o.value, '{}'::jsonb) || jsonb_build_object('nulls', \
                         COALESCE((o.value ->> 'nulls')::bigint, 0) + COALESCE((n.value ->> 'nulls')::bigint, 0))) \
                 FROM jsonb_each(m.columns) o FULL JOIN jsonb_each(EXCLUDED.columns) n ON o.key = n.key), \
                 '{}'::jsonb), \
             updated_at = now()",
    )
    .bind(load_id)
    .bind(to_i64(m.rows_read))
    .bind(to_i64(m.rows_written))
    .bind(to_i64(m.rows_rejected))
    .bind(to_i64(m.bytes))
    .bind(Json(&phase_ms))
    .bind(Json(&columns))
    .execute(&mut *conn)
    .await
    .map_err(DestinationError::db(format!(
        "recording the page metrics of load #{load_id}"
    )))?;
    Ok(())
}

/// Columns of a table with whether `count(DISTINCT …)` can work on their type (a default btree operator class for
/// the base type — of the element type for arrays; `json`, `xml`, `point`, … have none).
const COLUMNS_SQL: &str = "\
WITH cols AS (
    SELECT a.attnum, a.attname::text AS name,
           CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END AS base
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
), scalars AS (
    SELECT c.attnum, c.name,
           CASE WHEN bt.typcategory = 'A' AND bt.typelem <> 0 THEN bt.typelem ELSE bt.oid END AS s
      FROM cols c JOIN pg_type bt ON bt.oid = c.base
)
SELECT s.name, EXISTS (
    SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod JOIN pg_type st ON st.oid = s.s
     WHERE am.amname = 'btree' AND oc.opcdefault
       AND (oc.opcintype = s.s
            OR (st.typtype = 'e' AND oc.opcintype = 'anyenum'::regtype)
            OR (st.typtype = 'r' AND oc.opcintype = 'anyrange'::regtype)
            OR (st.typtype = 'm' AND oc.opcintype = 'anymultirange'::regtype)
            OR (st.typcategory = 'S' AND EXISTS (SELECT 1 FROM pg_cast pc WHERE pc.castsource = s.s
                    AND pc.casttarget = oc.opcintype AND pc.castmethod = 'b')))
) AS sortable
FROM scalars s ORDER BY s.attnum";

/// Completes a load's metrics with the number of **distinct non-null values of each column in the table after
/// the load** (`count(DISTINCT col)` over the whole table — for `append` and `merge` that includes rows of earlier
/// loads). Columns whose type has no equality (`json`, `xml`, `point`, arrays of those, …) are skipped and keep
/// `distinct: null`. Call it after [`crate::Destination::finish_load`] (for `replace`, the swapped-in table).
///
/// One scan computes all counts; should that statement fail on a type the catalog check let through, each column
/// is counted on its own and the failing ones are skipped. Reads the whole table: seconds for millions of rows.
pub async fn finish(pool: &PgPool, load_id: i64, table: &TableRef) -> Result<(), DestinationError> {
    let ctx =
        |what: &str| format!("computing the column metrics of load #{load_id} on {table}: {what}");
    let mut conn = pool
        .acquire()
        .await
        .map_err(DestinationError::db(ctx("connect")))?;
    let columns: Vec<(String, bool)> = sqlx::query_as(COLUMNS_SQL)
        .bind(quote_table(table))
        .fetch_all(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx("read the columns")))?;
    let sortable: Vec<&str> = columns
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(name, _)| name.as_str())
        .collect();
    let mut distinct: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    if !sortable.is_empty() {
        let mut tx = conn
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        let exprs = sortable
            .iter()
            .map(|c| format!("count(DISTINCT {})", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let all = format!("SELECT {exprs} FROM {}", quote_table(table));
        let counted = {
            let mut sp = tx
                .begin()
                .await
                .map_err(DestinationError::db(ctx("savepoint")))?;
            let result = sqlx::query(&all).fetch_one(&mut *sp).await;
            match result {
                Ok(row) => {
                    for (i, c) in sortable.iter().enumerate() {
                        let n: i64 = row.get(i);
                        distinct.insert(c.to_string(), serde_json::json!({ "distinct": n }));
                    }
                    sp.commit()
                        .await
                        .map_err(DestinationError::db(ctx("release")))?;
                    true
                }
                Err(e) => {
                    debug!(error = %e, "Counting distinct values in one scan failed; counting per column.");
                    sp.rollback()
                        .await
                        .map_err(DestinationError::db(ctx("rollback")))?;
                    false
                }
            }
        };
        if !counted {
            for c in &sortable {
                let sql = format!(
                    "SELECT count(DISTINCT {}) FROM {}",
                    quote_ident(c),
                    quote_table(table)
                );
                let mut sp = tx
                    .begin()
                    .await
                    .map_err(DestinationError::db(ctx("savepoint")))?;
                match sqlx::query_scalar::<_, i64>(&sql).fetch_one(&mut *sp).await {
                    Ok(n) => {
                        distinct.insert(c.to_string(), serde_json::json!({ "distinct": n }));
                        sp.commit()
                            .await
                            .map_err(DestinationError::db(ctx("release")))?;
                    }
                    Err(e) => {
                        warn!(column = %c, error = %e, "Cannot count the distinct values of a column; skipped.");
                        sp.rollback()
                            .await
                            .map_err(DestinationError::db(ctx("rollback")))?;
                    }
                }
            }
        }
        tx.commit()
            .await
            .map_err(DestinationError::db(ctx("commit")))?;
    }
    sqlx::query(
        "INSERT INTO psystem.run_metrics AS m (load_id, columns, updated_at) VALUES ($1, $2, now()) \
         ON CONFLICT (load_id) DO UPDATE SET \
             columns = COALESCE((SELECT jsonb_object_agg(COALESCE(o.key, n.key), \
                     COALESCE(o.value, '{}'::jsonb) || COALESCE(n.value, '{}'::jsonb)) \
                 FROM jsonb_each(m.columns) o FULL JOIN jsonb_each(EXCLUDED.columns) n ON o.key = n.key), \
                 '{}'::jsonb), \
             updated_at = now()",
    )
    .bind(load_id)
    .bind(Json(&distinct))
    .execute(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("store")))?;
    Ok(())
}

fn summary_from(record: LoadRecord) -> RunSummary {
    let end = record.finished_at.unwrap_or(record.updated_at);
    RunSummary {
        id: record.id,
        job_key: record.job_key,
        plugin: record.plugin,
        entry: record.entry,
        state: record.state,
        mode: record.mode,
        table: record.table,
        started_at: record.started_at,
        finished_at: record.finished_at,
        pages: record.counters.pages,
        rows: record.counters.rows,
        bytes: record.counters.bytes,
        total_rows: record.total_rows,
        duration_ms: (end - record.started_at).num_milliseconds().max(0) as u64,
        last_error: record.last_error,
    }
}

/// The newest `limit` loads (all jobs), newest first.
pub async fn runs(pool: &PgPool, limit: i64) -> Result<Vec<RunSummary>, DestinationError> {
    let sql = format!(
        "SELECT {LOAD_COLUMNS} FROM psystem.loads l LEFT JOIN psystem.checkpoints c ON c.load_id = l.id \
         ORDER BY l.id DESC LIMIT $1"
    );
    let rows = sqlx::query(&sql)
        .bind(limit.max(0))
        .fetch_all(pool)
        .await
        .map_err(DestinationError::db("listing the loads (psystem.loads)"))?;
    rows.iter()
        .map(|row| LoadRecord::from_row(row).map(summary_from))
        .collect()
}

/// One load with its metrics; `None` when no load has this id.
pub async fn run(pool: &PgPool, load_id: i64) -> Result<Option<RunDetail>, DestinationError> {
    let sql = format!(
        "SELECT {LOAD_COLUMNS}, m.rows_read AS m_rows_read, m.rows_written AS m_rows_written, \
                m.rows_rejected AS m_rows_rejected, m.bytes AS m_bytes, m.phase_ms AS m_phase_ms, \
                m.columns AS m_columns, m.updated_at AS m_updated_at \
         FROM psystem.loads l LEFT JOIN psystem.checkpoints c ON c.load_id = l.id \
         LEFT JOIN psystem.run_metrics m ON m.load_id = l.id WHERE l.id = $1"
    );
    let ctx = format!("reading load #{load_id} and its metrics");
    let Some(row) = sqlx::query(&sql)
        .bind(load_id)
        .fetch_optional(pool)
        .await
        .map_err(DestinationError::db(&ctx))?
    else {
        return Ok(None);
    };
    let record = LoadRecord::from_row(&row)?;
    let position = record.position.clone();
    let get_err = |source| DestinationError::Database {
        context: ctx.clone(),
        source,
    };
    let corrupt = |detail: String| DestinationError::CorruptLedger { load_id, detail };
    let updated_at: Option<DateTime<Utc>> = row.try_get("m_updated_at").map_err(get_err)?;
    let metrics = match updated_at {
        None => None,
        Some(updated_at) => {
            let n = |name: &str| -> Result<u64, DestinationError> {
                let v: i64 = row.try_get(name).map_err(get_err)?;
                Ok(v.max(0) as u64)
            };
            let phase: serde_json::Value = row.try_get("m_phase_ms").map_err(get_err)?;
            let columns: serde_json::Value = row.try_get("m_columns").map_err(get_err)?;
            Some(RunMetrics {
                rows_read: n("m_rows_read")?,
                rows_written: n("m_rows_written")?,
                rows_rejected: n("m_rows_rejected")?,
                bytes: n("m_bytes")?,
                phase_ms: serde_json::from_value(phase)
                    .map_err(|e| corrupt(format!("run_metrics.phase_ms: {e}")))?,
                columns: serde_json::from_value(columns)
                    .map_err(|e| corrupt(format!("run_metrics.columns: {e}")))?,
                updated_at,
            })
        }
    };
    Ok(Some(RunDetail {
        summary: summary_from(record),
        metrics,
        position,
    }))
}
