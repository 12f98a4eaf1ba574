//! Verify's verdicts (spec 4.7, 8.3): what each check found, as the report's `verify`
//! object, and whether the run may go on. Each verdict is made here, once.

use serde::Serialize;

use crate::ids::ChunkId;
use crate::locations::Location;

use super::{BeforeChecks, Found, SAMPLE};

/// The `verify` object of the report: `--verify`'s exact checks.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub missing_before: u64,
    pub missing_after: u64,
    pub planned_but_referenced: u64,
    /// Whether the store was listed again after the deletes (`--execute` only; skipped when
    /// a signal stopped the run, which must exit promptly).
    pub after_checked: bool,
    /// Bytes the exact checks spilled under `--work-dir`.
    pub spill_bytes: u64,
    /// Up to [`SAMPLE`] `bucket/key` names for each of the three counts.
    pub missing_before_keys: Vec<String>,
    pub missing_after_keys: Vec<String>,
    pub planned_but_referenced_keys: Vec<String>,
}

/// A failed verdict (exit 8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error("{count} planned chunks are referenced, e.g. {first}; nothing deleted")]
    PlannedReferenced { count: u64, first: String },
    #[error("{count} chunks of the reviewed plan are referenced by a live manifest now, e.g. {first}; nothing deleted")]
    ReviewedReferenced { count: u64, first: String },
    #[error("{count} referenced chunks are missing, e.g. {first}")]
    Missing { count: u64, first: String },
    #[error("{count} referenced chunks present before the deletes are gone after them")]
    GoneAfter { count: u64 },
}

/// `bucket/key` names of a sample of (location index, id).
pub(crate) fn sample_keys(locations: &[Location], sample: &[(u32, [u8; 32])]) -> Vec<String> {
    sample
        .iter()
        .take(SAMPLE)
        .filter_map(|(location, id)| {
            let location = locations.get(*location as usize)?;
            Some(format!("{}/{}", location.bucket(), location.chunk_key(&ChunkId(*id))))
        })
        .collect()
}

impl VerifyReport {
    /// The checks before any delete of a run's own plan.
    pub(crate) fn before_deletes(checks: &BeforeChecks, locations: &[Location], spill_bytes: u64) -> Self {
        let report = VerifyReport {
            planned_but_referenced: checks.planned_but_referenced.count,
            planned_but_referenced_keys: sample_keys(locations, &checks.planned_but_referenced.sample),
            missing_before: checks.missing_before.count,
            missing_before_keys: sample_keys(locations, &checks.missing_before.sample),
            spill_bytes,
            ..VerifyReport::default()
        };
        report.with_ok(|r| r.planned_but_referenced == 0)
    }

    /// `--apply-plan`'s check of the reviewed plan against the live manifests read now.
    pub(crate) fn of_reviewed_plan(referenced: &Found, locations: &[Location], spill_bytes: u64) -> Self {
        let report = VerifyReport {
            planned_but_referenced: referenced.count,
            planned_but_referenced_keys: sample_keys(locations, &referenced.sample),
            spill_bytes,
            ..VerifyReport::default()
        };
        report.with_ok(|r| r.planned_but_referenced == 0)
    }

    fn with_ok(mut self, ok: impl Fn(&Self) -> bool) -> Self {
        self.ok = ok(&self);
        self
    }

    fn first(keys: &[String]) -> String {
        keys.first().cloned().unwrap_or_default()
    }

    /// No delete may start while a planned chunk is referenced (a run's own plan).
    pub(crate) fn allows_deletes(&self) -> Result<(), VerifyFailure> {
        match self.planned_but_referenced {
            0 => Ok(()),
            count => {
                Err(VerifyFailure::PlannedReferenced { count, first: Self::first(&self.planned_but_referenced_keys) })
            }
        }
    }

    /// The same for a reviewed plan (`--apply-plan`).
    pub(crate) fn allows_applying(&self) -> Result<(), VerifyFailure> {
        match self.planned_but_referenced {
            0 => Ok(()),
            count => {
                Err(VerifyFailure::ReviewedReferenced { count, first: Self::first(&self.planned_but_referenced_keys) })
            }
        }
    }

