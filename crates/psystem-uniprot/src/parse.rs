//! Parsing one entry's text (its lines from `ID` through `//`) into an [`Entry`].
//!
//! The text is validated as UTF-8 once, then read line by line with `memchr`; each line is dispatched on its
//! two-letter code. Multi-line values are joined into per-entry buffers and split once at the end of their block.

use chrono::NaiveDate;

use crate::error::{ParseError, ParseErrorKind};
use crate::intern;
use crate::md5x::md5_many;
use crate::model::*;
use crate::{crc64, hex_lower};

/// Why parsing one entry failed, with the position inside the entry.
#[derive(Debug)]
pub(crate) struct EntryFailure {
    /// 1-based line number inside the entry text.
    pub line_in_entry: u64,
    pub kind: ParseErrorKind,
    pub accession: Option<String>,
    pub entry_name: Option<String>,
    /// Byte offset (in the entry text) of a stray `ID` line: the entry was truncated there and the next entry
    /// begins at this offset.
    pub resume_at: Option<usize>,
}

/// Parse one entry from its raw text: the bytes from the first byte of the `ID` line through the `//` line
/// (its line feed optional). Line numbers in the error are 1-based within `text`; `file` is `None`.
///
/// Errors: any [`ParseErrorKind`] except `Io`.
pub fn parse_entry(text: &[u8]) -> Result<Entry, ParseError> {
    parse_entry_text(text)
        .map(|parsed| {
            let mut entry = parsed.entry;
            fill_digests(&mut [(&mut entry, &text[..parsed.content_len])]);
            entry
        })
        .map_err(|f| ParseError {
            file: None,
            accession: f.accession,
            entry_name: f.entry_name,
            line: f.line_in_entry,
            kind: f.kind,
        })
}

/// Set `content_md5` (MD5 of the raw entry text, a missing final line feed hashed as present) and `sequence_md5`
/// (MD5 of the residues) of each entry, hashing all texts and sequences together ([`crate::md5x::md5_many`]).
pub(crate) fn fill_digests(entries: &mut [(&mut Entry, &[u8])]) {
    // An entry at the very end of a stream may lack its final line feed: it is hashed with one appended.
    let with_newline: Vec<Option<Vec<u8>>> = entries
        .iter()
        .map(|(_, text)| {
            (!text.ends_with(b"\n")).then(|| {
                let mut t = Vec::with_capacity(text.len() + 1);
                t.extend_from_slice(text);
                t.push(b'\n');
                t
            })
        })
        .collect();
    let mut messages: Vec<&[u8]> = Vec::with_capacity(entries.len() * 2);
    for ((_, text), fixed) in entries.iter().zip(&with_newline) {
        messages.push(fixed.as_deref().unwrap_or(text));
    }
    for (entry, _) in entries.iter() {
        messages.push(entry.sequence.residues.as_bytes());
    }
    let digests = md5_many(&messages);
    let (content, sequence) = digests.split_at(entries.len());
    for (((entry, _), c), s) in entries.iter_mut().zip(content).zip(sequence) {
        entry.content_md5 = hex_lower(c);
        entry.sequence_md5 = hex_lower(s);
    }
}

fn malformed(line_type: &'static str, message: impl Into<String>) -> ParseErrorKind {
    ParseErrorKind::Malformed {
        line_type,
        message: message.into(),
    }
}

type R<T> = Result<T, ParseErrorKind>;

/// Append `piece` to `buf`, separated by one space, except after a line-final hyphen that follows a non-space
/// (UniProt breaks words after a hyphen without a space: `O-` + `glycosylated`).
fn push_joined(buf: &mut String, piece: &str) {
    if buf.is_empty() {
        // Callers that know the block's size reserve it; otherwise most joined values span a few lines: one
        // allocation instead of a growth series.
        if buf.capacity() < piece.len() {
            buf.reserve(piece.len() * 3 + 16);
        }
        buf.push_str(piece);
        return;
    }
    let b = buf.as_bytes();
    let n = b.len();
    if b[n - 1] == b'-' && n >= 2 && b[n - 2] != b' ' {
        buf.push_str(piece);
    } else {
        buf.push(' ');
        buf.push_str(piece);
    }
}

/// Room for a value joined from the current line's `piece` and the continuation lines that follow it: `piece`
/// plus, for each following line of the block (same two-letter `code`, and for `continuation_only` a space after
/// the code's three spaces), its content and one separator. `start` is the offset of the next line in `bytes`,
/// `feeds` the offsets of the line feeds from there on. An upper bound (contents are counted untrimmed).
fn joined_capacity(
    piece: &str,
    bytes: &[u8],
    mut start: usize,
    feeds: std::slice::Iter<'_, u32>,
    code: [u8; 2],
    continuation_only: bool,
) -> usize {
    let mut total = piece.len();
    for &nl in feeds {
        let nl = nl as usize;
        let line = &bytes[start..nl];
        if line.len() < 6
            || line[0] != code[0]
            || line[1] != code[1]
            || (continuation_only && line[5] != b' ')
        {
            break;
        }
        total += line.len() - 4;
        start = nl + 1;
    }
    total
}

/// Room for the rest of a quoted FT qualifier value continued on the next lines: their contents plus one
/// separator each, through the line that ends with `"` (an upper bound).
fn quoted_capacity(bytes: &[u8], mut start: usize, feeds: std::slice::Iter<'_, u32>) -> usize {
    let mut total = 0;
    for &nl in feeds {
        let nl = nl as usize;
        let line = &bytes[start..nl];
        if line.len() < 6 || line[0] != b'F' || line[1] != b'T' || line[5] != b' ' {
            break;
        }
        total += line.len() - 4;
        if line.trim_ascii_end().ends_with(b"\"") {
            break;
        }
        start = nl + 1;
    }
    total
}

/// Reserve room for a joined value before its first piece (see [`joined_capacity`]).
macro_rules! reserve_joined {
    ($buf:expr, $piece:expr, $bytes:expr, $pos:expr, $feeds:expr, $code:expr, $cont:expr) => {
        if $buf.is_empty() {
            $buf.reserve_exact(joined_capacity(
                $piece,
                $bytes,
                $pos,
                $feeds.clone(),
                $code,
                $cont,
            ));
        }
    };
}

/// `s` cut down in place to the part of it that `cut` returns, keeping its allocation (no copy into a new string).
fn keep_within(mut s: String, cut: impl FnOnce(&str) -> &str) -> String {
    let (start, len) = {
        let t = cut(&s);
        (t.as_ptr() as usize - s.as_ptr() as usize, t.len())
    };
    s.truncate(start + len);
    s.drain(..start);
    s
}

