//! The ID cache on a real PostgreSQL: stable IDs across calls and runs, strategies, key definitions, targets,
//! paging / sorting / searching against a brute-force expectation, export / import, lookups.

use std::collections::{HashMap, HashSet};

use psystem_postgres::idcache::{
    self, assign, lookup, register_entity, CacheEntry, CacheQuery, CacheSort, CacheTarget,
    EntitySpec, IdStrategy,
};
use psystem_postgres::{Destination, DestinationError};
use psystem_testkit::db::TestDb;
use sqlx::{PgConnection, PgPool};

async fn setup() -> (TestDb, Destination, CacheTarget) {
    let db = TestDb::create().await;
    let dest = Destination::connect(db.url()).await.expect("connect");
    let target = CacheTarget::new(db.url(), "public");
    (db, dest, target)
}

fn spec(entity: &str, key: &[&str], strategy: IdStrategy) -> EntitySpec {
    EntitySpec {
        entity: entity.to_string(),
        unique_key: key.iter().map(|s| s.to_string()).collect(),
        strategy,
    }
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn conn(pool: &PgPool) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    pool.acquire().await.unwrap()
}

/// Every entry of an entity, by unique key.
async fn all_entries(
    pool: &PgPool,
    target: &CacheTarget,
    entity: &str,
) -> HashMap<String, CacheEntry> {
    let page = idcache::list(
        pool,
        target,
        entity,
        &CacheQuery {
            limit: idcache::MAX_PAGE,
            ..CacheQuery::default()
        },
    )
    .await
    .unwrap();
    page.entries
        .into_iter()
        .map(|e| (e.unique_key.clone(), e))
        .collect()
}

async fn assign_simple(
    c: &mut PgConnection,
    target: &CacheTarget,
    spec: &EntitySpec,
    list: &[&str],
    run: i64,
) -> idcache::Assigned {
    assign(c, target, spec, &keys(list), None, run)
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_keep_their_ids_across_calls_and_runs() {
    let (_db, dest, target) = setup().await;
    let pool = dest.pool();
    let s = spec("participant", &["pid"], IdStrategy::prefixed("PT_"));
    let mut c = conn(pool).await;
    register_entity(&mut c, &target, &s).await.unwrap();

    let first = assign_simple(&mut c, &target, &s, &["p1", "p2"], 1).await;
    assert_eq!(first.new_keys, 2);
    assert_ne!(first.ids[0], first.ids[1]);

    let second = assign_simple(&mut c, &target, &s, &["p2", "p3", "p1"], 2).await;
    assert_eq!(second.new_keys, 1);
    assert_eq!(second.ids[0], first.ids[1]);
    assert_eq!(second.ids[2], first.ids[0]);

    // An older run seeing the key again does not move last_seen_run back.
    let again = assign_simple(&mut c, &target, &s, &["p1"], 1).await;
    assert_eq!(again.ids[0], first.ids[0]);
    assert_eq!(again.new_keys, 0);

    let entries = all_entries(pool, &target, "participant").await;
    assert_eq!(entries.len(), 3);
    assert_eq!(
        (entries["p1"].first_seen_run, entries["p1"].last_seen_run),
        (1, 2)
    );
    assert_eq!(
        (entries["p2"].first_seen_run, entries["p2"].last_seen_run),
        (1, 2)
    );
    assert_eq!(
        (entries["p3"].first_seen_run, entries["p3"].last_seen_run),
        (2, 2)
    );

    // A rolled-back transaction gives out nothing.
    let mut tx = pool.begin().await.unwrap();
    let lost = assign(&mut tx, &target, &s, &keys(&["p4"]), None, 3)
        .await
        .unwrap();
    assert_eq!(lost.new_keys, 1);
    tx.rollback().await.unwrap();
    assert_eq!(
        lookup(&mut c, &target, "participant", &keys(&["p4"]))
            .await
            .unwrap(),
        vec![None]
    );

    let summary = idcache::entities(pool, Some(&target)).await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].entity, "participant");
    assert_eq!(summary[0].key_columns, vec!["pid".to_string()]);
    assert_eq!(summary[0].id_strategy, Some(IdStrategy::prefixed("PT_")));
    assert_eq!(summary[0].count, 3);
    assert_eq!(summary[0].last_seen_run, Some(2));
}

