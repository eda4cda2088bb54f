//! The release generator: layout, manifest (checked with psystem's own Open Targets manifest reader),
//! schema, determinism, the changed release, and refusals.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use psystem_bench::generate::{
    entity_id, schema, write_release, GenError, GenSpec, MANIFEST_NAME, MANIFEST_SHA1_NAME,
};
use psystem_sources::manifest::{
    parse_checksum_list, verify_file, verify_manifest_sha1, Algorithm,
};

fn small(out: &Path, release: &str, rows: u64) -> GenSpec {
    let mut spec = GenSpec::new(out, release, rows);
    spec.files = 3;
    spec.batch_rows = 64;
    spec.row_group_rows = 100;
    spec.threads = 2;
    spec
}

/// All rows of a release, in part order.
fn read_release(release_dir: &Path) -> Vec<RecordBatch> {
    let dir = release_dir.join("output/bench_entity");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut batches = Vec::new();
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            batches.push(b.unwrap());
        }
    }
    batches
}

/// One row rendered as text, for comparisons across releases.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: String,
    name: String,
    description: Option<String>,
    score: f64,
    location: Option<(String, i64, i64)>,
    synonyms: Vec<String>,
}

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let id = b.column(0).as_string::<i32>();
        let name = b.column(1).as_string::<i32>();
        let desc = b.column(2).as_string::<i32>();
        let score = b.column(3).as_primitive::<Float64Type>();
        let loc = b.column(4).as_struct();
        let chrom = loc.column(0).as_string::<i32>();
        let start = loc.column(1).as_primitive::<Int64Type>();
        let end = loc.column(2).as_primitive::<Int64Type>();
        let syn = b.column(5).as_list::<i32>();
        for i in 0..b.num_rows() {
            out.push(Row {
                id: id.value(i).to_string(),
                name: name.value(i).to_string(),
                description: desc.is_valid(i).then(|| desc.value(i).to_string()),
                score: score.value(i),
                location: loc
                    .is_valid(i)
                    .then(|| (chrom.value(i).to_string(), start.value(i), end.value(i))),
                synonyms: syn
                    .value(i)
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap().to_string())
                    .collect(),
            });
        }
    }
    out
}

#[test]
fn base_release_layout_manifest_and_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = write_release(&small(tmp.path(), "25.03", 1000)).unwrap();
    let release = tmp.path().join("25.03");
    assert_eq!(summary.release_dir, release);
    assert_eq!(
        (summary.rows, summary.changed, summary.replaced),
        (1000, 0, 0)
    );
    assert_eq!(summary.files.len(), 3);
    assert_eq!(
        summary.files.iter().map(|f| f.rows).collect::<Vec<_>>(),
        [333, 333, 334]
    );

    // The manifest is what Open Targets writes, and psystem's reader accepts it.
    let manifest_bytes = std::fs::read(release.join(MANIFEST_NAME)).unwrap();
    let sha1_text = std::fs::read_to_string(release.join(MANIFEST_SHA1_NAME)).unwrap();
    verify_manifest_sha1(&manifest_bytes, &sha1_text, MANIFEST_NAME).unwrap();
    let text = String::from_utf8(manifest_bytes).unwrap();
    for line in text.lines() {
        let (digest, path) = line.split_once("  ./").expect("`<sha1>  ./<path>`");
        assert_eq!(digest.len(), 40);
        let name = path.strip_prefix("output/bench_entity/").unwrap();
        assert!(name.starts_with("part-0000") && name.ends_with("-c000.snappy.parquet"));
        // part-00000-<8-4-4-4-12>-c000.snappy.parquet
        let uuid = &name["part-00000-".len()..name.len() - "-c000.snappy.parquet".len()];
        assert_eq!(
            uuid.split('-').map(str::len).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
    }
    let manifest = parse_checksum_list(&text, Algorithm::Sha1, MANIFEST_NAME).unwrap();
    assert_eq!(manifest.entries.len(), 3);
    for (entry, file) in manifest.entries.iter().zip(&summary.files) {
        assert_eq!(entry.path, file.path);
        assert_eq!(entry.digest, file.sha1);
        verify_file(&release.join(&entry.path), entry).unwrap();
        assert_eq!(
            std::fs::metadata(release.join(&entry.path)).unwrap().len(),
            file.bytes
        );
    }

    // Snappy, row groups of at most 100 rows.
    let first = release.join(&summary.files[0].path);
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&first).unwrap()).unwrap();
    let meta = builder.metadata();
    assert_eq!(meta.num_row_groups(), 4); // 333 rows = 100 + 100 + 100 + 33
    for rg in meta.row_groups() {
        assert!(rg.num_rows() <= 100);
        for c in rg.columns() {
            assert_eq!(c.compression(), Compression::SNAPPY);
        }
    }
    assert_eq!(builder.schema().fields(), schema().fields());

    let all = rows(&read_release(&release));
    assert_eq!(all.len(), 1000);
    assert_eq!(all[0].id, "ENT_0000001");
    assert_eq!(all[999].id, entity_id(999));
    let ids: HashSet<_> = all.iter().map(|r| &r.id).collect();
    assert_eq!(ids.len(), 1000, "ids are unique");
    let descriptions: Vec<&String> = all.iter().filter_map(|r| r.description.as_ref()).collect();
    assert!(descriptions.len() < 1000, "some descriptions are NULL");
    for special in ['\t', '\n', '"', '\\'] {
        assert!(
            descriptions.iter().any(|d| d.contains(special)),
            "some description contains {special:?}"
        );
    }
    assert!(descriptions.iter().any(|d| !d.is_ascii()));
    let mean_len = descriptions
        .iter()
        .map(|d| d.chars().count())
        .sum::<usize>()
        / descriptions.len();
    assert!(
        (70..=100).contains(&mean_len),
        "mean description length {mean_len}"
    );
    assert!(all.iter().any(|r| r.location.is_none()));
    for r in &all {
        assert!((0.0..1.0).contains(&r.score));
        assert!(r.synonyms.len() <= 4);
        if let Some((_, start, end)) = &r.location {
            assert!(1 <= *start && start < end);
        }
    }
    let sizes: HashSet<usize> = all.iter().map(|r| r.synonyms.len()).collect();
    assert_eq!(sizes, (0..=4).collect());
}