/// Split `s` on `sep` outside `{…}` blocks, trimming each part and leaving out empty parts. A separator counts only
/// when followed by a space or the end of the text (gene names such as `HvPIP2;8` contain `;`).
fn split_outside_braces(s: &str, sep: u8, mut f: impl FnMut(&str) -> R<()>) -> R<()> {
    let bytes = s.as_bytes();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            _ if b == sep && depth <= 0 && bytes.get(i + 1).is_none_or(|n| *n == b' ') => {
                let part = s[start..i].trim_ascii();
                if !part.is_empty() {
                    f(part)?;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    let part = s[start..].trim_ascii();
    if !part.is_empty() {
        f(part)?;
    }
    Ok(())
}

/// `value {ECO:1, ECO:2}` → value + evidence codes.
fn evidenced(s: &str) -> EvidencedValue {
    let s = s.trim_ascii();
    if s.ends_with('}') {
        // Only an `{ECO:…}` block is evidence; other braces are part of the value.
        if let Some(open) = s.rfind('{').filter(|&o| s[o + 1..].starts_with("ECO:")) {
            let evidence = split_byte(&s[open + 1..s.len() - 1], b',')
                .map(str::trim_ascii)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
            return EvidencedValue {
                value: s[..open].trim_ascii_end().to_owned(),
                evidence,
            };
        }
    }
    EvidencedValue {
        value: s.to_owned(),
        evidence: Vec::new(),
    }
}

/// Index of the first `b` in `s`, eight bytes at a time (SWAR: the zero bytes of `word ^ b…b`). The fields searched
/// here are a few dozen bytes, where this beats `memchr`'s set-up cost (and `str::find(char)`'s).
#[inline]
fn find_byte(s: &str, b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let bytes = s.as_bytes();
    let pattern = ONES * u64::from(b);
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ pattern;
        // High bit of each byte set exactly where the byte of `x` is zero.
        let zero = !(((x & LOW7) + LOW7) | x | LOW7);
        if zero != 0 {
            return Some(at + zero.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == b)
        .map(|i| at + i)
}

/// `s` split at the first ASCII `b` (which is left out), like `str::split_once(char)`.
#[inline]
fn split_once_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    find_byte(s, b).map(|i| (&s[..i], &s[i + 1..]))
}

/// `s` split at the last ASCII `b` (which is left out), like `str::rsplit_once(char)`.
#[inline]
fn rsplit_once_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    s.as_bytes()
        .iter()
        .rposition(|&c| c == b)
        .map(|i| (&s[..i], &s[i + 1..]))
}

/// The parts of `s` between ASCII `sep` bytes, like `str::split(char)`.
#[inline]
fn split_byte(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let cur = rest?;
        match find_byte(cur, sep) {
            Some(i) => {
                rest = Some(&cur[i + 1..]);
                Some(&cur[..i])
            }
            None => {
                rest = None;
                Some(cur)
            }
        }
    })
}

/// Offsets of the line feeds in `bytes`, found 32 bytes at a time (SIMD compare and bit mask).
fn line_feeds(bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(bytes.len() / 48 + 4);
    let newline = wide::u8x32::splat(b'\n');
    let mut blocks = bytes.chunks_exact(32);
    let mut base = 0u32;
    for block in &mut blocks {
        let block: [u8; 32] = block.try_into().expect("32 bytes");
        let mut mask = wide::u8x32::new(block).simd_eq(newline).to_bitmask();
        while mask != 0 {
            out.push(base + mask.trailing_zeros());
            mask &= mask - 1;
        }
        base += 32;
    }
    for (i, &b) in blocks.remainder().iter().enumerate() {
        if b == b'\n' {
            out.push(base + i as u32);
        }
    }
    out
}

fn strip_suffix_char(s: &str, c: char) -> &str {
    s.strip_suffix(c).unwrap_or(s)
}

fn parse_u32(s: &str, line_type: &'static str, what: &str) -> R<u32> {
    s.parse::<u32>()
        .map_err(|_| malformed(line_type, format!("{what} `{s}` is not a number")))
}

fn parse_u64(s: &str, line_type: &'static str, what: &str) -> R<u64> {
    s.parse::<u64>()
        .map_err(|_| malformed(line_type, format!("{what} `{s}` is not a number")))
}

/// `DD-MMM-YYYY` (month in upper case English abbreviations) → date.
fn parse_date(s: &str) -> R<NaiveDate> {
    let b = s.as_bytes();
    let bad = || malformed("DT", format!("date `{s}` is not DD-MMM-YYYY"));
    if b.len() != 11 || b[2] != b'-' || b[6] != b'-' {
        return Err(bad());
    }
    let day: u32 = s[0..2].parse().map_err(|_| bad())?;
    let year: i32 = s[7..11].parse().map_err(|_| bad())?;
    let month = match &b[3..6] {
        b"JAN" => 1,
        b"FEB" => 2,
        b"MAR" => 3,
        b"APR" => 4,
        b"MAY" => 5,
        b"JUN" => 6,
        b"JUL" => 7,
        b"AUG" => 8,
        b"SEP" => 9,
        b"OCT" => 10,
        b"NOV" => 11,
        b"DEC" => 12,
        _ => return Err(bad()),
    };
    NaiveDate::from_ymd_opt(year, month, day).ok_or_else(bad)
}

/// Which name of the current DE block the continuation lines (`Short=`, `EC=` …) belong to.
#[derive(Clone, Copy, PartialEq)]
enum NameSlot {
    None,
    Rec,
    Alt,
    Sub,
}

/// Which DE block is being filled.
#[derive(Clone, Copy, PartialEq)]
enum Block {
    Top,
    Contains,
    Includes,
}

#[derive(Default)]
struct ReferenceText {
    first_line: u64,
    number: u32,
    evidence: Vec<String>,
    rp: String,
    rc: String,
    rx: String,
    rg: Vec<String>,
    rg_open: bool,
    authors: Vec<String>,
    rt: String,
    rl: String,
}

impl ReferenceText {
    fn finish(self) -> R<Reference> {
        let mut comments = Vec::new();
        split_outside_braces(&self.rc, b';', |tok| {
            comments.push(token(tok, "RC")?);
            Ok(())
        })?;
        // RX tokens end at "; " or at the final ';' — DOIs may contain ';' without a following space.
        let mut cross_references = Vec::new();
        let rx = self.rx.trim_ascii_end();
        let rx = strip_suffix_char(rx, ';');
        if !rx.is_empty() {
            for tok in split_semicolon_space(rx) {
                let tok = tok.trim_ascii();
                if !tok.is_empty() {
                    cross_references.push(token(tok, "RX")?);
                }
            }
        }
        let authors = self.authors;
        let title = if self.rt.is_empty() {
            None
        } else {
            Some(keep_within(self.rt, |rt| {
                let t = strip_suffix_char(rt.trim_ascii_end(), ';');
                let t = t.strip_prefix('"').unwrap_or(t);
                t.strip_suffix('"').unwrap_or(t)
            }))
        };
        if self.rl.is_empty() {
            return Err(ParseErrorKind::Missing("RL"));
        }
        Ok(Reference {
            number: self.number,
            evidence: self.evidence,
            position: if self.rp.is_empty() {
                None
            } else {
                Some(keep_within(self.rp, |rp| {
                    strip_suffix_char(rp.trim_ascii_end(), '.')
                }))
            },
            comments,
            cross_references,
            groups: self
                .rg
                .into_iter()
                .map(|g| keep_within(g, |g| strip_suffix_char(g.trim_ascii_end(), ';')))
                .collect(),
            authors,
            title,
            location: keep_within(self.rl, |rl| strip_suffix_char(rl.trim_ascii_end(), '.')),
        })
    }
}

