//! `copy`: the source goes to the destination unchanged; no tool runs.

use super::{Checked, Nommer};
use crate::error::ErrorCode;
use crate::kinds::TaskKind;
use crate::options::{self, Allowlist};
use crate::tasks::TaskPlan;
use crate::uri::MediaUri;
use crate::CodedError;
use serde_json::Value;

pub struct Copy;

/// The one pass a copy takes: `[{}]`, no options.
pub(super) fn one_empty_pass(raw: &Value, name: &str) -> Result<Vec<options::Pass>, CodedError> {
    let passes = options::parse_passes(raw)?;
    let has_flags = passes
        .iter()
        .any(|pass| !pass.infile_options.is_empty() || !pass.outfile_options.is_empty());
    if has_flags || passes.len() != 1 {
        return Err(CodedError::new(
            ErrorCode::InvalidJobOptions,
            format!(
                "the {name} nommer takes exactly one pass with no options: \"options\": [{{}}]"
            ),
        ));
    }
    Ok(passes)
}

impl Nommer for Copy {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn check(
        &self,
        raw: &Value,
        _dest: &MediaUri,
        _allow: &Allowlist,
    ) -> Result<Checked, CodedError> {
        Ok(Checked {
            passes: one_empty_pass(raw, "copy")?,
            warnings: Vec::new(),
            tasks: vec![TaskPlan::of(TaskKind::Copy)],
        })
    }
}
