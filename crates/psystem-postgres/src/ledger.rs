//! The ledger: psystem's own tables in schema `psystem` of the destination database.
//!
//! The program creates and migrates them itself ([`migrate`]): numbered SQL migrations applied in order, all in
//! one transaction under a transaction-level advisory lock (so concurrent processes do not race), each recorded
//! in `psystem.schema_migrations(version, applied_at)`.
//!
//! Version 1:
//! - `psystem.loads` — one row per load of a job: job key, plugin, ETL entry, source kind, target schema and
//!   table, load mode, state, expected total rows, committed pages / rows / bytes, timestamps, the last error and
//!   the staging table of a `replace` load. Indexed on `(job_key, state)`.
//! - `psystem.checkpoints` — the source position (JSON) a load resumes from, committed in the same transaction
//!   as the rows of the page it follows.
//!
//! Version 2 (the ID cache, [`crate::idcache`], `docs/ID_CACHE.md`):
//! - `psystem.id_cache` — `(target, entity, unique_key) → target_id` with the first and last load (`run`) that saw
//!   the key; target IDs unique per `(target, entity)`. Indexed for sorting by key, ID and first run, and for
//!   case-insensitive prefix search (`lower(…) text_pattern_ops`); with trigram (GIN `gin_trgm_ops`) indexes for
//!   substring search when the `pg_trgm` extension exists or can be created (otherwise without, see the docs).
//! - `psystem.entity_keys` — the unique-key columns and ID strategy each cached entity was registered with.
//!
//! Version 3 (run metrics, [`crate::metrics`]):
//! - `psystem.run_metrics` — per load: rows read / written / rejected, bytes, milliseconds per phase and per-column
//!   null and distinct counts; deleted with its load.
//!
//! Version 5 (dataset loads of releases, [`crate::release_load`], `docs/LOAD_MODES.md`):
//! - `psystem.loads` gains `release`, `dataset`, `rows_inserted`, `rows_updated`, `rows_deleted`, `verified` and
//!   `duration_ms` (all nullable; page-based loads leave them NULL).
//! - `psystem.work_units` — the work units of a load (`unit_key`, e.g. a file's relative path, an optional jsonb
//!   `spec`, `bytes`), their state (`pending`, `running`, `done`, `failed`), attempts, worker, heartbeat, rows
//!   and last error; unique per `(load_id, unit_key)`, indexed on `(load_id, state)`, deleted with its load.
//! - `psystem.files` — the checksum verification of each release file: source, release, path, size, algorithm,
//!   expected and computed checksum, status (`verified`, `mismatch`, `unverified`, `missing`), detail, time;
//!   unique per `(source, release, path)`.
//!
//! Version 6 (shared loads, [`crate::work_units`], [`crate::protein`]):
//! - `psystem.loads.worker_spec` (jsonb) — what a `psystem worker` on any machine needs to join the load (source
//!   URL without credentials, release, file, checksum, parser options); NULL for loads only their process runs.
//! - `psystem.work_units.report` (jsonb) — what the unit changed (e.g. entries inserted, updated, unchanged).
//!
//! Version 7 (restarts of `append` loads, [`crate::Destination::open_load`]):
//! - `psystem.load_pages` — per committed page of an `append` load: the page number, the transaction id
//!   (`txid_current()`, with epoch) that wrote its rows, and its row count; deleted with its load, and when the
//!   load completes. A restart deletes the abandoned load's rows by their `xmin`.

use chrono::{DateTime, Utc};
use psystem_core::{Counters, JobState, LoadMode, TableRef};
use sqlx::postgres::PgRow;
use sqlx::{Connection, Executor, PgConnection, Row};
use tracing::info;

use crate::DestinationError;

/// The advisory lock key that serializes ledger migrations (`'psystem'` in ASCII, as an int8).
const MIGRATION_LOCK_KEY: i64 = 0x7073_7973_7465_6d00;

