//! Dataset loads of a release: one dataset (a folder of Parquet part files) into one PostgreSQL table.
//!
//! A load is a ledger row (`psystem.loads` with `release`, `dataset`), a staging table
//! `<table>__psystem_stage_<load id>` in the target schema (no indexes, no key: COPY is fast), and one
//! **work unit** per file (`psystem.work_units`). Workers [`DatasetLoad::claim_unit`] a unit
//! (`FOR UPDATE SKIP LOCKED`), [`DatasetLoad::copy_unit`] its record batches into the staging table with binary
//! COPY in **one transaction** that also marks the unit done, and [`DatasetLoad::finish`] creates, replaces or
//! merges the target table in one transaction. The SQL of each mode is in `docs/LOAD_MODES.md`.
//!
//! - First load (the target does not exist, any mode): the staging table is renamed to the target and gets the
//!   primary key.
//! - [`LoadMode::Replace`]: the new table replaces the old one atomically and keeps the user's objects (indexes,
//!   constraints, comments, grants, owner, defaults, NOT NULL, row-level security, triggers, foreign keys of
//!   other tables); views depending on the old table make it fail with [`DestinationError::DependentViews`].
//! - [`LoadMode::Merge`] (PostgreSQL ≥ 15): schema evolution, then one join of the release with the table on the
//!   key comparing row hashes ([`ROW_HASH_COLUMN`]) finds the rows that differ, and one `MERGE` deletes, updates
//!   and inserts exactly those, by row address; unchanged rows are not touched.
//! - [`LoadMode::Append`]: schema evolution, then the rows are inserted; nothing is deleted.
//!
//! Staging is dropped on success and on every failure of [`DatasetLoad::finish`] and [`DatasetLoad::abort`];
//! only an interrupted process leaves it, and the next [`open_dataset_load`] of the same job resumes with it.

mod evolve;
mod files;
mod replace;

use std::future::Future;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use bytes::BytesMut;
use psystem_core::{LoadMode, TableRef};
use sqlx::{Executor, PgConnection, Row};
use tracing::{debug, info, warn};

pub use files::{file_checks, record_file_check, FileCheck, FileStatus};

use crate::copy_binary::{CopyEncoder, CopyOptions};
use crate::destination::{
    column_defs, column_list, drop_table_if_exists, ensure_schema, has_unique_key,
    table_oid_exists, COPY_CHUNK, OPEN_LOCK_CLASS, RESUMABLE,
};
use crate::ident::{ident_with_suffix, quote_ident, quote_table};
use crate::types::pg_type;
use crate::work_units::unit_counts;
pub use crate::work_units::{ClaimedUnit, UnitCounts, UnitSpec, UnitState, WorkQueue};
use crate::{Destination, DestinationError};
use evolve::{ColumnPlan, ExistingColumn};

/// The column psystem adds to every table a release loads: `bigint`, the XXH3-64 hash of the row's release
/// columns as psystem encodes them for COPY ([`CopyEncoder::write_row_hashed`]). A merge compares rows by it
/// instead of comparing every column, so only rows whose hash differs are rewritten; a row with a NULL hash (a
/// table loaded before this column existed, or a row inserted by hand) counts as changed.
pub const ROW_HASH_COLUMN: &str = "psystem_row_hash";

/// How long a `running` work unit may go without a heartbeat before another worker may reclaim it.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

/// Server settings raised (never lowered) for the transaction that finishes a load: `maintenance_work_mem` for
/// building the primary key's index, `work_mem` for the merge's hash join of the release with the table.
const FINISH_MEMORY: [(&str, &str); 2] = [("maintenance_work_mem", "512MB"), ("work_mem", "256MB")];

/// A boxed error of a batch source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future of [`BatchSource::next_batch`] (boxed: one allocation per batch, nothing next to the batch).
pub type NextBatch<'a> =
    std::pin::Pin<Box<dyn Future<Output = Option<Result<RecordBatch, BoxError>>> + Send + 'a>>;

/// Where the record batches of one work unit come from (e.g. a Parquet file read batch by batch).
///
/// `None` ends the unit; an `Err` aborts it (nothing of the unit is written). Adapters: [`BatchIter`] for an
/// iterator, and an implementation for a `tokio::sync::mpsc::Receiver` (for a reader in `spawn_blocking`).
pub trait BatchSource: Send {
    /// The next batch, `None` at the end.
    fn next_batch(&mut self) -> NextBatch<'_>;
}

/// A [`BatchSource`] over an iterator of batches.
#[derive(Debug)]
pub struct BatchIter<I>(pub I);

impl<I> BatchSource for BatchIter<I>
where
    I: Iterator<Item = Result<RecordBatch, BoxError>> + Send,
{
    fn next_batch(&mut self) -> NextBatch<'_> {
        Box::pin(std::future::ready(self.0.next()))
    }
}

impl BatchSource for tokio::sync::mpsc::Receiver<Result<RecordBatch, BoxError>> {
    fn next_batch(&mut self) -> NextBatch<'_> {
        Box::pin(self.recv())
    }
}

/// What to load where: one dataset of one release into one table.
#[derive(Debug, Clone)]
pub struct DatasetLoadSpec {
    /// The job key, e.g. `opentargets/25.03/target`: one unfinished load per job key (it is resumed).
    pub job_key: String,
    /// The plugin name (ledger).
    pub plugin: String,
    /// The ETL entry name (ledger).
    pub entry: String,
    /// The source kind, e.g. `opentargets` (ledger; [`last_completed_dataset`] looks it up).
    pub source_kind: String,
    /// The release, e.g. `25.03`.
    pub release: String,
    /// The dataset, e.g. `target`.
    pub dataset: String,
    /// The target table.
    pub table: TableRef,
    /// `Replace`, `Merge` or `Append`; when the table does not exist yet every mode is a first load (create).
    pub mode: LoadMode,
    /// The primary-key columns: required for `Merge`, optional otherwise (the new table then gets the key; a
    /// replaced table gets it instead of its old primary key).
    pub primary_key: Vec<String>,
    /// The Arrow schema of every batch of every unit (flat: nested values become `jsonb`, see `docs/TYPES.md`).
    pub schema: SchemaRef,
    /// The work units (files), unique keys.
    pub units: Vec<UnitSpec>,
    /// Whether the release's files were verified against their checksums (recorded in the ledger).
    pub verified: bool,
    /// Whether an incompatible type change is applied with `ALTER COLUMN … TYPE … USING col::type` instead of
    /// failing with [`DestinationError::IncompatibleColumn`].
    pub allow_casts: bool,
    /// Options of the binary COPY encoder (NUL policy).
    pub copy_options: CopyOptions,
    /// How long a running unit may go without a heartbeat before [`DatasetLoad::claim_unit`] reclaims it.
    pub heartbeat_timeout: Duration,
    /// What a `psystem worker` on another machine needs to copy units of this load (stored in
    /// `psystem.loads.worker_spec`; must not hold secrets); `None` for a load only its own process works.
    pub worker_spec: Option<serde_json::Value>,
}

/// What [`DatasetLoad::copy_unit`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitReport {
    /// The unit key.
    pub key: String,
    /// Rows copied into the staging table.
    pub rows: u64,
    /// Record batches read.
    pub batches: u64,
    /// How long the transaction took.
    pub duration: Duration,
}

