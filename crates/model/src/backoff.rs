//! The one backoff every retry uses: `first`, then twice as long each
//! time, never more than `max`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait before retry number `retry` (1 is the first retry; 0 waits
    /// as long as 1).
    pub fn delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// [`delay`](Self::delay) in whole milliseconds.
    pub fn delay_ms(&self, retry: u32) -> i64 {
        self.delay(retry).as_millis().min(i64::MAX as u128) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let waits: Vec<u64> = (0..6).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(waits, vec![500, 500, 1000, 2000, 3000, 3000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(3));
    }
}
