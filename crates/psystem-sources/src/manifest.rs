//! Checksum manifests of data releases: parse them, check that their paths stay inside the release,
//! and verify files against them.
//!
//! Formats read:
//! * GNU coreutils checksum lists, as written by `md5sum`, `sha1sum` and `sha256sum`
//!   (<https://www.gnu.org/software/coreutils/manual/html_node/md5sum-invocation.html>): one line
//!   `<hex digest><space><space or '*'><path>` per file. Open Targets' `release_data_integrity` is
//!   `sha1sum` output with `./`-prefixed paths, and `release_data_integrity.sha1` holds the SHA-1 of
//!   that manifest ([`verify_manifest_sha1`]).
//! * Metalink 3.0 (<http://www.metalinker.org/>, namespace `http://www.metalinker.org/`), as
//!   UniProt publishes `RELEASE.metalink`: `<files><file name><size/><verification><hash type>`.
//! * Metalink 4 (RFC 5854, <https://www.rfc-editor.org/rfc/rfc5854>, namespace
//!   `urn:ietf:params:xml:ns:metalink`): `<file name><size/><hash type>`.
//!
//! A manifest that cannot be read, or that lists no files, is an error: a verifier must never
//! report "0 files checked" for a document it did not understand.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::Path;

use md5::Digest as _;

/// The namespace of Metalink 3.0 documents (<http://www.metalinker.org/>).
const METALINK3_NS: &str = "http://www.metalinker.org/";
/// The namespace of RFC 5854 Metalink 4 documents.
const METALINK4_NS: &str = "urn:ietf:params:xml:ns:metalink";
/// How much of a file [`verify_file`] reads at a time.
const CHUNK: usize = 1 << 20;

/// A checksum algorithm used by release manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 1321): 32 hex digits; UniProt's metalink and `MD5SUMS` files.
    Md5,
    /// SHA-1 (FIPS 180-4): 40 hex digits; Open Targets' `release_data_integrity`.
    Sha1,
    /// SHA-256 (FIPS 180-4): 64 hex digits; `SHA256SUMS` files.
    Sha256,
}

impl Algorithm {
    /// The length of this algorithm's digest in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha1 => 40,
            Algorithm::Sha256 => 64,
        }
    }

    /// A new incremental [`Hasher`] for this algorithm.
    pub fn hasher(self) -> Hasher {
        let inner = match self {
            Algorithm::Md5 => HasherInner::Md5(md5::Md5::new()),
            Algorithm::Sha1 => HasherInner::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => HasherInner::Sha256(sha2::Sha256::new()),
        };
        Hasher { inner }
    }

    /// The algorithm a Metalink `<hash type="…">` names (`md5`, `sha1`/`sha-1`, `sha256`/`sha-256`,
    /// case-insensitive), or `None` for types this module does not support.
    fn from_metalink_type(name: &str) -> Option<Algorithm> {
        match name.trim().to_ascii_lowercase().as_str() {
            "md5" => Some(Algorithm::Md5),
            "sha1" | "sha-1" => Some(Algorithm::Sha1),
            "sha256" | "sha-256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
        })
    }
}

/// An incremental hasher: feed it bytes as they stream past with [`Hasher::update`], then take the
/// lower-case hex digest with [`Hasher::finish`].
#[derive(Clone)]
pub struct Hasher {
    inner: HasherInner,
}

