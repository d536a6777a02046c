//! Stable error codes and their HTTP status: the one place that maps them.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:literal, $doc:literal),)*) => {
        /// Every error the API can answer. The string codes are stable.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            pub fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => $doc,)* }
            }

            pub fn parse(code: &str) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    MissingField = ("missing_field", 400, "A required field is absent, empty or null (the seed's five checks)."),
    EmptyBody = ("empty_body", 400, "The request body is empty."),
    InvalidJson = ("invalid_json", 400, "The request body is not valid JSON."),
    NotAnObject = ("not_an_object", 400, "The request body is JSON but not an object."),
    BodyTooLarge = ("body_too_large", 413, "The request body is larger than max_body_bytes."),
    InvalidField = ("invalid_field", 400, "A field has the wrong type (for example a number where a URI string belongs)."),
    InvalidJobOptions = ("invalid_job_options", 400, "job_options is not an object, or options is not a list of pass objects."),
    UnknownNommer = ("unknown_nommer", 400, "job_options.nommer names no known nommer."),
    EmptyPasses = ("empty_passes", 400, "job_options.options is an empty list."),
    TooManyPasses = ("too_many_passes", 400, "More than two passes were given."),
    InvalidOptionPair = ("invalid_option_pair", 400, "An option is not a [flag, value] pair with a well-formed flag."),
    InvalidOptionValue = ("invalid_option_value", 400, "An option value is not of its flag's kind (a number, time, size, codec, filtergraph that FFmpeg's grammar reads, ...), or not a string, number, boolean or null."),
    OptionNotAllowed = ("option_not_allowed", 400, "An option flag is not on the allowlist, stands where it cannot (an input option among output options, a stream specifier on a flag that takes none), or is a parameter-string key that is not allowed."),
    OptionMissingValue = ("option_missing_value", 400, "An option flag that takes a value was given none."),
    OptionUnexpectedValue = ("option_unexpected_value", 400, "An option flag that takes no value was given one."),
    FilterNotAllowed = ("filter_not_allowed", 400, "A filtergraph names a filter, or a filter option (by name or by position), that is not on the allowlist."),
    FormatNotAllowed = ("format_not_allowed", 400, "An input or output format (given by -f or inferred from the destination) is not on the allowlist: it would open other files, devices or the network."),
    ChunkingNotSupported = ("chunking_not_supported", 400, "The job asks to be chunked, but its options show chunks could not give what the whole would: a filter or flag that needs the whole timeline, an encoder or output other than a single MP4, MKV or WebM video file, or a destination intermediates cannot be written beside."),
    InvalidOutputs = ("invalid_outputs", 400, "An entry of outputs is malformed: an unknown kind or field, a destination of the wrong shape (a prefix ending in / for abr, thumbnail and sprite; an output URI carrying credentials or over http), a rendition without a size, a duplicate name or destination. The message names the output."),
    UnknownPreset = ("unknown_preset", 400, "The job names a preset that does not exist."),
    InvalidPreset = ("invalid_preset", 400, "A preset written with PUT /v1/presets/{name} is malformed: a bad name, neither outputs nor job_options, an output without a relative path, or options the job check refuses. The message says which."),
    PresetBuiltin = ("preset_builtin", 409, "A built-in preset, or one from feederd's config, cannot be changed or deleted through the API."),
    UnknownQueue = ("unknown_queue", 400, "The job names a queue that feederd's config does not define ([queues.NAME]); `default` always exists."),
    IdempotencyConflict = ("idempotency_conflict", 409, "This Idempotency-Key was used, within idempotency_ttl, for a submit with a different body."),
    NotRetryable = ("not_retryable", 409, "Only a job that ended in ERROR or CANCELED can be retried."),
    OutputFormatUnknown = ("output_format_unknown", 400, "No -f was given and the destination's extension names no known format."),
    UriMalformed = ("uri_malformed", 400, "A source, destination or notify URI cannot be parsed."),
    UriUnknownScheme = ("uri_unknown_scheme", 400, "A URI's scheme is not one this service reads or writes."),
    UriNotAllowed = ("uri_not_allowed", 400, "A file:// path lies outside the configured file_roots (resolved through symlinks), holds a '.' or '..' segment, an encoded '/', a backslash or a NUL, or file:// is off."),
    SourceNotFound = ("source_not_found", 422, "The s3/gs/az source does not exist: feederd looked at submit (when it has credentials for it; see check_sources_at_submit)."),
    AddressNotAllowed = ("address_not_allowed", 400, "An http(s) source or notify_url points at a forbidden address (link-local, cloud metadata, or a range the config forbids)."),
    InvalidQuery = ("invalid_query", 400, "A query parameter is malformed (state, limit, cursor or wait_ms)."),
    Unauthorized = ("unauthorized", 401, "No valid bearer token was given."),
    Forbidden = ("forbidden", 403, "The token is valid, but its role may not do this (see the roles in docs/API.md)."),
    RequestTimeout = ("request_timeout", 408, "The request body did not arrive within the body timeout (60 s)."),
    TooManyStreams = ("too_many_streams", 503, "This replica already holds max_long_polls event streams; retry later, or on another replica."),
    TooManyLeases = ("too_many_leases", 400, "A heartbeat listed more leases than max_heartbeat_leases (256)."),
    NotFound = ("not_found", 404, "No such job, or no such route."),
    MethodNotAllowed = ("method_not_allowed", 405, "The route exists but not for this method."),
    JobFinished = ("job_finished", 409, "The job is already in a terminal state."),
    LeaseLost = ("lease_lost", 409, "The worker's lease on this job expired or was taken over; its write was refused."),
    InvalidTransition = ("invalid_transition", 409, "The requested state change is not allowed from the job's current state."),
    StoreUnavailable = ("store_unavailable", 503, "The job store cannot be reached right now; retry."),
    Internal = ("internal", 500, "An unexpected failure inside feederd."),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every v1 error.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiErrorBody {
    pub error_code: String,
    pub message: String,
}

/// An error with its code and a message safe to show (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CodedError {
    pub code: ErrorCode,
    pub message: String,
}

impl CodedError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CodedError {
        CodedError {
            code,
            message: message.into(),
        }
    }

    pub fn body(&self) -> ApiErrorBody {
        ApiErrorBody {
            error_code: self.code.as_str().to_string(),
            message: self.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert!((400..600).contains(&code.http_status()));
        }
    }
}

#[cfg(test)]
mod docs_tests {
    use super::ErrorCode;

    #[test]
    fn every_code_is_documented_with_its_status() {
        let docs = include_str!("../../../docs/API.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.http_status());
            assert!(docs.contains(&row), "docs/API.md lacks {row}");
        }
    }
}
