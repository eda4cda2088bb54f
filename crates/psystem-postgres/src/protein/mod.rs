//! UniProtKB entries into PostgreSQL: the `protein` table and its child tables, written unit by unit, where an
//! entry whose content MD5 is unchanged is not rewritten.
//!
//! The tables (in the plugin's schema, `uniprot` by default; DDL in [`create_tables`], described in
//! `docs/UNIPROT.md`):
//! - `protein` — one row per entry, keyed by primary accession: entry name, reviewed, the dataset and release that
//!   wrote it, recommended (or submitted) name, first gene, organism, taxonomy id, lineage, protein existence,
//!   the three DT dates and versions, length, mass, CRC64, sequence, sequence MD5, content MD5, and `jsonb` for
//!   the nested parts (DE block, GN genes, OH hosts, CC comments).
//! - `protein_accession` (secondary accessions), `protein_xref` (DR lines), `protein_feature` (FT),
//!   `protein_keyword` (KW), `protein_reference` (RN…RL blocks): child rows keyed by (accession, ordinal).
//!
//! A load ([`open_protein_load`]) is a ledger row in `psystem.loads` (with a `worker_spec` that lets
//! `psystem worker` processes on other machines join it), its work units (byte ranges of the decompressed flat
//! file, [`crate::work_units`]), and a "seen" table `protein__psystem_seen_<load id>` of every accession the
//! release holds. [`ProteinLoad::write_unit`] writes one unit in **one transaction**: for each batch of entries it
//! looks up the stored content MD5s, deletes and re-inserts the entries that changed (and their child rows),
//! inserts the new ones, leaves the unchanged ones alone, records every accession as seen, and marks the unit
//! done. [`ProteinLoad::finish`] deletes the entries of the same dataset the release no longer has, sums the units'
//! reports into the ledger, and drops the seen table.
//!
//! Visibility: entries become visible unit by unit (the table is usable throughout; a reader may see some
//! entries of the new release next to the old ones until the load completes); entries removed from the release
//! disappear at `finish`.

mod copy_text;
pub mod export;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use psystem_core::TableRef;
use psystem_uniprot::{Entry, PositionModifier, Status};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use tracing::{debug, info, warn};

use crate::destination::{drop_table_if_exists, ensure_schema, OPEN_LOCK_CLASS, RESUMABLE};
use crate::ident::{ident_with_suffix, quote_ident, quote_table};
use crate::release_load::{BoxError, UnitSpec};
use crate::work_units::{ClaimedUnit, WorkQueue};
use crate::{Destination, DestinationError};
use copy_text::TextRows;

/// The source kind recorded in the ledger for UniProt loads.
pub const SOURCE_KIND: &str = "uniprot";

/// The `protein` table and its child tables, in the order they are written.
pub const TABLES: [&str; 6] = [
    "protein",
    "protein_accession",
    "protein_xref",
    "protein_feature",
    "protein_keyword",
    "protein_reference",
];

/// Bytes of COPY text sent per message.
const COPY_SEND: usize = 1 << 20;

/// What to load: one flat file of one UniProt release into the protein tables of a schema.
#[derive(Debug, Clone)]
pub struct ProteinLoadSpec {
    /// The job key, e.g. `uniprot/sprot`: one unfinished load per job key (it is resumed).
    pub job_key: String,
    /// The plugin name (ledger).
    pub plugin: String,
    /// The ETL entry name (ledger).
    pub entry: String,
    /// The release, e.g. `2024_01`.
    pub release: String,
    /// The dataset, `sprot` or `trembl`: recorded on each row; `finish` deletes only this dataset's rows that the
    /// release no longer has.
    pub dataset: String,
    /// The schema holding the tables (created with the tables when missing).
    pub schema: String,
    /// The base table name (`protein`); the child tables are `<table>_accession`, `<table>_xref`, … .
    pub table: String,
    /// The work units: byte ranges of the decompressed file (`spec` holds `start`, `end`, `entries`,
    /// `first_line`); unique keys.
    pub units: Vec<UnitSpec>,
    /// Whether the file was verified against the release's checksum (ledger).
    pub verified: bool,
    /// How long a running unit may go without a heartbeat before another worker reclaims it.
    pub heartbeat_timeout: Duration,
    /// What a `psystem worker` needs to join the load (stored in `psystem.loads.worker_spec`); must not hold
    /// secrets.
    pub worker_spec: serde_json::Value,
    /// The digest of the flat file the units were planned over, `algorithm:hex` (e.g. `md5:0a1b…`), recorded as
    /// the load's `source_fingerprint`. An unfinished load whose digest differs is not resumed over this file:
    /// its byte ranges belong to another file (see [`open_protein_load`]). `None`: unknown, never compared.
    pub file_digest: Option<String>,
}

/// An open protein load (from [`open_protein_load`] or [`attach_protein_load`]).
#[derive(Debug, Clone)]
pub struct ProteinLoad {
    load_id: i64,
    schema: String,
    table: String,
    dataset: String,
    release: String,
    resumed: bool,
    queue: WorkQueue,
    worker_spec: serde_json::Value,
    started: Instant,
}

