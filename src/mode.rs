//! What a run does: one value, matched once at the top of the run (ripgrep's `Mode`).

use std::path::PathBuf;

use serde::Serialize;

use crate::ids::ChunkId;

/// What a run does: one value, matched once at the top of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Plans and reports; deletes nothing.
    DryRun,
    /// `--execute`: plans, then deletes the plan.
    Execute,
    /// `--apply-plan`: deletes a reviewed plan (its header gave the cutoff).
    Apply(PathBuf),
    /// `--explain`: why each chunk id is kept or would be deleted. Read-only, whatever other
    /// flags say.
    Explain(Vec<ChunkId>),
}

/// The mode as the report, the plan header and the metrics name it (spec 6, 8.3): an
/// `--explain` run is a dry run there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ModeName {
    #[default]
    DryRun,
    Execute,
    Apply,
}

impl ModeName {
    pub fn as_str(self) -> &'static str {
        match self {
            ModeName::DryRun => "dry-run",
            ModeName::Execute => "execute",
            ModeName::Apply => "apply",
        }
    }
}

impl std::fmt::Display for ModeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Mode {
    pub fn name(&self) -> ModeName {
        match self {
            Mode::DryRun | Mode::Explain(_) => ModeName::DryRun,
            Mode::Execute => ModeName::Execute,
            Mode::Apply(_) => ModeName::Apply,
        }
    }

    /// Whether the run deletes (`--execute`, `--apply-plan`).
    pub fn deletes(&self) -> bool {
        matches!(self, Mode::Execute | Mode::Apply(_))
    }
}
