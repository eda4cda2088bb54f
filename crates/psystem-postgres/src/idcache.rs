//! The ID cache: stable target IDs for entities, remembered under their unique keystrings.
//!
//! Like the Kids First ingest library's ID cache, psystem gives every entity (participant, phenotype, …) a
//! *target ID* the first time it sees the entity's unique key, and the same ID every time after, in every run. The
//! cache lives in the destination database (ledger tables, migration 2), so it travels with the data:
//!
//! - `psystem.id_cache (target, entity, unique_key, target_id, first_seen_run, last_seen_run)` — primary key
//!   `(target, entity, unique_key)`, unique `(target, entity, target_id)`. `*_seen_run` are load ids
//!   (`psystem.loads.id`); 0 = unknown (an entry imported without run numbers).
//! - `psystem.entity_keys (target, entity, key_columns, id_strategy, created_at)` — the unique-key columns (and ID
//!   strategy) an entity was registered with; a different key definition later is refused.
//!
//! Unique keys are keystrings built by [`psystem_core::unique_key`]; this module takes them as they are.
//!
//! The *target* ([`CacheTarget`]) names the database and schema the IDs are for (`host:port/database/schema`), so
//! two destinations never share entries even when their caches live in one database.
//!
//! Writes that belong to a load ([`register_entity`], [`assign`]) take a connection and run inside the caller's
//! transaction (commit them with the page); the browsing operations take a pool. Every value is bound; the only
//! SQL fragments that vary come from fixed whitelists. The full description, with the benchmark, is
//! `docs/ID_CACHE.md`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{Read, Write};

use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};
use tracing::{debug, info};

use crate::DestinationError;

/// The default number of random characters of a [`IdStrategy::Prefixed`] ID.
pub const DEFAULT_ID_LENGTH: usize = 8;

/// The longest random part of a [`IdStrategy::Prefixed`] ID.
pub const MAX_ID_LENGTH: usize = 64;

/// The Crockford base32 alphabet (no `I`, `L`, `O`, `U`) used for prefixed IDs.
pub const CROCKFORD_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// How many rounds of new random IDs [`assign`] draws for keys whose IDs collided before giving up.
pub const MAX_ID_ATTEMPTS: u32 = 64;

/// The largest page [`list`] returns.
pub const MAX_PAGE: i64 = 10_000;

/// Rows per round trip of [`export_csv`] and [`import_csv`].
const CSV_CHUNK: usize = 10_000;

/// Which destination cache entries belong to: `host:port/database/schema`.
///
/// Built by [`CacheTarget::new`] from the destination URL and schema, **without user or password**, so the same
/// database reached as another user shares the cache, and a password change does not lose it:
///
/// - host: the URL's host (lower case), else the `host` query parameter (a socket directory), else `localhost`;
/// - port: the URL's port, else the `port` query parameter, else `5432`;
/// - database: the URL's path (percent-decoded), else the `dbname` query parameter, else the user name (libpq's
///   default), else `postgres`.
///
/// libpq key/value strings (`host=h port=p dbname=d`) are understood too. Names are taken as written: `localhost`
/// and `127.0.0.1` are different targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheTarget(String);

impl CacheTarget {
    /// The target of the database at `url`, schema `schema`.
    ///
    /// ```
    /// use psystem_postgres::idcache::CacheTarget;
    /// let t = CacheTarget::new("postgres://me:secret@DB.example.org:6543/kf?sslmode=require", "public");
    /// assert_eq!(t.as_str(), "db.example.org:6543/kf/public");
    /// assert_eq!(CacheTarget::new("postgres://localhost/x", "s").as_str(), "localhost:5432/x/s");
    /// ```
    pub fn new(url: &str, schema: &str) -> CacheTarget {
        let (host, port, database) = connection_parts(url);
        CacheTarget(format!("{host}:{port}/{database}/{schema}"))
    }

    /// A target from its string form, as stored in the cache (e.g. read from [`EntitySummary::target`]).
    pub fn from_raw(target: impl Into<String>) -> CacheTarget {
        CacheTarget(target.into())
    }