#[tokio::test]
async fn the_same_key_twice_in_one_call_gets_one_id() {
    let (_db, dest, target) = setup().await;
    let s = spec("phenotype", &["p", "name"], IdStrategy::prefixed("PH_"));
    let mut c = conn(dest.pool()).await;
    let a = assign_simple(&mut c, &target, &s, &["x", "x", "y", "x", "y"], 1).await;
    assert_eq!(a.new_keys, 2);
    assert_eq!(a.ids.len(), 5);
    assert_eq!(a.ids[0], a.ids[1]);
    assert_eq!(a.ids[0], a.ids[3]);
    assert_eq!(a.ids[2], a.ids[4]);
    assert_ne!(a.ids[0], a.ids[2]);
    let empty = assign(&mut c, &target, &s, &[], None, 1).await.unwrap();
    assert!(empty.ids.is_empty());
}

#[tokio::test]
async fn prefixed_ids_are_crockford_base32() {
    let (_db, dest, target) = setup().await;
    let s = spec("participant", &["pid"], IdStrategy::prefixed("PT_"));
    let mut c = conn(dest.pool()).await;
    let list: Vec<String> = (0..300).map(|i| format!("p{i}")).collect();
    let a = assign(&mut c, &target, &s, &list, None, 1).await.unwrap();
    assert_eq!(a.ids.iter().collect::<HashSet<_>>().len(), 300);
    let all_match: bool = sqlx::query_scalar(
        "SELECT bool_and(id ~ '^PT_[0-9A-HJKMNP-TV-Z]{8}$') FROM unnest($1::text[]) AS t(id)",
    )
    .bind(&a.ids)
    .fetch_one(&mut *c)
    .await
    .unwrap();
    assert!(all_match, "{:?}", &a.ids[..5]);
}

#[tokio::test]
async fn uuid_v7_ids_parse() {
    let (_db, dest, target) = setup().await;
    let s = spec("sample", &["sid"], IdStrategy::UuidV7);
    let mut c = conn(dest.pool()).await;
    let a = assign_simple(&mut c, &target, &s, &["s1", "s2", "s3"], 1).await;
    for id in &a.ids {
        let u = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(u.get_version_num(), 7, "{id}");
        assert_eq!(id, &u.hyphenated().to_string(), "lower-case hyphenated");
    }
}

#[tokio::test]
async fn ids_from_a_column_are_honoured_and_conflicts_reported() {
    let (_db, dest, target) = setup().await;
    let pool = dest.pool();
    let s = spec(
        "participant",
        &["pid"],
        IdStrategy::FromColumn("kf_id".into()),
    );
    let mut c = conn(pool).await;
    register_entity(&mut c, &target, &s).await.unwrap();
    let given = |ids: &[Option<&str>]| -> Vec<Option<String>> {
        ids.iter().map(|s| s.map(str::to_string)).collect()
    };

    let a = assign(
        &mut c,
        &target,
        &s,
        &keys(&["p1", "p2", "p1"]),
        Some(&given(&[Some("PT_1"), Some("PT_2"), Some("PT_1")])),
        1,
    )
    .await
    .unwrap();
    assert_eq!(a.ids, keys(&["PT_1", "PT_2", "PT_1"]));
    assert_eq!(a.new_keys, 2);

    // The same IDs again: fine.
    let b = assign(
        &mut c,
        &target,
        &s,
        &keys(&["p2"]),
        Some(&given(&[Some("PT_2")])),
        2,
    )
    .await
    .unwrap();
    assert_eq!(b.ids, keys(&["PT_2"]));

    // A different ID for a cached key.
    match assign(
        &mut c,
        &target,
        &s,
        &keys(&["p1"]),
        Some(&given(&[Some("PT_9")])),
        2,
    )
    .await
    {
        Err(DestinationError::ProvidedIdConflict {
            key,
            cached,
            provided,
            ..
        }) => {
            assert_eq!(
                (key.as_str(), cached.as_str(), provided.as_str()),
                ("p1", "PT_1", "PT_9")
            );
        }
        other => panic!("{other:?}"),
    }
    // Two IDs for one key in the same call.
    match assign(
        &mut c,
        &target,
        &s,
        &keys(&["p7", "p7"]),
        Some(&given(&[Some("A"), Some("B")])),
        2,
    )
    .await
    {
        Err(DestinationError::ProvidedIdConflict {
            key,
            cached,
            provided,
            ..
        }) => {
            assert_eq!(
                (key.as_str(), cached.as_str(), provided.as_str()),
                ("p7", "A", "B")
            );
        }
        other => panic!("{other:?}"),
    }
    // A null ID.
    match assign(
        &mut c,
        &target,
        &s,
        &keys(&["p3"]),
        Some(&given(&[None])),
        2,
    )
    .await
    {
        Err(DestinationError::ProvidedIdMissing { key, .. }) => assert_eq!(key, "p3"),
        other => panic!("{other:?}"),
    }
    // An empty ID counts as missing.
    assert!(matches!(
        assign(
            &mut c,
            &target,
            &s,
            &keys(&["p3"]),
            Some(&given(&[Some("")])),
            2
        )
        .await,
        Err(DestinationError::ProvidedIdMissing { .. })
    ));
    // An ID that belongs to another key — inside a transaction, which stays usable.
    let mut tx = pool.begin().await.unwrap();
    match assign(
        &mut tx,
        &target,
        &s,
        &keys(&["p3"]),
        Some(&given(&[Some("PT_1")])),
        2,
    )
    .await
    {
        Err(DestinationError::ProvidedIdTaken { key, id, owner, .. }) => {
            assert_eq!(
                (key.as_str(), id.as_str(), owner.as_str()),
                ("p3", "PT_1", "p1")
            );
        }
        other => panic!("{other:?}"),
    }
    let ok = assign(
        &mut tx,
        &target,
        &s,
        &keys(&["p3"]),
        Some(&given(&[Some("PT_3")])),
        2,
    )
    .await
    .unwrap();
    assert_eq!(ok.ids, keys(&["PT_3"]));
    tx.commit().await.unwrap();
    // Missing provided IDs altogether.
    assert!(matches!(
        assign(&mut c, &target, &s, &keys(&["p4"]), None, 2).await,
        Err(DestinationError::InvalidEntitySpec { .. })
    ));
    let entries = all_entries(pool, &target, "participant").await;
    assert_eq!(entries["p1"].target_id, "PT_1", "never overwritten");
    assert_eq!(entries.len(), 3);
}