/// The ledger migrations, in order. Never edit a released one: add a new version.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE psystem.loads (
    id            bigserial PRIMARY KEY,
    job_key       text NOT NULL,
    plugin        text,
    entry         text,
    source_kind   text,
    target_schema text,
    target_table  text,
    mode          text,
    state         text,
    total_rows    bigint NULL,
    pages         bigint NOT NULL DEFAULT 0,
    rows          bigint NOT NULL DEFAULT 0,
    bytes         bigint NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz NULL,
    last_error    text NULL,
    staging_table text NULL
);
CREATE INDEX loads_job_key_state_idx ON psystem.loads (job_key, state);
CREATE TABLE psystem.checkpoints (
    load_id    bigint PRIMARY KEY REFERENCES psystem.loads (id) ON DELETE CASCADE,
    position   jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE psystem.id_cache (
    target         text   NOT NULL,
    entity         text   NOT NULL,
    unique_key     text   NOT NULL,
    target_id      text   NOT NULL,
    first_seen_run bigint NOT NULL DEFAULT 0,
    last_seen_run  bigint NOT NULL DEFAULT 0,
    CONSTRAINT id_cache_pkey PRIMARY KEY (target, entity, unique_key),
    CONSTRAINT id_cache_target_id_key UNIQUE (target, entity, target_id)
) WITH (fillfactor = 50);
CREATE INDEX id_cache_first_seen_idx ON psystem.id_cache (target, entity, first_seen_run, unique_key);
CREATE INDEX id_cache_key_prefix_idx ON psystem.id_cache (target, entity, lower(unique_key) text_pattern_ops);
CREATE INDEX id_cache_id_prefix_idx ON psystem.id_cache (target, entity, lower(target_id) text_pattern_ops);
CREATE TABLE psystem.entity_keys (
    target      text        NOT NULL,
    entity      text        NOT NULL,
    key_columns jsonb       NOT NULL,
    id_strategy jsonb       NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, entity)
);
DO $psystem$
DECLARE
    trgm_schema text;
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'psystem: pg_trgm is not available (%); ID cache substring search works without an index', SQLERRM;
    END;
    SELECT n.nspname INTO trgm_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX id_cache_key_trgm_idx ON psystem.id_cache USING gin (lower(unique_key) %I.gin_trgm_ops)', trgm_schema);
        EXECUTE format('CREATE INDEX id_cache_id_trgm_idx ON psystem.id_cache USING gin (lower(target_id) %I.gin_trgm_ops)', trgm_schema);
    END IF;
