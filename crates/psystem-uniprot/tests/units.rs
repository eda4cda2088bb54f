//! Work units: `plan_units` cuts a flat file at entry boundaries, and each unit read on its own (skip `start` bytes,
//! `Read::take(end - start)`, `EntryReader::with_position(start, first_line)`) gives exactly the entries, errors,
//! line numbers and byte offsets of a reader over the whole file.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use common::flat_files;
use psystem_uniprot::{plan_units, Entry, EntryReader, ParseError, UnitRange};

/// What a reader yields, reduced to comparable values: entries whole, errors as (line, accession, entry name,
/// message).
#[derive(Debug, PartialEq)]
enum Item {
    Entry(Box<Entry>),
    Error(u64, Option<String>, Option<String>, String),
}

fn item(r: Result<Entry, ParseError>) -> Item {
    match r {
        Ok(e) => Item::Entry(Box::new(e)),
        Err(e) => Item::Error(e.line, e.accession, e.entry_name, e.kind.to_string()),
    }
}

fn whole(path: &Path) -> (Vec<Item>, u64, u64) {
    let mut reader = EntryReader::new(std::fs::File::open(path).unwrap());
    let items: Vec<Item> = reader.by_ref().map(item).collect();
    (items, reader.bytes_consumed(), reader.next_line())
}

/// Read one unit on its own, the way a worker does: open, skip `start` bytes, take the unit's bytes.
fn read_unit(path: &Path, unit: &UnitRange) -> (Vec<Item>, u64, u64) {
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(unit.start)).unwrap();
    let mut reader =
        EntryReader::new(file.take(unit.len())).with_position(unit.start, unit.first_line);
    let items: Vec<Item> = reader.by_ref().map(item).collect();
    (items, reader.bytes_consumed(), reader.next_line())
}

/// Units cover `total` bytes exactly, in order.
fn assert_covers(units: &[UnitRange], total: u64, target: u64, what: &str) {
    if total == 0 {
        assert!(units.is_empty(), "{what}");
        return;
    }
    assert_eq!(units[0].start, 0, "{what}");
    assert_eq!(units[0].first_line, 1, "{what}");
    assert_eq!(units.last().unwrap().end, total, "{what}");
    for w in units.windows(2) {
        assert_eq!(w[0].end, w[1].start, "{what}: gap or overlap");
        assert!(
            w[0].len() >= target,
            "{what}: unit {:?} below the target {target}",
            w[0]
        );
    }
    assert!(units.iter().all(|u| !u.is_empty()), "{what}: empty unit");
}

/// Plan `path` with several unit sizes and check that the units read alone give the whole file's items.
fn check_file(path: &Path) -> usize {
    let text = std::fs::read(path).unwrap();
    let total = text.len() as u64;
    let (items, consumed, _) = whole(path);
    let mut checked_units = 0;
    for target in [0, 5_000, 64 * 1024, u64::MAX] {
        let what = format!("{} target {target}", path.display());
        let units = plan_units(std::fs::File::open(path).unwrap(), target).unwrap();
        assert_covers(&units, total, target, &what);
        // first_line is the line number of `start`.
        for u in &units {
            let lines_before = text[..u.start as usize]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            assert_eq!(u.first_line, lines_before + 1, "{what}: {u:?}");
        }
        let mut from_units = Vec::new();
        for (i, u) in units.iter().enumerate() {
            let (unit_items, unit_consumed, unit_next_line) = read_unit(path, u);
            // Positions are whole-file positions: a unit that ends at an entry boundary is consumed to its end,
            // and the next line is the first line of the next unit.
            if let Some(next) = units.get(i + 1) {
                assert_eq!(unit_consumed, u.end, "{what}: {u:?}");
                assert_eq!(unit_next_line, next.first_line, "{what}: {u:?}");
            }
            // A unit holds whole entries: the reader over it stops at its end (blank lines aside).
            assert!(unit_consumed <= u.end, "{what}: {u:?} read {unit_consumed}");
            assert!(
                text[unit_consumed as usize..u.end as usize]
                    .iter()
                    .all(u8::is_ascii_whitespace),
                "{what}: {u:?} stopped at {unit_consumed}"
            );
            assert!(
                unit_items.len() as u64 >= u.entries.min(1),
                "{what}: {u:?} gave no item"
            );
            from_units.extend(unit_items);
        }
        assert_eq!(from_units.len(), items.len(), "{what}: item count");
        for (i, (a, b)) in from_units.iter().zip(&items).enumerate() {
            assert_eq!(a, b, "{what}: item {i}");
        }
        let last = units.last().map_or(0, |u| u.end);
        assert!(consumed <= last);
        checked_units += units.len();
    }
    checked_units
}

fn all_fixtures_concatenated(dir: &Path) -> PathBuf {
    let path = dir.join("all.dat");
    let mut out = std::fs::File::create(&path).unwrap();
    for f in flat_files() {
        let mut t = std::fs::read(&f).unwrap();
        if !t.ends_with(b"\n") {
            t.push(b'\n');
        }
        out.write_all(&t).unwrap();
        // Blank lines between files, as some concatenated dumps have.
        out.write_all(b"\n").unwrap();
    }
    path
}

#[test]
fn units_of_every_fixture_read_alone_give_the_whole_files_entries() {
    let files = flat_files();
    assert!(files.len() >= 50);
    let mut units = 0;
    for f in &files {
        units += check_file(f);
    }
    assert!(units > files.len() * 6, "{units} units");
}