#[derive(Clone)]
enum HasherInner {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// Feeds `bytes` to the hash.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.inner {
            HasherInner::Md5(h) => h.update(bytes),
            HasherInner::Sha1(h) => h.update(bytes),
            HasherInner::Sha256(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far, as lower-case hex.
    pub fn finish(self) -> String {
        match self.inner {
            HasherInner::Md5(h) => hex(&h.finalize()),
            HasherInner::Sha1(h) => hex(&h.finalize()),
            HasherInner::Sha256(h) => hex(&h.finalize()),
        }
    }

    /// The algorithm of this hasher.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            HasherInner::Md5(_) => Algorithm::Md5,
            HasherInner::Sha1(_) => Algorithm::Sha1,
            HasherInner::Sha256(_) => Algorithm::Sha256,
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("algorithm", &self.algorithm())
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Which kind of document a [`Manifest`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// Open Targets' `release_data_integrity`: `sha1sum` output with `./`-prefixed paths.
    ReleaseDataIntegrity,
    /// A GNU `md5sum` list (`MD5SUMS`).
    Md5Sums,
    /// A GNU `sha256sum` list (`SHA256SUMS`).
    Sha256Sums,
    /// A Metalink 3.0 document (<http://www.metalinker.org/>), e.g. UniProt's `RELEASE.metalink`.
    Metalink3,
    /// An RFC 5854 Metalink 4 document.
    Metalink4,
}

/// One file of a manifest: where it is in the release, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The path relative to the release root, normalised by [`check_path`] (`/`-separated, no `./`).
    pub path: String,
    /// The algorithm of [`ManifestEntry::digest`].
    pub algorithm: Algorithm,
    /// The expected digest, lower-case hex of the algorithm's length.
    pub digest: String,
    /// The expected size in bytes, when the manifest gives one (Metalink `<size>`).
    pub size: Option<u64>,
}

/// A parsed checksum manifest: at least one entry, no duplicate paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The format the manifest was read from.
    pub kind: ManifestKind,
    /// The files, in the manifest's order.
    pub entries: Vec<ManifestEntry>,
}

/// What went wrong while reading a manifest or verifying files against it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest (or its `.sha1`) is not in the expected format, or lists no files.
    #[error("cannot read manifest {manifest}{}: {detail}", at_line(*.line))]
    Parse {
        /// The manifest's name or URL.
        manifest: String,
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// What is wrong, naming the element or file for XML.
        detail: String,
    },

    /// A manifest path would leave the release (absolute, `..`, backslash) or is empty.
    #[error("unsafe path `{path}` in manifest {manifest}{}: {reason}; a manifest path must be relative and stay inside the release", at_line(*.line))]
    UnsafePath {
        /// The manifest's name or URL (empty when [`check_path`] is called on its own).
        manifest: String,
        /// The 1-based line of the path in the manifest, when known.
        line: Option<usize>,
        /// The path as written in the manifest.
        path: String,
        /// Why the path is refused.
        reason: String,
    },

    /// A file's digest differs from the manifest's.
    #[error("{algorithm} mismatch for {path}: the manifest says {expected}, the file hashes to {computed}; the file is corrupt or incomplete, download it again")]
    Mismatch {
        /// The file (or manifest) that was hashed.
        path: String,
        /// The checksum algorithm.
        algorithm: Algorithm,
        /// The digest the manifest gives.
        expected: String,
        /// The digest of the bytes read.
        computed: String,
    },

    /// A file's size differs from the manifest's.
    #[error("size mismatch for {path}: the manifest says {expected} bytes, the file has {actual}; the file is truncated or incomplete, download it again")]
    SizeMismatch {
        /// The file that was checked.
        path: String,
        /// The size the manifest gives.
        expected: u64,
        /// The size of the file on disk.
        actual: u64,
    },

    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

fn parse_err(manifest: &str, line: Option<usize>, detail: impl Into<String>) -> ManifestError {
    ManifestError::Parse {
        manifest: manifest.to_owned(),
        line,
        detail: detail.into(),
    }
}

