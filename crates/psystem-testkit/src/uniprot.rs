//! A local UniProtKB release mirror built from the real fixture entries in `../shared/fixtures/uniprot`.
//!
//! [`UniprotMirror::build`] lays releases out as the UniProt FTP site does (facts: `shared/fixtures/README.md`,
//! uniprot section): the newest release under `current_release/knowledgebase/complete/`, the others under
//! `previous_releases/release-YYYY_MM/knowledgebase/complete/` (the layout a mirror may hold) or, with
//! [`PreviousLayout::Tarballs`], `previous_releases/release-YYYY_MM/knowledgebase/` with the tarballs the real site
//! holds there (`uniprot_sprot-only<YYYY_MM>.tar.gz`, `knowledgebase<YYYY_MM>.tar.gz`; real POSIX ustar archives,
//! gzip-compressed). Each `complete/` folder holds:
//! - `uniprot_sprot.dat.gz`: gzip of the release's reviewed entries (flat-file text, each ending in `//`);
//! - `uniprot_trembl.dat.gz`: the same for the unreviewed entries;
//! - `uniprot_sprot.fasta.gz` (unless [`MirrorRelease::fasta`] is off): the reviewed entries as UniProt FASTA
//!   (`>sp|ACC|NAME Full name OS=… OX=… [GN=…] PE=n SV=n`, 60 residues a line);
//! - `reldate.txt`: `UniProt Knowledgebase Release YYYY_MM consists of:` / `UniProtKB/Swiss-Prot Release YYYY_MM
//!   of DD-Mon-YYYY` / `UniProtKB/TrEMBL Release YYYY_MM of DD-Mon-YYYY`;
//! - `RELEASE.metalink`: Metalink 3.0 (as UniProt publishes it) or RFC 5854 ([`MetalinkFormat`]) with the real size
//!   and MD5 of every other file of the folder; [`MirrorRelease::corrupt_md5_of`] writes a wrong MD5 for one file.
//!
//! The entries ([`fixture_entries`]) are SWISS100.dat then every `ebi-uniprot_uniprot-store` file (sorted by name)
//! except UniProt's stub file that is not a valid flat file, each primary accession and entry name once, isoform
//! entries (`P12345-2`) left out. [`MirrorRelease::successor`] makes the next release: a few entries changed (a
//! `DE` line edited), one removed, one added — for tests of a second load that rewrites only what changed.
//! Serve the tree with [`UniprotMirror::serve`] (the [`crate::mirror::MirrorServer`]: HTTP with Range and Apache
//! index pages).

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::mirror::MirrorServer;

/// The current release's folder under the mirror root.
pub const CURRENT_ROOT: &str = "current_release/knowledgebase/complete";

/// A UniProt test file in `ebi-uniprot_uniprot-store` that is not a valid flat file (entries with only ID, AC and
/// OX lines); left out of the mirror.
pub const STUB_FILE: &str = "spark-indexer__2020_02_uniprotkb_uniprotkk-for-taxonomy.dat";

/// Entries of [`fixture_entries`] that [`MirrorRelease::from_fixtures`] leaves out, for
/// [`MirrorRelease::successor`] to add: the last this many reviewed entries.
pub const HELD_BACK: usize = 1;

/// The UniProt fixture folder `shared/fixtures/uniprot`: `$PSYSTEM_FIXTURES/uniprot` when that variable is set,
/// else found beside the repository as [`crate::opentargets::fixture_dir`] finds the Open Targets one.
pub fn fixture_dir() -> PathBuf {
    crate::opentargets::fixture_dir()
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("uniprot"))
        .unwrap_or_else(|| PathBuf::from("uniprot"))
}

/// One UniProtKB flat-file entry: its text and the names tests assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatEntry {
    /// The primary accession: the first accession of the first `AC` line (`P12345`).
    pub accession: String,
    /// The entry name: the first word of the `ID` line (`INSR_HUMAN`).
    pub entry_name: String,
    /// `Reviewed` (Swiss-Prot) or `Unreviewed` (TrEMBL) on the `ID` line.
    pub reviewed: bool,
    /// The entry's lines, each ending in `\n`, the last one `//`.
    pub text: String,
}

