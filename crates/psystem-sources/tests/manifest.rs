//! Checksum manifests on real files: UniProt's `RELEASE.metalink` (Metalink 3.0,
//! `shared/fixtures/uniprot/release_metadata`) and a tiny Open Targets-style release built here from
//! real Parquet files (`shared/fixtures/opentargets/parquet`) with its `release_data_integrity`.

use std::fs;
use std::path::{Path, PathBuf};

use psystem_sources::manifest::{
    check_path, parse_checksum_list, parse_metalink, verify_file, verify_manifest_sha1, Algorithm,
    ManifestError, ManifestKind,
};
use sha1::{Digest, Sha1};

/// `shared/fixtures`: beside the work tree, else `$PSYSTEM_FIXTURES`.
fn fixtures() -> PathBuf {
    let mut candidates =
        vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")];
    if let Some(dir) = std::env::var_os("PSYSTEM_FIXTURES") {
        candidates.push(PathBuf::from(dir));
    }
    candidates
        .iter()
        .find(|d| d.join("uniprot").is_dir())
        .cloned()
        .unwrap_or_else(|| panic!("shared fixtures not found in any of {candidates:?}"))
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn uniprot_release_metalink_is_metalink3() {
    let path = fixtures().join("uniprot/release_metadata/RELEASE.metalink");
    let xml = fs::read_to_string(&path).unwrap();
    let expected_files = xml.matches("<file ").count();
    assert!(expected_files >= 1);

    let m = parse_metalink(&xml, "RELEASE.metalink").unwrap();
    assert_eq!(m.kind, ManifestKind::Metalink3);
    assert_eq!(m.entries.len(), expected_files);
    for e in &m.entries {
        assert_eq!(e.algorithm, Algorithm::Md5);
        assert_eq!(e.digest.len(), 32, "{e:?}");
        assert!(is_hex(&e.digest), "{e:?}");
        assert!(e.size.is_some(), "{e:?}");
        assert_eq!(check_path(&e.path).unwrap(), e.path);
    }
    let readme = m.entries.iter().find(|e| e.path == "README").unwrap();
    assert_eq!(readme.digest, "5845a44e788cd260b04a558f77b14f4c");
    assert_eq!(readme.size, Some(3101));
}

#[test]
fn rfc5854_metalink4() {
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<metalink xmlns="urn:ietf:params:xml:ns:metalink">
  <published>2024-01-24T00:00:00Z</published>
  <file name="knowledgebase/uniprot_sprot.dat.gz">
    <size>14</size>
    <hash type="md5">{md5}</hash>
    <hash type="sha-1">{sha1}</hash>
    <pieces length="262144" type="sha-1"><hash>{sha1}</hash></pieces>
    <url location="uk" priority="1">https://ftp.ebi.ac.uk/pub/databases/uniprot/knowledgebase/uniprot_sprot.dat.gz</url>
  </file>
  <file name="./README">
    <hash type="sha-512">{sha512}</hash>
    <hash type="md5">{md5}</hash>
  </file>
</metalink>"#,
        md5 = "5845A44E788CD260B04A558F77B14F4C",
        sha1 = "a".repeat(40),
        sha512 = "b".repeat(128),
    );
    let m = parse_metalink(&xml, "hand.meta4").unwrap();
    assert_eq!(m.kind, ManifestKind::Metalink4);
    assert_eq!(m.entries.len(), 2);
    assert_eq!(m.entries[0].path, "knowledgebase/uniprot_sprot.dat.gz");
    assert_eq!(m.entries[0].algorithm, Algorithm::Sha1);
    assert_eq!(m.entries[0].size, Some(14));
    assert_eq!(m.entries[1].path, "README");
    assert_eq!(m.entries[1].algorithm, Algorithm::Md5);
    assert_eq!(m.entries[1].digest, "5845a44e788cd260b04a558f77b14f4c");
    assert_eq!(m.entries[1].size, None);
}