fn token(tok: &str, line_type: &'static str) -> R<Token> {
    match split_once_byte(tok, b'=') {
        Some((k, v)) => Ok(Token {
            key: k.trim_ascii().to_owned(),
            value: v.trim_ascii().to_owned(),
        }),
        None => Err(malformed(line_type, format!("token `{tok}` has no '='"))),
    }
}

/// Feature types whose notes carry sequences that UniProt breaks over lines without a space.
fn is_sequence_feature(t: &str) -> bool {
    matches!(t, "VAR_SEQ" | "VARIANT" | "CONFLICT" | "MUTAGEN")
}

/// Join a continuation line to a feature qualifier value.
fn push_feature_text(buf: &mut String, piece: &str, sequence_feature: bool) {
    if sequence_feature && !buf.is_empty() {
        let last = buf.as_bytes()[buf.len() - 1];
        let first = piece.as_bytes().first().copied().unwrap_or(b' ');
        if last.is_ascii_uppercase()
            && first.is_ascii_uppercase()
            && buf
                .bytes()
                .all(|b| b.is_ascii_uppercase() || matches!(b, b' ' | b'-' | b'>' | b','))
        {
            buf.push_str(piece);
            return;
        }
    }
    push_joined(buf, piece);
}

fn parse_position(s: &str) -> R<Position> {
    let bad = || malformed("FT", format!("position `{s}` is not N, <N, >N, ?N or ?"));
    let (modifier, digits) = match s.as_bytes().first() {
        Some(b'<') => (PositionModifier::Before, &s[1..]),
        Some(b'>') => (PositionModifier::After, &s[1..]),
        Some(b'?') if s.len() == 1 => {
            return Ok(Position {
                value: None,
                modifier: PositionModifier::Unknown,
            })
        }
        Some(b'?') => (PositionModifier::Uncertain, &s[1..]),
        Some(_) => (PositionModifier::Exact, s),
        None => return Err(bad()),
    };
    let value = digits.parse::<u32>().map_err(|_| bad())?;
    Ok(Position {
        value: Some(value),
        modifier,
    })
}

/// `[SEQ:]start[..end]`
fn parse_location(s: &str) -> R<Location> {
    let (sequence, range) = match rsplit_once_byte(s, b':') {
        Some((seq, range)) => (Some(seq.to_owned()), range),
        None => (None, s),
    };
    let (start, end) = match range.as_bytes().windows(2).position(|w| w == b"..") {
        Some(i) => (
            parse_position(&range[..i])?,
            parse_position(&range[i + 2..])?,
        ),
        None => {
            let p = parse_position(range)?;
            (p, p)
        }
    };
    Ok(Location {
        sequence,
        start,
        end,
    })
}

struct FeatureState {
    feature: Feature,
    old_layout: bool,
    /// A quoted qualifier value is open (new layout).
    open_quote: bool,
    sequence_feature: bool,
}

impl FeatureState {
    fn finish(mut self) -> Feature {
        if self.old_layout {
            for q in &mut self.feature.qualifiers {
                if q.value.ends_with('.') {
                    q.value.pop();
                }
            }
        }
        self.feature
    }
}

#[derive(Default)]
struct Sq {
    length: u32,
    molecular_weight: u64,
    crc64: String,
}

/// A parsed entry whose `content_md5` and `sequence_md5` are still empty: they are computed for many entries at
/// once by [`fill_digests`].
pub(crate) struct ParsedEntry {
    pub entry: Entry,
    /// Lines of the entry text.
    pub lines: u64,
    /// Bytes of the entry text from the `ID` line through the `//` line's line feed (what `content_md5` covers).
    pub content_len: usize,
}

/// Parse `text` (one entry), leaving the two MD5 digests empty.
pub(crate) fn parse_entry_text(text: &[u8]) -> Result<ParsedEntry, EntryFailure> {
    let s = match std::str::from_utf8(text) {
        Ok(s) => s,
        Err(e) => {
            let offset = e.valid_up_to();
            let line = memchr::memchr_iter(b'\n', &text[..offset]).count() as u64 + 1;
            return Err(EntryFailure {
                line_in_entry: line,
                kind: ParseErrorKind::NotUtf8 { offset },
                accession: None,
                entry_name: None,
                resume_at: None,
            });
        }
    };
    let mut p = EntryParser::default();
    match p.run(s) {
        Ok(entry) => Ok(ParsedEntry {
            entry,
            lines: p.line,
            content_len: p.content_len,
        }),
        Err((line, kind, resume_at)) => Err(EntryFailure {
            line_in_entry: line,
            kind,
            accession: p.accession,
            entry_name: p.entry_name,
            resume_at,
        }),
    }
}

/// Numbers of lines of the types that become list items, so the lists are allocated once at their final size.
struct LineCounts {
    rn: usize,
    dr: usize,
    cc_topics: usize,
    ft_keys: usize,
}

impl LineCounts {
    fn of(bytes: &[u8], line_feeds: &[u32]) -> Self {
        let mut c = LineCounts {
            rn: 0,
            dr: 0,
            cc_topics: 0,
            ft_keys: 0,
        };
        for &i in line_feeds {
            let l = &bytes[i as usize + 1..];
            if l.len() < 6 {
                continue;
            }
            match (l[0], l[1]) {
                (b'D', b'R') => c.dr += 1,
                (b'R', b'N') => c.rn += 1,
                (b'C', b'C') if l[5] == b'-' => c.cc_topics += 1,
                (b'F', b'T') if l[5] != b' ' => c.ft_keys += 1,
                _ => {}
            }
        }
        c
    }
}

#[derive(Default)]
struct EntryParser {
    line: u64,
    /// Bytes of the entry text through the `//` line's line feed (set on success).
    content_len: usize,
    accession: Option<String>,
    entry_name: Option<String>,
}

type Fail = (u64, ParseErrorKind, Option<usize>);

