//! The destination: loads Arrow record batches into PostgreSQL tables with exactly-once checkpoints.
//!
//! A load is opened with [`Destination::open_load`] (which resumes the unfinished load of the same job, if
//! any), fed page by page with [`Destination::commit_page`] and completed with [`Destination::finish_load`].
//! Each page is **one transaction**: its rows, its checkpoint position (`psystem.checkpoints`) and the counters
//! of the load (`psystem.loads`) commit together or not at all, so a process killed at any instant resumes
//! from a checkpoint that matches exactly the rows in the database.
//!
//! Load modes:
//! - `append`: binary COPY straight into the target table (created if missing). Each page records the id of the
//!   transaction that wrote it (`psystem.load_pages`), so that a restart can delete exactly the rows of the load
//!   it abandons, in the transaction that opens the new load.
//! - `replace`: binary COPY into a staging table `<table>__psystem_load_<id>` in the target schema (created with
//!   the load row, recorded in `psystem.loads.staging_table`); [`Destination::finish_load`] drops the old table
//!   and renames the staging table in one transaction, so readers see the old table or the new one, never half.
//!   The target table is neither created nor checked before the swap; the new table gets the primary key of the
//!   load (renamed to `<table>_pkey`) but not the indexes, grants or dependent views of the old one (a
//!   dependent view makes the swap fail with the server's error; nothing is changed then).
//! - `merge`: binary COPY into a temporary table (`ON COMMIT DROP`), then
//!   `INSERT … SELECT … ON CONFLICT (primary key) DO UPDATE SET` every other column `= EXCLUDED.column` (rows
//!   whose values are all unchanged are not rewritten). **Duplicate keys inside one page: the last row wins**
//!   (as if the rows had been merged one after the other). The target table needs a primary key or a unique
//!   index on exactly the primary-key columns; tables psystem creates have one.
//!
//! Identifiers are always quoted ([`crate::quote_ident`]); values are always bound, never spliced into SQL.

use std::fmt;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use bytes::BytesMut;
use psystem_core::{Counters, JobState, LoadMode, TableRef};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};
use tracing::{debug, info, warn};

use crate::copy_binary::CopyEncoder;
use crate::entities::IdReport;
use crate::ident::{check_ident, ident_with_suffix, quote_ident, quote_table};
use crate::ledger::{migrate, LoadRecord, LOAD_COLUMNS};
use crate::types::{catalog_type_name, compatible, pg_type};
use crate::{redact_url, DestinationError};

/// How long connecting to the database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of encoded COPY data sent to the server at a time.
pub(crate) const COPY_CHUNK: usize = 1 << 20;
/// The first key of the session advisory locks taken by [`Destination::try_lock_job`] (`'psys'`).
const JOB_LOCK_CLASS: i32 = 0x7073_7973;
/// The first key of the transaction advisory locks that serialize [`Destination::open_load`] per job (`'psyo'`).
pub(crate) const OPEN_LOCK_CLASS: i32 = 0x7073_796f;
/// The states a load can be resumed from (see [`JobState::is_resumable`]).
pub(crate) const RESUMABLE: &[&str] = &["queued", "running", "paused", "failed"];
/// The name of the per-page temporary table of a `merge` load.
const MERGE_TEMP_TABLE: &str = "psystem_merge_page";

/// What the caller knows about a page besides its rows, for the run metrics.
#[derive(Debug, Clone, Default)]
pub struct PageExtras {
    /// Rows read from the source for this page, when more than were written (default: the rows written).
    pub rows_read: Option<u64>,
    /// Rows the caller refused.
    pub rows_rejected: u64,
    /// Milliseconds per phase before the load (`download`, `transform`, …); `load` is added here.
    pub phase_ms: std::collections::BTreeMap<String, u64>,
}

/// A few rows of a table: column names in table order, and each row's values in the same order.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TablePreview {
    /// Column names, in table order.
    pub columns: Vec<String>,
    /// Rows; `rows[i].len() == columns.len()`.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// What to load where: the identity of a job and the shape of its data.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The job key: identifies the job across runs (its unfinished load is resumed by this key).
    pub job_key: String,
    /// The plugin name (recorded in the ledger).
    pub plugin: String,
    /// The ETL entry name (recorded in the ledger).
    pub entry: String,
    /// The source kind, e.g. `gho_odata` (recorded in the ledger).
    pub source_kind: String,
    /// The destination table.
    pub table: TableRef,
    /// The load mode.
    pub mode: LoadMode,
    /// The primary-key columns; required for `merge`, optional otherwise (new tables get the constraint).
    pub primary_key: Vec<String>,
    /// The Arrow schema of every page (with the ID cache columns of [`LoadSpec::ids`] when there is one).
    pub schema: SchemaRef,
    /// What the load reads: source kind, location and the options that change which rows come (e.g.
    /// `gho_odata https://…/api/WSH_8 since=2005`). A resume refuses a load that read something else, and
    /// [`Destination::last_completed`] finds what is already loaded.
    pub source_fingerprint: Option<String>,
    /// Target IDs and references from the ID cache, added to every page inside its transaction.
    pub ids: Option<crate::entities::IdPlan>,
}

/// An open load: what [`Destination::commit_page`] and [`Destination::finish_load`] work on.
///
/// Dropping it without finishing is safe: the ledger keeps the load `running` with its last checkpoint, and
/// the next [`Destination::open_load`] of the same job resumes it.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoadHandle {
    /// The load id (`psystem.loads.id`).
    pub load_id: i64,
    /// The specification the load was opened with.
    pub spec: LoadSpec,
    /// The committed checkpoint position to resume the source from; `None` = start from the beginning.
    pub position: Option<serde_json::Value>,
    /// Pages, rows and bytes committed so far.
    pub counters: Counters,
    /// True when this handle continues an unfinished load rather than starting a new one.
    pub resumed: bool,
    /// The number of rows the source announced, as last committed.
    pub total_rows: Option<u64>,
    /// The staging table of a `replace` load (in the target schema); `None` for other modes.
    pub staging: Option<TableRef>,
    /// Rows that opening this load deleted: the rows the `append` loads abandoned by a restart had committed.
    pub removed_rows: u64,
}

/// The Postgres destination: a connection pool to one database whose ledger is migrated.
#[derive(Clone)]
pub struct Destination {
    pool: PgPool,
    redacted_url: String,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("url", &self.redacted_url)
            .finish_non_exhaustive()
    }
}

