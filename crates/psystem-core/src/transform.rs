//! Column transforms applied to record batches between a source and a destination.

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use indexmap::IndexMap;
use std::sync::Arc;

/// Selects and renames columns: `columns` maps a source column to its destination name, in output order
/// (`transform.columns` of a manifest). `None` keeps the batch as it is.
#[derive(Debug, Clone, Default)]
pub struct ColumnMap {
    columns: Option<IndexMap<String, String>>,
}

/// A column named in `transform.columns` that the source does not have.
#[derive(Debug, thiserror::Error)]
#[error("transform.columns names `{column}`, which the source does not have; source columns: {}", available.join(", "))]
pub struct UnknownColumn {
    /// The missing source column.
    pub column: String,
    /// The source's columns.
    pub available: Vec<String>,
}

impl ColumnMap {
    /// A map from `transform.columns`.
    pub fn new(columns: Option<IndexMap<String, String>>) -> ColumnMap {
        ColumnMap { columns }
    }

    /// The output schema for an input schema: selected fields, renamed, in map order.
    ///
    /// # Errors
    /// [`UnknownColumn`] when the map names a column the input lacks.
    pub fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, UnknownColumn> {
        let Some(cols) = &self.columns else {
            return Ok(input.clone());
        };
        let mut fields = Vec::with_capacity(cols.len());
        for (from, to) in cols {
            let (_, f) = input.column_with_name(from).ok_or_else(|| UnknownColumn {
                column: from.clone(),
                available: input.fields().iter().map(|f| f.name().clone()).collect(),
            })?;
            fields.push(
                Field::new(to, f.data_type().clone(), f.is_nullable())
                    .with_metadata(f.metadata().clone()),
            );
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// The destination name of a source column, if the column is kept.
    pub fn rename<'a>(&'a self, source_column: &'a str) -> Option<&'a str> {
        match &self.columns {
            None => Some(source_column),
            Some(c) => c.get(source_column).map(|s| s.as_str()),
        }
    }

    /// Applies the map to a batch. Columns are shared, not copied.
    ///
    /// # Errors
    /// [`UnknownColumn`] when the map names a column the batch lacks.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, UnknownColumn> {
        let Some(cols) = &self.columns else {
            return Ok(batch.clone());
        };
        let schema = self.output_schema(&batch.schema())?;
        let arrays = cols
            .keys()
            .map(|from| {
                batch
                    .column_by_name(from)
                    .cloned()
                    .expect("checked by output_schema")
            })
            .collect::<Vec<_>>();
        Ok(RecordBatch::try_new(schema, arrays).expect("same lengths and types as the input"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::DataType;

    #[test]
    fn selects_and_renames_in_map_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("Id", DataType::Int64, true),
            Field::new("SpatialDim", DataType::Utf8, true),
            Field::new("Value", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["AFG", "ALB"])),
                Arc::new(StringArray::from(vec!["5", "6"])),
            ],
        )
        .unwrap();
        let map = ColumnMap::new(Some(IndexMap::from([
            ("Value".to_string(), "value".to_string()),
            ("SpatialDim".to_string(), "Country".to_string()),
        ])));
        let out = map.apply(&batch).unwrap();
        let names: Vec<_> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["value", "Country"]);
        assert_eq!(
            out.column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(1),
            "ALB"
        );
        let bad = ColumnMap::new(Some(IndexMap::from([(
            "Nope".to_string(),
            "x".to_string(),
        )])));
        assert!(bad
            .apply(&batch)
            .unwrap_err()
            .to_string()
            .contains("`Nope`"));
    }
}
