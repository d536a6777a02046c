//! Retention: ended jobs, and nodes, past `job_retention` are deleted in
//! bounded batches, each in one transaction.

use super::SqlStore;
use crate::*;
use sqlx::Row;
use std::collections::BTreeMap;

/// The states a job ends in, as an SQL list.
const ENDED: &str = "'FINISHED', 'ERROR', 'ABANDONED', 'CANCELED'";

impl SqlStore {
    pub(super) async fn prune_ended(&self, before: i64, limit: u32) -> StoreResult<Pruned> {
        let mut tx = self.writer.begin().await?;
        // A job whose cleanup still runs, or with a webhook still to
        // deliver (retried for webhook_retry_period, or redelivered), is
        // kept until that ends too.
        let rows = sqlx::query(&format!(
            "SELECT id, state FROM jobs WHERE state IN ({ENDED}) AND state_changed_at < $1
               AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.job_id = jobs.id AND tasks.state NOT IN ({ENDED}))
               AND NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = jobs.id AND e.delivery = 'pending')
             ORDER BY state_changed_at LIMIT $2"
        ))
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
        for row in &rows {
            ids.push(row.try_get::<String, _>("id")?);
            *by_state.entry(row.try_get("state")?).or_default() += 1;
        }
        if !ids.is_empty() {
            let list = (1..=ids.len())
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            for sql in [
                format!("DELETE FROM delivery_attempts WHERE event_seq IN (SELECT seq FROM job_events WHERE job_id IN ({list}))"),
                format!("DELETE FROM job_events WHERE job_id IN ({list})"),
                format!("DELETE FROM tasks WHERE job_id IN ({list})"),
                format!("DELETE FROM idempotency_keys WHERE job_id IN ({list})"),
                format!("DELETE FROM jobs WHERE id IN ({list})"),
            ] {
                let mut query = sqlx::query(&sql);
                for id in &ids {
                    query = query.bind(id);
                }
                query.execute(&mut *tx).await?;
            }
            // The totals of ended jobs count what the store holds.
            for (state, n) in &by_state {
                sqlx::query(
                    "INSERT INTO job_totals (state, n) VALUES ($1, $2)
                     ON CONFLICT (state) DO UPDATE SET n = job_totals.n + excluded.n",
                )
                .bind(state)
                .bind(-n)
                .execute(&mut *tx)
                .await?;
            }
        }
        let nodes = sqlx::query("DELETE FROM nodes WHERE last_heartbeat_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        let deletes = if ids.is_empty() { 0 } else { 5 };
        self.count(2 + deletes + by_state.len() as u64);
        Ok(Pruned {
            jobs: ids.len() as u64,
            nodes,
        })
    }
}
