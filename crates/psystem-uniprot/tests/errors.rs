//! Error paths of the reader: every malformed entry is reported with file, accession and line, and the entries
//! after it still parse (with `ErrorPolicy::Skip`); gzip input reads the same as plain input.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use psystem_uniprot::{
    open_path, parse_entry, Entry, EntryReader, ErrorPolicy, ParseError, ParseErrorKind,
};

fn fixture(rel: &str) -> PathBuf {
    common::fixtures_dir().join(rel)
}

/// Three small real entries (Q6GZX4, Q6GZX3, Q6GZW2), each ending with "//\n".
fn three_entries() -> Vec<String> {
    [
        "ebi-uniprot_uniprot-store/integration-test__it_uniprot_Q6GZX4.29.dat",
        "ebi-uniprot_uniprot-store/integration-test__it_uniprot_Q6GZX3.29.dat",
        "ebi-uniprot_uniprot-store/integration-test__it_uniprot_Q6GZW2.21.dat",
    ]
    .iter()
    .map(|p| {
        let mut t = std::fs::read_to_string(fixture(p)).unwrap();
        if !t.ends_with('\n') {
            t.push('\n');
        }
        t
    })
    .collect()
}

fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// 1-based line number of the first line of `text` starting with `prefix`.
fn line_of(text: &str, prefix: &str) -> u64 {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .expect(prefix) as u64
        + 1
}

fn collect(path: &Path) -> Vec<Result<Entry, ParseError>> {
    open_path(path).unwrap().collect()
}

fn accessions(items: &[Result<Entry, ParseError>]) -> Vec<String> {
    items
        .iter()
        .map(|r| match r {
            Ok(e) => e.primary_accession.clone(),
            Err(e) => format!("ERR:{}", e.accession.clone().unwrap_or_default()),
        })
        .collect()
}

#[test]
fn wrong_crc64_is_reported_and_the_next_entries_parse() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = three_entries();
    let sq = e[1]
        .lines()
        .find(|l| l.starts_with("SQ"))
        .unwrap()
        .to_owned();
    let bad_sq = sq.replace(sq.split_whitespace().nth(6).unwrap(), "0123456789ABCDEF");
    e[1] = e[1].replace(&sq, &bad_sq);
    let text = e.concat();
    let path = write_temp(dir.path(), "crc.dat", &text);
    let items = collect(&path);
    assert_eq!(accessions(&items), ["Q6GZX4", "ERR:Q6GZX3", "Q6GZW2"]);
    let err = items[1].as_ref().unwrap_err();
    assert!(
        matches!(&err.kind, ParseErrorKind::Crc64Mismatch { expected, .. } if *expected == 0x0123_4567_89AB_CDEF)
    );
    assert_eq!(
        err.line,
        line_of(&text, &bad_sq),
        "the SQ line, counted over the whole stream"
    );
    assert_eq!(err.file.as_deref(), Some(path.as_path()));
    let shown = err.to_string();
    assert!(
        shown.contains("crc.dat:") && shown.contains("entry Q6GZX3") && shown.contains("CRC64"),
        "{shown}"
    );

    // Skip counts and lists it; Fail returns it.
    let report = open_path(&path)
        .unwrap()
        .for_each_entry(ErrorPolicy::Skip, |_| {})
        .unwrap();
    assert_eq!((report.parsed, report.skipped), (2, 1));
    assert_eq!(
        report.skipped_entries[0].accession.as_deref(),
        Some("Q6GZX3")
    );
    assert_eq!(report.skipped_entries[0].line, err.line);
    let mut seen = Vec::new();
    let fail = open_path(&path)
        .unwrap()
        .for_each_entry(ErrorPolicy::Fail, |e| seen.push(e.primary_accession))
        .unwrap_err();
    assert_eq!(fail.accession.as_deref(), Some("Q6GZX3"));
    assert_eq!(seen, ["Q6GZX4"]);
}

#[test]
fn id_length_that_disagrees_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = three_entries();
    let id = e[0].lines().next().unwrap().to_owned();
    e[0] = e[0].replacen(&id, &id.replace("256 AA.", "257 AA."), 1);
    let text = e.concat();
    let path = write_temp(dir.path(), "len.dat", &text);
    let items = collect(&path);
    assert_eq!(accessions(&items), ["ERR:Q6GZX4", "Q6GZX3", "Q6GZW2"]);
    let err = items[0].as_ref().unwrap_err();
    assert!(
        matches!(
            err.kind,
            ParseErrorKind::LengthMismatch {
                id_line: 257,
                sq_line: 256,
                residues: 256
            }
        ),
        "{err}"
    );
    assert_eq!(err.line, line_of(&text, "SQ"));
    assert_eq!(err.entry_name.as_deref(), Some("001R_FRG3G"));
}