END
$psystem$;
"#,
    ),
    (
        3,
        r#"
CREATE TABLE psystem.run_metrics (
    load_id       bigint      PRIMARY KEY REFERENCES psystem.loads (id) ON DELETE CASCADE,
    rows_read     bigint      NOT NULL DEFAULT 0,
    rows_written  bigint      NOT NULL DEFAULT 0,
    rows_rejected bigint      NOT NULL DEFAULT 0,
    bytes         bigint      NOT NULL DEFAULT 0,
    phase_ms      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    columns       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
"#,
    ),
    (
        4,
        r#"
-- What a load read (source kind, location, options), so that a resume never continues a load of other data,
-- and the compare loop can skip what a completed load already holds.
ALTER TABLE psystem.loads ADD COLUMN source_fingerprint text;
CREATE INDEX loads_job_fingerprint_idx ON psystem.loads (job_key, source_fingerprint) WHERE state = 'completed';
"#,
    ),
    (
        5,
        r#"
-- Dataset loads of releases (crate::release_load): which release and dataset a load holds, what it changed.
ALTER TABLE psystem.loads
    ADD COLUMN release       text,
    ADD COLUMN dataset       text,
    ADD COLUMN rows_inserted bigint,
    ADD COLUMN rows_updated  bigint,
    ADD COLUMN rows_deleted  bigint,
    ADD COLUMN verified      boolean,
    ADD COLUMN duration_ms   bigint;
CREATE INDEX loads_release_dataset_idx ON psystem.loads (source_kind, release, dataset) WHERE state = 'completed';
-- Work units of a load (one file each for a release dataset), claimed by workers with FOR UPDATE SKIP LOCKED.
CREATE TABLE psystem.work_units (
    id           bigserial   PRIMARY KEY,
    load_id      bigint      NOT NULL REFERENCES psystem.loads (id) ON DELETE CASCADE,
    unit_key     text        NOT NULL,
    spec         jsonb       NULL,
    bytes        bigint      NULL,
    state        text        NOT NULL DEFAULT 'pending'
                             CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts     int         NOT NULL DEFAULT 0,
    worker       text        NULL,
    heartbeat_at timestamptz NULL,
    rows         bigint      NULL,
    last_error   text        NULL,
    started_at   timestamptz NULL,
    finished_at  timestamptz NULL,
    UNIQUE (load_id, unit_key)
);
CREATE INDEX work_units_load_state_idx ON psystem.work_units (load_id, state);
-- The checksum verification of each file of a release.
CREATE TABLE psystem.files (
    id          bigserial   PRIMARY KEY,
    source      text        NOT NULL,
    release     text        NOT NULL,
    path        text        NOT NULL,
    size        bigint      NULL,
    algorithm   text        NULL,
    expected    text        NULL,
    computed    text        NULL,
    status      text        NOT NULL CHECK (status IN ('verified', 'mismatch', 'unverified', 'missing')),
    detail      text        NULL,
    verified_at timestamptz NULL,
    UNIQUE (source, release, path)
);
"#,
    ),
    (
        6,
        r#"
-- Shared loads (crate::work_units, crate::protein): what a `psystem worker` on any machine needs to join a
-- load (source, release, file, checksum, parser options; never a password), and what each unit changed.
ALTER TABLE psystem.loads ADD COLUMN worker_spec jsonb;
ALTER TABLE psystem.work_units ADD COLUMN report jsonb;
CREATE INDEX loads_shared_running_idx ON psystem.loads (id) WHERE state = 'running' AND worker_spec IS NOT NULL;
"#,
    ),
    (
        7,
        r#"
-- The transaction of each page an `append` load committed (crate::destination): a restart deletes the rows of
-- the load it abandons by these transaction ids (the rows' xmin), in the transaction that opens the new load.
CREATE TABLE psystem.load_pages (
    load_id bigint NOT NULL REFERENCES psystem.loads (id) ON DELETE CASCADE,
    page    bigint NOT NULL,
    xid     bigint NOT NULL,
    rows    bigint NOT NULL,
    PRIMARY KEY (load_id, page)
);
"#,
    ),
];

/// The newest ledger version this program knows.
pub const LEDGER_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Creates or migrates the ledger (schema `psystem`) to [`LEDGER_VERSION`]; returns how many migrations it
/// applied (0 when the ledger was up to date).
///
/// Everything happens in one transaction under `pg_advisory_xact_lock`, so concurrent callers wait for each
/// other and a failure leaves the ledger as it was. A ledger newer than this program is
/// [`DestinationError::LedgerTooNew`].
pub async fn migrate(conn: &mut PgConnection) -> Result<usize, DestinationError> {
    let bookkeeping = |source| DestinationError::Migrate { version: 0, source };
    let mut tx = conn.begin().await.map_err(bookkeeping)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(bookkeeping)?;
    // `CREATE SCHEMA IF NOT EXISTS` needs the right to create schemas even when the schema exists: look first.
    let has_schema: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'psystem')")
            .fetch_one(&mut *tx)
            .await
            .map_err(bookkeeping)?;
    if !has_schema {
        (&mut *tx)
            .execute("CREATE SCHEMA psystem")
            .await
            .map_err(bookkeeping)?;
    }
    (&mut *tx)
        .execute(
            "CREATE TABLE IF NOT EXISTS psystem.schema_migrations (\
                 version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(bookkeeping)?;
    let applied: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM psystem.schema_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await
            .map_err(bookkeeping)?;
    if let Some(&found) = applied.last() {
        if found > LEDGER_VERSION {
            return Err(DestinationError::LedgerTooNew {
                found,
                supported: LEDGER_VERSION,
            });
        }
    }
    let mut count = 0;
    for &(version, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        let err = |source| DestinationError::Migrate { version, source };
        (&mut *tx).execute(sql).await.map_err(err)?;
        sqlx::query(
            "INSERT INTO psystem.schema_migrations (version, applied_at) VALUES ($1, now())",
        )
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        info!(version, "Ledger migration applied.");
        count += 1;
    }
    tx.commit().await.map_err(bookkeeping)?;
    Ok(count)
}

/// One row of `psystem.loads` with the checkpoint position of the load.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LoadRecord {
    /// The load id (`psystem.loads.id`).
    pub id: i64,
    /// The job key: which ETL entry into which destination this load belongs to.
    pub job_key: String,
    /// The plugin name.
    pub plugin: String,
    /// The ETL entry name.
    pub entry: String,
    /// The source kind (`gho_odata`, `opentargets`, …).
    pub source_kind: String,
    /// The destination table.
    pub table: TableRef,
    /// The load mode.
    pub mode: LoadMode,
    /// The state of the load.
    pub state: JobState,
    /// The number of rows the source announced, when known.
    pub total_rows: Option<u64>,
    /// Pages, rows and bytes committed.
    pub counters: Counters,
    /// When the load was created.
    pub started_at: DateTime<Utc>,
    /// When the load row last changed.
    pub updated_at: DateTime<Utc>,
    /// When the load completed or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// The last error, when the load failed.
    pub last_error: Option<String>,
    /// The name of the staging table (in the target schema) of a `replace` load.
    pub staging_table: Option<String>,
    /// What the load read (source kind, location and options); see [`LoadSpec::source_fingerprint`](crate::LoadSpec).
    pub source_fingerprint: Option<String>,
    /// The committed checkpoint position; `None` before the first page.
    pub position: Option<serde_json::Value>,
}

