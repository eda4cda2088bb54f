//! ID cache benchmark on a real PostgreSQL (`docs/ID_CACHE.md`, section "Benchmark").
//!
//! ```text
//! PSYSTEM_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres \
//!     cargo bench -p psystem-postgres --bench idcache
//! ```
//!
//! Creates a throwaway database, fills one entity with `PSYSTEM_BENCH_ENTRIES` entries (default 1,000,000) through
//! [`assign`] in transactions of 10,000 keys (as a load's pages would), then times re-seeing and looking up keys,
//! 20 search pages of each kind (substring and prefix, selective and broad; with and without the trigram indexes),
//! sorted pages at deep offsets, and a full CSV export. Prints one table; the database is dropped at the end.

use std::time::{Duration, Instant};

use psystem_postgres::idcache::{
    self, assign, lookup, CacheQuery, CacheSort, CacheTarget, EntitySpec, IdStrategy,
};
use psystem_postgres::Destination;
use psystem_testkit::db::TestDb;
use rand::Rng;

const BATCH: usize = 10_000;
const WORDS: [&str; 6] = [
    "cleft-ear",
    "heart-defect",
    "lung",
    "kidney",
    "scoliosis",
    "asthma",
];

fn key(i: usize) -> String {
    format!("p{i:07}__{}__{}", WORDS[i % WORDS.len()], i % 1000)
}