#[tokio::test]
async fn colliding_generated_ids_are_drawn_again() {
    let (_db, dest, target) = setup().await;
    let mut c = conn(dest.pool()).await;
    // Length 1: 32 possible IDs. 24 keys in one call and one at a time must all get distinct IDs.
    let tiny = spec(
        "tiny",
        &["k"],
        IdStrategy::Prefixed {
            prefix: "T".into(),
            length: 1,
        },
    );
    let batch: Vec<String> = (0..12).map(|i| format!("b{i}")).collect();
    let a = assign(&mut c, &target, &tiny, &batch, None, 1)
        .await
        .unwrap();
    assert_eq!(a.new_keys, 12);
    for i in 0..12 {
        assign(&mut c, &target, &tiny, &[format!("s{i}")], None, 1)
            .await
            .unwrap();
    }
    let entries = all_entries(dest.pool(), &target, "tiny").await;
    assert_eq!(entries.len(), 24);
    let ids: HashSet<&str> = entries.values().map(|e| e.target_id.as_str()).collect();
    assert_eq!(ids.len(), 24, "target IDs are unique");
    // More keys than free IDs: refused after the retries, nothing half-done is reported as success.
    let too_many: Vec<String> = (0..20).map(|i| format!("x{i}")).collect();
    assert!(matches!(
        assign(&mut c, &target, &tiny, &too_many, None, 2).await,
        Err(DestinationError::IdSpaceExhausted { .. })
    ));

    // Length 2: 1024 IDs, 600 keys in two calls — many collisions, all resolved.
    let small = spec(
        "small",
        &["k"],
        IdStrategy::Prefixed {
            prefix: "S".into(),
            length: 2,
        },
    );
    let first: Vec<String> = (0..300).map(|i| format!("a{i}")).collect();
    let second: Vec<String> = (0..300).map(|i| format!("b{i}")).collect();
    let x = assign(&mut c, &target, &small, &first, None, 1)
        .await
        .unwrap();
    let y = assign(&mut c, &target, &small, &second, None, 2)
        .await
        .unwrap();
    let all: HashSet<&String> = x.ids.iter().chain(&y.ids).collect();
    assert_eq!(all.len(), 600);
}