/// Checks that a manifest path stays inside the release and returns it normalised: `/`-separated,
/// without `.` components, leading `./` or repeated `/`.
///
/// Refuses empty paths, absolute paths (`/…`, `C:…`), `..` components, backslashes and control
/// characters with [`ManifestError::UnsafePath`] (whose `manifest` and `line` are left empty for the
/// caller to fill in).
pub fn check_path(path: &str) -> Result<String, ManifestError> {
    let refuse = |reason: &str| ManifestError::UnsafePath {
        manifest: String::new(),
        line: None,
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.is_empty() {
        return Err(refuse("the path is empty"));
    }
    if path.contains('\\') {
        return Err(refuse("backslashes are not allowed"));
    }
    if path.chars().any(char::is_control) {
        return Err(refuse("control characters are not allowed"));
    }
    if path.starts_with('/') {
        return Err(refuse("absolute paths are not allowed"));
    }
    let mut parts = Vec::new();
    for (i, part) in path.split('/').enumerate() {
        match part {
            "" | "." => {}
            ".." => return Err(refuse("`..` components are not allowed")),
            _ => {
                if i == 0
                    && part.len() >= 2
                    && part.as_bytes()[1] == b':'
                    && part.as_bytes()[0].is_ascii_alphabetic()
                {
                    return Err(refuse("drive-letter paths are not allowed"));
                }
                parts.push(part);
            }
        }
    }
    if parts.is_empty() {
        return Err(refuse("the path names no file"));
    }
    Ok(parts.join("/"))
}

/// [`check_path`] with the manifest name and line filled into the error.
fn checked_path(path: &str, manifest: &str, line: Option<usize>) -> Result<String, ManifestError> {
    check_path(path).map_err(|e| match e {
        ManifestError::UnsafePath { path, reason, .. } => ManifestError::UnsafePath {
            manifest: manifest.to_owned(),
            line,
            path,
            reason,
        },
        other => other,
    })
}

/// Checks a digest read from a manifest and returns it lower-cased.
fn checked_digest(
    digest: &str,
    algorithm: Algorithm,
    manifest: &str,
    line: Option<usize>,
    what: &str,
) -> Result<String, ManifestError> {
    let digest = digest.trim();
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what}: ")
    };
    if !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(parse_err(
            manifest,
            line,
            format!("{what}digest `{digest}` is not hexadecimal"),
        ));
    }
    if digest.len() != algorithm.hex_len() {
        return Err(parse_err(
            manifest,
            line,
            format!(
                "{what}digest `{digest}` has {} hex digits, {algorithm} needs {}",
                digest.len(),
                algorithm.hex_len()
            ),
        ));
    }
    Ok(digest.to_ascii_lowercase())
}

/// Parses a GNU coreutils checksum list (`md5sum`, `sha1sum`, `sha256sum` output; see
/// <https://www.gnu.org/software/coreutils/manual/html_node/md5sum-invocation.html>).
///
/// Each non-blank line is `<hex digest><space><space or '*'><path>` (`*` marks binary mode, which
/// changes nothing on POSIX systems). A leading `./` is removed from paths (Open Targets'
/// `release_data_integrity` is `sha1sum` output from `find .`), and every path goes through
/// [`check_path`]. The digest length must match `algorithm`. `source` names the manifest (file name
/// or URL) in errors. Lines in GNU's escaped form (starting with `\`), duplicate paths and a list
/// with no files are errors.
///
/// The [`ManifestKind`] is [`ManifestKind::ReleaseDataIntegrity`] for SHA-1,
/// [`ManifestKind::Md5Sums`] for MD5 and [`ManifestKind::Sha256Sums`] for SHA-256.
pub fn parse_checksum_list(
    text: &str,
    algorithm: Algorithm,
    source: &str,
) -> Result<Manifest, ManifestError> {
    let kind = match algorithm {
        Algorithm::Md5 => ManifestKind::Md5Sums,
        Algorithm::Sha1 => ManifestKind::ReleaseDataIntegrity,
        Algorithm::Sha256 => ManifestKind::Sha256Sums,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = Some(i + 1);
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('\\') {
            return Err(parse_err(
                source,
                line_no,
                "escaped file names (a line starting with `\\`) are not supported",
            ));
        }
        let Some((digest, rest)) = line.split_once(' ') else {
            return Err(parse_err(
                source,
                line_no,
                format!("expected `<{algorithm} digest>  <path>`, found `{line}`"),
            ));
        };
        let Some(path) = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*')) else {
            return Err(parse_err(
                source,
                line_no,
                format!("expected two spaces or ` *` between digest and path, found `{line}`"),
            ));
        };
        let digest = checked_digest(digest, algorithm, source, line_no, "")?;
        let path = checked_path(path, source, line_no)?;
        if !seen.insert(path.clone()) {
            return Err(parse_err(
                source,
                line_no,
                format!("`{path}` is listed twice"),
            ));
        }
        entries.push(ManifestEntry {
            path,
            algorithm,
            digest,
            size: None,
        });
    }
    if entries.is_empty() {
        return Err(parse_err(
            source,
            None,
            format!("no `<{algorithm} digest>  <path>` lines: the manifest lists no files"),
        ));
    }
    tracing::debug!(manifest = source, files = entries.len(), %algorithm, "parsed checksum list");
    Ok(Manifest { kind, entries })
}