impl EntryParser {
    #[allow(clippy::too_many_lines)]
    fn run(&mut self, s: &str) -> Result<Entry, Fail> {
        let bytes = s.as_bytes();
        let line_feeds = line_feeds(bytes);
        let counts = LineCounts::of(bytes, &line_feeds);
        let mut next_line_feed = line_feeds.iter();
        // ID
        let mut status = Status::Reviewed;
        let mut id_length = 0u32;
        let mut entry_name = String::new();
        let mut secondary = Vec::new();
        let mut primary: Option<String> = None;
        let mut dt: [Option<(NaiveDate, String)>; 3] = [None, None, None];
        let mut description = ProteinDescription::default();
        let mut block = Block::Top;
        let mut slot = NameSlot::None;
        let mut gn_genes: Vec<String> = Vec::new();
        let mut gn_open = false;
        let mut gn_line = 0u64;
        let mut os = String::new();
        let mut og = String::new();
        let mut oc = String::new();
        let mut ox: Option<TaxonomyReference> = None;
        let mut hosts: Vec<Host> = Vec::new();
        let mut references: Vec<Reference> = Vec::with_capacity(counts.rn);
        let mut reference: Option<ReferenceText> = None;
        let mut comments: Vec<Comment> = Vec::with_capacity(counts.cc_topics);
        let mut in_copyright = false;
        let mut cross_references: Vec<CrossReference> = Vec::with_capacity(counts.dr);
        let mut pe: Option<ProteinExistence> = None;
        let mut kw = String::new();
        let mut kw_line = 0u64;
        let mut features: Vec<Feature> = Vec::with_capacity(counts.ft_keys);
        let mut feature: Option<FeatureState> = None;
        let mut sq: Option<Sq> = None;
        let mut sq_line = 0u64;
        let mut residues: Vec<u8> = Vec::new();
        let mut terminated = false;
        let mut end_offset = bytes.len();

        let mut pos = 0usize;
        while pos < bytes.len() {
            let line_start = pos;
            let nl = next_line_feed.next().map_or(bytes.len(), |&i| i as usize);
            pos = nl + 1;
            let mut line = &s[line_start..nl];
            if let Some(l) = line.strip_suffix('\r') {
                line = l;
            }
            self.line += 1;
            let ln = self.line;
            let lb = line.as_bytes();
            let fail = |kind: ParseErrorKind| (ln, kind, None);

            if ln == 1 && !line.starts_with("ID   ") {
                // Text before an entry (or an entry without its ID line): report it and resume at the next ID
                // line, if this text holds one, so that entry is not lost.
                let resume = memchr::memmem::find(bytes, b"\nID   ").map(|i| i + 1);
                return Err((
                    ln,
                    malformed("ID", "the entry does not start with an ID line"),
                    resume,
                ));
            }
            if terminated {
                return Err(fail(malformed("//", "text after the // line")));
            }
            if lb.len() >= 2 && lb[0] == b'/' && lb[1] == b'/' && line[2..].trim_ascii().is_empty()
            {
                terminated = true;
                end_offset = pos.min(bytes.len());
                continue;
            }
            if lb.len() < 5 || lb[2] != b' ' || lb[3] != b' ' || lb[4] != b' ' {
                // Sequence lines are "     …"; everything else needs "XX   ".
                return Err(fail(ParseErrorKind::UnknownLineCode {
                    code: line.chars().take(5).collect(),
                }));
            }
            let code = [lb[0], lb[1]];
            let content = &line[5..];

            // Close multi-line blocks when their line type ends.
            if feature.is_some() && &code != b"FT" {
                features.push(feature.take().expect("checked").finish());
            }
            if reference.is_some() && code[0] != b'R' {
                let r = reference.take().expect("checked");
                let first = r.first_line;
                references.push(r.finish().map_err(|k| (first, k, None))?);
            }

            match &code {
                b"ID" => {
                    if ln != 1 {
                        // The previous entry lost its `//`: report it truncated and resume at this line.
                        return Err((
                            ln - 1,
                            ParseErrorKind::Truncated(format!(
                                "no // line before the next ID line (line {ln} of the entry)"
                            )),
                            Some(line_start),
                        ));
                    }
                    let mut it = content.split_ascii_whitespace();
                    let name = it
                        .next()
                        .ok_or_else(|| fail(malformed("ID", "no entry name")))?;
                    entry_name = name.to_owned();
                    self.entry_name = Some(entry_name.clone());
                    // Before UniProtKB release 9 (2006) the status was `STANDARD;` (Swiss-Prot, reviewed) or
                    // `PRELIMINARY;` (TrEMBL, unreviewed), followed by the molecule type `PRT;`.
                    let (new_status, old_format) = match it.next() {
                        Some("Reviewed;") => (Status::Reviewed, false),
                        Some("Unreviewed;") => (Status::Unreviewed, false),
                        Some("STANDARD;") => (Status::Reviewed, true),
                        Some("PRELIMINARY;") => (Status::Unreviewed, true),
                        Some(other) => {
                            return Err(fail(malformed(
                                "ID",
                                format!(
                                    "status `{other}` is not `Reviewed;` or `Unreviewed;` (nor `STANDARD;` or \
                                     `PRELIMINARY;` of files before UniProtKB release 9)"
                                ),
                            )))
                        }
                        None => return Err(fail(malformed("ID", "no status after the entry name"))),
                    };
                    status = new_status;
                    let mut len = it
                        .next()
                        .ok_or_else(|| fail(malformed("ID", "no sequence length")))?;
                    if old_format && len == "PRT;" {
                        len = it
                            .next()
                            .ok_or_else(|| fail(malformed("ID", "no sequence length")))?;
                    }
                    id_length = parse_u32(len, "ID", "sequence length").map_err(fail)?;
                    if it.next() != Some("AA.") {
                        return Err(fail(malformed("ID", "the length is not followed by 'AA.'")));
                    }
                }
                b"AC" => {
                    for acc in split_byte(content, b';') {
                        let acc = acc.trim_ascii();
                        if acc.is_empty() {
                            continue;
                        }
                        if primary.is_none() {
                            primary = Some(acc.to_owned());
                            self.accession = primary.clone();
                        } else {
                            secondary.push(acc.to_owned());
                        }
                    }
                }
                b"DT" => {
                    let (date, what) = content
                        .split_once(", ")
                        .ok_or_else(|| fail(malformed("DT", "expected 'DD-MMM-YYYY, …'")))?;
                    let date = parse_date(date.trim_ascii()).map_err(fail)?;
                    let what = strip_suffix_char(what.trim_ascii_end(), '.');
                    if let Some(db) = what.strip_prefix("integrated into UniProtKB/") {
                        dt[0] = Some((date, db.to_owned()));
                    } else if let Some(v) = what.strip_prefix("sequence version ") {
                        dt[1] = Some((date, v.to_owned()));
                    } else if let Some(v) = what.strip_prefix("entry version ") {
                        dt[2] = Some((date, v.to_owned()));
                    } else {
                        return Err(fail(malformed("DT", format!("unknown date kind `{what}`"))));
                    }
                }
                b"DE" => {
                    self.de_line(content, &mut description, &mut block, &mut slot)
                        .map_err(fail)?;
                }
                b"GN" => {
                    if gn_line == 0 {
                        gn_line = ln;
                    }
                    let t = content.trim_ascii();
                    if t == "and" {
                        gn_open = false;
                    } else {
                        if !gn_open {
                            gn_genes.push(String::new());
                            gn_open = true;
                        }
                        push_joined(gn_genes.last_mut().expect("pushed"), t);
                    }
                }
                b"OS" => {
                    let t = content.trim_ascii();
                    reserve_joined!(os, t, bytes, pos, next_line_feed, code, false);
                    push_joined(&mut os, t);
                }
                b"OG" => push_joined(&mut og, content.trim_ascii()),
                b"OC" => {
                    let t = content.trim_ascii();
                    reserve_joined!(oc, t, bytes, pos, next_line_feed, code, false);
                    push_joined(&mut oc, t);
                }
                b"OX" => {
                    let t = strip_suffix_char(content.trim_ascii_end(), ';');
                    let v = evidenced(t);
                    let id = v
                        .value
                        .strip_prefix("NCBI_TaxID=")
                        .ok_or_else(|| fail(malformed("OX", "expected NCBI_TaxID=")))?;
                    ox = Some(TaxonomyReference {
                        ncbi_taxid: parse_u64(id, "OX", "taxonomy identifier").map_err(fail)?,
                        evidence: v.evidence,
                    });
                }
                b"OH" => {
                    let t = content.trim_ascii();
                    if let Some(rest) = t.strip_prefix("NCBI_TaxID=") {
                        let (id, name) = split_once_byte(rest, b';').unwrap_or((rest, ""));
                        hosts.push(Host {
                            ncbi_taxid: parse_u64(id.trim_ascii(), "OH", "taxonomy identifier")
                                .map_err(fail)?,
                            name: strip_suffix_char(name.trim_ascii(), '.').to_owned(),
                        });
                    } else if let Some(h) = hosts.last_mut() {
                        // A host name continued on the next line.
                        let mut name = std::mem::take(&mut h.name);
                        push_joined(&mut name, strip_suffix_char(t, '.'));
                        h.name = name;
                    } else {
                        return Err(fail(malformed("OH", "expected NCBI_TaxID=")));
                    }
                }
                [b'R', _] => {
                    if &code == b"RN" {
                        if let Some(r) = reference.take() {
                            let first = r.first_line;
                            references.push(r.finish().map_err(|k| (first, k, None))?);
                        }
                        let t = content.trim_ascii();
                        let close = t
                            .find(']')
                            .filter(|_| t.starts_with('['))
                            .ok_or_else(|| fail(malformed("RN", "expected [n]")))?;
                        let number =
                            parse_u32(&t[1..close], "RN", "reference number").map_err(fail)?;
                        let ev = evidenced(&t[close + 1..]);
                        reference = Some(ReferenceText {
                            first_line: ln,
                            number,
                            evidence: ev.evidence,
                            ..Default::default()
                        });
                        continue;
                    }
                    let r = reference.as_mut().ok_or_else(|| {
                        fail(malformed("RN", "reference line before any RN line"))
                    })?;
                    let t = content.trim_ascii();
                    let joined = match &code {
                        b"RP" => Some(&mut r.rp),
                        b"RC" => Some(&mut r.rc),
                        b"RX" => Some(&mut r.rx),
                        b"RT" => Some(&mut r.rt),
                        b"RL" => Some(&mut r.rl),
                        _ => None,
                    };
                    if let Some(buf) = joined {
                        reserve_joined!(buf, t, bytes, pos, next_line_feed, code, false);
                        push_joined(buf, t);
                        continue;
                    }
                    match &code {
                        b"RA" => {
                            if r.authors.capacity() == 0 {
                                // Names with their ", " average over 12 bytes: room for the whole RA block.
                                let block = joined_capacity(
                                    t,
                                    bytes,
                                    pos,
                                    next_line_feed.clone(),
                                    code,
                                    false,
                                );
                                r.authors.reserve_exact(block / 10 + 1);
                            }
                            // RA lines break between authors, so each line holds whole names.
                            for a in split_byte(strip_suffix_char(t, ';'), b',') {
                                let a = a.trim_ascii();
                                if !a.is_empty() {
                                    r.authors.push(a.to_owned());
                                }
                            }
                        }
                        b"RG" => {
                            if r.rg_open {
                                push_joined(r.rg.last_mut().expect("open"), t);
                            } else {
                                r.rg.push(t.to_owned());
                            }
                            r.rg_open = !t.ends_with(';');
                        }
                        _ => {
                            return Err(fail(ParseErrorKind::UnknownLineCode {
                                code: line.chars().take(5).collect(),
                            }))
                        }
                    }
                }
                b"CC" => {
                    if let Some(rest) = content.strip_prefix("-!- ") {
                        in_copyright = false;
                        let (topic, text) = rest
                            .split_once(':')
                            .ok_or_else(|| fail(malformed("CC", "expected '-!- TOPIC: text'")))?;
                        let text = text.trim_ascii();
                        let mut owned = String::new();
                        reserve_joined!(owned, text, bytes, pos, next_line_feed, code, true);
                        owned.push_str(text);
                        comments.push(Comment {
                            topic: topic.trim_ascii().to_owned(),
                            text: owned,
                        });
                    } else if content.starts_with("---") {
                        in_copyright = true;
                    } else if in_copyright {
                        // The copyright notice is not a comment.
                    } else if content.starts_with(' ') {
                        let c = comments.last_mut().ok_or_else(|| {
                            fail(malformed("CC", "continuation line before any -!- topic"))
                        })?;
                        push_joined(&mut c.text, content.trim_ascii());
                    } else {
                        return Err(fail(malformed(
                            "CC",
                            "expected '-!- TOPIC:' or a continuation line",
                        )));
                    }
                }
                b"DR" => cross_references.push(dr_line(content).map_err(fail)?),
                b"PE" => {
                    let t = strip_suffix_char(content.trim_ascii_end(), ';');
                    let (level, label) = t
                        .split_once(':')
                        .ok_or_else(|| fail(malformed("PE", "expected 'n: label;'")))?;
                    let level = level
                        .trim_ascii()
                        .parse::<u8>()
                        .ok()
                        .filter(|l| (1..=5).contains(l))
                        .ok_or_else(|| {
                            fail(malformed("PE", format!("level `{level}` is not 1 to 5")))
                        })?;
                    pe = Some(ProteinExistence {
                        level,
                        label: label.trim_ascii().to_owned(),
                    });
                }
                b"KW" => {
                    if kw_line == 0 {
                        kw_line = ln;
                    }
                    let t = content.trim_ascii();
                    reserve_joined!(kw, t, bytes, pos, next_line_feed, code, false);
                    push_joined(&mut kw, t);
                }
                b"FT" => self
                    .ft_line(content, &mut feature, &mut features, || {
                        quoted_capacity(bytes, pos, next_line_feed.clone())
                    })
                    .map_err(fail)?,
                b"SQ" => {
                    let mut it = content.split_ascii_whitespace();
                    let bad = || {
                        fail(malformed(
                            "SQ",
                            "expected 'SEQUENCE n AA; n MW; hex CRC64;'",
                        ))
                    };
                    if it.next() != Some("SEQUENCE") {
                        return Err(bad());
                    }
                    let length =
                        parse_u32(it.next().ok_or_else(bad)?, "SQ", "length").map_err(fail)?;
                    if it.next() != Some("AA;") {
                        return Err(bad());
                    }
                    let mw = parse_u64(it.next().ok_or_else(bad)?, "SQ", "molecular weight")
                        .map_err(fail)?;
                    if it.next() != Some("MW;") {
                        return Err(bad());
                    }
                    let crc = it.next().ok_or_else(bad)?;
                    if crc.len() != 16
                        || !crc.bytes().all(|b| b.is_ascii_hexdigit())
                        || it.next() != Some("CRC64;")
                    {
                        return Err(bad());
                    }
                    residues.reserve(length as usize);
                    sq_line = ln;
                    sq = Some(Sq {
                        length,
                        molecular_weight: mw,
                        crc64: crc.to_ascii_uppercase(),
                    });
                }
                b"  " => {
                    if sq.is_none() {
                        return Err(fail(malformed("SQ", "sequence line before the SQ line")));
                    }
                    for &b in &lb[5..] {
                        match b {
                            b' ' => {}
                            b'A'..=b'Z' => residues.push(b),
                            _ => {
                                return Err(fail(malformed(
                                    "SQ",
                                    format!("residue `{}` is not an upper-case letter", b as char),
                                )))
                            }
                        }
                    }
                }
                _ => {
                    return Err(fail(ParseErrorKind::UnknownLineCode {
                        code: line.chars().take(5).collect(),
                    }))
                }
            }
        }
        let last = self.line;
        if let Some(f) = feature.take() {
            features.push(f.finish());
        }
        if let Some(r) = reference.take() {
            let first = r.first_line;
            references.push(r.finish().map_err(|k| (first, k, None))?);
        }
        if !terminated {
            return Err((
                last,
                ParseErrorKind::Truncated("the stream ends before the entry's // line".into()),
                None,
            ));
        }
        let at_end = |kind| (last, kind, None);
        let primary_accession = primary.ok_or_else(|| at_end(ParseErrorKind::Missing("AC")))?;
        let [created, seqv, entv] = dt;
        let (created, created_in) =
            created.ok_or_else(|| at_end(ParseErrorKind::Missing("DT (integrated into)")))?;
        let (sequence_updated, sv) =
            seqv.ok_or_else(|| at_end(ParseErrorKind::Missing("DT (sequence version)")))?;
        let (entry_updated, ev) =
            entv.ok_or_else(|| at_end(ParseErrorKind::Missing("DT (entry version)")))?;
        let dates = EntryDates {
            created,
            created_in,
            sequence_updated,
            sequence_version: parse_u32(&sv, "DT", "sequence version").map_err(at_end)?,
            entry_updated,
            entry_version: parse_u32(&ev, "DT", "entry version").map_err(at_end)?,
        };
        let mut genes = Vec::with_capacity(gn_genes.len());
        for g in &gn_genes {
            genes.push(gene(g).map_err(|k| (gn_line, k, None))?);
        }
        if os.is_empty() {
            return Err(at_end(ParseErrorKind::Missing("OS")));
        }
        let organism = strip_suffix_char(&os, '.').to_owned();
        let organelles = organelles(&og);
        let lineage = split_byte(strip_suffix_char(&oc, '.'), b';')
            .map(str::trim_ascii)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let taxonomy = ox.ok_or_else(|| at_end(ParseErrorKind::Missing("OX")))?;
        let protein_existence = pe.ok_or_else(|| at_end(ParseErrorKind::Missing("PE")))?;
        let mut keywords = Vec::new();
        split_outside_braces(strip_suffix_char(&kw, '.'), b';', |k| {
            keywords.push(evidenced(k));
            Ok(())
        })
        .map_err(|k| (kw_line, k, None))?;
        let sq = sq.ok_or_else(|| at_end(ParseErrorKind::Missing("SQ")))?;
        if sq.length != id_length || residues.len() != id_length as usize {
            return Err((
                sq_line,
                ParseErrorKind::LengthMismatch {
                    id_line: id_length,
                    sq_line: sq.length,
                    residues: residues.len(),
                },
                None,
            ));
        }
        let computed = crc64(&residues);
        let expected = u64::from_str_radix(&sq.crc64, 16).expect("checked: 16 hex digits");
        if computed != expected {
            return Err((
                sq_line,
                ParseErrorKind::Crc64Mismatch { expected, computed },
                None,
            ));
        }
        // The digests are computed by the caller, many entries at once (`crate::md5x`).
        self.content_len = end_offset;
        let residues = String::from_utf8(residues).expect("residues are ASCII upper-case letters");
        Ok(Entry {
            entry_name,
            status,
            sequence_length: id_length,
            primary_accession,
            secondary_accessions: secondary,
            dates,
            description,
            genes,
            organism,
            organelles,
            lineage,
            taxonomy,
            hosts,
            references,
            comments,
            cross_references,
            protein_existence,
            keywords,
            features,
            sequence: Sequence {
                length: sq.length,
                molecular_weight: sq.molecular_weight,
                crc64: sq.crc64,
                residues,
            },
            content_md5: String::new(),
            sequence_md5: String::new(),
        })
    }

