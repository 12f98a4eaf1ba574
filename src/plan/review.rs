//! The plan header a run writes (spec 8.2), and spec 8.3's refusals of a reviewed plan: one
//! for another partition or store, too old, made from another live set, or made by
//! `--execute`.

use crate::config::{Config, ModeName};
use crate::live_set::{LiveSet, MAX_CLOCK_SKEW};
use crate::locations::Location;

use super::{PLAN_VERSION, PlanHeader, ReviewedPlan, rfc3339};

/// Why a reviewed plan is not applied (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--apply-plan refused, nothing deleted: {0}")]
pub struct PlanRefused(pub String);

impl PlanHeader {
    /// The header binding this run's plan to its inputs.
    pub fn for_run(config: &Config, live: &LiveSet, locations: &[Location]) -> Self {
        PlanHeader {
            kind: "header".into(),
            version: PLAN_VERSION,
            partition: config.partition.to_string(),
            store: config.store_url.clone(),
            mode: config.mode.name().to_string(),
            cutoff: rfc3339(config.cutoff),
            created_at: rfc3339(config.now),
            taken_at: rfc3339(live.taken_at),
            live_snapshots: live.snapshots.len() as u64,
            live_set_sha256: live.sha256(),
            max_delete_fraction: config.max_delete_fraction,
            bloom_fpr: config.bloom_fpr,
            bloom_seed: config.bloom_seed,
            locations: locations.iter().map(Location::to_string).collect(),
        }
    }
}

impl ReviewedPlan {
    /// Spec 8.3: whether this plan may be applied by this run.
    pub fn check(&self, config: &Config, live: &LiveSet) -> Result<(), PlanRefused> {
        check_header(&self.header, config, live)
    }
}

fn check_header(h: &PlanHeader, config: &Config, live: &LiveSet) -> Result<(), PlanRefused> {
    let refuse = |why: String| Err(PlanRefused(why));
    if h.mode != ModeName::DryRun.as_str() {
        return refuse(format!("it was made by a {} run; only a dry-run plan can be applied", h.mode));
    }
    if h.partition != config.partition.as_str() {
        return refuse(format!(
            "it is for partition {:?}, this run is for {:?}",
            h.partition,
            config.partition.as_str()
        ));
    }
    if h.store != config.store_url {
        return refuse(format!("it is for store {:?}, this run is on {:?}", h.store, config.store_url));
    }
    let created = chrono::DateTime::parse_from_rfc3339(&h.created_at)
        .map_err(|e| PlanRefused(format!("header created_at {:?}: {e}", h.created_at)))?
        .with_timezone(&chrono::Utc);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Args;
    use crate::ids::SnapshotId;
    use chrono::{TimeDelta, Utc};
    use clap::Parser;

    fn config(now: chrono::DateTime<Utc>) -> Config {
        let args = Args::parse_from([
            "gc_partition",
            "--store",
            "file:///tmp/store",
            "--partition",
            "p1",
            "--live-snapshots",
            "live.txt",
            "--cutoff",
            "48h",
        ]);
        Config::from_args(&args, now).unwrap()
    }

    fn live_set(ids: &[&str]) -> LiveSet {
        LiveSet { snapshots: ids.iter().map(|id| SnapshotId::parse(id).unwrap()).collect(), taken_at: Utc::now() }
    }

    fn refusal(h: &PlanHeader, config: &Config, live: &LiveSet) -> String {
        check_header(h, config, live).unwrap_err().0
    }

    #[test]
    fn a_header_for_this_run_passes() {
        let now = Utc::now();
        let (config, live) = (config(now), live_set(&["s1", "s2"]));
        let header = PlanHeader::for_run(&config, &live, &[]);
        assert_eq!(header.mode, "dry-run");
        assert!(check_header(&header, &config, &live).is_ok());
    }

    #[test]
    fn each_binding_refuses() {
        let now = Utc::now();
        let (config, live) = (config(now), live_set(&["s1", "s2"]));
        let good = PlanHeader::for_run(&config, &live, &[]);
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
            let said = refusal(&header, &config, &live);
            assert!(said.contains(why), "{said:?} should contain {why:?}");
        }
        let other_live = live_set(&["s1"]);
        assert!(refusal(&good, &config, &other_live).contains("another live set"));
    }
}
