//! Flattening of struct columns into one column per child, before a batch is loaded.
//!
//! Open Targets datasets (and other Parquet releases written by Spark) nest records in struct columns. A struct
//! column at nesting level ≤ [`FlattenOptions::depth`] (the top-level columns are level 1) becomes one column per
//! child, named `parent{separator}child`, recursively: with depth 2, `a: struct<b: struct<c: int>>` becomes
//! `a_b_c`; with depth 1 it becomes `a_b: struct<c: int>`. Depth 0 leaves the schema as it is.
//!
//! - A child value is NULL wherever its parent struct (at any flattened level) is NULL: the null buffers of the
//!   parents are combined with the child's own. A flattened field is nullable when it or any of its flattened
//!   parents is.
//! - Structs deeper than `depth`, lists (also lists of structs) and maps stay as they are; the PostgreSQL
//!   destination stores them as `jsonb` (see `docs/TYPES.md`).
//! - The order of columns is the schema order, each struct's children taking its place.
//! - A flattened column keeps its own field metadata; the metadata of a flattened struct field itself is dropped
//!   (it has no column any more). Schema metadata is kept.
//! - Two columns with the same name after flattening (e.g. a column `a_b` and a struct `a` with child `b`) are
//!   a [`FlattenError::NameCollision`] naming both.
//! - Zero-copy: child arrays are reused as they are; only when a parent has nulls is a new validity bitmap
//!   computed (the value buffers are still shared).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_buffer::NullBuffer;
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

/// How struct columns become columns (`flatten:` of a plugin's ETL entry).
///
/// In YAML: `flatten: { depth: 2, separator: "__" }`; both keys are optional.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlattenOptions {
    /// How many levels of structs to flatten: 0 = none, 1 (default) = the top-level struct columns, 2 = also the
    /// structs inside those, …
    pub depth: usize,
    /// Put between a parent's and a child's name (default `_`).
    pub separator: String,
}

impl Default for FlattenOptions {
    fn default() -> FlattenOptions {
        FlattenOptions {
            depth: 1,
            separator: "_".to_string(),
        }
    }
}

/// Why a schema or batch cannot be flattened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlattenError {
    /// Two columns get the same name after flattening.
    #[error("after flattening, column `{name}` would come from both {first} and {second}; rename one of them in the source, or choose another flatten separator or depth")]
    NameCollision {
        /// The flattened name both would get.
        name: String,
        /// The path of the first column (`a.b` for child `b` of struct `a`).
        first: String,
        /// The path of the second column.
        second: String,
    },

    /// A child whose type has no validity bitmap (union, run-end encoded) has a parent struct with nulls, so
    /// the parent's nulls cannot be carried into the flattened column.
    #[error("column {path} has type {data_type}, which cannot carry the nulls of its parent struct; flatten less deeply (flatten depth) or drop the column")]
    NullsNotRepresentable {
        /// The path of the column (`a.b`).
        path: String,
        /// Its Arrow type.
        data_type: DataType,
    },

    /// Arrow refused the flattened batch (an internal inconsistency, e.g. a batch whose arrays do not match
    /// its schema).
    #[error("cannot build the flattened batch: {0}")]
    Arrow(#[from] ArrowError),
}

/// The flattened schema of `schema` (see the module documentation for the rules).
///
/// Errors: [`FlattenError::NameCollision`] when two columns get the same name.
pub fn flatten_schema(
    schema: &Schema,
    options: &FlattenOptions,
) -> Result<SchemaRef, FlattenError> {
    let mut out = Flat::default();
    for field in schema.fields() {
        flatten_named(
            field,
            None,
            field.name(),
            field.name().clone(),
            1,
            false,
            options,
            &mut out,
        )?;
    }
    Ok(Arc::new(Schema::new_with_metadata(
        out.fields,
        schema.metadata().clone(),
    )))
}

