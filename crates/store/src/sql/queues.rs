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
        self.capped.store(
            queues.iter().any(|(_, max)| max.is_some()),
            std::sync::atomic::Ordering::Relaxed,
        );
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
        self.count(2);
        let rows = sqlx::query("SELECT name, max_concurrency, paused FROM queues ORDER BY name")
            .fetch_all(&self.reader)
            .await?;
        // One pass over unfinished tasks (off tasks_claimable), waiting
        // tasks (run_after NULL) not counted as pending, as the autoscaler
        // does not count them.
        let depths = sqlx::query(
            "SELECT queue, CASE WHEN state = 'PENDING' THEN 'pending' ELSE 'running' END AS kind, COUNT(*) AS n
             FROM tasks WHERE (state = 'PENDING' AND run_after IS NOT NULL)
               OR state IN ('DOWNLOADING', 'ENCODING', 'UPLOADING')
             GROUP BY queue, CASE WHEN state = 'PENDING' THEN 'pending' ELSE 'running' END",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut queues = Vec::with_capacity(rows.len());
        for row in &rows {
            let name: String = row.try_get("name")?;
            let (mut pending, mut running) = (0, 0);
            for depth in &depths {
                if depth.try_get::<String, _>("queue")? != name {
                    continue;
                }
                let n = depth.try_get::<i64, _>("n")? as u64;
                match depth.try_get::<String, _>("kind")?.as_str() {
                    "pending" => pending = n,
                    _ => running = n,
                }
            }
            queues.push(QueueRecord {
                max_concurrency: row
                    .try_get::<Option<i64>, _>("max_concurrency")?
                    .map(|n| n as u32),
                paused: row.try_get::<i64, _>("paused")? != 0,
                pending,
                running,
                name,
            });
        }
        Ok(queues)
    }
}