impl Destination {
    /// Connects to the database at `url` and creates or migrates the ledger (schema `psystem`).
    ///
    /// Errors name the URL with its password replaced by `***`.
    pub async fn connect(url: &str) -> Result<Destination, DestinationError> {
        let redacted_url = redact_url(url);
        let connect_err = |source| DestinationError::Connect {
            url: redacted_url.clone(),
            source,
        };
        let options: PgConnectOptions = url.parse().map_err(connect_err)?;
        let options = options.application_name("psystem");
        // One direct connection first: it fails fast on a wrong URL (the pool would retry until its timeout),
        // and it migrates the ledger.
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                )))
            })
            .map_err(connect_err)?;
        migrate(&mut conn).await?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        let destination = Destination {
            pool,
            redacted_url: redacted_url.clone(),
        };
        info!(url = %redacted_url, "Connected to the destination database.");
        Ok(destination)
    }

    /// Uses an existing pool (e.g. one shared with other parts of the program) and migrates the ledger.
    /// `url_for_messages` is only used in messages and is redacted again here.
    pub async fn from_pool(
        pool: PgPool,
        url_for_messages: &str,
    ) -> Result<Destination, DestinationError> {
        let redacted_url = redact_url(url_for_messages);
        let mut conn = pool
            .acquire()
            .await
            .map_err(|source| DestinationError::Connect {
                url: redacted_url.clone(),
                source,
            })?;
        migrate(&mut conn).await?;
        Ok(Destination { pool, redacted_url })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// Opens a load of `spec.job_key`.
    ///
    /// Without `restart`, the newest load of this job in a resumable state (`queued`, `running`, `paused`,
    /// `failed`) is resumed: the handle carries its checkpoint position and counters and `resumed = true`; its
    /// target table and mode must be those of `spec` ([`DestinationError::ResumeMismatch`] otherwise). With
    /// `restart`, or when there is none, every resumable load of the job is marked `cancelled` (their staging
    /// tables dropped, and the rows an `append` load had committed deleted — found by the transaction ids its
    /// pages recorded in `psystem.load_pages` — so the table ends as a clean load would leave it;
    /// [`LoadHandle::removed_rows`] counts them) and a new load row is created in state `running`. All of this is
    /// one transaction: a kill at any instant leaves the old state or the new one. When an abandoned append
    /// load's rows cannot be identified exactly, nothing changes ([`DestinationError::RestartCannotRemoveRows`]).
    ///
    /// In the same transaction the target schema and (for `append` and `merge`) table are created if missing,
    /// with a primary-key constraint when `spec.primary_key` is not empty, or an existing table is checked: it
    /// must have every column of the Arrow schema with the mapped type ([`DestinationError::SchemaMismatch`],
    /// [`DestinationError::ColumnTypeMismatch`]) and, for `merge`, a unique key on the primary-key columns. For
    /// `replace` the staging table is created.
    pub async fn open_load(
        &self,
        spec: LoadSpec,
        restart: bool,
    ) -> Result<LoadHandle, DestinationError> {
        validate_spec(&spec)?;
        let job = spec.job_key.clone();
        let table = spec.table.clone();
        let ctx = |what: &str| format!("opening the load of job `{job}` into {table}: {what}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(OPEN_LOCK_CLASS)
            .bind(&spec.job_key)
            .execute(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("lock the job")))?;

        let existing = if restart {
            None
        } else {
            let sql = format!(
                "SELECT {LOAD_COLUMNS} FROM psystem.loads l LEFT JOIN psystem.checkpoints c ON c.load_id = l.id \
                 WHERE l.job_key = $1 AND l.state = ANY($2) ORDER BY l.id DESC LIMIT 1 FOR UPDATE OF l"
            );
            let row = sqlx::query(&sql)
                .bind(&spec.job_key)
                .bind(RESUMABLE)
                .fetch_optional(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx("find an unfinished load")))?;
            row.as_ref().map(LoadRecord::from_row).transpose()?
        };

        let handle = match existing {
            Some(record) => {
                if record.source_fingerprint.is_some()
                    && spec.source_fingerprint.is_some()
                    && record.source_fingerprint != spec.source_fingerprint
                {
                    return Err(DestinationError::ResumeMismatch {
                        job_key: spec.job_key.clone(),
                        load_id: record.id,
                        detail: format!(
                            "reads {} (this run reads {}); finish it with the same options, or pass --restart",
                            record.source_fingerprint.as_deref().unwrap_or("?"),
                            spec.source_fingerprint.as_deref().unwrap_or("?")
                        ),
                    });
                }
                if record.table != spec.table || record.mode != spec.mode {
                    return Err(DestinationError::ResumeMismatch {
                        job_key: spec.job_key.clone(),
                        load_id: record.id,
                        detail: format!(
                            "loads into {} with mode {} (requested: {} with mode {})",
                            record.table, record.mode, spec.table, spec.mode
                        ),
                    });
                }
                let staging = match spec.mode {
                    LoadMode::Replace => {
                        let name = record.staging_table.clone().ok_or_else(|| {
                            DestinationError::CorruptLedger {
                                load_id: record.id,
                                detail: "a replace load without a staging table".into(),
                            }
                        })?;
                        let staging = TableRef::new(spec.table.schema.clone(), name);
                        match table_columns(&mut tx, &staging).await? {
                            Some(columns) => check_columns(&staging, &spec.schema, &columns)?,
                            None if record.counters.pages == 0 => {
                                create_table(&mut tx, &staging, &spec).await?;
                            }
                            None => {
                                return Err(DestinationError::StagingMissing {
                                    load_id: record.id,
                                    staging: staging.to_string(),
                                })
                            }
                        }
                        Some(staging)
                    }
                    LoadMode::Append | LoadMode::Merge => {
                        prepare_target(&mut tx, &spec).await?;
                        None
                    }
                };
                sqlx::query(
                    "UPDATE psystem.loads SET state = 'running', last_error = NULL, updated_at = now() WHERE id = $1",
                )
                .bind(record.id)
                .execute(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx("mark the load running")))?;
                info!(load_id = record.id, job_key = %spec.job_key, pages = record.counters.pages, rows = record.counters.rows, "Load resumed.");
                LoadHandle {
                    load_id: record.id,
                    position: record.position,
                    counters: record.counters,
                    resumed: true,
                    total_rows: record.total_rows,
                    staging,
                    removed_rows: 0,
                    spec,
                }
            }
            None => {
                let mut removed_rows = 0u64;
                let cancelled = sqlx::query(
                    "UPDATE psystem.loads SET state = 'cancelled', finished_at = now(), updated_at = now() \
                     WHERE job_key = $1 AND state = ANY($2) \
                     RETURNING id, target_schema, target_table, staging_table, mode, rows",
                )
                .bind(&spec.job_key)
                .bind(RESUMABLE)
                .fetch_all(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx("cancel the unfinished loads")))?;
                for row in &cancelled {
                    let id: i64 = row.get("id");
                    let schema: Option<String> = row.get("target_schema");
                    let staging: Option<String> = row.get("staging_table");
                    let target: Option<String> = row.get("target_table");
                    let mode: Option<String> = row.get("mode");
                    let rows: i64 = row.get("rows");
                    if let (Some(schema), Some(staging)) = (schema.clone(), staging) {
                        drop_table_if_exists(&mut tx, &TableRef::new(schema, staging)).await?;
                    }
                    if let (Some("append"), Some(schema), Some(target), true) =
                        (mode.as_deref(), schema, target, rows > 0)
                    {
                        let table = TableRef::new(schema, target);
                        let removed =
                            remove_appended_rows(&mut tx, &spec.job_key, id, &table, rows as u64)
                                .await?;
                        removed_rows += removed;
                    }
                    info!(load_id = id, job_key = %spec.job_key, "Unfinished load cancelled by a restart.");
                }

                ensure_schema(&mut tx, &spec.table.schema).await?;
                let load_id: i64 = sqlx::query_scalar(
                    "INSERT INTO psystem.loads (job_key, plugin, entry, source_kind, target_schema, target_table, mode, \
                     state, started_at, updated_at, source_fingerprint) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', now(), now(), $8) RETURNING id",
                )
                .bind(&spec.job_key)
                .bind(&spec.plugin)
                .bind(&spec.entry)
                .bind(&spec.source_kind)
                .bind(&spec.table.schema)
                .bind(&spec.table.name)
                .bind(spec.mode.as_str())
                .bind(&spec.source_fingerprint)
                .fetch_one(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx("record the load")))?;

                let staging = match spec.mode {
                    LoadMode::Replace => {
                        let staging = TableRef::new(
                            spec.table.schema.clone(),
                            ident_with_suffix(
                                &spec.table.name,
                                &format!("__psystem_load_{load_id}"),
                            ),
                        );
                        // A leftover of a lost ledger may carry the same name; it is ours to drop.
                        drop_table_if_exists(&mut tx, &staging).await?;
                        create_table(&mut tx, &staging, &spec).await?;
                        sqlx::query("UPDATE psystem.loads SET staging_table = $2 WHERE id = $1")
                            .bind(load_id)
                            .bind(&staging.name)
                            .execute(&mut *tx)
                            .await
                            .map_err(DestinationError::db(ctx("record the staging table")))?;
                        Some(staging)
                    }
                    LoadMode::Append | LoadMode::Merge => {
                        prepare_target(&mut tx, &spec).await?;
                        None
                    }
                };
                info!(load_id, job_key = %spec.job_key, table = %spec.table, mode = %spec.mode, "Load started.");
                LoadHandle {
                    load_id,
                    position: None,
                    counters: Counters::default(),
                    resumed: false,
                    total_rows: None,
                    staging,
                    removed_rows,
                    spec,
                }
            }
        };
        tx.commit()
            .await
            .map_err(DestinationError::db(ctx("commit")))?;
        Ok(handle)
    }

    /// Commits one page in one transaction: the rows of `batch` (per the load mode), the checkpoint `position`
    /// that follows them, and the load's counters (pages + 1, rows + `batch.num_rows()`, bytes + `page_bytes`,
    /// `total_rows` when given). `load.position` and `load.counters` change only once the commit succeeded.
    ///
    /// A zero-row batch still commits the checkpoint. The batch must have the load's schema
    /// ([`DestinationError::BatchSchemaMismatch`]); the load must still be `running` in the ledger
    /// ([`DestinationError::LoadNotActive`] when another process cancelled or restarted it), and the handle must
    /// know every page committed so far ([`DestinationError::StaleHandle`] when pages were committed through
    /// another handle of the same load). On any error nothing of the page is committed.
    ///
    /// When the commit's answer is lost (the connection drops during `COMMIT`), the page may or may not be
    /// committed: do not retry with the same handle, open the load again — the ledger is the truth, and the
    /// handle's page count makes a blind retry fail with [`DestinationError::StaleHandle`] instead of writing the
    /// page twice.
    pub async fn commit_page(
        &self,
        load: &mut LoadHandle,
        batch: &RecordBatch,
        position: serde_json::Value,
        page_bytes: u64,
        total_rows: Option<u64>,
    ) -> Result<(), DestinationError> {
        self.commit_page_with(
            load,
            batch,
            position,
            page_bytes,
            total_rows,
            &PageExtras::default(),
        )
        .await
        .map(|_| ())
    }

    /// [`Destination::commit_page`] with the ID cache columns of [`LoadSpec::ids`] added inside the transaction and
    /// the page's run metrics recorded in it (`psystem.run_metrics`). `batch` has the schema *before* the ID
    /// columns; returns what the ID cache did.
    ///
    /// # Errors
    /// As [`Destination::commit_page`], plus the ID cache's errors
    /// ([`DestinationError::UnresolvedReferences`], [`DestinationError::KeyDefinitionChanged`], …).
    pub async fn commit_page_with(
        &self,
        load: &mut LoadHandle,
        batch: &RecordBatch,
        position: serde_json::Value,
        page_bytes: u64,
        total_rows: Option<u64>,
        extras: &PageExtras,
    ) -> Result<IdReport, DestinationError> {
        let started = std::time::Instant::now();
        if load.spec.ids.is_none() {
            check_batch_schema(&load.spec, batch.schema_ref())?;
        }
        let load_id = load.load_id;
        let spec = &load.spec;
        let page = load.counters.pages + 1;
        let ctx = |what: &str| {
            format!(
                "committing page {page} of load #{load_id} into {}: {what}",
                spec.table
            )
        };
        let rows = batch.num_rows() as u64;
        let page_bytes_i64 = to_i64(page_bytes, "page_bytes", &spec.job_key)?;
        let total_rows_i64 = total_rows
            .map(|t| to_i64(t, "total_rows", &spec.job_key))
            .transpose()?;

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        lock_running_load(&mut tx, load).await?;
        if spec.mode != LoadMode::Replace {
            // Append and merge write the table itself: wait for it a bounded time (another session may hold it).
            crate::locks::lock_table(
                &mut tx,
                &self.pool,
                &spec.table,
                crate::locks::TableLock::RowExclusive,
            )
            .await?;
        }

        let mut report = IdReport::default();
        let with_ids;
        let batch = match &spec.ids {
            Some(plan) => {
                plan.register(&mut tx).await?;
                let (b, r) = plan.apply(&mut tx, batch, load_id).await?;
                report = r;
                check_batch_schema(spec, b.schema_ref())?;
                with_ids = b;
                &with_ids
            }
            None => batch,
        };
        let encoder = CopyEncoder::new(batch)?;
        let columns = column_list(&spec.schema);
        match spec.mode {
            LoadMode::Append => {
                let sql = format!(
                    "COPY {} ({columns}) FROM STDIN (FORMAT binary)",
                    quote_table(&spec.table)
                );
                copy_in(&mut tx, &sql, &encoder, &ctx("COPY")).await?;
                // Which transaction wrote these rows: a restart deletes them by their xmin.
                if rows > 0 {
                    sqlx::query(
                        "INSERT INTO psystem.load_pages (load_id, page, xid, rows) VALUES ($1, $2, txid_current(), $3)",
                    )
                    .bind(load_id)
                    .bind(page as i64)
                    .bind(rows as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(DestinationError::db(ctx("record the page's transaction")))?;
                }
            }
            LoadMode::Replace => {
                let staging =
                    load.staging
                        .as_ref()
                        .ok_or_else(|| DestinationError::CorruptLedger {
                            load_id,
                            detail: "a replace load without a staging table".into(),
                        })?;
                let sql = format!(
                    "COPY {} ({columns}) FROM STDIN (FORMAT binary)",
                    quote_table(staging)
                );
                copy_in(&mut tx, &sql, &encoder, &ctx("COPY into the staging table")).await?;
            }
            LoadMode::Merge => {
                let ord = ordinal_column(&spec.schema);
                let mut defs = column_defs(&spec.schema)?;
                defs.push(format!(
                    "{} bigint GENERATED ALWAYS AS IDENTITY",
                    quote_ident(&ord)
                ));
                let create = format!(
                    "CREATE TEMP TABLE {MERGE_TEMP_TABLE} ({}) ON COMMIT DROP",
                    defs.join(", ")
                );
                (&mut *tx)
                    .execute(create.as_str())
                    .await
                    .map_err(DestinationError::db(ctx("create the merge table")))?;
                let sql = format!(
                    "COPY pg_temp.{MERGE_TEMP_TABLE} ({columns}) FROM STDIN (FORMAT binary)"
                );
                copy_in(&mut tx, &sql, &encoder, &ctx("COPY into the merge table")).await?;
                let upsert = merge_sql(spec, &ord);
                let merged = (&mut *tx)
                    .execute(upsert.as_str())
                    .await
                    .map_err(DestinationError::db(ctx("merge by primary key")))?;
                debug!(
                    load_id,
                    rows_changed = merged.rows_affected(),
                    "Page merged."
                );
            }
        }

        let mut phase_ms = extras.phase_ms.clone();
        *phase_ms.entry("load".to_string()).or_default() += started.elapsed().as_millis() as u64;
        crate::metrics::record_page(
            &mut tx,
            load_id,
            &crate::metrics::PageMetrics {
                rows_read: extras.rows_read.unwrap_or(rows),
                rows_written: rows,
                rows_rejected: extras.rows_rejected,
                bytes: page_bytes,
                phase_ms,
                nulls: crate::metrics::page_metrics_nulls(batch),
            },
        )
        .await?;
        sqlx::query(
            "INSERT INTO psystem.checkpoints (load_id, position, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (load_id) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at",
        )
        .bind(load_id)
        .bind(Json(&position))
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("write the checkpoint")))?;
        let row = sqlx::query(
            "UPDATE psystem.loads SET pages = pages + 1, rows = rows + $2, bytes = bytes + $3, \
             total_rows = COALESCE($4, total_rows), updated_at = now() WHERE id = $1 \
             RETURNING pages, rows, bytes, total_rows",
        )
        .bind(load_id)
        .bind(rows as i64)
        .bind(page_bytes_i64)
        .bind(total_rows_i64)
        .fetch_one(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("update the counters")))?;
        tx.commit()
            .await
            .map_err(DestinationError::db(ctx("commit")))?;

        let as_u64 = |v: i64| v.max(0) as u64;
        load.counters = Counters {
            pages: as_u64(row.get("pages")),
            rows: as_u64(row.get("rows")),
            bytes: as_u64(row.get("bytes")),
        };
        load.total_rows = row.get::<Option<i64>, _>("total_rows").map(as_u64);
        load.position = Some(position);
        debug!(
            load_id,
            page = load.counters.pages,
            rows,
            total = load.counters.rows,
            "Page committed."
        );
        Ok(report)
    }

    /// Completes a load. For `replace`, in one transaction the old target table (if any) is dropped and the
    /// staging table renamed to the target name; for all modes the load becomes `completed` with `finished_at`.
    pub async fn finish_load(&self, load: &mut LoadHandle) -> Result<(), DestinationError> {
        let load_id = load.load_id;
        let spec = &load.spec;
        let ctx = |what: &str| format!("finishing load #{load_id} into {}: {what}", spec.table);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        lock_running_load(&mut tx, load).await?;
        if spec.mode == LoadMode::Replace {
            let staging = load
                .staging
                .as_ref()
                .ok_or_else(|| DestinationError::CorruptLedger {
                    load_id,
                    detail: "a replace load without a staging table".into(),
                })?;
            if table_oid_exists(&mut tx, staging).await?.is_none() {
                return Err(DestinationError::StagingMissing {
                    load_id,
                    staging: staging.to_string(),
                });
            }
            crate::locks::lock_table(
                &mut tx,
                &self.pool,
                &spec.table,
                crate::locks::TableLock::AccessExclusive,
            )
            .await?;
            drop_table_if_exists(&mut tx, &spec.table).await?;
            let rename = format!(
                "ALTER TABLE {} RENAME TO {}",
                quote_table(staging),
                quote_ident(&spec.table.name)
            );
            (&mut *tx)
                .execute(rename.as_str())
                .await
                .map_err(DestinationError::db(ctx("rename the staging table")))?;
            rename_primary_key(&mut tx, &spec.table).await?;
        }
        if spec.mode == LoadMode::Append {
            sqlx::query("DELETE FROM psystem.load_pages WHERE load_id = $1")
                .bind(load_id)
                .execute(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx("forget the page transactions")))?;
        }
        sqlx::query(
            "UPDATE psystem.loads SET state = 'completed', finished_at = now(), updated_at = now(), last_error = NULL WHERE id = $1",
        )
        .bind(load_id)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("mark the load completed")))?;
        tx.commit()
            .await
            .map_err(DestinationError::db(ctx("commit")))?;
        info!(load_id, table = %spec.table, rows = load.counters.rows, pages = load.counters.pages, "Load completed.");
        Ok(())
    }

    /// Records the state of a load (e.g. `paused`, `failed` with its error, `cancelled`), with `last_error`
    /// (`None` clears it). `completed` and `cancelled` set `finished_at`; `cancelled` also drops the staging
    /// table of a `replace` load. To complete a load use [`Destination::finish_load`], which also swaps in a
    /// `replace` table. `last_error` must not contain secrets (it is stored in the ledger).
    pub async fn set_state(
        &self,
        load_id: i64,
        state: JobState,
        last_error: Option<&str>,
    ) -> Result<(), DestinationError> {
        let ctx = |what: &str| format!("setting load #{load_id} to {state}: {what}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        let row = sqlx::query(
            "UPDATE psystem.loads SET state = $2, last_error = $3, updated_at = now(), \
             finished_at = CASE WHEN $2 IN ('completed', 'cancelled') THEN now() ELSE NULL END \
             WHERE id = $1 RETURNING target_schema, staging_table",
        )
        .bind(load_id)
        .bind(state.as_str())
        .bind(last_error)
        .fetch_optional(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("update")))?
        .ok_or(DestinationError::LoadNotFound { load_id })?;
        if state == JobState::Cancelled {
            let schema: Option<String> = row.get("target_schema");
            let staging: Option<String> = row.get("staging_table");
            if let (Some(schema), Some(staging)) = (schema, staging) {
                drop_table_if_exists(&mut tx, &TableRef::new(schema, staging)).await?;
            }
        }
        tx.commit()
            .await
            .map_err(DestinationError::db(ctx("commit")))?;
        debug!(load_id, %state, "Load state recorded.");
        Ok(())
    }

    /// The ledger row of a load with its checkpoint position, `None` when there is no such load.
    pub async fn load_by_id(&self, id: i64) -> Result<Option<LoadRecord>, DestinationError> {
        let sql = format!(
            "SELECT {LOAD_COLUMNS} FROM psystem.loads l LEFT JOIN psystem.checkpoints c ON c.load_id = l.id WHERE l.id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(DestinationError::db(format!(
                "reading load #{id} from the ledger"
            )))?;
        row.as_ref().map(LoadRecord::from_row).transpose()
    }

    /// The newest completed load of `job_key` that read `source_fingerprint` into `table`, if any: what the
    /// compare loop skips (unless the user forces a reload).
    ///
    /// # Errors
    /// [`DestinationError::Database`].
    pub async fn last_completed(
        &self,
        job_key: &str,
        source_fingerprint: &str,
        table: &TableRef,
    ) -> Result<Option<LoadRecord>, DestinationError> {
        let sql = format!(
            "SELECT {LOAD_COLUMNS} FROM psystem.loads l LEFT JOIN psystem.checkpoints c ON c.load_id = l.id \
             WHERE l.job_key = $1 AND l.source_fingerprint = $2 AND l.state = 'completed' \
             AND l.target_schema = $3 AND l.target_table = $4 ORDER BY l.id DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(job_key)
            .bind(source_fingerprint)
            .bind(&table.schema)
            .bind(&table.name)
            .fetch_optional(&self.pool)
            .await
            .map_err(DestinationError::db(
                "looking up completed loads in the ledger",
            ))?;
        let Some(record) = row.as_ref().map(LoadRecord::from_row).transpose()? else {
            return Ok(None);
        };
        // The table must still exist: a dropped table is loaded again.
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(quote_table(table))
            .fetch_one(&self.pool)
            .await
            .map_err(DestinationError::db("checking the destination table"))?;
        Ok(exists.then_some(record))
    }

    /// Second pass for deferred references: fills `plan.out_column` where it is null but the reference columns are
    /// not, from the ID cache, in one transaction. Returns the keystrings that are still unresolved.
    ///
    /// # Errors
    /// [`DestinationError::Database`].
    pub async fn resolve_deferred(
        &self,
        table: &TableRef,
        target: &crate::CacheTarget,
        plan: &crate::ReferencePlan,
    ) -> Result<Vec<String>, DestinationError> {
        let ctx = |what: &str| format!("resolving {} in {table}: {what}", plan.out_column);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        let cols: Vec<String> = plan
            .columns
            .iter()
            .map(|c| format!("{}::text", quote_ident(c)))
            .collect();
        let not_all_null = plan
            .columns
            .iter()
            .map(|c| format!("{} IS NOT NULL", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!(
            "SELECT ctid::text AS ctid, ARRAY[{}] AS parts FROM {} WHERE {} IS NULL AND ({not_all_null})",
            cols.join(", "),
            quote_table(table),
            quote_ident(&plan.out_column)
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("read")))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut ctids = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let parts: Vec<Option<String>> = row.get("parts");
            let refs: Vec<Option<&str>> = parts.iter().map(|p| p.as_deref()).collect();
            ctids.push(row.get::<String, _>("ctid"));
            keys.push(psystem_core::unique_key::keystring(&refs));
        }
        let ids = crate::idcache::lookup(&mut tx, target, &plan.entity, &keys).await?;
        let mut upd_ctids = Vec::new();
        let mut upd_ids = Vec::new();
        let mut missing = Vec::new();
        for ((ctid, key), id) in ctids.into_iter().zip(keys).zip(ids) {
            match id {
                Some(id) => {
                    upd_ctids.push(ctid);
                    upd_ids.push(id);
                }
                None => missing.push(key),
            }
        }
        let sql = format!(
            "UPDATE {} t SET {} = v.id FROM unnest($1::text[], $2::text[]) AS v(ctid, id) WHERE t.ctid = v.ctid::tid",
            quote_table(table),
            quote_ident(&plan.out_column)
        );
        sqlx::query(&sql)
            .bind(&upd_ctids)
            .bind(&upd_ids)
            .execute(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("update")))?;
        tx.commit()
            .await
            .map_err(DestinationError::db(ctx("commit")))?;
        missing.sort();
        missing.dedup();
        Ok(missing)
    }

    /// The newest loads (highest id first), of one job or of all, at most `limit`.
    pub async fn loads(
        &self,
        job_key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LoadRecord>, DestinationError> {
        let sql = format!(
            "SELECT {LOAD_COLUMNS} FROM psystem.loads l LEFT JOIN psystem.checkpoints c ON c.load_id = l.id \
             WHERE ($1::text IS NULL OR l.job_key = $1) ORDER BY l.id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(job_key)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(DestinationError::db("listing loads from the ledger"))?;
        rows.iter().map(LoadRecord::from_row).collect()
    }

    /// Tries to become the one process that runs `job_key`: takes a session-level advisory lock (keyed by
    /// `hashtext(job_key)`) on a dedicated connection outside the pool, held by the returned [`JobLock`].
    ///
    /// `None` when another session (another process, or another [`JobLock`] here) holds it. The lock is
    /// released by [`JobLock::release`], when the [`JobLock`] is dropped, or by the server when the process
    /// dies. Two job keys with the same 32-bit hash share a lock (they then never run at the same time).
    pub async fn try_lock_job(&self, job_key: &str) -> Result<Option<JobLock>, DestinationError> {
        let ctx = || format!("locking job `{job_key}`");
        let mut conn = PgConnection::connect_with(&self.pool.connect_options())
            .await
            .map_err(|source| DestinationError::Connect {
                url: self.redacted_url.clone(),
                source,
            })?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(JOB_LOCK_CLASS)
            .bind(job_key)
            .fetch_one(&mut conn)
            .await
            .map_err(DestinationError::db(ctx()))?;
        if got {
            debug!(job_key, "Job lock taken.");
            Ok(Some(JobLock {
                conn: Some(conn),
                job_key: job_key.to_string(),
            }))
        } else {
            let _ = conn.close().await;
            debug!(job_key, "Job lock held by another session.");
            Ok(None)
        }
    }

    /// Up to `limit` rows of a table, ordered by its first column, for showing people what was loaded.
    /// A missing table gives an empty preview.
    ///
    /// # Errors
    /// [`DestinationError::Database`].
    pub async fn preview(
        &self,
        table: &TableRef,
        limit: i64,
    ) -> Result<TablePreview, DestinationError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(DestinationError::db(format!("previewing {table}")))?;
        let Some(columns) = table_columns(&mut conn, table).await? else {
            return Ok(TablePreview::default());
        };
        let names: Vec<String> = columns.iter().map(|(name, _)| name.clone()).collect();
        let order = names
            .first()
            .map(|name| format!("ORDER BY t.{}", quote_ident(name)))
            .unwrap_or_default();
        // A JSON array per row keeps the table's column order (jsonb objects would sort the keys).
        let sql = format!(
            "SELECT json_build_array({})::text FROM {} AS t {order} LIMIT $1",
            names
                .iter()
                .map(|n| format!("t.{}", quote_ident(n)))
                .collect::<Vec<_>>()
                .join(", "),
            quote_table(table)
        );
        let rows: Vec<String> = sqlx::query_scalar(&sql)
            .bind(limit.max(0))
            .persistent(false)
            .fetch_all(&mut *conn)
            .await
            .map_err(DestinationError::db(format!("previewing {table}")))?;
        let rows = rows
            .iter()
            .map(|r| match serde_json::from_str(r) {
                Ok(serde_json::Value::Array(values)) => values,
                _ => Vec::new(),
            })
            .collect();
        Ok(TablePreview {
            columns: names,
            rows,
        })
    }

    /// Closes the pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Proof that this process runs a job: holds a session advisory lock on a dedicated connection.
///
/// Dropping it releases the lock (the connection is closed in the background, or at once outside a tokio
/// runtime); [`JobLock::release`] releases it before returning.
pub struct JobLock {
    conn: Option<PgConnection>,
    job_key: String,
}

impl fmt::Debug for JobLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobLock")
            .field("job_key", &self.job_key)
            .finish_non_exhaustive()
    }
}