/// What one unit changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProteinUnitReport {
    /// Entries read from the unit.
    pub entries: u64,
    /// Entries that were not in the table.
    pub inserted: u64,
    /// Entries whose content MD5 (or dataset) changed: their rows were deleted and written again.
    pub updated: u64,
    /// Entries whose content MD5 was unchanged: not rewritten.
    pub unchanged: u64,
    /// Entries skipped because they failed to parse (error policy `skip`), listed in `skipped_entries`.
    #[serde(default)]
    pub skipped: u64,
    /// The skipped entries: `accession (line N): message`, at most 20 per unit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_entries: Vec<String>,
}

impl ProteinUnitReport {
    fn add(&mut self, other: &ProteinUnitReport) {
        self.entries += other.entries;
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.skipped += other.skipped;
        for s in &other.skipped_entries {
            if self.skipped_entries.len() < 100 {
                self.skipped_entries.push(s.clone());
            }
        }
    }
}

/// What a completed protein load changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProteinFinishReport {
    /// The sum of the units' reports.
    pub units: ProteinUnitReport,
    /// Entries of this dataset deleted because the release no longer has them.
    pub deleted: u64,
    /// Work units.
    pub unit_count: u64,
}

/// One batch of parsed entries, with the parse failures skipped in it (error policy `skip`).
#[derive(Debug, Default)]
pub struct EntryBatch {
    /// The entries.
    pub entries: Vec<Entry>,
    /// Entries skipped in this batch: `accession (line N): message`.
    pub skipped: Vec<String>,
}

/// Where the batches of one unit come from (a parser in a blocking thread): `None` ends the unit, an `Err`
/// aborts it (nothing of it is written).
pub type EntryBatches = tokio::sync::mpsc::Receiver<Result<EntryBatch, BoxError>>;

/// The name of table `kind` (one of [`TABLES`]) for the base table name `base`: `protein` → `base`,
/// `protein_xref` → `<base>_xref`, and so on (`protein_trembl` gives `protein_trembl_xref`).
pub fn table_name(base: &str, kind: &str) -> String {
    format!("{base}{}", kind.strip_prefix("protein").unwrap_or(kind))
}

/// Creates the schema and the protein tables (base name `base`, children `<base>_accession`, …) if they do not
/// exist (idempotent; DDL in `docs/UNIPROT.md`).
///
/// # Errors
/// [`DestinationError::InvalidIdentifier`], [`DestinationError::Database`].
pub async fn create_tables(
    conn: &mut PgConnection,
    schema: &str,
    base: &str,
) -> Result<(), DestinationError> {
    ensure_schema(conn, schema).await?;
    let t = |kind: &str| quote_table(&TableRef::new(schema, table_name(base, kind)));
    let idx = |kind: &str| quote_ident(&table_name(base, kind));
    let ddl = [
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             accession text PRIMARY KEY, entry_name text NOT NULL, reviewed boolean NOT NULL, \
             dataset text NOT NULL, release text NOT NULL, protein_name text, flags text[] NOT NULL, \
             gene text, organism text NOT NULL, taxonomy_id bigint NOT NULL, taxonomy_evidence text[] NOT NULL, \
             lineage text[] NOT NULL, organelles text[] NOT NULL, protein_existence smallint NOT NULL, \
             created date NOT NULL, created_in text NOT NULL, sequence_updated date NOT NULL, \
             sequence_version int NOT NULL, entry_updated date NOT NULL, entry_version int NOT NULL, \
             length int NOT NULL, mass bigint NOT NULL, crc64 text NOT NULL, sequence text NOT NULL, \
             sequence_md5 text NOT NULL, content_md5 text NOT NULL, description jsonb NOT NULL, \
             genes jsonb NOT NULL, hosts jsonb NOT NULL, comments jsonb NOT NULL, \
             loaded_at timestamptz NOT NULL DEFAULT now())",
            t("protein")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (accession text NOT NULL, secondary_accession text NOT NULL, \
             PRIMARY KEY (accession, secondary_accession))",
            t("protein_accession")
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (secondary_accession)",
            idx("protein_accession_secondary_idx"),
            t("protein_accession")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (accession text NOT NULL, ordinal int NOT NULL, database text NOT NULL, \
             id text NOT NULL, properties text[] NOT NULL, isoform text, PRIMARY KEY (accession, ordinal))",
            t("protein_xref")
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (database, id)",
            idx("protein_xref_database_id_idx"),
            t("protein_xref")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (accession text NOT NULL, ordinal int NOT NULL, type text NOT NULL, \
             isoform text, start_position int, start_modifier text NOT NULL, end_position int, \
             end_modifier text NOT NULL, qualifiers jsonb NOT NULL, PRIMARY KEY (accession, ordinal))",
            t("protein_feature")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (accession text NOT NULL, ordinal int NOT NULL, keyword text NOT NULL, \
             evidence text[] NOT NULL, PRIMARY KEY (accession, ordinal))",
            t("protein_keyword")
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (keyword)",
            idx("protein_keyword_keyword_idx"),
            t("protein_keyword")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (accession text NOT NULL, ordinal int NOT NULL, number int NOT NULL, \
             evidence text[] NOT NULL, position text, comments jsonb NOT NULL, xrefs jsonb NOT NULL, \
             groups text[] NOT NULL, authors text[] NOT NULL, title text, location text NOT NULL, \
             PRIMARY KEY (accession, ordinal))",
            t("protein_reference")
        ),
    ];
    for sql in ddl {
        sqlx::query(&sql)
            .execute(&mut *conn)
            .await
            .map_err(DestinationError::db(format!(
                "creating the protein tables in schema `{schema}`"
            )))?;
    }
    Ok(())
}

