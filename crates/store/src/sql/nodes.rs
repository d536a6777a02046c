//! Worker nodes: what each last said of itself, and which fell silent.

use super::{rows, SqlStore};
use crate::*;
use nommer_model::NodeState;

impl SqlStore {
    /// Record a lease request's node report, unless this replica wrote the
    /// same node in the same state less than a second ago: a busy worker
    /// leases many times a second, and its heartbeats keep the row current.
    pub(super) async fn note_node(&self, node: &NodeReport, now: i64) -> StoreResult<()> {
        let fresh = self
            .nodes_written
            .lock()
            .unwrap()
            .get(&node.node_id)
            .is_some_and(|(at, state)| now - at < 1_000 && *state == node.state);
        if fresh {
            return Ok(());
        }
        self.upsert_node(node, now).await
    }

    /// Write the node's row as it reports itself.
    pub(super) async fn upsert_node(&self, node: &NodeReport, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO nodes (id, instance_id, fleet, state, hostname, version, max_jobs, running_jobs, sandbox, started_at, last_heartbeat_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $9, $9)
             ON CONFLICT (id) DO UPDATE SET instance_id = excluded.instance_id, fleet = excluded.fleet, state = excluded.state,
               hostname = excluded.hostname, version = excluded.version, max_jobs = excluded.max_jobs,
               running_jobs = excluded.running_jobs, sandbox = excluded.sandbox, last_heartbeat_at = excluded.last_heartbeat_at",
        )
        .bind(&node.node_id)
        .bind(&node.instance_id)
        .bind(node.fleet.as_str())
        .bind(node.state.as_str())
        .bind(&node.hostname)
        .bind(&node.version)
        .bind(node.max_jobs as i64)
        .bind(node.running_jobs as i64)
        .bind(now)
        .bind(&node.sandbox)
        .execute(&self.writer)
        .await?;
        self.count(1);
        self.nodes_written
            .lock()
            .unwrap()
            .insert(node.node_id.clone(), (now, node.state));
        Ok(())
    }

    pub(super) async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.count(1);
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY last_heartbeat_at DESC")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::node).collect()
    }

    pub(super) async fn mark_lost(&self, now: i64, silent_for_ms: i64) -> StoreResult<Vec<String>> {
        self.count(1);
        let ids = sqlx::query_scalar(&format!(
            "UPDATE nodes SET state = '{lost}' WHERE state IN ('{active}', '{draining}') AND last_heartbeat_at < $1 RETURNING id",
            lost = NodeState::Lost,
            active = NodeState::Active,
            draining = NodeState::Draining,
        ))
        .bind(now - silent_for_ms)
        .fetch_all(&self.writer)
        .await?;
        Ok(ids)
    }
}
