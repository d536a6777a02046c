//! Job states and the one table of allowed transitions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The seed's seven states plus CANCELED. Names are upper-case on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobState {
    Pending,
    Downloading,
    Encoding,
    Uploading,
    Finished,
    Error,
    Abandoned,
    Canceled,
}

/// Who asks for a transition. Leased states may only be entered by the lease
/// holder; maintenance transitions only by feederd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The worker holding the job's lease (checked against its token).
    Worker,
    /// feederd itself: claims, the reaper, cancels of unleased jobs.
    Feederd,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Pending,
        JobState::Downloading,
        JobState::Encoding,
        JobState::Uploading,
        JobState::Finished,
        JobState::Error,
        JobState::Abandoned,
        JobState::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Downloading => "DOWNLOADING",
            JobState::Encoding => "ENCODING",
            JobState::Uploading => "UPLOADING",
            JobState::Finished => "FINISHED",
            JobState::Error => "ERROR",
            JobState::Abandoned => "ABANDONED",
            JobState::Canceled => "CANCELED",
        }
    }

    /// A terminal job never changes state again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Error | JobState::Abandoned | JobState::Canceled
        )
    }

    /// States in which a worker holds the job under a lease.
    pub fn is_leased(self) -> bool {
        matches!(
            self,
            JobState::Downloading | JobState::Encoding | JobState::Uploading
        )
    }

    /// The transition table. Every state change in every store goes through here.
    ///
    /// - PENDING -> DOWNLOADING (feederd, when a worker claims the job)
    /// - DOWNLOADING -> ENCODING -> UPLOADING -> FINISHED (the lease holder)
    /// - any leased state -> ERROR | CANCELED (the lease holder, or feederd's reaper)
    /// - any leased state -> PENDING (lease expired or handed back: a retry)
    /// - PENDING -> ERROR (attempts exhausted), ABANDONED (reaper), CANCELED (cancel)
    pub fn can_transition(self, to: JobState, actor: Actor) -> bool {
        use JobState::*;
        if self.is_terminal() {
            return false;
        }
        match (actor, self, to) {
            (Actor::Feederd, Pending, Downloading) => true,
            (Actor::Worker, Downloading, Encoding) => true,
            (Actor::Worker, Encoding, Uploading) => true,
            (Actor::Worker, Uploading, Finished) => true,
            (Actor::Worker, from, Error | Canceled) => from.is_leased(),
            (Actor::Worker, from, Pending) => from.is_leased(),
            (Actor::Feederd, from, Pending) => from.is_leased(),
            (Actor::Feederd, _, Error | Canceled) => true,
            (Actor::Feederd, Pending, Abandoned) => true,
            _ => false,
        }
    }
}

impl JobState {
    /// Every state that may move to `to` by `actor`: what a store puts in the
    /// WHERE of a one-statement state change.
    pub fn sources(to: JobState, actor: Actor) -> impl Iterator<Item = JobState> {
        JobState::ALL
            .into_iter()
            .filter(move |from| from.can_transition(to, actor))
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("Invalid job state: {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn happy_path_is_allowed() {
        assert!(Pending.can_transition(Downloading, Actor::Feederd));
        assert!(Downloading.can_transition(Encoding, Actor::Worker));
        assert!(Encoding.can_transition(Uploading, Actor::Worker));
        assert!(Uploading.can_transition(Finished, Actor::Worker));
    }

    #[test]
    fn terminal_states_never_change() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobState::ALL {
                assert!(!from.can_transition(to, Actor::Worker));
                assert!(!from.can_transition(to, Actor::Feederd));
            }
        }
    }

    #[test]
    fn workers_cannot_skip_or_claim() {
        assert!(!Pending.can_transition(Downloading, Actor::Worker));
        assert!(!Downloading.can_transition(Finished, Actor::Worker));
        assert!(!Pending.can_transition(Error, Actor::Worker));
        assert!(!Encoding.can_transition(Abandoned, Actor::Feederd));
    }

    #[test]
    fn running_jobs_can_fail_cancel_or_retry() {
        for from in [Downloading, Encoding, Uploading] {
            assert!(from.can_transition(Error, Actor::Worker));
            assert!(from.can_transition(Canceled, Actor::Worker));
            assert!(from.can_transition(Pending, Actor::Feederd));
        }
        assert!(Pending.can_transition(Abandoned, Actor::Feederd));
        assert!(Pending.can_transition(Canceled, Actor::Feederd));
    }

    #[test]
    fn names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
        }
        assert_eq!("finished".parse::<JobState>().unwrap(), Finished);
        assert_eq!(
            "NOPE".parse::<JobState>().unwrap_err(),
            "Invalid job state: NOPE"
        );
    }
}