/// Flattens a record batch; its schema is `flatten_schema(batch.schema())`.
///
/// Errors: [`FlattenError::NameCollision`] when two columns get the same name,
/// [`FlattenError::NullsNotRepresentable`] for a union or run-end encoded child of a struct with nulls.
pub fn flatten_batch(
    batch: &RecordBatch,
    options: &FlattenOptions,
) -> Result<RecordBatch, FlattenError> {
    let schema = batch.schema();
    if options.depth == 0
        || !schema
            .fields()
            .iter()
            .any(|f| matches!(f.data_type(), DataType::Struct(_)))
    {
        return Ok(batch.clone());
    }
    let mut out = Flat::default();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        flatten_named(
            field,
            Some((array, None)),
            field.name(),
            field.name().clone(),
            1,
            false,
            options,
            &mut out,
        )?;
    }
    let flat_schema = Arc::new(Schema::new_with_metadata(
        out.fields,
        schema.metadata().clone(),
    ));
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        flat_schema,
        out.arrays,
        &options,
    )?)
}

/// The flattened fields (and arrays, when flattening a batch) collected so far, with the path each name came
/// from.
#[derive(Default)]
struct Flat {
    fields: Vec<FieldRef>,
    arrays: Vec<ArrayRef>,
    paths: HashMap<String, String>,
}

/// Flattens one field whose output name is `name` and whose path is `path` (`a.b`), at nesting `level` (1 =
/// top level); `data` is its array and the combined nulls of its flattened parents, when a batch is flattened.
#[allow(clippy::too_many_arguments)]
fn flatten_named(
    field: &FieldRef,
    data: Option<(&ArrayRef, Option<&NullBuffer>)>,
    path: &str,
    name: String,
    level: usize,
    parent_nullable: bool,
    options: &FlattenOptions,
    out: &mut Flat,
) -> Result<(), FlattenError> {
    if let DataType::Struct(children) = field.data_type() {
        if level <= options.depth {
            let mut child_data = Vec::new();
            if let Some((array, parent_nulls)) = data {
                let s = array.as_struct();
                let nulls = NullBuffer::union(parent_nulls, s.nulls());
                child_data = s.columns().iter().map(|c| (c, nulls.clone())).collect();
            }
            for (i, child) in children.iter().enumerate() {
                let child_path = format!("{path}.{}", child.name());
                let child_name = format!("{name}{}{}", options.separator, child.name());
                let data = child_data.get(i).map(|(a, n)| (*a, n.as_ref()));
                flatten_named(
                    child,
                    data,
                    &child_path,
                    child_name,
                    level + 1,
                    parent_nullable || field.is_nullable(),
                    options,
                    out,
                )?;
            }
            return Ok(());
        }
    }
    emit(field, data, path, name, parent_nullable, out)
}

/// Adds one output column: the field renamed (metadata kept, nullable if a parent is), and its array with the
/// parents' nulls applied.
fn emit(
    field: &FieldRef,
    data: Option<(&ArrayRef, Option<&NullBuffer>)>,
    path: &str,
    name: String,
    parent_nullable: bool,
    out: &mut Flat,
) -> Result<(), FlattenError> {
    if let Some(first) = out.paths.get(&name) {
        return Err(FlattenError::NameCollision {
            name,
            first: first.clone(),
            second: path.to_string(),
        });
    }
    out.paths.insert(name.clone(), path.to_string());
    let nullable = field.is_nullable() || parent_nullable;
    let flat_field = if *field.name() == name && field.is_nullable() == nullable {
        field.clone()
    } else {
        Arc::new(
            Field::new(name, field.data_type().clone(), nullable)
                .with_metadata(field.metadata().clone()),
        )
    };
    out.fields.push(flat_field);
    if let Some((array, parent_nulls)) = data {
        out.arrays
            .push(with_parent_nulls(array, parent_nulls, path)?);
    }
    Ok(())
}