/// The seen table of load `load_id`: every accession the release holds, one row each (a duplicate accession in
/// a release fails its unit).
fn seen_table(schema: &str, base: &str, load_id: i64) -> TableRef {
    TableRef::new(
        schema,
        ident_with_suffix(base, &format!("__psystem_seen_{load_id}")),
    )
}

async fn create_seen(conn: &mut PgConnection, seen: &TableRef) -> Result<(), DestinationError> {
    sqlx::query(&format!(
        "CREATE UNLOGGED TABLE {} (accession text PRIMARY KEY)",
        quote_table(seen)
    ))
    .execute(&mut *conn)
    .await
    .map_err(DestinationError::db(format!("creating {seen}")))?;
    Ok(())
}

/// Opens the protein load of `spec.job_key`, or resumes its unfinished one (same release, dataset and schema;
/// [`DestinationError::ResumeMismatch`] otherwise). A resumed load keeps the work units recorded when it started
/// (`spec.units` is not used: see [`resumable_load_digest`] to skip planning them).
///
/// The units are byte ranges of one file, so an unfinished load whose recorded file digest differs from
/// `spec.file_digest` (the mirror now serves another file) is never resumed: when `spec.units` holds units
/// planned over the new file, the old load is cancelled (its seen table dropped) and a new load of the new file
/// is started in the same transaction — rows the old load wrote are entries of the same release, and the new load
/// rewrites or keeps each one by its content MD5 and deletes at `finish` the ones the new file lacks, so the
/// tables end exactly as after a clean load of the new file; with no units it is
/// [`DestinationError::ResumeMismatch`] naming both digests. Resuming sets its `running` and
/// `failed` units pending again; when its seen table is gone every unit becomes pending (rewriting is idempotent: unchanged
/// entries are skipped). With `restart`, or when there is none, unfinished loads of the job are cancelled and a
/// new load is recorded with its units. Creates the schema and tables when missing.
///
/// # Errors
/// [`DestinationError::ResumeMismatch`], [`DestinationError::InvalidIdentifier`], [`DestinationError::Database`].
pub async fn open_protein_load(
    dest: &Destination,
    spec: ProteinLoadSpec,
    restart: bool,
) -> Result<ProteinLoad, DestinationError> {
    let job = spec.job_key.clone();
    let ctx = |what: &str| format!("opening the protein load of job `{job}`: {what}");
    let mut tx = dest
        .pool()
        .begin()
        .await
        .map_err(DestinationError::db(ctx("begin")))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(OPEN_LOCK_CLASS)
        .bind(&spec.job_key)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("lock the job")))?;
    create_tables(&mut tx, &spec.schema, &spec.table).await?;
    let existing = if restart {
        None
    } else {
        sqlx::query(
            "SELECT id, COALESCE(release, '') AS release, COALESCE(dataset, '') AS dataset, source_fingerprint, \
             COALESCE(target_schema, '') || '.' || COALESCE(target_table, '') AS target_schema FROM psystem.loads \
             WHERE job_key = $1 AND state = ANY($2) ORDER BY id DESC LIMIT 1 FOR UPDATE",
        )
        .bind(&spec.job_key)
        .bind(RESUMABLE)
        .fetch_optional(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("find an unfinished load")))?
    };
    // A load split over another file cannot go on over this one: start again with the units of this file.
    let existing = match existing {
        Some(row) if spec.file_digest.is_some() => {
            let recorded: Option<String> = row.get("source_fingerprint");
            if recorded == spec.file_digest {
                Some(row)
            } else {
                let load_id: i64 = row.get("id");
                let recorded = recorded.unwrap_or_else(|| "not recorded".into());
                let now = spec.file_digest.as_deref().unwrap_or_default();
                if spec.units.is_empty() {
                    return Err(DestinationError::ResumeMismatch {
                        job_key: spec.job_key.clone(),
                        load_id,
                        detail: format!(
                            "was split into work units over another version of the file (digest {recorded}; the \
                             file is now {now}), so its byte ranges do not fit the file; run it again with --restart \
                             to split the new file and load it"
                        ),
                    });
                }
                warn!(load_id, recorded = %recorded, now, job_key = %spec.job_key,
                    "The flat file changed since this unfinished load was split into units; it is cancelled and \
                     the new file is loaded with units planned over it.");
                None
            }
        }
        other => other,
    };
    let mut resumed = false;
    let load_id = match existing {
        Some(row) => {
            let load_id: i64 = row.get("id");
            let (release, dataset, schema): (String, String, String) = (
                row.get("release"),
                row.get("dataset"),
                row.get("target_schema"),
            );
            let mismatch = |detail: String| DestinationError::ResumeMismatch {
                job_key: spec.job_key.clone(),
                load_id,
                detail,
            };
            let wanted = format!("{}.{}", spec.schema, spec.table);
            if release != spec.release || dataset != spec.dataset || schema != wanted {
                return Err(mismatch(format!(
                    "loads release {release} dataset {dataset} into {schema} (requested: release {} dataset {} \
                     into {wanted}); pass restart to start over",
                    spec.release, spec.dataset
                )));
            }
            let seen = seen_table(&spec.schema, &spec.table, load_id);
            crate::work_units::reset_unfinished_units(&mut tx, load_id).await?;
            if crate::destination::table_oid_exists(&mut tx, &seen)
                .await?
                .is_none()
            {
                warn!(load_id, seen = %seen, "The load's seen table is gone; writing every unit again.");
                create_seen(&mut tx, &seen).await?;
                sqlx::query(
                    "UPDATE psystem.work_units SET state = 'pending', rows = NULL, report = NULL, worker = NULL, \
                     heartbeat_at = NULL, finished_at = NULL WHERE load_id = $1",
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
            .bind(&seen.name)
            .bind(spec.verified)
            .bind(sqlx::types::Json(&spec.worker_spec))
            .execute(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("mark the load running")))?;
            resumed = true;
            info!(load_id, job_key = %spec.job_key, "Protein load resumed.");
            load_id
        }
        None => {
            if spec.units.is_empty() {
                return Err(DestinationError::InvalidSpec {
                    job_key: spec.job_key.clone(),
                    message: "a new protein load needs at least one work unit".into(),
                });
            }
            crate::work_units::cancel_unfinished(&mut tx, &spec.job_key).await?;
            let load_id: i64 = sqlx::query_scalar(
                "INSERT INTO psystem.loads (job_key, plugin, entry, source_kind, target_schema, target_table, mode, \
                 state, started_at, updated_at, release, dataset, verified, worker_spec, source_fingerprint) \
                 VALUES ($1, $2, $3, $4, $5, $10, 'merge', 'running', now(), now(), $6, $7, $8, $9, $11) RETURNING id",
            )
            .bind(&spec.job_key)
            .bind(&spec.plugin)
            .bind(&spec.entry)
            .bind(SOURCE_KIND)
            .bind(&spec.schema)
            .bind(&spec.release)
            .bind(&spec.dataset)
            .bind(spec.verified)
            .bind(sqlx::types::Json(&spec.worker_spec))
            .bind(&spec.table)
            .bind(&spec.file_digest)
            .fetch_one(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("record the load")))?;
            let seen = seen_table(&spec.schema, &spec.table, load_id);
            drop_table_if_exists(&mut tx, &seen).await?;
            create_seen(&mut tx, &seen).await?;
            sqlx::query("UPDATE psystem.loads SET staging_table = $2 WHERE id = $1")
                .bind(load_id)
                .bind(&seen.name)
                .execute(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx("record the seen table")))?;
            crate::work_units::record_units(&mut tx, load_id, &spec.units).await?;
            info!(load_id, job_key = %spec.job_key, units = spec.units.len(), "Protein load started.");
            load_id
        }
    };
    tx.commit()
        .await
        .map_err(DestinationError::db(ctx("commit")))?;
    Ok(ProteinLoad {
        load_id,
        schema: spec.schema,
        table: spec.table,
        dataset: spec.dataset,
        release: spec.release,
        resumed,
        queue: WorkQueue::new(load_id, spec.heartbeat_timeout),
        worker_spec: spec.worker_spec,
        started: Instant::now(),
    })
}