#[test]
fn garbage_line_code_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = three_entries();
    e[2] = e[2].replacen("\nOS   ", "\nZZ   not a line type\nOS   ", 1);
    let text = e.concat();
    let path = write_temp(dir.path(), "garbage.dat", &text);
    let items = collect(&path);
    assert_eq!(accessions(&items), ["Q6GZX4", "Q6GZX3", "ERR:Q6GZW2"]);
    let err = items[2].as_ref().unwrap_err();
    assert!(
        matches!(&err.kind, ParseErrorKind::UnknownLineCode { code } if code == "ZZ   "),
        "{err}"
    );
    assert_eq!(err.line, line_of(&text, "ZZ"));

    // A line without the three spaces after its code, inside the first entry: the others still parse.
    let mut e = three_entries();
    e[0] = e[0].replacen("\nOS   ", "\nOSxx broken\nOS   ", 1);
    let text = e.concat();
    let path = write_temp(dir.path(), "garbage2.dat", &text);
    let items = collect(&path);
    assert_eq!(accessions(&items), ["ERR:Q6GZX4", "Q6GZX3", "Q6GZW2"]);
    assert_eq!(items[0].as_ref().unwrap_err().line, line_of(&text, "OSxx"));
}

#[test]
fn entry_truncated_at_end_of_stream() {
    let dir = tempfile::tempdir().unwrap();
    let e = three_entries();
    let last = e[2].strip_suffix("//\n").unwrap();
    let text = format!("{}{}{}", e[0], e[1], last);
    let path = write_temp(dir.path(), "trunc.dat", &text);
    let items = collect(&path);
    assert_eq!(accessions(&items), ["Q6GZX4", "Q6GZX3", "ERR:Q6GZW2"]);
    let err = items[2].as_ref().unwrap_err();
    assert!(matches!(err.kind, ParseErrorKind::Truncated(_)), "{err}");
    assert_eq!(
        err.line,
        text.lines().count() as u64,
        "the last line of the stream"
    );
    let report = open_path(&path)
        .unwrap()
        .for_each_entry(ErrorPolicy::Skip, |_| {})
        .unwrap();
    assert_eq!((report.parsed, report.skipped), (2, 1));
}

#[test]
fn entry_without_its_terminator_before_the_next_id_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = three_entries();
    let first = e[0].strip_suffix("//\n").unwrap();
    let text = format!("{}{}{}", first, e[1], e[2]);
    let path = write_temp(dir.path(), "missing.dat", &text);
    let items = collect(&path);
    // The broken entry is reported, and the next entry (which starts at the stray ID line) is not lost.
    assert_eq!(accessions(&items), ["ERR:Q6GZX4", "Q6GZX3", "Q6GZW2"]);
    let err = items[0].as_ref().unwrap_err();
    assert!(matches!(err.kind, ParseErrorKind::Truncated(_)), "{err}");
    assert_eq!(
        err.line,
        first.lines().count() as u64,
        "the last line of the truncated entry"
    );
    // Line numbers after the recovery are still right.
    let mut e2 = e.clone();
    e2[2] = e2[2].replacen("\nOS   ", "\nZZ   x\nOS   ", 1);
    let text = format!("{}{}{}", first, e2[1], e2[2]);
    let path = write_temp(dir.path(), "missing2.dat", &text);
    let items = collect(&path);
    assert_eq!(items[2].as_ref().unwrap_err().line, line_of(&text, "ZZ"));
}

#[test]
fn text_before_an_entry_is_reported_and_the_entry_kept() {
    let dir = tempfile::tempdir().unwrap();
    let e = three_entries();
    let text = format!("This is not UniProt.\nNeither is this.\n{}{}", e[0], e[1]);
    let path = write_temp(dir.path(), "header.dat", &text);
    let items = collect(&path);
    assert_eq!(accessions(&items), ["ERR:", "Q6GZX4", "Q6GZX3"]);
    let err = items[0].as_ref().unwrap_err();
    assert_eq!(err.line, 1);
    assert!(
        err.to_string().contains("does not start with an ID line"),
        "{err}"
    );
    // A stray `//` line alone is reported too, and the stream goes on.
    let text = format!("{}//\n{}", e[0], e[1]);
    let path = write_temp(dir.path(), "stray.dat", &text);
    let items = collect(&path);
    assert_eq!(accessions(&items), ["Q6GZX4", "ERR:", "Q6GZX3"]);
    let err = items[1].as_ref().unwrap_err();
    assert_eq!(err.line, e[0].lines().count() as u64 + 1);
    assert!(
        err.to_string().contains("does not start with an ID line"),
        "{err}"
    );
}

