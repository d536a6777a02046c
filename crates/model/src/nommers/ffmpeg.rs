//! `ffmpeg`: FFmpeg runs the job's passes, each checked against the allowlist.

use super::{Checked, Nommer, SEED_FFMPEG_NOMMER};
use crate::kinds::TaskKind;
use crate::options::{self, Allowlist};
use crate::tasks::TaskPlan;
use crate::uri::MediaUri;
use crate::CodedError;
use serde_json::Value;

pub struct Ffmpeg;

impl Nommer for Ffmpeg {
    fn name(&self) -> &'static str {
        "ffmpeg"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &[SEED_FFMPEG_NOMMER]
    }

    fn check(
        &self,
        raw: &Value,
        dest: &MediaUri,
        allow: &Allowlist,
    ) -> Result<Checked, CodedError> {
        let mut passes = options::parse_passes(raw)?;
        let warnings = options::modernize(&mut passes);
        let passes = options::check_passes(passes, allow)?;
        if passes.iter().any(|pass| pass.output_format().is_none()) {
            crate::submit::inferred_format(dest)?;
        }
        Ok(Checked {
            passes,
            warnings,
            tasks: vec![TaskPlan::of(TaskKind::Ffmpeg)],
        })
    }
}
