//! Streaming over a UniProtKB flat file one entry at a time.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{ParseError, ParseErrorKind};
use crate::model::Entry;
use crate::parse::{fill_digests, parse_entry_text};

/// Bytes asked of the underlying reader per read.
const READ_CHUNK: usize = 256 * 1024;

/// An entry longer than this (no `//` line within it) stops the reader: the input is not a flat file.
/// The largest Swiss-Prot entries are a few MiB.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024 * 1024;

/// Reads UniProtKB flat-file entries from a byte stream, one at a time.
///
/// The reader parses ahead in batches of up to 128 entries or 1 MiB of entry text (or one entry, if larger) and
/// computes the batch's `content_md5` and `sequence_md5` digests together, eight at a time
/// (see `docs/UNIPROT.md`, "Speed"); it then hands the entries out one by one. Memory is bounded by one batch: its
/// entries' text plus one read chunk (256 KiB) in the read buffer, and its parsed entries. Positions
/// ([`Self::bytes_consumed`], [`Self::next_line`], [`Self::entries_seen`]) are those of the last item returned,
/// not of the read-ahead. As an [`Iterator`] it yields `Result<Entry, ParseError>`:
/// - an entry that fails to parse yields `Err` and the reader continues with the entry after its `//` line (or,
///   when an entry lost its `//`, with the next `ID` line), so the caller decides to skip-and-count or stop;
/// - a read error (file, gzip, network) yields one `Err` whose kind is [`ParseErrorKind::Io`], then `None`.
///
/// Blank lines between entries are ignored. Line numbers in errors are 1-based over the whole (decompressed)
/// stream. `R` is any [`Read`]; a `BufRead` is not needed (the reader buffers itself).
pub struct EntryReader<R> {
    inner: R,
    /// Read buffer; `buf[..end]` holds data, the rest is room for the next read.
    buf: Vec<u8>,
    end: usize,
    /// Start of the next entry in `buf`.
    pos: usize,
    /// Absolute index in `buf` from which the terminator search resumes.
    scanned: usize,
    eof: bool,
    done: bool,
    /// 1-based line number of `buf[pos]`.
    line: u64,
    /// Bytes drained from the front of `buf`.
    drained: u64,
    source: Option<Arc<Path>>,
    /// Entries parsed (or failed) ahead of the caller, in stream order, waiting to be returned.
    ready: VecDeque<Queued>,
    /// While a batch is being parsed: stream offset of its first entry, whose bytes `fill` must keep.
    batch_start: Option<u64>,
    /// Positions as of the last item returned (the reader itself may have parsed further ahead).
    reported: Position,
}

/// Where the stream stands after an item.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// Bytes consumed (stream offset after the item).
    bytes: u64,
    /// 1-based line number after the item.
    line: u64,
    /// Items so far.
    entries: u64,
}

/// An item parsed ahead, with the position after it.
struct Queued {
    item: Result<Entry, ParseError>,
    after: Position,
}

/// A batch ends when it holds this many entries …
const BATCH_ENTRIES: usize = 128;
/// … or this many bytes of entry text. Entries of a batch have their MD5 digests computed together; larger batches
/// keep the eight MD5 lanes busier (fewer lanes idle while one long entry finishes), at the cost of memory.
const BATCH_BYTES: u64 = 1024 * 1024;

