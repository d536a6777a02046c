//! The event outbox: each job's state changes, and their webhook deliveries.

use super::rows::{self, EVENT_COLUMNS};
use super::SqlStore;
use crate::*;
use sqlx::Row;

impl SqlStore {
    pub(super) async fn events_of(&self, id: &str) -> StoreResult<Vec<EventRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = $1 ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::event).collect()
    }

    pub(super) async fn events_since(
        &self,
        after: i64,
        job: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events WHERE seq > $1 AND ($2 IS NULL OR job_id = $2)
             ORDER BY seq LIMIT $3"
        ))
        .bind(after)
        .bind(job)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::event).collect()
    }

    pub(super) async fn recently_finished(
        &self,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<FinishedJob>> {
        self.count(2);
        // Off jobs_ended_at: the ended jobs of the window, never the table.
        let recent = "SELECT id FROM jobs WHERE state IN ('FINISHED', 'ERROR', 'ABANDONED', 'CANCELED')
                        AND state = 'FINISHED' AND state_changed_at >= $1 ORDER BY state_changed_at DESC LIMIT $2";
        let events = sqlx::query(&format!(
            "SELECT job_id, state, created_at FROM job_events WHERE job_id IN ({recent}) ORDER BY job_id, seq"
        ))
        .bind(since)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        let results = sqlx::query(&format!(
            "SELECT job_id, result FROM tasks WHERE job_id IN ({recent}) AND result IS NOT NULL"
        ))
        .bind(since)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        let mut jobs: Vec<FinishedJob> = Vec::new();
        for row in &events {
            let id: String = row.try_get("job_id")?;
            let state = rows::parse_state(row.try_get("state")?)?;
            let at: i64 = row.try_get("created_at")?;
            match jobs.last_mut() {
                Some(job) if job.id == id => job.events.push((state, at)),
                _ => jobs.push(FinishedJob {
                    id,
                    events: vec![(state, at)],
                    results: Vec::new(),
                }),
            }
        }
        for row in &results {
            let id: String = row.try_get("job_id")?;
            let text: String = row.try_get("result")?;
            if let (Some(job), Ok(value)) = (
                jobs.iter_mut().find(|j| j.id == id),
                serde_json::from_str(&text),
            ) {
                job.results.push(value);
            }
        }
        Ok(jobs)
    }

    pub(super) async fn newest_event(&self) -> StoreResult<i64> {
        self.count(1);
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM job_events")
            .fetch_one(&self.reader)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// One event of the job back to pending, due now; its attempts so far stay.
    pub(super) async fn deliver_again(
        &self,
        job_id: &str,
        seq: i64,
        now: i64,
    ) -> StoreResult<bool> {
        self.count(1);
        let done = sqlx::query(
            "UPDATE job_events SET delivery = 'pending', next_attempt_at = $1
             WHERE seq = $2 AND job_id = $3 AND delivery != 'none' AND notify_url IS NOT NULL",
        )
        .bind(now)
        .bind(seq)
        .bind(job_id)
        .execute(&self.writer)
        .await?
        .rows_affected();
        if done > 0 {
            self.events_signal.notify_waiters();
        }
        Ok(done > 0)
    }

    pub(super) async fn due(&self, now: i64, limit: u32) -> StoreResult<Vec<EventRecord>> {
        self.count(1);
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events e WHERE delivery = 'pending'
               AND seq = (SELECT MIN(x.seq) FROM job_events x WHERE x.job_id = e.job_id AND x.delivery = 'pending')
               AND next_attempt_at <= $1 ORDER BY next_attempt_at, seq LIMIT $2"
        ))
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut event = rows::event(row)?;
            if let Some(stored) = &event.notify_url {
                match crate::sealer::unseal(self.sealer.as_ref(), stored) {
                    Ok(url) => event.notify_url = Some(url),
                    Err(e) => {
                        // This replica's key cannot open it (a replica with
                        // the wrong or no secrets_key leads): it must neither
                        // hold up the outbox nor be lost. Put it off; a
                        // leader with the right key delivers it.
                        tracing::error!(seq = event.seq, job_id = %event.job_id, error = %e, "cannot open a sealed notify_url; delivery put off a minute");
                        self.postpone(event.seq, now + 60_000).await?;
                        continue;
                    }
                }
            }
            due.push(event);
        }
        Ok(due)
    }

    pub(super) async fn postpone(&self, seq: i64, until: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE job_events SET next_attempt_at = $1 WHERE seq = $2 AND delivery = 'pending'",
        )
        .bind(until)
        .bind(seq)
        .execute(&self.writer)
        .await?;
        self.count(1);
        Ok(())
    }

    pub(super) async fn record(
        &self,
        seq: i64,
        attempt: &AttemptRecord,
        outcome: DeliveryOutcome,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (event_seq, attempt, attempted_at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(seq)
        .bind(attempt.attempt as i64)
        .bind(attempt.attempted_at)
        .bind(attempt.status_code.map(i64::from))
        .bind(&attempt.error)
        .bind(attempt.duration_ms as i64)
        .execute(&mut *tx)
        .await?;
        let (delivery, next) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None),
            DeliveryOutcome::Retry { next_attempt_at } => ("pending", Some(next_attempt_at)),
            DeliveryOutcome::Failed => ("failed", None),
        };
        sqlx::query("UPDATE job_events SET delivery = $1, next_attempt_at = $2, attempts = attempts + 1 WHERE seq = $3")
            .bind(delivery)
            .bind(next)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.count(2);
        Ok(())
    }

    pub(super) async fn deliveries_of(
        &self,
        job_id: &str,
    ) -> StoreResult<Vec<(EventRecord, Vec<AttemptRecord>)>> {
        self.count(2);
        let events = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM job_events WHERE job_id = $1 AND delivery != 'none' ORDER BY seq"
        ))
        .bind(job_id)
        .fetch_all(&self.reader)
        .await?;
        let attempts = sqlx::query(
            "SELECT a.event_seq, a.attempt, a.attempted_at, a.status_code, a.error, a.duration_ms FROM delivery_attempts a
             JOIN job_events e ON e.seq = a.event_seq WHERE e.job_id = $1 ORDER BY a.event_seq, a.attempt",
        )
        .bind(job_id)
        .fetch_all(&self.reader)
        .await?;
        let mut out = Vec::new();
        for row in &events {
            let event = rows::event(row)?;
            let mut list = Vec::new();
            for a in &attempts {
                if a.try_get::<i64, _>("event_seq")? == event.seq {
                    list.push(rows::attempt(a)?);
                }
            }
            out.push((event, list));
        }
        Ok(out)
    }
}
