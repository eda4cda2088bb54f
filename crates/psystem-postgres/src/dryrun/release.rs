//! Dry runs of release loads: what a dataset load ([`crate::release_load`]) or a UniProt load
//! ([`crate::protein`]) would change, computed in one transaction that is rolled back.
//!
//! Nothing is written to a real table: no staging table, no ledger row (`psystem.loads`, `psystem.files`,
//! `psystem.work_units`), no sequence value; the connection does not migrate the ledger. The release's rows go into
//! a temporary table, which the rollback (or the end of the session) drops, so a dump of the database is the same
//! before and after.
//!
//! Counts, per dataset ([`DryRunReport`]):
//!
//! | load | inserted | updated | deleted |
//! |---|---|---|---|
//! | first load (no table) | every row | 0 | 0 |
//! | `merge`, `replace` with a primary key | keys not in the table | keys whose `psystem_row_hash` differs | table keys not in the release |
//! | `replace` without a primary key | every row | 0 | every row of the table |
//! | `append` | every row | 0 | 0 |
//! | UniProt | accessions not in the table | accessions whose content MD5 (or dataset) differs | accessions of the dataset not in the release |
//!
//! The merge counts are those the load itself reports (the same comparison of row hashes as its change set).

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::BytesMut;
use psystem_core::{LoadMode, TableRef};
use psystem_uniprot::Entry;
use sqlx::{Executor, PgConnection, Row};

use super::{connect, DryRunReport};
use crate::copy_binary::CopyEncoder;
use crate::destination::{column_defs, column_list, has_unique_key, table_columns, COPY_CHUNK};
use crate::ident::{quote_ident, quote_table};
use crate::release_load::{check_merge_supported, ROW_HASH_COLUMN};
use crate::DestinationError;

/// The temporary table a release dry run fills.
const DRY_RELEASE_TABLE: &str = "psystem_dry_release";
/// The temporary table of the accessions a UniProt dry run has seen.
const DRY_SEEN_TABLE: &str = "psystem_dry_seen";

