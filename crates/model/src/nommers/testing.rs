//! Nommers for tests of multi-task jobs and worker faults (test builds only):
//! `pair` makes two copy tasks, writing the destination with `.0` and `.1`
//! appended; `panic` makes one copy task on which the worker panics.

use super::{Checked, Nommer};
use crate::kinds::TaskKind;
use crate::options::Allowlist;
use crate::tasks::{TaskPlan, TaskSpec};
use crate::uri::MediaUri;
use crate::CodedError;
use serde_json::Value;

pub struct Pair;

impl Nommer for Pair {
    fn name(&self) -> &'static str {
        "pair"
    }

    fn check(
        &self,
        raw: &Value,
        _dest: &MediaUri,
        _allow: &Allowlist,
    ) -> Result<Checked, CodedError> {
        let task = |n: u32| {
            TaskPlan::new(
                TaskKind::Copy,
                TaskSpec {
                    dest_suffix: Some(format!(".{n}")),
                    ..Default::default()
                },
            )
        };
        Ok(Checked {
            passes: super::copy::one_empty_pass(raw, "pair")?,
            warnings: Vec::new(),
            tasks: vec![task(0), task(1)],
        })
    }
}

pub struct Panic;

impl Nommer for Panic {
    fn name(&self) -> &'static str {
        "panic"
    }

    fn check(
        &self,
        raw: &Value,
        _dest: &MediaUri,
        _allow: &Allowlist,
    ) -> Result<Checked, CodedError> {
        Ok(Checked {
            passes: super::copy::one_empty_pass(raw, "panic")?,
            warnings: Vec::new(),
            tasks: vec![TaskPlan::new(
                TaskKind::Copy,
                TaskSpec {
                    test_panic: Some("a test nommer panicked on purpose".into()),
                    ..Default::default()
                },
            )],
        })
    }
}