struct Row {
    what: String,
    n: usize,
    median: Duration,
    max: Duration,
    total: Duration,
    note: String,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn summarize(what: impl Into<String>, mut times: Vec<Duration>, note: impl Into<String>) -> Row {
    times.sort();
    let total = times.iter().sum();
    Row {
        what: what.into(),
        n: times.len(),
        median: times[times.len() / 2],
        max: *times.last().unwrap(),
        total,
        note: note.into(),
    }
}

/// Times `queries` list pages; the note gives the mean number of matching entries.
async fn time_pages(
    dest: &Destination,
    target: &CacheTarget,
    what: &str,
    queries: Vec<CacheQuery>,
) -> Row {
    let mut times = Vec::new();
    let mut matched = 0i64;
    for q in &queries {
        let start = Instant::now();
        let page = idcache::list(dest.pool(), target, "participant", q)
            .await
            .expect("list");
        times.push(start.elapsed());
        matched += page.total;
        assert!(page.entries.len() as i64 <= q.limit);
    }
    let n = queries.len().max(1) as i64;
    summarize(what, times, format!("{} matches", matched / n))
}

fn search(s: String) -> CacheQuery {
    CacheQuery {
        search: Some(s),
        ..CacheQuery::default()
    }
}

async fn bench() {
    let entries: usize = std::env::var("PSYSTEM_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.expect("connect");
    let pool = dest.pool();
    let target = CacheTarget::new(db.url(), "public");
    let spec = EntitySpec {
        entity: "participant".into(),
        unique_key: vec!["participant_id".into(), "phenotype".into(), "age".into()],
        strategy: IdStrategy::prefixed("PT_"),
    };
    let trgm: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')")
            .fetch_one(pool)
            .await
            .unwrap();
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await
        .unwrap();
    let mut rows = Vec::new();
    let mut conn = pool.acquire().await.unwrap();
    idcache::register_entity(&mut conn, &target, &spec)
        .await
        .unwrap();

    // Fill.
    eprintln!("Filling {entries} entries in transactions of {BATCH} …");
    let mut times = Vec::new();
    let start = Instant::now();
    for (run, chunk_start) in (0..entries).step_by(BATCH).enumerate() {
        let keys: Vec<String> = (chunk_start..(chunk_start + BATCH).min(entries))
            .map(key)
            .collect();
        let t = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        let a = assign(&mut tx, &target, &spec, &keys, None, run as i64 + 1)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(a.new_keys, keys.len());
        times.push(t.elapsed());
    }
    let fill = start.elapsed();
    rows.push(summarize(
        format!("assign {BATCH} new keys (fill)"),
        times,
        format!("{:.0} keys/s", entries as f64 / fill.as_secs_f64()),
    ));
    sqlx::raw_sql("VACUUM ANALYZE psystem.id_cache")
        .execute(pool)
        .await
        .unwrap();
    let runs = entries.div_ceil(BATCH) as i64;

    let mut rng = rand::rng();
    // Re-seeing known keys (a rerun of a load) and looking keys up (references).
    let mut times = Vec::new();
    for r in 0..10 {
        let base = rng.random_range(0..entries.saturating_sub(BATCH).max(1));
        let keys: Vec<String> = (base..(base + BATCH).min(entries)).map(key).collect();
        let t = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        let a = assign(&mut tx, &target, &spec, &keys, None, runs + 1 + r)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(a.new_keys, 0);
        times.push(t.elapsed());
    }
    rows.push(summarize(
        format!("assign {BATCH} known keys (rerun)"),
        times,
        "last_seen_run moves",
    ));
    let mut times = Vec::new();
    for _ in 0..10 {
        let keys: Vec<String> = (0..BATCH)
            .map(|_| key(rng.random_range(0..entries)))
            .collect();
        let t = Instant::now();
        let found = lookup(&mut conn, &target, "participant", &keys)
            .await
            .unwrap();
        times.push(t.elapsed());
        assert!(found.iter().all(Option::is_some));
    }
    rows.push(summarize(
        format!("lookup {BATCH} random keys"),
        times,
        "references",
    ));

    // Some target IDs to search for.
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT target_id FROM psystem.id_cache ORDER BY random() LIMIT 20")
            .fetch_all(pool)
            .await
            .unwrap();

    for pass in ["with pg_trgm", "without pg_trgm"] {
        if pass == "without pg_trgm" {
            if !trgm {
                break;
            }
            sqlx::raw_sql("DROP INDEX psystem.id_cache_key_trgm_idx; DROP INDEX psystem.id_cache_id_trgm_idx;")
                .execute(pool)
                .await
                .unwrap();
        } else if !trgm {
            rows.push(Row {
                what: "(pg_trgm is not installed: searches below scan)".into(),
                n: 0,
                median: Duration::ZERO,
                max: Duration::ZERO,
                total: Duration::ZERO,
                note: String::new(),
            });
        }
        let p = |s: &str| format!("{s}, {pass}");
        let q = (0..20)
            .map(|_| search(format!("{:06}", rng.random_range(0..entries) / 10)))
            .collect();
        rows.push(time_pages(&dest, &target, &p("substring of key, selective"), q).await);
        let q = (0..20)
            .map(|i| search(ids[i % ids.len()][4..8].to_lowercase()))
            .collect();
        rows.push(time_pages(&dest, &target, &p("substring of target ID"), q).await);
        let q = (0..20)
            .map(|i| search(WORDS[i % WORDS.len()].to_string()))
            .collect();
        rows.push(time_pages(&dest, &target, &p("substring, broad (1/6 of entries)"), q).await);
        let q = (0..20)
            .map(|_| search(format!("^p{:06}", rng.random_range(0..entries) / 10)))
            .collect();
        rows.push(time_pages(&dest, &target, &p("prefix of key, selective"), q).await);
        let q = (0..20)
            .map(|i| search(format!("^{}", &ids[i % ids.len()][..6])))
            .collect();
        rows.push(time_pages(&dest, &target, &p("prefix of target ID"), q).await);
        let q = (0..20).map(|i| search(format!("^p0{}", i % 10))).collect();
        rows.push(time_pages(&dest, &target, &p("prefix of key, broad (1/10)"), q).await);
    }

    // The floor of every page: counting the matches (`total`).
    let q = (0..20)
        .map(|_| CacheQuery {
            limit: 0,
            ..CacheQuery::default()
        })
        .collect();
    rows.push(time_pages(&dest, &target, "count only (limit 0, no search)", q).await);
    // Sorted pages at deep offsets: 20 pages of 50 per sort and offset, half ascending, half descending.
    for sort in [
        CacheSort::UniqueKey,
        CacheSort::TargetId,
        CacheSort::FirstSeen,
        CacheSort::LastSeen,
    ] {
        for offset in [0, entries as i64 / 2, entries as i64 - 100] {
            let queries = (0..20)
                .map(|i| CacheQuery {
                    sort,
                    descending: i % 2 == 1,
                    offset,
                    limit: 50,
                    search: None,
                })
                .collect();
            let what = format!("page sorted by {sort:?} at offset {offset}");
            rows.push(time_pages(&dest, &target, &what, queries).await);
        }
    }

    // show: by key and by target ID.
    let mut times = Vec::new();
    for i in 0..20 {
        let what = if i % 2 == 0 {
            key(rng.random_range(0..entries))
        } else {
            ids[i % ids.len()].clone()
        };
        let t = Instant::now();
        let found = idcache::show(pool, &target, "participant", &what)
            .await
            .unwrap();
        times.push(t.elapsed());
        assert!(found.is_some());
    }
    rows.push(summarize("show (by key / by target ID)", times, ""));

    // Export, and import of the first 100,000 entries into another entity.
    let mut csv = Vec::new();
    let t = Instant::now();
    let n = idcache::export_csv(pool, &target, "participant", &mut csv)
        .await
        .unwrap();
    rows.push(summarize(
        "export_csv (all entries)",
        vec![t.elapsed()],
        format!("{n} rows, {} MB", csv.len() / 1_000_000),
    ));
    let head: Vec<u8> = csv
        .split(|&b| b == b'\n')
        .take(100_001)
        .flat_map(|line| line.iter().copied().chain(std::iter::once(b'\n')))
        .collect();
    let t = Instant::now();
    let report = idcache::import_csv(pool, &target, "imported", head.as_slice())
        .await
        .unwrap();
    rows.push(summarize(
        "import_csv (100,000 entries, new entity)",
        vec![t.elapsed()],
        format!("{} inserted", report.inserted),
    ));
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size('psystem.id_cache'))")
            .fetch_one(pool)
            .await
            .unwrap();

    println!();
    println!("ID cache benchmark: {entries} entries, PostgreSQL {version}, table + indexes {size}, pg_trgm {}", if trgm { "installed" } else { "missing" });
    println!();
    println!("| operation | n | median ms | max ms | total ms | note |");
    println!("|---|---:|---:|---:|---:|---|");
    for r in rows {
        if r.n == 0 {
            println!("| {} | | | | | |", r.what);
            continue;
        }
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.what,
            r.n,
            ms(r.median),
            ms(r.max),
            ms(r.total),
            r.note
        );
    }
    drop(conn);
    drop(dest);
    drop(db);
}

fn main() {
    // `cargo bench` passes `--bench`; there are no options.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench());
}
