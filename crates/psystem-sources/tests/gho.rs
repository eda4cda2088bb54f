//! The GHO OData source against a real local HTTP server (`psystem_testkit::gho_server`) serving the
//! saved WHO response `shared/fixtures/who_gho/WSH_8.json` (165 rows), with injected faults.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use psystem_sources::gho::{GhoConfig, GhoPage, GhoSource, RetryPolicy};
use psystem_sources::SourceError;
use psystem_testkit::gho_server::{Fault, GhoServer};
use serde_json::Value;

const INDICATOR: &str = "WSH_8";

/// `shared/fixtures/who_gho/WSH_8.json`: under `$PSYSTEM_FIXTURES` if set, else the `shared/` folder
/// beside the work tree, else the repository's copy in `assets/demo/who_gho/`.
fn fixture_path() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = match std::env::var_os("PSYSTEM_FIXTURES") {
        Some(dir) => vec![PathBuf::from(dir).join("who_gho/WSH_8.json")],
        None => vec![
            manifest.join("../../../shared/fixtures/who_gho/WSH_8.json"),
            manifest.join("../../assets/demo/who_gho/WSH_8.json"),
        ],
    };
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("fixture WSH_8.json not found at {candidates:?}; set PSYSTEM_FIXTURES to the shared/fixtures directory")
    })
}

fn fixture() -> Value {
    serde_json::from_slice(&std::fs::read(fixture_path()).unwrap()).unwrap()
}

fn fixture_rows() -> Vec<Value> {
    fixture()["value"].as_array().unwrap().clone()
}

/// A temp dir holding `WSH_8.json` (as `file`, or the fixture as is) and a server on it.
fn serve(file: Option<&Value>) -> (tempfile::TempDir, GhoServer) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(format!("{INDICATOR}.json"));
    match file {
        Some(v) => std::fs::write(&target, serde_json::to_vec_pretty(v).unwrap()).unwrap(),
        None => {
            std::fs::copy(fixture_path(), &target).unwrap();
        }
    }
    let server = GhoServer::start(dir.path()).unwrap();
    (dir, server)
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

fn source(server: &GhoServer, page_size: u64) -> GhoSource {
    GhoSource::new(GhoConfig {
        page_size,
        timeout: Duration::from_secs(10),
        retry: fast_retry(4),
        ..GhoConfig::new(server.api_url(), INDICATOR)
    })
    .unwrap()
}