#[test]
fn units_of_all_fixtures_concatenated_give_the_same_entries_errors_and_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = all_fixtures_concatenated(dir.path());
    check_file(&path);
    // The concatenation holds the stub file's 13 rejected entries: errors come out of units with the whole file's
    // line numbers (compared in check_file); make sure there are such errors and entries to compare.
    let (items, _, _) = whole(&path);
    let errors = items
        .iter()
        .filter(|i| matches!(i, Item::Error(..)))
        .count();
    let entries = items.len() - errors;
    assert_eq!(errors, 13);
    assert!(entries > 180, "{entries}");
    // Entry counts of the units add up to the number of `//` lines.
    let units = plan_units(std::fs::File::open(&path).unwrap(), 100_000).unwrap();
    let terminators = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("//"))
        .count() as u64;
    assert_eq!(units.iter().map(|u| u.entries).sum::<u64>(), terminators);
}

/// A file with a CRC64 error, an entry that lost its `//` (the reader resumes at the next ID line), garbage line
/// codes and a truncated last entry: read through units of one entry each, every error has the same line,
/// accession and message as when reading the whole file.
#[test]
fn errors_in_units_report_whole_file_lines() {
    let base = common::fixtures_dir().join("ebi-uniprot_uniprot-store");
    let mut entries: Vec<String> = [
        "integration-test__it_uniprot_Q6GZX4.29.dat",
        "integration-test__it_uniprot_Q6GZX3.29.dat",
        "integration-test__it_uniprot_Q6GZW2.21.dat",
    ]
    .iter()
    .map(|p| {
        let mut t = std::fs::read_to_string(base.join(p)).unwrap();
        if !t.ends_with('\n') {
            t.push('\n');
        }
        t
    })
    .collect();
    // Wrong CRC64 in entry 2.
    let sq = entries[1]
        .lines()
        .find(|l| l.starts_with("SQ"))
        .unwrap()
        .to_owned();
    let crc = sq.split_whitespace().nth(6).unwrap().to_owned();
    entries[1] = entries[1].replace(&sq, &sq.replace(&crc, "0000000000000000"));
    // Entry 3 loses its `//`; a garbage line in a copy of entry 1; a copy of entry 2 truncated at the end.
    let no_terminator = entries[2].trim_end().strip_suffix("//").unwrap().to_owned();
    let garbage = entries[0].replacen("\nOS   ", "\nZZ garbage\nOS   ", 1);
    let truncated = entries[1][..entries[1].len() / 2].to_owned();
    let text = format!(
        "\n\n{}{}\n{}{}{}\r\n{}{}",
        entries[0], entries[1], no_terminator, entries[0], garbage, entries[2], truncated
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("errors.dat");
    std::fs::write(&path, &text).unwrap();
    let (items, _, _) = whole(&path);
    let errors: Vec<&Item> = items
        .iter()
        .filter(|i| matches!(i, Item::Error(..)))
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    check_file(&path);
    // One unit per entry boundary: the entry without `//` shares a unit with the entry after it.
    let units = plan_units(std::fs::File::open(&path).unwrap(), 0).unwrap();
    assert_eq!(units.len(), 6, "{units:?}");
    assert_eq!(units.iter().map(|u| u.entries).sum::<u64>(), 6);
    assert_eq!(units[2].entries, 1);
    let (unit_items, _, _) = read_unit(&path, &units[2]);
    assert_eq!(unit_items.len(), 2, "truncated entry + the one after it");
}

/// A reader that hands out 1 to 13 bytes per call, so that `\n//` and `//` lines straddle every read.
struct Trickle<R> {
    inner: R,
    n: usize,
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.n += 1;
        let k = (1 + (self.n * 7) % 13).min(buf.len());
        self.inner.read(&mut buf[..k])
    }
}

#[test]
fn tiny_reads_and_gzip_give_the_same_plan() {
    let dir = tempfile::tempdir().unwrap();
    let path = all_fixtures_concatenated(dir.path());
    let text = std::fs::read(&path).unwrap();
    for target in [0, 3_000, 200_000] {
        let plan = plan_units(&text[..], target).unwrap();
        let trickled = plan_units(
            Trickle {
                inner: &text[..],
                n: 0,
            },
            target,
        )
        .unwrap();
        assert_eq!(plan, trickled, "target {target}");
    }
    // Gzip: the caller decompresses; offsets are those of the decompressed stream.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(
        plan_units(flate2::read::MultiGzDecoder::new(&gz[..]), 50_000).unwrap(),
        plan_units(&text[..], 50_000).unwrap()
    );
}

/// A stream that fails after some bytes.
struct Failing {
    data: Vec<u8>,
    at: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.data.len() {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.data.len() - self.at).min(1000);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn read_errors_stop_the_plan_and_say_where() {
    let data = b"ID   A\n//\nID   B\nAC   x\n".repeat(500);
    let err = plan_units(Failing { data, at: 0 }, 100).unwrap_err();
    assert!(err.is_io(), "{err}");
    assert!(err.to_string().contains("disk on fire"), "{err}");
    // 500 entries of 4 lines were read before the failure: the error names the line the scan reached.
    assert!((1999..=2001).contains(&err.line), "{err}");
}

#[test]
fn unit_range_serializes_with_serde() {
    let u = UnitRange {
        start: 10,
        end: 20,
        entries: 1,
        first_line: 3,
    };
    let json = serde_json::to_string(&u).unwrap();
    assert_eq!(json, r#"{"start":10,"end":20,"entries":1,"first_line":3}"#);
    assert_eq!(serde_json::from_str::<UnitRange>(&json).unwrap(), u);
}