/// Parses a Metalink document: Metalink 3.0 (<http://www.metalinker.org/>, namespace
/// `http://www.metalinker.org/`, `<files><file name><size/><verification><hash type/>`) as UniProt
/// publishes `RELEASE.metalink`, or RFC 5854 Metalink 4 (<https://www.rfc-editor.org/rfc/rfc5854>,
/// namespace `urn:ietf:params:xml:ns:metalink`, `<file name><size/><hash type/>`).
///
/// For each file the strongest supported whole-file hash is kept (SHA-256, then SHA-1, then MD5;
/// hash types `md5`, `sha1`/`sha-1`, `sha256`/`sha-256`); other hash types and piece hashes are
/// ignored. Errors name `source`, the line and the element or file: a document that is not XML, a
/// root element that is not `metalink` in one of the two namespaces, a file without a name or
/// without a supported hash, a bad size or digest, an unsafe or duplicate name, and a document with
/// no files at all.
pub fn parse_metalink(xml: &str, source: &str) -> Result<Manifest, ManifestError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| {
        parse_err(
            source,
            Some(e.pos().row as usize),
            format!("not well-formed XML: {e}"),
        )
    })?;
    let line_of =
        |node: roxmltree::Node<'_, '_>| Some(doc.text_pos_at(node.range().start).row as usize);
    let root = doc.root_element();
    let name = root.tag_name();
    let (kind, ns) = match (name.namespace(), name.name()) {
        (Some(METALINK3_NS), "metalink") => (ManifestKind::Metalink3, METALINK3_NS),
        (Some(METALINK4_NS), "metalink") => (ManifestKind::Metalink4, METALINK4_NS),
        (found_ns, found) => {
            return Err(parse_err(
                source,
                line_of(root),
                format!(
                    "not a Metalink document: the root element is <{found}> in namespace `{}`; expected \
                     <metalink> in `{METALINK3_NS}` (Metalink 3.0) or `{METALINK4_NS}` (RFC 5854)",
                    found_ns.unwrap_or("")
                ),
            ))
        }
    };
    let is = |node: &roxmltree::Node<'_, '_>, local: &str| {
        node.is_element()
            && node.tag_name().namespace() == Some(ns)
            && node.tag_name().name() == local
    };
    let files: Vec<roxmltree::Node<'_, '_>> = match kind {
        ManifestKind::Metalink3 => root
            .children()
            .filter(|n| is(n, "files"))
            .flat_map(|files| files.children().filter(|n| is(n, "file")))
            .collect(),
        _ => root.children().filter(|n| is(n, "file")).collect(),
    };
    if files.is_empty() {
        let where_ = if kind == ManifestKind::Metalink3 {
            "<files><file>"
        } else {
            "<file>"
        };
        return Err(parse_err(
            source,
            None,
            format!("the document has no {where_} elements: the manifest lists no files"),
        ));
    }

    let mut entries = Vec::with_capacity(files.len());
    let mut seen = HashSet::new();
    for file in files {
        let line = line_of(file);
        let Some(raw_name) = file.attribute("name") else {
            return Err(parse_err(source, line, "<file> has no name attribute"));
        };
        let path = checked_path(raw_name, source, line)?;
        let what = format!("<file> `{raw_name}`");

        let size = match file.children().find(|n| is(n, "size")) {
            None => None,
            Some(size) => {
                let text = size.text().unwrap_or("").trim();
                Some(text.parse::<u64>().map_err(|_| {
                    parse_err(
                        source,
                        line_of(size),
                        format!("{what}: <size> `{text}` is not a byte count"),
                    )
                })?)
            }
        };

        let hash_parents: Vec<roxmltree::Node<'_, '_>> = match kind {
            ManifestKind::Metalink3 => file.children().filter(|n| is(n, "verification")).collect(),
            _ => vec![file],
        };
        let mut best: Option<(Algorithm, roxmltree::Node<'_, '_>)> = None;
        for hash in hash_parents
            .iter()
            .flat_map(|p| p.children().filter(|n| is(n, "hash")))
        {
            let Some(algorithm) = hash
                .attribute("type")
                .and_then(Algorithm::from_metalink_type)
            else {
                continue;
            };
            if best.is_none_or(|(b, _)| rank(algorithm) > rank(b)) {
                best = Some((algorithm, hash));
            }
        }
        let Some((algorithm, hash)) = best else {
            return Err(parse_err(
                source,
                line,
                format!(
                    "{what} has no whole-file <hash> of a supported type (md5, sha-1, sha-256)"
                ),
            ));
        };
        let digest = checked_digest(
            hash.text().unwrap_or(""),
            algorithm,
            source,
            line_of(hash),
            &format!(
                "{what} <hash> of type `{}`",
                hash.attribute("type").unwrap_or("")
            ),
        )?;
        if !seen.insert(path.clone()) {
            return Err(parse_err(source, line, format!("{what} is listed twice")));
        }
        entries.push(ManifestEntry {
            path,
            algorithm,
            digest,
            size,
        });
    }
    tracing::debug!(
        manifest = source,
        files = entries.len(),
        ?kind,
        "parsed metalink"
    );
    Ok(Manifest { kind, entries })
}

