//! The files source on real files: the Kids First ingest library's fixtures
//! (`shared/fixtures/kidsfirst/kf-lib-data-ingest_fixtures`), and CSV/JSON Lines/Parquet files
//! written here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field, Schema};
use psystem_sources::files::{
    ColumnType, FileFormat, FilePosition, FilesConfig, FilesSource, Rename, TypeOrigin,
};
use psystem_sources::SourceError;
use sha2::{Digest, Sha256};

const KF: &str = "kidsfirst/kf-lib-data-ingest_fixtures";

/// `shared/fixtures/kidsfirst/kf-lib-data-ingest_fixtures`: beside the work tree, else under
/// `$PSYSTEM_FIXTURES`.
fn kf_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = vec![manifest.join("../../../shared/fixtures").join(KF)];
    if let Some(dir) = std::env::var_os("PSYSTEM_FIXTURES") {
        candidates.push(PathBuf::from(dir).join(KF));
    }
    candidates.iter().find(|p| p.is_dir()).cloned().unwrap_or_else(|| {
        panic!("Kids First fixtures not found at {candidates:?}; set PSYSTEM_FIXTURES to the shared/fixtures directory")
    })
}

fn kf(name: &str) -> String {
    kf_dir().join(name).to_string_lossy().into_owned()
}

fn config(path: &str, batch_rows: usize) -> FilesConfig {
    FilesConfig {
        batch_rows,
        ..FilesConfig::new(path)
    }
}

