//! JSON Lines: one JSON object per line, decoded with `serde_json` into the column builders.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};

use arrow_schema::SchemaRef;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::columns::{self, parse_date, parse_timestamp, Builder, Cell, ColumnPlan};
use super::{
    check_columns, make_batch, not_utf8, ColumnType, Common, FileFormat, FilePosition, FilesBatch,
    FilesConfig, Opened, Plan as AnyPlan, SAMPLE_ROWS,
};
use crate::SourceError;

/// An open JSON Lines file's settled layout.
#[derive(Debug)]
pub(super) struct Plan {
    columns: Vec<ColumnPlan>,
    /// The first line (after a BOM).
    pub(super) data_start: FilePosition,
    sample_rows: u64,
}

/// What the sample's values of one key allow.
#[derive(Debug, Default)]
struct JsonInference {
    booleans: bool,
    integers: bool,
    floats: bool,
    strings: bool,
    nested: bool,
    /// Every string is a `YYYY-MM-DD` date / an RFC 3339 timestamp.
    not_date: bool,
    not_timestamp: bool,
    non_null: u64,
    example: Option<String>,
}

impl JsonInference {
    fn observe(&mut self, v: &Value) {
        match v {
            Value::Null => return,
            Value::Bool(_) => self.booleans = true,
            Value::Number(n) => {
                if n.is_i64() {
                    self.integers = true
                } else {
                    self.floats = true
                }
            }
            Value::String(s) => {
                if s.trim().is_empty() {
                    return;
                }
                self.strings = true;
                let t = s.trim();
                self.not_date |= parse_date(t).is_none();
                self.not_timestamp |= parse_timestamp(t, false).is_none();
            }
            Value::Array(_) | Value::Object(_) => self.nested = true,
        }
        self.non_null += 1;
        if self.example.is_none() {
            self.example = Some(columns::preview(&match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }));
        }
    }

    fn result(&self) -> ColumnType {
        let numbers = self.integers || self.floats;
        let kinds = [self.booleans, numbers, self.strings, self.nested]
            .iter()
            .filter(|&&k| k)
            .count();
        if kinds != 1 {
            return ColumnType::Text; // nothing, or a mix: text (non-strings as JSON text)
        }
        if self.booleans {
            ColumnType::Bool
        } else if numbers {
            if self.floats {
                ColumnType::Float64
            } else {
                ColumnType::Int64
            }
        } else if self.strings && !self.not_date {
            ColumnType::Date
        } else if self.strings && !self.not_timestamp {
            ColumnType::Timestamp
        } else {
            ColumnType::Text
        }
    }
}

/// A JSON Lines reader: positions are tracked by hand (`BufReader` + `read_until`).
pub(super) struct Reader {
    rdr: BufReader<File>,
    /// Where `rdr` stands: byte offset and line.
    byte: u64,
    line: u64,
    buf: Vec<u8>,
    /// Where the next batch continues without a seek, if known.
    at: Option<FilePosition>,
    /// A non-blank line read ahead (its start and bytes); it starts at `at`.
    pending: Option<(u64, u64, Vec<u8>)>,
    /// Column index of each key, and keys not in the schema already warned about.
    index: HashMap<String, usize>,
    warned: BTreeSet<String>,
}

impl Reader {
    pub(super) fn new(common: &Common, plan: &Plan) -> Result<Reader, SourceError> {
        let file = File::open(&common.path).map_err(|e| common.io("cannot open it", &e))?;
        let mut reader = Reader {
            rdr: BufReader::with_capacity(256 * 1024, file),
            byte: 0,
            line: 1,
            buf: Vec::new(),
            at: None,
            pending: None,
            index: plan
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.source.clone(), i))
                .collect(),
            warned: BTreeSet::new(),
        };
        reader.seek(common, &plan.data_start)?;
        reader.at = Some(plan.data_start.clone());
        Ok(reader)
    }

    fn seek(&mut self, common: &Common, to: &FilePosition) -> Result<(), SourceError> {
        self.rdr
            .seek(SeekFrom::Start(to.byte))
            .map_err(|e| common.io("cannot read it", &e))?;
        self.byte = to.byte;
        self.line = to.line;
        self.pending = None;
        Ok(())
    }

    /// The next non-blank line into `buf`; its start (byte, line).
    fn next_line(&mut self, common: &Common) -> Result<Option<(u64, u64)>, SourceError> {
        loop {
            let start = (self.byte, self.line);
            self.buf.clear();
            let n = self
                .rdr
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| common.io("cannot read it", &e))?;
            if n == 0 {
                return Ok(None);
            }
            self.byte += n as u64;
            if self.buf.last() == Some(&b'\n') {
                self.line += 1;
            }
            if !self.buf.trim_ascii().is_empty() {
                return Ok(Some(start));
            }
        }
    }

    pub(super) fn read(
        &mut self,
        common: &Common,
        plan: &Plan,
        schema: &SchemaRef,
        from: Option<&FilePosition>,
    ) -> Result<Option<FilesBatch>, SourceError> {
        let start = common.start_position(from, &plan.data_start)?;
        if self.at.take().as_ref() != Some(&start) {
            self.seek(common, &start)?;
        }
        let capacity = common.batch_rows.min(SAMPLE_ROWS * 10);
        let mut builders: Vec<Builder> = plan
            .columns
            .iter()
            .map(|c| Builder::new(&c.kind, capacity))
            .collect();
        let mut count = 0usize;
        let mut eof = false;
        while count < common.batch_rows {
            let line = match self.pending.take() {
                Some((_, line, bytes)) => {
                    self.buf = bytes;
                    line
                }
                None => match self.next_line(common)? {
                    Some((_, line)) => line,
                    None => {
                        eof = true;
                        break;
                    }
                },
            };
            let object = parse_object(common, line, &self.buf)?;
            let mut cells: Vec<Option<&Value>> = vec![None; plan.columns.len()];
            for (key, value) in &object.0 {
                match self.index.get(key) {
                    Some(&i) => cells[i] = Some(value),
                    None => {
                        if self.warned.insert(key.clone()) {
                            tracing::warn!(
                                path = %common.display,
                                line,
                                key = %key,
                                "a key first seen after the sample is not loaded; \
                                 it is not in the schema inferred from the first rows"
                            );
                        }
                    }
                }
            }
            for ((column, builder), cell) in plan.columns.iter().zip(builders.iter_mut()).zip(cells)
            {
                let cell = cell.map_or(Cell::Null, Cell::Json);
                if let Err(value) = builder.append(&column.kind, cell) {
                    return Err(common.err(
                        Some(line),
                        Some(&column.name),
                        columns::type_mismatch(column, &value, plan.sample_rows),
                    ));
                }
            }
            count += 1;
        }
        if !eof {
            if let Some((byte, line)) = self.next_line(common)? {
                self.pending = Some((byte, line, std::mem::take(&mut self.buf)));
            }
        }
        let (byte, line) = match &self.pending {
            Some((byte, line, _)) => (*byte, *line),
            None => (self.byte, self.line),
        };
        let next = FilePosition {
            byte,
            line,
            record: start.record + count as u64,
        };
        self.at = Some(next.clone());
        if count == 0 {
            return Ok(None);
        }
        let batch = make_batch(common, schema, builders)?;
        let begin = if from.is_some() { start.byte } else { 0 };
        Ok(Some(FilesBatch {
            batch,
            bytes: next.byte.saturating_sub(begin),
            last: self.pending.is_none(),
            next,
        }))
    }
}