#[test]
fn documents_that_are_not_metalink_are_errors() {
    let cases = [
        (
            "rss",
            r#"<?xml version="1.0"?><rss version="2.0"><channel><title>UniProt</title></channel></rss>"#,
        ),
        (
            "html",
            "<!DOCTYPE html><html><body><p>Not found</p></body></html>",
        ),
        (
            "xhtml",
            r#"<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>"#,
        ),
        (
            "wrong namespace",
            r#"<metalink xmlns="http://example.org/metalink" version="3.0"><files><file name="a"/></files></metalink>"#,
        ),
        (
            "no namespace",
            r#"<metalink version="3.0"><files><file name="a"/></files></metalink>"#,
        ),
        ("not xml", "5845a44e788cd260b04a558f77b14f4c  README\n"),
        (
            "empty v3",
            r#"<metalink xmlns="http://www.metalinker.org/" version="3.0"><files></files></metalink>"#,
        ),
        (
            "empty v4",
            r#"<metalink xmlns="urn:ietf:params:xml:ns:metalink"><published>2024-01-01T00:00:00Z</published></metalink>"#,
        ),
        // v4 elements in a v3 document: must not be read as "0 files" nor guessed.
        (
            "v4 layout, v3 ns",
            r#"<metalink xmlns="http://www.metalinker.org/"><file name="a"><hash type="md5">5845a44e788cd260b04a558f77b14f4c</hash></file></metalink>"#,
        ),
    ];
    for (what, doc) in cases {
        match parse_metalink(doc, "doc.xml") {
            Err(e @ ManifestError::Parse { .. }) => {
                assert!(e.to_string().contains("doc.xml"), "{what}: {e}");
            }
            other => panic!("{what}: expected a parse error, got {other:?}"),
        }
    }

    // A file without a supported hash, and a bad digest, name the file.
    let no_hash = r#"<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="x.gz"><hash type="sha-512">00</hash></file></metalink>"#;
    let msg = parse_metalink(no_hash, "doc.xml").unwrap_err().to_string();
    assert!(msg.contains("x.gz") && msg.contains("supported"), "{msg}");
    let short = r#"<metalink xmlns="http://www.metalinker.org/"><files><file name="x.gz"><verification><hash type="md5">abc</hash></verification></file></files></metalink>"#;
    let msg = parse_metalink(short, "doc.xml").unwrap_err().to_string();
    assert!(msg.contains("x.gz") && msg.contains("32"), "{msg}");
    let unsafe_name = r#"<metalink xmlns="urn:ietf:params:xml:ns:metalink">
<file name="../../etc/passwd"><hash type="md5">5845a44e788cd260b04a558f77b14f4c</hash></file></metalink>"#;
    match parse_metalink(unsafe_name, "doc.xml") {
        Err(ManifestError::UnsafePath {
            line: Some(2),
            path,
            ..
        }) => assert_eq!(path, "../../etc/passwd"),
        other => panic!("expected UnsafePath on line 2, got {other:?}"),
    }
}

/// A tiny Open Targets release (25.03+ layout) made of real Parquet files, with its
/// `release_data_integrity` written exactly as
/// `find . -type f ! -iname "release_data_integrity*" -exec sha1sum {} \;` writes it.
struct Release {
    dir: tempfile::TempDir,
    /// `(./relative path, sha1)` in the order written.
    files: Vec<(String, String)>,
    manifest: Vec<u8>,
}