/// What [`DatasetLoad::finish`] changed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FinishReport {
    /// Rows inserted (a first load or a replace: every row of the new table).
    pub inserted: u64,
    /// Rows updated (merge: rows whose values changed; unchanged rows are not rewritten).
    pub updated: u64,
    /// Rows deleted (merge: rows whose key is not in the release).
    pub deleted: u64,
    /// Rows of the release (in the staging table).
    pub rows: u64,
    /// Columns added to an existing table.
    pub added_columns: Vec<String>,
    /// Widened columns: (column, old type, new type).
    pub widened_columns: Vec<(String, String, String)>,
    /// Other type changes: casts made with `allow_casts`, and (replace only) narrower types taken from the
    /// release: (column, old type, new type).
    pub retyped_columns: Vec<(String, String, String)>,
    /// Columns of the existing table the release lacks: kept (nullable; NULL in new rows, and in every row after
    /// a replace).
    pub missing_columns: Vec<String>,
    /// True when the target table did not exist (first load).
    pub created: bool,
    /// How long the finish transaction took.
    pub duration: Duration,
}

/// An open dataset load. Dropping it without finishing is safe: the ledger keeps the load `running` with its
/// done units and staging table, and the next [`open_dataset_load`] of the same job resumes it.
#[derive(Debug)]
pub struct DatasetLoad {
    load_id: i64,
    resumed: bool,
    staging: TableRef,
    spec: DatasetLoadSpec,
    started: Instant,
}

/// Whether the server behind `conn` (a pool or a connection) can run a release `merge` into `table`: it needs
/// `MERGE`, PostgreSQL 15 or later. Callers check before downloading a release to merge; [`open_dataset_load`]
/// checks again.
///
/// # Errors
/// [`DestinationError::MergeNeedsPostgres15`] naming `table` and the server's version,
/// [`DestinationError::Database`].
pub async fn check_merge_supported<'c, E>(conn: E, table: &TableRef) -> Result<(), DestinationError>
where
    E: Executor<'c, Database = sqlx::Postgres>,
{
    let (version_num, version): (i32, String) = sqlx::query_as(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
    )
    .fetch_one(conn)
    .await
    .map_err(DestinationError::db(format!(
        "reading the server version before merging into {table}"
    )))?;
    if version_num < 150_000 {
        return Err(DestinationError::MergeNeedsPostgres15 {
            table: table.to_string(),
            version,
        });
    }
    Ok(())
}

/// Opens a dataset load of `spec.job_key`, or resumes its unfinished one.
///
/// Without `restart`, the newest load of the job in a resumable state (`queued`, `running`, `paused`, `failed`)
/// is resumed: it must load the same release, dataset, table, mode and unit keys
/// ([`DestinationError::ResumeMismatch`] otherwise); its `running` and `failed` units become `pending` (the
/// caller holds the job's lock, so no worker of it runs); when its staging table is missing or its row count
/// differs from the rows of the done units, the staging table is (re)created empty and every unit becomes
/// pending (with a warning). With `restart`, or when there is none, the unfinished loads of the job are
/// cancelled (their staging tables dropped) and a new load is recorded with its units and an empty staging
/// table. The target schema is created if missing.
///
/// # Errors
/// [`DestinationError::InvalidSpec`], [`DestinationError::InvalidIdentifier`],
/// [`DestinationError::UnsupportedType`], [`DestinationError::ResumeMismatch`],
/// [`DestinationError::MergeNeedsPostgres15`] (a merge on a server older than 15), [`DestinationError::Database`].
pub async fn open_dataset_load(
    dest: &Destination,
    spec: DatasetLoadSpec,
    restart: bool,
) -> Result<DatasetLoad, DestinationError> {
    validate(&spec)?;
    let job = spec.job_key.clone();
    let ctx = |what: &str| format!("opening the dataset load of job `{job}`: {what}");
    let mut tx = dest
        .pool()
        .begin()
        .await
        .map_err(DestinationError::db(ctx("begin")))?;
    if spec.mode == LoadMode::Merge {
        check_merge_supported(&mut *tx, &spec.table).await?;
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(OPEN_LOCK_CLASS)
        .bind(&spec.job_key)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("lock the job")))?;
    let existing = if restart {
        None
    } else {
        sqlx::query(
            "SELECT id, COALESCE(release, '') AS release, COALESCE(dataset, '') AS dataset, \
             COALESCE(target_schema, '') AS target_schema, COALESCE(target_table, '') AS target_table, \
             COALESCE(mode, '') AS mode, staging_table FROM psystem.loads \
             WHERE job_key = $1 AND state = ANY($2) ORDER BY id DESC LIMIT 1 FOR UPDATE",
        )
        .bind(&spec.job_key)
        .bind(RESUMABLE)
        .fetch_optional(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("find an unfinished load")))?
    };

    let load = match existing {
        Some(row) => {
            let load_id: i64 = row.get("id");
            let mismatch = |detail: String| DestinationError::ResumeMismatch {
                job_key: spec.job_key.clone(),
                load_id,
                detail,
            };
            let (release, dataset): (String, String) = (row.get("release"), row.get("dataset"));
            let table = TableRef::new(
                row.get::<String, _>("target_schema"),
                row.get::<String, _>("target_table"),
            );
            let mode: String = row.get("mode");
            if release != spec.release
                || dataset != spec.dataset
                || table != spec.table
                || mode != spec.mode.as_str()
            {
                return Err(mismatch(format!(
                    "loads release {release} dataset {dataset} into {table} with mode {mode} (requested: release {} \
                     dataset {} into {} with mode {})",
                    spec.release, spec.dataset, spec.table, spec.mode
                )));
            }
            let mut keys: Vec<String> = sqlx::query_scalar(
                "SELECT unit_key FROM psystem.work_units WHERE load_id = $1 ORDER BY unit_key",
            )
            .bind(load_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("read the work units")))?;
            let mut wanted: Vec<String> = spec.units.iter().map(|u| u.key.clone()).collect();
            wanted.sort();
            keys.sort();
            if keys != wanted {
                return Err(mismatch(format!(
                    "has {} work unit(s) that differ from the {} of this run (other files); pass restart to load them \
                     from scratch",
                    keys.len(),
                    wanted.len()
                )));
            }
            let staging = match row.get::<Option<String>, _>("staging_table") {
                Some(name) => TableRef::new(spec.table.schema.clone(), name),
                None => staging_name(&spec.table, load_id),
            };
            crate::work_units::reset_unfinished_units(&mut tx, load_id).await?;
            let done_rows: i64 = sqlx::query_scalar(
                "SELECT COALESCE(sum(rows), 0)::bigint FROM psystem.work_units WHERE load_id = $1 AND state = 'done'",
            )
            .bind(load_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("sum the done units")))?;
            let staging_rows: Option<i64> = if table_oid_exists(&mut tx, &staging).await?.is_some()
            {
                let sql = format!("SELECT count(*) FROM {}", quote_table(&staging));
                Some(
                    sqlx::query_scalar(&sql)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(DestinationError::db(ctx("count the staging table")))?,
                )
            } else {
                None
            };
            if staging_rows != Some(done_rows) {
                warn!(load_id, staging = %staging, ?staging_rows, done_rows,
                    "The staging table does not hold the rows of the done units; copying every unit again.");
                drop_table_if_exists(&mut tx, &staging).await?;
                ensure_schema(&mut tx, &spec.table.schema).await?;
                create_staging(&mut tx, &staging, &spec).await?;
                sqlx::query(
                    "UPDATE psystem.work_units SET state = 'pending', rows = NULL, worker = NULL, heartbeat_at = NULL, \
                     finished_at = NULL WHERE load_id = $1",
                )
                .bind(load_id)
                .execute(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx("reset the units")))?;
            }
            sqlx::query(
                "UPDATE psystem.loads SET state = 'running', last_error = NULL, staging_table = $2, verified = $3, \
                 worker_spec = $4, updated_at = now() WHERE id = $1",
            )
            .bind(load_id)
            .bind(&staging.name)
            .bind(spec.verified)
            .bind(spec.worker_spec.as_ref().map(sqlx::types::Json))
            .execute(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("mark the load running")))?;
            info!(load_id, job_key = %spec.job_key, "Dataset load resumed.");
            DatasetLoad {
                load_id,
                resumed: true,
                staging,
                spec,
                started: Instant::now(),
            }
        }
        None => {
            crate::work_units::cancel_unfinished(&mut tx, &spec.job_key).await?;
            ensure_schema(&mut tx, &spec.table.schema).await?;
            let load_id: i64 = sqlx::query_scalar(
                "INSERT INTO psystem.loads (job_key, plugin, entry, source_kind, target_schema, target_table, mode, \
                 state, started_at, updated_at, release, dataset, verified, worker_spec) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', now(), now(), $8, $9, $10, $11) RETURNING id",
            )
            .bind(&spec.job_key)
            .bind(&spec.plugin)
            .bind(&spec.entry)
            .bind(&spec.source_kind)
            .bind(&spec.table.schema)
            .bind(&spec.table.name)
            .bind(spec.mode.as_str())
            .bind(&spec.release)
            .bind(&spec.dataset)
            .bind(spec.verified)
            .bind(spec.worker_spec.as_ref().map(sqlx::types::Json))
            .fetch_one(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("record the load")))?;
            let staging = staging_name(&spec.table, load_id);
            drop_table_if_exists(&mut tx, &staging).await?;
            create_staging(&mut tx, &staging, &spec).await?;
            sqlx::query("UPDATE psystem.loads SET staging_table = $2 WHERE id = $1")
                .bind(load_id)
                .bind(&staging.name)
                .execute(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx("record the staging table")))?;
            crate::work_units::record_units(&mut tx, load_id, &spec.units).await?;
            info!(load_id, job_key = %spec.job_key, table = %spec.table, mode = %spec.mode,
                units = spec.units.len(), "Dataset load started.");
            DatasetLoad {
                load_id,
                resumed: false,
                staging,
                spec,
                started: Instant::now(),
            }
        }
    };
    tx.commit()
        .await
        .map_err(DestinationError::db(ctx("commit")))?;
    Ok(load)
}

