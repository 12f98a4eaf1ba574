//! The plan header a run writes (spec 8.2), and spec 8.3's refusals of a reviewed plan: one
//! for another partition or store, too old, made from another live set, or made by
//! `--execute`.

use chrono::{DateTime, TimeDelta, Utc};

use crate::live_set::{LiveSet, MAX_CLOCK_SKEW};
use crate::locations::Location;
use crate::mode::ModeName;

use super::{PLAN_VERSION, PlanHeader, ReviewedPlan, rfc3339};

/// Why a reviewed plan is not applied (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--apply-plan refused, nothing deleted: {0}")]
pub struct PlanRefused(pub String);

/// What a plan is bound to (spec 8.2): the run's partition, store, mode, clock and limits.
#[derive(Debug, Clone)]
pub struct Binding<'a> {
    pub partition: &'a str,
    pub store: &'a str,
    pub mode: ModeName,
    pub cutoff: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// `--max-plan-age`: how old a reviewed plan may be.
    pub max_plan_age: TimeDelta,
    pub max_delete_fraction: f64,
    pub bloom_fpr: f64,
    pub bloom_seed: u64,
}

impl PlanHeader {
    /// The header binding this run's plan to its inputs.
    pub(crate) fn for_run(
        run: &Binding<'_>,
        live: &LiveSet,
        deleting: Option<&LiveSet>,
        locations: &[Location],
    ) -> Self {
        PlanHeader {
            kind: "header".into(),
            version: PLAN_VERSION,
            partition: run.partition.to_owned(),
            store: run.store.to_owned(),
            mode: run.mode.to_string(),
            cutoff: rfc3339(run.cutoff),
            created_at: rfc3339(run.now),
            taken_at: rfc3339(live.taken_at),
            live_snapshots: live.snapshots.len() as u64,
            live_set_sha256: live.sha256(),
            deleting_set_sha256: deleting.map(LiveSet::sha256),
            max_delete_fraction: run.max_delete_fraction,
            bloom_fpr: run.bloom_fpr,
            bloom_seed: run.bloom_seed,
            locations: locations.iter().map(Location::to_string).collect(),
        }
    }
}

impl ReviewedPlan {
    /// Spec 8.3: the plan file at `path`, read and checked against this run; a plan that
    /// cannot be read is refused as one that does not fit.
    pub(crate) fn read_for(
        path: &std::path::Path,
        work_dir: &std::path::Path,
        run: &Binding<'_>,
        live: &LiveSet,
        deleting: Option<&LiveSet>,
    ) -> Result<Self, PlanRefused> {
        let reviewed = super::read_plan(path, work_dir).map_err(|e| PlanRefused(e.to_string()))?;
        reviewed.check(run, live, deleting)?;
        Ok(reviewed)
    }

    /// Spec 8.3: whether this plan may be applied by this run.
    pub fn check(&self, run: &Binding<'_>, live: &LiveSet, deleting: Option<&LiveSet>) -> Result<(), PlanRefused> {
        check_header(&self.header, run, live)?;
        check_deleting_set(&self.header, deleting)
    }
}

fn check_header(h: &PlanHeader, config: &Binding<'_>, live: &LiveSet) -> Result<(), PlanRefused> {
    let refuse = |why: String| Err(PlanRefused(why));
    if h.mode != ModeName::DryRun.as_str() {
        return refuse(format!("it was made by a {} run; only a dry-run plan can be applied", h.mode));
    }
    if h.partition != config.partition {
        return refuse(format!("it is for partition {:?}, this run is for {:?}", h.partition, config.partition));
    }
    if h.store != config.store {
        return refuse(format!("it is for store {:?}, this run is on {:?}", h.store, config.store));
    }
    let created = chrono::DateTime::parse_from_rfc3339(&h.created_at)
        .map_err(|e| PlanRefused(format!("header created_at {:?}: {e}", h.created_at)))?
        .with_timezone(&Utc);
    let age = config.now - created;
    if age > config.max_plan_age || age < -MAX_CLOCK_SKEW {
        return refuse(format!(
            "it was made at {}, {} min ago; --max-plan-age allows {} min",
            h.created_at,
            age.num_minutes(),
            config.max_plan_age.num_minutes()
        ));
    }
    let sha = live.sha256();
    if h.live_set_sha256 != sha {
        return refuse(format!(
            "it was made from another live set (live_set_sha256 {} in the plan, {sha} now): a snapshot was added or removed since",
            h.live_set_sha256
        ));
    }
    Ok(())
}