impl<R: Read> EntryReader<R> {
    /// A reader over `inner` (plain flat-file text; use [`open_path`] for files that may be gzip-compressed, or
    /// wrap a `flate2::read::MultiGzDecoder` yourself).
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; READ_CHUNK * 2],
            end: 0,
            pos: 0,
            scanned: 0,
            eof: false,
            done: false,
            line: 1,
            drained: 0,
            source: None,
            ready: VecDeque::new(),
            batch_start: None,
            reported: Position {
                bytes: 0,
                line: 1,
                entries: 0,
            },
        }
    }

    /// Name the source in errors (usually the file path).
    pub fn with_source_name(mut self, name: impl Into<PathBuf>) -> Self {
        self.source = Some(Arc::from(name.into()));
        self
    }

    /// Report positions as if the stream began at `byte_offset` of a larger file, on its line `line` (1-based).
    ///
    /// For reading one work unit ([`crate::UnitRange`]) of a file: the caller skips the first `byte_offset` bytes
    /// of the (decompressed) file itself and hands the rest (usually limited with `Read::take`) to
    /// [`Self::new`]; with `.with_position(unit.start, unit.first_line)` the reader's error line numbers,
    /// [`Self::next_line`] and [`Self::bytes_consumed`] are those of a reader over the whole file. Meant to be
    /// called before the first entry is read; called later, it shifts the positions by the same amounts
    /// (`byte_offset` bytes and `line - 1` lines).
    pub fn with_position(mut self, byte_offset: u64, line: u64) -> Self {
        let lines = line.saturating_sub(1);
        self.drained += byte_offset;
        self.line += lines;
        self.reported.bytes += byte_offset;
        self.reported.line += lines;
        for q in &mut self.ready {
            q.after.bytes += byte_offset;
            q.after.line += lines;
            if let Err(e) = &mut q.item {
                e.line += lines;
            }
        }
        self
    }

    /// The source name given to [`Self::with_source_name`] or [`open_path`].
    pub fn source_name(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Bytes of the (decompressed) stream consumed so far: the end of the last entry returned or skipped.
    pub fn bytes_consumed(&self) -> u64 {
        self.reported.bytes
    }

    /// Entries returned or reported as errors so far.
    pub fn entries_seen(&self) -> u64 {
        self.reported.entries
    }

    /// 1-based line number just past the last entry returned or skipped (where the next entry starts, or a
    /// blank line before it).
    pub fn next_line(&self) -> u64 {
        self.reported.line
    }

    fn here(&self) -> Position {
        Position {
            bytes: self.drained + self.pos as u64,
            line: self.line,
            entries: self.reported.entries + self.ready.len() as u64,
        }
    }

    /// Read every remaining entry, handing each parsed one to `on_entry`.
    ///
    /// With [`ErrorPolicy::Skip`] an entry that fails to parse is counted and listed in the report (and logged
    /// with `tracing::warn!`), and reading continues; with [`ErrorPolicy::Fail`] the first such error is returned.
    /// Read errors are always returned.
    pub fn for_each_entry(
        &mut self,
        policy: ErrorPolicy,
        mut on_entry: impl FnMut(Entry),
    ) -> Result<ParseReport, ParseError> {
        let mut report = ParseReport::default();
        for item in self.by_ref() {
            match item {
                Ok(entry) => {
                    report.parsed += 1;
                    on_entry(entry);
                }
                Err(e) if e.is_io() || policy == ErrorPolicy::Fail => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a malformed UniProt entry");
                    report.record_skipped(&e);
                }
            }
        }
        Ok(report)
    }

    fn error(
        &self,
        line: u64,
        kind: ParseErrorKind,
        accession: Option<String>,
        entry_name: Option<String>,
    ) -> ParseError {
        ParseError {
            file: self.source.clone(),
            accession,
            entry_name,
            line,
            kind,
        }
    }

    /// Read more bytes into `buf` (compacting first). Sets `eof` when the stream ends.
    fn fill(&mut self) -> io::Result<()> {
        // Bytes from `keep` on are still needed: the entry being read, and the entries of the batch being parsed.
        let keep = match self.batch_start {
            Some(start) => (start - self.drained) as usize,
            None => self.pos,
        };
        if keep > 0 && keep * 2 >= self.end {
            self.buf.copy_within(keep..self.end, 0);
            self.end -= keep;
            self.drained += keep as u64;
            self.scanned = self.scanned.saturating_sub(keep);
            self.pos -= keep;
        }
        if self.buf.len() - self.end < READ_CHUNK / 2 {
            let grown = (self.buf.len() * 2).max(self.end + READ_CHUNK);
            self.buf.resize(grown, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.end += n;
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Skip blank lines, then find the end (exclusive) of the next entry in `buf`: just past the line feed of its
    /// `//` line, or the end of the stream. `Ok(None)` at the end of the stream.
    fn next_entry_end(&mut self) -> Result<Option<usize>, ParseError> {
        // Blank lines between entries.
        loop {
            if self.pos == self.end {
                if self.eof {
                    return Ok(None);
                }
                self.fill()
                    .map_err(|e| self.error(self.line, e.into(), None, None))?;
                continue;
            }
            match memchr::memchr(b'\n', &self.buf[self.pos..self.end]) {
                Some(i) => {
                    if self.buf[self.pos..self.pos + i]
                        .iter()
                        .all(u8::is_ascii_whitespace)
                    {
                        self.pos += i + 1;
                        self.line += 1;
                        continue;
                    }
                    break;
                }
                None if self.eof => {
                    if self.buf[self.pos..self.end]
                        .iter()
                        .all(u8::is_ascii_whitespace)
                    {
                        self.pos = self.end;
                        return Ok(None);
                    }
                    break;
                }
                None => self
                    .fill()
                    .map_err(|e| self.error(self.line, e.into(), None, None))?,
            }
        }
        self.scanned = self.scanned.max(self.pos);
        loop {
            let term = if self.buf[self.pos..self.end].starts_with(b"//") {
                Some(self.pos)
            } else {
                memchr::memmem::find(&self.buf[self.scanned..self.end], b"\n//")
                    .map(|i| self.scanned + i + 1)
            };
            match term {
                Some(t) => match memchr::memchr(b'\n', &self.buf[t..self.end]) {
                    Some(i) => return Ok(Some(t + i + 1)),
                    None if self.eof => return Ok(Some(self.end)),
                    None => self.scanned = t.saturating_sub(1).max(self.pos),
                },
                None if self.eof => return Ok(Some(self.end)),
                None => self.scanned = self.end.saturating_sub(2).max(self.pos),
            }
            if self.end - self.pos > MAX_ENTRY_BYTES {
                return Err(self.error(
                    self.line,
                    ParseErrorKind::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "no // line within {MAX_ENTRY_BYTES} bytes: not a UniProtKB flat file"
                        ),
                    )),
                    None,
                    None,
                ));
            }
            let before = self.pos;
            self.fill()
                .map_err(|e| self.error(self.line, e.into(), None, None))?;
            debug_assert!(self.pos <= before);
        }
    }
}