async fn fetch_all(source: &GhoSource) -> Vec<GhoPage> {
    let mut pages = Vec::new();
    let mut skip = 0;
    loop {
        let page = source.fetch_page(skip).await.unwrap();
        skip = page.next_skip();
        let last = page.is_last();
        pages.push(page);
        if last {
            return pages;
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

fn ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column_by_name("Id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

/// RFC 3339 → UTC microseconds, computed by hand (independent of the source's parser):
/// `YYYY-MM-DDTHH:MM:SS[.f+][Z|±HH:MM]`.
fn rfc3339_micros(s: &str) -> i64 {
    let (date, rest) = s.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-']).unwrap();
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':').unwrap();
        (
            c,
            sign * (h.parse::<i64>().unwrap() * 3600 + m.parse::<i64>().unwrap() * 60),
        )
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let micros_frac: i64 = format!("{frac:0<6}")[..6].parse().unwrap();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2] - offset_secs) * 1_000_000 + micros_frac
}

#[test]
fn timestamp_helper_is_right() {
    // 2013-06-11T12:01:25.3Z = 1370952085.3 s (date -u -d @1370952085).
    assert_eq!(
        rfc3339_micros("2013-06-11T14:01:25.3+02:00"),
        1_370_952_085_300_000
    );
    assert_eq!(rfc3339_micros("1970-01-01T00:00:00Z"), 0);
}

/// Asserts that `batch` row `r` equals the fixture row `row` in every schema field.
fn assert_row_equals(batch: &RecordBatch, r: usize, row: &Value) {
    let obj = row.as_object().unwrap();
    for field in GhoSource::schema().fields() {
        let name = field.name();
        let col = batch.column_by_name(name).unwrap();
        let expected = obj.get(name).unwrap_or(&Value::Null);
        let ctx = format!("row Id {} field {name}", row["Id"]);
        if expected.is_null() {
            assert!(col.is_null(r), "{ctx}: expected null");
            continue;
        }
        assert!(col.is_valid(r), "{ctx}: unexpected null");
        match field.data_type() {
            DataType::Int64 => {
                assert_eq!(
                    col.as_primitive::<Int64Type>().value(r),
                    expected.as_i64().unwrap(),
                    "{ctx}"
                )
            }
            DataType::Float64 => assert_eq!(
                col.as_primitive::<Float64Type>().value(r).to_bits(),
                expected.as_f64().unwrap().to_bits(),
                "{ctx}"
            ),
            DataType::Utf8 => assert_eq!(
                col.as_string::<i32>().value(r),
                expected.as_str().unwrap(),
                "{ctx}"
            ),
            DataType::Timestamp(_, _) => assert_eq!(
                col.as_primitive::<TimestampMicrosecondType>().value(r),
                rfc3339_micros(expected.as_str().unwrap()),
                "{ctx}"
            ),
            other => panic!("{ctx}: unexpected type {other}"),
        }
    }
}

#[tokio::test]
async fn pages_through_the_fixture_with_every_value_intact() {
    let (_dir, server) = serve(None);
    let src = source(&server, 50);
    let pages = fetch_all(&src).await;

    assert_eq!(
        pages.iter().map(|p| p.batch.num_rows()).collect::<Vec<_>>(),
        vec![50, 50, 50, 15]
    );
    assert_eq!(
        pages.iter().map(|p| p.skip).collect::<Vec<_>>(),
        vec![0, 50, 100, 150]
    );
    for page in &pages {
        assert_eq!(page.total, Some(165));
        assert_eq!(page.batch.schema(), GhoSource::schema());
        assert!(page.unknown_fields.is_empty(), "{:?}", page.unknown_fields);
        assert!(page.bytes > 0);
    }
    let got: Vec<i64> = pages.iter().flat_map(|p| ids(&p.batch)).collect();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "Ids not strictly increasing: {got:?}"
    );

    let mut rows = fixture_rows();
    rows.sort_by_key(|r| r["Id"].as_i64().unwrap());
    let want: Vec<i64> = rows.iter().map(|r| r["Id"].as_i64().unwrap()).collect();
    assert_eq!(got, want);

    let mut n = 0;
    for page in &pages {
        for r in 0..page.batch.num_rows() {
            assert_row_equals(&page.batch, r, &rows[n]);
            n += 1;
        }
    }
    assert_eq!(n, 165);
    // A spot check against a literal: the first row's Date 2013-06-11T14:01:25.3+02:00.
    let date = pages[0]
        .batch
        .column_by_name("Date")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(date.value(0), 1_370_952_085_300_000);

    let log = server.requests();
    assert_eq!(log.len(), 4);
    for (i, rec) in log.iter().enumerate() {
        assert_eq!(rec.path, "/api/WSH_8");
        assert_eq!(
            (rec.top, rec.skip, rec.count),
            (Some(50), Some(50 * i as u64), Some(true))
        );
        assert_eq!(rec.orderby.as_deref(), Some("Id"));
        assert_eq!(rec.status, Some(200));
    }
}

/// Injects `fault` and fetches the first page: it must succeed after exactly one retry.
async fn retried_once(fault: Fault) -> (GhoServer, GhoPage, Duration) {
    let (_dir, server) = serve(None);
    server.inject(fault.clone());
    let src = source(&server, 50);
    let t = Instant::now();
    let page = src
        .fetch_page(0)
        .await
        .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
    let took = t.elapsed();
    assert_eq!(ids(&page.batch).len(), 50);
    assert_eq!(page.total, Some(165));
    let log = server.requests();
    assert_eq!(log.len(), 2, "{fault:?}: {log:?}");
    assert_eq!(log[0].fault.as_ref(), Some(&fault));
    assert_eq!((log[1].fault.as_ref(), log[1].status), (None, Some(200)));
    (server, page, took)
}

#[tokio::test]
async fn retries_a_500() {
    let (server, _, _) = retried_once(Fault::Status(500)).await;
    assert_eq!(server.requests()[0].status, Some(500));
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let (server, _, took) = retried_once(Fault::TooManyRequests {
        retry_after_secs: 1,
    })
    .await;
    assert_eq!(server.requests()[0].status, Some(429));
    assert!(took >= Duration::from_secs(1), "retried after {took:?}");
}

