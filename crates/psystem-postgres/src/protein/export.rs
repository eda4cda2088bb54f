//! Exports of loaded UniProt entries: FASTA with UniProt's header, and JSON lines.
//!
//! FASTA follows UniProt's own files (<https://www.uniprot.org/help/fasta-headers>):
//! `>db|UniqueIdentifier|EntryName ProteinName OS=OrganismName OX=OrganismIdentifier [GN=GeneName ]PE=ProteinExistence SV=SequenceVersion`,
//! where `db` is `sp` (Swiss-Prot) or `tr` (TrEMBL), then the residues in lines of 60. `ProteinName` is the
//! recommended name (else the submitted name), followed by ` (Fragment)` when the DE `Flags:` say so; `OS=` is
//! the organism's scientific name: the OS line without its trailing common-name parentheses (`Homo sapiens
//! (Human)` → `Homo sapiens`, while `Escherichia coli (strain K12)` keeps its strain); `GN=` is left out when the
//! entry names no gene.
//!
//! JSON is one object per line (JSON Lines), ordered by accession: every column of `protein` except `loaded_at`,
//! plus the child rows as arrays: `secondary_accessions`, `cross_references`, `features`, `keywords`, `references`.

use futures::TryStreamExt;
use psystem_core::TableRef;
use sqlx::Row;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::ident::quote_table;
use crate::{Destination, DestinationError};

/// Residues per FASTA line.
pub const FASTA_LINE: usize = 60;

/// The format of [`export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// FASTA with UniProt's header.
    Fasta,
    /// JSON Lines: one object per entry.
    Json,
}

/// Which entries to export.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// The schema holding the protein tables.
    pub schema: String,
    /// The base table name (`protein`; children `<table>_xref`, …).
    pub table: String,
    /// Only entries of this dataset (`sprot`, `trembl`).
    pub dataset: Option<String>,
    /// Only these primary accessions (empty: all).
    pub accessions: Vec<String>,
    /// At most this many entries.
    pub limit: Option<u64>,
}

/// One FASTA record's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastaRecord {
    /// Primary accession.
    pub accession: String,
    /// Entry name (`OGA_HUMAN`).
    pub entry_name: String,
    /// Swiss-Prot (`sp`) or TrEMBL (`tr`).
    pub reviewed: bool,
    /// The protein name, if any.
    pub protein_name: Option<String>,
    /// Whether the DE flags say `Fragment` or `Fragments`.
    pub fragment: bool,
    /// The OS line's organism (`Homo sapiens (Human)`).
    pub organism: String,
    /// NCBI taxonomy id.
    pub taxonomy_id: i64,
    /// The first gene name, if any.
    pub gene: Option<String>,
    /// Protein existence level 1–5.
    pub protein_existence: i16,
    /// Sequence version.
    pub sequence_version: i32,
    /// The residues.
    pub sequence: String,
}

/// The organism's scientific name from an OS line: trailing parenthesised groups that start with an upper-case
/// letter (common names and synonyms: `(Human)`, `(Mouse-ear cress)`) are removed; lower-case ones
/// (`(strain K12)`, `(isolate …)`) are part of the name.
pub fn scientific_name(organism: &str) -> &str {
    let mut name = organism.trim_end();
    while name.ends_with(')') {
        let Some(open) = matching_open(name) else {
            break;
        };
        let inner = &name[open + 1..name.len() - 1];
        if !inner.chars().next().is_some_and(char::is_uppercase) || open == 0 {
            break;
        }
        name = name[..open].trim_end();
    }
    name
}

