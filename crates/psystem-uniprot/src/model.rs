//! The data model of one UniProtKB flat-file entry.
//!
//! Every type is `serde` Serialize + Deserialize; empty lists and absent optional values are left out of the
//! serialized form (and default when read back). Source of the format: the UniProtKB user manual
//! (<https://www.uniprot.org/docs/userman.htm>); `docs/UNIPROT.md` says how each line type maps onto these types.
//!
//! Evidence tags (`{ECO:0000269|PubMed:11148210, ECO:0000305}`) are kept, never stripped: on the structured
//! name fields (DE, GN, KW, OX) they are split off the value into an `evidence` list of the comma-separated codes
//! (`["ECO:0000269|PubMed:11148210", "ECO:0000305"]`); inside free text (CC text, FT qualifier values, old-style FT
//! descriptions) they stay part of the text, exactly as UniProt writes them.
//!
//! The few small vocabularies (feature type, qualifier name, DR database) are `Cow<'static, str>`: known values
//! borrow a static string instead of allocating; compare them like strings (`feature.feature_type == "CHAIN"`).

use std::borrow::Cow;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One UniProtKB entry, from its `ID` line through its `//` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// ID line: the entry name (mnemonic), e.g. `OGA_HUMAN`.
    pub entry_name: String,
    /// ID line: `Reviewed` (UniProtKB/Swiss-Prot) or `Unreviewed` (UniProtKB/TrEMBL).
    pub status: Status,
    /// ID line: the sequence length in amino acids (checked against SQ and the residues).
    pub sequence_length: u32,
    /// AC lines: the primary accession (the first one), e.g. `O60502`.
    pub primary_accession: String,
    /// AC lines: the secondary accessions in file order (AC may span several lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_accessions: Vec<String>,
    /// DT lines: creation, sequence and entry dates and versions.
    pub dates: EntryDates,
    /// DE lines: protein names, flags, Contains/Includes sub-blocks.
    pub description: ProteinDescription,
    /// GN lines: one [`Gene`] per gene; several genes are separated by a line `GN   and`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub genes: Vec<Gene>,
    /// OS lines joined into one name, without the final period, e.g. `Homo sapiens (Human)`.
    pub organism: String,
    /// OG lines: organelles / plasmids the gene comes from, e.g. `["Mitochondrion"]`, `["Plastid; Chloroplast"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organelles: Vec<String>,
    /// OC lines: the taxonomic lineage, top level first, e.g. `["Eukaryota", "Metazoa", …, "Homo"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
    /// OX line: the NCBI taxonomy identifier of the organism.
    pub taxonomy: TaxonomyReference,
    /// OH lines: hosts of a virus, one per line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Host>,
    /// RN…RL blocks, in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// CC `-!- TOPIC: text` blocks, in file order (the copyright block is not a comment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<Comment>,
    /// DR lines, in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_references: Vec<CrossReference>,
    /// PE line: the protein existence level.
    pub protein_existence: ProteinExistence,
    /// KW lines: keywords in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<EvidencedValue>,
    /// FT lines: the feature table in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<Feature>,
    /// SQ line and the sequence lines.
    pub sequence: Sequence,
    /// MD5 (lower-case hex, 32 digits) of the entry's raw bytes from the first byte of the `ID` line through the
    /// line feed that ends the `//` line (a missing final line feed at end of file counts as present), i.e. what
    /// `md5sum` prints for the entry cut out of the file.
    pub content_md5: String,
    /// MD5 (lower-case hex, 32 digits) of the residues (upper-case one-letter codes, no whitespace).
    pub sequence_md5: String,
}

/// ID line status: which section of UniProtKB an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// `Reviewed`: UniProtKB/Swiss-Prot.
    Reviewed,
    /// `Unreviewed`: UniProtKB/TrEMBL.
    Unreviewed,
}