impl<R: Read> EntryReader<R> {
    /// Parse the next batch of entries into `ready`, then compute their MD5 digests together.
    fn parse_batch(&mut self) {
        debug_assert!(self.ready.is_empty());
        // (index in `ready`, stream offset of the text, its length)
        let mut parsed: Vec<(usize, u64, usize)> = Vec::with_capacity(BATCH_ENTRIES);
        let batch_start = self.drained + self.pos as u64;
        self.batch_start = Some(batch_start);
        while self.ready.len() < BATCH_ENTRIES
            && self.drained + (self.pos as u64) - batch_start < BATCH_BYTES
        {
            let end = match self.next_entry_end() {
                Ok(Some(end)) => end,
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    let after = self.here();
                    self.ready.push_back(Queued {
                        item: Err(e),
                        after,
                    });
                    break;
                }
            };
            let text = &self.buf[self.pos..end];
            match parse_entry_text(text) {
                Ok(p) => {
                    parsed.push((
                        self.ready.len(),
                        self.drained + self.pos as u64,
                        p.content_len,
                    ));
                    self.line += p.lines;
                    self.pos = end;
                    let mut after = self.here();
                    after.entries += 1;
                    self.ready.push_back(Queued {
                        item: Ok(p.entry),
                        after,
                    });
                }
                Err(f) => {
                    let consumed = f.resume_at.unwrap_or(text.len());
                    let lines = memchr::memchr_iter(b'\n', &text[..consumed]).count() as u64;
                    let err = self.error(
                        self.line + f.line_in_entry - 1,
                        f.kind,
                        f.accession,
                        f.entry_name,
                    );
                    self.line += lines;
                    self.pos += consumed;
                    self.scanned = self.pos;
                    let mut after = self.here();
                    after.entries += 1;
                    self.ready.push_back(Queued {
                        item: Err(err),
                        after,
                    });
                }
            }
        }
        // The batch's texts are still in `buf` (`fill` keeps them while `batch_start` is set).
        let drained = self.drained;
        let buf = &self.buf;
        let mut targets: Vec<(&mut Entry, &[u8])> = Vec::with_capacity(parsed.len());
        let mut wanted = parsed.iter().peekable();
        for (i, q) in self.ready.iter_mut().enumerate() {
            let Some(&&(idx, offset, len)) = wanted.peek() else {
                break;
            };
            if idx != i {
                continue;
            }
            wanted.next();
            if let Ok(entry) = &mut q.item {
                let at = (offset - drained) as usize;
                targets.push((entry, &buf[at..at + len]));
            }
        }
        fill_digests(&mut targets);
        self.batch_start = None;
    }
}

