//! CSV and TSV: the `csv` crate over the file, byte records, positions from `csv::Position`.
//!
//! Every position handed out is *exact*: the byte offset of a record's first byte and its real
//! line. The `csv` reader stops right after a record's `\r` in a `\r\n` file (its `\n` is read as
//! part of the next record's leading line breaks), so its raw positions are moved past leading line
//! breaks with a second file handle (`probe`) before they are shown or stored.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use csv::ByteRecord;

use super::columns::{self, Builder, Cell, ColumnPlan, TextInference};
use super::{
    check_columns, config_err, make_batch, not_utf8, Common, FileFormat, FilePosition, FilesBatch,
    FilesConfig, Opened, Plan as AnyPlan, Rename, SAMPLE_ROWS,
};
use crate::SourceError;
use arrow_schema::SchemaRef;

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Records parsed per candidate when detecting the delimiter.
const SNIFF_RECORDS: usize = 100;

/// An open CSV/TSV file's settled layout.
#[derive(Debug)]
pub(super) struct Plan {
    delimiter: u8,
    quote: u8,
    /// Fields every data row must have (the header's, dropped columns included).
    fields: usize,
    marker: Option<Vec<u8>>,
    columns: Vec<ColumnPlan>,
    /// The first data row (right after the header).
    pub(super) data_start: FilePosition,
    sample_rows: u64,
}

/// The `csv` reader and the probe handle on the same file.
struct Cursor {
    rdr: csv::Reader<File>,
    probe: File,
    delimiter: u8,
    quote: u8,
}

/// Where a byte of a record leaves the `csv` crate's parser, as far as quotes go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    /// At the start of a field (a quote here opens a quoted field).
    FieldStart,
    /// In a field that did not start with a quote (quotes in it are plain characters).
    Unquoted,
    /// Inside quotes.
    Quoted,
    /// Right after a quote inside quotes: it closed the field, or it is the first of a doubled quote.
    QuoteInQuoted,
}

/// How rows are told apart and checked.
#[derive(Clone, Copy)]
struct Rows<'a> {
    fields: usize,
    marker: Option<&'a [u8]>,
    delimiter: u8,
}

impl Cursor {
    fn open(
        common: &Common,
        delimiter: u8,
        quote: u8,
        start: &FilePosition,
    ) -> Result<Cursor, SourceError> {
        let open = || File::open(&common.path).map_err(|e| common.io("cannot open it", &e));
        let rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .quote(quote)
            .from_reader(open()?);
        let mut cursor = Cursor {
            rdr,
            probe: open()?,
            delimiter,
            quote,
        };
        if start.byte != 0 {
            cursor.seek(common, start)?;
        }
        Ok(cursor)
    }

    fn seek(&mut self, common: &Common, to: &FilePosition) -> Result<(), SourceError> {
        let mut pos = csv::Position::new();
        pos.set_byte(to.byte)
            .set_line(to.line)
            .set_record(to.record);
        self.rdr.seek(pos).map_err(|e| csv_error(common, &e))
    }

    /// The exact position at `raw`: past any line breaks, with the line counted.
    fn exact(&mut self, common: &Common, raw: &csv::Position) -> Result<(u64, u64), SourceError> {
        let (mut byte, mut line) = (raw.byte(), raw.line());
        self.probe
            .seek(SeekFrom::Start(byte))
            .map_err(|e| common.io("cannot read it", &e))?;
        let mut buf = [0u8; 512];
        loop {
            let n = self
                .probe
                .read(&mut buf)
                .map_err(|e| common.io("cannot read it", &e))?;
            if n == 0 {
                return Ok((byte, line));
            }
            for &b in &buf[..n] {
                match b {
                    b'\n' => {
                        byte += 1;
                        line += 1;
                    }
                    b'\r' => byte += 1,
                    _ => return Ok((byte, line)),
                }
            }
        }
    }

    /// The real line of a record that starts at `raw` (for messages).
    fn line_of(&mut self, common: &Common, raw: &csv::Position) -> u64 {
        self.exact(common, raw)
            .map(|(_, line)| line)
            .unwrap_or(raw.line())
    }