impl FlatEntry {
    /// Reads the names from an entry's text; `None` when it has no `ID` or `AC` line.
    pub fn from_text(text: String) -> Option<FlatEntry> {
        let id = text.lines().find_map(|l| l.strip_prefix("ID   "))?;
        let entry_name = id.split_whitespace().next()?.to_string();
        let reviewed = id.contains(" Reviewed;");
        let ac = text.lines().find_map(|l| l.strip_prefix("AC   "))?;
        let accession = ac.split(';').next()?.trim().to_string();
        if accession.is_empty() {
            return None;
        }
        Some(FlatEntry {
            accession,
            entry_name,
            reviewed,
            text,
        })
    }

    /// The sequence: the lines after `SQ`, without spaces.
    pub fn sequence(&self) -> String {
        let mut seq = String::new();
        let mut inside = false;
        for line in self.text.lines() {
            if line.starts_with("SQ   ") {
                inside = true;
            } else if line == "//" {
                break;
            } else if inside {
                seq.extend(line.chars().filter(|c| !c.is_whitespace()));
            }
        }
        seq
    }

    /// The value of the first `XX   ` line's `key=` field, up to `;` (or the line's end).
    fn field(&self, code: &str, key: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            let rest = l.strip_prefix(code)?.strip_prefix("   ")?;
            let at = rest.find(key)?;
            let v = &rest[at + key.len()..];
            let v = v.split(';').next()?;
            let v = v.split(" {").next()?; // evidence tags
            Some(v.trim().to_string())
        })
    }

    /// The entry as UniProt FASTA: `>sp|ACC|NAME Full name OS=organism OX=taxid [GN=gene] PE=n SV=n`, then the
    /// sequence, 60 residues a line (`tr|` for unreviewed entries).
    pub fn fasta(&self) -> String {
        let db = if self.reviewed { "sp" } else { "tr" };
        let full = self
            .field("DE", "Full=")
            .unwrap_or_else(|| "Uncharacterized protein".into());
        let organism: String = self
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("OS   "))
            .collect::<Vec<_>>()
            .join(" ");
        let organism = organism.trim().trim_end_matches('.').to_string();
        let taxid = self.field("OX", "NCBI_TaxID=").unwrap_or_default();
        let gene = self
            .field("GN", "Name=")
            .map(|g| format!(" GN={g}"))
            .unwrap_or_default();
        let pe = self
            .text
            .lines()
            .find_map(|l| l.strip_prefix("PE   "))
            .and_then(|l| l.split(':').next())
            .unwrap_or("5")
            .trim()
            .to_string();
        let sv = self
            .text
            .lines()
            .find_map(|l| {
                let at = l.find("sequence version ")?;
                let v: String = l[at + 17..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                (!v.is_empty()).then_some(v)
            })
            .unwrap_or_else(|| "1".into());
        let mut out = format!(
            ">{db}|{}|{} {full} OS={organism} OX={taxid}{gene} PE={pe} SV={sv}\n",
            self.accession, self.entry_name
        );
        let seq = self.sequence();
        for chunk in seq.as_bytes().chunks(60) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// This entry with its first `DE … Full=` name prefixed by `Edited `: a changed entry whose sequence, CRC64
    /// and every other line stay the same.
    pub fn with_edited_description(&self) -> FlatEntry {
        let mut done = false;
        let text = self
            .text
            .lines()
            .map(|l| {
                if !done && l.starts_with("DE   ") && l.contains("Full=") {
                    done = true;
                    format!("{}\n", l.replacen("Full=", "Full=Edited ", 1))
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        FlatEntry {
            text,
            ..self.clone()
        }
    }
}

/// Splits flat-file text into entries at `//` lines (a trailing part without `//` is dropped).
pub fn split_entries(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line == "//" {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// Every fixture entry the mirror uses, in a fixed order: `debian_libswiss-perl/SWISS100.dat`, then the files of
/// `ebi-uniprot_uniprot-store` sorted by name except [`STUB_FILE`]; an accession or entry name seen before, and
/// isoform entries (accession with `-`), are skipped.
///
/// Errors: the fixture folder cannot be read ([`fixture_dir`]).
pub fn fixture_entries() -> io::Result<Vec<FlatEntry>> {
    let dir = fixture_dir();
    let mut files = vec![dir.join("debian_libswiss-perl/SWISS100.dat")];
    let mut store: Vec<PathBuf> = std::fs::read_dir(dir.join("ebi-uniprot_uniprot-store"))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    store.retain(|p| p.file_name().is_some_and(|n| n != STUB_FILE));
    store.sort();
    files.extend(store);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
        for text in split_entries(&String::from_utf8_lossy(&bytes)) {
            let Some(e) = FlatEntry::from_text(text) else {
                continue;
            };
            if e.accession.contains('-')
                || !seen.insert(e.accession.clone())
                || !seen.insert(format!("ID {}", e.entry_name))
            {
                continue;
            }
            out.push(e);
        }
    }
    Ok(out)
}

/// The checksum manifest written into a release folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetalinkFormat {
    /// Metalink 3.0 (`xmlns="http://www.metalinker.org/"`), as UniProt publishes `RELEASE.metalink`.
    Metalink3,
    /// RFC 5854 Metalink 4 (`xmlns="urn:ietf:params:xml:ns:metalink"`).
    Rfc5854,
}

/// How a previous (not current) release is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousLayout {
    /// `previous_releases/release-YYYY_MM/knowledgebase/complete/` with the same files as the current release.
    Complete,
    /// `previous_releases/release-YYYY_MM/knowledgebase/` with the tarballs only, as on the real site.
    Tarballs,
}

/// What changed from one release to its [`MirrorRelease::successor`], by primary accession.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseChanges {
    /// Entries whose `DE` line was edited.
    pub changed: Vec<String>,
    /// Entries of the first release absent from the second.
    pub removed: Vec<String>,
    /// Entries of the second release absent from the first.
    pub added: Vec<String>,
}

/// One release to write into the mirror.
#[derive(Debug, Clone)]
pub struct MirrorRelease {
    /// The release name, `YYYY_MM`.
    pub name: String,
    /// The Swiss-Prot and TrEMBL date in `reldate.txt`, `DD-Mon-YYYY` (default: the 15th of the release's month).
    pub date: String,
    /// Reviewed entries (`uniprot_sprot.dat.gz`), in file order.
    pub sprot: Vec<FlatEntry>,
    /// Unreviewed entries (`uniprot_trembl.dat.gz`), in file order.
    pub trembl: Vec<FlatEntry>,
    /// Write `uniprot_sprot.fasta.gz` (default true).
    pub fasta: bool,
    /// The manifest format; `None` writes no `RELEASE.metalink` (default Metalink 3.0).
    pub metalink: Option<MetalinkFormat>,
    /// A file name (`uniprot_sprot.dat.gz`) whose MD5 the metalink gives wrong.
    pub corrupt_md5_of: Option<String>,
    /// The layout when this is not the current (newest) release (default [`PreviousLayout::Complete`]).
    pub layout: PreviousLayout,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl MirrorRelease {
    /// A release of every [`fixture_entries`] entry but the last [`HELD_BACK`] reviewed ones: reviewed entries
    /// into `sprot`, unreviewed into `trembl`; Metalink 3.0, FASTA, complete layout.
    ///
    /// Errors: the fixtures cannot be read; `name` is not `YYYY_MM` ([`io::ErrorKind::InvalidInput`]).
    pub fn from_fixtures(name: &str) -> io::Result<MirrorRelease> {
        let entries = fixture_entries()?;
        let (mut sprot, trembl): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.reviewed);
        sprot.truncate(sprot.len().saturating_sub(HELD_BACK));
        MirrorRelease::with_entries(name, sprot, trembl)
    }

    /// A release of the given entries, with the defaults of [`MirrorRelease::from_fixtures`].
    ///
    /// Errors: `name` is not `YYYY_MM` ([`io::ErrorKind::InvalidInput`]).
    pub fn with_entries(
        name: &str,
        sprot: Vec<FlatEntry>,
        trembl: Vec<FlatEntry>,
    ) -> io::Result<MirrorRelease> {
        let (year, month) = name
            .split_once('_')
            .and_then(|(y, m)| Some((y.parse::<u32>().ok()?, m.parse::<usize>().ok()?)))
            .filter(|(_, m)| (1..=12).contains(m))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("release name {name:?} is not YYYY_MM"),
                )
            })?;
        Ok(MirrorRelease {
            name: name.to_string(),
            date: format!("15-{}-{year}", MONTHS[month - 1]),
            sprot,
            trembl,
            fasta: true,
            metalink: Some(MetalinkFormat::Metalink3),
            corrupt_md5_of: None,
            layout: PreviousLayout::Complete,
        })
    }

    /// The next release `name`: this one's `sprot` with the first three entries' `DE` line edited
    /// ([`FlatEntry::with_edited_description`]), the last entry removed and the first fixture reviewed entry this
    /// release lacks (the held-back one, for a release from [`MirrorRelease::from_fixtures`]) added at the end;
    /// `trembl` and the options unchanged.
    ///
    /// Errors: as [`MirrorRelease::with_entries`]; the fixtures cannot be read.
    pub fn successor(&self, name: &str) -> io::Result<(MirrorRelease, ReleaseChanges)> {
        let mut next = MirrorRelease::with_entries(name, Vec::new(), self.trembl.clone())?;
        next.fasta = self.fasta;
        next.metalink = self.metalink;
        next.layout = self.layout;
        let mut changes = ReleaseChanges::default();
        let mut sprot = self.sprot.clone();
        if let Some(last) = sprot.pop() {
            changes.removed.push(last.accession);
        }
        for e in sprot.iter_mut().take(3) {
            *e = e.with_edited_description();
            changes.changed.push(e.accession.clone());
        }
        let have: HashSet<&str> = self.sprot.iter().map(|e| e.accession.as_str()).collect();
        if let Some(new) = fixture_entries()?
            .into_iter()
            .find(|e| e.reviewed && !have.contains(e.accession.as_str()))
        {
            changes.added.push(new.accession.clone());
            sprot.push(new);
        }
        next.sprot = sprot;
        Ok((next, changes))
    }

    /// `reldate.txt` of this release.
    pub fn reldate(&self) -> String {
        format!(
            "UniProt Knowledgebase Release {n} consists of:\nUniProtKB/Swiss-Prot Release {n} of {d}\nUniProtKB/TrEMBL Release {n} of {d}\n",
            n = self.name,
            d = self.date
        )
    }
}

