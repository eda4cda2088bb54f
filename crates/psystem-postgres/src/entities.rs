//! Target IDs and references on the load path: the ID cache columns added to every page inside its transaction.
//!
//! For an ETL entry with `entity` and `unique_key`, each row's unique keystring
//! ([`psystem_core::unique_key::batch_keystrings`]) is looked up in, or added to, the ID cache
//! ([`crate::idcache::assign`]) and the row gets its target ID in the ID column (default `target_id`). For each
//! declared reference `column: entity`, the referenced entity's target ID is looked up ([`crate::idcache::lookup`])
//! and written into `<column>_target_id`. All of it runs in the page's transaction: a page that rolls back gives
//! out no IDs, and a committed page's IDs are in the cache for good.
//!
//! An unresolved reference is an error that lists the keys — unless the referenced entity is loaded later in the
//! same run (a *deferred* reference): the column is then left null and [`Destination::resolve_deferred`] fills it
//! in a second pass once that entity is loaded.
//!
//! [`Destination::resolve_deferred`]: crate::Destination::resolve_deferred

use crate::idcache::{self, CacheTarget, EntitySpec, IdStrategy};
use crate::DestinationError;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use psystem_core::unique_key::{batch_keystrings, column_texts};
use sqlx::PgConnection;
use std::sync::Arc;

/// The default name of the column that holds an entity's target ID.
pub const DEFAULT_ID_COLUMN: &str = "target_id";

/// What the ID cache adds to every page of a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPlan {
    /// The cache target (database and schema) the IDs belong to.
    pub target: CacheTarget,
    /// The entity the rows are, with its unique key and ID strategy; `None` for an entry that only has references.
    pub entity: Option<EntitySpec>,
    /// The column the target ID goes into.
    pub id_column: String,
    /// The references to other entities (or to the same entity).
    pub references: Vec<ReferencePlan>,
}

/// One reference: columns holding another entity's unique key components, and the column its target ID goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencePlan {
    /// The referenced entity.
    pub entity: String,
    /// The columns holding the referenced entity's unique key components, in key order.
    pub columns: Vec<String>,
    /// The column the referenced target ID is written into (`<first column>_target_id`).
    pub out_column: String,
    /// True when the referenced entity is loaded in this run too, so an unresolved key may resolve later.
    pub deferred: bool,
}

/// What adding IDs to one page did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdReport {
    /// Keys that got a new target ID.
    pub new_ids: usize,
    /// Deferred references left null, as (out column, referenced keystring).
    pub deferred: Vec<(String, String)>,
}

impl IdPlan {
    /// The schema of the pages as loaded: `schema` plus the ID column and one column per reference (text).
    pub fn output_schema(&self, schema: &SchemaRef) -> SchemaRef {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut add = |name: &str| {
            if schema.column_with_name(name).is_none() {
                fields.push(Field::new(name, DataType::Utf8, true));
            }
        };
        if self.entity.is_some() {
            add(&self.id_column);
        }
        for r in &self.references {
            add(&r.out_column);
        }
        Arc::new(Schema::new(fields))
    }

    /// Registers the entity's unique key (refusing a changed definition), on `conn`.
    ///
    /// # Errors
    /// [`DestinationError::KeyDefinitionChanged`] and database errors.
    pub async fn register(&self, conn: &mut PgConnection) -> Result<(), DestinationError> {
        if let Some(spec) = &self.entity {
            idcache::register_entity(conn, &self.target, spec).await?;
        }
        Ok(())
    }

