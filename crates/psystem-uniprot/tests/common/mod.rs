// Shared helpers for the integration tests (included with `mod common_fixtures;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The UniProt fixtures directory (read-only upstream data).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/uniprot")
}

/// Every flat file under the fixtures directory (all sub-directories), sorted.
pub fn flat_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![fixtures_dir()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            // Release metadata and provenance notes are not flat files.
            if name.ends_with(".metalink") || name.starts_with("README") {
                continue;
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Number of `//` lines in a file.
pub fn terminator_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.trim_end() == "//")
        .count()
}