    fn de_line(
        &mut self,
        content: &str,
        description: &mut ProteinDescription,
        block: &mut Block,
        slot: &mut NameSlot,
    ) -> R<()> {
        let indent = content.len() - content.trim_ascii_start().len();
        let t = content.trim_ascii();
        if indent == 0 {
            *block = Block::Top;
        }
        if t == "Contains:" || t == "Includes:" {
            let sub = ProteinDescription::default();
            if t == "Contains:" {
                description.contains.push(sub);
                *block = Block::Contains;
            } else {
                description.includes.push(sub);
                *block = Block::Includes;
            }
            *slot = NameSlot::None;
            return Ok(());
        }
        let current: &mut ProteinDescription = match *block {
            Block::Top => description,
            Block::Contains => description.contains.last_mut().expect("opened"),
            Block::Includes => description.includes.last_mut().expect("opened"),
        };
        let (field_text, new_slot) = if let Some(rest) = t.strip_prefix("RecName:") {
            if current.recommended_name.is_some() {
                return Err(malformed("DE", "a second RecName in one block"));
            }
            current.recommended_name = Some(ProteinName::default());
            (rest, NameSlot::Rec)
        } else if let Some(rest) = t.strip_prefix("AltName:") {
            current.alternative_names.push(ProteinName::default());
            (rest, NameSlot::Alt)
        } else if let Some(rest) = t.strip_prefix("SubName:") {
            current.submission_names.push(ProteinName::default());
            (rest, NameSlot::Sub)
        } else if let Some(rest) = t.strip_prefix("Flags:") {
            split_outside_braces(rest, b';', |f| {
                current.flags.push(evidenced(f));
                Ok(())
            })?;
            *slot = NameSlot::None;
            return Ok(());
        } else {
            (t, *slot)
        };
        *slot = new_slot;
        let name = match new_slot {
            NameSlot::Rec => current.recommended_name.as_mut(),
            NameSlot::Alt => current.alternative_names.last_mut(),
            NameSlot::Sub => current.submission_names.last_mut(),
            NameSlot::None => None,
        }
        .ok_or_else(|| {
            malformed(
                "DE",
                format!("field `{t}` outside a RecName/AltName/SubName"),
            )
        })?;
        let field = strip_suffix_char(field_text.trim_ascii(), ';');
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| malformed("DE", format!("expected Key=value, got `{field}`")))?;
        let value = evidenced(value);
        match key.trim_ascii() {
            "Full" => {
                if name.full.is_some() {
                    return Err(malformed("DE", "a second Full= in one name"));
                }
                name.full = Some(value);
            }
            "Short" => name.short.push(value),
            "EC" => name.ec.push(value),
            "Allergen" => name.allergen = Some(value),
            "Biotech" => name.biotech = Some(value),
            "CD_antigen" => name.cd_antigen.push(value),
            "INN" => name.inn.push(value),
            other => return Err(malformed("DE", format!("unknown name field `{other}`"))),
        }
        Ok(())
    }

    fn ft_line(
        &mut self,
        content: &str,
        feature: &mut Option<FeatureState>,
        features: &mut Vec<Feature>,
        continued_quote_len: impl FnOnce() -> usize,
    ) -> R<()> {
        let cb = content.as_bytes();
        if cb.first().is_some_and(|b| *b != b' ') {
            // A new feature.
            if let Some(f) = feature.take() {
                features.push(f.finish());
            }
            let key_end = find_byte(content, b' ').unwrap_or(content.len());
            let key = &content[..key_end];
            let rest = content[key_end..].trim_ascii_start();
            let first_end = find_byte(rest, b' ').unwrap_or(rest.len());
            let first = &rest[..first_end];
            let after_first = rest[first_end..].trim_ascii_start();
            if first.is_empty() {
                return Err(malformed("FT", format!("feature {key} has no location")));
            }
            let sequence_feature = is_sequence_feature(key);
            if after_first.is_empty() {
                feature.replace(FeatureState {
                    feature: Feature {
                        feature_type: intern::feature_type(key),
                        location: parse_location(first)?,
                        qualifiers: Vec::new(),
                    },
                    old_layout: false,
                    open_quote: false,
                    sequence_feature,
                });
            } else {
                // Old layout: KEY from to [description]
                let second_end = find_byte(after_first, b' ').unwrap_or(after_first.len());
                let second = &after_first[..second_end];
                let description = after_first[second_end..].trim_ascii();
                let mut qualifiers = Vec::new();
                if !description.is_empty() {
                    qualifiers.push(Qualifier {
                        name: "note".into(),
                        value: description.to_owned(),
                    });
                }
                feature.replace(FeatureState {
                    feature: Feature {
                        feature_type: intern::feature_type(key),
                        location: Location {
                            sequence: None,
                            start: parse_position(first)?,
                            end: parse_position(second)?,
                        },
                        qualifiers,
                    },
                    old_layout: true,
                    open_quote: false,
                    sequence_feature,
                });
            }
            return Ok(());
        }
        let f = feature
            .as_mut()
            .ok_or_else(|| malformed("FT", "continuation line before any feature"))?;
        let t = content.trim_ascii();
        if f.old_layout {
            if let Some(id) = t.strip_prefix("/FTId=") {
                f.feature.qualifiers.push(Qualifier {
                    name: "id".into(),
                    value: id.to_owned(),
                });
            } else {
                match f.feature.qualifiers.last_mut() {
                    Some(q) if q.name == "note" => {
                        push_feature_text(&mut q.value, t, f.sequence_feature)
                    }
                    _ => f.feature.qualifiers.push(Qualifier {
                        name: "note".into(),
                        value: t.to_owned(),
                    }),
                }
            }
            return Ok(());
        }
        if f.open_quote {
            let q = f
                .feature
                .qualifiers
                .last_mut()
                .expect("open quote has a qualifier");
            let piece = match t.strip_suffix('"') {
                Some(p) => {
                    f.open_quote = false;
                    p
                }
                None => t,
            };
            push_feature_text(&mut q.value, piece, f.sequence_feature);
            return Ok(());
        }
        let q = t
            .strip_prefix('/')
            .ok_or_else(|| malformed("FT", format!("expected /qualifier, got `{t}`")))?;
        let (name, value) = split_once_byte(q, b'=').unwrap_or((q, ""));
        let value = if let Some(v) = value.strip_prefix('"') {
            match v.strip_suffix('"') {
                Some(inner) => inner.to_owned(),
                None => {
                    // Continued on the next lines: leave room for them.
                    f.open_quote = true;
                    let mut owned = String::with_capacity(v.len() + continued_quote_len());
                    owned.push_str(v);
                    owned
                }
            }
        } else {
            value.to_owned()
        };
        f.feature.qualifiers.push(Qualifier {
            name: intern::qualifier_name(name),
            value,
        });
        Ok(())
    }
}