/// A mirror tree of UniProt releases on disk.
#[derive(Debug, Clone)]
pub struct UniprotMirror {
    root: PathBuf,
    releases: Vec<MirrorRelease>,
    current: String,
}

impl UniprotMirror {
    /// Writes `releases` under `dir`: the newest (by name) as `current_release/knowledgebase/complete/`, the others
    /// under `previous_releases/release-YYYY_MM/knowledgebase/` in their [`PreviousLayout`]. Files are written
    /// fresh (a second build over the same folder replaces them).
    ///
    /// Errors: file system errors; no release, or two of one name ([`io::ErrorKind::InvalidInput`]).
    pub fn build(dir: &Path, releases: &[MirrorRelease]) -> io::Result<UniprotMirror> {
        let current = releases
            .iter()
            .map(|r| r.name.clone())
            .max()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no release to write"))?;
        let names: HashSet<&str> = releases.iter().map(|r| r.name.as_str()).collect();
        if names.len() != releases.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "two releases of one name",
            ));
        }
        let mirror = UniprotMirror {
            root: dir.to_path_buf(),
            releases: releases.to_vec(),
            current,
        };
        for r in releases {
            let folder = mirror.release_dir(&r.name);
            std::fs::create_dir_all(&folder)?;
            if r.name != mirror.current && r.layout == PreviousLayout::Tarballs {
                write_tarballs(&folder, r)?;
            } else {
                write_complete(&folder, r)?;
            }
        }
        Ok(mirror)
    }

    /// The mirror's root (the folder holding `current_release/` and `previous_releases/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The current (newest) release's name.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// The release named `name`, as written.
    pub fn release(&self, name: &str) -> Option<&MirrorRelease> {
        self.releases.iter().find(|r| r.name == name)
    }

    /// The folder holding release `name`'s files: `current_release/knowledgebase/complete/`,
    /// `previous_releases/release-NAME/knowledgebase/complete/`, or `…/knowledgebase/` for tarballs.
    pub fn release_dir(&self, name: &str) -> PathBuf {
        if name == self.current {
            return self.root.join(CURRENT_ROOT);
        }
        let kb = self
            .root
            .join(format!("previous_releases/release-{name}/knowledgebase"));
        match self.release(name).map(|r| r.layout) {
            Some(PreviousLayout::Tarballs) => kb,
            _ => kb.join("complete"),
        }
    }

    /// The reviewed entries (`uniprot_sprot.dat.gz`) of release `name`, in file order; empty for an unknown name.
    pub fn entries(&self, name: &str) -> &[FlatEntry] {
        self.release(name)
            .map(|r| r.sprot.as_slice())
            .unwrap_or(&[])
    }

    /// The primary accessions of [`UniprotMirror::entries`], in file order.
    pub fn accessions(&self, name: &str) -> Vec<String> {
        self.entries(name)
            .iter()
            .map(|e| e.accession.clone())
            .collect()
    }

    /// Starts the HTTP mirror server ([`MirrorServer`]) on this tree; its `base_url()` is the source URL.
    pub async fn serve(&self) -> io::Result<MirrorServer> {
        MirrorServer::start(self.root.clone()).await
    }
}