impl<R: Read> Iterator for EntryReader<R> {
    type Item = Result<Entry, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ready.is_empty() && !self.done {
            self.parse_batch();
        }
        let q = self.ready.pop_front()?;
        self.reported = q.after;
        Some(q.item)
    }
}

/// Open a UniProtKB flat file, plain or gzip-compressed (detected by the magic bytes `1f 8b`; multi-member gzip
/// files such as `uniprot_sprot.dat.gz` are read through `flate2::read::MultiGzDecoder`). Errors name the path.
///
/// Errors: [`ParseErrorKind::Io`] when the file cannot be opened or its first bytes read.
pub fn open_path(path: impl AsRef<Path>) -> Result<EntryReader<Box<dyn Read + Send>>, ParseError> {
    let path = path.as_ref();
    let io_err = |e: io::Error| ParseError {
        file: Some(Arc::from(path)),
        accession: None,
        entry_name: None,
        line: 0,
        kind: ParseErrorKind::Io(e),
    };
    let mut file = BufReader::with_capacity(READ_CHUNK, File::open(path).map_err(io_err)?);
    let gzip = file.fill_buf().map_err(io_err)?.starts_with(&[0x1f, 0x8b]);
    let inner: Box<dyn Read + Send> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(EntryReader::new(inner).with_source_name(path))
}

/// What to do with an entry that fails to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorPolicy {
    /// Count it, list it in the [`ParseReport`], and go on with the next entry.
    Skip,
    /// Stop at the first malformed entry and return its error.
    Fail,
}

/// Counts of a pass over a flat file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseReport {
    /// Entries parsed.
    pub parsed: u64,
    /// Entries skipped because they failed to parse.
    pub skipped: u64,
    /// Every skipped entry, in stream order.
    pub skipped_entries: Vec<SkippedEntry>,
}

impl ParseReport {
    /// Count a skipped entry and list it.
    pub fn record_skipped(&mut self, error: &ParseError) {
        self.skipped += 1;
        self.skipped_entries.push(SkippedEntry {
            accession: error.accession.clone(),
            entry_name: error.entry_name.clone(),
            line: error.line,
            message: error.kind.to_string(),
        });
    }
}

/// One entry skipped under [`ErrorPolicy::Skip`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedEntry {
    /// Primary accession, when the AC line was read before the error.
    pub accession: Option<String>,
    /// Entry name, when the ID line was read.
    pub entry_name: Option<String>,
    /// 1-based line number in the stream of the offending line.
    pub line: u64,
    /// What was wrong.
    pub message: String,
}