/// `array` with the value at each position where `parent_nulls` is null set to null; the array itself when the
/// parents have no nulls (zero-copy either way for the values).
fn with_parent_nulls(
    array: &ArrayRef,
    parent_nulls: Option<&NullBuffer>,
    path: &str,
) -> Result<ArrayRef, FlattenError> {
    let Some(parent) = parent_nulls.filter(|n| n.null_count() > 0) else {
        return Ok(array.clone());
    };
    match array.data_type() {
        DataType::Null => Ok(array.clone()),
        DataType::Union(_, _) | DataType::RunEndEncoded(_, _) => {
            Err(FlattenError::NullsNotRepresentable {
                path: path.to_string(),
                data_type: array.data_type().clone(),
            })
        }
        _ => {
            // nullif sets a value to null where the mask is true: the mask is "parent is null".
            let parent_is_null = BooleanArray::new(!parent.inner(), None);
            Ok(arrow_select::nullif::nullif(
                array.as_ref(),
                &parent_is_null,
            )?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, ListArray, StringArray, StructArray};
    use arrow_schema::Fields;
    use std::collections::HashMap;

    fn opts(depth: usize, separator: &str) -> FlattenOptions {
        FlattenOptions {
            depth,
            separator: separator.to_string(),
        }
    }

    /// `id: int32`, `a: struct<b: int32, c: struct<d: utf8, e: list<int32>>>` with rows:
    /// 0: a = {b: 1, c: {d: "x", e: [1]}}; 1: a = NULL; 2: a = {b: 3, c: NULL}; 3: a = {b: 4, c: {d: NULL, e: NULL}}
    /// (`b` is declared non-nullable; its only null is under the NULL parent).
    fn nested() -> RecordBatch {
        let d = Arc::new(StringArray::from(vec![
            Some("x"),
            Some("garbage"),
            Some("y"),
            None,
        ])) as ArrayRef;
        let e = Arc::new(ListArray::from_iter_primitive::<
            arrow_array::types::Int32Type,
            _,
            _,
        >(vec![
            Some(vec![Some(1)]),
            Some(vec![]),
            Some(vec![Some(3)]),
            None,
        ])) as ArrayRef;
        let c_fields = Fields::from(vec![
            Field::new("d", DataType::Utf8, true)
                .with_metadata(HashMap::from([("k".to_string(), "v".to_string())])),
            Field::new("e", e.data_type().clone(), true),
        ]);
        let c = Arc::new(StructArray::new(
            c_fields.clone(),
            vec![d, e],
            Some(NullBuffer::from(vec![true, true, false, true])),
        )) as ArrayRef;
        let b = Arc::new(Int32Array::from(vec![Some(1), None, Some(3), Some(4)])) as ArrayRef;
        let a_fields = Fields::from(vec![
            Field::new("b", DataType::Int32, false),
            Field::new("c", DataType::Struct(c_fields), true),
        ]);
        let a = Arc::new(StructArray::new(
            a_fields.clone(),
            vec![b, c],
            Some(NullBuffer::from(vec![true, false, true, true])),
        ));
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("a", DataType::Struct(a_fields), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int32Array::from(vec![0, 1, 2, 3])), a],
        )
        .unwrap()
    }

    fn names(schema: &Schema) -> Vec<&str> {
        schema.fields().iter().map(|f| f.name().as_str()).collect()
    }

    fn valid(batch: &RecordBatch, column: &str) -> Vec<bool> {
        let a = batch.column_by_name(column).unwrap();
        (0..a.len()).map(|i| a.is_valid(i)).collect()
    }

    #[test]
    fn defaults() {
        assert_eq!(FlattenOptions::default(), opts(1, "_"));
        let o: FlattenOptions = serde_json::from_str(r#"{"depth": 2}"#).unwrap();
        assert_eq!(o, opts(2, "_"));
        assert!(serde_json::from_str::<FlattenOptions>(r#"{"deep": 2}"#).is_err());
    }

    #[test]
    fn depth_zero_changes_nothing() {
        let batch = nested();
        let flat = flatten_batch(&batch, &opts(0, "_")).unwrap();
        assert_eq!(flat.schema(), batch.schema());
        assert_eq!(
            flatten_schema(&batch.schema(), &opts(0, "_")).unwrap(),
            batch.schema()
        );
    }

    #[test]
    fn depth_one_flattens_the_top_level_and_propagates_nulls() {
        let batch = nested();
        let flat = flatten_batch(&batch, &opts(1, "_")).unwrap();
        assert_eq!(names(&flat.schema()), ["id", "a_b", "a_c"]);
        assert_eq!(
            flat.schema(),
            flatten_schema(&batch.schema(), &opts(1, "_")).unwrap()
        );
        assert!(matches!(
            flat.schema().field(2).data_type(),
            DataType::Struct(_)
        ));
        // a_b was declared non-nullable but its parent is nullable.
        assert!(flat.schema().field(1).is_nullable());
        assert!(!flat.schema().field(0).is_nullable());
        assert_eq!(valid(&flat, "a_b"), [true, false, true, true]);
        assert_eq!(valid(&flat, "a_c"), [true, false, false, true]);
        // Zero-copy: the child's values buffer is shared.
        let before = batch.column(1).as_struct().column(0).to_data();
        let after = flat.column(1).to_data();
        assert_eq!(
            before.buffers()[0].as_ptr(),
            after.buffers()[0].as_ptr(),
            "values reused"
        );
    }

    #[test]
    fn depth_two_flattens_nested_structs_with_the_separator() {
        let batch = nested();
        let flat = flatten_batch(&batch, &opts(2, "__")).unwrap();
        assert_eq!(names(&flat.schema()), ["id", "a__b", "a__c__d", "a__c__e"]);
        assert_eq!(
            flat.schema(),
            flatten_schema(&batch.schema(), &opts(2, "__")).unwrap()
        );
        // d: row 1 parent a NULL (value "garbage" hidden), row 2 parent c NULL, row 3 own NULL.
        assert_eq!(valid(&flat, "a__c__d"), [true, false, false, false]);
        assert_eq!(valid(&flat, "a__c__e"), [true, false, false, false]);
        let d = flat.column(2).as_string::<i32>();
        assert_eq!(d.value(0), "x");
        // Field metadata is kept; the list stays a list.
        assert_eq!(flat.schema().field(2).metadata().get("k").unwrap(), "v");
        assert!(matches!(
            flat.schema().field(3).data_type(),
            DataType::List(_)
        ));
        // Deeper than the structs go is the same as depth 2.
        assert_eq!(
            flatten_batch(&batch, &opts(5, "__")).unwrap().schema(),
            flat.schema()
        );
    }

    #[test]
    fn a_collision_names_both_columns() {
        let schema = Schema::new(vec![
            Field::new("a_b", DataType::Int32, true),
            Field::new(
                "a",
                DataType::Struct(vec![Field::new("b", DataType::Utf8, true)].into()),
                true,
            ),
        ]);
        match flatten_schema(&schema, &opts(1, "_")).unwrap_err() {
            FlattenError::NameCollision {
                name,
                first,
                second,
            } => {
                assert_eq!(name, "a_b");
                assert_eq!(first, "a_b");
                assert_eq!(second, "a.b");
            }
            e => panic!("{e}"),
        }
        // Another separator avoids it.
        assert_eq!(
            names(&flatten_schema(&schema, &opts(1, ".")).unwrap()),
            ["a_b", "a.b"]
        );
        let msg = flatten_schema(&schema, &opts(1, "_"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("a_b") && msg.contains("a.b"), "{msg}");
    }

    #[test]
    fn union_under_a_struct_with_nulls_is_an_error() {
        let union = arrow_array::UnionArray::try_new(
            vec![(0, Arc::new(Field::new("i", DataType::Int32, true)))]
                .into_iter()
                .collect(),
            vec![0i8, 0].into(),
            None,
            vec![Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef],
        )
        .unwrap();
        let fields = Fields::from(vec![Field::new("u", union.data_type().clone(), true)]);
        let s = StructArray::new(
            fields.clone(),
            vec![Arc::new(union)],
            Some(NullBuffer::from(vec![true, false])),
        );
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "s",
                DataType::Struct(fields),
                true,
            )])),
            vec![Arc::new(s)],
        )
        .unwrap();
        assert!(matches!(
            flatten_batch(&batch, &FlattenOptions::default()),
            Err(FlattenError::NullsNotRepresentable { .. })
        ));
    }
}