/// gzip (default level, no file name, mtime 0) of `bytes`.
pub fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

/// The lower-case hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

/// The files of a `complete/` folder, in the order written: (name, bytes).
fn complete_files(r: &MirrorRelease) -> io::Result<Vec<(String, Vec<u8>)>> {
    let sprot: String = r.sprot.iter().map(|e| e.text.as_str()).collect();
    let trembl: String = r.trembl.iter().map(|e| e.text.as_str()).collect();
    let mut files = vec![
        ("uniprot_sprot.dat.gz".to_string(), gzip(sprot.as_bytes())?),
        (
            "uniprot_trembl.dat.gz".to_string(),
            gzip(trembl.as_bytes())?,
        ),
    ];
    if r.fasta {
        let fasta: String = r.sprot.iter().map(FlatEntry::fasta).collect();
        files.push(("uniprot_sprot.fasta.gz".into(), gzip(fasta.as_bytes())?));
    }
    files.push(("reldate.txt".into(), r.reldate().into_bytes()));
    Ok(files)
}

fn write_complete(folder: &Path, r: &MirrorRelease) -> io::Result<()> {
    let files = complete_files(r)?;
    write_folder(folder, r, &files, "current_release/knowledgebase/complete/")
}

fn write_tarballs(folder: &Path, r: &MirrorRelease) -> io::Result<()> {
    let files = complete_files(r)?;
    let pick = |names: &[&str]| -> Vec<(String, Vec<u8>)> {
        files
            .iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .cloned()
            .collect()
    };
    let sprot_only = pick(&[
        "uniprot_sprot.dat.gz",
        "uniprot_sprot.fasta.gz",
        "reldate.txt",
    ]);
    let tarballs = vec![
        (
            format!("uniprot_sprot-only{}.tar.gz", r.name),
            gzip(&ustar(&sprot_only))?,
        ),
        (
            format!("knowledgebase{}.tar.gz", r.name),
            gzip(&ustar(&files))?,
        ),
    ];
    write_folder(
        folder,
        r,
        &tarballs,
        &format!("previous_releases/release-{}/knowledgebase/", r.name),
    )
}