/// Every cell of `batches` as text (`∅` for null), row by row.
fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default();
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| {
                        if c.is_null(r) {
                            "∅".to_string()
                        } else {
                            f.value(r).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

/// Reads from `from` to the end; the batches and the position after each.
async fn read_from(
    source: &mut FilesSource,
    from: Option<FilePosition>,
) -> (Vec<RecordBatch>, Vec<FilePosition>, Vec<u64>) {
    let (mut batches, mut positions, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    let mut pos = from;
    let mut saw_last = false;
    while let Some(page) = source.read_batch(pos.as_ref()).await.unwrap() {
        assert!(!saw_last, "a batch after the one marked last");
        assert!(page.batch.num_rows() > 0);
        assert_eq!(page.batch.schema(), source.schema());
        saw_last = page.last;
        batches.push(page.batch);
        positions.push(page.next.clone());
        bytes.push(page.bytes);
        pos = Some(page.next);
    }
    assert!(
        batches.is_empty() || saw_last,
        "the final batch must be marked last"
    );
    (batches, positions, bytes)
}

async fn read_all(config: FilesConfig) -> (FilesSource, Vec<RecordBatch>) {
    let mut source = FilesSource::open(config).await.unwrap();
    let (batches, _, _) = read_from(&mut source, None).await;
    (source, batches)
}

/// Data rows of a delimited fixture counted independently: non-blank lines, less the header and
/// the rows made only of `[ignore]` cells (no fixture has line breaks inside quotes).
fn count_rows(path: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let delimiter = if path.ends_with(".csv") { ',' } else { '\t' };
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !l.split(delimiter)
                .map(str::trim)
                .all(|c| c == "[ignore]" || c.is_empty())
        })
        .collect();
    lines.len() - 1
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(kf_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    names
}

fn column_names(source: &FilesSource) -> Vec<String> {
    source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

fn file_error(e: SourceError) -> (Option<u64>, Option<String>, String, String) {
    let message = e.to_string();
    match e {
        SourceError::File {
            line,
            column,
            detail,
            ..
        } => (line, column, detail, message),
        other => panic!("expected SourceError::File, got {other:?}"),
    }
}

#[tokio::test]
async fn every_fixture_reads_all_its_rows() {
    for name in fixture_names() {
        let path = kf(&name);
        let size = std::fs::metadata(&path).unwrap().len();
        let mut source = FilesSource::open(config(&path, 4)).await.unwrap();
        let (batches, positions, bytes) = read_from(&mut source, None).await;
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(total, count_rows(&path), "{name}");
        assert!(batches.iter().all(|b| b.num_rows() <= 4), "{name}");
        // The batches cover the whole file, header included, and end at its end.
        assert_eq!(bytes.iter().sum::<u64>(), size, "{name}");
        let end = positions.last().unwrap();
        assert_eq!((end.byte, end.record), (size, total as u64), "{name}");
        // Reading from the end gives nothing.
        assert!(source.read_batch(Some(end)).await.unwrap().is_none());
        // Fingerprint.
        let fp = source.fingerprint();
        assert_eq!(fp.size, size);
        assert!(fp.modified.is_some());
        let sha = Sha256::digest(std::fs::read(&path).unwrap());
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(fp.sha256, hex);
        assert_eq!(source.path(), Path::new(&path));
        let expected_format = if name.ends_with(".csv") {
            FileFormat::Csv
        } else {
            FileFormat::Tsv
        };
        assert_eq!(source.format(), expected_format, "{name}");
        assert_eq!(
            source.inference().len(),
            source.schema().fields().len(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn family_and_phenotype_drops_ignore_rows_and_columns_and_renames_duplicates() {
    let (source, batches) = read_all(config(&kf("docs__family_and_phenotype.tsv"), 100)).await;
    assert_eq!(source.delimiter(), Some(b'\t'));
    assert_eq!(
        column_names(&source),
        [
            "participant",
            "mother",
            "father",
            "gender",
            "specimens",
            "age (hrs)",
            "CLEFT_EGO",
            "CLEFT_ID",
            "age (hrs)_2",
            "EXTRA_EARDRUM"
        ]
    );
    let all = rows(&batches);
    assert_eq!(all.len(), 9);
    assert!(all.iter().flatten().all(|c| c != "[ignore]"));
    assert_eq!(
        all[0],
        [
            "PID001",
            "2",
            "3",
            "F",
            "SP001A,SP001B",
            "4",
            "true",
            "false",
            "4",
            "false"
        ]
    );
    // " " cells are nulls.
    assert_eq!(all[1][1..4], ["∅", "∅", "∅"]);
    let dup = &source.inference()[8];
    assert_eq!(dup.name, "age (hrs)_2");
    assert_eq!(dup.source_name, "age (hrs)");
    assert_eq!(
        dup.renamed,
        Some(Rename::Duplicate {
            of: "age (hrs)".into()
        })
    );
    assert_eq!(
        dup.position, 9,
        "position in the file, counting the dropped column"
    );
    assert_eq!(dup.data_type, DataType::Int64);
    assert_eq!(source.inference()[0].renamed, None);
    let mother = &source.inference()[1];
    assert_eq!((mother.sample_rows, mother.non_null), (9, 3));
    assert_eq!(mother.data_type, DataType::Int64);
    assert!(dup.to_string().contains("repeats `age (hrs)`"), "{dup}");
}

#[tokio::test]
async fn sample_manifest_bom_stripped_and_comma_detected() {
    let (source, batches) =
        read_all(config(&kf("sample_registration__sample_manifest.csv"), 5)).await;
    assert_eq!(source.delimiter(), Some(b','));
    assert_eq!(source.format(), FileFormat::Csv);
    let names = column_names(&source);
    assert_eq!(names[0], "sample_id");
    assert_eq!(names.len(), 8);
    let all = rows(&batches);
    assert_eq!(all.len(), 12);
    assert_eq!(all[0][0], "s001");
    assert_eq!(
        all[11],
        ["s007", "na", "p03", "tumor", "tissue", "61", "NA", "na"]
    );
    let age = &source.inference()[5];
    assert_eq!(
        (age.name.as_str(), &age.data_type),
        ("age_at_collection", &DataType::Int64)
    );
    // `na`/`NA` are text, not nulls.
    assert_eq!(source.inference()[1].data_type, DataType::Utf8);
    assert_eq!(source.inference()[1].non_null, 12);
}

#[tokio::test]
async fn multi_valued_columns_are_lists() {
    let mut cfg = config(&kf("test_study__split_rows_tsv_1.tsv"), 100);
    cfg.multi_valued = BTreeMap::from([
        ("diagnosis".to_string(), ",".to_string()),
        ("bsid".to_string(), ",".to_string()),
    ]);
    let (source, batches) = read_all(cfg).await;
    assert_eq!(
        column_names(&source),
        ["pid", "diagnosis", "bsid", "file_name", "file_name_2"]
    );
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    assert_eq!(source.schema().field(1).data_type(), &list);
    assert_eq!(source.schema().field(2).data_type(), &list);
    assert_eq!(source.inference()[1].origin, TypeOrigin::MultiValued);
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    let diagnosis = batch.column(1).as_list::<i32>();
    let items = |row: usize| -> Vec<String> {
        let v = diagnosis.value(row);
        let s = v.as_string::<i32>();
        (0..s.len()).map(|i| s.value(i).to_string()).collect()
    };
    assert_eq!(items(0), ["head", "shoulders", "knees"]);
    assert_eq!(items(2), ["head", "shoulders", "knees"]); // "head, shoulders, knees"
    assert_eq!(items(4), ["eyes", "ears"]);
    assert_eq!(items(5), ["head"]);
    assert!(diagnosis.is_null(7) && diagnosis.is_null(8));
    let bsid = batch.column(2).as_list::<i32>();
    assert_eq!(bsid.value(4).as_string::<i32>().len(), 3); // "7,8,9"
    assert!(bsid.is_null(8));
    assert_eq!(
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        (1..=9).collect::<Vec<i64>>()
    );
}

#[tokio::test]
async fn inference_report() {
    let mut source = FilesSource::open(config(&kf("test_study__simple_headered_tsv_1.tsv"), 10))
        .await
        .unwrap();
    let report = |name: &str| {
        source
            .inference()
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .clone()
    };
    let age = report("age in hours");
    assert_eq!(
        (age.data_type.clone(), age.origin),
        (DataType::Int64, TypeOrigin::Inferred)
    );
    assert_eq!((age.sample_rows, age.non_null), (24, 24));
    assert_eq!(age.example.as_deref(), Some("4"));
    assert_eq!(report("age in hours_2").data_type, DataType::Int64);
    assert_eq!(report("gender").data_type, DataType::Utf8);
    assert_eq!(report("gender").non_null, 8);
    assert_eq!(report("CLEFT_EGO").data_type, DataType::Boolean);
    assert_eq!(report("consent").data_type, DataType::Int64);
    let line = report("CLEFT_EGO").to_string();
    assert_eq!(
        line,
        "CLEFT_EGO: Boolean, inferred; 24 of 24 sample rows non-null, e.g. `TRUE`"
    );
    let json = serde_json::to_value(report("age in hours_2")).unwrap();
    assert_eq!(json["data_type"], "Int64");
    assert_eq!(json["renamed"]["duplicate"]["of"], "age in hours");
    let page = source.read_batch(None).await.unwrap().unwrap();
    let cleft = page.batch.column(6).as_boolean();
    assert!(cleft.value(0) && !cleft.value(8));

    // Declared types win; inference off makes the rest text.
    let mut cfg = config(&kf("test_study__simple_headered_tsv_1.tsv"), 10);
    cfg.casts = BTreeMap::from([
        ("consent".to_string(), ColumnType::Text),
        ("age in hours".to_string(), ColumnType::Float64),
    ]);
    cfg.infer_types = false;
    let (source, batches) = read_all(cfg).await;
    let types: Vec<DataType> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(types[4], DataType::Utf8);
    assert_eq!(types[5], DataType::Float64);
    assert_eq!(types[6], DataType::Utf8);
    assert_eq!(source.inference()[5].origin, TypeOrigin::Declared);
    assert_eq!(source.inference()[6].origin, TypeOrigin::NotInferred);
    assert_eq!(rows(&batches)[0][6], "TRUE");
    let ages = batches[0]
        .column(5)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(ages.value(1), 435.0);
}

/// Reads `cfg` in batches of 3, then from every returned position (serialised to JSON and back,
/// as the ledger stores it) in a fresh source: the rows must be exactly the rest of the file.
async fn assert_resume_equivalence(cfg: FilesConfig) -> usize {
    let (_, full) = read_all(FilesConfig {
        batch_rows: 1_000_000,
        ..cfg.clone()
    })
    .await;
    let full = rows(&full);
    let three = FilesConfig {
        batch_rows: 3,
        ..cfg.clone()
    };
    let mut source = FilesSource::open(three.clone()).await.unwrap();
    let (batches, positions, _) = read_from(&mut source, None).await;
    assert_eq!(rows(&batches), full, "batched read of {}", cfg.path);
    let mut before = 0usize;
    for (batch, pos) in batches.iter().zip(&positions) {
        before += batch.num_rows();
        assert_eq!(pos.record, before as u64);
        let stored = serde_json::to_string(pos).unwrap();
        let pos: FilePosition = serde_json::from_str(&stored).unwrap();
        let mut fresh = FilesSource::open(three.clone()).await.unwrap();
        let (rest, _, _) = read_from(&mut fresh, Some(pos.clone())).await;
        assert_eq!(rows(&rest), full[before..], "{} from {stored}", cfg.path);
        // The same source, jumping back to an earlier position, agrees too.
        let (again, _, _) = read_from(&mut source, Some(pos)).await;
        assert_eq!(rows(&again), full[before..]);
    }
    full.len()
}

#[tokio::test]
async fn resume_from_any_position_kidsfirst_csv_and_tsv() {
    for name in [
        "sample_registration__sample_manifest.csv",
        "docs__family_and_phenotype.tsv",
        "test_study__simple_headered_tsv_1.tsv",
        "test_study__split_rows_tsv_1.tsv",
        "test_study__extract_outputs__simple_tsv_example2_output.tsv",
    ] {
        let n = assert_resume_equivalence(config(&kf(name), 3)).await;
        assert_eq!(n, count_rows(&kf(name)), "{name}");
    }
}

#[tokio::test]
async fn resume_from_any_position_with_quotes_line_breaks_and_ignored_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tricky.csv");
    let mut text =
        String::from("\u{feff}note,[ignore]\r\n[ignore],[ignore]\r\nid, name ,remark\r\n");
    for i in 1..=20 {
        match i % 5 {
            0 => text.push_str(&format!(
                "{i},\"multi\r\nline, with comma\",\"say \"\"hi\"\"\"\r\n"
            )),
            1 => text.push_str("[ignore],,[ignore]\r\n\r\n"),
            2 => text.push_str(&format!("{i},plain,\r\n   \r\n")),
            _ => text.push_str(&format!("{i},\"quoted\",x\r\n")),
        }
    }
    std::fs::write(&path, text).unwrap();
    let mut cfg = config(path.to_str().unwrap(), 3);
    cfg.skip_rows = 1;
    let n = assert_resume_equivalence(cfg.clone()).await;
    assert_eq!(n, 16);
    let (source, batches) = read_all(cfg).await;
    assert_eq!(column_names(&source), ["id", "name", "remark"]);
    let all = rows(&batches);
    assert_eq!(all[3], ["5", "multi\r\nline, with comma", "say \"hi\""]);
    assert_eq!(all[0], ["2", "plain", "∅"]);
}

fn write_jsonl(dir: &Path, lines: usize) -> PathBuf {
    let path = dir.join("rows.ndjson");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..lines {
        // Written by hand: keys in this order (serde_json's `json!` would sort them).
        let maybe = if i % 3 == 0 {
            "null".to_string()
        } else {
            i.to_string()
        };
        let line = format!(
            r#"{{"id": {i}, "score": {}, "name": "row {i}", "flag": {}, "day": "2024-01-{:02}", "tags": ["a", "t{i}"], "meta": {{"k": {i}}}, "maybe": {maybe}}}"#,
            i as f64 / 4.0,
            i % 2 == 0,
            i % 28 + 1
        );
        writeln!(f, "{line}").unwrap();
        if i == 4 {
            writeln!(f).unwrap(); // a blank line
        }
    }
    path
}

#[tokio::test]
async fn jsonl_types_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_jsonl(dir.path(), 17);
    let n = assert_resume_equivalence(config(path.to_str().unwrap(), 3)).await;
    assert_eq!(n, 17);
    let mut cfg = config(path.to_str().unwrap(), 100);
    cfg.multi_valued = BTreeMap::from([("tags".to_string(), ",".to_string())]);
    let (source, batches) = read_all(cfg).await;
    assert_eq!(source.format(), FileFormat::Jsonl);
    let types: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            "id:Int64",
            "score:Float64",
            "name:Utf8",
            "flag:Boolean",
            "day:Date32",
            "tags:List(Utf8)",
            "meta:Utf8",
            "maybe:Int64"
        ]
    );
    let all = rows(&batches);
    assert_eq!(
        all[1],
        [
            "1",
            "0.25",
            "row 1",
            "false",
            "2024-01-02",
            "[a, t1]",
            "{\"k\":1}",
            "1"
        ]
    );
    assert_eq!(all[3][7], "∅");
}

#[tokio::test]
async fn jsonl_value_past_the_sample_must_fit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.jsonl");
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!("{{\"n\": {i}}}\n"));
    }
    text.push_str("{\"n\": \"lots\", \"new\": 1}\n");
    std::fs::write(&path, text).unwrap();
    let mut source = FilesSource::open(config(path.to_str().unwrap(), 600))
        .await
        .unwrap();
    let first = source.read_batch(None).await.unwrap().unwrap();
    assert_eq!(first.batch.num_rows(), 600);
    let e = source.read_batch(Some(&first.next)).await.unwrap_err();
    let (line, column, detail, _) = file_error(e);
    assert_eq!((line, column.as_deref()), (Some(1001), Some("n")));
    assert!(
        detail.contains("`lots`") && detail.contains("casts"),
        "{detail}"
    );
}