/// Fields separated by `"; "` (a `;` not followed by a space stays inside its field).
fn split_semicolon_space(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let cur = rest?;
        let b = cur.as_bytes();
        let mut from = 0;
        while let Some(i) = find_byte(&cur[from..], b';') {
            let at = from + i;
            if b.get(at + 1) == Some(&b' ') {
                rest = Some(&cur[at + 2..]);
                return Some(&cur[..at]);
            }
            from = at + 1;
        }
        rest = None;
        Some(cur)
    })
}

/// `DB; id; prop; prop. [ISOFORM]`
fn dr_line(content: &str) -> R<CrossReference> {
    let mut t = content.trim_ascii_end();
    let mut isoform = None;
    if t.ends_with(']') {
        if let Some(open) = t.as_bytes().iter().rposition(|&c| c == b'[') {
            if open > 0 && t.as_bytes()[open - 1] == b' ' {
                isoform = Some(t[open + 1..t.len() - 1].to_owned());
                t = t[..open].trim_ascii_end();
            }
        }
    }
    let t = strip_suffix_char(t, '.');
    let mut parts = split_semicolon_space(t);
    let database = parts.next().unwrap_or("").trim_ascii();
    let id = parts.next().map(str::trim_ascii).unwrap_or("");
    if database.is_empty() || id.is_empty() {
        return Err(malformed("DR", "expected 'DB; id; …'"));
    }
    let mut properties = Vec::with_capacity(3);
    properties.extend(parts.map(|p| p.trim_ascii().to_owned()));
    Ok(CrossReference {
        database: intern::database(database),
        id: id.to_owned(),
        properties,
        isoform,
    })
}