/// Spec 9.2: the same deleting set as the plan, or neither.
fn check_deleting_set(h: &PlanHeader, deleting: Option<&LiveSet>) -> Result<(), PlanRefused> {
    let now = deleting.map(LiveSet::sha256);
    let refuse = |why: String| Err(PlanRefused(why));
    match (&h.deleting_set_sha256, &now) {
        (planned, now) if planned == now => Ok(()),
        (None, Some(_)) => {
            refuse("it was made without --deleting-snapshots; apply it without the flag, or plan again".into())
        }
        (Some(_), None) => refuse("it was made with --deleting-snapshots; apply it with the same deleting set".into()),
        (Some(planned), Some(now)) => refuse(format!(
            "it was made from another deleting set (deleting_set_sha256 {planned} in the plan, {now} now)"
        )),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SnapshotId;

    fn binding(now: DateTime<Utc>) -> Binding<'static> {
        Binding {
            partition: "p1",
            store: "file:///tmp/store",
            mode: ModeName::DryRun,
            cutoff: now - TimeDelta::hours(48),
            now,
            max_plan_age: TimeDelta::hours(12),
            max_delete_fraction: 0.5,
            bloom_fpr: 0.01,
            bloom_seed: 7,
        }
    }

    fn live_set(ids: &[&str]) -> LiveSet {
        LiveSet { snapshots: ids.iter().map(|id| SnapshotId::parse(id).unwrap()).collect(), taken_at: Utc::now() }
    }

    fn refusal(h: &PlanHeader, run: &Binding<'_>, live: &LiveSet) -> String {
        check_header(h, run, live).unwrap_err().0
    }

    #[test]
    fn a_header_for_this_run_passes() {
        let (run, live) = (binding(Utc::now()), live_set(&["s1", "s2"]));
        let header = PlanHeader::for_run(&run, &live, None, &[]);
        assert_eq!(header.mode, "dry-run");
        assert!(check_header(&header, &run, &live).is_ok());
    }

    #[test]
    fn each_binding_refuses() {
        let now = Utc::now();
        let (run, live) = (binding(now), live_set(&["s1", "s2"]));
        let good = PlanHeader::for_run(&run, &live, None, &[]);
        let with = |edit: &dyn Fn(&mut PlanHeader)| {
            let mut h = good.clone();
            edit(&mut h);
            h
        };
        let cases: [(PlanHeader, &str); 6] = [
            (with(&|h| h.mode = "execute".into()), "made by a execute run"),
            (with(&|h| h.partition = "p2".into()), "for partition \"p2\""),
            (with(&|h| h.store = "file:///elsewhere".into()), "for store \"file:///elsewhere\""),
            (with(&|h| h.created_at = rfc3339(now - TimeDelta::hours(13))), "--max-plan-age allows"),
            (with(&|h| h.created_at = "yesterday".into()), "header created_at"),
            (with(&|h| h.created_at = rfc3339(now + TimeDelta::hours(1))), "--max-plan-age allows"),
        ];
        for (header, why) in cases {
            let said = refusal(&header, &run, &live);
            assert!(said.contains(why), "{said:?} should contain {why:?}");
        }
        assert!(refusal(&good, &run, &live_set(&["s1"])).contains("another live set"));
    }

    #[test]
    fn the_deleting_set_binds_the_plan() {
        let run = binding(Utc::now());
        let live = live_set(&["s1"]);
        let (gone, other) = (live_set(&["g1"]), live_set(&["g2"]));
        let with = PlanHeader::for_run(&run, &live, Some(&gone), &[]);
        assert_eq!(with.deleting_set_sha256, Some(gone.sha256()));
        assert!(check_deleting_set(&with, Some(&gone)).is_ok());
        assert!(check_deleting_set(&with, Some(&other)).unwrap_err().0.contains("another deleting set"));
        assert!(check_deleting_set(&with, None).unwrap_err().0.contains("made with --deleting-snapshots"));
        let without = PlanHeader::for_run(&run, &live, None, &[]);
        assert_eq!(without.deleting_set_sha256, None);
        assert!(check_deleting_set(&without, None).is_ok());
        assert!(check_deleting_set(&without, Some(&gone)).unwrap_err().0.contains("without --deleting-snapshots"));
        let json = serde_json::to_value(&without).unwrap();
        assert!(json["deleting_set_sha256"].is_null(), "null without the flag: {json}");
    }
}