/// The unfinished load of `job_key` that [`open_protein_load`] would resume, if any, with the digest of the file
/// its units were planned over (`algorithm:hex`; `None` for a load recorded without one). A caller plans units
/// again when that digest is not the one of the file it has: [`open_protein_load`] does not resume such a load.
///
/// # Errors
/// [`DestinationError::Database`].
pub async fn resumable_load_digest(
    dest: &Destination,
    job_key: &str,
) -> Result<Option<(i64, Option<String>)>, DestinationError> {
    let row = sqlx::query(
        "SELECT id, source_fingerprint FROM psystem.loads WHERE job_key = $1 AND state = ANY($2) \
         AND source_kind = $3 ORDER BY id DESC LIMIT 1",
    )
    .bind(job_key)
    .bind(RESUMABLE)
    .bind(SOURCE_KIND)
    .fetch_optional(dest.pool())
    .await
    .map_err(DestinationError::db(format!(
        "looking for an unfinished load of `{job_key}`"
    )))?;
    Ok(row.map(|r| (r.get("id"), r.get("source_fingerprint"))))
}

/// The unfinished load of `job_key` that [`open_protein_load`] would resume, if any.
///
/// # Errors
/// [`DestinationError::Database`].
pub async fn resumable_load(
    dest: &Destination,
    job_key: &str,
) -> Result<Option<i64>, DestinationError> {
    sqlx::query_scalar(
        "SELECT id FROM psystem.loads WHERE job_key = $1 AND state = ANY($2) AND source_kind = $3 \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(job_key)
    .bind(RESUMABLE)
    .bind(SOURCE_KIND)
    .fetch_optional(dest.pool())
    .await
    .map_err(DestinationError::db(format!(
        "looking for an unfinished load of `{job_key}`"
    )))
}

/// Joins load `load_id` as a worker (another process or machine): reads its schema, dataset, release and
/// worker spec from the ledger. The heartbeat timeout is the spec's `heartbeat_timeout_secs` (default 60).
///
/// # Errors
/// [`DestinationError::LoadNotFound`]; [`DestinationError::LoadNotActive`] when it is not running;
/// [`DestinationError::InvalidSpec`] when it is not a protein load; [`DestinationError::Database`].
pub async fn attach_protein_load(
    dest: &Destination,
    load_id: i64,
) -> Result<ProteinLoad, DestinationError> {
    let row = sqlx::query(
        "SELECT state, source_kind, COALESCE(target_schema, '') AS schema, COALESCE(target_table, 'protein') AS target_table, \
         COALESCE(dataset, '') AS dataset, \
         COALESCE(release, '') AS release, worker_spec FROM psystem.loads WHERE id = $1",
    )
    .bind(load_id)
    .fetch_optional(dest.pool())
    .await
    .map_err(DestinationError::db(format!("reading load #{load_id}")))?
    .ok_or(DestinationError::LoadNotFound { load_id })?;
    crate::ledger::require_running(load_id, row.get("state"))?;
    let kind: Option<String> = row.get("source_kind");
    let spec: Option<sqlx::types::Json<serde_json::Value>> = row.get("worker_spec");
    let (Some(SOURCE_KIND), Some(spec)) = (kind.as_deref(), spec) else {
        return Err(DestinationError::InvalidSpec {
            job_key: format!("load #{load_id}"),
            message: format!(
                "it is not a shared UniProt load (source kind `{}`)",
                kind.as_deref().unwrap_or("none")
            ),
        });
    };
    let timeout = spec
        .0
        .get("heartbeat_timeout_secs")
        .and_then(|v| v.as_f64())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(crate::release_load::DEFAULT_HEARTBEAT_TIMEOUT);
    Ok(ProteinLoad {
        load_id,
        schema: row.get("schema"),
        table: row.get("target_table"),
        dataset: row.get("dataset"),
        release: row.get("release"),
        resumed: true,
        queue: WorkQueue::new(load_id, timeout),
        worker_spec: spec.0,
        started: Instant::now(),
    })
}

impl ProteinLoad {
    /// The load id (`psystem.loads.id`).
    pub fn load_id(&self) -> i64 {
        self.load_id
    }

    /// True when this handle continues an unfinished load (or joined one as a worker).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The work-unit queue.
    pub fn queue(&self) -> WorkQueue {
        self.queue
    }

    /// The worker spec stored with the load.
    pub fn worker_spec(&self) -> &serde_json::Value {
        &self.worker_spec
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The base table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The release.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The dataset (`sprot`, `trembl`).
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// Writes the entries of `unit` in **one transaction** that also marks the unit done (see the module docs):
    /// new entries are inserted, entries whose content MD5 or dataset changed are deleted and inserted again with
    /// their child rows, unchanged ones are not touched; every accession is recorded as seen (a duplicate
    /// accession fails the unit). On error nothing of the unit is written and it stays claimed (call
    /// [`WorkQueue::fail`]).
    ///
    /// # Errors
    /// [`DestinationError::UnitSource`] when `batches` yields an error (a parse error under policy `fail`, an
    /// I/O error); [`DestinationError::UnitLost`]; [`DestinationError::LoadNotActive`];
    /// [`DestinationError::Database`] (e.g. a duplicate accession: `23505` on the seen table).
    pub async fn write_unit(
        &self,
        dest: &Destination,
        unit: &ClaimedUnit,
        mut batches: EntryBatches,
    ) -> Result<ProteinUnitReport, DestinationError> {
        let load_id = self.load_id;
        let mut tx = dest
            .pool()
            .begin()
            .await
            .map_err(DestinationError::db(format!(
                "writing unit `{}` of load #{load_id}: begin",
                unit.key
            )))?;
        match self.write_unit_in(&mut tx, unit, &mut batches).await {
            Ok(report) => {
                tx.commit().await.map_err(DestinationError::db(format!(
                    "writing unit `{}` of load #{load_id}: commit",
                    unit.key
                )))?;
                debug!(load_id, unit = %unit.key, ?report, "Protein unit written.");
                Ok(report)
            }
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    warn!(load_id, unit = %unit.key, error = %rollback, "Rolling back a failed unit failed.");
                }
                Err(e)
            }
        }
    }

    async fn write_unit_in(
        &self,
        conn: &mut PgConnection,
        unit: &ClaimedUnit,
        batches: &mut EntryBatches,
    ) -> Result<ProteinUnitReport, DestinationError> {
        let load_id = self.load_id;
        self.queue.lock_for_commit(&mut *conn, unit).await?;
        let mut report = ProteinUnitReport::default();
        loop {
            let batch = match batches.recv().await {
                None => break,
                Some(Ok(batch)) => batch,
                Some(Err(source)) => {
                    return Err(DestinationError::UnitSource {
                        load_id,
                        unit: unit.key.clone(),
                        source,
                    })
                }
            };
            report.skipped += batch.skipped.len() as u64;
            for s in batch.skipped {
                if report.skipped_entries.len() < 20 {
                    report.skipped_entries.push(s);
                }
            }
            if !batch.entries.is_empty() {
                self.write_batch(&mut *conn, unit, &batch.entries, &mut report)
                    .await?;
            }
        }
        let json = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
        self.queue
            .mark_done(&mut *conn, unit, report.entries, Some(&json))
            .await?;
        Ok(report)
    }

    async fn write_batch(
        &self,
        conn: &mut PgConnection,
        unit: &ClaimedUnit,
        entries: &[Entry],
        report: &mut ProteinUnitReport,
    ) -> Result<(), DestinationError> {
        let ctx = |what: &str| {
            format!(
                "writing unit `{}` of load #{}: {what}",
                unit.key, self.load_id
            )
        };
        let table = |kind: &str| {
            quote_table(&TableRef::new(
                self.schema.as_str(),
                table_name(&self.table, kind),
            ))
        };
        let accessions: Vec<&str> = entries
            .iter()
            .map(|e| e.primary_accession.as_str())
            .collect();
        let stored: HashMap<String, (String, String)> = sqlx::query(&format!(
            "SELECT accession, content_md5, dataset FROM {} WHERE accession = ANY($1)",
            table("protein")
        ))
        .bind(&accessions)
        .fetch_all(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx("look up stored entries")))?
        .into_iter()
        .map(|r| (r.get("accession"), (r.get("content_md5"), r.get("dataset"))))
        .collect();
        let mut write: Vec<&Entry> = Vec::with_capacity(entries.len());
        let mut changed: Vec<&str> = Vec::new();
        for e in entries {
            report.entries += 1;
            match stored.get(&e.primary_accession) {
                None => {
                    report.inserted += 1;
                    write.push(e);
                }
                Some((md5, dataset)) if *md5 == e.content_md5 && *dataset == self.dataset => {
                    report.unchanged += 1;
                }
                Some(_) => {
                    report.updated += 1;
                    changed.push(&e.primary_accession);
                    write.push(e);
                }
            }
        }
        if !changed.is_empty() {
            for name in TABLES.iter().rev() {
                sqlx::query(&format!(
                    "DELETE FROM {} WHERE accession = ANY($1)",
                    table(name)
                ))
                .bind(&changed)
                .execute(&mut *conn)
                .await
                .map_err(DestinationError::db(ctx(&format!(
                    "delete the changed entries from {name}"
                ))))?;
            }
        }
        let seen = seen_table(&self.schema, &self.table, self.load_id);
        let mut rows = TextRows::new();
        for a in &accessions {
            rows.text(a);
            rows.end_row();
        }
        if let Err(e) = copy_text(
            conn,
            &quote_table(&seen),
            "accession",
            &mut rows,
            &ctx("record the seen accessions"),
        )
        .await
        {
            return Err(duplicate_accession(e, self.load_id, &unit.key));
        }
        if write.is_empty() {
            return Ok(());
        }
        for name in TABLES {
            let columns = encode_rows(name, &write, &self.dataset, &self.release, &mut rows);
            copy_text(
                conn,
                &table(name),
                columns,
                &mut rows,
                &ctx(&format!("COPY into {name}")),
            )
            .await?;
        }
        Ok(())
    }

    /// Completes the load in one transaction: checks that every unit is done, deletes the rows of this dataset
    /// whose accession the release does not have (and their child rows), records the summed unit reports in the
    /// ledger (`rows_inserted`, `rows_updated`, `rows_deleted`, `rows`), marks the load `completed` and drops the
    /// seen table. A second caller (another worker that saw the last unit finish) gets
    /// [`DestinationError::LoadNotActive`].
    ///
    /// # Errors
    /// [`DestinationError::UnitsNotDone`], [`DestinationError::LoadNotActive`], [`DestinationError::StagingMissing`]
    /// (the seen table is gone), [`DestinationError::Database`].
    pub async fn finish(
        &self,
        dest: &Destination,
    ) -> Result<ProteinFinishReport, DestinationError> {
        let load_id = self.load_id;
        let ctx = |what: &str| format!("finishing protein load #{load_id}: {what}");
        let mut tx = dest
            .pool()
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        let result = self.finish_in(&mut tx).await;
        match result {
            Ok(report) => {
                tx.commit()
                    .await
                    .map_err(DestinationError::db(ctx("commit")))?;
                info!(
                    load_id,
                    entries = report.units.entries,
                    inserted = report.units.inserted,
                    updated = report.units.updated,
                    unchanged = report.units.unchanged,
                    deleted = report.deleted,
                    skipped = report.units.skipped,
                    since_open_ms = self.started.elapsed().as_millis() as u64,
                    "Protein load completed."
                );
                Ok(report)
            }
            Err(e) => {
                if let Err(rollback) = tx.rollback().await {
                    warn!(load_id, error = %rollback, "Rolling back a failed finish failed.");
                }
                Err(e)
            }
        }
    }

    async fn finish_in(
        &self,
        tx: &mut PgConnection,
    ) -> Result<ProteinFinishReport, DestinationError> {
        let load_id = self.load_id;
        let ctx = |what: &str| format!("finishing protein load #{load_id}: {what}");
        let counts = crate::work_units::lock_for_finish(&mut *tx, load_id).await?;
        let seen = seen_table(&self.schema, &self.table, load_id);
        if crate::destination::table_oid_exists(&mut *tx, &seen)
            .await?
            .is_none()
        {
            return Err(DestinationError::StagingMissing {
                load_id,
                staging: seen.to_string(),
            });
        }
        let mut report = ProteinFinishReport {
            unit_count: counts.done,
            ..Default::default()
        };
        let reports: Vec<Option<sqlx::types::Json<ProteinUnitReport>>> = sqlx::query_scalar(
            "SELECT report FROM psystem.work_units WHERE load_id = $1 ORDER BY id",
        )
        .bind(load_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("read the unit reports")))?;
        for r in reports.into_iter().flatten() {
            report.units.add(&r.0);
        }
        let table = |kind: &str| {
            quote_table(&TableRef::new(
                self.schema.as_str(),
                table_name(&self.table, kind),
            ))
        };
        let gone: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT p.accession FROM {} p WHERE p.dataset = $1 AND NOT EXISTS \
             (SELECT 1 FROM {} s WHERE s.accession = p.accession)",
            table("protein"),
            quote_table(&seen)
        ))
        .bind(&self.dataset)
        .fetch_all(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx(
            "find the entries the release no longer has",
        )))?;
        if !gone.is_empty() {
            for name in TABLES.iter().rev() {
                sqlx::query(&format!(
                    "DELETE FROM {} WHERE accession = ANY($1)",
                    table(name)
                ))
                .bind(&gone)
                .execute(&mut *tx)
                .await
                .map_err(DestinationError::db(ctx(&format!(
                    "delete removed entries from {name}"
                ))))?;
            }
        }
        report.deleted = gone.len() as u64;
        drop_table_if_exists(&mut *tx, &seen).await?;
        sqlx::query(
            "UPDATE psystem.loads SET state = 'completed', finished_at = now(), updated_at = now(), last_error = NULL, \
             pages = $2, rows = $3, bytes = $4, rows_inserted = $5, rows_updated = $6, rows_deleted = $7, \
             staging_table = NULL, duration_ms = (extract(epoch FROM (now() - started_at)) * 1000)::bigint \
             WHERE id = $1",
        )
        .bind(load_id)
        .bind(counts.done as i64)
        .bind(report.units.entries as i64)
        .bind(counts.bytes_done as i64)
        .bind(report.units.inserted as i64)
        .bind(report.units.updated as i64)
        .bind(report.deleted as i64)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("mark the load completed")))?;
        Ok(report)
    }

    /// Gives the load up: marks it `failed` with `error` (must not contain secrets) and drops the seen table. Rows
    /// already written stay (they are whole, verified entries of the release; the next run of the release skips
    /// them as unchanged, and its `finish` deletes what the release no longer has).
    ///
    /// # Errors
    /// [`DestinationError::Database`].
    pub async fn abort(&self, dest: &Destination, error: &str) -> Result<(), DestinationError> {
        let ctx = |what: &str| format!("aborting protein load #{}: {what}", self.load_id);
        let mut tx = dest
            .pool()
            .begin()
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        sqlx::query(
            "UPDATE psystem.loads SET state = 'failed', last_error = $2, updated_at = now() WHERE id = $1 \
             AND state = 'running'",
        )
        .bind(self.load_id)
        .bind(error)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(ctx("mark the load failed")))?;
        drop_table_if_exists(
            &mut tx,
            &seen_table(&self.schema, &self.table, self.load_id),
        )
        .await?;
        sqlx::query("UPDATE psystem.loads SET staging_table = NULL WHERE id = $1")
            .bind(self.load_id)
            .execute(&mut *tx)
            .await
            .map_err(DestinationError::db(ctx("forget the seen table")))?;
        tx.commit()
            .await
            .map_err(DestinationError::db(ctx("commit")))?;
        warn!(load_id = self.load_id, error, "Protein load failed.");
        Ok(())
    }
}