fn write_parquet(dir: &Path, rows: i64) -> PathBuf {
    let path = dir.join("table.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let ids = Int64Array::from_iter_values(0..rows);
    let names = StringArray::from_iter((0..rows).map(|i| (i % 4 != 0).then(|| format!("n{i}"))));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(names)]).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(4))
        .build();
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

#[tokio::test]
async fn parquet_reads_and_resumes_across_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(dir.path(), 11);
    let n = assert_resume_equivalence(config(path.to_str().unwrap(), 3)).await;
    assert_eq!(n, 11);
    let mut source = FilesSource::open(config(path.to_str().unwrap(), 5))
        .await
        .unwrap();
    assert_eq!(source.format(), FileFormat::Parquet);
    let report = &source.inference()[1];
    assert_eq!(
        (
            report.origin,
            report.sample_rows,
            report.non_null,
            report.example.as_deref()
        ),
        (TypeOrigin::File, 11, 8, Some("n1"))
    );
    let (batches, positions, bytes) = read_from(&mut source, None).await;
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 11);
    assert_eq!(positions.last().unwrap().record, 11);
    assert_eq!(bytes.iter().sum::<u64>(), source.fingerprint().size);
    // A position past the end is refused.
    let e = source
        .read_batch(Some(&FilePosition {
            byte: 0,
            line: 0,
            record: 12,
        }))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("past the file's 11 rows"), "{e}");
    // Parquet declares its own types.
    let mut cfg = config(path.to_str().unwrap(), 5);
    cfg.casts.insert("id".into(), ColumnType::Text);
    assert!(matches!(
        FilesSource::open(cfg).await.unwrap_err(),
        SourceError::Config { .. }
    ));
    // Sniffed without an extension.
    let bare = dir.path().join("table");
    std::fs::copy(&path, &bare).unwrap();
    let source = FilesSource::open(config(bare.to_str().unwrap(), 5))
        .await
        .unwrap();
    assert_eq!(source.format(), FileFormat::Parquet);
}

