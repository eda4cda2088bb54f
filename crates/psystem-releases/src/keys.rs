//! Primary-key suggestions for a dataset, from uniqueness in its data (`psystem releases show --suggest-keys`).
//!
//! Candidates are the text and integer columns of the flattened schema, id-like names first (`id`, `…Id`,
//! `…_id`). A candidate qualifies when no value is NULL and no value repeats across all files of the dataset.
//! When no single column qualifies, pairs of the first candidates are tried. Memory grows with the number of
//! distinct values of the candidates (a suggestion reads the whole dataset once).

use std::collections::HashSet;
use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int16Type, Int32Type, Int64Type, Int8Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde::Serialize;

use crate::reader::{read_file, DatasetSchema};
use crate::ReleaseError;

/// Candidate columns examined (single) and the first candidates combined in pairs.
const MAX_CANDIDATES: usize = 16;
const MAX_PAIR_CANDIDATES: usize = 5;

/// One suggested key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySuggestion {
    /// The key's columns.
    pub columns: Vec<String>,
    /// Rows examined.
    pub rows: u64,
}

/// The outcome of examining a dataset.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    /// Keys under which every row is unique and non-NULL, best first.
    pub keys: Vec<KeySuggestion>,
    /// Candidates that did not qualify, with why (`3 duplicates, e.g. "EFO_1"`, `12 NULLs`).
    pub rejected: Vec<(Vec<String>, String)>,
}

/// One local file of a dataset: its path in the cache, its path in the release (for errors) and its Hive
/// partition values (`key`, `value`).
pub type LocalFile = (PathBuf, String, Vec<(String, String)>);

/// Examines the dataset's local files.
pub fn suggest_keys(
    files: &[LocalFile],
    schema: &DatasetSchema,
) -> Result<KeyReport, ReleaseError> {
    let mut candidates: Vec<usize> = schema
        .flat
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| key_type(f.data_type()))
        .map(|(i, _)| i)
        .collect();
    candidates.sort_by_key(|&i| (!id_like(schema.flat.field(i).name()), i));
    candidates.truncate(MAX_CANDIDATES);
    let mut sets: Vec<Option<Tracker>> = candidates
        .iter()
        .map(|_| Some(Tracker::default()))
        .collect();
    let pair_idx: Vec<(usize, usize)> = {
        let n = candidates.len().min(MAX_PAIR_CANDIDATES);
        (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
            .collect()
    };
    let mut pairs: Vec<Tracker> = pair_idx.iter().map(|_| Tracker::default()).collect();
    let mut rows = 0u64;
    for (local, shown, partitions) in files {
        for batch in read_file(local, shown, partitions, schema)? {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            let keys: Vec<Vec<Option<Vec<u8>>>> =
                candidates.iter().map(|&c| column_keys(&batch, c)).collect();
            for (k, tracker) in keys.iter().zip(sets.iter_mut()) {
                if let Some(t) = tracker {
                    for v in k {
                        t.add(v.clone());
                    }
                }
            }
            for ((a, b), t) in pair_idx.iter().zip(pairs.iter_mut()) {
                for (x, y) in keys[*a].iter().zip(keys[*b].iter()) {
                    let v = match (x, y) {
                        (Some(x), Some(y)) => {
                            let mut v = Vec::with_capacity(x.len() + y.len() + 9);
                            v.extend_from_slice(&(x.len() as u64).to_le_bytes());
                            v.extend_from_slice(x);
                            v.push(0);
                            v.extend_from_slice(y);
                            Some(v)
                        }
                        _ => None,
                    };
                    t.add(v);
                }
            }
        }
    }
    let name = |i: usize| schema.flat.field(candidates[i]).name().clone();
    let mut report = KeyReport {
        keys: Vec::new(),
        rejected: Vec::new(),
    };
    for (i, t) in sets.into_iter().enumerate() {
        let t = t.expect("tracker");
        match t.verdict() {
            None => report.keys.push(KeySuggestion {
                columns: vec![name(i)],
                rows,
            }),
            Some(why) => report.rejected.push((vec![name(i)], why)),
        }
    }
    if report.keys.is_empty() {
        for ((a, b), t) in pair_idx.iter().zip(pairs) {
            match t.verdict() {
                None => report.keys.push(KeySuggestion {
                    columns: vec![name(*a), name(*b)],
                    rows,
                }),
                Some(why) => report.rejected.push((vec![name(*a), name(*b)], why)),
            }
        }
    }
    Ok(report)
}

#[derive(Default)]
struct Tracker {
    seen: HashSet<Vec<u8>>,
    nulls: u64,
    duplicates: u64,
    example: Option<Vec<u8>>,
}

impl Tracker {
    fn add(&mut self, v: Option<Vec<u8>>) {
        match v {
            None => self.nulls += 1,
            Some(v) => {
                if self.seen.contains(&v) {
                    self.duplicates += 1;
                    if self.example.is_none() {
                        self.example = Some(v);
                    }
                } else {
                    self.seen.insert(v);
                }
            }
        }
    }

    fn verdict(&self) -> Option<String> {
        if self.duplicates > 0 {
            let ex = self
                .example
                .as_ref()
                .map(|e| format!(", e.g. `{}`", String::from_utf8_lossy(e)))
                .unwrap_or_default();
            Some(format!("{} duplicate values{ex}", self.duplicates))
        } else if self.nulls > 0 {
            Some(format!("{} NULLs", self.nulls))
        } else {
            None
        }
    }
}

fn key_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
    )
}

fn id_like(name: &str) -> bool {
    name == "id" || name.ends_with("Id") || name.ends_with("_id") || name.ends_with("ID")
}

fn column_keys(batch: &RecordBatch, column: usize) -> Vec<Option<Vec<u8>>> {
    let array = batch.column(column);
    let n = array.len();
    let get = |i: usize| -> Option<Vec<u8>> {
        if array.is_null(i) {
            return None;
        }
        Some(match array.data_type() {
            DataType::Utf8 => array.as_string::<i32>().value(i).as_bytes().to_vec(),
            DataType::LargeUtf8 => array.as_string::<i64>().value(i).as_bytes().to_vec(),
            DataType::Int8 => array
                .as_primitive::<Int8Type>()
                .value(i)
                .to_string()
                .into_bytes(),
            DataType::Int16 => array
                .as_primitive::<Int16Type>()
                .value(i)
                .to_string()
                .into_bytes(),
            DataType::Int32 => array
                .as_primitive::<Int32Type>()
                .value(i)
                .to_string()
                .into_bytes(),
            DataType::Int64 => array
                .as_primitive::<Int64Type>()
                .value(i)
                .to_string()
                .into_bytes(),
            _ => return None,
        })
    };
    (0..n).map(get).collect()
}