    /// The target as stored in `psystem.id_cache.target`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Host, port and database of a connection URL or libpq key/value string.
fn connection_parts(url: &str) -> (String, String, String) {
    let nonempty = |s: &String| !s.is_empty();
    if let Ok(parsed) = url::Url::parse(url) {
        if parsed.scheme().starts_with("postgres") {
            let query: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
            let host = parsed
                .host_str()
                .map(|h| h.to_lowercase())
                .filter(nonempty)
                .or_else(|| query.get("host").cloned().filter(nonempty))
                .unwrap_or_else(|| "localhost".into());
            let port = parsed
                .port()
                .map(|p| p.to_string())
                .or_else(|| query.get("port").cloned().filter(nonempty))
                .unwrap_or_else(|| "5432".into());
            let user = percent_decode(parsed.username());
            let database = Some(percent_decode(parsed.path().trim_start_matches('/')))
                .filter(nonempty)
                .or_else(|| query.get("dbname").cloned().filter(nonempty))
                .or_else(|| query.get("user").cloned().filter(nonempty))
                .or_else(|| Some(user).filter(nonempty))
                .unwrap_or_else(|| "postgres".into());
            return (host, port, database);
        }
    }
    // libpq key/value form: `host=h port=5432 dbname=d user=u` (values may be single-quoted).
    let mut pairs = HashMap::new();
    for part in url.split_whitespace() {
        if let Some((k, v)) = part.split_once('=') {
            pairs.insert(k.to_ascii_lowercase(), v.trim_matches('\'').to_string());
        }
    }
    let get = |k: &str| pairs.get(k).cloned().filter(nonempty);
    (
        get("host")
            .map(|h| h.to_lowercase())
            .unwrap_or_else(|| "localhost".into()),
        get("port").unwrap_or_else(|| "5432".into()),
        get("dbname")
            .or_else(|| get("user"))
            .unwrap_or_else(|| "postgres".into()),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How new target IDs are made.
///
/// Serialized (in `psystem.entity_keys.id_strategy` and JSON output) with a `kind` tag:
/// `{"kind": "uuid_v7"}`, `{"kind": "prefixed", "prefix": "PT_", "length": 8}` (`length` optional, default 8),
/// `{"kind": "from_column", "column": "participant_id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StrategyRepr", into = "StrategyRepr")]
pub enum IdStrategy {
    /// A UUID version 7 (time-ordered, random), lower-case hyphenated: `0190a5c4-7d2e-7b3c-9f4e-1a2b3c4d5e6f`.
    UuidV7,
    /// `prefix` followed by `length` random Crockford base32 characters (`0-9`, `A-Z` without `I L O U`):
    /// `PT_3QMCQXHZ`. 8 characters give 32⁸ ≈ 1.1·10¹² IDs; a collision is drawn again.
    Prefixed {
        /// The fixed prefix, e.g. `PT_`.
        prefix: String,
        /// The number of random characters (1..=64; default [`DEFAULT_ID_LENGTH`]).
        length: usize,
    },
    /// The ID is in this source column (e.g. IDs the study already assigned); it must be present and must not
    /// contradict the cache.
    FromColumn(String),
}

impl IdStrategy {
    /// `prefix` + [`DEFAULT_ID_LENGTH`] random characters.
    pub fn prefixed(prefix: impl Into<String>) -> IdStrategy {
        IdStrategy::Prefixed {
            prefix: prefix.into(),
            length: DEFAULT_ID_LENGTH,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum StrategyRepr {
    UuidV7,
    Prefixed {
        prefix: String,
        #[serde(default = "default_length")]
        length: usize,
    },
    FromColumn {
        column: String,
    },
}

fn default_length() -> usize {
    DEFAULT_ID_LENGTH
}

impl From<StrategyRepr> for IdStrategy {
    fn from(r: StrategyRepr) -> IdStrategy {
        match r {
            StrategyRepr::UuidV7 => IdStrategy::UuidV7,
            StrategyRepr::Prefixed { prefix, length } => IdStrategy::Prefixed { prefix, length },
            StrategyRepr::FromColumn { column } => IdStrategy::FromColumn(column),
        }
    }
}

impl From<IdStrategy> for StrategyRepr {
    fn from(s: IdStrategy) -> StrategyRepr {
        match s {
            IdStrategy::UuidV7 => StrategyRepr::UuidV7,
            IdStrategy::Prefixed { prefix, length } => StrategyRepr::Prefixed { prefix, length },
            IdStrategy::FromColumn(column) => StrategyRepr::FromColumn { column },
        }
    }
}

/// An entity of the cache: its name, its unique-key columns (in keystring order) and how its IDs are made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntitySpec {
    /// The entity name, e.g. `participant`.
    pub entity: String,
    /// The columns whose values make the unique keystring, in order.
    pub unique_key: Vec<String>,
    /// How new target IDs are made.
    pub strategy: IdStrategy,
}

/// What [`assign`] gave out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Assigned {
    /// The target ID of every key, in the order of the keys.
    pub ids: Vec<String>,
    /// How many distinct keys were new to the cache.
    pub new_keys: usize,
}

/// One entity of the cache, as [`entities`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntitySummary {
    /// The entity name.
    pub entity: String,
    /// The target (`host:port/database/schema`).
    pub target: String,
    /// The unique-key columns it was registered with; empty when entries exist without a registration (imported).
    pub key_columns: Vec<String>,
    /// The ID strategy it was registered with, when known.
    pub id_strategy: Option<IdStrategy>,
    /// The number of cached entries.
    pub count: i64,
    /// The newest load that saw one of its keys (`None` without entries).
    pub last_seen_run: Option<i64>,
}

/// One cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheEntry {
    /// The unique keystring.
    pub unique_key: String,
    /// The target ID.
    pub target_id: String,
    /// The load that first gave out the ID (0 = unknown).
    pub first_seen_run: i64,
    /// The newest load that saw the key (0 = unknown).
    pub last_seen_run: i64,
}

/// The column a [`list`] page is sorted by (ties by unique key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSort {
    /// The unique keystring (database collation).
    #[default]
    UniqueKey,
    /// The target ID.
    TargetId,
    /// The first load that saw the key.
    FirstSeen,
    /// The newest load that saw the key.
    LastSeen,
}

impl CacheSort {
    /// The ORDER BY column (fixed whitelist).
    fn column(self) -> &'static str {
        match self {
            CacheSort::UniqueKey => "unique_key",
            CacheSort::TargetId => "target_id",
            CacheSort::FirstSeen => "first_seen_run",
            CacheSort::LastSeen => "last_seen_run",
        }
    }
}

/// A page request of [`list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheQuery {
    /// Case-insensitive filter on the unique key **or** the target ID: a substring, or, when it starts with `^`,
    /// a prefix (`^PT_3Q`). `None` or empty = every entry.
    pub search: Option<String>,
    /// The sort column.
    pub sort: CacheSort,
    /// Sort descending.
    pub descending: bool,
    /// Entries to skip (≥ 0).
    pub offset: i64,
    /// Entries to return (0..=[`MAX_PAGE`]).
    pub limit: i64,
}

impl Default for CacheQuery {
    fn default() -> CacheQuery {
        CacheQuery {
            search: None,
            sort: CacheSort::UniqueKey,
            descending: false,
            offset: 0,
            limit: 50,
        }
    }
}

/// One page of [`list`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CachePage {
    /// Entries matching the search (all pages).
    pub total: i64,
    /// This page.
    pub entries: Vec<CacheEntry>,
}

/// An entry of an import file that was not imported because it contradicts the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportConflict {
    /// The line of the file (1 = the header).
    pub line: u64,
    /// The unique key in the file.
    pub unique_key: String,
    /// The target ID the cache holds for this key; `None` when the key is not cached (then `owner` is set).
    pub cached_id: Option<String>,
    /// The target ID in the file.
    pub file_id: String,
    /// The key that already holds `file_id`, when the ID is taken by another key.
    pub owner: Option<String>,
}

/// What [`import_csv`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ImportReport {
    /// Entries added.
    pub inserted: u64,
    /// Entries already cached with the same ID (left as they were).
    pub unchanged: u64,
    /// Entries refused because they contradict the cache (nothing was overwritten).
    pub conflicts: Vec<ImportConflict>,
}

fn invalid(entity: &str, message: impl Into<String>) -> DestinationError {
    DestinationError::InvalidEntitySpec {
        entity: entity.to_string(),
        message: message.into(),
    }
}

