//! Errors of the UniProtKB flat-file parser.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// What was wrong with an entry (or with the stream).
#[derive(Debug, thiserror::Error)]
pub enum ParseErrorKind {
    /// Reading the stream failed (file, gzip, network). Not recoverable: the reader stops after it.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    /// The entry's bytes are not UTF-8 (UniProt flat files are ASCII).
    #[error("entry text is not UTF-8 (byte offset {offset} in the entry)")]
    NotUtf8 {
        /// Byte offset of the first invalid byte, from the start of the entry.
        offset: usize,
    },
    /// A line does not start with a known two-letter code followed by three spaces (or five spaces for a sequence
    /// line).
    #[error("unknown or malformed line code `{code}`")]
    UnknownLineCode {
        /// The first (up to 5) characters of the line.
        code: String,
    },
    /// A line of a known type whose content cannot be read.
    #[error("malformed {line_type} line: {message}")]
    Malformed {
        /// The two-letter line code, e.g. `DT`.
        line_type: &'static str,
        /// What was expected.
        message: String,
    },
    /// A required line type is absent from the entry.
    #[error("entry has no {0} line")]
    Missing(&'static str),
    /// The entry ends (end of stream, or the next `ID` line) without its `//` line.
    #[error("entry is truncated: {0}")]
    Truncated(String),
    /// The ID line, SQ line and residue count disagree on the sequence length.
    #[error("sequence length mismatch: ID line says {id_line}, SQ line says {sq_line}, {residues} residues read")]
    LengthMismatch {
        /// Length on the ID line.
        id_line: u32,
        /// Length on the SQ line.
        sq_line: u32,
        /// Number of residues in the sequence lines.
        residues: usize,
    },
    /// The CRC64 of the residues differs from the SQ line's.
    #[error("CRC64 mismatch: SQ line says {expected:016X}, residues give {computed:016X}")]
    Crc64Mismatch {
        /// The CRC64 written on the SQ line.
        expected: u64,
        /// The CRC64 computed from the residues.
        computed: u64,
    },
}

/// An error in one entry, or of the stream, with where it happened.
///
/// Displayed as `<file>:<line>: entry <accession>: <what>` (file and accession left out when unknown).
#[derive(Debug)]
pub struct ParseError {
    /// The file being read, when the reader was given one ([`crate::open_path`] or `with_source_name`).
    pub file: Option<Arc<Path>>,
    /// The primary accession of the entry, when its AC line was read before the error.
    pub accession: Option<String>,
    /// The entry name of the entry, when its ID line was read.
    pub entry_name: Option<String>,
    /// 1-based line number in the whole (decompressed) stream of the offending line.
    pub line: u64,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

impl ParseError {
    /// True when the error comes from reading the stream (the reader cannot continue after it).
    pub fn is_io(&self) -> bool {
        matches!(self.kind, ParseErrorKind::Io(_))
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
        }
        write!(f, "{}: ", self.line)?;
        match (&self.accession, &self.entry_name) {
            (Some(acc), _) => write!(f, "entry {acc}: ")?,
            (None, Some(name)) => write!(f, "entry {name}: ")?,
            (None, None) => {}
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}
