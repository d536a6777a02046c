//! The vocabulary of media-nommer: jobs, states, options, URIs, error codes and
//! the wire types of the API. Pure data and rules; no I/O.

pub mod api;
pub mod backoff;
pub mod chunked;
pub mod error;
pub mod failure;
pub mod id;
pub mod kinds;
pub mod netpolicy;
pub mod nommers;
pub mod options;
pub mod outputs;
pub mod presets;
pub mod state;
pub mod submit;
pub mod tasks;
pub mod uri;

pub use error::{CodedError, ErrorCode};
pub use failure::FailureCode;
pub use id::JobId;
pub use kinds::{FleetKind, NodeState, TaskKind};
pub use state::JobState;

/// Keep only the tail of a long text: errors are at the end of tool output.
/// The seed kept the last 1023 characters (counted as characters, not bytes).
pub const DETAILS_MAX_CHARS: usize = 1023;

pub fn tail_chars(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    text.chars().skip(count - max).collect()
}

/// Milliseconds since the Unix epoch, the one clock every store column uses.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 in UTC with millisecond precision.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_characters_not_bytes() {
        let text = "é".repeat(2000);
        let tail = tail_chars(&text, DETAILS_MAX_CHARS);
        assert_eq!(tail.chars().count(), 1023);
        assert_eq!(tail_chars("short", 10), "short");
        assert_eq!(tail_chars("abcdef", 3), "def");
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