/// The newest completed protein load of `release`/`dataset` into `table` (the base table): what a run skips unless forced.
///
/// # Errors
/// [`DestinationError::Database`].
pub async fn last_completed(
    dest: &Destination,
    release: &str,
    dataset: &str,
    table: &TableRef,
) -> Result<Option<i64>, DestinationError> {
    sqlx::query_scalar(
        "SELECT id FROM psystem.loads WHERE source_kind = $1 AND release = $2 AND dataset = $3 \
         AND target_schema = $4 AND target_table = $5 AND state = 'completed' ORDER BY id DESC LIMIT 1",
    )
    .bind(SOURCE_KIND)
    .bind(release)
    .bind(dataset)
    .bind(&table.schema)
    .bind(&table.name)
    .fetch_optional(dest.pool())
    .await
    .map_err(DestinationError::db("looking up completed protein loads"))
}

/// Sends `rows` with `COPY <table> (<columns>) FROM STDIN` (text format) and clears it.
async fn copy_text(
    conn: &mut PgConnection,
    table: &str,
    columns: &str,
    rows: &mut TextRows,
    context: &str,
) -> Result<(), DestinationError> {
    if rows.rows() == 0 && rows.len() == 0 {
        return Ok(());
    }
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
        .await
        .map_err(DestinationError::db(context.to_string()))?;
    for chunk in rows.as_bytes().chunks(COPY_SEND) {
        if let Err(source) = copy.send(chunk).await {
            let _ = copy.abort("psystem: sending COPY data failed").await;
            return Err(DestinationError::Database {
                context: context.to_string(),
                source,
            });
        }
    }
    copy.finish()
        .await
        .map_err(DestinationError::db(context.to_string()))?;
    rows.clear();
    Ok(())
}