    /// Adds the ID column and the reference columns to a page, inside the caller's transaction. `run` is the load
    /// id, recorded as the entries' first/last seen run.
    ///
    /// # Errors
    /// A missing key column, an ID-cache error, or [`DestinationError::UnresolvedReferences`] for references
    /// that are neither cached nor deferred.
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &RecordBatch,
        run: i64,
    ) -> Result<(RecordBatch, IdReport), DestinationError> {
        let mut report = IdReport::default();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if let Some(spec) = &self.entity {
            let keys = batch_keystrings(batch, &spec.unique_key)
                .map_err(|e| key_error(&spec.entity, e))?;
            let provided = match &spec.strategy {
                IdStrategy::FromColumn(col) => {
                    let array = batch.column_by_name(col).ok_or_else(|| {
                        DestinationError::InvalidEntitySpec {
                            entity: spec.entity.clone(),
                            message: format!(
                                "target_id: from_column `{col}`: the data has no such column"
                            ),
                        }
                    })?;
                    Some(
                        column_texts(array.as_ref(), col)
                            .map_err(|e| key_error(&spec.entity, e))?,
                    )
                }
                _ => None,
            };
            let assigned =
                idcache::assign(conn, &self.target, spec, &keys, provided.as_deref(), run).await?;
            report.new_ids = assigned.new_keys;
            set_column(
                &mut fields,
                &mut columns,
                &self.id_column,
                Arc::new(StringArray::from(assigned.ids)),
            );
        }
        for r in &self.references {
            let refs = reference_keys(batch, &r.columns).map_err(|e| key_error(&r.entity, e))?;
            let wanted: Vec<String> = refs.iter().flatten().cloned().collect();
            let found = idcache::lookup(conn, &self.target, &r.entity, &wanted).await?;
            let mut found = found.into_iter();
            let mut missing = Vec::new();
            let values: Vec<Option<String>> = refs
                .iter()
                .map(|k| match k {
                    None => None,
                    Some(key) => {
                        let id = found.next().flatten();
                        if id.is_none() {
                            missing.push(key.clone());
                        }
                        id
                    }
                })
                .collect();
            if !missing.is_empty() {
                if r.deferred {
                    report
                        .deferred
                        .extend(missing.into_iter().map(|k| (r.out_column.clone(), k)));
                } else {
                    missing.sort();
                    missing.dedup();
                    return Err(DestinationError::UnresolvedReferences {
                        column: r.columns.join(", "),
                        entity: r.entity.clone(),
                        count: missing.len(),
                        keys: missing.into_iter().take(20).collect(),
                    });
                }
            }
            set_column(
                &mut fields,
                &mut columns,
                &r.out_column,
                Arc::new(StringArray::from(values)),
            );
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
            DestinationError::InvalidEntitySpec {
                entity: self
                    .entity
                    .as_ref()
                    .map(|e| e.entity.clone())
                    .unwrap_or_default(),
                message: format!("adding the ID cache columns: {e}"),
            }
        })?;
        Ok((batch, report))
    }
}

/// The referenced keystring of every row; `None` where every key column is null (no reference).
pub fn reference_keys(
    batch: &RecordBatch,
    columns: &[String],
) -> Result<Vec<Option<String>>, psystem_core::unique_key::KeyError> {
    let keys = batch_keystrings(batch, columns)?;
    let mut all_null = vec![true; batch.num_rows()];
    for c in columns {
        if let Some(a) = batch.column_by_name(c) {
            for (i, flag) in all_null.iter_mut().enumerate() {
                *flag &= a.is_null(i);
            }
        }
    }
    Ok(keys
        .into_iter()
        .zip(all_null)
        .map(|(k, none)| (!none).then_some(k))
        .collect())
}

/// Puts `array` into the column `name` (text), replacing a column of that name or appending one.
pub(crate) fn set_column(
    fields: &mut Vec<Field>,
    columns: &mut Vec<ArrayRef>,
    name: &str,
    array: ArrayRef,
) {
    match fields.iter().position(|f| f.name() == name) {
        Some(i) => {
            fields[i] = Field::new(name, DataType::Utf8, true);
            columns[i] = array;
        }
        None => {
            fields.push(Field::new(name, DataType::Utf8, true));
            columns.push(array);
        }
    }
}

fn key_error(entity: &str, e: psystem_core::unique_key::KeyError) -> DestinationError {
    DestinationError::InvalidEntitySpec {
        entity: entity.to_string(),
        message: e.to_string(),
    }
}