/// The three DT lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryDates {
    /// `DD-MMM-YYYY, integrated into UniProtKB/<database>.`: the date the entry was created.
    pub created: NaiveDate,
    /// The database named on the creation line: `Swiss-Prot` or `TrEMBL`.
    pub created_in: String,
    /// `DD-MMM-YYYY, sequence version N.`: the date of the last sequence change.
    pub sequence_updated: NaiveDate,
    /// The sequence version (N above, starting at 1).
    pub sequence_version: u32,
    /// `DD-MMM-YYYY, entry version N.`: the date of the last annotation change.
    pub entry_updated: NaiveDate,
    /// The entry version (N above, starting at 1).
    pub entry_version: u32,
}

/// A value with its evidence codes, e.g. `Full=Protein O-GlcNAcase {ECO:0000303|PubMed:11148210, ECO:0000305}`
/// → value `Protein O-GlcNAcase`, evidence `["ECO:0000303|PubMed:11148210", "ECO:0000305"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidencedValue {
    /// The value without its evidence block and without surrounding whitespace.
    pub value: String,
    /// The comma-separated codes of the `{…}` block, in order; empty when the value carries none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

/// DE lines: the names of the protein, and of the chains/domains it contains or includes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProteinDescription {
    /// `RecName:` — the recommended name (Swiss-Prot; at most one per block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_name: Option<ProteinName>,
    /// `AltName:` — alternative names, in order (including `Allergen=`, `Biotech=`, `CD_antigen=`, `INN=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternative_names: Vec<ProteinName>,
    /// `SubName:` — names given by the submitter (TrEMBL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub submission_names: Vec<ProteinName>,
    /// `Flags:` — `Precursor`, `Fragment`, `Fragments`, … (top level only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<EvidencedValue>,
    /// `Contains:` sub-blocks (chains cut from a precursor), in order. Sub-blocks have no sub-blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<ProteinDescription>,
    /// `Includes:` sub-blocks (domains of a multifunctional protein), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub includes: Vec<ProteinDescription>,
}

/// One `RecName:`/`AltName:`/`SubName:` with its fields (each field name as in the DE line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProteinName {
    /// `Full=`: the full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<EvidencedValue>,
    /// `Short=`: abbreviations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short: Vec<EvidencedValue>,
    /// `EC=`: enzyme commission numbers, e.g. `3.2.1.169`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ec: Vec<EvidencedValue>,
    /// `Allergen=` (AltName only), e.g. `Bet v 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allergen: Option<EvidencedValue>,
    /// `Biotech=` (AltName only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biotech: Option<EvidencedValue>,
    /// `CD_antigen=` (AltName only), e.g. `CD42`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cd_antigen: Vec<EvidencedValue>,
    /// `INN=` (AltName only): international non-proprietary names, e.g. `Alteplase`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inn: Vec<EvidencedValue>,
}

/// One gene of the GN lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gene {
    /// `Name=`: the gene name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<EvidencedValue>,
    /// `Synonyms=`: comma-separated synonyms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<EvidencedValue>,
    /// `OrderedLocusNames=`: ordered locus names (systematic names of sequenced genomes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ordered_locus_names: Vec<EvidencedValue>,
    /// `ORFNames=`: open reading frame names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orf_names: Vec<EvidencedValue>,
}

/// OX line: `NCBI_TaxID=9606;` (optionally with an evidence block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxonomyReference {
    /// The NCBI taxonomy identifier.
    pub ncbi_taxid: u64,
    /// Evidence codes of the OX line, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

/// OH line: `NCBI_TaxID=9913; Bos taurus (Bovine).`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// The host's NCBI taxonomy identifier.
    pub ncbi_taxid: u64,
    /// The host's name without the final period; empty when the line gives none.
    pub name: String,
}

/// One reference block (RN, RP, RC, RX, RG, RA, RT, RL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// RN: the reference number `[n]`.
    pub number: u32,
    /// RN: evidence codes after the number (TrEMBL), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// RP: the reference position (what the paper supports), lines joined, final period removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// RC: `TOKEN=value` comments, e.g. `TISSUE=Brain`, in order (values may list several items).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<Token>,
    /// RX: bibliographic database identifiers, e.g. `PubMed=9811929`, `DOI=10.1093/hmg/7.12.1859`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_references: Vec<Token>,
    /// RG: consortium / group names, one per RG line (a name spanning lines is joined).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// RA: authors in order, e.g. `["Heckel D.", "Comtesse N."]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    /// RT: the title, lines joined, without the enclosing quotes and the final `;`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// RL: the location (journal, volume, pages, year, or submission), lines joined, final period removed.
    pub location: String,
}