#[tokio::test]
async fn retries_a_truncated_body() {
    retried_once(Fault::TruncatedBody).await;
}

#[tokio::test]
async fn retries_a_connection_reset() {
    let (server, _, _) = retried_once(Fault::ConnectionReset).await;
    assert_eq!(server.requests()[0].status, None);
}

#[tokio::test]
async fn retries_a_timeout() {
    let (_dir, server) = serve(None);
    server.inject(Fault::Delay(Duration::from_secs(3)));
    let src = GhoSource::new(GhoConfig {
        page_size: 50,
        timeout: Duration::from_millis(300),
        retry: fast_retry(3),
        ..GhoConfig::new(server.api_url(), INDICATOR)
    })
    .unwrap();
    let t = Instant::now();
    let page = src.fetch_page(0).await.unwrap();
    assert_eq!(page.batch.num_rows(), 50);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "did not time out: {:?}",
        t.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn not_odata_is_an_error_without_retry() {
    let (_dir, server) = serve(None);
    server.inject(Fault::NotOData);
    let src = source(&server, 50);
    match src.fetch_page(0).await {
        Err(SourceError::NotOData { url, detail }) => {
            assert_eq!(url, src.page_url(0));
            assert!(
                detail.contains("not JSON") && detail.contains("<!DOCTYPE html>"),
                "{detail}"
            );
        }
        other => panic!("expected NotOData, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_404_is_an_http_error_without_retry() {
    let (_dir, server) = serve(None);
    server.inject(Fault::Status(404));
    let src = source(&server, 50);
    let err = src.fetch_page(0).await.unwrap_err();
    match &err {
        SourceError::Http {
            url,
            status,
            excerpt,
        } => {
            assert_eq!((url.as_str(), *status), (src.page_url(0).as_str(), 404));
            assert!(excerpt.contains("error"), "{excerpt}");
        }
        other => panic!("expected Http, got {other:?}"),
    }
    assert!(err.to_string().contains("indicator code"), "{err}");
    assert_eq!(server.requests().len(), 1);

    // An unknown indicator is a real 404 from the server, too.
    let unknown = GhoSource::new(GhoConfig {
        retry: fast_retry(4),
        ..GhoConfig::new(server.api_url(), "NO_SUCH")
    })
    .unwrap();
    assert!(matches!(
        unknown.fetch_page(0).await,
        Err(SourceError::Http { status: 404, .. })
    ));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn persistent_503_exhausts_retries() {
    let (_dir, server) = serve(None);
    for _ in 0..6 {
        server.inject(Fault::Status(503));
    }
    let src = source(&server, 50); // 4 attempts
    match src.fetch_page(0).await {
        Err(SourceError::RetriesExhausted {
            url,
            attempts,
            last,
        }) => {
            assert_eq!((url, attempts), (src.page_url(0), 4));
            assert!(last.contains("503"), "{last}");
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    let log = server.requests();
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|r| r.status == Some(503)));
}

#[tokio::test]
async fn reports_fields_not_in_the_schema() {
    let mut file = fixture();
    let rows = file["value"].as_array_mut().unwrap();
    let target_id = rows[120]["Id"].as_i64().unwrap();
    rows[120]["NewDimension"] = Value::from("SEX_MLE");
    let (_dir, server) = serve(Some(&file));
    let pages = fetch_all(&source(&server, 50)).await;
    let with: Vec<u64> = pages
        .iter()
        .filter(|p| !p.unknown_fields.is_empty())
        .map(|p| p.skip)
        .collect();
    assert_eq!(with.len(), 1);
    let page = pages.iter().find(|p| p.skip == with[0]).unwrap();
    assert_eq!(
        page.unknown_fields.iter().collect::<Vec<_>>(),
        vec!["NewDimension"]
    );
    assert!(ids(&page.batch).contains(&target_id));
    assert_eq!(pages.iter().map(|p| p.batch.num_rows()).sum::<usize>(), 165);
}

#[tokio::test]
async fn a_bad_date_is_a_decode_error_naming_row_id_and_field() {
    let mut file = fixture();
    let rows = file["value"].as_array_mut().unwrap();
    rows.sort_by_key(|r| r["Id"].as_i64().unwrap());
    // Row 60 of the Id order = row 10 of the page at $skip=50.
    let bad_id = rows[60]["Id"].as_i64().unwrap();
    rows[60]["Date"] = Value::from("11/06/2013 14:01");
    let (_dir, server) = serve(Some(&file));
    let src = source(&server, 50);
    src.fetch_page(0).await.unwrap();
    let err = src.fetch_page(50).await.unwrap_err();
    let msg = err.to_string();
    match err {
        SourceError::Decode {
            url,
            skip,
            row,
            id,
            field,
            detail,
        } => {
            assert_eq!(url, src.page_url(50));
            assert_eq!(
                (skip, row, id, field.as_str()),
                (50, 10, Some(bad_id), "Date")
            );
            assert!(detail.contains("11/06/2013 14:01"), "{detail}");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    assert!(
        msg.contains(&format!("row 10 (Id {bad_id})")) && msg.contains("field Date"),
        "{msg}"
    );
    assert_eq!(server.requests().len(), 2, "a decode error is not retried");
}

#[tokio::test]
async fn names_the_transient_failure_when_giving_up() {
    for (fault, expect) in [
        (Fault::TruncatedBody, "broke off"),
        (Fault::ConnectionReset, "reset"),
    ] {
        let (_dir, server) = serve(None);
        for _ in 0..3 {
            server.inject(fault.clone());
        }
        let src = GhoSource::new(GhoConfig {
            retry: fast_retry(3),
            ..GhoConfig::new(server.api_url(), INDICATOR)
        })
        .unwrap();
        match src.fetch_page(0).await {
            Err(SourceError::RetriesExhausted {
                attempts: 3, last, ..
            }) => {
                assert!(last.to_lowercase().contains(expect), "{fault:?}: {last}")
            }
            other => panic!("{fault:?}: expected RetriesExhausted, got {other:?}"),
        }
        assert_eq!(server.requests().len(), 3);
    }
}

// ---- Time window: `since`/`until` → `$filter` on TimeDim ----

/// The fixture with its `TimeDim` values spread over the years 2000..=2012, some null and some
/// missing: the saved WSH_8 response has the single year 2004 for all 165 rows, so a window such as
/// 2005..=2008 would select nothing from it and page through nothing.
fn fixture_with_years() -> Value {
    let mut file = fixture();
    for (i, row) in file["value"].as_array_mut().unwrap().iter_mut().enumerate() {
        let obj = row.as_object_mut().unwrap();
        match i % 20 {
            3 => {
                obj.insert("TimeDim".into(), Value::Null);
            }
            13 => {
                obj.remove("TimeDim");
            }
            _ => {
                let year = 2000 + (i as i64 * 7) % 13;
                obj.insert("TimeDim".into(), Value::from(year));
                obj.insert("TimeDimensionValue".into(), Value::from(year.to_string()));
            }
        }
    }
    file
}

/// The rows of `file` with `since <= TimeDim <= until` (null or missing TimeDim never in a window), in
/// `Id` order: computed from the JSON, independently of the source and the server.
fn rows_in_window(file: &Value, since: Option<i64>, until: Option<i64>) -> Vec<Value> {
    let mut rows: Vec<Value> = file["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["TimeDim"]
                .as_i64()
                .is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u))
        })
        .cloned()
        .collect();
    rows.sort_by_key(|r| r["Id"].as_i64().unwrap());
    rows
}

/// Serves `file` (the fixture as is when `None`), loads it with `since`/`until` in pages of 7, and
/// checks the rows (every value), the totals, the paging and the `$filter` in the server's log.
/// Returns the number of rows loaded.
async fn load_window(file: Option<&Value>, since: Option<i64>, until: Option<i64>) -> usize {
    let ctx = format!("since {since:?} until {until:?}");
    let (_dir, server) = serve(file);
    let src = GhoSource::new(GhoConfig {
        page_size: 7,
        since,
        until,
        timeout: Duration::from_secs(10),
        retry: fast_retry(4),
        ..GhoConfig::new(server.api_url(), INDICATOR)
    })
    .unwrap();
    let expected_filter = [
        since.map(|s| format!("TimeDim ge {s}")),
        until.map(|u| format!("TimeDim le {u}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" and ");
    assert_eq!(src.filter(), Some(expected_filter.as_str()), "{ctx}");

    let want = rows_in_window(file.unwrap_or(&fixture()), since, until);
    let pages = fetch_all(&src).await;

    let got: Vec<i64> = pages.iter().flat_map(|p| ids(&p.batch)).collect();
    let want_ids: Vec<i64> = want.iter().map(|r| r["Id"].as_i64().unwrap()).collect();
    assert_eq!(got, want_ids, "{ctx}");
    let mut n = 0;
    for page in &pages {
        assert_eq!(
            page.total,
            Some(want.len() as u64),
            "{ctx}: the filtered count"
        );
        for r in 0..page.batch.num_rows() {
            assert_row_equals(&page.batch, r, &want[n]);
            n += 1;
        }
    }
    // Pages of 7 over the filtered rows; the last one reaches the total (or is the one empty page).
    let sizes: Vec<usize> = pages.iter().map(|p| p.batch.num_rows()).collect();
    let mut want_sizes: Vec<usize> = want.chunks(7).map(<[Value]>::len).collect();
    if want_sizes.is_empty() {
        want_sizes.push(0);
    }
    assert_eq!(sizes, want_sizes, "{ctx}");

    let log = server.requests();
    assert_eq!(log.len(), pages.len(), "{ctx}");
    for (i, rec) in log.iter().enumerate() {
        assert_eq!(
            rec.filter.as_deref(),
            Some(expected_filter.as_str()),
            "{ctx}"
        );
        assert_eq!(
            (
                rec.top,
                rec.skip,
                rec.orderby.as_deref(),
                rec.count,
                rec.status
            ),
            (
                Some(7),
                Some(7 * i as u64),
                Some("Id"),
                Some(true),
                Some(200)
            ),
            "{ctx}"
        );
    }
    // The URL in messages is the one requested, filter included and percent-encoded.
    assert!(
        src.page_url(0)
            .ends_with(&format!("&$filter={}", expected_filter.replace(' ', "%20"))),
        "{}",
        src.page_url(0)
    );
    n
}

#[tokio::test]
async fn a_time_window_loads_exactly_its_rows_across_pages() {
    let file = fixture_with_years();
    let in_window = rows_in_window(&file, Some(2005), Some(2008));
    // A real selection: several pages of 7, and rows on both sides of the window and without a year.
    assert!(in_window.len() > 3 * 7, "{}", in_window.len());
    let rows = file["value"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["TimeDim"].as_i64() == Some(2004)));
    assert!(rows.iter().any(|r| r["TimeDim"].as_i64() == Some(2009)));
    assert!(rows.iter().any(|r| r["TimeDim"].is_null()));
    assert!(rows.iter().any(|r| r.get("TimeDim").is_none()));

    let n = load_window(Some(&file), Some(2005), Some(2008)).await;
    assert_eq!(n, in_window.len());
}

#[tokio::test]
async fn since_alone_and_until_alone_are_open_ended() {
    let file = fixture_with_years();
    let after = load_window(Some(&file), Some(2009), None).await;
    let before = load_window(Some(&file), None, Some(2003)).await;
    assert!(after > 7 && before > 7, "{after} {before}");
    // Single years: the window's bounds are inclusive.
    assert_eq!(
        load_window(Some(&file), Some(2012), Some(2012)).await,
        rows_in_window(&file, Some(2012), Some(2012)).len()
    );
    // Years with no rows give one empty page and a total of 0.
    assert_eq!(load_window(Some(&file), Some(2013), None).await, 0);
}

#[tokio::test]
async fn a_time_window_on_the_saved_fixture() {
    // Every row of the saved response is of 2004 (see `fixture_with_years`): a 2005..=2008 window
    // selects none of them, a 2004 one all of them.
    assert_eq!(load_window(None, Some(2005), Some(2008)).await, 0);
    assert_eq!(load_window(None, Some(2004), Some(2004)).await, 165);
}

#[tokio::test]
async fn since_after_until_is_a_config_error() {
    let (_dir, server) = serve(None);
    let err = GhoSource::new(GhoConfig {
        since: Some(2009),
        until: Some(2005),
        ..GhoConfig::new(server.api_url(), INDICATOR)
    })
    .unwrap_err();
    match &err {
        SourceError::Config { detail } => {
            assert!(
                detail.contains("since 2009 is after until 2005"),
                "{detail}"
            )
        }
        other => panic!("expected Config, got {other:?}"),
    }
    assert!(err.to_string().contains("since 2009"), "{err}");
    assert!(server.requests().is_empty());
}