    /// The next record that is not blank (one field of spaces); its raw start.
    fn raw_next(
        &mut self,
        common: &Common,
        rec: &mut ByteRecord,
    ) -> Result<Option<csv::Position>, SourceError> {
        loop {
            let pos = self.rdr.position().clone();
            if !self
                .rdr
                .read_byte_record(rec)
                .map_err(|e| csv_error(common, &e))?
            {
                return Ok(None);
            }
            if self.rdr.position().byte() >= common.size {
                // The record ran into the end of the file: an unclosed quote would have swallowed the rest.
                self.check_quotes_closed(common, &pos)?;
            }
            if rec.len() == 1 && rec[0].trim_ascii().is_empty() {
                continue;
            }
            return Ok(Some(pos));
        }
    }

    /// Checks that the file's last record, starting at `raw`, closes every quote it opens: the `csv` crate reads
    /// an unclosed quote to the end of the file as one cell without saying so.
    ///
    /// Errors: [`SourceError::File`] naming the line where the quote that is never closed opened.
    fn check_quotes_closed(
        &mut self,
        common: &Common,
        raw: &csv::Position,
    ) -> Result<(), SourceError> {
        let (byte, mut line) = self.exact(common, raw)?;
        self.probe
            .seek(SeekFrom::Start(byte))
            .map_err(|e| common.io("cannot read it", &e))?;
        let mut rest = Vec::new();
        self.probe
            .read_to_end(&mut rest)
            .map_err(|e| common.io("cannot read it", &e))?;
        let (quote, delimiter) = (self.quote, self.delimiter);
        let mut state = QuoteState::FieldStart;
        let mut opened = line;
        for &b in &rest {
            state = match (state, b) {
                (QuoteState::FieldStart, b) if b == quote => {
                    opened = line;
                    QuoteState::Quoted
                }
                (QuoteState::Quoted, b) if b == quote => QuoteState::QuoteInQuoted,
                (QuoteState::Quoted, _) => QuoteState::Quoted,
                // `""` inside quotes is one quote character.
                (QuoteState::QuoteInQuoted, b) if b == quote => QuoteState::Quoted,
                (_, b) if b == delimiter || b == b'\n' || b == b'\r' => QuoteState::FieldStart,
                _ => QuoteState::Unquoted,
            };
            if b == b'\n' {
                line += 1;
            }
        }
        if state == QuoteState::Quoted {
            return Err(common.err(
                Some(opened),
                None,
                format!(
                    "quote opened here is never closed: the rest of the file would be read as one value; \
                     close the quote ({q}) or double each {q} inside a quoted value ({q}{q})",
                    q = char::from(quote)
                ),
            ));
        }
        Ok(())
    }

    /// The next data record: ignored rows skipped, the field count checked.
    fn next_data(
        &mut self,
        common: &Common,
        rec: &mut ByteRecord,
        rows: Rows<'_>,
    ) -> Result<Option<csv::Position>, SourceError> {
        loop {
            let Some(pos) = self.raw_next(common, rec)? else {
                return Ok(None);
            };
            if is_ignored_row(rec, rows.marker) {
                continue;
            }
            if rec.len() != rows.fields {
                let line = self.line_of(common, &pos);
                let hint = match rows.marker {
                    Some(m) => format!(
                        ", or write `{}` in each of its cells to skip it",
                        String::from_utf8_lossy(m)
                    ),
                    None => String::new(),
                };
                return Err(common.err(
                    Some(line),
                    None,
                    format!(
                        "the row has {} field{} but the header has {} (delimiter `{}`); every row needs one value \
                         per column — fix the row (a missing or extra delimiter, or an unclosed quote){hint}",
                        rec.len(),
                        if rec.len() == 1 { "" } else { "s" },
                        rows.fields,
                        char::from(rows.delimiter).escape_default()
                    ),
                ));
            }
            return Ok(Some(pos));
        }
    }
}

fn csv_error(common: &Common, e: &csv::Error) -> SourceError {
    common.err(
        e.position().map(csv::Position::line),
        None,
        format!("cannot read it: {e}"),
    )
}