/// A `KEY=value` token of an RC or RX line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The token name, e.g. `TISSUE`, `PubMed`, `DOI`.
    pub key: String,
    /// The token value, e.g. `Brain`, `9811929`.
    pub value: String,
}

/// A CC comment block `-!- TOPIC: text`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// The topic, e.g. `FUNCTION`, `SUBCELLULAR LOCATION`, `ALTERNATIVE PRODUCTS`.
    pub topic: String,
    /// The text after `TOPIC:`, continuation lines joined with one space (no space after a line-final hyphen
    /// that follows a non-space), evidence blocks kept in place. Structured topics (CATALYTIC ACTIVITY,
    /// ALTERNATIVE PRODUCTS, …) keep their `Key=value;` syntax, flattened onto one line.
    pub text: String,
}

/// A DR line: `DR   RefSeq; NP_036347.1; NM_012215.3. [O60502-1]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossReference {
    /// The database, e.g. `EMBL`, `PDB`, `GO`.
    pub database: Cow<'static, str>,
    /// The primary identifier in that database, e.g. `AF036144`.
    pub id: String,
    /// The further `; `-separated fields in order, `-` kept as written, final period removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
    /// The isoform the line applies to, from a trailing `[O60502-4]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isoform: Option<String>,
}

/// PE line: `PE   1: Evidence at protein level;`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProteinExistence {
    /// The level, 1 (evidence at protein level) to 5 (uncertain).
    pub level: u8,
    /// The label as written, e.g. `Evidence at protein level`.
    pub label: String,
}

/// One FT feature.
///
/// Both feature-table layouts are read: the current one (since release 2019_11: key in columns 6–21, location
/// `start..end` from column 22, `/qualifier="value"` lines) and the older column layout (`KEY  from  to  description`,
/// `/FTId=…`), whose description becomes a `note` qualifier and whose `/FTId=` becomes an `id` qualifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// The feature key, e.g. `CHAIN`, `VAR_SEQ`, `MOD_RES`.
    pub feature_type: Cow<'static, str>,
    /// Where the feature lies.
    pub location: Location,
    /// Qualifiers in file order, e.g. `note`, `evidence`, `id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qualifiers: Vec<Qualifier>,
}

/// A feature location: `12..20`, `175`, `<1..>74`, `?..58`, `Q9X-2:12..20`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The isoform (or other sequence) the positions refer to when it is not the entry's sequence, e.g. `P21802-16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// The first position (1-based, inclusive).
    pub start: Position,
    /// The last position (1-based, inclusive); equal to `start` for a single position.
    pub end: Position,
}

/// One end of a feature location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The position (1-based); absent when unknown (`?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u32>,
    /// How exact the position is.
    pub modifier: PositionModifier,
}

/// The qualifier of a feature position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PositionModifier {
    /// `12`: exactly this position.
    Exact,
    /// `<12`: the feature extends beyond this position towards the N-terminus.
    Before,
    /// `>12`: the feature extends beyond this position towards the C-terminus.
    After,
    /// `?12`: uncertain, probably this position.
    Uncertain,
    /// `?`: unknown position (no value).
    Unknown,
}

/// A feature qualifier `/name="value"` (quotes removed; continuation lines joined).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qualifier {
    /// The qualifier name, e.g. `note`, `evidence`, `id`.
    pub name: Cow<'static, str>,
    /// The value without quotes. In VAR_SEQ, VARIANT, CONFLICT and MUTAGEN notes a sequence broken over lines is
    /// joined without a space.
    pub value: String,
}

/// The SQ line and the residues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    /// Length in residues (checked against the ID line and the residue count).
    pub length: u32,
    /// Molecular weight in daltons, as on the SQ line.
    pub molecular_weight: u64,
    /// CRC64 (ISO polynomial, as UniProt computes it), 16 upper-case hex digits (checked against the residues).
    pub crc64: String,
    /// The residues: upper-case one-letter codes, whitespace removed.
    pub residues: String,
}
