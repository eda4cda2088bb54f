//! Invariants over every entry of every UniProt fixture file.

mod common;

use std::collections::HashSet;

use common::{flat_files, terminator_lines};
use psystem_uniprot::{crc64_hex, open_path, ErrorPolicy, ParseErrorKind};

/// A stub file from UniProt's own tests: 13 entries with only ID, AC and OX lines (no DT, OS, PE, SQ) and one
/// entry name repeated. Not a valid flat file; the parser must reject every entry, loudly.
const STUB_FILE: &str = "spark-indexer__2020_02_uniprotkb_uniprotkk-for-taxonomy.dat";

#[test]
fn every_entry_of_every_fixture_parses_and_checks() {
    let files = flat_files();
    assert!(
        files.len() >= 50,
        "expected the fixture tree, found {} files",
        files.len()
    );
    let mut total = 0usize;
    let mut checked_notes = 0usize;
    for path in files {
        if path.file_name().unwrap() == STUB_FILE {
            continue;
        }
        let mut names = HashSet::new();
        let mut count = 0usize;
        for item in open_path(&path).unwrap() {
            let e = item.unwrap_or_else(|e| panic!("{e}"));
            let where_ = format!("{} {}", path.display(), e.primary_accession);
            assert_eq!(
                e.sequence.residues.len(),
                e.sequence_length as usize,
                "{where_}"
            );
            assert_eq!(e.sequence.length, e.sequence_length, "{where_}");
            assert_eq!(
                crc64_hex(e.sequence.residues.as_bytes()),
                e.sequence.crc64,
                "{where_}"
            );
            assert!(!e.primary_accession.is_empty(), "{where_}");
            assert!(
                e.sequence.residues.bytes().all(|b| b.is_ascii_uppercase()),
                "{where_}"
            );
            assert_eq!(e.content_md5.len(), 32, "{where_}");
            assert_eq!(e.sequence_md5.len(), 32, "{where_}");
            assert!(
                !e.organism.is_empty() && !e.organism.ends_with('.'),
                "{where_}"
            );
            assert!((1..=5).contains(&e.protein_existence.level), "{where_}");
            assert!(
                names.insert(e.entry_name.clone()),
                "{where_}: entry name {} repeated",
                e.entry_name
            );
            checked_notes += check_sequence_notes(&e, &where_);
            // The JSON form reads back to the same entry.
            let json = serde_json::to_string(&e).unwrap();
            let back: psystem_uniprot::Entry = serde_json::from_str(&json).unwrap();
            assert_eq!(back, e, "{where_}: JSON round trip");
            count += 1;
        }
        assert_eq!(
            count,
            terminator_lines(&path),
            "{}: entries vs // lines",
            path.display()
        );
        total += count;
    }
    assert!(total >= 170, "only {total} entries read");
    assert!(
        checked_notes > 500,
        "only {checked_notes} sequence notes checked"
    );
}

/// VAR_SEQ / VARIANT / CONFLICT notes `ABC -> XYZ (…)` on the entry's own sequence must quote its residues: a
/// check that sequences wrapped over FT lines were joined without a space. Returns the number of notes checked.
fn check_sequence_notes(e: &psystem_uniprot::Entry, where_: &str) -> usize {
    use psystem_uniprot::PositionModifier::Exact;
    let mut n = 0;
    for f in &e.features {
        if !matches!(&*f.feature_type, "VAR_SEQ" | "VARIANT" | "CONFLICT")
            || f.location.sequence.is_some()
        {
            continue;
        }
        let (s, t) = (f.location.start, f.location.end);
        if s.modifier != Exact || t.modifier != Exact {
            continue;
        }
        let Some(note) = f.qualifiers.iter().find(|q| q.name == "note") else {
            continue;
        };
        let Some((from, _)) = note.value.split_once(" -> ") else {
            continue;
        };
        if from.is_empty() || !from.bytes().all(|b| b.is_ascii_uppercase()) {
            continue;
        }
        let (a, b) = (s.value.unwrap() as usize, t.value.unwrap() as usize);
        assert_eq!(
            &e.sequence.residues[a - 1..b],
            from,
            "{where_}: {} {a}..{b} note {:?}",
            f.feature_type,
            note.value
        );
        n += 1;
    }
    n
}

#[test]
fn the_stub_file_is_rejected_entry_by_entry() {
    let path = common::fixtures_dir()
        .join("ebi-uniprot_uniprot-store")
        .join(STUB_FILE);
    let mut reader = open_path(&path).unwrap();
    let report = reader.for_each_entry(ErrorPolicy::Skip, |_| {}).unwrap();
    assert_eq!(report.parsed, 0);
    assert_eq!(report.skipped as usize, terminator_lines(&path));
    let first = &report.skipped_entries[0];
    assert_eq!(first.accession.as_deref(), Some("O60260"));
    assert_eq!(first.line, 4, "the // line of the first entry");
    assert!(first.message.contains("no DT"), "{}", first.message);
    // Fail stops at the first entry, naming the file.
    let err = open_path(&path)
        .unwrap()
        .for_each_entry(ErrorPolicy::Fail, |_| {})
        .unwrap_err();
    assert!(matches!(err.kind, ParseErrorKind::Missing(_)));
    assert!(err.to_string().contains(STUB_FILE), "{err}");
}

#[test]
fn known_crc64_values() {
    // UniProt's CRC64 (initial value 0, no final XOR): the catalogue check value of "123456789", and the SQ line of
    // Q6GZX4 (integration-test__it_uniprot_Q6GZX4.29.dat) for its 256 residues.
    assert_eq!(crc64_hex(b"123456789"), "46A5A9388A5BEFFE");
    assert_eq!(crc64_hex(b""), "0000000000000000");
    let q6gzx4 = "MAFSAEDVLKEYDRRRRMEALLLSLYYPNDRKLLDYKEWSPPRVQVECPKAPVEWNNPPSEKGLIVGHFSGIKYKGEKAQASEVDVNKMCCWVSKFKDAMRR\
                  YQGIQTCKIPGKVLSDLDAKIKAYNLTVEGVEGFVRYSRVTKQHVAAFLKELRHSKQYENVNLIHYILTDKRVDIQHLEKDLVKDFKALVESAHRMRQGH\
                  MINVKYILYQLLKKHGHGPDGPDILTVKTGSKGVLYDDSFRKIYTDLGWKFTPL";
    assert_eq!(q6gzx4.len(), 256);
    assert_eq!(crc64_hex(q6gzx4.as_bytes()), "B4840739BF7D4121");
    // Not the CRC-64/GO-ISO variant (all-ones initial value and final XOR), whose check value is B90956C775A41001.
    assert_ne!(crc64_hex(b"123456789"), "B90956C775A41001");
}
