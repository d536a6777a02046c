//! Why a job ended in ERROR, as a stable code: the v1 job's `error_code`.
//! The codes of refused requests (`ErrorCode`) may also end a job, when a
//! worker's own check refuses what feederd accepted; these are the codes
//! only a running job can earn.

use serde::{Deserialize, Serialize};

macro_rules! failure_codes {
    ($($variant:ident = ($code:literal, $doc:literal),)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum FailureCode { $($variant,)* }

        impl FailureCode {
            pub const ALL: &'static [FailureCode] = &[$(FailureCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(FailureCode::$variant => $code,)* }
            }

            pub fn description(self) -> &'static str {
                match self { $(FailureCode::$variant => $doc,)* }
            }

            pub fn parse(code: &str) -> Option<FailureCode> {
                match code { $($code => Some(FailureCode::$variant),)* _ => None }
            }
        }
    };
}

failure_codes! {
    ToolFailed = ("tool_failed", "ffmpeg (or another tool) exited with an error; the details end with its stderr."),
    OutputTooLarge = ("output_too_large", "A tool wrote more than max_output_bytes: one file (RLIMIT_FSIZE) or the scratch directory in all."),
    RuntimeExceeded = ("runtime_exceeded", "The job's work on a worker ran past max_job_runtime, or the job's own max_runtime_s."),
    MemoryExceeded = ("memory_exceeded", "A tool ran out of its address space (max_tool_memory_bytes)."),
    ToolStalled = ("tool_stalled", "ffmpeg reported no progress for max_tool_stall seconds (a filter expression that never ends, say) and was stopped."),
    StorageFailed = ("storage_failed", "The source could not be read or the destination written. A transfer that kept failing transiently (a dropped connection, a 5xx) is retried first, with the attempt counted, like an expired lease."),
    QcFailed = ("qc_failed", "The output did not pass its check: ffprobe could not read it back (an encode ffmpeg reported as done but left truncated), or a chunked job's frame count, duration or streams differ from its plan; nothing was published, and the details say which."),
    LeaseExpired = ("lease_expired", "The task's lease expired on every one of its max_attempts tries: its workers died, froze or lost touch with feederd."),
    SourceTooLarge = ("source_too_large", "The source is larger than the worker's max_download_bytes (256 GiB by default); nothing past the bound is read."),
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_back_and_differ_from_request_codes() {
        for code in FailureCode::ALL {
            assert_eq!(FailureCode::parse(code.as_str()), Some(*code));
            assert_eq!(crate::ErrorCode::parse(code.as_str()), None, "{code}");
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }

    #[test]
    fn every_code_is_documented() {
        let docs = include_str!("../../../docs/API.md");
        for code in FailureCode::ALL {
            let row = format!("| `{}` |", code.as_str());
            assert!(docs.contains(&row), "docs/API.md lacks {row}");
        }
    }
}