fn gene(text: &str) -> R<Gene> {
    let mut g = Gene::default();
    split_outside_braces(text, b';', |tok| {
        let (key, value) = tok
            .split_once('=')
            .ok_or_else(|| malformed("GN", format!("expected Key=value, got `{tok}`")))?;
        let list = match key.trim_ascii() {
            "Name" => {
                g.name = Some(evidenced(value));
                return Ok(());
            }
            "Synonyms" => &mut g.synonyms,
            "OrderedLocusNames" => &mut g.ordered_locus_names,
            "ORFNames" => &mut g.orf_names,
            other => return Err(malformed("GN", format!("unknown gene field `{other}`"))),
        };
        split_outside_braces(value, b',', |v| {
            list.push(evidenced(v));
            Ok(())
        })
    })?;
    Ok(g)
}

/// OG text → organelles. `Plastid; Chloroplast.` stays one item; plasmid lists (`Plasmid A, Plasmid B, and
/// Plasmid C.`) are split at the commas and the final `and`.
fn organelles(og: &str) -> Vec<String> {
    let t = strip_suffix_char(og.trim_ascii(), '.');
    if t.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for part in t.split(", ") {
        let part = part.strip_prefix("and ").unwrap_or(part);
        // "Plasmid A and Plasmid B"
        let mut rest = part;
        while let Some(i) = rest.find(" and Plasmid ") {
            out.push(rest[..i].trim_ascii().to_owned());
            rest = &rest[i + 5..];
        }
        if !rest.trim_ascii().is_empty() {
            out.push(rest.trim_ascii().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_search_matches_str_find() {
        let text = "abc;def,ghi;;jklmnopqrstuvwxyz;0123456789,;end";
        for start in 0..text.len() {
            for b in [b';', b',', b'z', b'd', b'#'] {
                let s = &text[start..];
                assert_eq!(find_byte(s, b), s.find(b as char), "{s:?} {}", b as char);
            }
        }
        assert_eq!(find_byte("", b';'), None);
        let parts: Vec<&str> = split_byte("a,,b,", b',').collect();
        assert_eq!(parts, "a,,b,".split(',').collect::<Vec<_>>());
        assert_eq!(rsplit_once_byte("A:B:C", b':'), Some(("A:B", "C")));
        assert_eq!(split_once_byte("k=v=w", b'='), Some(("k", "v=w")));
        let text = "x\nyy\n\nzzz".repeat(20);
        let feeds: Vec<u32> = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i as u32)
            .collect();
        assert_eq!(line_feeds(text.as_bytes()), feeds);
    }

    #[test]
    fn joining_keeps_hyphenated_words_whole() {
        let mut s = String::new();
        push_joined(&mut s, "from O-");
        push_joined(&mut s, "glycosylated proteins -");
        push_joined(&mut s, "and more");
        assert_eq!(s, "from O-glycosylated proteins - and more");
    }

    #[test]
    fn semicolon_space_splits_keep_inner_semicolons() {
        let parts: Vec<_> = split_semicolon_space("PubMed=1; DOI=10.1002/x;2-#").collect();
        assert_eq!(parts, ["PubMed=1", "DOI=10.1002/x;2-#"]);
        let mut got = Vec::new();
        split_outside_braces("Name=HvPIP2;8 {ECO:1; x}; Synonyms=a", b';', |p| {
            got.push(p.to_owned());
            Ok(())
        })
        .unwrap();
        assert_eq!(got, ["Name=HvPIP2;8 {ECO:1; x}", "Synonyms=a"]);
    }

    #[test]
    fn locations() {
        let l = parse_location("Q9X-2:<12..>20").unwrap();
        assert_eq!(l.sequence.as_deref(), Some("Q9X-2"));
        assert_eq!(
            l.start,
            Position {
                value: Some(12),
                modifier: PositionModifier::Before
            }
        );
        assert_eq!(
            l.end,
            Position {
                value: Some(20),
                modifier: PositionModifier::After
            }
        );
        let l = parse_location("?..?7").unwrap();
        assert_eq!(l.start.modifier, PositionModifier::Unknown);
        assert_eq!(
            l.end,
            Position {
                value: Some(7),
                modifier: PositionModifier::Uncertain
            }
        );
        assert!(parse_location("12..x").is_err());
        assert!(parse_location("").is_err());
    }

    #[test]
    fn evidence_blocks_only_when_eco() {
        let v = evidenced("Name {ECO:0000305, ECO:0000269|PubMed:1}");
        assert_eq!(v.value, "Name");
        assert_eq!(v.evidence, ["ECO:0000305", "ECO:0000269|PubMed:1"]);
        let v = evidenced("[Pyruvate dehydrogenase {acetyl-transferring}]");
        assert!(v.evidence.is_empty());
    }

    #[test]
    fn organelle_lists() {
        assert_eq!(
            organelles("Plastid; Chloroplast."),
            ["Plastid; Chloroplast"]
        );
        assert_eq!(
            organelles("Plasmid A and Plasmid B."),
            ["Plasmid A", "Plasmid B"]
        );
        assert_eq!(organelles("Mitochondrion."), ["Mitochondrion"]);
        assert!(organelles("").is_empty());
    }

    /// Entry Q6GZX4 (001R_FRG3G) of UniProt's own test data (ebi-uniprot/uniprot-store), shortened, after its ID
    /// line.
    const Q6GZX4_AFTER_ID: &str = "AC   Q6GZX4;
DT   28-JUN-2011, integrated into UniProtKB/Swiss-Prot.
DT   19-JUL-2004, sequence version 1.
DT   07-JAN-2015, entry version 29.
DE   RecName: Full=Putative transcription factor 001R;
GN   ORFNames=FV3-001R;
OS   Frog virus 3 (isolate Goorha) (FV-3).
OC   Viruses; dsDNA viruses, no RNA stage; Iridoviridae; Ranavirus.
OX   NCBI_TaxID=654924;
PE   4: Predicted;
KW   Activator; Complete proteome; Reference proteome; Transcription;
KW   Transcription regulation.
SQ   SEQUENCE   256 AA;  29735 MW;  B4840739BF7D4121 CRC64;
     MAFSAEDVLK EYDRRRRMEA LLLSLYYPND RKLLDYKEWS PPRVQVECPK APVEWNNPPS
     EKGLIVGHFS GIKYKGEKAQ ASEVDVNKMC CWVSKFKDAM RRYQGIQTCK IPGKVLSDLD
     AKIKAYNLTV EGVEGFVRYS RVTKQHVAAF LKELRHSKQY ENVNLIHYIL TDKRVDIQHL
     EKDLVKDFKA LVESAHRMRQ GHMINVKYIL YQLLKKHGHG PDGPDILTVK TGSKGVLYDD
     SFRKIYTDLG WKFTPL
//
";

    #[test]
    fn id_lines_before_release_9_read_standard_and_preliminary() {
        for (id, status) in [
            (
                "ID   001R_FRG3G              Reviewed;         256 AA.",
                Status::Reviewed,
            ),
            (
                "ID   001R_FRG3G              Unreviewed;       256 AA.",
                Status::Unreviewed,
            ),
            (
                "ID   001R_FRG3G     STANDARD;      PRT;   256 AA.",
                Status::Reviewed,
            ),
            (
                "ID   001R_FRG3G     PRELIMINARY;      PRT;   256 AA.",
                Status::Unreviewed,
            ),
            ("ID   001R_FRG3G     STANDARD;   256 AA.", Status::Reviewed),
        ] {
            let text = format!("{id}\n{Q6GZX4_AFTER_ID}");
            let e = crate::parse_entry(text.as_bytes()).unwrap_or_else(|err| panic!("{id}: {err}"));
            assert_eq!(e.status, status, "{id}");
            assert_eq!(e.entry_name, "001R_FRG3G");
            assert_eq!(e.primary_accession, "Q6GZX4");
            assert_eq!(e.sequence.length, 256);
        }
        for (id, says) in [
            (
                "ID   001R_FRG3G     CURATED;      PRT;   256 AA.",
                "status `CURATED;` is not",
            ),
            ("ID   001R_FRG3G", "no status after the entry name"),
            (
                "ID   001R_FRG3G     STANDARD;      PRT;",
                "no sequence length",
            ),
            (
                "ID   001R_FRG3G     Reviewed;      PRT;   256 AA.",
                "sequence length",
            ),
        ] {
            let text = format!("{id}\n{Q6GZX4_AFTER_ID}");
            let err = crate::parse_entry(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(says), "{id}: {err}");
            assert!(
                err.starts_with("1: entry 001R_FRG3G: malformed ID line"),
                "{err}"
            );
            assert!(
                !err.contains("Some(") && !err.contains('"'),
                "no Rust debug text: {err}"
            );
        }
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_date("29-FEB-2020").unwrap(),
            NaiveDate::from_ymd_opt(2020, 2, 29).unwrap()
        );
        assert!(parse_date("29-FEB-2021").is_err());
        assert!(parse_date("01-Jan-2020").is_err());
    }
}