#[tokio::test]
async fn ragged_row_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ragged.csv");
    std::fs::write(&path, "a,b,c\r\n1,2,3\r\n4,5,6\r\n7,8\r\n9,10,11\r\n").unwrap();
    let e = FilesSource::open(config(path.to_str().unwrap(), 10))
        .await
        .unwrap_err();
    let (line, _, detail, message) = file_error(e);
    assert_eq!(line, Some(4));
    assert!(message.contains("ragged.csv, line 4"), "{message}");
    assert!(detail.contains("2 fields but the header has 3"), "{detail}");
    // A ragged row past the sample fails while reading, naming its line.
    let mut text = String::from("a\tb\n");
    for i in 0..1200 {
        text.push_str(&format!("{i}\tx\n"));
    }
    text.push_str("1200\tx\textra\n");
    let path = dir.path().join("late.tsv");
    std::fs::write(&path, text).unwrap();
    let mut source = FilesSource::open(config(path.to_str().unwrap(), 1000))
        .await
        .unwrap();
    let first = source.read_batch(None).await.unwrap().unwrap();
    let (line, _, _, message) = file_error(source.read_batch(Some(&first.next)).await.unwrap_err());
    assert_eq!(line, Some(1202), "{message}");
    assert!(message.contains("late.tsv"), "{message}");
}

