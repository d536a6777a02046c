//! Queues: each one's limit (from config) and pause, and its depth.

use super::SqlStore;
use crate::*;
use sqlx::Row;

impl SqlStore {
    pub(super) async fn write_queues(
        &self,
        queues: &[(String, Option<u32>)],
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        for (name, max) in queues {
            sqlx::query(
                "INSERT INTO queues (name, max_concurrency, paused, updated_at) VALUES ($1, $2, 0, $3)
                 ON CONFLICT (name) DO UPDATE SET max_concurrency = excluded.max_concurrency,
                   updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(max.map(i64::from))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.count(queues.len() as u64);
        Ok(())
    }

    pub(super) async fn pause_queue(
        &self,
        name: &str,
        paused: bool,
        now: i64,
    ) -> StoreResult<bool> {
        self.count(1);
        let changed = sqlx::query("UPDATE queues SET paused = $1, updated_at = $2 WHERE name = $3")
            .bind(paused as i64)
            .bind(now)
            .bind(name)
            .execute(&self.writer)
            .await?
            .rows_affected();
        if changed > 0 && !paused {
            // Its waiting tasks are claimable again.
            self.jobs_signal.notify_waiters();
        }
        Ok(changed > 0)
    }

    pub(super) async fn queues(&self) -> StoreResult<Vec<QueueRecord>> {
        self.count(1);
        let rows = sqlx::query(
            "SELECT q.name, q.max_concurrency, q.paused,
               (SELECT COUNT(*) FROM tasks t WHERE t.state = 'PENDING' AND t.queue = q.name) AS pending,
               (SELECT COUNT(*) FROM tasks t WHERE t.state IN ('DOWNLOADING', 'ENCODING', 'UPLOADING')
                  AND t.queue = q.name) AS running
             FROM queues q ORDER BY q.name",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(QueueRecord {
                    name: row.try_get("name")?,
                    max_concurrency: row
                        .try_get::<Option<i64>, _>("max_concurrency")?
                        .map(|n| n as u32),
                    paused: row.try_get::<i64, _>("paused")? != 0,
                    pending: row.try_get::<i64, _>("pending")? as u64,
                    running: row.try_get::<i64, _>("running")? as u64,
                })
            })
            .collect()
    }
}