fn validate_spec(spec: &EntitySpec) -> Result<(), DestinationError> {
    let entity = &spec.entity;
    if entity.trim().is_empty() {
        return Err(invalid(entity, "the entity name is empty"));
    }
    if spec.unique_key.is_empty() {
        return Err(invalid(entity, "the unique key names no columns"));
    }
    let mut seen = HashSet::new();
    for column in &spec.unique_key {
        if !seen.insert(column) {
            return Err(invalid(
                entity,
                format!("column `{column}` appears twice in the unique key"),
            ));
        }
    }
    match &spec.strategy {
        IdStrategy::UuidV7 => {}
        IdStrategy::Prefixed { prefix, length } => {
            if !(1..=MAX_ID_LENGTH).contains(length) {
                return Err(invalid(
                    entity,
                    format!("the ID length must be 1 to {MAX_ID_LENGTH}, not {length}"),
                ));
            }
            if prefix.contains('\0') {
                return Err(invalid(entity, "the ID prefix contains a NUL character"));
            }
        }
        IdStrategy::FromColumn(column) => {
            if column.is_empty() {
                return Err(invalid(entity, "the ID column name is empty"));
            }
        }
    }
    Ok(())
}

/// Registers an entity's unique key for `target`, or checks it against the registered one.
///
/// The first call stores `spec.unique_key` (and the strategy) in `psystem.entity_keys`. Later calls with the same
/// key columns (same order) succeed; a different key definition is
/// [`DestinationError::KeyDefinitionChanged`] (the cached keys were built from other columns, so they would never
/// match again): the user restores the old key or clears the entity (`psystem idcache clear --entity E`, i.e.
/// [`clear`]). A changed strategy is accepted and recorded; it only affects IDs made from then on.
///
/// Runs on `conn`, inside the caller's transaction if it has one.
pub async fn register_entity(
    conn: &mut PgConnection,
    target: &CacheTarget,
    spec: &EntitySpec,
) -> Result<(), DestinationError> {
    validate_spec(spec)?;
    let entity = &spec.entity;
    let ctx = |what: &str| format!("registering entity `{entity}` in the ID cache: {what}");
    sqlx::query(
        "INSERT INTO psystem.entity_keys (target, entity, key_columns, id_strategy, created_at) \
         VALUES ($1, $2, $3, $4, now()) ON CONFLICT (target, entity) DO NOTHING",
    )
    .bind(target.as_str())
    .bind(entity)
    .bind(Json(&spec.unique_key))
    .bind(Json(&spec.strategy))
    .execute(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("insert")))?;
    let row = sqlx::query(
        "SELECT key_columns, id_strategy FROM psystem.entity_keys WHERE target = $1 AND entity = $2",
    )
    .bind(target.as_str())
    .bind(entity)
    .fetch_one(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx("read")))?;
    let stored: serde_json::Value = row.get("key_columns");
    let old: Vec<String> = serde_json::from_value(stored.clone()).map_err(|e| {
        invalid(
            entity,
            format!("the stored key definition {stored} is not a list of column names ({e}); clear the entity"),
        )
    })?;
    if old != spec.unique_key {
        return Err(DestinationError::KeyDefinitionChanged {
            entity: entity.clone(),
            old,
            new: spec.unique_key.clone(),
        });
    }
    let strategy: Option<serde_json::Value> = row.get("id_strategy");
    let same_strategy = strategy
        .and_then(|v| serde_json::from_value::<IdStrategy>(v).ok())
        .is_some_and(|s| s == spec.strategy);
    if !same_strategy {
        sqlx::query(
            "UPDATE psystem.entity_keys SET id_strategy = $3 WHERE target = $1 AND entity = $2",
        )
        .bind(target.as_str())
        .bind(entity)
        .bind(Json(&spec.strategy))
        .execute(&mut *conn)
        .await
        .map_err(DestinationError::db(ctx("record the ID strategy")))?;
        info!(entity = %entity, target = %target, "ID strategy of the entity recorded.");
    }
    Ok(())
}

/// Draws one ID of a generating strategy.
fn generate_id(strategy: &IdStrategy, rng: &mut impl Rng) -> String {
    match strategy {
        IdStrategy::UuidV7 => uuid::Uuid::now_v7().to_string(),
        IdStrategy::Prefixed { prefix, length } => {
            let mut id = String::with_capacity(prefix.len() + length);
            id.push_str(prefix);
            for _ in 0..*length {
                id.push(CROCKFORD_ALPHABET[rng.random_range(0..32)] as char);
            }
            id
        }
        IdStrategy::FromColumn(_) => unreachable!("IDs from a column are not generated"),
    }
}

/// Draws one new ID for each of `count` keys, distinct from each other.
fn generate_ids(strategy: &IdStrategy, count: usize) -> Vec<String> {
    let mut rng = rand::rng();
    let mut seen = HashSet::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        // A small ID space may not hold `count` distinct IDs: after a few tries keep a duplicate, the database
        // refuses it and the next round draws again (or reports the space as exhausted).
        let mut id = generate_id(strategy, &mut rng);
        for _ in 0..16 {
            if !seen.contains(&id) {
                break;
            }
            id = generate_id(strategy, &mut rng);
        }
        seen.insert(id.clone());
        ids.push(id);
    }
    ids
}

/// Reads the cached IDs of `keys` (distinct) and moves their `last_seen_run` up to `run`; one statement.
async fn fetch_and_touch(
    conn: &mut PgConnection,
    target: &CacheTarget,
    entity: &str,
    keys: &[&str],
    run: i64,
) -> Result<HashMap<String, String>, DestinationError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "WITH k AS (SELECT unnest($3::text[]) AS unique_key), \
         cur AS (SELECT c.unique_key, c.target_id, c.last_seen_run FROM psystem.id_cache c \
                 JOIN k ON c.unique_key = k.unique_key WHERE c.target = $1 AND c.entity = $2), \
         touched AS (UPDATE psystem.id_cache c SET last_seen_run = $4 FROM cur \
                     WHERE c.target = $1 AND c.entity = $2 AND c.unique_key = cur.unique_key \
                     AND cur.last_seen_run < $4) \
         SELECT unique_key, target_id FROM cur",
    )
    .bind(target.as_str())
    .bind(entity)
    .bind(keys)
    .bind(run)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(format!(
        "reading the ID cache of entity `{entity}`"
    )))?;
    Ok(rows.into_iter().collect())
}