/// The columns [`LoadRecord::from_row`] reads, for `SELECT … FROM psystem.loads l LEFT JOIN psystem.checkpoints c`.
pub(crate) const LOAD_COLUMNS: &str =
    "l.id, l.job_key, COALESCE(l.plugin, '') AS plugin, COALESCE(l.entry, '') AS entry, \
     COALESCE(l.source_kind, '') AS source_kind, COALESCE(l.target_schema, '') AS target_schema, \
     COALESCE(l.target_table, '') AS target_table, COALESCE(l.mode, '') AS mode, COALESCE(l.state, '') AS state, \
     l.total_rows, l.pages, l.rows, l.bytes, l.started_at, l.updated_at, l.finished_at, l.last_error, \
     l.staging_table, l.source_fingerprint, c.position";

impl LoadRecord {
    pub(crate) fn from_row(row: &PgRow) -> Result<LoadRecord, DestinationError> {
        let get_err = |source| DestinationError::Database {
            context: "reading the ledger (psystem.loads)".into(),
            source,
        };
        let id: i64 = row.try_get("id").map_err(get_err)?;
        let corrupt = |detail: String| DestinationError::CorruptLedger {
            load_id: id,
            detail,
        };
        let mode: String = row.try_get("mode").map_err(get_err)?;
        let state: String = row.try_get("state").map_err(get_err)?;
        let nonneg = |name: &str, v: i64| {
            u64::try_from(v).map_err(|_| corrupt(format!("{name} is negative ({v})")))
        };
        let total_rows: Option<i64> = row.try_get("total_rows").map_err(get_err)?;
        Ok(LoadRecord {
            id,
            job_key: row.try_get("job_key").map_err(get_err)?,
            plugin: row.try_get("plugin").map_err(get_err)?,
            entry: row.try_get("entry").map_err(get_err)?,
            source_kind: row.try_get("source_kind").map_err(get_err)?,
            table: TableRef::new(
                row.try_get::<String, _>("target_schema").map_err(get_err)?,
                row.try_get::<String, _>("target_table").map_err(get_err)?,
            ),
            mode: LoadMode::parse(&mode)
                .ok_or_else(|| corrupt(format!("unknown mode `{mode}`")))?,
            state: JobState::parse(&state)
                .ok_or_else(|| corrupt(format!("unknown state `{state}`")))?,
            total_rows: total_rows.map(|v| nonneg("total_rows", v)).transpose()?,
            counters: Counters {
                pages: nonneg("pages", row.try_get("pages").map_err(get_err)?)?,
                rows: nonneg("rows", row.try_get("rows").map_err(get_err)?)?,
                bytes: nonneg("bytes", row.try_get("bytes").map_err(get_err)?)?,
            },
            started_at: row.try_get("started_at").map_err(get_err)?,
            updated_at: row.try_get("updated_at").map_err(get_err)?,
            finished_at: row.try_get("finished_at").map_err(get_err)?,
            last_error: row.try_get("last_error").map_err(get_err)?,
            staging_table: row.try_get("staging_table").map_err(get_err)?,
            source_fingerprint: row.try_get("source_fingerprint").map_err(get_err)?,
            position: row.try_get("position").map_err(get_err)?,
        })
    }
}

/// Fails with [`DestinationError::LoadNotActive`] unless `state` (of load `load_id`) is `running`.
pub(crate) fn require_running(load_id: i64, state: Option<String>) -> Result<(), DestinationError> {
    if state.as_deref() == Some("running") {
        Ok(())
    } else {
        Err(DestinationError::LoadNotActive {
            load_id,
            state: state.unwrap_or_default(),
        })
    }
}