impl JobLock {
    /// The job key this lock is for.
    pub fn job_key(&self) -> &str {
        &self.job_key
    }

    /// Checks that the lock's connection is alive (so that the lock is still held); an error means the
    /// server dropped the session and another process may take the job.
    pub async fn check(&mut self) -> Result<(), DestinationError> {
        let conn = self.conn.as_mut().expect("JobLock used after release");
        conn.ping().await.map_err(DestinationError::db(format!(
            "checking the lock of job `{}`",
            self.job_key
        )))
    }

    /// Releases the lock and closes its connection; when this returns, other sessions can take the job.
    pub async fn release(mut self) -> Result<(), DestinationError> {
        let mut conn = self.conn.take().expect("JobLock released twice");
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(JOB_LOCK_CLASS)
            .bind(&self.job_key)
            .execute(&mut conn)
            .await
            .map_err(DestinationError::db(format!(
                "unlocking job `{}`",
                self.job_key
            )));
        let _ = conn.close().await;
        debug!(job_key = %self.job_key, "Job lock released.");
        unlock.map(|_| ())
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            debug!(job_key = %self.job_key, "Job lock dropped.");
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        let _ = conn.close().await;
                    });
                }
                // Dropping the connection closes its socket; the server then ends the session and its locks.
                Err(_) => drop(conn),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

