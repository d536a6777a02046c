//! `/v1/nodes`: the workers feederd has heard from.

use crate::error::ApiResult;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use nommer_model::api::NodeList;

#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", responses((status = 200, body = NodeList)))]
pub async fn list_nodes(State(state): State<AppState>) -> ApiResult<Json<NodeList>> {
    let nodes = state
        .store
        .list_nodes()
        .await?
        .iter()
        .map(|n| n.to_api())
        .collect();
    Ok(Json(NodeList { nodes }))
}
