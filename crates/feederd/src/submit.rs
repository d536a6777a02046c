//! Accepting a job: validation that needs no configuration (model), then the
//! checks that do (storage support, file roots, address policy), then the store.

use crate::auth::Caller;
use crate::AppState;
use nommer_model::kinds::NotifyFormat;
use nommer_model::submit::{self, Submission};
use nommer_model::uri::{Location, MediaUri};
use nommer_model::{now_ms, CodedError, ErrorCode, JobId};
use nommer_store::{IdempotencyKey, Inserted, JobRecord, NewJob};

/// What needs no lookup: the scheme is served and a `file://` path lies in
/// `file_roots`. Always run, whatever the lookups below take.
fn check_location(state: &AppState, field: &str, uri: &MediaUri) -> Result<(), CodedError> {
    if !state.storage.serves(uri.scheme()) {
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

/// A source that feederd can look at (in object storage, with credentials in
/// the URI or in its own config) must exist. Failures to look are not the
/// job's fault: the worker will find out and say so.
async fn check_source_exists(state: &AppState, uri: &MediaUri) -> Result<(), CodedError> {
    if !state.storage.objects().s3.check_sources_at_submit {
        return Ok(());
    }
    match state.storage.source_exists(uri).await {
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

fn check_queue(state: &AppState, queue: &str) -> Result<(), CodedError> {
    if state.config.queues.iter().any(|(name, _)| name == queue) {
        return Ok(());
    }
    Err(CodedError::new(
        ErrorCode::UnknownQueue,
        format!(
            "no queue {queue}; the queues are: {}",
            state
                .config
                .queues
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// How a submit arrived: which API, and the client's idempotency key.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The seed's `/job/submit`: its webhooks default to the seed's form.
    pub legacy: bool,
    pub idempotency_key: Option<String>,
}

/// A job accepted: new, or the one an idempotency key already made.
pub struct Accepted {
    pub job: JobRecord,
    pub replayed: bool,
}

/// The longest `Idempotency-Key` taken.
const MAX_KEY_LEN: usize = 255;

fn check_key(key: &str) -> Result<(), CodedError> {
    if (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    Err(CodedError::new(
        ErrorCode::InvalidField,
        format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
    ))
}

/// The body's digest as canonical JSON (keys sorted, no spaces): two
/// bodies that differ only in layout or key order are the same submit.
fn body_digest(body: &[u8]) -> Result<String, CodedError> {
    use sha2::{Digest, Sha256};
    let payload = submit::decode(body)?;
    let canonical = serde_json::to_string(&payload).unwrap_or_default();
    Ok(format!("{:x}", Sha256::digest(canonical.as_bytes())))
}

pub async fn accept(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
    request: &Request,
) -> Result<Accepted, CodedError> {
    if let Some(key) = &request.idempotency_key {
        check_key(key)?;
    }
    let submission = validate(state, body).await?;
    let queue = submission
        .queue
        .clone()
        .unwrap_or_else(|| submit::DEFAULT_QUEUE.to_string());
    check_queue(state, &queue)?;
    let notify_format = submission.notify_format.unwrap_or(match request.legacy {
        true => NotifyFormat::Form,
        false => state.config.webhook_format,
    });
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
        priority: submission.priority,
        queue,
        notify_format,
        retry_of: None,
        created_at: now,
    };
    let stored = |e: nommer_store::StoreError| CodedError::new(e.code(), e.to_string());
    let accepted = match &request.idempotency_key {
        None => Accepted {
            job: state.store.insert_job(&job).await.map_err(stored)?,
            replayed: false,
        },
        Some(key) => {
            let ttl = state.config.idempotency_ttl.as_millis() as i64;
            let key = IdempotencyKey {
                scope: caller.name.clone().unwrap_or_default(),
                key: key.clone(),
                digest: body_digest(body)?,
                expired_before: now - ttl,
            };
            match state
                .store
                .insert_job_once(&job, &key)
                .await
                .map_err(stored)?
            {
                Inserted::New(job) => Accepted {
                    job,
                    replayed: false,
                },
                Inserted::Replayed(job) => Accepted {
                    job,
                    replayed: true,
                },
                Inserted::Conflict => {
                    return Err(CodedError::new(
                        ErrorCode::IdempotencyConflict,
                        "this Idempotency-Key was used for a submit with a different body",
                    ))
                }
            }
        }
    };
    let record = &accepted.job;
    if accepted.replayed {
        tracing::info!(job_id = %record.id, "submit replayed for its idempotency key");
        return Ok(accepted);
    }
    crate::metrics::Metrics::add(&state.metrics.jobs_submitted, 1);
    tracing::info!(job_id = %record.id, source = %record.source_path, dest = %record.dest_path, nommer = %record.nommer, queue = %record.queue, priority = record.priority, submitted_by = record.submitted_by.as_deref().unwrap_or(""), "job submitted");
    Ok(accepted)
}

/// A retry is checked against today's config, as a new submit would be:
/// its queue, its URIs' schemes and roots, and its options against the
/// allowlist (which may have changed since the job was submitted).
fn recheck(
    state: &AppState,
    old: &JobRecord,
    spec: &nommer_store::Resubmission,
) -> Result<(), CodedError> {
    check_queue(state, &old.queue)?;
    let mut body = serde_json::json!({"source_path": spec.source_uri, "dest_path": spec.dest_uri});
    match old.job_options.get("outputs") {
        Some(outputs) => body["outputs"] = outputs.clone(),
        None => {
            body["job_options"] = serde_json::json!({
                "nommer": old.job_options["nommer"], "options": old.job_options["options"]})
        }
    }
    let serde_json::Value::Object(payload) = body else {
        unreachable!("built as an object");
    };
    let submission = submit::parse_payload(&payload, &state.config.allowlist)?;
    check_location(state, "source_path", &submission.source)?;
    for dest in &submission.writes {
        check_location(state, "dest_path", dest)?;
    }
    Ok(())
}

/// Submit an ERROR or CANCELED job again as a new job with the same spec,
/// linked to it by `retry_of`.
pub async fn retry(state: &AppState, old: &JobRecord) -> Result<JobRecord, CodedError> {
    if !matches!(
        old.state,
        nommer_model::JobState::Error | nommer_model::JobState::Canceled
    ) {
        return Err(CodedError::new(
            ErrorCode::NotRetryable,
            format!(
                "job {} is {}: only an ERROR or CANCELED job is retried",
                old.id, old.state
            ),
        ));
    }
    let stored = |e: nommer_store::StoreError| CodedError::new(e.code(), e.to_string());
    let spec = state
        .store
        .resubmission(&old.id)
        .await
        .map_err(stored)?
        .ok_or_else(|| CodedError::new(ErrorCode::NotFound, format!("no job {}", old.id)))?;
    recheck(state, old, &spec)?;
    let now = now_ms();
    let id = JobId::generate(now).0;
    let work_uri = match spec.chunked {
        true => {
            let dest = MediaUri::parse(&spec.dest_uri)?;
            Some(nommer_model::chunked::work_prefix(
                &dest,
                state.config.intermediate_store.as_deref(),
                &id,
            )?)
        }
        false => None,
    };
    let job = NewJob {
        id,
        source_uri: spec.source_uri,
        dest_uri: spec.dest_uri,
        source_path: old.source_path.clone(),
        dest_path: old.dest_path.clone(),
        notify_url: spec.notify_url,
        submitted_by: old.submitted_by.clone(),
        nommer: old.nommer.clone(),
        job_options: old.job_options.clone(),
        warnings: old.warnings.clone(),
        max_attempts: old.max_attempts,
        max_runtime_s: old.max_runtime_s,
        tasks: spec.tasks,
        work_uri,
        priority: old.priority,
        queue: old.queue.clone(),
        notify_format: old.notify_format,
        retry_of: Some(old.id.clone()),
        created_at: now,
    };
    let record = state.store.insert_job(&job).await.map_err(stored)?;
    crate::metrics::Metrics::add(&state.metrics.jobs_submitted, 1);
    tracing::info!(job_id = %record.id, retry_of = %old.id, "job retried");
    Ok(record)
}