/// Writes `files` and, per `r.metalink`, `RELEASE.metalink` over them (`path` is the folder's path on the site,
/// for the metalink's URLs).
fn write_folder(
    folder: &Path,
    r: &MirrorRelease,
    files: &[(String, Vec<u8>)],
    path: &str,
) -> io::Result<()> {
    for (name, bytes) in files {
        std::fs::write(folder.join(name), bytes)?;
    }
    let metalink = folder.join("RELEASE.metalink");
    let Some(format) = r.metalink else {
        let _ = std::fs::remove_file(&metalink);
        return Ok(());
    };
    let mut xml = match format {
        MetalinkFormat::Metalink3 => format!(
            "<metalink xmlns=\"http://www.metalinker.org/\" version=\"3.0\">\n  <publisher>\n    <name>UniProt Consortium</name>\n    <url>http://www.uniprot.org/</url>\n  </publisher>\n  <description>UniProt</description>\n  <version>{}</version>\n  <files>\n",
            r.name
        ),
        MetalinkFormat::Rfc5854 => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n  <generator>psystem-testkit</generator>\n  <!-- UniProt release {} -->\n",
            r.name
        ),
    };
    for (name, bytes) in files {
        let mut md5 = md5_hex(bytes);
        if r.corrupt_md5_of.as_deref() == Some(name.as_str()) {
            md5 = corrupt(&md5);
        }
        let url = format!("ftp://ftp.uniprot.org/pub/databases/uniprot/{path}{name}");
        match format {
            MetalinkFormat::Metalink3 => xml.push_str(&format!(
                "    <file name=\"{name}\">\n      <size>{}</size>\n      <verification>\n        <hash type=\"md5\">{md5}</hash>\n      </verification>\n      <resources>\n        <url type=\"ftp\" location=\"us\" preference=\"100\">{url}</url>\n      </resources>\n    </file>\n",
                bytes.len()
            )),
            MetalinkFormat::Rfc5854 => xml.push_str(&format!(
                "  <file name=\"{name}\">\n    <size>{}</size>\n    <hash type=\"md5\">{md5}</hash>\n    <url location=\"us\" priority=\"1\">{url}</url>\n  </file>\n",
                bytes.len()
            )),
        }
    }
    xml.push_str(match format {
        MetalinkFormat::Metalink3 => "  </files>\n</metalink>\n",
        MetalinkFormat::Rfc5854 => "</metalink>\n",
    });
    std::fs::write(metalink, xml)
}