#[tokio::test]
async fn a_changed_key_definition_is_refused_until_cleared() {
    let (_db, dest, target) = setup().await;
    let pool = dest.pool();
    let mut c = conn(pool).await;
    let old = spec(
        "phenotype",
        &["participant", "name", "age"],
        IdStrategy::prefixed("PH_"),
    );
    register_entity(&mut c, &target, &old).await.unwrap();
    register_entity(&mut c, &target, &old).await.unwrap();
    assign_simple(&mut c, &target, &old, &["p1__cleft-ear__765"], 1).await;

    // A new strategy alone is fine.
    let uuid = spec(
        "phenotype",
        &["participant", "name", "age"],
        IdStrategy::UuidV7,
    );
    register_entity(&mut c, &target, &uuid).await.unwrap();

    let new = spec(
        "phenotype",
        &["participant", "name"],
        IdStrategy::prefixed("PH_"),
    );
    let err = register_entity(&mut c, &target, &new).await.unwrap_err();
    match &err {
        DestinationError::KeyDefinitionChanged { entity, old, new } => {
            assert_eq!(entity, "phenotype");
            assert_eq!(old, &keys(&["participant", "name", "age"]));
            assert_eq!(new, &keys(&["participant", "name"]));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("psystem idcache clear --entity phenotype"),
        "{err}"
    );
    // Reordered columns make other keystrings too.
    let reordered = spec(
        "phenotype",
        &["name", "participant", "age"],
        IdStrategy::prefixed("PH_"),
    );
    assert!(register_entity(&mut c, &target, &reordered).await.is_err());

    assert_eq!(idcache::clear(pool, &target, "phenotype").await.unwrap(), 1);
    register_entity(&mut c, &target, &new).await.unwrap();
    let summary = idcache::entities(pool, Some(&target)).await.unwrap();
    assert_eq!(summary[0].key_columns, keys(&["participant", "name"]));
    assert_eq!(summary[0].count, 0);
}

#[tokio::test]
async fn two_targets_never_share_entries() {
    let (db, dest, public) = setup().await;
    let pool = dest.pool();
    let other = CacheTarget::new(db.url(), "other");
    assert_ne!(public, other);
    let s = spec("participant", &["pid"], IdStrategy::prefixed("PT_"));
    let mut c = conn(pool).await;
    let a = assign_simple(&mut c, &public, &s, &["p1"], 1).await;
    assert_eq!(
        lookup(&mut c, &other, "participant", &keys(&["p1"]))
            .await
            .unwrap(),
        vec![None]
    );
    let b = assign_simple(&mut c, &other, &s, &["p1"], 2).await;
    assert_eq!(b.new_keys, 1);
    assert_ne!(a.ids, b.ids);
    assert_eq!(
        idcache::entities(pool, Some(&public)).await.unwrap().len(),
        1
    );
    assert_eq!(idcache::entities(pool, None).await.unwrap().len(), 2);
    assert_eq!(
        idcache::clear(pool, &other, "participant").await.unwrap(),
        1
    );
    assert_eq!(
        lookup(&mut c, &public, "participant", &keys(&["p1"]))
            .await
            .unwrap(),
        vec![Some(a.ids[0].clone())]
    );
}

#[tokio::test]
async fn lookup_returns_ids_in_order_and_none_for_unknown_keys() {
    let (_db, dest, target) = setup().await;
    let s = spec("participant", &["pid"], IdStrategy::prefixed("PT_"));
    let mut c = conn(dest.pool()).await;
    let a = assign_simple(&mut c, &target, &s, &["p1", "p2"], 1).await;
    let found = lookup(
        &mut c,
        &target,
        "participant",
        &keys(&["p2", "nope", "p1", "p2"]),
    )
    .await
    .unwrap();
    assert_eq!(
        found,
        vec![
            Some(a.ids[1].clone()),
            None,
            Some(a.ids[0].clone()),
            Some(a.ids[1].clone())
        ]
    );
    assert_eq!(
        lookup(&mut c, &target, "other", &keys(&["p1"]))
            .await
            .unwrap(),
        vec![None]
    );
    // show: by key, by ID, unknown.
    let by_key = idcache::show(dest.pool(), &target, "participant", "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_key.target_id, a.ids[0]);
    let by_id = idcache::show(dest.pool(), &target, "participant", &a.ids[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_id.unique_key, "p2");
    assert!(idcache::show(dest.pool(), &target, "participant", "zz")
        .await
        .unwrap()
        .is_none());
}

fn matches_search(e: &CacheEntry, search: Option<&str>) -> bool {
    let Some(q) = search.filter(|q| !q.is_empty()) else {
        return true;
    };
    let (prefix, q) = match q.strip_prefix('^') {
        Some(rest) => (true, rest.to_lowercase()),
        None => (false, q.to_lowercase()),
    };
    let hit = |s: &str| {
        let s = s.to_lowercase();
        if prefix {
            s.starts_with(&q)
        } else {
            s.contains(&q)
        }
    };
    hit(&e.unique_key) || hit(&e.target_id)
}

fn sort_expected(entries: &mut [CacheEntry], sort: CacheSort, descending: bool) {
    entries.sort_by(|a, b| {
        let ord = match sort {
            CacheSort::UniqueKey => a.unique_key.cmp(&b.unique_key),
            CacheSort::TargetId => a.target_id.cmp(&b.target_id),
            CacheSort::FirstSeen => a
                .first_seen_run
                .cmp(&b.first_seen_run)
                .then_with(|| a.unique_key.cmp(&b.unique_key)),
            CacheSort::LastSeen => a
                .last_seen_run
                .cmp(&b.last_seen_run)
                .then_with(|| a.unique_key.cmp(&b.unique_key)),
        };
        if descending {
            ord.reverse()
        } else {
            ord
        }
    });
}

#[tokio::test]
async fn list_pages_sorts_and_searches_like_brute_force() {
    let (db, dest, target) = setup().await;
    let pool = dest.pool();
    let s = spec("participant", &["pid"], IdStrategy::prefixed("PT_"));
    let mut c = conn(pool).await;
    let words = ["cleft", "ear", "heart", "lung", "zeta", "alpha"];
    // 420 keys over 6 runs, re-seen in later runs so first and last runs differ.
    for run in 1..=6i64 {
        let list: Vec<String> = (0..70)
            .map(|i| {
                let n = (run - 1) * 70 + i;
                format!("{}{:03}x{}", words[(n % 6) as usize], n, n % 7)
            })
            .collect();
        assign(&mut c, &target, &s, &list, None, run).await.unwrap();
        if run > 1 {
            let older: Vec<String> = (0..20)
                .map(|i| {
                    let n = (run - 2) * 70 + i * 3;
                    format!("{}{:03}x{}", words[(n % 6) as usize], n, n % 7)
                })
                .collect();
            assign(&mut c, &target, &s, &older, None, run)
                .await
                .unwrap();
        }
    }
    // Noise: another entity and another target.
    assign_simple(
        &mut c,
        &target,
        &spec("other", &["k"], IdStrategy::prefixed("PT_")),
        &["cleft000x0"],
        1,
    )
    .await;
    let elsewhere = CacheTarget::new(db.url(), "elsewhere");
    assign_simple(&mut c, &elsewhere, &s, &["cleft000x0"], 1).await;

    let everything: Vec<CacheEntry> = all_entries(pool, &target, "participant")
        .await
        .into_values()
        .collect();
    assert_eq!(everything.len(), 420);
    let some_id = everything[17].target_id.clone();
    let searches: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("CLEFT".into()),
        Some("x3".into()),
        Some("^heart".into()),
        Some("^HEART01".into()),
        Some("01".into()),
        Some(some_id[3..7].to_lowercase()),
        Some(format!("^{}", &some_id[..5])),
        Some("%".into()),
        Some("_".into()),
        Some("nothing-matches".into()),
    ];
    let sorts = [
        CacheSort::UniqueKey,
        CacheSort::TargetId,
        CacheSort::FirstSeen,
        CacheSort::LastSeen,
    ];
    for search in &searches {
        for sort in sorts {
            for descending in [false, true] {
                let mut expected: Vec<CacheEntry> = everything
                    .iter()
                    .filter(|e| matches_search(e, search.as_deref()))
                    .cloned()
                    .collect();
                sort_expected(&mut expected, sort, descending);
                let limit = 37;
                let mut offset = 0;
                let mut got = Vec::new();
                loop {
                    let q = CacheQuery {
                        search: search.clone(),
                        sort,
                        descending,
                        offset,
                        limit,
                    };
                    let page = idcache::list(pool, &target, "participant", &q)
                        .await
                        .unwrap();
                    assert_eq!(page.total, expected.len() as i64, "total for {q:?}");
                    if page.entries.is_empty() {
                        break;
                    }
                    assert!(page.entries.len() <= limit as usize);
                    got.extend(page.entries);
                    offset += limit;
                }
                assert_eq!(
                    got, expected,
                    "search {search:?}, sort {sort:?}, descending {descending}"
                );
            }
        }
    }
    // A deep offset past the end, and invalid paging.
    let past = CacheQuery {
        offset: 10_000,
        ..CacheQuery::default()
    };
    let page = idcache::list(pool, &target, "participant", &past)
        .await
        .unwrap();
    assert_eq!((page.total, page.entries.len()), (420, 0));
    for bad in [
        CacheQuery {
            offset: -1,
            ..CacheQuery::default()
        },
        CacheQuery {
            limit: -1,
            ..CacheQuery::default()
        },
        CacheQuery {
            limit: idcache::MAX_PAGE + 1,
            ..CacheQuery::default()
        },
    ] {
        assert!(matches!(
            idcache::list(pool, &target, "participant", &bad).await,
            Err(DestinationError::InvalidCacheQuery { .. })
        ));
    }
}

#[tokio::test]
async fn export_clear_import_round_trips() {
    let (_db, dest, target) = setup().await;
    let pool = dest.pool();
    let s = spec("biospecimen", &["bid"], IdStrategy::prefixed("BS_"));
    let mut c = conn(pool).await;
    register_entity(&mut c, &target, &s).await.unwrap();
    // More than one export chunk (10,000), with keys that need CSV quoting.
    let list: Vec<String> = (0..23_456).map(|i| format!("b{i:05}")).collect();
    assign(&mut c, &target, &s, &list, None, 1).await.unwrap();
    let odd = keys(&[
        "with,comma",
        "with\"quote",
        "multi\nline",
        "p1__cleft-ear__765",
    ]);
    assign(&mut c, &target, &s, &odd, None, 2).await.unwrap();
    assign(&mut c, &target, &s, &list[..100], None, 3)
        .await
        .unwrap();

    let mut first = Vec::new();
    let n = idcache::export_csv(pool, &target, "biospecimen", &mut first)
        .await
        .unwrap();
    assert_eq!(n, 23_460);
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(text.starts_with("unique_key,target_id,first_seen_run,last_seen_run\n"));
    assert!(text.contains("\"with,comma\""));

    assert_eq!(
        idcache::clear(pool, &target, "biospecimen").await.unwrap(),
        23_460
    );
    assert!(idcache::entities(pool, Some(&target))
        .await
        .unwrap()
        .is_empty());

    let report = idcache::import_csv(pool, &target, "biospecimen", first.as_slice())
        .await
        .unwrap();
    assert_eq!(
        (report.inserted, report.unchanged, report.conflicts.len()),
        (23_460, 0, 0)
    );
    let mut second = Vec::new();
    idcache::export_csv(pool, &target, "biospecimen", &mut second)
        .await
        .unwrap();
    assert_eq!(
        first, second,
        "export → clear → import → export is identical"
    );
    let e = idcache::show(pool, &target, "biospecimen", "b00001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.first_seen_run, e.last_seen_run), (1, 3));

    // Importing the same file again changes nothing.
    let again = idcache::import_csv(pool, &target, "biospecimen", first.as_slice())
        .await
        .unwrap();
    assert_eq!(
        (again.inserted, again.unchanged, again.conflicts.len()),
        (0, 23_460, 0)
    );
}

#[tokio::test]
async fn import_reports_conflicts_and_overwrites_nothing() {
    let (_db, dest, target) = setup().await;
    let pool = dest.pool();
    let s = spec("participant", &["pid"], IdStrategy::FromColumn("id".into()));
    let mut c = conn(pool).await;
    let given: Vec<Option<String>> = vec![Some("A".into()), Some("B".into())];
    assign(&mut c, &target, &s, &keys(&["k1", "k2"]), Some(&given), 1)
        .await
        .unwrap();

    let file = "unique_key,target_id\n\
                k1,A\n\
                k1,Z\n\
                k3,B\n\
                k4,C\n\
                k4,D\n\
                k5,C\n\
                k6,E\n";
    let report = idcache::import_csv(pool, &target, "participant", file.as_bytes())
        .await
        .unwrap();
    assert_eq!(report.inserted, 2, "k4 and k6");
    assert_eq!(report.unchanged, 1, "k1,A");
    let conflicts: Vec<(String, Option<String>, String, Option<String>)> = report
        .conflicts
        .iter()
        .map(|c| {
            (
                c.unique_key.clone(),
                c.cached_id.clone(),
                c.file_id.clone(),
                c.owner.clone(),
            )
        })
        .collect();
    let s = |v: &str| v.to_string();
    assert_eq!(
        conflicts,
        vec![
            (s("k1"), Some(s("A")), s("Z"), None),
            (s("k3"), None, s("B"), Some(s("k2"))),
            (s("k4"), Some(s("C")), s("D"), None),
            (s("k5"), None, s("C"), Some(s("k4"))),
        ]
    );
    let entries = all_entries(pool, &target, "participant").await;
    let ids: HashMap<&str, &str> = entries
        .iter()
        .map(|(k, e)| (k.as_str(), e.target_id.as_str()))
        .collect();
    assert_eq!(
        ids,
        HashMap::from([("k1", "A"), ("k2", "B"), ("k4", "C"), ("k6", "E")])
    );
    assert_eq!(entries["k6"].first_seen_run, 0, "no run in the file = 0");

    // Conflicts across chunks are found by the database: a second file contradicting the first.
    let later = "unique_key,target_id,first_seen_run,last_seen_run\nk6,F,4,4\nk7,E,4,4\n";
    let r = idcache::import_csv(pool, &target, "participant", later.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.inserted, 0);
    assert_eq!(r.conflicts.len(), 2);

    // A malformed file imports nothing.
    let bad = "unique_key,target_id,first_seen_run\nk8,G,1\nk9,H,soon\n";
    match idcache::import_csv(pool, &target, "participant", bad.as_bytes()).await {
        Err(DestinationError::CacheImport { line, .. }) => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
    assert!(lookup(&mut c, &target, "participant", &keys(&["k8"]))
        .await
        .unwrap()[0]
        .is_none());
    for header in ["key,id\nk,v\n", "unique_key,target_id,extra\nk,v,x\n"] {
        assert!(matches!(
            idcache::import_csv(pool, &target, "participant", header.as_bytes()).await,
            Err(DestinationError::CacheImport { line: 1, .. })
        ));
    }
    let empty_id = "unique_key,target_id\nk10,\n";
    assert!(
        idcache::import_csv(pool, &target, "participant", empty_id.as_bytes())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn invalid_specs_are_refused() {
    let (_db, dest, target) = setup().await;
    let mut c = conn(dest.pool()).await;
    for bad in [
        spec("", &["k"], IdStrategy::UuidV7),
        spec("e", &[], IdStrategy::UuidV7),
        spec("e", &["k", "k"], IdStrategy::UuidV7),
        spec(
            "e",
            &["k"],
            IdStrategy::Prefixed {
                prefix: "P".into(),
                length: 0,
            },
        ),
        spec("e", &["k"], IdStrategy::FromColumn(String::new())),
    ] {
        assert!(
            matches!(
                register_entity(&mut c, &target, &bad).await,
                Err(DestinationError::InvalidEntitySpec { .. })
            ),
            "{bad:?}"
        );
    }
    // Provided IDs for a generating strategy.
    let s = spec("e", &["k"], IdStrategy::UuidV7);
    let given = vec![Some("x".to_string())];
    assert!(assign(&mut c, &target, &s, &keys(&["a"]), Some(&given), 1)
        .await
        .is_err());
}

/// The operations can run on a multi-threaded runtime (`tokio::spawn`, the desktop app).
#[allow(dead_code, clippy::too_many_arguments)]
fn futures_are_send(
    pool: PgPool,
    mut c: PgConnection,
    target: CacheTarget,
    s: EntitySpec,
    keys: Vec<String>,
    mut out: Vec<u8>,
) {
    fn send<T: Send>(_: T) {}
    send(register_entity(&mut c, &target, &s));
    send(assign(&mut c, &target, &s, &keys, None, 1));
    send(lookup(&mut c, &target, "e", &keys));
    send(idcache::entities(&pool, Some(&target)));
    send(idcache::list(&pool, &target, "e", &CacheQuery::default()));
    send(idcache::show(&pool, &target, "e", "k"));
    send(idcache::export_csv(&pool, &target, "e", &mut out));
    send(idcache::import_csv(&pool, &target, "e", &b""[..]));
    send(idcache::clear(&pool, &target, "e"));
}