/// Gives every key its target ID: the cached one, or a new one that is stored.
///
/// - `keys`: unique keystrings ([`psystem_core::unique_key`]); the same key twice gets the same ID.
/// - `provided`: for [`IdStrategy::FromColumn`], the ID column's value of each key (same length as `keys`); a
///   null or empty ID is [`DestinationError::ProvidedIdMissing`], an ID different from the cached one (or from the one given
///   for the same key earlier in `keys`) is [`DestinationError::ProvidedIdConflict`], an ID that belongs to
///   another key is [`DestinationError::ProvidedIdTaken`]. Must be `None` for generating strategies.
/// - `run`: the load id; a new key gets `first_seen_run = last_seen_run = run`, a cached key keeps its ID and
///   `first_seen_run` and gets `last_seen_run = max(last_seen_run, run)`.
///
/// Bulk and inside the caller's transaction (commit it with the page, so a rolled-back page gives out no IDs):
/// one statement reads (and touches) the cached keys, one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO
/// NOTHING` stores the new ones. A generated ID that collides with a cached one (unique `(target, entity,
/// target_id)`) is simply not inserted; those keys draw again, up to [`MAX_ID_ATTEMPTS`] rounds
/// ([`DestinationError::IdSpaceExhausted`]). A key inserted meanwhile by a concurrent transaction is picked up
/// with the ID that transaction gave it (this needs the default READ COMMITTED isolation). Nothing in here ever
/// raises a database error on a conflict, so the caller's transaction stays usable. After an error of this
/// function, IDs it already stored may be in the transaction: roll it back (as a failed page does).
pub async fn assign(
    conn: &mut PgConnection,
    target: &CacheTarget,
    spec: &EntitySpec,
    keys: &[String],
    provided: Option<&[Option<String>]>,
    run: i64,
) -> Result<Assigned, DestinationError> {
    validate_spec(spec)?;
    let entity = spec.entity.as_str();
    let provided = match (&spec.strategy, provided) {
        (IdStrategy::FromColumn(_), Some(p)) if p.len() == keys.len() => Some(p),
        (IdStrategy::FromColumn(column), Some(p)) => {
            return Err(invalid(
                entity,
                format!(
                    "{} IDs from column `{column}` given for {} keys",
                    p.len(),
                    keys.len()
                ),
            ))
        }
        (IdStrategy::FromColumn(column), None) => {
            return Err(invalid(
                entity,
                format!("IDs come from column `{column}` but none were given"),
            ))
        }
        (_, Some(_)) => return Err(invalid(
            entity,
            "IDs were given but the entity generates its IDs; declare `from_column` to use them",
        )),
        (_, None) => None,
    };

    // Distinct keys in first-seen order; `slot[i]` = index of keys[i] among them.
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
    let mut distinct: Vec<&str> = Vec::new();
    let mut wanted: Vec<Option<&str>> = Vec::new();
    let mut slot = Vec::with_capacity(keys.len());
    let mut id_owner: HashMap<&str, &str> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let given = match provided {
            Some(p) => Some(p[i].as_deref().filter(|id| !id.is_empty()).ok_or_else(|| {
                DestinationError::ProvidedIdMissing {
                    entity: entity.to_string(),
                    key: key.clone(),
                }
            })?),
            None => None,
        };
        match position.get(key.as_str()) {
            Some(&j) => {
                if let (Some(first), Some(given)) = (wanted[j], given) {
                    if first != given {
                        return Err(DestinationError::ProvidedIdConflict {
                            entity: entity.to_string(),
                            key: key.clone(),
                            cached: first.to_string(),
                            provided: given.to_string(),
                        });
                    }
                }
                slot.push(j);
            }
            None => {
                if let Some(given) = given {
                    if let Some(owner) = id_owner.insert(given, key) {
                        return Err(DestinationError::ProvidedIdTaken {
                            entity: entity.to_string(),
                            key: key.clone(),
                            id: given.to_string(),
                            owner: owner.to_string(),
                        });
                    }
                }
                position.insert(key, distinct.len());
                slot.push(distinct.len());
                distinct.push(key);
                wanted.push(given);
            }
        }
    }

    let mut ids: Vec<Option<String>> = vec![None; distinct.len()];
    let accept_cached =
        |ids: &mut Vec<Option<String>>, cached: &HashMap<String, String>, indices: &[usize]| {
            for &j in indices {
                if let Some(id) = cached.get(distinct[j]) {
                    if let Some(given) = wanted[j] {
                        if given != id {
                            return Err(DestinationError::ProvidedIdConflict {
                                entity: entity.to_string(),
                                key: distinct[j].to_string(),
                                cached: id.clone(),
                                provided: given.to_string(),
                            });
                        }
                    }
                    ids[j] = Some(id.clone());
                }
            }
            Ok(())
        };
    let all: Vec<usize> = (0..distinct.len()).collect();
    if !distinct.is_empty() {
        let cached = fetch_and_touch(conn, target, entity, &distinct, run).await?;
        accept_cached(&mut ids, &cached, &all)?;
    }

    let mut missing: Vec<usize> = all.into_iter().filter(|&j| ids[j].is_none()).collect();
    let mut new_keys = 0;
    let mut round = 0;
    while !missing.is_empty() {
        round += 1;
        if round > MAX_ID_ATTEMPTS {
            return Err(DestinationError::IdSpaceExhausted {
                entity: entity.to_string(),
                attempts: MAX_ID_ATTEMPTS,
            });
        }
        let candidates: Vec<String> = match &spec.strategy {
            IdStrategy::FromColumn(_) => missing
                .iter()
                .map(|&j| wanted[j].unwrap_or_default().to_string())
                .collect(),
            strategy => generate_ids(strategy, missing.len()),
        };
        let new: Vec<&str> = missing.iter().map(|&j| distinct[j]).collect();
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO psystem.id_cache (target, entity, unique_key, target_id, first_seen_run, last_seen_run) \
             SELECT $1, $2, k, i, $5, $5 FROM unnest($3::text[], $4::text[]) AS t(k, i) \
             ON CONFLICT DO NOTHING RETURNING unique_key",
        )
        .bind(target.as_str())
        .bind(entity)
        .bind(&new)
        .bind(&candidates)
        .bind(run)
        .fetch_all(&mut *conn)
        .await
        .map_err(DestinationError::db(format!(
            "storing new IDs of entity `{entity}` in the ID cache"
        )))?;
        let inserted: HashSet<String> = inserted.into_iter().collect();
        let mut rest = Vec::new();
        for (n, &j) in missing.iter().enumerate() {
            if inserted.contains(distinct[j]) {
                ids[j] = Some(candidates[n].clone());
                new_keys += 1;
            } else {
                rest.push(j);
            }
        }
        if rest.is_empty() {
            break;
        }
        // Not inserted: the key arrived meanwhile (another transaction) or the ID is taken.
        let rest_keys: Vec<&str> = rest.iter().map(|&j| distinct[j]).collect();
        let cached = fetch_and_touch(conn, target, entity, &rest_keys, run).await?;
        accept_cached(&mut ids, &cached, &rest)?;
        missing = rest.into_iter().filter(|&j| ids[j].is_none()).collect();
        if let (IdStrategy::FromColumn(_), Some(&j)) = (&spec.strategy, missing.first()) {
            let id = wanted[j].unwrap_or_default();
            let owner: Option<String> = sqlx::query_scalar(
                "SELECT unique_key FROM psystem.id_cache WHERE target = $1 AND entity = $2 AND target_id = $3",
            )
            .bind(target.as_str())
            .bind(entity)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(DestinationError::db(format!(
                "reading the ID cache of entity `{entity}`"
            )))?;
            return Err(DestinationError::ProvidedIdTaken {
                entity: entity.to_string(),
                key: distinct[j].to_string(),
                id: id.to_string(),
                owner: owner.unwrap_or_else(|| "(a key added concurrently)".into()),
            });
        }
        if !missing.is_empty() {
            debug!(
                entity,
                collisions = missing.len(),
                round,
                "Generated target IDs collided; drawing again."
            );
        }
    }

    let ids: Vec<String> = slot
        .into_iter()
        .map(|j| ids[j].clone().unwrap_or_default())
        .collect();
    Ok(Assigned { ids, new_keys })
}

