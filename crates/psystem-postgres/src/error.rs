//! The errors of the Postgres destination.
//!
//! Messages name the table, column and row involved and say what to do. Database errors keep the sqlx error as
//! their `#[source]` (print the chain, e.g. anyhow's `{:#}`, to see the server's message). No message ever
//! contains a password: URLs are passed through [`crate::redact_url`] first.

use arrow_schema::DataType;

/// An error of the Postgres destination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationError {
    /// The destination database could not be reached or refused the connection.
    #[error("cannot connect to the destination database {url}; check that the server runs and the URL, user and password are right")]
    Connect {
        /// The database URL with its password replaced by `***`.
        url: String,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },

    /// Applying a ledger migration (schema `psystem`) failed; nothing of it was applied.
    #[error("cannot apply ledger migration {version} (schema psystem); check that the user may create schemas and tables in this database")]
    Migrate {
        /// The migration version that failed (0 = the bookkeeping before any migration).
        version: i32,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },

    /// The ledger in the database was written by a newer psystem than this one.
    #[error("the psystem ledger in this database is at version {found}, newer than the {supported} this program knows; upgrade psystem")]
    LedgerTooNew {
        /// The newest migration recorded in the database.
        found: i32,
        /// The newest migration this program knows.
        supported: i32,
    },

    /// A statement failed on the server; `context` says what psystem was doing and on which table.
    #[error("database error while {context}")]
    Database {
        /// What psystem was doing, naming the table and load.
        context: String,
        /// The underlying error, with the server's message.
        #[source]
        source: sqlx::Error,
    },

    /// An Arrow column type has no Postgres mapping yet (see docs/TYPES.md).
    #[error("column `{column}` has Arrow type {data_type}, which psystem cannot load into PostgreSQL yet; cast or drop the column in the entry's transform (supported types: docs/TYPES.md)")]
    UnsupportedType {
        /// The column name.
        column: String,
        /// The Arrow data type.
        data_type: DataType,
    },

    /// A text value contains a NUL character, which PostgreSQL text cannot store.
    #[error("column `{column}`, row {row} of the page (0-based) contains a NUL (\\0) character, which PostgreSQL text cannot store; clean the source value or load the column as binary")]
    NulInText {
        /// The column name.
        column: String,
        /// The row index inside the record batch (0-based).
        row: usize,
    },

    /// A value cannot be represented in its PostgreSQL type.
    #[error("column `{column}`, row {row} of the page (0-based): {detail}")]
    ValueOutOfRange {
        /// The column name.
        column: String,
        /// The row index inside the record batch (0-based).
        row: usize,
        /// What is wrong with the value.
        detail: String,
    },

    /// A value of a file cannot be loaded ([`DestinationError::NulInText`] or
    /// [`DestinationError::ValueOutOfRange`] placed in the file its row came from, see
    /// [`DestinationError::in_file`]).
    #[error("{place}, column `{column}`: {detail}")]
    ValueInFile {
        /// The file and the place in it, e.g. `data.csv, line 3` or `part-0.parquet, row 7` (1-based).
        place: String,
        /// The column name.
        column: String,
        /// What is wrong with the value and what to do.
        detail: String,
    },

    /// A schema, table or column name cannot be used as a PostgreSQL identifier.
    #[error("`{identifier}` cannot be used as a PostgreSQL name: {reason}; rename it in the entry's transform or destination")]
    InvalidIdentifier {
        /// The offending name.
        identifier: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// The load specification is inconsistent (e.g. `merge` without a primary key).
    #[error("load of job `{job_key}` is misconfigured: {message}")]
    InvalidSpec {
        /// The job key.
        job_key: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// The existing destination table lacks columns that the source provides.
    #[error("table {table} has no column(s) `{}` that the source provides; adding columns is not supported yet: drop or rename the table, or load with mode `replace`", missing.join("`, `"))]
    SchemaMismatch {
        /// The table, `schema.name`.
        table: String,
        /// The missing column names.
        missing: Vec<String>,
    },

    /// An existing column has a PostgreSQL type that differs from the one the Arrow type maps to.
    #[error("column `{column}` of table {table} has type {found}, but the source delivers {expected}; change the column type, cast in the transform, or load with mode `replace`")]
    ColumnTypeMismatch {
        /// The table, `schema.name`.
        table: String,
        /// The column name.
        column: String,
        /// The PostgreSQL type the Arrow type maps to.
        expected: String,
        /// The PostgreSQL type of the existing column.
        found: String,
    },

    /// `merge` needs a primary key or unique index on exactly the primary-key columns of the existing table.
    #[error("table {table} has no primary key or unique index on `{}`, which `merge` needs; add one (ALTER TABLE … ADD PRIMARY KEY) or load with mode `replace`", columns.join("`, `"))]
    MissingUniqueKey {
        /// The table, `schema.name`.
        table: String,
        /// The primary-key columns of the load.
        columns: Vec<String>,
    },

    /// A release `merge` applies its changes with one `MERGE` statement, which PostgreSQL has from version 15
    /// (every version still supported upstream).
    #[error("merging a release into {table} needs PostgreSQL 15 or later (the MERGE command); the server is {version}: upgrade it or load with mode `replace`")]
    MergeNeedsPostgres15 {
        /// The table, `schema.name`.
        table: String,
        /// The server's version (`SHOW server_version`).
        version: String,
    },

    /// A record batch does not have the schema the load was opened with.
    #[error("a page for table {table} does not match the load's schema: {detail}")]
    BatchSchemaMismatch {
        /// The table, `schema.name`.
        table: String,
        /// The difference.
        detail: String,
    },

    /// The unfinished load of this job targets another table or mode than the one requested.
    #[error("job `{job_key}` has an unfinished load #{load_id} that {detail}; resume it with its original settings or restart the job")]
    ResumeMismatch {
        /// The job key.
        job_key: String,
        /// The unfinished load.
        load_id: i64,
        /// The difference.
        detail: String,
    },

    /// A restart cannot remove the rows an abandoned `append` load wrote, because they cannot be told apart
    /// from the table's other rows; nothing was changed.
    #[error("cannot restart job {job_key}: its unfinished load #{load_id} appended {rows} rows to {table}, and psystem cannot tell them apart from the table's other rows ({reason}); nothing was changed. Delete those rows yourself, then run `psystem cancel {job_key}` and run the job again without --restart")]
    RestartCannotRemoveRows {
        /// The job key.
        job_key: String,
        /// The abandoned load.
        load_id: i64,
        /// The table, `schema.name`.
        table: String,
        /// The rows the load committed, per the ledger.
        rows: u64,
        /// Why its rows cannot be identified.
        reason: String,
    },

    /// No load with this id is recorded in the ledger.
    #[error("load #{load_id} is not in the ledger (psystem.loads)")]
    LoadNotFound {
        /// The load id.
        load_id: i64,
    },

    /// The load is no longer running (another process cancelled, restarted or finished it); nothing was written.
    #[error("load #{load_id} is {state}, not running; another process may have restarted or finished this job — open the load again")]
    LoadNotActive {
        /// The load id.
        load_id: i64,
        /// Its state in the ledger.
        state: String,
    },

    /// The handle is behind the ledger: pages were committed through another handle, or the answer to a commit
    /// was lost; nothing was written.
    #[error("load #{load_id} has {found} committed pages in the ledger, this handle knows {expected}; another process may be writing this load, or the answer to a commit was lost — open the load again to continue from the ledger's checkpoint")]
    StaleHandle {
        /// The load id.
        load_id: i64,
        /// The pages the handle knows.
        expected: u64,
        /// The pages recorded in the ledger.
        found: u64,
    },

    /// The staging table of a `replace` load is gone, so its committed pages are lost.
    #[error("the staging table {staging} of load #{load_id} no longer exists; its committed pages are lost — restart the job")]
    StagingMissing {
        /// The load id.
        load_id: i64,
        /// The staging table, `schema.name`.
        staging: String,
    },

    /// The ledger holds a value this program cannot interpret.
    #[error("the ledger row of load #{load_id} is not valid: {detail}")]
    CorruptLedger {
        /// The load id.
        load_id: i64,
        /// What is wrong.
        detail: String,
    },

    /// The unique key of an entity differs from the one its ID cache entries were made with.
    #[error("entity `{entity}` is cached with unique key `{}` but is now declared with `{}`; cached target IDs cannot be matched to the new keys — restore the old unique key, or run `psystem idcache clear --entity {entity}` to forget the cached IDs (new IDs will then be assigned)", old.join("`, `"), new.join("`, `"))]
    KeyDefinitionChanged {
        /// The entity.
        entity: String,
        /// The key columns in the cache.
        old: Vec<String>,
        /// The key columns declared now.
        new: Vec<String>,
    },

    /// Rows refer to entities the ID cache does not know (and that this run does not load).
    #[error("{count} value(s) of {column} refer to {entity} entities that are not in the ID cache, e.g. {}; load the {entity} entry first (or in the same run), or fix the references", keys.join(", "))]
    UnresolvedReferences {
        /// The referencing column(s).
        column: String,
        /// The referenced entity.
        entity: String,
        /// How many distinct keys are unresolved.
        count: usize,
        /// Up to 20 of them.
        keys: Vec<String>,
    },

    /// An entity specification of the ID cache cannot be used.
    #[error("entity `{entity}`: {message}")]
    InvalidEntitySpec {
        /// The entity.
        entity: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// An entity whose target IDs come from a column has no ID in that column for a row.
    #[error("entity `{entity}`: the row with unique key `{key}` has no target ID (null or empty) in its ID column; fill the column or use generated IDs")]
    ProvidedIdMissing {
        /// The entity.
        entity: String,
        /// The unique key of the row.
        key: String,
    },

    /// A target ID from the source differs from the one cached for the same unique key.
    #[error("entity `{entity}`: unique key `{key}` has target ID `{cached}` in the ID cache but `{provided}` in the data; the cache never changes an ID — fix the data, or clear the entity's cache (`psystem idcache clear --entity {entity}`)")]
    ProvidedIdConflict {
        /// The entity.
        entity: String,
        /// The unique key.
        key: String,
        /// The ID in the cache (or given first in the same call).
        cached: String,
        /// The ID in the data.
        provided: String,
    },

    /// A target ID from the source already belongs to another unique key.
    #[error("entity `{entity}`: target ID `{id}` given for unique key `{key}` already belongs to unique key `{owner}`; target IDs must be unique per entity")]
    ProvidedIdTaken {
        /// The entity.
        entity: String,
        /// The unique key the ID was given for.
        key: String,
        /// The target ID.
        id: String,
        /// The unique key that holds the ID.
        owner: String,
    },

    /// No free target ID was found after many random draws: the ID space is (nearly) full.
    #[error("entity `{entity}`: no unused target ID found after {attempts} attempts; make the IDs longer (`length` of the prefixed strategy)")]
    IdSpaceExhausted {
        /// The entity.
        entity: String,
        /// How many rounds of draws were made.
        attempts: u32,
    },

    /// An ID cache query has out-of-range paging values.
    #[error("invalid ID cache query: {detail}")]
    InvalidCacheQuery {
        /// What is wrong.
        detail: String,
    },

    /// Reading or writing an ID cache CSV file failed.
    #[error("{context}")]
    CacheCsv {
        /// What psystem was doing.
        context: String,
        /// The underlying error (I/O or CSV syntax, with its position).
        #[source]
        source: csv::Error,
    },

    /// A row of an ID cache CSV file is not valid.
    #[error("ID cache import, line {line}: {detail}")]
    CacheImport {
        /// The line of the file (1 = the header).
        line: u64,
        /// What is wrong.
        detail: String,
    },
    // --- Dataset loads of releases (crate::release_load, docs/LOAD_MODES.md) -------------------------------
    /// The staging table of a dataset load holds rows with the same primary key; nothing was changed, the
    /// staging table was dropped and the load marked failed.
    #[error("the new data for table {table} has {count} primary-key value(s) on `{}` that occur more than once, e.g. {}; nothing was changed — fix the source data or choose another primary key", columns.join("`, `"), examples.join(", "))]
    DuplicateKeys {
        /// The target table, `schema.name`.
        table: String,
        /// The primary-key columns.
        columns: Vec<String>,
        /// How many distinct key values occur more than once.
        count: u64,
        /// Up to 5 of them, each rendered as `(a, b)` with its number of rows, e.g. `(7) ×2`.
        examples: Vec<String>,
    },

    /// The staging table of a dataset load holds rows with a NULL in a primary-key column; nothing was changed.
    #[error("the new data for table {table} has {count} row(s) with a NULL in the primary key `{}`; nothing was changed — fix the source data or choose another primary key", columns.join("`, `"))]
    NullKeys {
        /// The target table, `schema.name`.
        table: String,
        /// The primary-key columns.
        columns: Vec<String>,
        /// How many rows have a NULL key column.
        count: u64,
    },

    /// A column of the release has a type that the existing column cannot be widened to.
    #[error("column `{column}` of table {table} has type {existing}, but the release delivers {incoming}, which is not a widening; load with allow_casts (`psystem run --allow-casts`) to convert it (ALTER COLUMN … TYPE {incoming} USING …), or rename the column")]
    IncompatibleColumn {
        /// The table, `schema.name`.
        table: String,
        /// The column name.
        column: String,
        /// The type of the existing column (`format_type`).
        existing: String,
        /// The type the release's Arrow type maps to.
        incoming: String,
    },

    /// `finish` was called while some work units of the load are not done; nothing was changed.
    #[error("load #{load_id} cannot finish: {pending} work unit(s) pending, {running} running, {failed} failed (e.g. {}); copy or retry them first", examples.join(", "))]
    UnitsNotDone {
        /// The load id.
        load_id: i64,
        /// Units not claimed yet.
        pending: u64,
        /// Units being copied.
        running: u64,
        /// Units that failed too often.
        failed: u64,
        /// Up to 5 unit keys that are not done.
        examples: Vec<String>,
    },

    /// Reading the batches of a work unit failed; nothing of the unit was written.
    #[error(
        "work unit `{unit}` of load #{load_id}: reading its data failed; nothing of it was written"
    )]
    UnitSource {
        /// The load id.
        load_id: i64,
        /// The unit key (e.g. the file's path in the release).
        unit: String,
        /// The source's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The work unit is no longer this worker's (its heartbeat expired and another worker reclaimed it, or it is
    /// done); nothing was written.
    #[error("work unit `{unit}` of load #{load_id} is no longer held by this worker: {detail}")]
    UnitLost {
        /// The load id.
        load_id: i64,
        /// The unit key.
        unit: String,
        /// What the ledger says about it now.
        detail: String,
    },

    /// A replace cannot swap the table because views depend on it; nothing was changed.
    #[error("table {table} cannot be replaced because views depend on it: {}; drop them (DROP VIEW …), load, and create them again, or load with mode `merge`", views.join(", "))]
    DependentViews {
        /// The table, `schema.name`.
        table: String,
        /// The dependent views, `schema.name`.
        views: Vec<String>,
    },

    /// A row of `psystem.files` holds a value this program cannot interpret.
    #[error("the file record `{path}` of {source_name} {release} in psystem.files is not valid: {detail}")]
    CorruptFileRecord {
        /// The source.
        source_name: String,
        /// The release.
        release: String,
        /// The file's path in the release.
        path: String,
        /// What is wrong.
        detail: String,
    },
    // --- end of dataset loads ----------------------------------------------------------------------------------
    /// Nothing to export: the protein table does not exist (no UniProt release was loaded into it).
    #[error(
        "there is no protein table {table}: load a UniProt release first (`psystem run uniprot`)"
    )]
    NoProteinTable {
        /// The table (`schema.table`).
        table: String,
    },

    /// An accession occurs more than once in a UniProt release; the unit that met it again wrote nothing.
    #[error("accession {accession} occurs more than once in the release (again in work unit `{unit}` of load #{load_id}); nothing of that unit was written")]
    DuplicateAccession {
        /// The load id.
        load_id: i64,
        /// The unit key.
        unit: String,
        /// The repeated accession (from the server's key violation detail; `?` when it gives none).
        accession: String,
    },

    /// Writing an export failed (disk full, closed pipe).
    #[error("writing the export to {target} failed")]
    ExportWrite {
        /// Where the export was going (a path or `stdout`).
        target: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    // --- The server's own troubles (issue 13, cases 15 and 17) ------------------------------------------------
    /// The database server ran out of a resource (SQLSTATE class 53: `53100` disk full — a data file or the WAL
    /// could not be extended, the server's log says `No space left on device`; `53200` out of memory; `53300`
    /// too many connections; `53400` a configured limit). Nothing of the failed transaction was written; the
    /// committed work is kept, so the load resumes once the server has what it lacks.
    #[error("the database server ran out of {} while {context} (SQLSTATE {sqlstate}); nothing of that step was written and the committed work is kept — {}, then run `psystem resume` with the job", resource_name(sqlstate), resource_hint(sqlstate))]
    ServerOutOfResources {
        /// What psystem was doing, naming the table and load.
        context: String,
        /// The SQLSTATE (`53100`, `53200`, `53300`, `53400`, …).
        sqlstate: String,
        /// The underlying error, with the server's message (e.g. `could not extend file …: No space left on device`).
        #[source]
        source: sqlx::Error,
    },

    /// The server closed the connection in the middle of a statement (it was stopped or restarted, it crashed —
    /// e.g. a PANIC when it could not write its WAL because its disk is full — or an administrator ended the
    /// session). Nothing of the failed transaction was written; the committed work is kept.
    #[error("the database server closed the connection while {context}; likely causes: the server was stopped or restarted, it ran out of disk space (its log then says `No space left on device`, often with a PANIC) or memory, or an administrator ended the session (pg_terminate_backend) — nothing of that step was written and the committed work is kept: check the server's log, fix the cause, then run `psystem resume` with the job")]
    ConnectionLost {
        /// What psystem was doing, naming the table and load.
        context: String,
        /// The underlying error (an I/O error, or the server's `57P01`/`57P02`/`57P03` notice).
        #[source]
        source: sqlx::Error,
    },

    /// Another session held a lock on the target table that the load needs for longer than the lock timeout
    /// ([`crate::locks::lock_timeout`], `PSYSTEM_LOCK_TIMEOUT`); nothing of the step was written, the committed
    /// work is kept.
    #[error("table {table} is locked by another session: {}; psystem waited {waited} for the lock and gave up — wait for that session to finish (or end it: SELECT pg_terminate_backend(<process>)), then run `psystem resume` with the job (committed work is kept; PSYSTEM_LOCK_TIMEOUT sets how long to wait)", holders_text(holders))]
    TableLocked {
        /// The table, `schema.name`.
        table: String,
        /// How long psystem waited, e.g. `10 s`.
        waited: String,
        /// The sessions holding a conflicting lock on it: process id, lock mode, and what `pg_stat_activity`
        /// shows of them (application, user, state, query) when readable.
        holders: Vec<String>,
        /// The server's `55P03` (lock_not_available) error.
        #[source]
        source: sqlx::Error,
    },
}

