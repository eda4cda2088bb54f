//! Dry runs: what a load would change, computed without changing the database.
//!
//! A dry run connects without migrating the ledger, opens one transaction, copies every page (with the target IDs
//! the ID cache already has, and a placeholder for keys it would assign) into a temporary table, compares that
//! table with the destination table by primary key, and rolls the transaction back. Nothing is written to any
//! real table, no sequence moves, and the ID cache is only read, so a dump of the database is the same before and
//! after. Counts per mode:
//!
//! | mode | inserted | updated | deleted |
//! |---|---|---|---|
//! | `append` | every row | 0 | 0 |
//! | `merge` | keys not in the table | keys in the table whose row differs | 0 |
//! | `replace` | keys not in the table | keys in the table whose row differs | table keys not in the new data |
//!
//! Without a primary key, `replace` counts every new row as inserted and every old row as deleted. A table that
//! does not exist yet counts every row (every distinct key, with a primary key) as inserted.

mod release;

pub use release::{last_completed_load, ProteinDryRun, ReleaseDryRun};

use crate::destination::{column_defs, column_list, copy_in, table_columns};
use crate::entities::{set_column, IdPlan};
use crate::idcache::{CacheTarget, IdStrategy};
use crate::{quote_ident, quote_table, CopyEncoder, DestinationError, LoadSpec};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use psystem_core::unique_key::{batch_keystrings, column_texts};
use psystem_core::LoadMode;
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The name of the temporary table a dry run fills.
const DRY_TABLE: &str = "psystem_dry_run";

/// What a load would do to its table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DryRunReport {
    /// The destination table, `schema.table`.
    pub table: String,
    /// The load mode.
    pub mode: String,
    /// Whether the table exists now.
    pub table_exists: bool,
    /// Rows the source gave.
    pub rows: u64,
    /// Rows that would be inserted.
    pub inserted: u64,
    /// Rows that would be updated.
    pub updated: u64,
    /// Rows that would be deleted.
    pub deleted: u64,
    /// Distinct entity keys that would get a new target ID.
    pub new_ids: u64,
    /// Distinct references that the ID cache cannot resolve now (they would fail the load unless their entity
    /// loads in the same run).
    pub unresolved_references: u64,
}

/// A dry run in progress: one connection, one transaction that is rolled back at the end.
pub struct DryRun {
    conn: PgConnection,
    spec: LoadSpec,
    cache_exists: bool,
    table_exists: bool,
    new_keys: HashSet<String>,
    pending: HashMap<String, HashSet<String>>,
    unresolved: HashSet<String>,
    rows: u64,
}

