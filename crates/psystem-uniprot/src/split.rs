//! Cutting a UniProtKB flat file into work units at entry boundaries, without parsing it.
//!
//! A load splits a big file (`uniprot_sprot.dat` is a few GB decompressed) into work units that can be parsed and
//! loaded independently, checkpointed and retried. [`plan_units`] reads the decompressed stream once and cuts it
//! after `//` lines; each [`UnitRange`] is then read on its own by skipping `start` bytes, taking
//! `end - start` bytes (`Read::take`) and wrapping them in an [`crate::EntryReader`] positioned with
//! [`crate::EntryReader::with_position`]`(start, first_line)`, which reports the same line numbers and byte offsets
//! as a reader over the whole file.
//!
//! Entry boundaries are found exactly as [`crate::EntryReader`] finds them: an entry ends just after the line feed
//! of a line that starts with `//` (or at the end of the stream). Source of the format: the UniProtKB user manual
//! (<https://www.uniprot.org/docs/userman.htm>), section "The `//` line".

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use crate::error::{ParseError, ParseErrorKind};
use crate::reader::MAX_ENTRY_BYTES;

/// Bytes asked of the input per read while planning.
const PLAN_CHUNK: usize = 4 * 1024 * 1024;

/// One work unit: a run of whole entries of a flat file, as a byte range of the decompressed stream.
///
/// Units returned by [`plan_units`] cover the stream exactly, in order, without gaps or overlaps: the first starts
/// at 0, each starts where the previous one ends, the last ends at the stream's length (blank lines after the last
/// entry included). Serialized with serde, e.g. `{"start":0,"end":1048576,"entries":214,"first_line":1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnitRange {
    /// Byte offset (in the decompressed stream) of the unit's first byte: 0 or just after a `//` line's line feed.
    pub start: u64,
    /// Byte offset just past the unit's last byte (exclusive): after a `//` line's line feed, or the stream's end.
    pub end: u64,
    /// Entries in the unit: its `//` lines, plus one for text after the last `//` line of the stream that is not
    /// blank (an unterminated entry, which the reader reports as `Truncated`).
    pub entries: u64,
    /// 1-based line number (in the whole decompressed stream) of the line starting at `start`.
    pub first_line: u64,
}

impl UnitRange {
    /// Length of the unit in bytes (`end - start`).
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True when the unit holds no bytes (only possible for a unit that was not produced by [`plan_units`]).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Read a (decompressed) UniProtKB flat-file stream once and cut it into work units of about `target_unit_bytes`
/// bytes each, always at entry boundaries.
///
/// A unit is closed at the first entry boundary at or past `target_unit_bytes` bytes from its start, so every unit
/// but the last holds at least `target_unit_bytes` bytes (at most one entry more); the last unit holds what is left
/// (trailing blank lines after the last entry are added to the last unit rather than making a unit of their own).
/// `target_unit_bytes = 0` puts every entry in a unit of its own. An empty stream gives no units.
///
/// The scan does not parse entries: it looks for `\n//` with `memchr::memmem` and counts line feeds (for
/// [`UnitRange::first_line`]); it runs at well over 1 GB/s on plain text. Gzip input must be decompressed by the
/// caller (e.g. `flate2::read::MultiGzDecoder`); the offsets are those of the decompressed stream.
///
/// Errors: [`ParseErrorKind::Io`] when reading fails (the error's `line` is the line being scanned), or when a line
/// starting with `//` runs on for more than [`MAX_ENTRY_BYTES`] bytes without a line feed.
pub fn plan_units<R: Read>(
    mut input: R,
    target_unit_bytes: u64,
) -> Result<Vec<UnitRange>, ParseError> {
    let mut plan = Planner::new(target_unit_bytes);
    let mut buf: Vec<u8> = vec![0; PLAN_CHUNK];
    // `buf[..len]` holds data; `buf[0]` is at stream offset `base`; `buf[..pos]` has been scanned and its line
    // feeds counted (`line` is the line number at `pos`).
    let mut len = 0usize;
    let mut base = 0u64;
    let mut pos = 0usize;
    let mut line = 1u64;
    let mut pos_at_line_start = true;
    let mut eof = false;
    let io_error = |line: u64, e: io::Error| ParseError {
        file: None,
        accession: None,
        entry_name: None,
        line,
        kind: ParseErrorKind::Io(e),
    };
    loop {
        // Boundaries within the data at hand.
        loop {
            let term = if pos_at_line_start && buf[pos..len].starts_with(b"//") {
                Some(pos)
            } else {
                memchr::memmem::find(&buf[pos..len], b"\n//").map(|i| pos + i + 1)
            };
            let Some(t) = term else {
                // Keep the last two bytes: they may begin a "\n//" completed by the next read.
                let keep_from = if eof {
                    len
                } else {
                    len.saturating_sub(2).max(pos)
                };
                plan.tail(&buf[pos..keep_from]);
                line += count_line_feeds(&buf[pos..keep_from]);
                if keep_from > pos {
                    pos_at_line_start = buf[keep_from - 1] == b'\n';
                }
                pos = keep_from;
                break;
            };
            match memchr::memchr(b'\n', &buf[t + 2..len]) {
                Some(i) => {
                    let end = t + 2 + i + 1;
                    line += count_line_feeds(&buf[pos..end]);
                    pos = end;
                    pos_at_line_start = true;
                    plan.boundary(base + end as u64, line);
                }
                None if eof => {
                    // A `//` line without its line feed ends the stream.
                    line += count_line_feeds(&buf[pos..len]);
                    pos = len;
                    plan.boundary(base + len as u64, line);
                    break;
                }
                None => {
                    // The `//` line continues in the next read.
                    plan.tail(&buf[pos..t]);
                    line += count_line_feeds(&buf[pos..t]);
                    pos = t;
                    pos_at_line_start = true;
                    if len - pos > MAX_ENTRY_BYTES {
                        return Err(io_error(
                            line,
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("a // line runs on for more than {MAX_ENTRY_BYTES} bytes"),
                            ),
                        ));
                    }
                    break;
                }
            }
        }
        if eof {
            break;
        }
        // Drop what was scanned, then read more.
        buf.copy_within(pos..len, 0);
        base += pos as u64;
        len -= pos;
        pos = 0;
        if buf.len() - len < PLAN_CHUNK / 2 {
            buf.resize(buf.len() + PLAN_CHUNK, 0);
        }
        let n = loop {
            match input.read(&mut buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(line, e)),
            }
        };
        len += n;
        eof = n == 0;
    }
    Ok(plan.finish(base + len as u64))
}