/// The newest completed load of `release`/`dataset` from `source_kind` (`release` for Open Targets datasets,
/// `uniprot` for UniProt) into `table`, when the ledger exists and (for datasets) the table still does: what a
/// run of the release would skip unless forced. Read only; the ledger is not created when it is missing.
///
/// # Errors
/// [`DestinationError::Connect`], [`DestinationError::Database`].
pub async fn last_completed_load(
    url: &str,
    source_kind: &str,
    release: &str,
    dataset: &str,
    table: &TableRef,
) -> Result<Option<i64>, DestinationError> {
    let mut conn = connect(url).await?;
    let ctx = "dry run: looking up completed loads of the release";
    let ledger: bool = sqlx::query_scalar("SELECT to_regclass('psystem.loads') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .map_err(DestinationError::db(ctx))?;
    if !ledger {
        return Ok(None);
    }
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM psystem.loads WHERE source_kind = $1 AND release = $2 AND dataset = $3 \
         AND target_schema = $4 AND target_table = $5 AND state = 'completed' \
         AND to_regclass($6) IS NOT NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(source_kind)
    .bind(release)
    .bind(dataset)
    .bind(&table.schema)
    .bind(&table.name)
    .bind(quote_table(table))
    .fetch_optional(&mut conn)
    .await
    .map_err(DestinationError::db(ctx))?;
    Ok(id)
}

/// A dry run of one dataset of a release (Parquet files) into `table`: one connection, one transaction that is
/// rolled back.
pub struct ReleaseDryRun {
    conn: PgConnection,
    table: TableRef,
    mode: LoadMode,
    primary_key: Vec<String>,
    schema: SchemaRef,
    columns: Option<Vec<(String, String)>>,
    rows: u64,
}

impl std::fmt::Debug for ReleaseDryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseDryRun")
            .field("table", &self.table)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl ReleaseDryRun {
    /// Connects to `url` (without migrating the ledger), opens the transaction and creates the temporary table for
    /// rows of `schema` (the dataset's flattened columns) and their row hashes. A merge is checked as the load
    /// checks it: PostgreSQL 15 or later and, on an existing table, a unique index on `primary_key`.
    ///
    /// # Errors
    /// [`DestinationError::Connect`], [`DestinationError::MergeNeedsPostgres15`],
    /// [`DestinationError::MissingUniqueKey`], [`DestinationError::UnsupportedType`], database errors.
    pub async fn start(
        url: &str,
        table: TableRef,
        mode: LoadMode,
        primary_key: Vec<String>,
        schema: SchemaRef,
    ) -> Result<ReleaseDryRun, DestinationError> {
        let mut conn = connect(url).await?;
        let ctx = |what: &str| format!("dry run into {table}: {what}");
        conn.execute("BEGIN")
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        let columns = table_columns(&mut conn, &table).await?;
        if mode == LoadMode::Merge {
            check_merge_supported(&mut conn, &table).await?;
            if columns.is_some() && !has_unique_key(&mut conn, &table, &primary_key).await? {
                return Err(DestinationError::MissingUniqueKey {
                    table: table.to_string(),
                    columns: primary_key,
                });
            }
        }
        let mut defs = column_defs(&schema)?;
        defs.push(format!("{} bigint", quote_ident(ROW_HASH_COLUMN)));
        conn.execute(
            format!(
                "CREATE TEMP TABLE {DRY_RELEASE_TABLE} ({}) ON COMMIT DROP",
                defs.join(", ")
            )
            .as_str(),
        )
        .await
        .map_err(DestinationError::db(ctx("create the temporary table")))?;
        Ok(ReleaseDryRun {
            conn,
            table,
            mode,
            primary_key,
            schema,
            columns,
            rows: 0,
        })
    }

    /// Adds one batch of the dataset (with the dataset's columns, as the load would copy it) with the row hashes
    /// the load would store.
    ///
    /// # Errors
    /// [`DestinationError::BatchSchemaMismatch`], the encoder's errors, database errors.
    pub async fn add_batch(&mut self, batch: &RecordBatch) -> Result<(), DestinationError> {
        if batch.schema().fields().len() != self.schema.fields().len() {
            return Err(DestinationError::BatchSchemaMismatch {
                table: self.table.to_string(),
                detail: format!(
                    "it has {} columns, the dataset has {}",
                    batch.schema().fields().len(),
                    self.schema.fields().len()
                ),
            });
        }
        let ctx = format!("dry run into {}: COPY into the temporary table", self.table);
        let encoder = CopyEncoder::new(batch)?;
        let sql = format!(
            "COPY pg_temp.{DRY_RELEASE_TABLE} ({}, {}) FROM STDIN (FORMAT binary)",
            column_list(&self.schema),
            quote_ident(ROW_HASH_COLUMN)
        );
        let mut copy = self
            .conn
            .copy_in_raw(&sql)
            .await
            .map_err(DestinationError::db(ctx.clone()))?;
        let mut buf = BytesMut::with_capacity(COPY_CHUNK + COPY_CHUNK / 4);
        CopyEncoder::write_header(&mut buf);
        for row in 0..encoder.num_rows() {
            if let Err(e) = encoder.write_row_hashed(row, &mut buf) {
                let _ = copy.abort(e.to_string()).await;
                return Err(e);
            }
            if buf.len() >= COPY_CHUNK {
                if let Err(source) = copy.send(&buf[..]).await {
                    let _ = copy.abort("psystem: sending COPY data failed").await;
                    return Err(DestinationError::Database {
                        context: ctx,
                        source,
                    });
                }
                buf.clear();
            }
        }
        CopyEncoder::write_trailer(&mut buf);
        if let Err(source) = copy.send(&buf[..]).await {
            let _ = copy.abort("psystem: sending COPY data failed").await;
            return Err(DestinationError::Database {
                context: ctx,
                source,
            });
        }
        copy.finish()
            .await
            .map_err(DestinationError::db(ctx.clone()))?;
        self.rows += encoder.num_rows() as u64;
        Ok(())
    }

    /// Checks the primary key of the release (NULLs, repeats: the load would fail on them), compares the
    /// release with the table, rolls everything back and returns the counts.
    ///
    /// # Errors
    /// [`DestinationError::NullKeys`], [`DestinationError::DuplicateKeys`], database errors (the transaction is
    /// rolled back in every case when the connection closes).
    pub async fn finish(mut self) -> Result<DryRunReport, DestinationError> {
        let table = self.table.clone();
        let ctx = |what: &str| format!("dry run into {table}: {what}");
        let staged = format!("pg_temp.{DRY_RELEASE_TABLE}");
        let pk: Vec<String> = self.primary_key.iter().map(|c| quote_ident(c)).collect();
        if !pk.is_empty() {
            crate::release_load::check_staged_keys(
                &mut self.conn,
                &staged,
                &self.table,
                &self.primary_key,
            )
            .await?;
        }
        let target = quote_table(&table);
        let rows = self.rows as i64;
        let (inserted, updated, deleted): (i64, i64, i64) =
            match (&self.columns, self.mode, pk.is_empty()) {
                (None, ..) | (Some(_), LoadMode::Append, _) => (rows, 0, 0),
                (Some(_), _, true) => {
                    let old =
                        super::scalar(&mut self.conn, format!("SELECT count(*) FROM {target}"))
                            .await
                            .map_err(DestinationError::db(ctx("count the rows of the table")))?;
                    (rows, 0, old)
                }
                (Some(columns), _, false) => {
                    // The load's change set (release_load::merge_rows): a FULL JOIN on the key comparing row hashes;
                    // a table without the hash column gets it, NULL, so its rows compare as changed.
                    let hash = quote_ident(ROW_HASH_COLUMN);
                    let target_hash = if columns.iter().any(|(c, _)| c == ROW_HASH_COLUMN) {
                        format!("t.{hash}")
                    } else {
                        "NULL::bigint".to_string()
                    };
                    let on = pk
                        .iter()
                        .map(|k| format!("s.{k} = t.{k}"))
                        .collect::<Vec<_>>()
                        .join(" AND ");
                    sqlx::query_as(&format!(
                        "SELECT count(*) FILTER (WHERE t.ctid IS NULL), \
                         count(*) FILTER (WHERE s.ctid IS NOT NULL AND t.ctid IS NOT NULL), \
                         count(*) FILTER (WHERE s.ctid IS NULL) \
                         FROM {staged} s FULL JOIN {target} t ON {on} \
                         WHERE s.{hash} IS DISTINCT FROM {target_hash}"
                    ))
                    .fetch_one(&mut self.conn)
                    .await
                    .map_err(DestinationError::db(ctx(
                        "compare the release with the table",
                    )))?
                }
            };
        self.conn
            .execute("ROLLBACK")
            .await
            .map_err(DestinationError::db(ctx("roll back")))?;
        let _ = sqlx::Connection::close(self.conn).await;
        Ok(DryRunReport {
            table: table.to_string(),
            mode: self.mode.to_string(),
            table_exists: self.columns.is_some(),
            rows: self.rows,
            inserted: inserted.max(0) as u64,
            updated: updated.max(0) as u64,
            deleted: deleted.max(0) as u64,
            new_ids: 0,
            unresolved_references: 0,
        })
    }
}

/// A dry run of a UniProt flat file into the protein tables of `table` (the base table, e.g. `uniprot.protein`):
/// entries are compared by content MD5 with the stored ones, as the load compares them, and their accessions
/// collected in a temporary table to count the entries the release no longer has.
pub struct ProteinDryRun {
    conn: PgConnection,
    table: TableRef,
    dataset: String,
    exists: bool,
    report: DryRunReport,
}

impl std::fmt::Debug for ProteinDryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProteinDryRun")
            .field("table", &self.table)
            .field("rows", &self.report.rows)
            .finish_non_exhaustive()
    }
}