/// What a SQLSTATE of class 53 ran out of.
fn resource_name(sqlstate: &str) -> &'static str {
    match sqlstate {
        "53100" => "disk space",
        "53200" => "memory",
        "53300" => "connections",
        _ => "a configured resource limit",
    }
}

/// What to do about a SQLSTATE of class 53.
fn resource_hint(sqlstate: &str) -> &'static str {
    match sqlstate {
        "53100" => {
            "free space on the database server's disk (its log says `No space left on device`)"
        }
        "53200" => {
            "give the database server more memory or lower its work_mem and maintenance_work_mem"
        }
        "53300" => "close other connections or raise the server's max_connections",
        _ => "raise the server limit its log names",
    }
}

fn holders_text(holders: &[String]) -> String {
    if holders.is_empty() {
        "no session holds a conflicting lock any more (it was released meanwhile, or others were queued for it)"
            .into()
    } else {
        holders.join("; ")
    }
}

/// What [`DestinationError::NulInText`] says about the value.
const NUL_DETAIL: &str =
    "the value contains a NUL (\\0) character, which PostgreSQL text cannot store; remove it from the source value";

impl DestinationError {
    /// The 0-based row of the record batch that a value error ([`DestinationError::NulInText`],
    /// [`DestinationError::ValueOutOfRange`]) is about; `None` for every other error.
    pub fn value_row(&self) -> Option<usize> {
        match self {
            DestinationError::NulInText { row, .. }
            | DestinationError::ValueOutOfRange { row, .. } => Some(*row),
            _ => None,
        }
    }