/// A row whose every non-empty (trimmed) cell is the marker, with at least one marker.
fn is_ignored_row(rec: &ByteRecord, marker: Option<&[u8]>) -> bool {
    let Some(marker) = marker else {
        return false;
    };
    let mut any = false;
    for cell in rec {
        let cell = cell.trim_ascii();
        if cell == marker {
            any = true;
        } else if !cell.is_empty() {
            return false;
        }
    }
    any
}

/// The delimiter among `,` `\t` `;` `|` that splits the sampled records most consistently into
/// ≥ 2 fields: fully consistent first, then the format's own (`preferred`), then the share of
/// records with the most common field count, then more fields, then the order above.
fn sniff(head: &[u8], quote: u8, skip_rows: usize, truncated: bool, preferred: Option<u8>) -> u8 {
    const CANDIDATES: [u8; 4] = [b',', b'\t', b';', b'|'];
    /// (fully consistent, preferred, share ‰, fields, earlier in the list).
    type Score = (bool, bool, u64, usize, usize);
    let mut best: Option<(Score, u8)> = None;
    for (order, &d) in CANDIDATES.iter().enumerate() {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(d)
            .quote(quote)
            .from_reader(head);
        let mut counts = Vec::new();
        let mut rec = ByteRecord::new();
        let mut ended = false;
        while counts.len() < skip_rows + SNIFF_RECORDS {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => {
                    if !(rec.len() == 1 && rec[0].trim_ascii().is_empty()) {
                        counts.push(rec.len());
                    }
                }
                _ => {
                    ended = true;
                    break;
                }
            }
        }
        if ended && truncated {
            counts.pop(); // cut off by the end of the head
        }
        let counts = &counts[skip_rows.min(counts.len())..];
        if counts.is_empty() {
            continue;
        }
        let mut modal = (0usize, 0usize); // (occurrences, field count)
        for &c in counts {
            let n = counts.iter().filter(|&&x| x == c).count();
            if (n, c) > modal {
                modal = (n, c);
            }
        }
        let (n, fields) = modal;
        if fields < 2 {
            continue;
        }
        let share = (n as u64 * 1000) / counts.len() as u64;
        let key = (
            n == counts.len(),
            Some(d) == preferred,
            share,
            fields,
            CANDIDATES.len() - order,
        );
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, d));
        }
    }
    best.map(|(_, d)| d).or(preferred).unwrap_or(b',')
}