    /// A dry run's verdict: a referenced chunk missing from the store fails it too.
    pub(crate) fn conclude_dry_run(&mut self) -> Result<(), VerifyFailure> {
        self.allows_deletes()?;
        self.ok = self.missing_before == 0;
        match self.missing_before {
            0 => Ok(()),
            count => Err(VerifyFailure::Missing { count, first: Self::first(&self.missing_before_keys) }),
        }
    }

    /// The verdict after the deletes: every referenced chunk listed before is still there.
    pub(crate) fn conclude_after(
        &mut self,
        missing: &Found,
        locations: &[Location],
        after_spill_bytes: u64,
    ) -> Result<(), VerifyFailure> {
        self.after_checked = true;
        self.spill_bytes += after_spill_bytes;
        self.missing_after = missing.count;
        self.missing_after_keys = sample_keys(locations, &missing.sample);
        self.ok = self.missing_after == 0 && self.planned_but_referenced == 0;
        match self.missing_after {
            0 => self.allows_deletes(),
            count => Err(VerifyFailure::GoneAfter { count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(count: u64, ids: &[u8]) -> Found {
        Found { count, sample: ids.iter().map(|&b| (0, [b; 32])).collect() }
    }

    fn locations() -> Vec<Location> {
        vec![Location::new("chunks", "p1/chunks").unwrap()]
    }

    #[test]
    fn a_referenced_planned_chunk_refuses_every_delete() {
        let checks = BeforeChecks { planned_but_referenced: found(2, &[0xab]), ..BeforeChecks::default() };
        let mut verify = VerifyReport::before_deletes(&checks, &locations(), 10);
        assert!(!verify.ok);
        let refusal = verify.allows_deletes().unwrap_err();
        assert!(refusal.to_string().starts_with("2 planned chunks are referenced, e.g. chunks/p1/chunks/ab/abab"));
        assert!(verify.conclude_dry_run().is_err(), "a dry run fails the same way");
    }

    #[test]
    fn a_missing_chunk_fails_a_dry_run_but_not_the_deletes() {
        let checks = BeforeChecks { missing_before: found(1, &[0x01]), ..BeforeChecks::default() };
        let mut verify = VerifyReport::before_deletes(&checks, &locations(), 0);
        assert!(verify.ok && verify.allows_deletes().is_ok(), "missing before the deletes is not the run's doing");
        assert!(matches!(verify.conclude_dry_run(), Err(VerifyFailure::Missing { count: 1, .. })));
        assert!(!verify.ok);
    }

    #[test]
    fn a_chunk_gone_after_the_deletes_fails_the_run() {
        let mut verify = VerifyReport::before_deletes(&BeforeChecks::default(), &locations(), 5);
        assert!(verify.conclude_after(&Found::default(), &locations(), 3).is_ok());
        assert!(verify.ok && verify.after_checked && verify.spill_bytes == 8);
        let mut verify = VerifyReport::before_deletes(&BeforeChecks::default(), &locations(), 5);
        let failed = verify.conclude_after(&found(4, &[0x02, 0x03]), &locations(), 0);
        assert!(matches!(failed, Err(VerifyFailure::GoneAfter { count: 4 })));
        assert!(!verify.ok);
        assert_eq!(verify.missing_after_keys.len(), 2);
    }

    #[test]
    fn a_reviewed_plan_naming_a_referenced_chunk_is_not_applied() {
        let verify = VerifyReport::of_reviewed_plan(&found(1, &[0xcd]), &locations(), 0);
        assert!(!verify.ok);
        assert!(matches!(verify.allows_applying(), Err(VerifyFailure::ReviewedReferenced { count: 1, .. })));
        assert!(VerifyReport::of_reviewed_plan(&Found::default(), &locations(), 0).allows_applying().is_ok());
    }
}
