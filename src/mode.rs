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

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> [Mode; 4] {
        [Mode::DryRun, Mode::Execute, Mode::Apply(PathBuf::from("plan.jsonl")), Mode::Explain(vec![ChunkId([7; 32])])]
    }

    /// Only `--execute` and `--apply-plan` delete; `--explain` is read-only whatever else.
    #[test]
    fn only_execute_and_apply_delete() {
        let deleting: Vec<bool> = all().iter().map(Mode::deletes).collect();
        assert_eq!(deleting, [false, true, true, false]);
    }

    /// Spec 6 and 8.3: an `--explain` run is named a dry run in the report and the plan.
    #[test]
    fn explain_is_named_a_dry_run() {
        let names: Vec<&str> = all().iter().map(|m| m.name().as_str()).collect();
        assert_eq!(names, ["dry-run", "execute", "apply", "dry-run"]);
    }

    /// The name the report serializes is the one the plan header and the metrics print.
    #[test]
    fn the_serialized_name_is_the_printed_one() {
        for name in [ModeName::DryRun, ModeName::Execute, ModeName::Apply] {
            assert_eq!(serde_json::to_value(name).unwrap(), serde_json::Value::from(name.as_str()));
            assert_eq!(name.to_string(), name.as_str());
        }
    }
}