impl ProteinDryRun {
    /// Connects to `url` (without migrating the ledger), opens the transaction and creates the temporary table of
    /// seen accessions. `dataset` is `sprot` or `trembl`: only its rows count as deleted when absent.
    ///
    /// # Errors
    /// [`DestinationError::Connect`], database errors.
    pub async fn start(
        url: &str,
        table: TableRef,
        dataset: &str,
    ) -> Result<ProteinDryRun, DestinationError> {
        let mut conn = connect(url).await?;
        let ctx = |what: &str| format!("dry run into {table}: {what}");
        conn.execute("BEGIN")
            .await
            .map_err(DestinationError::db(ctx("begin")))?;
        let exists = table_columns(&mut conn, &table).await?.is_some();
        conn.execute(
            format!(
                "CREATE TEMP TABLE {DRY_SEEN_TABLE} (accession text PRIMARY KEY) ON COMMIT DROP"
            )
            .as_str(),
        )
        .await
        .map_err(DestinationError::db(ctx("create the temporary table")))?;
        let report = DryRunReport {
            table: table.to_string(),
            mode: LoadMode::Merge.to_string(),
            table_exists: exists,
            ..DryRunReport::default()
        };
        Ok(ProteinDryRun {
            conn,
            table,
            dataset: dataset.to_string(),
            exists,
            report,
        })
    }