/// The index of the `(` matching the final `)` of `s`.
fn matching_open(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Appends one FASTA record (header and 60-residue lines) to `out`.
pub fn write_fasta(r: &FastaRecord, out: &mut String) {
    use std::fmt::Write as _;
    let db = if r.reviewed { "sp" } else { "tr" };
    let name = r
        .protein_name
        .as_deref()
        .unwrap_or("Uncharacterized protein");
    let _ = write!(out, ">{db}|{}|{} {name}", r.accession, r.entry_name);
    if r.fragment {
        out.push_str(" (Fragment)");
    }
    let _ = write!(
        out,
        " OS={} OX={}",
        scientific_name(&r.organism),
        r.taxonomy_id
    );
    if let Some(gene) = &r.gene {
        let _ = write!(out, " GN={gene}");
    }
    let _ = writeln!(out, " PE={} SV={}", r.protein_existence, r.sequence_version);
    for line in r.sequence.as_bytes().chunks(FASTA_LINE) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
}

/// Writes the entries chosen by `filter` to `out` in `format`, streaming (a row at a time; memory does not grow
/// with the table). Returns the number of entries written. `target` names `out` in errors.
///
/// # Errors
/// [`DestinationError::NoProteinTable`], [`DestinationError::ExportWrite`], [`DestinationError::Database`].
pub async fn export<W: AsyncWrite + Unpin>(
    dest: &Destination,
    filter: &ExportFilter,
    format: ExportFormat,
    out: &mut W,
    target: &str,
) -> Result<u64, DestinationError> {
    let protein = TableRef::new(filter.schema.as_str(), filter.table.as_str());
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(quote_table(&protein))
        .fetch_one(dest.pool())
        .await
        .map_err(DestinationError::db("looking for the protein table"))?;
    if !exists {
        return Err(DestinationError::NoProteinTable {
            table: format!("{}.{}", filter.schema, filter.table),
        });
    }
    let t = |kind: &str| {
        quote_table(&TableRef::new(
            filter.schema.as_str(),
            super::table_name(&filter.table, kind),
        ))
    };
    let select = match format {
        ExportFormat::Fasta => "p.accession, p.entry_name, p.reviewed, p.protein_name, \
             (p.flags && ARRAY['Fragment', 'Fragments']) AS fragment, p.gene, p.organism, p.taxonomy_id, \
             p.protein_existence, p.sequence_version, p.sequence"
            .to_string(),
        ExportFormat::Json => format!(
            "(to_jsonb(p) - 'loaded_at' || jsonb_build_object(\
             'secondary_accessions', COALESCE((SELECT jsonb_agg(a.secondary_accession ORDER BY a.secondary_accession) \
               FROM {acc} a WHERE a.accession = p.accession), '[]'::jsonb), \
             'cross_references', COALESCE((SELECT jsonb_agg(to_jsonb(x) - 'accession' ORDER BY x.ordinal) \
               FROM {xref} x WHERE x.accession = p.accession), '[]'::jsonb), \
             'features', COALESCE((SELECT jsonb_agg(to_jsonb(f) - 'accession' ORDER BY f.ordinal) \
               FROM {feat} f WHERE f.accession = p.accession), '[]'::jsonb), \
             'keywords', COALESCE((SELECT jsonb_agg(to_jsonb(k) - 'accession' ORDER BY k.ordinal) \
               FROM {kw} k WHERE k.accession = p.accession), '[]'::jsonb), \
             'references', COALESCE((SELECT jsonb_agg(to_jsonb(r) - 'accession' ORDER BY r.ordinal) \
               FROM {refs} r WHERE r.accession = p.accession), '[]'::jsonb)))::text AS doc",
            acc = t("protein_accession"),
            xref = t("protein_xref"),
            feat = t("protein_feature"),
            kw = t("protein_keyword"),
            refs = t("protein_reference"),
        ),
    };
    let sql = format!(
        "SELECT {select} FROM {} p WHERE ($1::text IS NULL OR p.dataset = $1) \
         AND (cardinality($2::text[]) = 0 OR p.accession = ANY($2)) ORDER BY p.accession LIMIT $3",
        t("protein")
    );
    let limit = filter
        .limit
        .map(|l| i64::try_from(l).unwrap_or(i64::MAX))
        .unwrap_or(i64::MAX);
    let mut rows = sqlx::query(&sql)
        .bind(filter.dataset.as_deref())
        .bind(&filter.accessions)
        .bind(limit)
        .fetch(dest.pool());
    let write_err = |source| DestinationError::ExportWrite {
        target: target.to_string(),
        source,
    };
    let mut count = 0u64;
    let mut text = String::with_capacity(64 * 1024);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(DestinationError::db("reading the entries to export"))?
    {
        match format {
            ExportFormat::Fasta => write_fasta(
                &FastaRecord {
                    accession: row.get("accession"),
                    entry_name: row.get("entry_name"),
                    reviewed: row.get("reviewed"),
                    protein_name: row.get("protein_name"),
                    fragment: row.get("fragment"),
                    organism: row.get("organism"),
                    taxonomy_id: row.get("taxonomy_id"),
                    gene: row.get("gene"),
                    protein_existence: row.get("protein_existence"),
                    sequence_version: row.get("sequence_version"),
                    sequence: row.get("sequence"),
                },
                &mut text,
            ),
            ExportFormat::Json => {
                text.push_str(row.get::<&str, _>("doc"));
                text.push('\n');
            }
        }
        count += 1;
        if text.len() >= 64 * 1024 {
            out.write_all(text.as_bytes()).await.map_err(write_err)?;
            text.clear();
        }
    }
    out.write_all(text.as_bytes()).await.map_err(write_err)?;
    out.flush().await.map_err(write_err)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scientific_names() {
        assert_eq!(scientific_name("Homo sapiens (Human)"), "Homo sapiens");
        assert_eq!(
            scientific_name("Escherichia coli (strain K12)"),
            "Escherichia coli (strain K12)"
        );
        assert_eq!(
            scientific_name("Arabidopsis thaliana (Mouse-ear cress)"),
            "Arabidopsis thaliana"
        );
        assert_eq!(
            scientific_name("Influenza A virus (strain A/Puerto Rico/8/1934 H1N1)"),
            "Influenza A virus (strain A/Puerto Rico/8/1934 H1N1)"
        );
        assert_eq!(scientific_name("Bos taurus (Bovine) (Cow)"), "Bos taurus");
        assert_eq!(scientific_name("(Odd)"), "(Odd)");
    }

    #[test]
    fn fasta_record_layout() {
        let r = FastaRecord {
            accession: "P12345".into(),
            entry_name: "TEST_HUMAN".into(),
            reviewed: true,
            protein_name: Some("Test protein".into()),
            fragment: true,
            organism: "Homo sapiens (Human)".into(),
            taxonomy_id: 9606,
            gene: Some("TST".into()),
            protein_existence: 1,
            sequence_version: 2,
            sequence: "A".repeat(130),
        };
        let mut out = String::new();
        write_fasta(&r, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            ">sp|P12345|TEST_HUMAN Test protein (Fragment) OS=Homo sapiens OX=9606 GN=TST PE=1 SV=2"
        );
        assert_eq!(lines[1].len(), 60);
        assert_eq!(lines[2].len(), 60);
        assert_eq!(lines[3].len(), 10);
        assert_eq!(lines.len(), 4);
        let r = FastaRecord {
            reviewed: false,
            gene: None,
            fragment: false,
            protein_name: None,
            ..r
        };
        out.clear();
        write_fasta(&r, &mut out);
        assert!(out.starts_with(
            ">tr|P12345|TEST_HUMAN Uncharacterized protein OS=Homo sapiens OX=9606 PE=1 SV=2\n"
        ));
    }
}