    /// A value error ([`DestinationError::NulInText`], [`DestinationError::ValueOutOfRange`]) placed in the file
    /// its row came from: a [`DestinationError::ValueInFile`] at `place` (e.g. `data.csv, line 3`). Every other
    /// error is returned as it is.
    pub fn in_file(self, place: impl Into<String>) -> DestinationError {
        match self {
            DestinationError::NulInText { column, .. } => DestinationError::ValueInFile {
                place: place.into(),
                column,
                detail: NUL_DETAIL.to_string(),
            },
            DestinationError::ValueOutOfRange { column, detail, .. } => {
                DestinationError::ValueInFile {
                    place: place.into(),
                    column,
                    detail,
                }
            }
            other => other,
        }
    }

    /// A [`DestinationError::Database`] with the given context.
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DestinationError {
        let context = context.into();
        move |source| DestinationError::from_server(context, source)
    }

    /// Classifies a failed statement: the server out of a resource (SQLSTATE class 53) →
    /// [`DestinationError::ServerOutOfResources`]; the connection lost (an I/O error, or the server's `57P01`
    /// admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now) → [`DestinationError::ConnectionLost`];
    /// anything else → [`DestinationError::Database`].
    pub(crate) fn from_server(context: String, source: sqlx::Error) -> DestinationError {
        let code = source
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned());
        match code.as_deref() {
            Some(c) if c.starts_with("53") => DestinationError::ServerOutOfResources {
                context,
                sqlstate: c.to_string(),
                source,
            },
            Some("57P01" | "57P02" | "57P03") => {
                DestinationError::ConnectionLost { context, source }
            }
            _ if is_connection_lost(&source) => {
                DestinationError::ConnectionLost { context, source }
            }
            _ => DestinationError::Database { context, source },
        }
    }

    /// True for the errors after which the load stays resumable as it is: the server out of a resource, the
    /// connection lost, a table locked too long. A release finish that fails so keeps its staging table.
    pub fn is_server_trouble(&self) -> bool {
        matches!(
            self,
            DestinationError::ServerOutOfResources { .. }
                | DestinationError::ConnectionLost { .. }
                | DestinationError::TableLocked { .. }
        )
    }
}

/// An I/O error that means the server is gone: reset, aborted, broken pipe, end of stream.
fn is_connection_lost(e: &sqlx::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::NotConnected
        ),
        _ => false,
    }
}