/// The cached target IDs of `keys` (for references to another entity), in the order of `keys`; `None` for a key
/// that is not cached. Read-only; runs on `conn` (inside the caller's transaction, so it sees IDs the same
/// transaction gave out).
pub async fn lookup(
    conn: &mut PgConnection,
    target: &CacheTarget,
    entity: &str,
    keys: &[String],
) -> Result<Vec<Option<String>>, DestinationError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut distinct: Vec<&str> = keys.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT unique_key, target_id FROM psystem.id_cache \
         WHERE target = $1 AND entity = $2 AND unique_key = ANY($3::text[])",
    )
    .bind(target.as_str())
    .bind(entity)
    .bind(&distinct)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(format!(
        "looking up keys of entity `{entity}` in the ID cache"
    )))?;
    let found: HashMap<String, String> = rows.into_iter().collect();
    Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
}

/// The entities in the cache — of one target, or of every target when `target` is `None` — with their key
/// columns, strategy, number of entries and newest run; sorted by target, then entity. Entities registered
/// without entries and entries without a registration (imported) are listed too.
pub async fn entities(
    pool: &PgPool,
    target: Option<&CacheTarget>,
) -> Result<Vec<EntitySummary>, DestinationError> {
    let rows = sqlx::query(
        "SELECT COALESCE(k.target, c.target) AS target, COALESCE(k.entity, c.entity) AS entity, \
                k.key_columns, k.id_strategy, COALESCE(c.n, 0) AS n, c.last_seen_run \
         FROM (SELECT target, entity, key_columns, id_strategy FROM psystem.entity_keys \
               WHERE $1::text IS NULL OR target = $1) k \
         FULL JOIN (SELECT target, entity, count(*) AS n, max(last_seen_run) AS last_seen_run \
                    FROM psystem.id_cache WHERE $1::text IS NULL OR target = $1 GROUP BY target, entity) c \
           ON c.target = k.target AND c.entity = k.entity \
         ORDER BY 1, 2",
    )
    .bind(target.map(CacheTarget::as_str))
    .fetch_all(pool)
    .await
    .map_err(DestinationError::db("listing the entities of the ID cache"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let key_columns: Option<serde_json::Value> = row.get("key_columns");
            let id_strategy: Option<serde_json::Value> = row.get("id_strategy");
            EntitySummary {
                entity: row.get("entity"),
                target: row.get("target"),
                key_columns: key_columns
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default(),
                id_strategy: id_strategy.and_then(|v| serde_json::from_value(v).ok()),
                count: row.get("n"),
                last_seen_run: row.get("last_seen_run"),
            }
        })
        .collect())
}

/// The search condition of a [`CacheQuery`]: `(fragment, bound pattern)`.
fn search_filter(search: Option<&str>) -> Option<(&'static str, String)> {
    let search = search?;
    if search.is_empty() {
        return None;
    }
    let (prefix, text) = match search.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, search),
    };
    let mut pattern = String::with_capacity(text.len() + 2);
    if !prefix {
        pattern.push('%');
    }
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    // Both forms match `lower(…)` so that the expression indexes serve them: the `text_pattern_ops` btrees
    // (prefix) and the trigram GIN indexes when pg_trgm is there (substring and prefix). The trigram indexes are
    // deliberately on `lower(…)` only, so the planner never uses them for equality on the raw columns.
    Some((
        " AND (lower(unique_key) LIKE lower($3) OR lower(target_id) LIKE lower($3))",
        pattern,
    ))
}