fn rank(algorithm: Algorithm) -> u8 {
    match algorithm {
        Algorithm::Md5 => 0,
        Algorithm::Sha1 => 1,
        Algorithm::Sha256 => 2,
    }
}

/// Verifies Open Targets' `release_data_integrity` manifest against its
/// `release_data_integrity.sha1`, whose one line is `<sha1 of the manifest>  release_data_integrity`
/// (GNU `sha1sum` output). Do this before trusting the manifest's entries.
///
/// `manifest_bytes` are the manifest's bytes exactly as downloaded; `source` names the manifest.
/// A `.sha1` that is not exactly one `sha1sum` line is a [`ManifestError::Parse`]; a different
/// digest is a [`ManifestError::Mismatch`].
pub fn verify_manifest_sha1(
    manifest_bytes: &[u8],
    sha1_file_text: &str,
    source: &str,
) -> Result<(), ManifestError> {
    let sha1_name = format!("{source}.sha1");
    let listed = parse_checksum_list(sha1_file_text, Algorithm::Sha1, &sha1_name)?;
    let [entry] = listed.entries.as_slice() else {
        return Err(parse_err(
            &sha1_name,
            None,
            format!(
                "expected one line `<sha1>  release_data_integrity`, found {} lines",
                listed.entries.len()
            ),
        ));
    };
    let mut hasher = Algorithm::Sha1.hasher();
    hasher.update(manifest_bytes);
    let computed = hasher.finish();
    if computed != entry.digest {
        return Err(ManifestError::Mismatch {
            path: source.to_owned(),
            algorithm: Algorithm::Sha1,
            expected: entry.digest.clone(),
            computed,
        });
    }
    tracing::debug!(manifest = source, sha1 = %computed, "manifest matches its .sha1");
    Ok(())
}

