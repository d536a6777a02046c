//! Accepting a job: validation that needs no configuration (model), then the
//! checks that do (storage support, file roots, address policy), then the store.

use crate::auth::Caller;
use crate::AppState;
use nommer_model::submit::{self, Submission};
use nommer_model::uri::{Location, MediaUri};
use nommer_model::{now_ms, CodedError, ErrorCode, JobId};
use nommer_store::{JobRecord, NewJob};

/// What needs no lookup: the scheme is served and a `file://` path lies in
/// `file_roots`. Always run, whatever the lookups below take.
fn check_location(state: &AppState, field: &str, uri: &MediaUri) -> Result<(), CodedError> {
    if !nommer_storage::supports(uri.scheme()) {
        return Err(CodedError::new(
            ErrorCode::UriUnknownScheme,
            format!(
                "{field}: {}:// storage is not available in this build",
                uri.scheme().as_str()
            ),
        ));
    }
    match uri.location() {
        Location::File { path } => state.config.file_roots.check(path).map_err(|mut e| {
            e.message = format!("{field}: {}", e.message);
            e
        }),
        Location::Http { url } => check_literal(state, field, url),
        Location::Object { .. } => Ok(()),
    }
}

fn address_not_allowed(field: &str, reason: String) -> CodedError {
    CodedError::new(ErrorCode::AddressNotAllowed, format!("{field}: {reason}"))
}

/// An http(s) URL that names an IP literal the address policy forbids.
fn check_literal(state: &AppState, field: &str, url: &url::Url) -> Result<(), CodedError> {
    nommer_storage::net::check_literal(url, &state.config.net_policy)
        .map_err(|reason| address_not_allowed(field, reason))
}

/// An http(s) host's addresses, looked up now (and checked again at connect
/// time, whatever this finds).
async fn check_resolved(state: &AppState, field: &str, url: &url::Url) -> Result<(), CodedError> {
    nommer_storage::net::check_host(url, &state.config.net_policy)
        .await
        .map_err(|reason| address_not_allowed(field, reason))
}

/// A source in object storage that feederd can look at (credentials in the
/// URI or in its own config) must exist. Failures to look are not the job's
/// fault: the worker will find out and say so.
async fn check_source_exists(state: &AppState, uri: &MediaUri) -> Result<(), CodedError> {
    let Location::Object { bucket, .. } = uri.location() else {
        return Ok(());
    };
    let objects = state.storage.objects();
    let can_look =
        uri.has_credentials() || objects.has_static_credentials(uri.scheme().as_str(), bucket);
    if !objects.s3.check_sources_at_submit || !can_look {
        return Ok(());
    }
    match state.storage.object_exists(uri).await {
        Ok(Some(false)) => Err(CodedError::new(
            ErrorCode::SourceNotFound,
            format!(
                "The specified input file cannot be found: {}",
                uri.redacted()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(source = %uri.redacted(), error = %e, "cannot check the source at submit; the worker will");
            Ok(())
        }
    }
}

pub async fn validate(state: &AppState, body: &[u8]) -> Result<Submission, CodedError> {
    let payload = submit::decode(body)?;
    let (payload, preset) = crate::presets::expand(state, payload).await?;
    let submission = submit::parse_expanded(&payload, &state.config.allowlist, preset.as_deref())?;
    check_location(state, "source_path", &submission.source)?;
    for dest in &submission.writes {
        check_location(state, "dest_path", dest)?;
    }
    if submission.chunked.is_some() {
        let store = state.config.intermediate_store.as_deref();
        nommer_model::chunked::work_prefix(&submission.dest, store, "check")?;
    }
    if let Some(url) = &submission.notify_url {
        check_literal(state, "notify_url", url)?;
    }
    // DNS and the object store may not hold a submission: past the bound
    // these lookups are left to connect time and to the worker.
    let checks = async {
        for (field, uri) in [
            ("source_path", &submission.source),
            ("dest_path", &submission.dest),
        ] {
            if let Location::Http { url } = uri.location() {
                check_resolved(state, field, url).await?;
            }
        }
        if let Some(url) = &submission.notify_url {
            check_resolved(state, "notify_url", url).await?;
        }
        check_source_exists(state, &submission.source).await
    };
    match tokio::time::timeout(state.config.submit_check_timeout, checks).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(
            timeout_s = state.config.submit_check_timeout.as_secs(),
            "submit checks timed out; addresses are checked again at connect time"
        ),
    }
    Ok(submission)
}

pub async fn accept(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
) -> Result<JobRecord, CodedError> {
    let submission = validate(state, body).await?;
    let now = now_ms();
    let id = JobId::generate(now).0;
    let work_uri = match submission.chunked {
        Some(_) => Some(nommer_model::chunked::work_prefix(
            &submission.dest,
            state.config.intermediate_store.as_deref(),
            &id,
        )?),
        None => None,
    };
    let job = NewJob {
        id,
        source_uri: submission.source.expose().to_string(),
        dest_uri: submission.dest_uri.clone(),
        source_path: submission.source.redacted(),
        dest_path: submission.dest_path.clone(),
        notify_url: submission.notify_url.as_ref().map(|u| u.to_string()),
        submitted_by: caller.name.clone(),
        nommer: submission.nommer.name().to_string(),
        job_options: submission.job_options.clone(),
        warnings: submission.warnings.clone(),
        max_attempts: submission.max_attempts.unwrap_or(state.config.max_attempts),
        max_runtime_s: submission.max_runtime_s,
        tasks: submission.tasks.clone(),
        work_uri,
        created_at: now,
    };
    let record = state
        .store
        .insert_job(&job)
        .await
        .map_err(|e| CodedError::new(e.code(), e.to_string()))?;
    crate::metrics::Metrics::add(&state.metrics.jobs_submitted, 1);
    tracing::info!(job_id = %record.id, source = %record.source_path, dest = %record.dest_path, nommer = %record.nommer, submitted_by = record.submitted_by.as_deref().unwrap_or(""), "job submitted");
    Ok(record)
}