/// Another valid hex digest of the same length: each digit replaced by the next (`f` → `0`).
fn corrupt(md5: &str) -> String {
    md5.chars()
        .map(|c| {
            let v = c.to_digit(16).unwrap_or(0);
            std::char::from_digit((v + 1) % 16, 16).unwrap_or('0')
        })
        .collect()
}

/// A POSIX ustar archive (IEEE Std 1003.1, `pax` "ustar Interchange Format") of regular files, mode 0644,
/// mtime 0: a 512-byte header per file, the bytes padded to 512, two zero blocks at the end.
fn ustar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], at: usize, s: &[u8]| h[at..at + s.len()].copy_from_slice(s);
        put(&mut h, 0, name.as_bytes());
        put(&mut h, 100, b"0000644\0");
        put(&mut h, 108, b"0000000\0");
        put(&mut h, 116, b"0000000\0");
        put(&mut h, 124, format!("{:011o}\0", bytes.len()).as_bytes());
        put(&mut h, 136, b"00000000000\0");
        put(&mut h, 148, b"        ");
        h[156] = b'0';
        put(&mut h, 257, b"ustar\0");
        put(&mut h, 263, b"00");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(bytes);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn fixture_entries_are_unique_and_deterministic() {
        let a = fixture_entries().unwrap();
        let b = fixture_entries().unwrap();
        assert_eq!(a, b);
        assert!(a.len() > 100, "{} entries", a.len());
        let accs: HashSet<&str> = a.iter().map(|e| e.accession.as_str()).collect();
        assert_eq!(accs.len(), a.len());
        assert!(a.iter().all(|e| e.text.ends_with("//\n")));
        assert!(a.iter().any(|e| !e.reviewed), "no unreviewed entry");
        assert!(!a.iter().any(|e| e.accession.contains('-')));
    }

    #[test]
    fn mirror_tree_with_real_gzip_md5_and_a_successor() {
        let dir = tempfile::tempdir().unwrap();
        let r1 = MirrorRelease::from_fixtures("2024_01").unwrap();
        let (r2, changes) = r1.successor("2024_02").unwrap();
        assert_eq!(changes.changed.len(), 3);
        assert_eq!(
            changes.removed,
            vec![r1.sprot.last().unwrap().accession.clone()]
        );
        assert_eq!(changes.added.len(), 1);
        assert!(!r1.sprot.iter().any(|e| e.accession == changes.added[0]));
        let mut r0 = MirrorRelease::from_fixtures("2023_05").unwrap();
        r0.layout = PreviousLayout::Tarballs;
        let m = UniprotMirror::build(dir.path(), &[r0, r1.clone(), r2.clone()]).unwrap();
        assert_eq!(m.current(), "2024_02");
        assert_eq!(m.entries("2024_02").len(), r1.sprot.len());
        let cur = dir.path().join(CURRENT_ROOT);
        let gz = std::fs::read(cur.join("uniprot_sprot.dat.gz")).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(split_entries(&text).len(), r2.sprot.len());
        assert!(text.contains("Full=Edited "));
        let metalink = std::fs::read_to_string(cur.join("RELEASE.metalink")).unwrap();
        assert!(metalink.contains(&md5_hex(&gz)));
        assert!(metalink.contains("http://www.metalinker.org/"));
        let prev = dir
            .path()
            .join("previous_releases/release-2024_01/knowledgebase/complete/reldate.txt");
        assert!(std::fs::read_to_string(prev)
            .unwrap()
            .contains("Release 2024_01 of 15-Jan-2024"));
        let tar = dir
            .path()
            .join("previous_releases/release-2023_05/knowledgebase/knowledgebase2023_05.tar.gz");
        let mut t = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(tar).unwrap())
            .read_to_end(&mut t)
            .unwrap();
        assert_eq!(&t[257..262], b"ustar");
        assert_eq!(&t[..20], b"uniprot_sprot.dat.gz");
        let fasta = r2.sprot[0].fasta();
        assert!(
            fasta.starts_with(&format!(">sp|{}|", r2.sprot[0].accession)),
            "{fasta}"
        );
        assert!(fasta.contains(" OS=") && fasta.contains(" PE="), "{fasta}");
        assert_eq!(corrupt("0f"), "10");
    }
}
