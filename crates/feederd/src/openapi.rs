//! The OpenAPI description, generated from the handlers and wire types; each
//! operation's security comes from the route table (`routes/mod.rs`), the
//! same entry that puts the access check on the route.

use crate::metrics::__path_metrics;
use crate::routes::*;
use nommer_model::api::*;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "media-nommer feederd",
        description = "Distributed media encoding: jobs, nodes and webhooks. API tokens have a role (submit, read or admin): each operation's security names the roles that may call it. Workers present the worker token."
    ),
    paths(
        legacy_submit,
        legacy_submit_with_path_token,
        submit_job,
        get_job,
        list_jobs,
        cancel_job,
        job_deliveries,
        job_tasks,
        job_events,
        retry_job,
        redeliver,
        events,
        list_queues,
        pause_queue,
        resume_queue,
        list_nodes,
        summary,
        index,
        app_js,
        app_css,
        get_session,
        sign_in,
        sign_out,
        list_presets,
        get_preset,
        put_preset,
        delete_preset,
        fleet_view,
        lease,
        heartbeat,
        report_state,
        report_states,
        release,
        healthz,
        openapi,
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
        JobEvent,
        JobEventList,
        Queue,
        QueueList,
        nommer_model::kinds::NotifyFormat,
        Task,
        TaskList,
        nommer_model::TaskKind,
        nommer_model::NodeState,
        nommer_model::FleetKind,
        Health,
        LeaseRequest,
        LeaseResponse,
        LeaseGrant,
        HeartbeatRequest,
        HeartbeatResponse,
        StateReport,
        StateReportBatch,
        StateReportResults,
        ReleaseRequest,
        nommer_model::error::ApiErrorBody,
        nommer_model::JobState
    ))
)]
struct ApiDoc;

pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    components.add_security_scheme("api_token", bearer());
    components.add_security_scheme("worker_token", bearer());
    // The seed's client puts the token in the path. OpenAPI has no scheme
    // for that; this one names it and says so, and the path's `{token}`
    // parameter is what carries it (no header is read).
    components.add_security_scheme(
        "path_token",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "unused",
            "Not a header: the API token is the {token} segment of /t/{token}/job/submit.",
        ))),
    );
    for route in crate::routes::table() {
        let Some(item) = doc.paths.paths.get_mut(route.path) else {
            continue;
        };
        let operation = match route.method.as_str() {
            "GET" => item.get.as_mut(),
            "POST" => item.post.as_mut(),
            "PUT" => item.put.as_mut(),
            "DELETE" => item.delete.as_mut(),
            _ => None,
        };
        let Some(operation) = operation else {
            continue;
        };
        operation.security = Some(match route.access.security() {
            Some((scheme, scopes)) => vec![SecurityRequirement::new(scheme, scopes)],
            None => Vec::new(),
        });
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route is described, and every described operation is a route:
    /// a route added without its description (or the reverse) fails here,
    /// and the end-to-end walk of the document then covers every route.
    #[test]
    fn the_document_and_the_route_table_match() {
        let doc = spec();
        let mut described = std::collections::BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, operation) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
            ] {
                if let Some(operation) = operation {
                    described.insert((method.to_string(), path.clone()));
                    assert!(
                        operation.security.is_some(),
                        "{method} {path} has no security entry"
                    );
                }
            }
            assert!(item.patch.is_none());
        }
        let routed: std::collections::BTreeSet<_> = crate::routes::table()
            .iter()
            // The trailing-slash twins of the seed's routes share a description.
            .filter(|r| r.path == "/" || !r.path.ends_with('/'))
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(described, routed);
    }
}