    /// Counts one batch of parsed entries: new (inserted), stored with another content MD5 or dataset (updated),
    /// or unchanged.
    ///
    /// # Errors
    /// Database errors; an accession repeated in the release (the load would fail on it).
    pub async fn add_entries(&mut self, entries: &[Entry]) -> Result<(), DestinationError> {
        let ctx = |what: &str| format!("dry run into {}: {what}", self.table);
        let accessions: Vec<&str> = entries
            .iter()
            .map(|e| e.primary_accession.as_str())
            .collect();
        let stored: std::collections::HashMap<String, (String, String)> = if self.exists {
            sqlx::query(&format!(
                "SELECT accession, content_md5, dataset FROM {} WHERE accession = ANY($1)",
                quote_table(&self.table)
            ))
            .bind(&accessions)
            .fetch_all(&mut self.conn)
            .await
            .map_err(DestinationError::db(ctx("look up stored entries")))?
            .into_iter()
            .map(|r| (r.get("accession"), (r.get("content_md5"), r.get("dataset"))))
            .collect()
        } else {
            Default::default()
        };
        for e in entries {
            self.report.rows += 1;
            match stored.get(&e.primary_accession) {
                None => self.report.inserted += 1,
                Some((md5, dataset)) if *md5 == e.content_md5 && *dataset == self.dataset => {}
                Some(_) => self.report.updated += 1,
            }
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO pg_temp.{DRY_SEEN_TABLE} SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"
        ))
        .bind(&accessions)
        .execute(&mut self.conn)
        .await
        .map_err(DestinationError::db(ctx("record the seen accessions")))?;
        if inserted.rows_affected() != accessions.len() as u64 {
            let mut seen = std::collections::HashSet::new();
            let repeated = accessions
                .iter()
                .find(|a| !seen.insert(**a))
                .map(|a| a.to_string());
            let accession = repeated.unwrap_or_else(|| "of an earlier entry".into());
            return Err(DestinationError::Database {
                context: format!(
                    "checking the release for {}: accession {accession} occurs more than once in the release, \
                     so the load would fail on it",
                    self.table
                ),
                source: sqlx::Error::Protocol(format!("accession {accession} repeated")),
            });
        }
        Ok(())
    }

    /// Counts the entries of the dataset the release no longer has, rolls everything back and returns the
    /// counts (`rows` = entries read; unchanged = rows − inserted − updated).
    ///
    /// # Errors
    /// Database errors.
    pub async fn finish(mut self) -> Result<DryRunReport, DestinationError> {
        let ctx = |what: &str| format!("dry run into {}: {what}", self.table);
        if self.exists {
            let gone: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {} p WHERE p.dataset = $1 AND NOT EXISTS \
                 (SELECT 1 FROM pg_temp.{DRY_SEEN_TABLE} s WHERE s.accession = p.accession)",
                quote_table(&self.table)
            ))
            .bind(&self.dataset)
            .fetch_one(&mut self.conn)
            .await
            .map_err(DestinationError::db(ctx(
                "count the entries the release no longer has",
            )))?;
            self.report.deleted = gone.max(0) as u64;
        }
        self.conn
            .execute("ROLLBACK")
            .await
            .map_err(DestinationError::db(ctx("roll back")))?;
        let _ = sqlx::Connection::close(self.conn).await;
        Ok(self.report)
    }
}