#[test]
fn same_seed_same_bytes_whatever_the_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = small(tmp.path(), "a", 500);
    a.threads = 1;
    let mut b = small(&tmp.path().join("other"), "a", 500);
    b.threads = 3;
    let sa = write_release(&a).unwrap();
    let sb = write_release(&b).unwrap();
    let digests = |s: &psystem_bench::generate::GenSummary| {
        s.files
            .iter()
            .map(|f| (f.path.clone(), f.sha1.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(&sa), digests(&sb));
    let mut c = small(tmp.path(), "c", 500);
    c.seed = 2;
    let sc = write_release(&c).unwrap();
    assert_ne!(sa.files[0].sha1, sc.files[0].sha1);
    // The rows of an entity do not depend on the file count.
    let mut d = small(tmp.path(), "d", 500);
    d.files = 1;
    write_release(&d).unwrap();
    assert_eq!(
        rows(&read_release(&tmp.path().join("a"))),
        rows(&read_release(&tmp.path().join("d")))
    );
}

#[test]
fn changed_release_revises_replaces_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    write_release(&small(tmp.path(), "A", 10_000)).unwrap();
    let mut spec_b = small(tmp.path(), "B", 10_000);
    spec_b.change_percent = 10.0;
    let sb = write_release(&spec_b).unwrap();
    let a = rows(&read_release(&tmp.path().join("A")));
    let b = rows(&read_release(&tmp.path().join("B")));
    assert_eq!(b.len(), 10_000);
    let a_by_id: HashMap<&str, &Row> = a.iter().map(|r| (r.id.as_str(), r)).collect();
    let b_ids: HashSet<&str> = b.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(b_ids.len(), 10_000, "ids stay unique");

    let (mut same, mut revised, mut new) = (0u64, 0u64, 0u64);
    for r in &b {
        match a_by_id.get(r.id.as_str()) {
            None => {
                new += 1;
                // New ids come after every base id.
                assert!(r.id.as_str() > "ENT_0010000", "{}", r.id);
            }
            Some(old) if *old == r => same += 1,
            Some(old) => {
                revised += 1;
                assert_ne!(old.score, r.score);
                assert_ne!(old.name, r.name);
                assert!(r.name.ends_with(" (rev)"));
                assert_eq!(
                    (&old.description, &old.location, &old.synonyms),
                    (&r.description, &r.location, &r.synonyms),
                    "only score and name change"
                );
            }
        }
    }
    let removed = a.iter().filter(|r| !b_ids.contains(r.id.as_str())).count() as u64;
    assert_eq!((sb.changed, sb.replaced), (revised, new));
    assert_eq!(removed, new, "as many ids added as removed");
    assert!((800..=1200).contains(&revised), "≈10% revised: {revised}");
    assert!((350..=650).contains(&new), "≈5% replaced: {new}");
    assert_eq!(same + revised + new, 10_000);
    // Positions are kept: an unchanged row stays where it was.
    for (ra, rb) in a.iter().zip(&b) {
        if a_by_id.contains_key(rb.id.as_str()) {
            assert_eq!(ra.id, rb.id);
        }
    }
}

#[test]
fn refuses_an_existing_release_and_bad_specs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("25.03")).unwrap();
    match write_release(&small(tmp.path(), "25.03", 10)) {
        Err(GenError::Exists(p)) => assert_eq!(p, tmp.path().join("25.03")),
        other => panic!("expected Exists, got {other:?}"),
    }
    let bad = |f: &dyn Fn(&mut GenSpec)| {
        let mut s = small(tmp.path(), "new", 10);
        f(&mut s);
        let e = write_release(&s).unwrap_err();
        assert!(matches!(e, GenError::InvalidSpec(_)), "{e:?}");
        e.to_string()
    };
    assert!(bad(&|s| s.files = 11).contains("files"));
    assert!(bad(&|s| s.rows = 0).contains("rows"));
    assert!(bad(&|s| s.change_percent = 70.0).contains("change percent"));
    assert!(bad(&|s| s.change_percent = f64::NAN).contains("change percent"));
    assert!(bad(&|s| s.release = "../x".into()).contains("path component"));
    assert!(bad(&|s| s.dataset = "a/b".into()).contains("path component"));
    assert!(
        !tmp.path().join("new").exists(),
        "nothing written for a bad spec"
    );

    // An unwritable output folder is an Io error naming the path.
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    match write_release(&small(&file, "r", 10)) {
        Err(e @ GenError::Io { .. }) => assert!(e.to_string().contains("not-a-dir"), "{e}"),
        other => panic!("expected Io, got {other:?}"),
    }
}