/// A unique violation (`23505`) on the seen table as [`DestinationError::DuplicateAccession`], naming the
/// accession from the server's detail (`Key (accession)=(P12345) already exists.`); other errors unchanged.
fn duplicate_accession(e: DestinationError, load_id: i64, unit: &str) -> DestinationError {
    let DestinationError::Database { source, .. } = &e else {
        return e;
    };
    let Some(db) = source.as_database_error() else {
        return e;
    };
    if db.code().as_deref() != Some("23505") {
        return e;
    }
    let detail = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| pg.detail())
        .unwrap_or_default();
    let accession = detail
        .split_once(")=(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(acc, _)| acc.to_string())
        .unwrap_or_else(|| "?".into());
    DestinationError::DuplicateAccession {
        load_id,
        unit: unit.to_string(),
        accession,
    }
}

fn modifier(m: PositionModifier) -> &'static str {
    match m {
        PositionModifier::Exact => "exact",
        PositionModifier::Before => "before",
        PositionModifier::After => "after",
        PositionModifier::Uncertain => "uncertain",
        PositionModifier::Unknown => "unknown",
    }
}

/// The name shown for an entry: `RecName: Full=`, else the first `SubName: Full=`, else the first `AltName`.
pub fn protein_name(e: &Entry) -> Option<&str> {
    let d = &e.description;
    d.recommended_name
        .iter()
        .chain(d.submission_names.iter())
        .chain(d.alternative_names.iter())
        .find_map(|n| n.full.as_ref())
        .map(|v| v.value.as_str())
}