pub(super) fn open(
    common: &Common,
    config: &FilesConfig,
    head: &[u8],
    format: Option<FileFormat>,
) -> Result<Opened, SourceError> {
    let bom = head.starts_with(BOM);
    let quote = config.quote.unwrap_or(b'"');
    let preferred = match format {
        Some(FileFormat::Csv) => Some(b','),
        Some(FileFormat::Tsv) => Some(b'\t'),
        _ => None,
    };
    let delimiter = match config.delimiter {
        Some(d) => d,
        None => sniff(
            &head[if bom { BOM.len() } else { 0 }..],
            quote,
            config.skip_rows,
            common.size > head.len() as u64,
            preferred,
        ),
    };
    if delimiter == quote {
        return Err(config_err(format!(
            "files: the delimiter of {} is `{}`, the same as the quote; set quote to another character",
            common.display,
            char::from(quote).escape_default()
        )));
    }
    let format = format.unwrap_or(if delimiter == b'\t' {
        FileFormat::Tsv
    } else {
        FileFormat::Csv
    });
    let start = FilePosition {
        byte: if bom { BOM.len() as u64 } else { 0 },
        line: 1,
        record: 0,
    };
    let mut cur = Cursor::open(common, delimiter, quote, &start)?;
    let marker: Option<Vec<u8>> = config
        .ignore_marker
        .as_ref()
        .map(|m| m.trim().as_bytes().to_vec());
    let mut rec = ByteRecord::new();
    for done in 0..config.skip_rows {
        if cur.raw_next(common, &mut rec)?.is_none() {
            return Err(common.err(
                None,
                None,
                format!(
                    "it has only {done} rows, but skip_rows is {}; check skip_rows",
                    config.skip_rows
                ),
            ));
        }
    }

    // The header (or, without one, the first data row, to count the fields).
    let empty = || {
        common.err(
            None,
            None,
            "it holds no rows (after skipped and [ignore]d rows); a header row naming the columns was expected",
        )
    };
    let first = loop {
        let Some(pos) = cur.raw_next(common, &mut rec)? else {
            return Err(empty());
        };
        if !is_ignored_row(&rec, marker.as_deref()) {
            break pos;
        }
    };
    let fields = rec.len();
    // (position, trimmed header cell) of the kept columns, and why each name may differ.
    let mut kept: Vec<(usize, String)> = Vec::new();
    let data_start;
    if config.header {
        for (i, cell) in rec.iter().enumerate() {
            let text = std::str::from_utf8(cell).map_err(|e| {
                let line = cur.line_of(common, &first);
                common.err(Some(line), None, not_utf8(cell, e))
            })?;
            let text = text.trim();
            if marker.as_deref() == Some(text.as_bytes()) {
                continue;
            }
            kept.push((i, text.to_string()));
        }
        let (byte, line) = cur.exact(common, &cur.rdr.position().clone())?;
        data_start = FilePosition {
            byte,
            line,
            record: 0,
        };
    } else {
        kept = (0..fields).map(|i| (i, String::new())).collect();
        let (byte, line) = cur.exact(common, &first)?;
        data_start = FilePosition {
            byte,
            line,
            record: 0,
        };
        cur.seek(common, &data_start)?;
    }
    if kept.is_empty() {
        return Err(common.err(
            Some(data_start.line.saturating_sub(1).max(1)),
            None,
            "every column is marked to be ignored; nothing is left to load",
        ));
    }
    let names: Vec<(String, Option<Rename>)> = if config.header {
        columns::unique_names(&kept)
    } else {
        kept.iter()
            .map(|(i, _)| (format!("column_{}", i + 1), Some(Rename::NoHeader)))
            .collect()
    };
    let all_names: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    check_columns(config, &all_names)?;

    // The sample.
    let rows = Rows {
        fields,
        marker: marker.as_deref(),
        delimiter,
    };
    let mut stats: Vec<TextInference> = kept.iter().map(|_| TextInference::new()).collect();
    let mut sample_rows = 0u64;
    while (sample_rows as usize) < SAMPLE_ROWS {
        let Some(pos) = cur.next_data(common, &mut rec, rows)? else {
            break;
        };
        for (((index, _), (name, _)), stat) in kept.iter().zip(&names).zip(stats.iter_mut()) {
            let raw = &rec[*index];
            let text = std::str::from_utf8(raw).map_err(|e| {
                let line = cur.line_of(common, &pos);
                common.err(Some(line), Some(name), not_utf8(raw, e))
            })?;
            stat.observe(text);
        }
        sample_rows += 1;
    }

    let mut plans = Vec::with_capacity(kept.len());
    let mut reports = Vec::with_capacity(kept.len());
    for (((index, header), (name, renamed)), stat) in kept.into_iter().zip(names).zip(stats) {
        let (kind, origin) = columns::choose_kind(config, &name, || stat.result());
        let plan = ColumnPlan {
            name,
            index,
            source: header.clone(),
            kind,
        };
        reports.push(columns::report(
            &plan,
            header,
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
        plan: AnyPlan::Delimited(Plan {
            delimiter,
            quote,
            fields,
            marker,
            columns: plans,
            data_start,
            sample_rows,
        }),
        schema,
        reports,
        format,
        delimiter: Some(delimiter),
    })
}

/// A CSV/TSV reader between batches.
pub(super) struct Reader {
    cur: Cursor,
    rec: ByteRecord,
    /// Where the reader stands (exact), if known: a read from there needs no seek.
    at: Option<FilePosition>,
    /// A data record read ahead to learn whether the last batch was the last; it starts at `at`.
    pending: Option<(csv::Position, ByteRecord)>,
}

impl Reader {
    pub(super) fn new(common: &Common, plan: &Plan) -> Result<Reader, SourceError> {
        let cur = Cursor::open(common, plan.delimiter, plan.quote, &plan.data_start)?;
        Ok(Reader {
            cur,
            rec: ByteRecord::new(),
            at: Some(plan.data_start.clone()),
            pending: None,
        })
    }

    pub(super) fn read(
        &mut self,
        common: &Common,
        plan: &Plan,
        schema: &SchemaRef,
        from: Option<&FilePosition>,
    ) -> Result<Option<FilesBatch>, SourceError> {
        let start = common.start_position(from, &plan.data_start)?;
        // Until this read succeeds the reader's place is unknown: an error leaves `at` empty.
        if self.at.take().as_ref() != Some(&start) {
            self.pending = None;
            self.cur.seek(common, &start)?;
        }
        let rows = Rows {
            fields: plan.fields,
            marker: plan.marker.as_deref(),
            delimiter: plan.delimiter,
        };
        let capacity = common.batch_rows.min(SAMPLE_ROWS * 10);
        let mut builders: Vec<Builder> = plan
            .columns
            .iter()
            .map(|c| Builder::new(&c.kind, capacity))
            .collect();
        let mut count = 0usize;
        let mut eof = false;
        while count < common.batch_rows {
            let pos = match self.pending.take() {
                Some((pos, rec)) => {
                    self.rec = rec;
                    pos
                }
                None => match self.cur.next_data(common, &mut self.rec, rows)? {
                    Some(pos) => pos,
                    None => {
                        eof = true;
                        break;
                    }
                },
            };
            for (column, builder) in plan.columns.iter().zip(builders.iter_mut()) {
                let raw = &self.rec[column.index];
                let text = match std::str::from_utf8(raw) {
                    Ok(t) => t,
                    Err(e) => {
                        let line = self.cur.line_of(common, &pos);
                        return Err(common.err(Some(line), Some(&column.name), not_utf8(raw, e)));
                    }
                };
                if let Err(value) = builder.append(&column.kind, Cell::Text(text)) {
                    let line = self.cur.line_of(common, &pos);
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
            let mut rec = ByteRecord::new();
            if let Some(pos) = self.cur.next_data(common, &mut rec, rows)? {
                self.pending = Some((pos, rec));
            }
        }
        let raw = match &self.pending {
            Some((pos, _)) => pos.clone(),
            None => self.cur.rdr.position().clone(),
        };
        let (byte, line) = self.cur.exact(common, &raw)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_delimiter() {
        assert_eq!(sniff(b"a,b,c\n1,2,3\n", b'"', 0, false, None), b',');
        assert_eq!(sniff(b"a\tb\n1\t\"x,y,z\"\n", b'"', 0, false, None), b'\t');
        assert_eq!(sniff(b"a;b\n1;2,5\n", b'"', 0, false, None), b';');
        assert_eq!(sniff(b"a|b|c\n1|2|3\n", b'"', 0, false, None), b'|');
        // A TSV whose cells hold commas: tab wins for a .tsv, and by consistency anyway.
        let tsv = b"id\tdiagnosis\n1\thead,shoulders\n2\thead\n";
        assert_eq!(sniff(tsv, b'"', 0, false, Some(b'\t')), b'\t');
        assert_eq!(sniff(tsv, b'"', 0, false, None), b'\t');
        // One column: the format's own.
        assert_eq!(sniff(b"a\n1\n", b'"', 0, false, Some(b'\t')), b'\t');
        assert_eq!(sniff(b"a\n1\n", b'"', 0, false, None), b',');
        // Rows before the header are not counted.
        assert_eq!(sniff(b"note\na;b\n1;2\n", b'"', 1, false, None), b';');
    }

    #[test]
    fn ignored_rows() {
        let m = Some(&b"[ignore]"[..]);
        assert!(is_ignored_row(
            &ByteRecord::from(vec!["[ignore]", " ", ""]),
            m
        ));
        assert!(!is_ignored_row(&ByteRecord::from(vec!["[ignore]", "x"]), m));
        assert!(!is_ignored_row(&ByteRecord::from(vec!["", ""]), m));
        assert!(!is_ignored_row(&ByteRecord::from(vec!["[ignore]"]), None));
    }
}
