//! The benchmark's plugin manifest parses with psystem's own manifest reader and names the generated dataset.

use std::path::Path;

use psystem_core::plugin::{parse_manifest, SourceKind};

#[test]
fn bench_plugin_manifest_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin/opentargets-bench/plugin.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest = parse_manifest(&text, &path).unwrap();
    assert_eq!(manifest.name, "opentargets");
    let source = manifest.source.as_ref().unwrap();
    assert_eq!(source.kind, SourceKind::Release);
    assert_eq!(source.provider.as_deref(), Some("opentargets"));
    let entry = &manifest.etl["bench_entity"];
    assert_eq!(entry.dataset.as_deref(), Some("bench_entity"));
    assert_eq!(entry.flatten, Some(psystem_bench::floor::flatten_options()));
    assert_eq!(manifest.run.as_deref(), Some("bench_entity"));

    // A broken copy is refused with its line: the test can fail.
    let broken = text.replace("dataset: bench_entity", "datset: bench_entity");
    let err = parse_manifest(&broken, &path).unwrap_err().to_string();
    assert!(err.contains("datset"), "{err}");
}