/// The entry's first gene name: `Name=`, else the first `OrderedLocusNames=`, else the first `ORFNames=`.
pub fn gene_name(e: &Entry) -> Option<&str> {
    let g = e.genes.first()?;
    g.name
        .as_ref()
        .or_else(|| g.ordered_locus_names.first())
        .or_else(|| g.orf_names.first())
        .map(|v| v.value.as_str())
}

/// Encodes the rows of `table` for `entries` into `rows`; returns the column list.
fn encode_rows(
    table: &str,
    entries: &[&Entry],
    dataset: &str,
    release: &str,
    rows: &mut TextRows,
) -> &'static str {
    let evidence = |v: &psystem_uniprot::EvidencedValue| v.evidence.clone();
    match table {
        "protein" => {
            for e in entries {
                let flags: Vec<&str> = e
                    .description
                    .flags
                    .iter()
                    .map(|f| f.value.as_str())
                    .collect();
                rows.text(&e.primary_accession)
                    .text(&e.entry_name)
                    .bool(e.status == Status::Reviewed)
                    .text(dataset)
                    .text(release)
                    .opt_text(protein_name(e))
                    .array(&flags)
                    .opt_text(gene_name(e))
                    .text(&e.organism)
                    .int(e.taxonomy.ncbi_taxid)
                    .array(&e.taxonomy.evidence)
                    .array(&e.lineage)
                    .array(&e.organelles)
                    .int(e.protein_existence.level)
                    .date(e.dates.created)
                    .text(&e.dates.created_in)
                    .date(e.dates.sequence_updated)
                    .int(e.dates.sequence_version)
                    .date(e.dates.entry_updated)
                    .int(e.dates.entry_version)
                    .int(e.sequence.length)
                    .int(e.sequence.molecular_weight)
                    .text(&e.sequence.crc64)
                    .text(&e.sequence.residues)
                    .text(&e.sequence_md5)
                    .text(&e.content_md5)
                    .json(&e.description)
                    .json(&e.genes)
                    .json(&e.hosts)
                    .json(&e.comments);
                rows.end_row();
            }
            "accession, entry_name, reviewed, dataset, release, protein_name, flags, gene, organism, taxonomy_id, \
             taxonomy_evidence, lineage, organelles, protein_existence, created, created_in, sequence_updated, \
             sequence_version, entry_updated, entry_version, length, mass, crc64, sequence, sequence_md5, \
             content_md5, description, genes, hosts, comments"
        }
        "protein_accession" => {
            for e in entries {
                let mut secondary: Vec<&str> =
                    e.secondary_accessions.iter().map(String::as_str).collect();
                secondary.sort_unstable();
                secondary.dedup();
                for s in secondary {
                    rows.text(&e.primary_accession).text(s);
                    rows.end_row();
                }
            }
            "accession, secondary_accession"
        }
        "protein_xref" => {
            for e in entries {
                for (i, x) in e.cross_references.iter().enumerate() {
                    rows.text(&e.primary_accession)
                        .int(i as i32 + 1)
                        .text(&x.database)
                        .text(&x.id)
                        .array(&x.properties)
                        .opt_text(x.isoform.as_deref());
                    rows.end_row();
                }
            }
            "accession, ordinal, database, id, properties, isoform"
        }
        "protein_feature" => {
            for e in entries {
                for (i, f) in e.features.iter().enumerate() {
                    rows.text(&e.primary_accession)
                        .int(i as i32 + 1)
                        .text(&f.feature_type)
                        .opt_text(f.location.sequence.as_deref())
                        .opt_int(f.location.start.value)
                        .text(modifier(f.location.start.modifier))
                        .opt_int(f.location.end.value)
                        .text(modifier(f.location.end.modifier))
                        .json(&f.qualifiers);
                    rows.end_row();
                }
            }
            "accession, ordinal, type, isoform, start_position, start_modifier, end_position, end_modifier, qualifiers"
        }
        "protein_keyword" => {
            for e in entries {
                for (i, k) in e.keywords.iter().enumerate() {
                    rows.text(&e.primary_accession)
                        .int(i as i32 + 1)
                        .text(&k.value)
                        .array(&evidence(k));
                    rows.end_row();
                }
            }
            "accession, ordinal, keyword, evidence"
        }
        "protein_reference" => {
            for e in entries {
                for (i, r) in e.references.iter().enumerate() {
                    rows.text(&e.primary_accession)
                        .int(i as i32 + 1)
                        .int(r.number)
                        .array(&r.evidence)
                        .opt_text(r.position.as_deref())
                        .json(&r.comments)
                        .json(&r.cross_references)
                        .array(&r.groups)
                        .array(&r.authors)
                        .opt_text(r.title.as_deref())
                        .text(&r.location);
                    rows.end_row();
                }
            }
            "accession, ordinal, number, evidence, position, comments, xrefs, groups, authors, title, location"
        }
        other => unreachable!("no protein table {other}"),
    }
}
