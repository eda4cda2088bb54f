//! Streaming parser for UniProtKB flat files (`uniprot_sprot.dat[.gz]`, `uniprot_trembl.dat[.gz]`).
//!
//! Source of the format: the UniProtKB user manual (<https://www.uniprot.org/docs/userman.htm>); how this crate
//! reads each line type, the data model and the error policy are in `docs/UNIPROT.md`.
//!
//! ```no_run
//! use psystem_uniprot::{open_path, ErrorPolicy};
//! let mut reader = open_path("uniprot_sprot.dat.gz")?;
//! let report = reader.for_each_entry(ErrorPolicy::Skip, |entry| {
//!     println!("{} {}", entry.primary_accession, entry.sequence.length);
//! })?;
//! println!("{} parsed, {} skipped", report.parsed, report.skipped);
//! # Ok::<(), psystem_uniprot::ParseError>(())
//! ```
//!
//! Every entry is checked: the ID line length, the SQ line length and the residue count agree, and the CRC64 of
//! the residues equals the SQ line's. A malformed entry is an error naming file, accession and line; the reader
//! then continues with the next entry.

#![warn(missing_docs)]

mod error;
mod intern;
mod md5x;
mod model;
mod parse;
mod reader;
mod split;

pub use error::{ParseError, ParseErrorKind};
pub use model::*;
pub use parse::parse_entry;
pub use reader::{open_path, EntryReader, ErrorPolicy, ParseReport, SkippedEntry, MAX_ENTRY_BYTES};
pub use split::{plan_units, UnitRange};

use crc::{Algorithm, Crc, Table};

/// UniProt's CRC64 (the SWISS-PROT checksum): the ISO 3309 polynomial `x^64 + x^4 + x^3 + x + 1` (0x1B),
/// reflected, initial value 0 and no final XOR. This is NOT `crc`'s `CRC_64_GO_ISO`, which starts from and XORs
/// with all ones; the fixtures' SQ lines match this one.
pub const UNIPROT_CRC64: Algorithm<u64> = Algorithm {
    width: 64,
    poly: 0x0000_0000_0000_001b,
    init: 0,
    refin: true,
    refout: true,
    xorout: 0,
    check: 0x46a5_a938_8a5b_effe,
    residue: 0,
};

static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&UNIPROT_CRC64);

/// The CRC64 of a sequence as UniProt writes it on the SQ line: 16 upper-case hex digits.
///
/// `seq` is the residues (upper-case one-letter codes, no whitespace).
pub fn crc64_hex(seq: &[u8]) -> String {
    format!("{:016X}", crc64(seq))
}

/// UniProt's CRC64 of a sequence as a number (see [`UNIPROT_CRC64`]).
pub fn crc64(seq: &[u8]) -> u64 {
    CRC64.checksum(seq)
}

/// Lower-case hex of a digest.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}
