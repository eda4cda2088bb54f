//! Golden entries: the parser's output compared field by field with hand-checked JSON under `tests/golden/`.
//!
//! Each golden file names its source (`fixtures:<path under the UniProt fixtures>` or `crate:<path in this
//! crate>`), the entry's accession, and `expected`: JSON pointers into the entry's serialized form (`""` = the
//! whole entry) with their expected values; optional `counts` give list lengths.

mod common;

use std::path::{Path, PathBuf};

use psystem_uniprot::{open_path, Entry};
use serde_json::Value;

fn source_path(source: &str) -> PathBuf {
    if let Some(p) = source.strip_prefix("fixtures:") {
        common::fixtures_dir().join(p)
    } else if let Some(p) = source.strip_prefix("crate:") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    } else {
        panic!("source {source:?} must start with fixtures: or crate:")
    }
}

fn find_entry(path: &Path, accession: &str) -> Entry {
    for e in open_path(path).unwrap() {
        let e = e.unwrap_or_else(|e| panic!("{e}"));
        if e.primary_accession == accession {
            return e;
        }
    }
    panic!("{accession} not in {}", path.display())
}

/// Every difference between two JSON values, one line each, as `path: expected … got …`.
fn diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}/{k}");
                match a.get(k) {
                    Some(av) => diff(&p, ev, av, out),
                    None => out.push(format!("{p}: expected {ev}, field missing")),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(format!("{path}/{k}: unexpected field {av}"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(&format!("{path}/{i}"), ev, av, out);
            }
            if e.len() != a.len() {
                out.push(format!(
                    "{path}: expected {} items, got {}",
                    e.len(),
                    a.len()
                ));
            }
        }
        _ if expected != actual => out.push(format!("{path}: expected {expected}, got {actual}")),
        _ => {}
    }
}

#[test]
fn golden_entries_match_field_by_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected at least 5 golden files");
    let mut failures = Vec::new();
    for file in &files {
        let golden: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let source = golden["source"].as_str().unwrap();
        let accession = golden["accession"].as_str().unwrap();
        let entry = find_entry(&source_path(source), accession);
        let actual = serde_json::to_value(&entry).unwrap();
        let expected = golden["expected"].as_object().unwrap();
        assert!(!expected.is_empty());
        let mut out = Vec::new();
        for (pointer, want) in expected {
            match actual.pointer(pointer) {
                Some(got) => diff(pointer, want, got, &mut out),
                None => out.push(format!("{pointer}: not in the parsed entry")),
            }
        }
        if let Some(counts) = golden.get("counts").and_then(Value::as_object) {
            for (list, n) in counts {
                let got = actual[list.as_str()].as_array().map_or(0, Vec::len);
                if Some(got as u64) != n.as_u64() {
                    out.push(format!("/{list}: expected {n} items, got {got}"));
                }
            }
        }
        // A golden whole entry also reads back into the same `Entry`.
        if let Some(whole) = expected.get("") {
            let back: Entry = serde_json::from_value(whole.clone()).unwrap();
            if back != entry {
                out.push("golden JSON does not deserialize to the parsed entry".into());
            }
        }
        if !out.is_empty() {
            failures.push(format!(
                "{} ({accession}):\n  {}",
                file.display(),
                out.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_diff_reports_paths() {
    let mut out = Vec::new();
    let e = serde_json::json!({"a": [1, {"b": "x"}], "c": 1});
    let a = serde_json::json!({"a": [1, {"b": "y"}, 3], "d": 2});
    diff("", &e, &a, &mut out);
    assert_eq!(
        out,
        vec![
            "/a/1/b: expected \"x\", got \"y\"",
            "/a: expected 2 items, got 3",
            "/c: expected 1, field missing",
            "/d: unexpected field 2",
        ]
    );
}