fn build_release() -> Release {
    let src = fixtures().join("opentargets/parquet");
    let copies = [
        ("disease/test_disease_w_duplication.parquet", "output/disease/test_disease_w_duplication.parquet"),
        ("interaction/otp_interactions_sample.parquet", "output/interaction/otp_interactions_sample.parquet"),
        (
            "spark_dir_credible-sets/part-00000-a9a641da-3820-4bf4-911e-4d61475173d0-c000.snappy.parquet",
            "output/credible_set/part-00000-a9a641da-3820-4bf4-911e-4d61475173d0-c000.snappy.parquet",
        ),
        ("spark_dir_credible-sets/_SUCCESS", "output/credible_set/_SUCCESS"),
        ("spark_dir_credible-sets/._SUCCESS.crc", "output/credible_set/._SUCCESS.crc"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (from, to) in copies {
        // Read and write rather than copy: the fixtures are read-only and the copies get modified.
        let bytes = fs::read(src.join(from)).unwrap_or_else(|e| panic!("{from}: {e}"));
        let dest = dir.path().join(to);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(&dest, &bytes).unwrap();
        files.push((format!("./{to}"), sha1_hex(&bytes)));
    }
    let manifest: String = files.iter().map(|(p, d)| format!("{d}  {p}\n")).collect();
    fs::write(dir.path().join("release_data_integrity"), &manifest).unwrap();
    let sha1_line = format!(
        "{}  release_data_integrity\n",
        sha1_hex(manifest.as_bytes())
    );
    fs::write(dir.path().join("release_data_integrity.sha1"), sha1_line).unwrap();
    Release {
        dir,
        files,
        manifest: manifest.into_bytes(),
    }
}

#[test]
fn open_targets_release_verifies() {
    let release = build_release();
    let root = release.dir.path();
    let manifest_bytes = fs::read(root.join("release_data_integrity")).unwrap();
    assert_eq!(manifest_bytes, release.manifest);
    let sha1_text = fs::read_to_string(root.join("release_data_integrity.sha1")).unwrap();
    verify_manifest_sha1(&manifest_bytes, &sha1_text, "release_data_integrity").unwrap();

    let text = std::str::from_utf8(&manifest_bytes).unwrap();
    let m = parse_checksum_list(text, Algorithm::Sha1, "release_data_integrity").unwrap();
    assert_eq!(m.kind, ManifestKind::ReleaseDataIntegrity);
    assert_eq!(m.entries.len(), release.files.len());
    for (entry, (path, sha1)) in m.entries.iter().zip(&release.files) {
        assert_eq!(
            format!("./{}", entry.path),
            *path,
            "`./` is removed, the order kept"
        );
        assert_eq!(entry.digest, *sha1);
        assert_eq!(entry.size, None);
        let computed = verify_file(&root.join(&entry.path), entry).unwrap();
        assert_eq!(computed, *sha1);
    }
    // The empty `_SUCCESS` hashes to SHA-1 of nothing.
    assert!(m
        .entries
        .iter()
        .any(|e| e.digest == "da39a3ee5e6b4b0d3255bfef95601890afd80709"));

    // One flipped byte in one file: a Mismatch naming that file and both digests.
    let victim = &m.entries[1];
    let victim_path = root.join(&victim.path);
    let mut bytes = fs::read(&victim_path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&victim_path, &bytes).unwrap();
    let flipped = sha1_hex(&bytes);
    match verify_file(&victim_path, victim) {
        Err(e @ ManifestError::Mismatch { .. }) => {
            let msg = e.to_string();
            let ManifestError::Mismatch {
                path,
                algorithm,
                expected,
                computed,
            } = e
            else {
                unreachable!()
            };
            assert!(path.ends_with(&victim.path), "{path}");
            assert_eq!(algorithm, Algorithm::Sha1);
            assert_eq!(expected, victim.digest);
            assert_eq!(computed, flipped);
            assert!(
                msg.contains(&victim.path) && msg.contains(&expected) && msg.contains(&computed),
                "{msg}"
            );
        }
        other => panic!("expected a Mismatch, got {other:?}"),
    }
    // The others still verify.
    for entry in m.entries.iter().filter(|e| e.path != victim.path) {
        verify_file(&root.join(&entry.path), entry).unwrap();
    }

    // A size given by the manifest is checked first.
    let mut sized = m.entries[0].clone();
    sized.size = Some(1);
    assert!(matches!(
        verify_file(&root.join(&sized.path), &sized),
        Err(ManifestError::SizeMismatch { expected: 1, .. })
    ));
    // A missing file is an Io error naming it.
    let mut missing = m.entries[0].clone();
    missing.path = "output/nope.parquet".into();
    match verify_file(&root.join(&missing.path), &missing) {
        Err(ManifestError::Io { path, .. }) => assert!(path.ends_with("output/nope.parquet")),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn manifest_against_wrong_sha1() {
    let release = build_release();
    let other = format!("{}  release_data_integrity\n", sha1_hex(b"something else"));
    match verify_manifest_sha1(&release.manifest, &other, "release_data_integrity") {
        Err(ManifestError::Mismatch {
            path,
            algorithm: Algorithm::Sha1,
            expected,
            computed,
        }) => {
            assert_eq!(path, "release_data_integrity");
            assert_eq!(expected, sha1_hex(b"something else"));
            assert_eq!(computed, sha1_hex(&release.manifest));
        }
        other => panic!("expected a Mismatch, got {other:?}"),
    }
    // A changed manifest against the original .sha1.
    let sha1_text =
        fs::read_to_string(release.dir.path().join("release_data_integrity.sha1")).unwrap();
    let mut tampered = release.manifest.clone();
    tampered.extend_from_slice(format!("{}  ./output/extra\n", "0".repeat(40)).as_bytes());
    assert!(matches!(
        verify_manifest_sha1(&tampered, &sha1_text, "release_data_integrity"),
        Err(ManifestError::Mismatch { .. })
    ));
    // A .sha1 that is not one sha1sum line.
    for bad in ["", "not a checksum\n", "abc  release_data_integrity\n"] {
        assert!(
            matches!(
                verify_manifest_sha1(&release.manifest, bad, "release_data_integrity"),
                Err(ManifestError::Parse { .. })
            ),
            "{bad:?}"
        );
    }
    let two = format!("{sha1_text}{sha1_text}");
    assert!(verify_manifest_sha1(&release.manifest, &two, "release_data_integrity").is_err());
}

#[test]
fn unsafe_manifest_paths_name_the_line() {
    let release = build_release();
    let good = String::from_utf8(release.manifest.clone()).unwrap();
    let good_lines = good.lines().count();
    for bad in [
        "../etc/passwd",
        "./../etc/passwd",
        "/abs/path",
        "./output/../../x",
        "output\\x",
        "./",
    ] {
        let text = format!("{good}{}  {bad}\n", "0".repeat(40));
        match parse_checksum_list(&text, Algorithm::Sha1, "release_data_integrity") {
            Err(e @ ManifestError::UnsafePath { .. }) => {
                let msg = e.to_string();
                let ManifestError::UnsafePath {
                    manifest,
                    line,
                    path,
                    ..
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(manifest, "release_data_integrity");
                assert_eq!(line, Some(good_lines + 1), "{bad}");
                assert_eq!(path, bad);
                assert!(msg.contains(&format!("line {}", good_lines + 1)), "{msg}");
            }
            other => panic!("{bad}: expected UnsafePath, got {other:?}"),
        }
    }
}

#[test]
fn md5sums_and_sha256sums() {
    let root = fixtures().join("opentargets/parquet");
    let a = "interaction/otp_interactions_sample.parquet";
    let b = "disease/test_disease_w_duplication.parquet";
    let digest = |alg: Algorithm, rel: &str| {
        let mut h = alg.hasher();
        h.update(&fs::read(root.join(rel)).unwrap());
        h.finish()
    };

    // md5sum -b writes `*`; CRLF line ends and blank lines are tolerated; upper-case hex is lowered.
    let md5sums = format!(
        "{}  {a}\r\n\r\n{} *{b}\r\n",
        digest(Algorithm::Md5, a),
        digest(Algorithm::Md5, b).to_uppercase()
    );
    let m = parse_checksum_list(&md5sums, Algorithm::Md5, "MD5SUMS").unwrap();
    assert_eq!(m.kind, ManifestKind::Md5Sums);
    assert_eq!(
        m.entries
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
        [a, b]
    );
    for e in &m.entries {
        assert_eq!(verify_file(&root.join(&e.path), e).unwrap(), e.digest);
    }

    let sha256sums = format!(
        "{}  ./{a}\n{} *./{b}\n",
        digest(Algorithm::Sha256, a),
        digest(Algorithm::Sha256, b)
    );
    let m = parse_checksum_list(&sha256sums, Algorithm::Sha256, "SHA256SUMS").unwrap();
    assert_eq!(m.kind, ManifestKind::Sha256Sums);
    assert_eq!(m.entries.len(), 2);
    for e in &m.entries {
        assert_eq!(e.digest.len(), 64);
        assert_eq!(verify_file(&root.join(&e.path), e).unwrap(), e.digest);
    }

    // A digest of the wrong algorithm's length is a parse error naming the manifest and the line.
    let err = parse_checksum_list(&md5sums, Algorithm::Sha256, "SHA256SUMS").unwrap_err();
    assert!(
        matches!(err, ManifestError::Parse { line: Some(1), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("SHA256SUMS line 1"), "{err}");
}

#[test]
fn hasher_streams() {
    let path: &Path = &fixtures().join("uniprot/release_metadata/RELEASE.metalink");
    let bytes = fs::read(path).unwrap();
    let mut h = Algorithm::Sha1.hasher();
    for chunk in bytes.chunks(7) {
        h.update(chunk);
    }
    assert_eq!(h.finish(), sha1_hex(&bytes));
}