#[tokio::test]
async fn value_breaking_the_inferred_type_is_an_error_naming_line_column_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ages.csv");
    let mut text = String::from("id,age\r\n");
    for i in 0..1000 {
        text.push_str(&format!("p{i},{}\r\n", i % 90));
    }
    text.push_str("p1000,unknown\r\n");
    std::fs::write(&path, &text).unwrap();
    let mut source = FilesSource::open(config(path.to_str().unwrap(), 400))
        .await
        .unwrap();
    assert_eq!(source.inference()[1].data_type, DataType::Int64);
    let mut pos = None;
    let e = loop {
        match source.read_batch(pos.as_ref()).await {
            Ok(Some(page)) => pos = Some(page.next),
            Ok(None) => panic!("read to the end without an error"),
            Err(e) => break e,
        }
    };
    let (line, column, detail, message) = file_error(e);
    assert_eq!((line, column.as_deref()), (Some(1002), Some("age")));
    assert!(detail.contains("`unknown`"), "{detail}");
    assert!(detail.contains("first 1000 data rows"), "{detail}");
    assert!(detail.contains("casts: {'age': text}"), "{detail}");
    assert!(
        message.contains("ages.csv, line 1002, column `age`"),
        "{message}"
    );
    // Declaring the column text reads it all.
    let mut cfg = config(path.to_str().unwrap(), 400);
    cfg.casts.insert("age".into(), ColumnType::Text);
    let (_, batches) = read_all(cfg).await;
    assert_eq!(rows(&batches)[1000], ["p1000", "unknown"]);
    // A declared type that a value does not fit says so.
    let path2 = dir.path().join("declared.csv");
    std::fs::write(&path2, "id,n\n1,007\n2,3.0\n3,x\n").unwrap();
    let mut cfg = config(path2.to_str().unwrap(), 10);
    cfg.casts.insert("n".into(), ColumnType::Int64);
    let mut source = FilesSource::open(cfg).await.unwrap();
    let (line, _, detail, _) = file_error(source.read_batch(None).await.unwrap_err());
    assert_eq!(line, Some(4));
    assert!(detail.contains("as declared in `casts`"), "{detail}");
}

