//! Presets written through the API, each a checked, canonical JSON body.

use super::SqlStore;
use crate::*;
use sqlx::Row;

impl SqlStore {
    pub(super) async fn upsert_preset(
        &self,
        name: &str,
        body: &serde_json::Value,
        now: i64,
    ) -> StoreResult<bool> {
        self.count(1);
        let existed = sqlx::query("SELECT 1 FROM presets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.writer)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO presets (name, body, created_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(body.to_string())
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(!existed)
    }

    pub(super) async fn preset(&self, name: &str) -> StoreResult<Option<serde_json::Value>> {
        self.count(1);
        let row = sqlx::query("SELECT body FROM presets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| parse(&row.try_get::<String, _>("body")?))
            .transpose()
    }

    pub(super) async fn presets(&self) -> StoreResult<Vec<serde_json::Value>> {
        self.count(1);
        let rows = sqlx::query("SELECT body FROM presets ORDER BY name")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| parse(&row.try_get::<String, _>("body")?))
            .collect()
    }

    pub(super) async fn remove_preset(&self, name: &str) -> StoreResult<bool> {
        self.count(1);
        let done = sqlx::query("DELETE FROM presets WHERE name = $1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn parse(text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Other(format!("a stored preset: {e}")))
}