/// The newest completed dataset load of `release`/`dataset` from `source_kind` into `table`, if that table
/// still exists: what a release run skips unless forced.
///
/// # Errors
/// [`DestinationError::Database`].
pub async fn last_completed_dataset(
    dest: &Destination,
    source_kind: &str,
    release: &str,
    dataset: &str,
    table: &TableRef,
) -> Result<Option<i64>, DestinationError> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM psystem.loads WHERE source_kind = $1 AND release = $2 AND dataset = $3 \
         AND target_schema = $4 AND target_table = $5 AND state = 'completed' ORDER BY id DESC LIMIT 1",
    )
    .bind(source_kind)
    .bind(release)
    .bind(dataset)
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_optional(dest.pool())
    .await
    .map_err(DestinationError::db("looking up completed dataset loads"))?;
    let Some(id) = id else { return Ok(None) };
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(quote_table(table))
        .fetch_one(dest.pool())
        .await
        .map_err(DestinationError::db("checking the destination table"))?;
    Ok(exists.then_some(id))
}

/// Joins dataset load `load_id` as a worker of another process or machine: the table, staging table, release
/// and mode from the ledger, `schema` (the flattened schema of the dataset's files, which the worker reads from
/// a file's footer) for the COPY. The handle claims, heartbeats and copies units; finishing stays with the run
/// that opened the load (it knows the primary key and the options).
///
/// # Errors
/// [`DestinationError::LoadNotFound`]; [`DestinationError::LoadNotActive`] when it is not running;
/// [`DestinationError::InvalidSpec`] when it has no staging table or no worker spec; [`DestinationError::Database`].
pub async fn attach_dataset_load(
    dest: &Destination,
    load_id: i64,
    schema: SchemaRef,
) -> Result<DatasetLoad, DestinationError> {
    let row = sqlx::query(
        "SELECT job_key, state, COALESCE(plugin, '') AS plugin, COALESCE(entry, '') AS entry, \
         COALESCE(source_kind, '') AS source_kind, COALESCE(release, '') AS release, \
         COALESCE(dataset, '') AS dataset, COALESCE(target_schema, '') AS target_schema, \
         COALESCE(target_table, '') AS target_table, COALESCE(mode, '') AS mode, staging_table, \
         COALESCE(verified, false) AS verified, worker_spec FROM psystem.loads WHERE id = $1",
    )
    .bind(load_id)
    .fetch_optional(dest.pool())
    .await
    .map_err(DestinationError::db(format!("reading load #{load_id}")))?
    .ok_or(DestinationError::LoadNotFound { load_id })?;
    crate::ledger::require_running(load_id, row.get("state"))?;
    let job_key: String = row.get("job_key");
    let invalid = |message: &str| DestinationError::InvalidSpec {
        job_key: job_key.clone(),
        message: message.to_string(),
    };
    let staging: Option<String> = row.get("staging_table");
    let worker_spec: Option<sqlx::types::Json<serde_json::Value>> = row.get("worker_spec");
    let (Some(staging), Some(worker_spec)) = (staging, worker_spec) else {
        return Err(invalid(
            "the load has no staging table or no worker spec: only its own process works it",
        ));
    };
    let mode = LoadMode::parse(row.get::<String, _>("mode").as_str())
        .ok_or_else(|| invalid("the load's mode is unknown"))?;
    let target_schema: String = row.get("target_schema");
    let heartbeat_timeout = worker_spec
        .0
        .get("heartbeat_timeout_secs")
        .and_then(|v| v.as_f64())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT);
    let spec = DatasetLoadSpec {
        job_key: job_key.clone(),
        plugin: row.get("plugin"),
        entry: row.get("entry"),
        source_kind: row.get("source_kind"),
        release: row.get("release"),
        dataset: row.get("dataset"),
        table: TableRef::new(target_schema.clone(), row.get::<String, _>("target_table")),
        mode,
        primary_key: Vec::new(),
        schema,
        units: Vec::new(),
        verified: row.get("verified"),
        allow_casts: false,
        copy_options: CopyOptions::default(),
        heartbeat_timeout,
        worker_spec: Some(worker_spec.0),
    };
    Ok(DatasetLoad {
        load_id,
        resumed: true,
        staging: TableRef::new(target_schema, staging),
        spec,
        started: Instant::now(),
    })
}

impl DatasetLoad {
    /// The load id (`psystem.loads.id`).
    pub fn load_id(&self) -> i64 {
        self.load_id
    }

    /// True when this handle continues an unfinished load.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The staging table (in the target schema).
    pub fn staging(&self) -> &TableRef {
        &self.staging
    }

    /// The specification the load was opened with.
    pub fn spec(&self) -> &DatasetLoadSpec {
        &self.spec
    }

    /// The load's work-unit queue (claim, heartbeat, fail, counts).
    pub fn queue(&self) -> WorkQueue {
        WorkQueue::new(self.load_id, self.spec.heartbeat_timeout)
    }

    /// Claims the next unit of the load for `worker`: [`WorkQueue::claim`].
    ///
    /// # Errors
    /// [`DestinationError::LoadNotActive`] when the load is not `running`; [`DestinationError::Database`].
    pub async fn claim_unit(
        &self,
        dest: &Destination,
        worker: &str,
    ) -> Result<Option<ClaimedUnit>, DestinationError> {
        self.queue().claim(dest, worker).await
    }

    /// Records that `unit` is still being worked on: [`WorkQueue::heartbeat`].
    ///
    /// # Errors
    /// [`DestinationError::UnitLost`] when the unit was reclaimed by another worker or is no longer running;
    /// [`DestinationError::Database`].
    pub async fn heartbeat(
        &self,
        dest: &Destination,
        unit: &ClaimedUnit,
    ) -> Result<(), DestinationError> {
        self.queue().heartbeat(dest, unit).await
    }