/// The unit being built and the units done.
struct Planner {
    target: u64,
    units: Vec<UnitRange>,
    start: u64,
    first_line: u64,
    entries: u64,
    /// The text after the last boundary is blank so far.
    tail_blank: bool,
}

impl Planner {
    fn new(target: u64) -> Self {
        Self {
            target,
            units: Vec::new(),
            start: 0,
            first_line: 1,
            entries: 0,
            tail_blank: true,
        }
    }

    /// Text between boundaries (seen in pieces).
    fn tail(&mut self, text: &[u8]) {
        if self.tail_blank && !text.iter().all(u8::is_ascii_whitespace) {
            self.tail_blank = false;
        }
    }

    /// An entry ends at stream offset `end`; the next line is `line`.
    fn boundary(&mut self, end: u64, line: u64) {
        self.entries += 1;
        self.tail_blank = true;
        if end - self.start >= self.target {
            self.units.push(UnitRange {
                start: self.start,
                end,
                entries: self.entries,
                first_line: self.first_line,
            });
            self.start = end;
            self.first_line = line;
            self.entries = 0;
        }
    }

    fn finish(mut self, total: u64) -> Vec<UnitRange> {
        if self.start == total {
            return self.units;
        }
        let entries = self.entries + u64::from(!self.tail_blank);
        match self.units.last_mut() {
            // Only blank lines after the last unit: they join it.
            Some(last) if entries == 0 => last.end = total,
            _ => self.units.push(UnitRange {
                start: self.start,
                end: total,
                entries,
                first_line: self.first_line,
            }),
        }
        self.units
    }
}

/// Number of line feeds in `s`, 32 bytes at a time (SIMD compare, bit mask, popcount).
fn count_line_feeds(s: &[u8]) -> u64 {
    let newline = wide::u8x32::splat(b'\n');
    let mut blocks = s.chunks_exact(32);
    let mut total = 0u64;
    for block in &mut blocks {
        let block: [u8; 32] = block.try_into().expect("32 bytes");
        total += u64::from(
            wide::u8x32::new(block)
                .simd_eq(newline)
                .to_bitmask()
                .count_ones(),
        );
    }
    total + blocks.remainder().iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_feed_count_matches_a_naive_count() {
        let text: Vec<u8> = (0..20_000u32)
            .map(|i| {
                if i % 7 == 0 || i % 13 == 0 {
                    b'\n'
                } else {
                    b'a'
                }
            })
            .collect();
        for n in [0, 1, 31, 32, 33, 8159, 8160, 8161, 20_000] {
            let naive = text[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(count_line_feeds(&text[..n]), naive, "{n}");
        }
    }

    #[test]
    fn small_streams() {
        assert!(plan_units(&b""[..], 10).unwrap().is_empty());
        let u = plan_units(&b"\n\n"[..], 10).unwrap();
        assert_eq!(
            u,
            [UnitRange {
                start: 0,
                end: 2,
                entries: 0,
                first_line: 1
            }]
        );
        // "//" at the very start, and a final `//` without its line feed.
        let u = plan_units(&b"//\nID   x\n//"[..], 0).unwrap();
        assert_eq!(
            u,
            [
                UnitRange {
                    start: 0,
                    end: 3,
                    entries: 1,
                    first_line: 1
                },
                UnitRange {
                    start: 3,
                    end: 12,
                    entries: 1,
                    first_line: 2
                }
            ]
        );
        // Unterminated text at the end counts as an entry; blank lines after a boundary join the last unit.
        let u = plan_units(&b"A\n//\nB\n"[..], 0).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(
            (u[1].start, u[1].end, u[1].entries, u[1].first_line),
            (5, 7, 1, 3)
        );
        let u = plan_units(&b"A\n//\n\n\n"[..], 0).unwrap();
        assert_eq!(
            u,
            [UnitRange {
                start: 0,
                end: 7,
                entries: 1,
                first_line: 1
            }]
        );
    }
}