fn validate_spec(spec: &LoadSpec) -> Result<(), DestinationError> {
    validate_table_spec(&spec.job_key, &spec.table, &spec.schema, &spec.primary_key)?;
    if spec.mode == LoadMode::Merge && spec.primary_key.is_empty() {
        return Err(DestinationError::InvalidSpec {
            job_key: spec.job_key.clone(),
            message: "mode `merge` needs a primary key (destination.primary_key)".into(),
        });
    }
    Ok(())
}

/// The checks every load spec shares: a job key, valid identifiers, at least one column, each column named once
/// with a PostgreSQL type, and primary-key columns that exist and are listed once.
///
/// # Errors
/// [`DestinationError::InvalidSpec`], [`DestinationError::InvalidIdentifier`], the type mapping's errors.
pub(crate) fn validate_table_spec(
    job_key: &str,
    table: &TableRef,
    schema: &Schema,
    primary_key: &[String],
) -> Result<(), DestinationError> {
    let invalid = |message: String| DestinationError::InvalidSpec {
        job_key: job_key.to_string(),
        message,
    };
    if job_key.is_empty() {
        return Err(invalid("the job key is empty".into()));
    }
    check_ident(&table.schema)?;
    check_ident(&table.name)?;
    if schema.fields().is_empty() {
        return Err(invalid("the schema has no columns".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for field in schema.fields() {
        check_ident(field.name())?;
        pg_type(field)?;
        if !seen.insert(field.name().as_str()) {
            return Err(invalid(format!(
                "the column `{}` appears twice in the schema",
                field.name()
            )));
        }
    }
    let mut pk_seen = std::collections::HashSet::new();
    for key in primary_key {
        if !seen.contains(key.as_str()) {
            return Err(invalid(format!(
                "the primary-key column `{key}` is not in the schema"
            )));
        }
        if !pk_seen.insert(key.as_str()) {
            return Err(invalid(format!(
                "the primary-key column `{key}` is listed twice"
            )));
        }
    }
    Ok(())
}

fn check_batch_schema(spec: &LoadSpec, schema: &Schema) -> Result<(), DestinationError> {
    let mismatch = |detail: String| DestinationError::BatchSchemaMismatch {
        table: spec.table.to_string(),
        detail,
    };
    let expected = spec.schema.fields();
    let got = schema.fields();
    if expected.len() != got.len() {
        return Err(mismatch(format!(
            "it has {} columns, the load has {}",
            got.len(),
            expected.len()
        )));
    }
    for (e, g) in expected.iter().zip(got.iter()) {
        if e.name() != g.name() || e.data_type() != g.data_type() {
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

fn to_i64(v: u64, what: &str, job_key: &str) -> Result<i64, DestinationError> {
    i64::try_from(v).map_err(|_| DestinationError::InvalidSpec {
        job_key: job_key.to_string(),
        message: format!("{what} = {v} does not fit the ledger's bigint"),
    })
}

/// `"a", "b", …` for the columns of the schema.
pub(crate) fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| quote_ident(f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"a" bigint`, … for the columns of the schema.
pub(crate) fn column_defs(schema: &Schema) -> Result<Vec<String>, DestinationError> {
    schema
        .fields()
        .iter()
        .map(|f| Ok(format!("{} {}", quote_ident(f.name()), pg_type(f)?)))
        .collect()
}

/// A column name for the row order in the merge table that no data column has.
fn ordinal_column(schema: &Schema) -> String {
    let mut name = "psystem__page_row".to_string();
    while schema.fields().iter().any(|f| f.name() == &name) {
        name.push('_');
    }
    name
}

/// The `INSERT … ON CONFLICT` statement that merges the page table into the target (last row per key wins).
fn merge_sql(spec: &LoadSpec, ord: &str) -> String {
    let columns = column_list(&spec.schema);
    let pk = spec
        .primary_key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let others: Vec<String> = spec
        .schema
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|n| !spec.primary_key.contains(n))
        .map(|n| quote_ident(n))
        .collect();
    let action = if others.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let sets = others
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let old = others
            .iter()
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let new = others
            .iter()
            .map(|c| format!("EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // ROW(…) keeps a single column a row constructor, so IS DISTINCT FROM compares values with NULLs.
        format!("DO UPDATE SET {sets} WHERE ROW({old}) IS DISTINCT FROM ROW({new})")
    };
    format!(
        "INSERT INTO {target} AS t ({columns}) SELECT DISTINCT ON ({pk}) {columns} FROM pg_temp.{MERGE_TEMP_TABLE} \
         ORDER BY {pk}, {ord} DESC ON CONFLICT ({pk}) {action}",
        target = quote_table(&spec.table),
        ord = quote_ident(ord),
    )
}

/// Streams the rows of `encoder` into `COPY … FROM STDIN (FORMAT binary)` in chunks of about 1 MiB. On any
/// error the COPY is aborted (the caller's transaction then rolls back).
pub(crate) async fn copy_in(
    conn: &mut PgConnection,
    sql: &str,
    encoder: &CopyEncoder<'_>,
    context: &str,
) -> Result<u64, DestinationError> {
    let mut copy = conn
        .copy_in_raw(sql)
        .await
        .map_err(DestinationError::db(context))?;
    let mut buf = BytesMut::with_capacity(COPY_CHUNK + COPY_CHUNK / 4);
    CopyEncoder::write_header(&mut buf);
    for row in 0..encoder.num_rows() {
        if let Err(e) = encoder.write_row(row, &mut buf) {
            if let Err(abort) = copy.abort(e.to_string()).await {
                warn!(error = %abort, "Aborting the COPY failed.");
            }
            return Err(e);
        }
        if buf.len() >= COPY_CHUNK {
            let sent = copy.send(&buf[..]).await.map(|_| ());
            if let Err(source) = sent {
                let _ = copy.abort("psystem: sending COPY data failed").await;
                return Err(DestinationError::from_server(context.to_string(), source));
            }
            buf.clear();
        }
    }
    CopyEncoder::write_trailer(&mut buf);
    let sent = copy.send(&buf[..]).await.map(|_| ());
    if let Err(source) = sent {
        let _ = copy.abort("psystem: sending COPY data failed").await;
        return Err(DestinationError::from_server(context.to_string(), source));
    }
    copy.finish().await.map_err(DestinationError::db(context))
}

/// Deletes, inside the caller's transaction, the rows that the abandoned `append` load `load_id` committed to
/// `table` (`rows` of them, per the ledger), found by the transaction ids its pages recorded in
/// `psystem.load_pages` (the rows' `xmin`). Returns the rows deleted; a table that no longer exists holds none.
///
/// # Errors
/// [`DestinationError::RestartCannotRemoveRows`] when the rows cannot be identified exactly: pages committed
/// before psystem recorded their transactions, transactions too old to be told apart from newer ones (2^31), or
/// a table that no longer holds exactly those rows (changed or deleted since). The caller's transaction must
/// then roll back, so nothing changes.
pub(crate) async fn remove_appended_rows(
    conn: &mut PgConnection,
    job_key: &str,
    load_id: i64,
    table: &TableRef,
    rows: u64,
) -> Result<u64, DestinationError> {
    if table_oid_exists(conn, table).await?.is_none() {
        info!(load_id, %table, "The table of the abandoned load no longer exists; no rows to remove.");
        return Ok(0);
    }
    let refuse = |reason: String| DestinationError::RestartCannotRemoveRows {
        job_key: job_key.to_string(),
        load_id,
        table: table.to_string(),
        rows,
        reason,
    };
    let ctx = format!("removing the rows load #{load_id} appended to {table}");
    let row = sqlx::query(
        "SELECT COALESCE(array_agg(xid % 4294967296), '{}') AS xids, COALESCE(sum(rows), 0)::bigint AS rows, \
         COALESCE(max(txid_current() - xid), 0)::bigint AS age FROM psystem.load_pages WHERE load_id = $1",
    )
    .bind(load_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx.clone()))?;
    let xids: Vec<i64> = row.get("xids");
    let recorded: i64 = row.get("rows");
    let age: i64 = row.get("age");
    if recorded.max(0) as u64 != rows {
        return Err(refuse(format!(
            "the ledger knows the transactions of {recorded} of them: the load began under an older psystem"
        )));
    }
    if age >= 1 << 31 {
        return Err(refuse(
            "they were written more than 2^31 transactions ago, so their transaction ids may have been reused".into(),
        ));
    }
    let sql = format!(
        "DELETE FROM {} WHERE xmin::text::bigint = ANY($1)",
        quote_table(table)
    );
    let deleted = sqlx::query(&sql)
        .bind(&xids)
        .execute(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx))?
        .rows_affected();
    if deleted != rows {
        return Err(refuse(format!(
            "the table now holds {deleted} of them; the others were changed or deleted since"
        )));
    }
    info!(load_id, %table, rows = deleted, "Rows of the abandoned load removed.");
    Ok(deleted)
}

/// Locks the load row for the transaction and checks that the load is `running` and that the handle knows
/// all its committed pages (so that a page is never written twice through two handles).
async fn lock_running_load(
    conn: &mut PgConnection,
    load: &LoadHandle,
) -> Result<(), DestinationError> {
    let load_id = load.load_id;
    let row = sqlx::query("SELECT state, pages FROM psystem.loads WHERE id = $1 FOR UPDATE")
        .bind(load_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(DestinationError::db(format!(
            "locking load #{load_id} in the ledger"
        )))?
        .ok_or(DestinationError::LoadNotFound { load_id })?;
    crate::ledger::require_running(load_id, row.get("state"))?;
    let pages: i64 = row.get("pages");
    if pages.max(0) as u64 != load.counters.pages {
        return Err(DestinationError::StaleHandle {
            load_id,
            expected: load.counters.pages,
            found: pages.max(0) as u64,
        });
    }
    Ok(())
}

/// Creates the schema unless it exists (checked first: `CREATE SCHEMA IF NOT EXISTS` needs the right to
/// create schemas even when the schema is there).
pub(crate) async fn ensure_schema(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<(), DestinationError> {
    use sqlx::Connection as _;
    let ctx = || format!("creating schema `{schema}`");
    // CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent creator (two datasets of one run opening
    // their loads at once): the second fails on pg_namespace's unique index. A transaction-level advisory lock
    // per schema name serialises the check and the creation until the creator commits; `begin` is a savepoint
    // when the caller is inside a transaction already, so the lock then lasts until the caller commits.
    let mut tx = conn.begin().await.map_err(DestinationError::db(ctx()))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('psystem: create schema'), hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx()))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *tx)
            .await
            .map_err(DestinationError::db(format!(
                "looking up schema `{schema}`"
            )))?;
    if !exists {
        let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema));
        (&mut *tx)
            .execute(sql.as_str())
            .await
            .map_err(DestinationError::db(ctx()))?;
        info!(schema, "Schema created.");
    }
    tx.commit().await.map_err(DestinationError::db(ctx()))?;
    Ok(())
}

/// Creates the target table if missing, otherwise checks its columns (and, for `merge`, its unique key).
async fn prepare_target(conn: &mut PgConnection, spec: &LoadSpec) -> Result<(), DestinationError> {
    ensure_schema(conn, &spec.table.schema).await?;
    match table_columns(conn, &spec.table).await? {
        None => create_table(conn, &spec.table, spec).await?,
        Some(columns) => {
            check_columns(&spec.table, &spec.schema, &columns)?;
            if spec.mode == LoadMode::Merge
                && !has_unique_key(conn, &spec.table, &spec.primary_key).await?
            {
                return Err(DestinationError::MissingUniqueKey {
                    table: spec.table.to_string(),
                    columns: spec.primary_key.clone(),
                });
            }
        }
    }
    Ok(())
}

async fn create_table(
    conn: &mut PgConnection,
    table: &TableRef,
    spec: &LoadSpec,
) -> Result<(), DestinationError> {
    let mut defs = column_defs(&spec.schema)?;
    if !spec.primary_key.is_empty() {
        let pk = spec
            .primary_key
            .iter()
            .map(|k| quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ");
        defs.push(format!("PRIMARY KEY ({pk})"));
    }
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote_table(table),
        defs.join(", ")
    );
    (&mut *conn)
        .execute(sql.as_str())
        .await
        .map_err(DestinationError::db(format!("creating table {table}")))?;
    info!(%table, "Table created.");
    Ok(())
}

pub(crate) async fn drop_table_if_exists(
    conn: &mut PgConnection,
    table: &TableRef,
) -> Result<(), DestinationError> {
    let sql = format!("DROP TABLE IF EXISTS {}", quote_table(table));
    (&mut *conn)
        .execute(sql.as_str())
        .await
        .map_err(DestinationError::db(format!("dropping table {table}")))?;
    Ok(())
}

pub(crate) async fn table_oid_exists(
    conn: &mut PgConnection,
    table: &TableRef,
) -> Result<Option<i64>, DestinationError> {
    sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
        .bind(quote_table(table))
        .fetch_one(&mut *conn)
        .await
        .map_err(DestinationError::db(format!("looking up table {table}")))
}

/// The columns (name, `format_type`) of a table, `None` when it does not exist.
pub(crate) async fn table_columns(
    conn: &mut PgConnection,
    table: &TableRef,
) -> Result<Option<Vec<(String, String)>>, DestinationError> {
    if table_oid_exists(conn, table).await?.is_none() {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT a.attname::text AS name, format_type(a.atttypid, NULL) AS type FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(quote_table(table))
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(format!("reading the columns of {table}")))?;
    Ok(Some(
        rows.iter()
            .map(|r| (r.get("name"), r.get("type")))
            .collect(),
    ))
}

fn check_columns(
    table: &TableRef,
    schema: &Schema,
    columns: &[(String, String)],
) -> Result<(), DestinationError> {
    let mut missing = Vec::new();
    for field in schema.fields() {
        match columns.iter().find(|(name, _)| name == field.name()) {
            None => missing.push(field.name().clone()),
            Some((_, found)) => {
                let expected = pg_type(field)?;
                let expected_catalog = catalog_type_name(expected);
                if !compatible(expected_catalog, found) {
                    return Err(DestinationError::ColumnTypeMismatch {
                        table: table.to_string(),
                        column: field.name().clone(),
                        expected: expected.to_string(),
                        found: found.clone(),
                    });
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DestinationError::SchemaMismatch {
            table: table.to_string(),
            missing,
        })
    }
}

/// Whether the table has a primary key or an immediate, non-partial unique index on exactly `keys`.
pub(crate) async fn has_unique_key(
    conn: &mut PgConnection,
    table: &TableRef,
    keys: &[String],
) -> Result<bool, DestinationError> {
    let mut sorted: Vec<String> = keys.to_vec();
    sorted.sort();
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique \
         AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnatts = i.indnkeyatts \
         AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text COLLATE \"C\") FROM pg_attribute a \
              WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])) = $2::text[])",
    )
    .bind(quote_table(table))
    .bind(&sorted)
    .fetch_one(&mut *conn)
    .await
    .map_err(DestinationError::db(format!("reading the unique keys of {table}")))
}

/// After a swap, renames the primary-key constraint inherited from the staging table to `<table>_pkey`
/// (unless that name is taken).
async fn rename_primary_key(
    conn: &mut PgConnection,
    table: &TableRef,
) -> Result<(), DestinationError> {
    let current: Option<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'",
    )
    .bind(quote_table(table))
    .fetch_optional(&mut *conn)
    .await
    .map_err(DestinationError::db(format!("reading the primary key of {table}")))?;
    let Some(current) = current else {
        return Ok(());
    };
    let wanted = ident_with_suffix(&table.name, "_pkey");
    if current == wanted
        || table_oid_exists(conn, &TableRef::new(table.schema.clone(), wanted.clone()))
            .await?
            .is_some()
    {
        return Ok(());
    }
    let sql = format!(
        "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
        quote_table(table),
        quote_ident(&current),
        quote_ident(&wanted)
    );
    (&mut *conn)
        .execute(sql.as_str())
        .await
        .map_err(DestinationError::db(format!(
            "renaming the primary key of {table}"
        )))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field};
    use std::sync::Arc;

    fn spec(mode: LoadMode, pk: &[&str]) -> LoadSpec {
        LoadSpec {
            job_key: "j".into(),
            plugin: "p".into(),
            entry: "e".into(),
            source_kind: "files".into(),
            table: TableRef::new("public", "T"),
            mode,
            primary_key: pk.iter().map(|s| s.to_string()).collect(),
            schema: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("v", DataType::Utf8, true),
            ])),
            source_fingerprint: None,
            ids: None,
        }
    }

    #[test]
    fn merge_needs_a_primary_key_in_the_schema() {
        assert!(validate_spec(&spec(LoadMode::Merge, &[])).is_err());
        assert!(validate_spec(&spec(LoadMode::Merge, &["nope"])).is_err());
        assert!(validate_spec(&spec(LoadMode::Merge, &["id"])).is_ok());
        assert!(validate_spec(&spec(LoadMode::Append, &[])).is_ok());
    }

    #[test]
    fn merge_sql_quotes_and_keeps_the_last_row() {
        let sql = merge_sql(&spec(LoadMode::Merge, &["id"]), "psystem__page_row");
        assert!(sql.contains("INSERT INTO \"public\".\"T\" AS t"), "{sql}");
        assert!(
            sql.contains("ORDER BY \"id\", \"psystem__page_row\" DESC"),
            "{sql}"
        );
        assert!(
            sql.contains("DO UPDATE SET \"v\" = EXCLUDED.\"v\""),
            "{sql}"
        );
    }
}
