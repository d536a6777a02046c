//! The same conformance suite against PostgreSQL (a database per case), plus
//! what only a shared database has: concurrent claims from several replicas
//! and leadership.

use nommer_store::conformance::{self, new_job, node, CASES, POLICY};
use nommer_store::leader::Leadership;
use nommer_store::sql::{PoolSettings, SqlStore};
use nommer_store::Store;
use nommer_testkit::postgres::PgServer;
use std::collections::HashSet;
use std::time::Duration;

async fn store(url: &str) -> SqlStore {
    SqlStore::open(url, POLICY, &PoolSettings::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_conformance() {
    let server = PgServer::shared();
    for case in CASES {
        let url = server.fresh_database().await;
        conformance::run(case, &store(&url).await).await;
        eprintln!("ok: {case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_claiming_at_once_never_share_a_job() {
    let url = PgServer::shared().fresh_database().await;
    let a = store(&url).await;
    let b = store(&url).await;
    let now = 1_800_000_000_000;
    for i in 0..200 {
        a.insert_job(&new_job(now + i, false)).await.unwrap();
    }
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim(&node(&format!("n{i}")), 3, now + 1000)
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.job.id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every job claimed once");
    assert_eq!(unique.len(), 200, "no job claimed twice");
}

#[tokio::test]
async fn a_job_written_on_one_replica_wakes_waiters_on_another() {
    let url = PgServer::shared().fresh_database().await;
    let a = store(&url).await;
    let b = store(&url).await;
    // Let b's listener connect before the write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signal = b.jobs_signal();
    let woken = signal.notified();
    a.insert_job(&new_job(1_800_000_000_000, false))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), woken)
        .await
        .expect("replica b was not woken by replica a's job");
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_new_one_when_it_goes() {
    let url = PgServer::shared().fresh_database().await;
    let (stop_a, rx_a) = tokio::sync::watch::channel(false);
    let (_stop_b, rx_b) = tokio::sync::watch::channel(false);
    let mut a = Leadership::postgres(&url, "a", rx_a);
    tokio::time::timeout(Duration::from_secs(5), a.wait_until_leader())
        .await
        .expect("a became leader");
    let b = Leadership::postgres(&url, "b", rx_b);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.is_leader() && !b.is_leader(), "exactly one leader");
    stop_a.send(true).unwrap();
    let mut b = b;
    tokio::time::timeout(Duration::from_secs(5), b.wait_until_leader())
        .await
        .expect("b took over within seconds");
    assert!(!a.is_leader());
}

#[tokio::test]
async fn a_store_of_the_previous_release_is_carried_forward() {
    let url = PgServer::shared().fresh_database().await;
    conformance::upgrade_from_the_previous_release(&url).await;
}

/// Every migration keeps both backends' schemas in step: the same tables,
/// the same columns with the same nullability, the same indexes.
#[tokio::test]
async fn both_backends_have_the_same_schema() {
    use sqlx::Row;
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("store.db").display());
    let pg_url = PgServer::shared().fresh_database().await;
    let latest = i64::MAX;
    let sqlite = nommer_store::sql::migrate_to(&sqlite_url, latest)
        .await
        .unwrap();
    let pg = nommer_store::sql::migrate_to(&pg_url, latest)
        .await
        .unwrap();
    let ours = |name: &str| !name.starts_with("_sqlx") && !name.starts_with("sqlite_");

    let mut lite = Vec::new();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&sqlite)
            .await
            .unwrap();
    for table in tables.into_iter().filter(|t| ours(t)) {
        let columns = sqlx::query(&format!(
            "SELECT name, \"notnull\" AS nn, pk FROM pragma_table_info('{table}')"
        ))
        .fetch_all(&sqlite)
        .await
        .unwrap();
        for c in columns {
            let name: String = c.try_get("name").unwrap();
            // SQLite's INTEGER PRIMARY KEY is NOT NULL whatever it says.
            let not_null =
                c.try_get::<i64, _>("nn").unwrap() != 0 || c.try_get::<i64, _>("pk").unwrap() != 0;
            lite.push(format!(
                "{table}.{name} {}",
                if not_null { "not null" } else { "null" }
            ));
        }
    }
    let mut post = Vec::new();
    let columns = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, is_nullable::text AS n FROM information_schema.columns
         WHERE table_schema = current_schema()",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    for c in columns {
        let table: String = c.try_get("t").unwrap();
        if !ours(&table) {
            continue;
        }
        let name: String = c.try_get("c").unwrap();
        let nullable: String = c.try_get("n").unwrap();
        post.push(format!(
            "{table}.{name} {}",
            if nullable == "NO" { "not null" } else { "null" }
        ));
    }
    lite.sort();
    post.sort();
    assert_eq!(lite, post);

    let mut lite_indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(&sqlite)
    .await
    .unwrap();
    let mut pg_indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%_pkey'",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    lite_indexes.retain(|i| ours(i));
    pg_indexes.retain(|i| ours(i));
    lite_indexes.sort();
    pg_indexes.sort();
    assert_eq!(lite_indexes, pg_indexes);
    assert!(lite.contains(&"tasks.lease_token null".to_string()));
}