    /// Copies the batches of `unit` into the staging table in **one transaction** that also marks the unit
    /// `done` with its row count: each batch is encoded and sent in chunks of about 1 MiB, then dropped, so memory
    /// stays bounded by one batch. Every batch must have the load's columns (names and PostgreSQL types).
    ///
    /// On any error nothing of the unit stays in the staging table and the unit stays `running` (call
    /// [`DatasetLoad::fail_unit`]).
    ///
    /// # Errors
    /// [`DestinationError::UnitSource`] naming the unit when `batches` yields an error;
    /// [`DestinationError::UnitLost`] when the unit is no longer this worker's; [`DestinationError::LoadNotActive`];
    /// [`DestinationError::BatchSchemaMismatch`]; a value the encoder refuses as [`DestinationError::ValueInFile`]
    /// naming the unit's file and the 1-based row in it; the encoder's other errors;
    /// [`DestinationError::Database`].
    pub async fn copy_unit<S: BatchSource>(
        &self,
        dest: &Destination,
        unit: &ClaimedUnit,
        mut batches: S,
    ) -> Result<UnitReport, DestinationError> {
        let started = Instant::now();
        let load_id = self.load_id;
        let mut tx = dest
            .pool()
            .begin()
            .await
            .map_err(DestinationError::db(format!(
                "copying unit `{}` of load #{load_id}: begin",
                unit.key
            )))?;
        // Every error path rolls back here, explicitly: a dropped transaction only queues its ROLLBACK, and
        // until that runs the unit's row lock would make the next worker see it as "being copied".
        match self.copy_unit_in(&mut tx, unit, &mut batches).await {
            Ok((copied, count)) => {
                tx.commit().await.map_err(DestinationError::db(format!(
                    "copying unit `{}` of load #{load_id}: commit",
                    unit.key
                )))?;
                debug!(load_id, unit = %unit.key, rows = copied, "Work unit copied.");
                Ok(UnitReport {
                    key: unit.key.clone(),
                    rows: copied,
                    batches: count,
                    duration: started.elapsed(),
                })
            }
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    warn!(load_id, unit = %unit.key, error = %rollback, "Rolling back a failed unit failed.");
                }
                Err(e)
            }
        }
    }

    /// The body of [`DatasetLoad::copy_unit`] inside its transaction: locks the unit row, COPYs every batch
    /// into the staging table and marks the unit done. Returns (rows, batches).
    async fn copy_unit_in<S: BatchSource>(
        &self,
        conn: &mut PgConnection,
        unit: &ClaimedUnit,
        batches: &mut S,
    ) -> Result<(u64, u64), DestinationError> {
        let load_id = self.load_id;
        let ctx = |what: &str| format!("copying unit `{}` of load #{load_id}: {what}", unit.key);
        self.queue().lock_for_commit(&mut *conn, unit).await?;

        let sql = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            quote_table(&self.staging),
            staging_columns(&self.spec.schema)
        );
        let mut copy = conn
            .copy_in_raw(&sql)
            .await
            .map_err(DestinationError::db(ctx("start COPY")))?;
        let mut buf = BytesMut::with_capacity(COPY_CHUNK + COPY_CHUNK / 4);
        CopyEncoder::write_header(&mut buf);
        let mut rows = 0u64;
        let mut count = 0u64;
        loop {
            let batch = match batches.next_batch().await {
                None => break,
                Some(Ok(batch)) => batch,
                Some(Err(source)) => {
                    let _ = copy
                        .abort(format!("psystem: reading {} failed", unit.key))
                        .await;
                    return Err(DestinationError::UnitSource {
                        load_id,
                        unit: unit.key.clone(),
                        source,
                    });
                }
            };
            count += 1;
            let encoded = self.check_batch(&batch).and_then(|_| {
                let encoder = CopyEncoder::with_options(&batch, &self.spec.copy_options)?;
                Ok(encoder)
            });
            let encoder = match encoded {
                Ok(e) => e,
                Err(e) => {
                    let _ = copy.abort(e.to_string()).await;
                    return Err(e);
                }
            };
            for row in 0..encoder.num_rows() {
                if let Err(e) = encoder.write_row_hashed(row, &mut buf) {
                    // The unit is one file: its rows so far place the value in it (1-based).
                    let e = e.in_file(format!("{}, row {}", unit.key, rows + row as u64 + 1));
                    let _ = copy.abort(e.to_string()).await;
                    return Err(e);
                }
                if buf.len() >= COPY_CHUNK {
                    if let Err(source) = copy.send(&buf[..]).await {
                        let _ = copy.abort("psystem: sending COPY data failed").await;
                        return Err(DestinationError::from_server(ctx("send COPY data"), source));
                    }
                    buf.clear();
                }
            }
            rows += encoder.num_rows() as u64;
        }
        CopyEncoder::write_trailer(&mut buf);
        if let Err(source) = copy.send(&buf[..]).await {
            let _ = copy.abort("psystem: sending COPY data failed").await;
            return Err(DestinationError::from_server(ctx("send COPY data"), source));
        }
        let copied = copy
            .finish()
            .await
            .map_err(DestinationError::db(ctx("finish COPY")))?;
        debug_assert_eq!(copied, rows);
        self.queue()
            .mark_done(&mut *conn, unit, copied, None)
            .await?;
        Ok((copied, count))
    }

    /// Records that `unit` failed with `error`: [`WorkQueue::fail`].
    ///
    /// # Errors
    /// [`DestinationError::UnitLost`] when the unit is no longer this worker's; [`DestinationError::Database`].
    pub async fn fail_unit(
        &self,
        dest: &Destination,
        unit: &ClaimedUnit,
        error: &str,
        max_attempts: u32,
    ) -> Result<UnitState, DestinationError> {
        self.queue().fail(dest, unit, error, max_attempts).await
    }

    /// The units of the load by state, with the rows and bytes of the done ones.
    ///
    /// # Errors
    /// [`DestinationError::Database`].
    pub async fn progress(&self, dest: &Destination) -> Result<UnitCounts, DestinationError> {
        unit_counts(dest.pool(), self.load_id).await
    }

    /// Completes the load in one transaction (SQL in `docs/LOAD_MODES.md`): checks that every unit is done,
    /// checks the primary key for NULLs and duplicates over the staging table, then creates (first load),
    /// replaces or merges/appends into the target table with schema evolution, drops the staging table and marks
    /// the load `completed` with its counts in the ledger.
    ///
    /// # Errors
    /// [`DestinationError::UnitsNotDone`] and [`DestinationError::LoadNotActive`] change nothing (the load stays
    /// resumable). Every other error — [`DestinationError::DuplicateKeys`], [`DestinationError::NullKeys`],
    /// [`DestinationError::IncompatibleColumn`], [`DestinationError::DependentViews`],
    /// [`DestinationError::MissingUniqueKey`], [`DestinationError::StagingMissing`],
    /// [`DestinationError::Database`] — leaves the target as it was, drops the staging table and marks the load
    /// `failed`.
    pub async fn finish(self, dest: &Destination) -> Result<FinishReport, DestinationError> {
        match self.finish_inner(dest).await {
            Ok(report) => Ok(report),
            Err(
                e
                @ (DestinationError::UnitsNotDone { .. } | DestinationError::LoadNotActive { .. }),
            ) => Err(e),
            // The server's troubles (a table locked too long, out of disk, the connection lost) change nothing
            // either: the staging table is kept and `resume` finishes the load.
            Err(e) if e.is_server_trouble() => Err(e),
            Err(e) => {
                if let Err(abort) = self.abort_inner(dest, &e.to_string()).await {
                    warn!(load_id = self.load_id, error = %abort, "Dropping the staging table after a failed finish failed.");
                }
                Err(e)
            }
        }
    }

    /// Gives the load up: drops the staging table and marks the load `failed` with `error` (must not contain
    /// secrets). The target table is untouched.
    ///
    /// # Errors
    /// [`DestinationError::Database`].
    pub async fn abort(self, dest: &Destination, error: &str) -> Result<(), DestinationError> {
        self.abort_inner(dest, error).await
    }

    async fn abort_inner(&self, dest: &Destination, error: &str) -> Result<(), DestinationError> {
        let ctx = |what: &str| format!("aborting load #{}: {what}", self.load_id);
        let mut tx = dest
            .pool()
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        sqlx::query(
            "UPDATE psystem.loads SET state = 'failed', last_error = $2, updated_at = now() WHERE id = $1",
        )
        .bind(self.load_id)
        .bind(error)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("mark the load failed")))?;
        drop_table_if_exists(&mut tx, &self.staging).await?;
        tx.commit()
            .await
            .map_err(DestinationError::db(ctx("commit")))?;
        warn!(
            load_id = self.load_id,
            error, "Dataset load failed; staging table dropped."
        );
        Ok(())
    }

    async fn finish_inner(&self, dest: &Destination) -> Result<FinishReport, DestinationError> {
        let load_id = self.load_id;
        let table = &self.spec.table;
        let ctx = |what: &str| format!("finishing load #{load_id} into {table}: {what}");
        let mut tx = dest
            .pool()
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        match self.finish_in(&mut tx, dest.pool()).await {
            Ok(report) => {
                tx.commit()
                    .await
                    .map_err(DestinationError::db(ctx("commit")))?;
                info!(load_id, table = %table, mode = %self.spec.mode, rows = report.rows, inserted = report.inserted,
                    updated = report.updated, deleted = report.deleted, added = ?report.added_columns,
                    widened = ?report.widened_columns, missing = ?report.missing_columns,
                    since_open_ms = self.started.elapsed().as_millis() as u64, "Dataset load completed.");
                Ok(report)
            }
            Err(e) => {
                // Explicitly: a dropped transaction only queues its ROLLBACK, and its locks would outlive it.
                if let Err(rollback) = tx.rollback().await {
                    warn!(load_id, error = %rollback, "Rolling back a failed finish failed.");
                }
                Err(e)
            }
        }
    }

    /// The body of [`DatasetLoad::finish`] inside its transaction (committed by the caller).
    async fn finish_in(
        &self,
        tx: &mut PgConnection,
        pool: &sqlx::PgPool,
    ) -> Result<FinishReport, DestinationError> {
        let started = Instant::now();
        let load_id = self.load_id;
        let spec = &self.spec;
        let table = &spec.table;
        let ctx = |what: &str| format!("finishing load #{load_id} into {table}: {what}");
        (&mut *tx)
            .execute("SET LOCAL TimeZone = 'UTC'")
            .await
            .map_err(DestinationError::db(ctx("set the time zone")))?;
        let counts = crate::work_units::lock_for_finish(&mut *tx, load_id).await?;
        // The target's lock first, waiting a bounded time: another session may hold the table.
        let mode = match spec.mode {
            LoadMode::Merge => crate::locks::TableLock::ShareRowExclusive,
            LoadMode::Append => crate::locks::TableLock::RowExclusive,
            LoadMode::Replace => crate::locks::TableLock::AccessExclusive,
        };
        crate::locks::lock_table(&mut *tx, pool, table, mode).await?;
        // Building the key's index and joining the release with the table sort and hash millions of keys: with
        // the servers' defaults (64 MB, 4 MB) both spill to temporary files. Raised for this transaction only,
        // never lowered.
        for (setting, at_least) in FINISH_MEMORY {
            sqlx::query(
                "SELECT set_config($1, (greatest(pg_size_bytes(current_setting($1)), pg_size_bytes($2)) / 1024)::text || 'kB', true)",
            )
            .bind(setting)
            .bind(at_least)
            .execute(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx(&format!("raise {setting}"))))?;
        }
        if table_oid_exists(&mut *tx, &self.staging).await?.is_none() {
            return Err(DestinationError::StagingMissing {
                load_id,
                staging: self.staging.to_string(),
            });
        }
        // No ANALYZE here: the merge's plans do not need statistics of the staging table, and a new table (first
        // load, replace) is analyzed by autovacuum after COMMIT (its inserts cross the autoanalyze threshold);
        // at 2M rows an ANALYZE would add 0.5 s to every load.
        let mut report = FinishReport {
            rows: counts.rows,
            ..FinishReport::default()
        };
        // The keys are checked by the database itself (the primary key constraint, ON CONFLICT): scanning the
        // staging table for NULL and duplicate keys beforehand costs as much as building the key's index. Only
        // when the database refuses them is the work rolled back to here and the staging table searched for
        // examples to report.
        exec(
            &mut *tx,
            "SAVEPOINT psystem_finish",
            &ctx("set a savepoint"),
        )
        .await?;
        let applied = self.apply(&mut *tx, &mut report).await;
        match applied {
            Ok(()) => {}
            Err(e) if !spec.primary_key.is_empty() && is_key_violation(&e) => {
                exec(
                    &mut *tx,
                    "ROLLBACK TO SAVEPOINT psystem_finish",
                    &ctx("roll back to the savepoint"),
                )
                .await?;
                self.check_keys(&mut *tx).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        report.duration = started.elapsed();
        sqlx::query(
            "UPDATE psystem.loads SET state = 'completed', finished_at = now(), updated_at = now(), last_error = NULL, \
             pages = $2, rows = $3, bytes = $4, rows_inserted = $5, rows_updated = $6, rows_deleted = $7, \
             verified = $8, release = $9, dataset = $10, \
             duration_ms = (extract(epoch FROM (now() - started_at)) * 1000)::bigint WHERE id = $1",
        )
        .bind(load_id)
        .bind(counts.done as i64)
        .bind(counts.rows as i64)
        .bind(counts.bytes_done as i64)
        .bind(report.inserted as i64)
        .bind(report.updated as i64)
        .bind(report.deleted as i64)
        .bind(spec.verified)
        .bind(&spec.release)
        .bind(&spec.dataset)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("mark the load completed")))?;
        Ok(report)
    }

    /// Moves the staging table's rows into the target: renames it into place (first load, adding the primary
    /// key), swaps it in (replace) or upserts from it (merge), filling `report`.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        report: &mut FinishReport,
    ) -> Result<(), DestinationError> {
        let spec = &self.spec;
        let table = &spec.table;
        let load_id = self.load_id;
        let ctx = |what: &str| format!("finishing load #{load_id} into {table}: {what}");
        let staging_sql = quote_table(&self.staging);
        let target_sql = quote_table(table);
        let rows = report.rows;
        match table_oid_exists(&mut *tx, table).await? {
            None => {
                // Opened to merge into a table that has since been dropped: the staging table becomes the table,
                // so it must be logged.
                let persistence: Option<String> = sqlx::query_scalar(
                    "SELECT relpersistence::text FROM pg_class WHERE oid = $1::regclass",
                )
                .bind(&staging_sql)
                .fetch_optional(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx(
                    "read the staging table's persistence",
                )))?;
                if persistence.as_deref() == Some("u") {
                    exec(
                        tx,
                        &format!("ALTER TABLE {staging_sql} SET LOGGED"),
                        &ctx("make the staging table logged"),
                    )
                    .await?;
                }
                reset_staging_options(tx, &staging_sql, &ctx("enable autovacuum")).await?;
                exec(
                    tx,
                    &format!(
                        "ALTER TABLE {staging_sql} RENAME TO {}",
                        quote_ident(&table.name)
                    ),
                    &ctx("rename the staging table"),
                )
                .await?;
                if !spec.primary_key.is_empty() {
                    exec(
                        tx,
                        &format!(
                            "ALTER TABLE {target_sql} ADD CONSTRAINT {} PRIMARY KEY ({})",
                            quote_ident(&ident_with_suffix(&table.name, "_pkey")),
                            idents(&spec.primary_key)
                        ),
                        &ctx("add the primary key"),
                    )
                    .await?;
                }
                report.inserted = rows;
                report.created = true;
            }
            Some(oid) => {
                let mut existing = existing_columns(tx, oid, table).await?;
                let had_hash = existing.iter().any(|c| c.name == ROW_HASH_COLUMN);
                existing.retain(|c| c.name != ROW_HASH_COLUMN);
                if !had_hash && spec.mode != LoadMode::Replace {
                    // A table loaded before psystem kept row hashes: its rows compare as changed once.
                    exec(
                        tx,
                        &format!(
                            "ALTER TABLE {target_sql} ADD COLUMN {} bigint",
                            quote_ident(ROW_HASH_COLUMN)
                        ),
                        &ctx("add the row hash column"),
                    )
                    .await?;
                }
                let evolution = evolve::plan(table, &spec.schema, &existing, spec.allow_casts)?;
                match spec.mode {
                    LoadMode::Replace => {
                        self.replace(tx, oid, &existing, &evolution, report).await?
                    }
                    LoadMode::Merge | LoadMode::Append => {
                        self.merge(tx, &existing, &evolution, report).await?
                    }
                }
            }
        }
        Ok(())
    }

    /// NULL and duplicate primary keys in the staging table.
    async fn check_keys(&self, conn: &mut PgConnection) -> Result<(), DestinationError> {
        check_staged_keys(
            conn,
            &quote_table(&self.staging),
            &self.spec.table,
            &self.spec.primary_key,
        )
        .await
    }

    /// Replace: the staging table becomes the target, carrying the old table's objects.
    async fn replace(
        &self,
        conn: &mut PgConnection,
        oid: i64,
        existing: &[ExistingColumn],
        evolution: &evolve::Evolution,
        report: &mut FinishReport,
    ) -> Result<(), DestinationError> {
        let table = &self.spec.table;
        let ctx = |what: &str| format!("replacing {table}: {what}");
        let views = replace::dependent_views(conn, oid, table).await?;
        if !views.is_empty() {
            return Err(DestinationError::DependentViews {
                table: table.to_string(),
                views,
            });
        }
        let staging_sql = quote_table(&self.staging);
        report_types(evolution, true, report);
        for column in &evolution.missing {
            exec(
                conn,
                &format!(
                    "ALTER TABLE {staging_sql} ADD COLUMN {} {}",
                    quote_ident(&column.name),
                    column.full
                ),
                &ctx("keep a column the release lacks"),
            )
            .await?;
        }
        let _ = existing;
        let release_columns: Vec<String> = self
            .spec
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let preserved =
            replace::capture(conn, oid, table, &release_columns, &self.spec.primary_key).await?;
        for stmt in &preserved.before {
            exec(conn, stmt, &ctx(&format!("run `{stmt}`"))).await?;
        }
        exec(
            conn,
            &format!("DROP TABLE {}", quote_table(table)),
            &ctx("drop the old table"),
        )
        .await?;
        reset_staging_options(conn, &staging_sql, &ctx("enable autovacuum")).await?;
        exec(
            conn,
            &format!(
                "ALTER TABLE {staging_sql} RENAME TO {}",
                quote_ident(&table.name)
            ),
            &ctx("rename the staging table"),
        )
        .await?;
        for stmt in &preserved.after {
            exec(conn, stmt, &ctx(&format!("re-create `{stmt}`"))).await?;
        }
        report.inserted = report.rows;
        Ok(())
    }

    /// Merge or append: schema evolution on the target, then upsert (and delete) or insert.
    async fn merge(
        &self,
        conn: &mut PgConnection,
        existing: &[ExistingColumn],
        evolution: &evolve::Evolution,
        report: &mut FinishReport,
    ) -> Result<(), DestinationError> {
        let spec = &self.spec;
        let table = &spec.table;
        let ctx = |what: &str| format!("merging into {table}: {what}");
        let target_sql = quote_table(table);
        let staging_sql = quote_table(&self.staging);
        if spec.mode == LoadMode::Merge && !has_unique_key(conn, table, &spec.primary_key).await? {
            return Err(DestinationError::MissingUniqueKey {
                table: table.to_string(),
                columns: spec.primary_key.clone(),
            });
        }
        report_types(evolution, false, report);
        let mut select = Vec::new();
        for ((name, plan), field) in evolution.columns.iter().zip(spec.schema.fields()) {
            let col = quote_ident(name);
            let incoming_full = pg_type(field)?;
            match plan {
                ColumnPlan::Added { .. } => {
                    exec(
                        conn,
                        &format!("ALTER TABLE {target_sql} ADD COLUMN {col} {incoming_full}"),
                        &ctx(&format!("add column `{name}`")),
                    )
                    .await?;
                    select.push(format!("s.{col}"));
                }
                ColumnPlan::Same => select.push(format!("s.{col}")),
                ColumnPlan::Widened { existing, incoming }
                | ColumnPlan::Cast { existing, incoming } => {
                    // Without a direct cast (e.g. bigint → boolean) the value goes through its text form.
                    let direct: bool = matches!(plan, ColumnPlan::Widened { .. })
                        || sqlx::query_scalar(
                            "SELECT EXISTS (SELECT 1 FROM pg_cast WHERE castsource = $1::regtype AND casttarget = $2::regtype)",
                        )
                        .bind(existing)
                        .bind(incoming)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(DestinationError::db(ctx(&format!("look up a cast of column `{name}`"))))?;
                    let sql = if direct {
                        evolve::alter_type_sql(&target_sql, name, existing, incoming, incoming_full)
                    } else {
                        format!(
                            "ALTER TABLE {target_sql} ALTER COLUMN {col} TYPE {incoming_full} USING CAST(CAST({col} AS text) AS {incoming_full})"
                        )
                    };
                    exec(
                        conn,
                        &sql,
                        &ctx(&format!(
                            "change the type of column `{name}` from {existing} to {incoming}"
                        )),
                    )
                    .await?;
                    select.push(format!("s.{col}"));
                }
                ColumnPlan::Narrowed {
                    existing: old,
                    incoming,
                } => {
                    let full = existing
                        .iter()
                        .find(|c| &c.name == name)
                        .map(|c| c.full.as_str())
                        .unwrap_or(old.as_str());
                    select.push(evolve::convert_expr(
                        &format!("s.{col}"),
                        incoming,
                        old,
                        full,
                    ));
                }
            }
        }
        for column in &evolution.missing {
            if column.not_null {
                exec(
                    conn,
                    &format!(
                        "ALTER TABLE {target_sql} ALTER COLUMN {} DROP NOT NULL",
                        quote_ident(&column.name)
                    ),
                    &ctx(&format!(
                        "allow NULL in column `{}` the release lacks",
                        column.name
                    )),
                )
                .await?;
            }
        }
        let hash = quote_ident(ROW_HASH_COLUMN);
        let columns = format!("{}, {hash}", column_list(&spec.schema));
        let select_list = format!("{}, s.{hash}", select.join(", "));
        if spec.mode == LoadMode::Append {
            let done = conn
                .execute(
                    format!(
                        "INSERT INTO {target_sql} ({columns}) SELECT {select_list} FROM {staging_sql} s"
                    )
                    .as_str(),
                )
                .await
                .map_err(DestinationError::db(ctx("insert the rows")))?;
            report.inserted = done.rows_affected();
        } else {
            self.merge_rows(conn, &select, &columns, report).await?;
        }
        exec(
            conn,
            &format!("DROP TABLE {staging_sql}"),
            &ctx("drop the staging table"),
        )
        .await?;
        Ok(())
    }

    /// The rows of a merge (SQL in `docs/LOAD_MODES.md`, "Merge"): one FULL JOIN of the staging table with the
    /// table on the primary key, comparing only [`ROW_HASH_COLUMN`], collects the row addresses (`ctid`) of the
    /// rows that differ into a temporary change set — release rows that are new or changed, with the address of
    /// the row they replace, and table rows the release lacks. One `MERGE` then walks the change set in address
    /// order and deletes, updates or inserts each row, fetching it by address (TID scans); a page of the table is
    /// changed in one visit, so it is written to the WAL in full at most once. Unchanged rows are not touched. The
    /// table is locked against other writers (`SHARE ROW EXCLUSIVE`; readers go on) so the addresses stay valid;
    /// an address is (`tableoid`, `ctid`), which stays unique should the table be partitioned.
    /// `select` are the expressions of the release columns over `s`, `columns` the target's column list with the
    /// hash column.
    ///
    /// A key that repeats in the release fails the insert (a new key), makes `MERGE` refuse to change a row twice
    /// (an existing key with differing rows), or leaves the table with fewer rows than the release (identical
    /// copies), which the row count afterwards catches; all end in [`DestinationError::DuplicateKeys`] via
    /// [`DatasetLoad::check_keys`].
    async fn merge_rows(
        &self,
        conn: &mut PgConnection,
        select: &[String],
        columns: &str,
        report: &mut FinishReport,
    ) -> Result<(), DestinationError> {
        let spec = &self.spec;
        let table = &spec.table;
        let ctx = |what: &str| format!("merging into {table}: {what}");
        let target_sql = quote_table(table);
        let staging_sql = quote_table(&self.staging);
        let hash = quote_ident(ROW_HASH_COLUMN);
        let delta = "pg_temp.psystem_merge_delta";
        let on = spec
            .primary_key
            .iter()
            .map(|k| format!("s.{0} = t.{0}", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        exec(
            conn,
            &format!("LOCK TABLE {target_sql} IN SHARE ROW EXCLUSIVE MODE"),
            &ctx("lock the table against other writers"),
        )
        .await?;
        exec(
            conn,
            &format!(
                "CREATE TEMP TABLE {delta} ON COMMIT DROP AS \
                 SELECT s.ctid AS staged, t.tableoid AS current_table, t.ctid AS current \
                 FROM {staging_sql} s FULL JOIN {target_sql} t ON {on} \
                 WHERE s.{hash} IS DISTINCT FROM t.{hash}"
            ),
            &ctx("compare the release with the table"),
        )
        .await?;
        let (deleted, updated, inserted): (i64, i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE staged IS NULL), \
             count(*) FILTER (WHERE staged IS NOT NULL AND current IS NOT NULL), \
             count(*) FILTER (WHERE current IS NULL) FROM {delta}"
        ))
        .fetch_one(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx("count the changes")))?;
        // The MERGE fetches its rows by address from the change set (a few % of the table): without statistics
        // on the change set the planner would hash-join it with whole-table scans. JIT compiling the statement
        // (its cost estimate is high) would take longer than running it; JIT stays off for the rest of the
        // transaction (a row count and the ledger).
        exec(
            conn,
            "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL jit = off",
            &ctx("plan lookups by row address"),
        )
        .await?;
        // The source's columns get names of their own (v1, v2, …), so no release column name can clash with
        // the change set's.
        let mut values: Vec<String> = select.to_vec();
        values.push(format!("s.{hash}"));
        let source_list = values
            .iter()
            .enumerate()
            .map(|(i, expr)| format!("{expr} AS v{}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sets: Vec<String> = spec
            .schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !spec.primary_key.contains(f.name()))
            .map(|(i, f)| format!("{} = c.v{}", quote_ident(f.name()), i + 1))
            .collect();
        sets.push(format!("{hash} = c.v{}", values.len()));
        let insert_values = (1..=values.len())
            .map(|i| format!("c.v{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let merged = conn
            .execute(
                format!(
                    "MERGE INTO {target_sql} t USING (\
                       SELECT d.current_table AS psystem_current_table, d.current AS psystem_current, \
                              d.staged IS NULL AS psystem_absent, {source_list} \
                       FROM (SELECT * FROM {delta} ORDER BY current_table, current OFFSET 0) d \
                       LEFT JOIN {staging_sql} s ON s.ctid = d.staged) c \
                     ON t.tableoid = c.psystem_current_table AND t.ctid = c.psystem_current \
                     WHEN MATCHED AND c.psystem_absent THEN DELETE \
                     WHEN MATCHED THEN UPDATE SET {} \
                     WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({insert_values})",
                    sets.join(", ")
                )
                .as_str(),
            )
            .await
            .map_err(DestinationError::db(ctx(
                "delete, update and insert the changed rows",
            )))?;
        exec(
            conn,
            "SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on",
            &ctx("restore the planner settings"),
        )
        .await?;
        let changes = (deleted + updated + inserted) as u64;
        if merged.rows_affected() != changes {
            return Err(DestinationError::Database {
                context: ctx("apply the change set"),
                source: sqlx::Error::Protocol(format!(
                    "MERGE changed {} rows where the change set has {changes}",
                    merged.rows_affected()
                )),
            });
        }
        report.deleted = deleted as u64;
        report.updated = updated as u64;
        report.inserted = inserted as u64;
        // The table now holds one row per distinct key of the release: fewer rows than the release has means
        // that a key repeats with copies equal to the table's row (they change nothing, so MERGE has nothing to
        // refuse), or that the server lost the unlogged staging table's rows in a crash.
        let now: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {target_sql}"))
            .fetch_one(&mut *conn)
            .await
            .map_err(DestinationError::db(ctx("count the rows")))?;
        if now as u64 != report.rows {
            self.check_keys(conn).await?;
            let staged: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {staging_sql}"))
                .fetch_one(&mut *conn)
                .await
                .map_err(DestinationError::db(ctx("count the staging table")))?;
            return Err(DestinationError::Database {
                context: ctx("check the merged row count"),
                source: sqlx::Error::Protocol(format!(
                    "the table has {now} rows after the merge, the release {} (the staging table holds {staged}; \
                     fewer means the server lost them, e.g. in crash recovery — run the load again)",
                    report.rows
                )),
            });
        }
        Ok(())
    }

    /// Fails with [`DestinationError::BatchSchemaMismatch`] unless `batch` has the load's column names and
    /// PostgreSQL types.
    fn check_batch(&self, batch: &RecordBatch) -> Result<(), DestinationError> {
        let expected = self.spec.schema.fields();
        let got = batch.schema_ref().fields();
        let mismatch = |detail: String| DestinationError::BatchSchemaMismatch {
            table: self.spec.table.to_string(),
            detail,
        };
        if expected.len() != got.len() {
            return Err(mismatch(format!(
                "it has {} columns, the load has {}",
                got.len(),
                expected.len()
            )));
        }
        for (e, g) in expected.iter().zip(got.iter()) {
            if e.name() != g.name() || pg_type(e)? != pg_type(g)? {
                return Err(mismatch(format!(
                    "column `{}` ({}) where the load has `{}` ({})",
                    g.name(),
                    g.data_type(),
                    e.name(),
                    e.data_type()
                )));
            }
        }
        Ok(())
    }
}

/// Records the type changes of an evolution in the report. `replace` reports narrowings too (the new table
/// takes the release's type).
fn report_types(evolution: &evolve::Evolution, replace: bool, report: &mut FinishReport) {
    for (name, plan) in &evolution.columns {
        match plan {
            ColumnPlan::Added { .. } => report.added_columns.push(name.clone()),
            ColumnPlan::Same => {}
            ColumnPlan::Widened { existing, incoming } => {
                report
                    .widened_columns
                    .push((name.clone(), existing.clone(), incoming.clone()))
            }
            ColumnPlan::Narrowed { existing, incoming } if replace => report
                .retyped_columns
                .push((name.clone(), existing.clone(), incoming.clone())),
            ColumnPlan::Narrowed { .. } => {}
            ColumnPlan::Cast { existing, incoming } => {
                report
                    .retyped_columns
                    .push((name.clone(), existing.clone(), incoming.clone()))
            }
        }
    }
    report.missing_columns = evolution.missing.iter().map(|c| c.name.clone()).collect();
}

fn validate(spec: &DatasetLoadSpec) -> Result<(), DestinationError> {
    let invalid = |message: String| DestinationError::InvalidSpec {
        job_key: spec.job_key.clone(),
        message,
    };
    crate::destination::validate_table_spec(
        &spec.job_key,
        &spec.table,
        &spec.schema,
        &spec.primary_key,
    )?;
    if spec.mode == LoadMode::Merge && spec.primary_key.is_empty() {
        return Err(invalid("mode `merge` needs a primary key".into()));
    }
    if spec.schema.field_with_name(ROW_HASH_COLUMN).is_ok() {
        return Err(invalid(format!(
            "the release has a column named `{ROW_HASH_COLUMN}`, which psystem keeps for its own row hashes; \
             rename it in the entry's transform"
        )));
    }
    let mut keys = std::collections::HashSet::new();
    for unit in &spec.units {
        if unit.key.is_empty() {
            return Err(invalid("a work unit has an empty key".into()));
        }
        if !keys.insert(unit.key.as_str()) {
            return Err(invalid(format!(
                "the work unit `{}` is listed twice",
                unit.key
            )));
        }
    }
    Ok(())
}

/// `<table>__psystem_stage_<load_id>` in the target schema, shortened to 63 bytes.
fn staging_name(table: &TableRef, load_id: i64) -> TableRef {
    TableRef::new(
        table.schema.clone(),
        ident_with_suffix(&table.name, &format!("__psystem_stage_{load_id}")),
    )
}

/// Creates the staging table: the release's columns and [`ROW_HASH_COLUMN`], no key, no index.
///
/// When the rows will be merged or appended into an existing table, the staging table is `UNLOGGED` (no WAL:
/// it is dropped when the load finishes); when it will become the table (first load, replace) it is logged.
/// Crash recovery of the server empties an unlogged table: resuming a load compares the staging table with
/// its done units and copies them again, and a merge checks the table's row count before it commits.
async fn create_staging(
    conn: &mut PgConnection,
    staging: &TableRef,
    spec: &DatasetLoadSpec,
) -> Result<(), DestinationError> {
    let unlogged =
        spec.mode != LoadMode::Replace && table_oid_exists(conn, &spec.table).await?.is_some();
    let mut defs = column_defs(&spec.schema)?;
    defs.push(format!("{} bigint", quote_ident(ROW_HASH_COLUMN)));
    let sql = format!(
        "CREATE {}TABLE {} ({}) WITH ({STAGING_OPTIONS})",
        if unlogged { "UNLOGGED " } else { "" },
        quote_table(staging),
        defs.join(", "),
    );
    exec(conn, &sql, &format!("creating the staging table {staging}")).await
}

/// Storage parameters of a staging table: no autovacuum. Without them autovacuum vacuums the staging table while
/// units are still being copied into it (its inserts pass the insert threshold), taking CPU and I/O from the
/// load, and the finish's first DDL on it waits `deadlock_timeout` (1 s by default) to cancel that vacuum.
const STAGING_OPTIONS: &str = "autovacuum_enabled = false, toast.autovacuum_enabled = false";

/// Gives a staging table that is about to become the table the server's autovacuum settings back (undoes
/// [`STAGING_OPTIONS`]), so that autovacuum analyzes it after COMMIT.
async fn reset_staging_options(
    conn: &mut PgConnection,
    staging_sql: &str,
    context: &str,
) -> Result<(), DestinationError> {
    exec(
        conn,
        &format!("ALTER TABLE {staging_sql} RESET (autovacuum_enabled, toast.autovacuum_enabled)"),
        context,
    )
    .await
}

/// The COPY column list of a staging table: the release's columns, then [`ROW_HASH_COLUMN`].
fn staging_columns(schema: &Schema) -> String {
    format!("{}, {}", column_list(schema), quote_ident(ROW_HASH_COLUMN))
}

/// The columns of the table `oid`, in order.
async fn existing_columns(
    conn: &mut PgConnection,
    oid: i64,
    table: &TableRef,
) -> Result<Vec<ExistingColumn>, DestinationError> {
    let rows = sqlx::query(
        "SELECT a.attname::text AS name, format_type(a.atttypid, NULL) AS base, \
         format_type(a.atttypid, a.atttypmod) AS full, a.attnotnull FROM pg_attribute a \
         WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(format!("reading the columns of {table}")))?;
    Ok(rows
        .iter()
        .map(|r| ExistingColumn {
            name: r.get("name"),
            base: r.get("base"),
            full: r.get("full"),
            not_null: r.get("attnotnull"),
        })
        .collect())
}

/// Fails with [`DestinationError::LoadNotActive`] unless the load is `running`.
/// `"a", "b"` for a list of column names.
fn idents(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn exec(conn: &mut PgConnection, sql: &str, context: &str) -> Result<(), DestinationError> {
    conn.execute(sql)
        .await
        .map_err(DestinationError::db(context.to_string()))?;
    Ok(())
}

/// Whether `e` is the server refusing keys: a unique or NOT NULL violation (`23505`, `23502`) or an upsert that
/// would touch a row twice (`21000`).
fn is_key_violation(e: &DestinationError) -> bool {
    match e {
        DestinationError::Database { source, .. } => source
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| matches!(c.as_ref(), "23505" | "23502" | "21000")),
        _ => false,
    }
}

/// NULL and repeated `primary_key` values among the rows of `staging_sql` (a quoted table), reported as a load of
/// `table` reports them: the count and up to five repeated keys with their counts. Used by the finish of a load
/// and by its dry run.
///
/// # Errors
/// [`DestinationError::NullKeys`], [`DestinationError::DuplicateKeys`], [`DestinationError::Database`].
pub(crate) async fn check_staged_keys(
    conn: &mut PgConnection,
    staging_sql: &str,
    table: &TableRef,
    primary_key: &[String],
) -> Result<(), DestinationError> {
    let ctx = format!("checking the primary key of the new data for {}", table);
    let keys = idents(primary_key);
    let any_null = primary_key
        .iter()
        .map(|k| format!("{} IS NULL", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let nulls: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {staging_sql} WHERE {any_null}"
    ))
    .fetch_one(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx.clone()))?;
    if nulls > 0 {
        return Err(DestinationError::NullKeys {
            table: table.to_string(),
            columns: primary_key.to_vec(),
            count: nulls as u64,
        });
    }
    let as_text = primary_key
        .iter()
        .map(|k| format!("{}::text", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let dups = sqlx::query(&format!(
        "SELECT ARRAY[{as_text}] AS key, count(*) AS n, count(*) OVER () AS total FROM {staging_sql} \
         GROUP BY {keys} HAVING count(*) > 1 ORDER BY count(*) DESC, {keys} LIMIT 5"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx))?;
    if let Some(first) = dups.first() {
        let total: i64 = first.get("total");
        let examples = dups
            .iter()
            .map(|r| {
                let key: Vec<Option<String>> = r.get("key");
                let n: i64 = r.get("n");
                let parts: Vec<String> = key
                    .into_iter()
                    .map(|v| v.unwrap_or_else(|| "NULL".into()))
                    .collect();
                format!("({}) ×{n}", parts.join(", "))
            })
            .collect();
        return Err(DestinationError::DuplicateKeys {
            table: table.to_string(),
            columns: primary_key.to_vec(),
            count: total as u64,
            examples,
        });
    }
    Ok(())
}