/// One page of an entity's entries: filtered by [`CacheQuery::search`], sorted by [`CacheQuery::sort`] (ties by
/// unique key, in the same direction), `LIMIT`/`OFFSET` in the database; `total` counts every matching entry.
/// Both statements run in one read-only snapshot, so `total` and the page agree.
///
/// `offset < 0` or `limit` outside `0..=`[`MAX_PAGE`] is [`DestinationError::InvalidCacheQuery`].
pub async fn list(
    pool: &PgPool,
    target: &CacheTarget,
    entity: &str,
    q: &CacheQuery,
) -> Result<CachePage, DestinationError> {
    if q.offset < 0 {
        return Err(DestinationError::InvalidCacheQuery {
            detail: format!("offset {} is negative", q.offset),
        });
    }
    if !(0..=MAX_PAGE).contains(&q.limit) {
        return Err(DestinationError::InvalidCacheQuery {
            detail: format!("limit {} is not between 0 and {MAX_PAGE}", q.limit),
        });
    }
    let ctx = format!("listing entity `{entity}` of the ID cache");
    let filter = search_filter(q.search.as_deref());
    let (fragment, pattern) = match &filter {
        Some((f, p)) => (*f, Some(p.as_str())),
        None => ("", None),
    };
    let dir = if q.descending { "DESC" } else { "ASC" };
    // Deferred join: the inner query finds the page's keys from an index alone (an index-only scan past a deep
    // offset, instead of visiting the heap for every skipped row), the outer one fetches just those rows.
    // (inner columns, join column, ORDER BY) — all from this fixed whitelist.
    let (inner, join, order) = match q.sort {
        CacheSort::UniqueKey => ("unique_key", "unique_key", format!("unique_key {dir}")),
        CacheSort::TargetId => ("target_id", "target_id", format!("target_id {dir}")),
        other => (
            if other == CacheSort::FirstSeen {
                "first_seen_run, unique_key"
            } else {
                "last_seen_run, unique_key"
            },
            "unique_key",
            format!("{} {dir}, unique_key {dir}", other.column()),
        ),
    };
    let outer_order = order
        .split(", ")
        .map(|part| format!("p.{part}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (n_limit, n_offset) = if pattern.is_some() { (4, 5) } else { (3, 4) };
    let page_sql = format!(
        "SELECT c.unique_key, c.target_id, c.first_seen_run, c.last_seen_run \
         FROM (SELECT {inner} FROM psystem.id_cache WHERE target = $1 AND entity = $2{fragment} \
               ORDER BY {order} LIMIT ${n_limit} OFFSET ${n_offset}) p \
         JOIN psystem.id_cache c ON c.target = $1 AND c.entity = $2 AND c.{join} = p.{join} \
         ORDER BY {outer_order}"
    );
    let count_sql = format!(
        "SELECT count(*) FROM psystem.id_cache WHERE target = $1 AND entity = $2{fragment}"
    );

    let mut tx = pool.begin().await.map_err(DestinationError::db(&ctx))?;
    (&mut *tx)
        .execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(DestinationError::db(&ctx))?;
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql)
        .bind(target.as_str())
        .bind(entity);
    if let Some(p) = pattern {
        count = count.bind(p);
    }
    let total = count
        .fetch_one(&mut *tx)
        .await
        .map_err(DestinationError::db(&ctx))?;
    let entries = if q.limit == 0 || q.offset >= total {
        Vec::new()
    } else {
        let mut page = sqlx::query_as::<_, (String, String, i64, i64)>(&page_sql)
            .bind(target.as_str())
            .bind(entity);
        if let Some(p) = pattern {
            page = page.bind(p);
        }
        page.bind(q.limit)
            .bind(q.offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(DestinationError::db(&ctx))?
            .into_iter()
            .map(entry_from)
            .collect()
    };
    tx.commit().await.map_err(DestinationError::db(&ctx))?;
    Ok(CachePage { total, entries })
}

fn entry_from(
    (unique_key, target_id, first_seen_run, last_seen_run): (String, String, i64, i64),
) -> CacheEntry {
    CacheEntry {
        unique_key,
        target_id,
        first_seen_run,
        last_seen_run,
    }
}

/// The entry whose unique key — or, failing that, whose target ID — is exactly `key_or_id`; `None` when neither
/// is cached. (The key is taken as it is: pass a keystring, not raw column values.)
pub async fn show(
    pool: &PgPool,
    target: &CacheTarget,
    entity: &str,
    key_or_id: &str,
) -> Result<Option<CacheEntry>, DestinationError> {
    let row: Option<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT unique_key, target_id, first_seen_run, last_seen_run FROM psystem.id_cache \
         WHERE target = $1 AND entity = $2 AND (unique_key = $3 OR target_id = $3) \
         ORDER BY (unique_key = $3) DESC LIMIT 1",
    )
    .bind(target.as_str())
    .bind(entity)
    .bind(key_or_id)
    .fetch_optional(pool)
    .await
    .map_err(DestinationError::db(format!(
        "reading entity `{entity}` of the ID cache"
    )))?;
    Ok(row.map(entry_from))
}

/// Writes an entity's entries as CSV with the header `unique_key,target_id,first_seen_run,last_seen_run`, sorted
/// by unique key; returns the number of entries written.
///
/// Streams: entries are read in chunks of 10,000 by key (keyset paging on the primary key) inside one read-only
/// snapshot, and each chunk is written before the next is read — memory does not grow with the cache.
pub async fn export_csv(
    pool: &PgPool,
    target: &CacheTarget,
    entity: &str,
    out: &mut impl Write,
) -> Result<u64, DestinationError> {
    let ctx = format!("exporting entity `{entity}` of the ID cache");
    let csv_err = |source| DestinationError::CacheCsv {
        context: format!("{ctx}: cannot write the CSV"),
        source,
    };
    let mut writer = csv::Writer::from_writer(out);
    writer
        .write_record(["unique_key", "target_id", "first_seen_run", "last_seen_run"])
        .map_err(csv_err)?;
    let mut tx = pool.begin().await.map_err(DestinationError::db(&ctx))?;
    (&mut *tx)
        .execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(DestinationError::db(&ctx))?;
    let mut written = 0u64;
    let mut last: Option<String> = None;
    loop {
        let chunk: Vec<(String, String, i64, i64)> = match &last {
            None => sqlx::query_as(
                "SELECT unique_key, target_id, first_seen_run, last_seen_run FROM psystem.id_cache \
                 WHERE target = $1 AND entity = $2 ORDER BY unique_key LIMIT $3",
            )
            .bind(target.as_str())
            .bind(entity)
            .bind(CSV_CHUNK as i64),
            Some(after) => sqlx::query_as(
                "SELECT unique_key, target_id, first_seen_run, last_seen_run FROM psystem.id_cache \
                 WHERE target = $1 AND entity = $2 AND unique_key > $4 ORDER BY unique_key LIMIT $3",
            )
            .bind(target.as_str())
            .bind(entity)
            .bind(CSV_CHUNK as i64)
            .bind(after.clone()),
        }
        .fetch_all(&mut *tx)
        .await
        .map_err(DestinationError::db(&ctx))?;
        let n = chunk.len();
        for (key, id, first, last_seen) in &chunk {
            writer
                .write_record([key, id, &first.to_string(), &last_seen.to_string()])
                .map_err(csv_err)?;
        }
        written += n as u64;
        last = chunk.into_iter().last().map(|r| r.0);
        if n < CSV_CHUNK {
            break;
        }
    }
    tx.commit().await.map_err(DestinationError::db(&ctx))?;
    writer.flush().map_err(|e| csv_err(e.into()))?;
    info!(entity, target = %target, entries = written, "ID cache exported.");
    Ok(written)
}

/// One row of an import chunk.
struct ImportRow {
    line: u64,
    key: String,
    id: String,
    first: i64,
    last: i64,
}

/// Reads entries from CSV (as [`export_csv`] writes them: a header with `unique_key` and `target_id`, optionally
/// `first_seen_run` and `last_seen_run` — empty or missing = 0) and adds the ones the cache lacks.
///
/// **Never overwrites**: an entry whose key is cached with the same ID counts as unchanged; one whose key is
/// cached with another ID, or whose ID already belongs to another key (also earlier in the same file), is
/// reported in [`ImportReport::conflicts`] (in file order, with its line) and skipped. All in one transaction: a malformed row
/// ([`DestinationError::CacheImport`], with its line) or CSV syntax error ([`DestinationError::CacheCsv`]) imports
/// nothing. Rows are sent in chunks of 10,000.
pub async fn import_csv(
    pool: &PgPool,
    target: &CacheTarget,
    entity: &str,
    input: impl Read,
) -> Result<ImportReport, DestinationError> {
    let ctx = format!("importing entity `{entity}` into the ID cache");
    let csv_err = |source| DestinationError::CacheCsv {
        context: format!("{ctx}: cannot read the CSV"),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(input);
    let headers = reader.headers().map_err(csv_err)?.clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(key_col), Some(id_col)) = (column("unique_key"), column("target_id")) else {
        return Err(DestinationError::CacheImport {
            line: 1,
            detail: format!(
                "the header must name the columns unique_key and target_id (found: {})",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        });
    };
    if let Some(unknown) = headers.iter().find(|h| {
        !matches!(
            h.trim(),
            "unique_key" | "target_id" | "first_seen_run" | "last_seen_run"
        )
    }) {
        return Err(DestinationError::CacheImport {
            line: 1,
            detail: format!(
                "unknown column `{unknown}`; expected unique_key,target_id,first_seen_run,last_seen_run"
            ),
        });
    }
    let first_col = column("first_seen_run");
    let last_col = column("last_seen_run");

    let mut conn = pool.acquire().await.map_err(DestinationError::db(&ctx))?;
    let mut tx = conn.begin().await.map_err(DestinationError::db(&ctx))?;
    let mut report = ImportReport::default();
    let mut record = csv::StringRecord::new();
    let mut chunk: Vec<ImportRow> = Vec::with_capacity(CSV_CHUNK);
    loop {
        let more = reader.read_record(&mut record).map_err(csv_err)?;
        if more {
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let field = |i: usize| record.get(i).unwrap_or("");
            let run = |col: Option<usize>, name: &str| -> Result<i64, DestinationError> {
                match col.map(field).map(str::trim) {
                    None | Some("") => Ok(0),
                    Some(v) => v.parse::<i64>().map_err(|_| DestinationError::CacheImport {
                        line,
                        detail: format!("{name} `{v}` is not an integer"),
                    }),
                }
            };
            let row = ImportRow {
                line,
                key: field(key_col).to_string(),
                id: field(id_col).to_string(),
                first: run(first_col, "first_seen_run")?,
                last: run(last_col, "last_seen_run")?,
            };
            for (name, value) in [("unique_key", &row.key), ("target_id", &row.id)] {
                if value.is_empty() {
                    return Err(DestinationError::CacheImport {
                        line,
                        detail: format!("{name} is empty"),
                    });
                }
                if value.contains('\0') {
                    return Err(DestinationError::CacheImport {
                        line,
                        detail: format!("{name} contains a NUL character"),
                    });
                }
            }
            chunk.push(row);
        }
        if chunk.len() >= CSV_CHUNK || (!more && !chunk.is_empty()) {
            import_chunk(&mut tx, target, entity, &chunk, &mut report, &ctx).await?;
            chunk.clear();
        }
        if !more {
            break;
        }
    }
    tx.commit().await.map_err(DestinationError::db(&ctx))?;
    info!(
        entity,
        target = %target,
        inserted = report.inserted,
        unchanged = report.unchanged,
        conflicts = report.conflicts.len(),
        "ID cache imported."
    );
    Ok(report)
}

/// Per row sent: key, ID in the file, ID cached before, key owning the file's ID before, inserted.
type ImportOutcome = (String, String, Option<String>, Option<String>, bool);

async fn import_chunk(
    conn: &mut PgConnection,
    target: &CacheTarget,
    entity: &str,
    rows: &[ImportRow],
    report: &mut ImportReport,
    ctx: &str,
) -> Result<(), DestinationError> {
    // Repeats inside the chunk are settled here (the database settles repeats across chunks).
    let first_conflict = report.conflicts.len();
    let mut by_key: HashMap<&str, &str> = HashMap::new();
    let mut by_id: HashMap<&str, &str> = HashMap::new();
    let mut send: Vec<&ImportRow> = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(&id) = by_key.get(row.key.as_str()) {
            if id == row.id {
                report.unchanged += 1;
            } else {
                report.conflicts.push(ImportConflict {
                    line: row.line,
                    unique_key: row.key.clone(),
                    cached_id: Some(id.to_string()),
                    file_id: row.id.clone(),
                    owner: None,
                });
            }
            continue;
        }
        if let Some(&owner) = by_id.get(row.id.as_str()) {
            report.conflicts.push(ImportConflict {
                line: row.line,
                unique_key: row.key.clone(),
                cached_id: None,
                file_id: row.id.clone(),
                owner: Some(owner.to_string()),
            });
            continue;
        }
        by_key.insert(&row.key, &row.id);
        by_id.insert(&row.id, &row.key);
        send.push(row);
    }
    let keys: Vec<&str> = send.iter().map(|r| r.key.as_str()).collect();
    let ids: Vec<&str> = send.iter().map(|r| r.id.as_str()).collect();
    let firsts: Vec<i64> = send.iter().map(|r| r.first).collect();
    let lasts: Vec<i64> = send.iter().map(|r| r.last).collect();
    let lines: Vec<u64> = send.iter().map(|r| r.line).collect();
    // The outer SELECT sees the cache as it was before this statement's INSERT (one snapshot per statement).
    let result: Vec<ImportOutcome> = sqlx::query_as(
        "WITH input AS (SELECT * FROM unnest($3::text[], $4::text[], $5::int8[], $6::int8[]) \
                        WITH ORDINALITY AS i(unique_key, target_id, first_seen_run, last_seen_run, ord)), \
         ins AS (INSERT INTO psystem.id_cache (target, entity, unique_key, target_id, first_seen_run, last_seen_run) \
                 SELECT $1, $2, unique_key, target_id, first_seen_run, last_seen_run FROM input ORDER BY ord \
                 ON CONFLICT DO NOTHING RETURNING unique_key) \
         SELECT i.unique_key, i.target_id, c.target_id AS cached_id, o.unique_key AS owner, \
                (ins.unique_key IS NOT NULL) AS inserted \
         FROM input i \
         LEFT JOIN ins ON ins.unique_key = i.unique_key \
         LEFT JOIN psystem.id_cache c ON c.target = $1 AND c.entity = $2 AND c.unique_key = i.unique_key \
         LEFT JOIN psystem.id_cache o ON o.target = $1 AND o.entity = $2 AND o.target_id = i.target_id \
         ORDER BY i.ord",
    )
    .bind(target.as_str())
    .bind(entity)
    .bind(&keys)
    .bind(&ids)
    .bind(&firsts)
    .bind(&lasts)
    .fetch_all(&mut *conn)
    .await
    .map_err(DestinationError::db(ctx))?;
    for (n, (key, file_id, cached_id, owner, inserted)) in result.into_iter().enumerate() {
        if inserted {
            report.inserted += 1;
        } else if cached_id.as_deref() == Some(file_id.as_str()) {
            report.unchanged += 1;
        } else {
            report.conflicts.push(ImportConflict {
                line: lines[n],
                unique_key: key,
                owner: if cached_id.is_none() { owner } else { None },
                cached_id,
                file_id,
            });
        }
    }
    // In file order.
    report.conflicts[first_conflict..].sort_by_key(|c| c.line);
    Ok(())
}

/// Deletes every entry of an entity in `target` and its key definition (so a new unique key can be registered);
/// returns the number of entries deleted. One transaction.
pub async fn clear(
    pool: &PgPool,
    target: &CacheTarget,
    entity: &str,
) -> Result<u64, DestinationError> {
    let ctx = format!("clearing entity `{entity}` of the ID cache");
    let mut tx = pool.begin().await.map_err(DestinationError::db(&ctx))?;
    let deleted = sqlx::query("DELETE FROM psystem.id_cache WHERE target = $1 AND entity = $2")
        .bind(target.as_str())
        .bind(entity)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(&ctx))?
        .rows_affected();
    sqlx::query("DELETE FROM psystem.entity_keys WHERE target = $1 AND entity = $2")
        .bind(target.as_str())
        .bind(entity)
        .execute(&mut *tx)
        .await
        .map_err(DestinationError::db(&ctx))?;
    tx.commit().await.map_err(DestinationError::db(&ctx))?;
    info!(entity, target = %target, deleted, "ID cache entity cleared.");
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_drop_credentials_and_fill_defaults() {
        let t = |url: &str| CacheTarget::new(url, "public").as_str().to_string();
        assert_eq!(t("postgres://u:pw@Host:6000/db"), "host:6000/db/public");
        assert_eq!(
            t("postgresql://u@host/db?sslmode=require"),
            "host:5432/db/public"
        );
        assert_eq!(t("postgres://u@host"), "host:5432/u/public");
        assert_eq!(t("postgres://host"), "host:5432/postgres/public");
        assert_eq!(t("postgres://h/my%20db"), "h:5432/my db/public");
        assert_eq!(
            t("postgres:///db?host=/var/run/postgresql&port=5433"),
            "/var/run/postgresql:5433/db/public"
        );
        assert_eq!(
            t("host=H port=7 dbname=d user=u password=secret"),
            "h:7/d/public"
        );
        assert!(!t("postgres://u:secret@h/db").contains("secret"));
        assert_eq!(
            CacheTarget::new("postgres://h/db", "other").as_str(),
            "h:5432/db/other"
        );
    }

    #[test]
    fn strategy_serde_forms() {
        let json = |s: &IdStrategy| serde_json::to_value(s).unwrap();
        assert_eq!(
            json(&IdStrategy::UuidV7),
            serde_json::json!({"kind": "uuid_v7"})
        );
        assert_eq!(
            json(&IdStrategy::prefixed("PT_")),
            serde_json::json!({"kind": "prefixed", "prefix": "PT_", "length": 8})
        );
        assert_eq!(
            json(&IdStrategy::FromColumn("pid".into())),
            serde_json::json!({"kind": "from_column", "column": "pid"})
        );
        let parsed: IdStrategy =
            serde_json::from_value(serde_json::json!({"kind": "prefixed", "prefix": "BS_"}))
                .unwrap();
        assert_eq!(parsed, IdStrategy::prefixed("BS_"));
        assert!(serde_json::from_value::<IdStrategy>(
            serde_json::json!({"kind": "prefixed", "prefix": "X", "nope": 1})
        )
        .is_err());
    }

    #[test]
    fn prefixed_ids_use_crockford() {
        let ids = generate_ids(&IdStrategy::prefixed("PT_"), 1000);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000);
        for id in ids {
            let rest = id.strip_prefix("PT_").unwrap();
            assert_eq!(rest.len(), 8);
            assert!(
                rest.bytes().all(|b| CROCKFORD_ALPHABET.contains(&b)),
                "{id}"
            );
        }
    }

    #[test]
    fn search_patterns_escape_like_wildcards() {
        assert_eq!(search_filter(None), None);
        assert_eq!(search_filter(Some("")), None);
        assert_eq!(search_filter(Some("a_b%")).unwrap().1, "%a\\_b\\%%");
        let (fragment, pattern) = search_filter(Some("^PT_3")).unwrap();
        assert_eq!(pattern, "PT\\_3%");
        assert!(fragment.contains("LIKE lower($3)"));
    }
}