#[tokio::test]
async fn non_utf8_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.tsv");
    std::fs::write(&path, b"name\tcity\nAnna\tZ\xfcrich\n").unwrap();
    let e = FilesSource::open(config(path.to_str().unwrap(), 10))
        .await
        .unwrap_err();
    let (line, column, detail, _) = file_error(e);
    assert_eq!((line, column.as_deref()), (Some(2), Some("city")));
    assert!(
        detail.contains("UTF-8") && detail.contains("0xFC") && detail.contains("iconv"),
        "{detail}"
    );
}

#[tokio::test]
async fn header_options_and_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.txt");
    std::fs::write(&path, "# exported 2024\n1|a| x \n2|b|\n").unwrap();
    let mut cfg = config(path.to_str().unwrap(), 10);
    cfg.header = false;
    cfg.skip_rows = 1;
    let (source, batches) = read_all(cfg).await;
    assert_eq!(source.delimiter(), Some(b'|'));
    assert_eq!(source.format(), FileFormat::Csv);
    assert_eq!(column_names(&source), ["column_1", "column_2", "column_3"]);
    assert_eq!(source.inference()[0].renamed, Some(Rename::NoHeader));
    // Text keeps surrounding spaces.
    assert_eq!(rows(&batches), [["1", "a", " x "], ["2", "b", "∅"]]);

    // Empty header names.
    let path = dir.path().join("empty_names.csv");
    std::fs::write(&path, "a,,c\n1,2,3\n").unwrap();
    let (source, _) = read_all(config(path.to_str().unwrap(), 10)).await;
    assert_eq!(column_names(&source), ["a", "column_2", "c"]);
    assert_eq!(source.inference()[1].renamed, Some(Rename::Empty));

    // casts naming a missing column.
    let mut cfg = config(path.to_str().unwrap(), 10);
    cfg.casts.insert("nope".into(), ColumnType::Int64);
    let e = FilesSource::open(cfg).await.unwrap_err();
    assert!(
        matches!(e, SourceError::Config { .. }) && e.to_string().contains("nope"),
        "{e}"
    );
    // Bad settings.
    let bad = [
        FilesConfig {
            batch_rows: 0,
            ..config(path.to_str().unwrap(), 1)
        },
        FilesConfig::new(""),
        FilesConfig {
            delimiter: Some(b'\n'),
            ..config(path.to_str().unwrap(), 1)
        },
        FilesConfig {
            ignore_marker: Some(" ".into()),
            ..config(path.to_str().unwrap(), 1)
        },
        FilesConfig::new("http://127.0.0.1:9/x.csv"), // no cache_dir
    ];
    for cfg in bad {
        assert!(
            matches!(
                FilesSource::open(cfg.clone()).await,
                Err(SourceError::Config { .. })
            ),
            "{cfg:?}"
        );
    }
    // A missing file, a gzip file.
    let e = FilesSource::open(FilesConfig::new(
        dir.path().join("missing.csv").to_str().unwrap(),
    ))
    .await
    .unwrap_err();
    assert!(e.to_string().contains("missing.csv"), "{e}");
    let gz = dir.path().join("x.csv.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
    let e = FilesSource::open(FilesConfig::new(gz.to_str().unwrap()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("decompress"), "{e}");
    // A position outside the file.
    let mut source = FilesSource::open(config(path.to_str().unwrap(), 10))
        .await
        .unwrap();
    let e = source
        .read_batch(Some(&FilePosition {
            byte: 1_000,
            line: 9,
            record: 3,
        }))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("has changed since the checkpoint"),
        "{e}"
    );
    // file:// URLs.
    let url = format!("file://{}", path.display());
    let (source, batches) = read_all(config(&url, 10)).await;
    assert_eq!(source.path(), path.as_path());
    assert_eq!(rows(&batches).len(), 1);
}