impl std::fmt::Debug for DryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DryRun")
            .field("table", &self.spec.table)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl DryRun {
    /// Connects to `url` (without migrating the ledger) and prepares the temporary table for `spec`'s pages.
    /// `pending` holds, per entity, the keys that earlier dry runs of the same run would have given new IDs, so
    /// references to them count as resolved.
    ///
    /// # Errors
    /// [`DestinationError::Connect`] and database errors.
    pub async fn start(
        url: &str,
        spec: LoadSpec,
        pending: HashMap<String, HashSet<String>>,
    ) -> Result<DryRun, DestinationError> {
        let mut conn = connect(url).await?;
        let ctx = |what: &str| format!("dry run into {}: {what}", spec.table);
        conn.execute("BEGIN")
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        let cache_exists: bool =
            sqlx::query_scalar("SELECT to_regclass('psystem.id_cache') IS NOT NULL")
                .fetch_one(&mut conn)
                .await
                .map_err(DestinationError::db(ctx("look for the ID cache")))?;
        let table_exists = table_columns(&mut conn, &spec.table).await?.is_some();
        let defs = column_defs(&spec.schema)?;
        let create = format!("CREATE TEMP TABLE {DRY_TABLE} ({})", defs.join(", "));
        conn.execute(create.as_str())
            .await
            .map_err(DestinationError::db(ctx("create the temporary table")))?;
        Ok(DryRun {
            conn,
            spec,
            cache_exists,
            table_exists,
            new_keys: HashSet::new(),
            pending,
            unresolved: HashSet::new(),
            rows: 0,
        })
    }

    /// Adds one page (in the schema before the ID columns); returns the page as it would be loaded, with the cached
    /// target IDs and `new:<keystring>` placeholders for IDs that would be assigned.
    ///
    /// # Errors
    /// Key and database errors.
    pub async fn add_page(&mut self, batch: &RecordBatch) -> Result<RecordBatch, DestinationError> {
        let batch = match self.spec.ids.clone() {
            Some(plan) => self.with_ids(&plan, batch).await?,
            None => batch.clone(),
        };
        let encoder = CopyEncoder::new(&batch)?;
        let sql = format!(
            "COPY pg_temp.{DRY_TABLE} ({}) FROM STDIN (FORMAT binary)",
            column_list(&batch.schema())
        );
        let context = format!(
            "dry run into {}: COPY into the temporary table",
            self.spec.table
        );
        copy_in(&mut self.conn, &sql, &encoder, &context).await?;
        self.rows += batch.num_rows() as u64;
        Ok(batch)
    }

    async fn lookup(
        &mut self,
        target: &CacheTarget,
        entity: &str,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, DestinationError> {
        if !self.cache_exists {
            return Ok(vec![None; keys.len()]);
        }
        crate::idcache::lookup(&mut self.conn, target, entity, keys).await
    }

    async fn with_ids(
        &mut self,
        plan: &IdPlan,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, DestinationError> {
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let invalid = |entity: &str, e: psystem_core::unique_key::KeyError| {
            DestinationError::InvalidEntitySpec {
                entity: entity.to_string(),
                message: e.to_string(),
            }
        };
        if let Some(spec) = &plan.entity {
            let keys =
                batch_keystrings(batch, &spec.unique_key).map_err(|e| invalid(&spec.entity, e))?;
            let cached = self.lookup(&plan.target, &spec.entity, &keys).await?;
            let provided = match &spec.strategy {
                IdStrategy::FromColumn(col) => match batch.column_by_name(col) {
                    Some(a) => {
                        Some(column_texts(a.as_ref(), col).map_err(|e| invalid(&spec.entity, e))?)
                    }
                    None => None,
                },
                _ => None,
            };
            let ids: Vec<String> = keys
                .iter()
                .zip(cached)
                .enumerate()
                .map(|(i, (key, id))| match id {
                    Some(id) => id,
                    None => {
                        self.new_keys.insert(key.clone());
                        provided
                            .as_ref()
                            .and_then(|p| p[i].clone())
                            .unwrap_or_else(|| format!("new:{key}"))
                    }
                })
                .collect();
            set_column(
                &mut fields,
                &mut columns,
                &plan.id_column,
                Arc::new(StringArray::from(ids)),
            );
        }
        for r in &plan.references {
            let refs = crate::entities::reference_keys(batch, &r.columns)
                .map_err(|e| invalid(&r.entity, e))?;
            let wanted: Vec<String> = refs.iter().flatten().cloned().collect();
            let mut found = self
                .lookup(&plan.target, &r.entity, &wanted)
                .await?
                .into_iter();
            let values: Vec<Option<String>> = refs
                .iter()
                .map(|k| {
                    let key = k.as_ref()?;
                    let id = found.next().flatten();
                    let own = plan.entity.as_ref().is_some_and(|e| e.entity == r.entity)
                        && self.new_keys.contains(key);
                    let earlier = self.pending.get(&r.entity).is_some_and(|k| k.contains(key));
                    if id.is_none() && !own && !earlier {
                        self.unresolved.insert(format!("{}:{key}", r.entity));
                    }
                    id
                })
                .collect();
            set_column(
                &mut fields,
                &mut columns,
                &r.out_column,
                Arc::new(StringArray::from(values)),
            );
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
            DestinationError::InvalidEntitySpec {
                entity: plan
                    .entity
                    .as_ref()
                    .map(|e| e.entity.clone())
                    .unwrap_or_default(),
                message: e.to_string(),
            }
        })
    }

    /// Compares the temporary table with the destination table, rolls everything back and returns the counts and
    /// the keys that would get new target IDs.
    ///
    /// # Errors
    /// Database errors (the transaction is rolled back in every case when the connection closes).
    pub async fn finish(mut self) -> Result<(DryRunReport, HashSet<String>), DestinationError> {
        let spec = &self.spec;
        let table = quote_table(&spec.table);
        let ctx = |what: &str| format!("dry run into {}: {what}", spec.table);
        let pk: Vec<String> = spec.primary_key.iter().map(|c| quote_ident(c)).collect();
        let distinct_rows = if pk.is_empty() {
            self.rows as i64
        } else {
            scalar(
                &mut self.conn,
                format!(
                    "SELECT count(*) FROM (SELECT DISTINCT {} FROM pg_temp.{DRY_TABLE}) d",
                    pk.join(", ")
                ),
            )
            .await
            .map_err(DestinationError::db(ctx("count keys")))?
        };
        let (inserted, updated, deleted): (i64, i64, i64) = match (
            spec.mode,
            self.table_exists,
            pk.is_empty(),
        ) {
            (LoadMode::Append, _, _) => (self.rows as i64, 0, 0),
            (_, false, _) => (distinct_rows, 0, 0),
            (LoadMode::Replace, true, true) => {
                let deleted = scalar(&mut self.conn, format!("SELECT count(*) FROM {table}"))
                    .await
                    .map_err(DestinationError::db(ctx("count the old rows")))?;
                (self.rows as i64, 0, deleted)
            }
            (LoadMode::Merge | LoadMode::Replace, true, _) => {
                let on = pk
                    .iter()
                    .map(|c| format!("t.{c} = d.{c}"))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let cols: Vec<String> = spec
                    .schema
                    .fields()
                    .iter()
                    .map(|f| quote_ident(f.name()))
                    .collect();
                let row = |alias: &str| {
                    format!(
                        "ROW({})",
                        cols.iter()
                            .map(|c| format!("{alias}.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let dedup = format!(
                    "(SELECT DISTINCT ON ({}) * FROM pg_temp.{DRY_TABLE})",
                    pk.join(", ")
                );
                let inserted = scalar(&mut self.conn, format!(
                    "SELECT count(*) FROM {dedup} d WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {on})"
                ))
                .await
                .map_err(DestinationError::db(ctx("count inserts")))?;
                let updated = scalar(&mut self.conn, format!(
                    "SELECT count(*) FROM {dedup} d JOIN {table} t ON {on} WHERE {} IS DISTINCT FROM {}",
                    row("d"),
                    row("t")
                ))
                .await
                .map_err(DestinationError::db(ctx("count updates")))?;
                let mut deleted = 0;
                if spec.mode == LoadMode::Replace {
                    deleted = scalar(&mut self.conn, format!(
                        "SELECT count(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM pg_temp.{DRY_TABLE} d WHERE {on})"
                    ))
                    .await
                    .map_err(DestinationError::db(ctx("count deletes")))?;
                }
                (inserted, updated, deleted)
            }
        };
        self.conn
            .execute("ROLLBACK")
            .await
            .map_err(DestinationError::db(ctx("roll back")))?;
        let _ = self.conn.close().await;
        let report = DryRunReport {
            table: spec.table.to_string(),
            mode: spec.mode.to_string(),
            table_exists: self.table_exists,
            rows: self.rows,
            inserted: inserted.max(0) as u64,
            updated: updated.max(0) as u64,
            deleted: deleted.max(0) as u64,
            new_ids: self.new_keys.len() as u64,
            unresolved_references: self.unresolved.len() as u64,
        };
        Ok((report, self.new_keys))
    }
}

/// Connects to `url` for a dry run, without migrating the ledger.
async fn connect(url: &str) -> Result<PgConnection, DestinationError> {
    let redacted = crate::redact_url(url);
    let options: PgConnectOptions = url.parse().map_err(|source| DestinationError::Connect {
        url: redacted.clone(),
        source,
    })?;
    PgConnection::connect_with(&options.application_name("psystem dry run"))
        .await
        .map_err(|source| DestinationError::Connect {
            url: redacted,
            source,
        })
}

async fn scalar(conn: &mut PgConnection, sql: String) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(&sql).fetch_one(conn).await
}