#[test]
fn blank_lines_crlf_and_no_final_newline_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let e = three_entries();
    let text = format!("\n\n{}\n{}  \n{}", e[0], e[1], e[2].trim_end());
    let path = write_temp(dir.path(), "loose.dat", &text);
    let items = collect(&path);
    assert_eq!(accessions(&items), ["Q6GZX4", "Q6GZX3", "Q6GZW2"]);
    // The MD5 of the entry does not depend on a missing final newline.
    let plain = parse_entry(e[2].as_bytes()).unwrap();
    assert_eq!(items[2].as_ref().unwrap().content_md5, plain.content_md5);

    let crlf = e.concat().replace('\n', "\r\n");
    let path = write_temp(dir.path(), "crlf.dat", &crlf);
    let items = collect(&path);
    assert_eq!(accessions(&items), ["Q6GZX4", "Q6GZX3", "Q6GZW2"]);
    assert_eq!(
        items[0].as_ref().unwrap().sequence,
        plain_entry(&e[0]).sequence
    );
}

fn plain_entry(text: &str) -> Entry {
    parse_entry(text.as_bytes()).unwrap()
}

/// A reader that hands out at most a few bytes per call, to cross every buffer boundary.
struct Trickle<R> {
    inner: R,
    step: usize,
    n: usize,
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.n += 1;
        let k = 1 + (self.n * 7 + self.step) % 13;
        let k = k.min(buf.len());
        self.inner.read(&mut buf[..k])
    }
}

#[test]
fn tiny_reads_give_the_same_entries() {
    let path = fixture("biopython/multi_ex.txt");
    let normal: Vec<Entry> = open_path(&path).unwrap().map(Result::unwrap).collect();
    let file = std::fs::File::open(&path).unwrap();
    let trickled: Vec<Entry> = EntryReader::new(Trickle {
        inner: file,
        step: 3,
        n: 0,
    })
    .map(Result::unwrap)
    .collect();
    assert_eq!(normal.len(), 8);
    assert_eq!(normal, trickled);
}

#[test]
fn gzip_input_parses_identically_to_plain() {
    let dir = tempfile::tempdir().unwrap();
    let plain_path = fixture("debian_libswiss-perl/SWISS100.dat");
    let bytes = std::fs::read(&plain_path).unwrap();
    // Two gzip members, as `cat a.gz b.gz` or a parallel compressor writes them.
    let gz_path = dir.path().join("SWISS100.dat.gz");
    let mut out = std::fs::File::create(&gz_path).unwrap();
    let half = bytes.len() / 2;
    for part in [&bytes[..half], &bytes[half..]] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(part).unwrap();
        out.write_all(&enc.finish().unwrap()).unwrap();
    }
    drop(out);
    let plain: Vec<Entry> = open_path(&plain_path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut gz_reader = open_path(&gz_path).unwrap();
    let gz: Vec<Entry> = gz_reader.by_ref().map(Result::unwrap).collect();
    assert_eq!(plain.len(), 100);
    assert_eq!(plain, gz);
    assert_eq!(gz_reader.bytes_consumed(), bytes.len() as u64);
}

#[test]
fn corrupt_gzip_is_a_read_error_and_the_reader_stops() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("debian_libswiss-perl/SWISS100.dat")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes).unwrap();
    let gz = enc.finish().unwrap();
    let path = dir.path().join("cut.dat.gz");
    std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
    let mut reader = open_path(&path).unwrap();
    let items: Vec<_> = reader.by_ref().collect();
    let last = items.last().unwrap().as_ref().unwrap_err();
    assert!(last.is_io(), "{last}");
    assert_eq!(last.file.as_deref(), Some(path.as_path()));
    assert!(items[..items.len() - 1].iter().all(Result::is_ok));
    assert!(items.len() > 10);
    assert!(reader.next().is_none());
    // Read errors are returned under Skip too.
    let err = open_path(&path)
        .unwrap()
        .for_each_entry(ErrorPolicy::Skip, |_| {})
        .unwrap_err();
    assert!(err.is_io());
}

#[test]
fn missing_file_names_the_path() {
    let err = match open_path("/nonexistent/uniprot_sprot.dat.gz") {
        Err(e) => e,
        Ok(_) => panic!("opened a missing file"),
    };
    assert!(err.is_io());
    assert!(
        err.to_string()
            .contains("/nonexistent/uniprot_sprot.dat.gz"),
        "{err}"
    );
}

#[test]
fn parse_entry_reports_lines_within_the_entry() {
    let e = three_entries();
    let bad = e[0].replacen("PE   4: Predicted;", "PE   9: Unheard of;", 1);
    let err = parse_entry(bad.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err.kind,
            ParseErrorKind::Malformed {
                line_type: "PE",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.line, line_of(&bad, "PE"));
    assert_eq!(err.accession.as_deref(), Some("Q6GZX4"));
    assert!(err.file.is_none());
    let bad = e[0].replacen("DT   19-JUL-2004", "DT   19-XYZ-2004", 1);
    let err = parse_entry(bad.as_bytes()).unwrap_err();
    assert_eq!(err.line, line_of(&bad, "DT   19-XYZ"));
    // A residue that is not a letter.
    let bad = e[0].replacen("MAFSAEDVLK", "MAFSAE1VLK", 1);
    let err = parse_entry(bad.as_bytes()).unwrap_err();
    assert_eq!(err.line, line_of(&bad, "     MAFSAE1"));
}