#[test]
fn config_and_position_serde() {
    let cfg: FilesConfig = serde_json::from_value(serde_json::json!({
        "path": "data/x.tsv",
        "format": "tsv",
        "delimiter": "tab",
        "quote": "'",
        "multi_valued": {"specimens": ","},
        "casts": {"age (hrs)": "int64", "when": "timestamp"},
        "ignore_marker": null
    }))
    .unwrap();
    assert_eq!(cfg.format, Some(FileFormat::Tsv));
    assert_eq!((cfg.delimiter, cfg.quote), (Some(b'\t'), Some(b'\'')));
    assert_eq!(cfg.casts["age (hrs)"], ColumnType::Int64);
    assert_eq!(cfg.ignore_marker, None);
    assert_eq!(
        (cfg.header, cfg.batch_rows, cfg.infer_types),
        (true, 10_000, true)
    );
    let back: FilesConfig = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    let defaults: FilesConfig = serde_json::from_value(serde_json::json!({"path": "x"})).unwrap();
    assert_eq!(defaults.ignore_marker.as_deref(), Some("[ignore]"));
    assert!(serde_json::from_value::<FilesConfig>(
        serde_json::json!({"path": "x", "delimiter": ",,"})
    )
    .is_err());
    assert!(
        serde_json::from_value::<FilesConfig>(serde_json::json!({"path": "x", "nope": 1})).is_err()
    );
    let pos = FilePosition {
        byte: 10,
        line: 2,
        record: 1,
    };
    assert_eq!(
        serde_json::to_value(&pos).unwrap(),
        serde_json::json!({"byte": 10, "line": 2, "record": 1})
    );
}