/// A JSON object with its keys in the order of the text (a later duplicate key wins on lookup).
struct Object(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Object(entries))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

/// One line as a JSON object.
fn parse_object(common: &Common, line: u64, bytes: &[u8]) -> Result<Object, SourceError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| common.err(Some(line), None, not_utf8(bytes, e)))?;
    serde_json::from_str::<Object>(text).map_err(|e| {
        common.err(
            Some(line),
            None,
            format!(
                "cannot read `{}` as one JSON object ({e}); each line of a JSON Lines file must be one complete JSON object",
                columns::preview(text.trim())
            ),
        )
    })
}

pub(super) fn open(
    common: &Common,
    config: &FilesConfig,
    head: &[u8],
) -> Result<Opened, SourceError> {
    let data_start = FilePosition {
        byte: if head.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        },
        line: 1,
        record: 0,
    };
    let mut reader = Reader::new(
        common,
        &Plan {
            columns: Vec::new(),
            data_start: data_start.clone(),
            sample_rows: 0,
        },
    )?;
    // Keys in order of first appearance, and what their values allow.
    let mut keys: Vec<String> = Vec::new();
    let mut stats: Vec<JsonInference> = Vec::new();
    let mut sample_rows = 0u64;
    while (sample_rows as usize) < SAMPLE_ROWS {
        let Some((_, line)) = reader.next_line(common)? else {
            break;
        };
        let object = parse_object(common, line, &reader.buf)?;
        for (key, value) in &object.0 {
            let i = match keys.iter().position(|k| k == key) {
                Some(i) => i,
                None => {
                    keys.push(key.clone());
                    stats.push(JsonInference::default());
                    keys.len() - 1
                }
            };
            stats[i].observe(value);
        }
        sample_rows += 1;
    }
    if keys.is_empty() {
        return Err(common.err(
            None,
            None,
            "it holds no JSON object with any key in its first lines; nothing to load",
        ));
    }
    let indexed: Vec<(usize, String)> = keys.iter().cloned().enumerate().collect();
    let names = columns::unique_names(&indexed);
    let all_names: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    check_columns(config, &all_names)?;
    let mut plans = Vec::with_capacity(keys.len());
    let mut reports = Vec::with_capacity(keys.len());
    for (((index, key), (name, renamed)), stat) in indexed.into_iter().zip(names).zip(stats) {
        let (kind, origin) = columns::choose_kind(config, &name, || stat.result());
        let plan = ColumnPlan {
            name,
            index,
            source: key.clone(),
            kind,
        };
        reports.push(columns::report(
            &plan,
            key,
            origin,
            renamed,
            sample_rows,
            stat.non_null,
            stat.example,
        ));
        plans.push(plan);
    }
    let schema = columns::schema_of(&plans);
    Ok(Opened {
        plan: AnyPlan::Jsonl(Plan {
            columns: plans,
            data_start,
            sample_rows,
        }),
        schema,
        reports,
        format: FileFormat::Jsonl,
        delimiter: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(values: &[Value]) -> ColumnType {
        let mut i = JsonInference::default();
        for v in values {
            i.observe(v);
        }
        i.result()
    }

    #[test]
    fn infers_from_json_types() {
        use serde_json::json;
        assert_eq!(infer(&[json!(1), json!(null), json!(2)]), ColumnType::Int64);
        assert_eq!(infer(&[json!(1), json!(2.5)]), ColumnType::Float64);
        assert_eq!(infer(&[json!(true)]), ColumnType::Bool);
        assert_eq!(infer(&[json!("2020-01-02")]), ColumnType::Date);
        assert_eq!(
            infer(&[json!("2020-01-02T00:00:00Z")]),
            ColumnType::Timestamp
        );
        assert_eq!(infer(&[json!("12")]), ColumnType::Text);
        assert_eq!(infer(&[json!(1), json!("x")]), ColumnType::Text);
        assert_eq!(infer(&[json!({"a": 1})]), ColumnType::Text);
        assert_eq!(infer(&[]), ColumnType::Text);
    }
}
