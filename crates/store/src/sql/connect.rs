//! Opening a store: pools, per-connection settings and migrations for each
//! backend. Both go through sqlx's `Any` driver so one body of SQL serves both.

use super::dialect::Dialect;
use crate::{StoreError, StoreResult};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;
use std::time::Duration;

/// Pool and timeout settings, from configuration.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Connections per feederd; PostgreSQL only (SQLite has one writer).
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails with 503.
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout` for every statement.
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

pub struct Pools {
    pub writer: AnyPool,
    pub reader: AnyPool,
}

fn migration_error(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Other(format!("migration failed: {e}"))
}

pub async fn open(url: &str, dialect: Dialect, settings: &PoolSettings) -> StoreResult<Pools> {
    sqlx::any::install_default_drivers();
    match dialect {
        Dialect::Sqlite => open_sqlite(url, settings).await,
        Dialect::Postgres => open_postgres(url, settings).await,
    }
}

/// `sqlite://PATH` or `sqlite::memory:`. One writer connection (SQLite has one
/// writer anyway, and this rules out busy-upgrade failures) and a read pool
/// that WAL lets run beside it.
async fn open_sqlite(url: &str, settings: &PoolSettings) -> StoreResult<Pools> {
    let in_memory = url.contains(":memory:");
    let base = url.split('?').next().unwrap_or(url);
    let writer_url = if in_memory {
        base.to_string()
    } else {
        format!("{base}?mode=rwc")
    };
    let writer = AnyPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(settings.acquire_timeout.max(Duration::from_secs(30)))
        .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
        .connect(&writer_url)
        .await?;
    sqlx::migrate!("migrations/sqlite")
        .run(&writer)
        .await
        .map_err(migration_error)?;
    // An in-memory database exists once per connection: read through the writer.
    let reader = if in_memory {
        writer.clone()
    } else {
        AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(settings.acquire_timeout.max(Duration::from_secs(30)))
            .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
            .connect(&format!("{base}?mode=ro"))
            .await?
    };
    Ok(Pools { writer, reader })
}

async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> sqlx::Result<()> {
    conn.execute(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
    )
    .await?;
    Ok(())
}

/// `postgres://...`: one pool for reads and writes; row locks order writers.
async fn open_postgres(url: &str, settings: &PoolSettings) -> StoreResult<Pools> {
    let timeout_ms = settings.statement_timeout.as_millis();
    let pool = AnyPoolOptions::new()
        .max_connections(settings.max_connections.max(2))
        .acquire_timeout(settings.acquire_timeout)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(
                    format!(
                        "SET statement_timeout = {timeout_ms}; SET lock_timeout = {timeout_ms}"
                    )
                    .as_str(),
                )
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    // Replicas starting together migrate one at a time.
    sqlx::migrate!("migrations/postgres")
        .run(&pool)
        .await
        .map_err(migration_error)?;
    Ok(Pools {
        writer: pool.clone(),
        reader: pool,
    })
}

/// A new store at `url` brought to schema `version` and no further: how a
/// store written by an earlier release is made, for the upgrade tests. The
/// pool is for writing that release's rows by hand.
pub async fn migrate_to(url: &str, version: i64) -> StoreResult<AnyPool> {
    sqlx::any::install_default_drivers();
    let dialect =
        Dialect::from_url(url).ok_or_else(|| StoreError::Other("unsupported store URL".into()))?;
    let (url, mut migrator) = match dialect {
        Dialect::Sqlite => (
            format!("{}?mode=rwc", url.split('?').next().unwrap_or(url)),
            sqlx::migrate!("migrations/sqlite"),
        ),
        Dialect::Postgres => (url.to_string(), sqlx::migrate!("migrations/postgres")),
    };
    let earlier: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    migrator.migrations = std::borrow::Cow::Owned(earlier);
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    migrator.run(&pool).await.map_err(migration_error)?;
    Ok(pool)
}