/// Verifies one file against its manifest entry and returns the computed digest (lower-case hex).
///
/// The size is checked first when the entry has one ([`ManifestError::SizeMismatch`]); the file is
/// then hashed in 1 MiB chunks. A different digest is a [`ManifestError::Mismatch`] naming `path`,
/// the algorithm and both digests; an unreadable file is a [`ManifestError::Io`].
pub fn verify_file(path: &Path, entry: &ManifestEntry) -> Result<String, ManifestError> {
    let shown = path.display().to_string();
    let io_err = |source| ManifestError::Io {
        path: shown.clone(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    if let Some(expected) = entry.size {
        let actual = file.metadata().map_err(io_err)?.len();
        if actual != expected {
            return Err(ManifestError::SizeMismatch {
                path: shown,
                expected,
                actual,
            });
        }
    }
    let mut hasher = entry.algorithm.hasher();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        hasher.update(&buf[..n]);
    }
    let computed = hasher.finish();
    if computed != entry.digest {
        return Err(ManifestError::Mismatch {
            path: shown,
            algorithm: entry.algorithm,
            expected: entry.digest.clone(),
            computed,
        });
    }
    tracing::trace!(path = %shown, algorithm = %entry.algorithm, digest = %computed, "file verified");
    Ok(computed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let empty = |a: Algorithm| a.hasher().finish();
        assert_eq!(empty(Algorithm::Md5), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            empty(Algorithm::Sha1),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            empty(Algorithm::Sha256),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Algorithm::Sha1.hasher();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(Algorithm::Sha256.to_string(), "sha256");
    }

    #[test]
    fn paths() {
        assert_eq!(check_path("./a//b/./c.parquet").unwrap(), "a/b/c.parquet");
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a\\b",
            "C:/x",
            ".",
            "./",
            "a\nb",
        ] {
            assert!(
                matches!(check_path(bad), Err(ManifestError::UnsafePath { .. })),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn checksum_list_errors_name_line() {
        let sha = "a".repeat(40);
        let err = parse_checksum_list(
            &format!("{sha}  ./ok\n\nabc  ./short\n"),
            Algorithm::Sha1,
            "m",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ManifestError::Parse { line: Some(3), .. }),
            "{msg}"
        );
        assert!(
            msg.contains("m line 3") && msg.contains("sha1 needs 40"),
            "{msg}"
        );
        assert!(parse_checksum_list("\n\n", Algorithm::Sha1, "m").is_err());
        assert!(
            parse_checksum_list(&format!("{sha} ./one-space\n"), Algorithm::Sha1, "m").is_err()
        );
        assert!(
            parse_checksum_list(&format!("{sha}  a\n{sha}  ./a\n"), Algorithm::Sha1, "m").is_err()
        );
    }

    #[test]
    fn metalink_prefers_strongest_hash_and_checks_size() {
        let xml = format!(
            r#"<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="a"><size>3</size>
<hash type="md5">{}</hash><hash type="sha-256">{}</hash><hash type="sha-512">zz</hash></file></metalink>"#,
            "0".repeat(32),
            "1".repeat(64)
        );
        let m = parse_metalink(&xml, "x").unwrap();
        assert_eq!(m.entries[0].algorithm, Algorithm::Sha256);
        assert_eq!(m.entries[0].size, Some(3));
        let bad = xml.replace("<size>3</size>", "<size>three</size>");
        let msg = parse_metalink(&bad, "x").unwrap_err().to_string();
        assert!(
            msg.contains("<file> `a`") && msg.contains("line 1"),
            "{msg}"
        );
    }
}
