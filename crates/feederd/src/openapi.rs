//! The OpenAPI description, generated from the handlers and wire types.

use crate::metrics::__path_metrics;
use crate::routes::*;
use nommer_model::api::*;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "media-nommer feederd",
        description = "Distributed media encoding: jobs, nodes and webhooks."
    ),
    paths(
        legacy_submit,
        submit_job,
        get_job,
        list_jobs,
        cancel_job,
        job_deliveries,
        list_nodes,
        healthz,
        metrics
    ),
    components(schemas(
        Job,
        JobList,
        Progress,
        LegacySubmitResponse,
        Node,
        NodeList,
        Delivery,
        DeliveryAttempt,
        DeliveryList,
        Health,
        nommer_model::error::ApiErrorBody,
        nommer_model::JobState
    ))
)]
struct ApiDoc;

pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
