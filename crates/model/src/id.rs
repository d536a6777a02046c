//! Job ids: opaque strings of 50 lowercase hex characters, as the seed's were.
//! The first 12 characters are the creation time in milliseconds, so ids sort
//! by age and serve as list cursors; the other 38 are random.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

pub const JOB_ID_LEN: usize = 50;

impl JobId {
    pub fn generate(now_ms: i64) -> JobId {
        let mut random = [0u8; 19];
        rand::thread_rng().fill_bytes(&mut random);
        let mut id = format!("{:012x}", now_ms.max(0) as u64 & 0xffff_ffff_ffff);
        for byte in random {
            id.push_str(&format!("{byte:02x}"));
        }
        JobId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When a job id was made (ms since the Unix epoch), from its first 12
    /// characters.
    pub fn created_ms(id: &str) -> Option<i64> {
        i64::from_str_radix(id.get(..12)?, 16).ok()
    }

    /// Whether a string could be a job id; anything else is answered 404
    /// without a store lookup.
    pub fn looks_valid(s: &str) -> bool {
        s.len() == JOB_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_50_hex_and_sort_by_time() {
        let a = JobId::generate(1_000);
        let b = JobId::generate(2_000);
        assert_eq!(a.0.len(), JOB_ID_LEN);
        assert!(JobId::looks_valid(&a.0));
        assert!(a < b);
        assert_ne!(JobId::generate(1_000), JobId::generate(1_000));
        assert!(!JobId::looks_valid("xyz"));
        assert_eq!(
            JobId::created_ms(&JobId::generate(1_234_567).0),
            Some(1_234_567)
        );
    }
}