/// A one-file HTTP server on 127.0.0.1 that answers `/table.csv` with `body` (404 otherwise) and
/// counts requests; it stops after 10 s or when the test ends.
fn serve_once(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(2)))
                        .unwrap();
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let found = request.starts_with(b"GET /table.csv ");
                    let (status, payload) = if found {
                        ("200 OK", body.clone())
                    } else {
                        ("404 Not Found", b"no such file".to_vec())
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        payload.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&payload);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (url, hits)
}

#[tokio::test]
async fn http_files_are_downloaded_once_into_the_cache() {
    let body = std::fs::read(kf("sample_registration__sample_manifest.csv")).unwrap();
    let (base, hits) = serve_once(body.clone());
    let cache = tempfile::tempdir().unwrap();
    let cfg = FilesConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..config(&format!("{base}/table.csv"), 100)
    };
    let (source, batches) = read_all(cfg.clone()).await;
    assert_eq!(rows(&batches).len(), 12);
    assert!(source.path().starts_with(cache.path()));
    assert_eq!(std::fs::read(source.path()).unwrap(), body);
    assert_eq!(column_names(&source)[0], "sample_id");
    let (again, _) = read_all(cfg.clone()).await;
    assert_eq!(again.path(), source.path());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second open uses the download"
    );
    // A 404 is an error naming the URL and the status.
    let cfg = FilesConfig {
        path: format!("{base}/missing.csv"),
        ..cfg
    };
    let e = FilesSource::open(cfg).await.unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("missing.csv") && message.contains("404"),
        "{message}"
    );
    assert!(
        std::fs::read_dir(cache.path()).unwrap().count() == 1,
        "no partial download left"
    );
}

#[tokio::test]
async fn header_only_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let header_only = dir.path().join("header_only.csv");
    std::fs::write(&header_only, "a,b\n").unwrap();
    let mut source = FilesSource::open(config(header_only.to_str().unwrap(), 10))
        .await
        .unwrap();
    assert_eq!(column_names(&source), ["a", "b"]);
    assert_eq!(source.inference()[0].data_type, DataType::Utf8);
    assert!(source.read_batch(None).await.unwrap().is_none());
    for (name, content) in [
        ("empty.csv", ""),
        ("blank.tsv", "\n\n"),
        ("empty.jsonl", ""),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let e = FilesSource::open(config(path.to_str().unwrap(), 10))
            .await
            .unwrap_err();
        assert!(matches!(e, SourceError::File { .. }), "{name}: {e}");
    }
    let bad_json = dir.path().join("bad.jsonl");
    std::fs::write(&bad_json, "{\"a\": 1}\n[1, 2]\n").unwrap();
    let (line, _, detail, _) = file_error(
        FilesSource::open(config(bad_json.to_str().unwrap(), 10))
            .await
            .unwrap_err(),
    );
    assert_eq!(line, Some(2));
    assert!(detail.contains("one JSON object"), "{detail}");
}

#[test]
fn sources_and_their_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let open = FilesSource::open(FilesConfig::new("x.csv"));
    send(&open);
    drop(open);
    fn source_is_send<T: Send>() {}
    source_is_send::<FilesSource>();
    #[allow(dead_code)]
    async fn read(mut s: FilesSource) {
        let _ = s.read_batch(None).await;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let fut = async {
        let s = FilesSource::open(FilesConfig::new("/nonexistent.csv")).await;
        if let Ok(s) = s {
            read(s).await;
        }
    };
    send(&fut);
}
