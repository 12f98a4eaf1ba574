//! The human summary printed on stdout by default.

use std::fmt::Write as _;

use super::Report;
use crate::deleting::DeletingSnapshot;
use crate::mode::ModeName;

/// Bytes in binary units, e.g. `1.5 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// The human summary printed on stdout by default.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let n = thousands;
        let _ = writeln!(s, "gc_partition {} of partition {} (cutoff {})", self.mode, self.partition, self.cutoff);
        if let Some(error) = &self.error {
            let _ = writeln!(s, "  ERROR (exit {}): {error}", self.exit_code);
        }
        let _ = writeln!(
            s,
            "  live set     {} snapshots, taken at {}",
            n(self.live_snapshots),
            self.taken_at.as_deref().unwrap_or("?")
        );
        let c = &self.snapshots;
        let cross_check =
            if c.unclassified > 0 { " (not live: no cross-check without --deleting-snapshots)" } else { "" };
        let _ = writeln!(
            s,
            "  snapshots    {} live, {} deleting, {} being written, {} unclassified{cross_check}",
            n(c.live),
            n(c.deleting),
            n(c.being_written),
            n(c.unclassified)
        );
        let _ = writeln!(
            s,
            "  manifests    {} legacy, {} unified, {} referenced ids",
            n(self.manifests.legacy),
            n(self.manifests.unified),
            n(self.referenced_ids)
        );
        let _ = writeln!(
            s,
            "  listed       {} objects in {} locations: {} chunks, {} foreign (never touched)",
            n(self.listed_objects),
            self.locations,
            n(self.chunks_scanned),
            n(self.foreign_objects)
        );
        let _ = writeln!(
            s,
            "  kept         {} referenced, {} young (after cutoff), {} refreshed during the run",
            n(self.referenced_kept),
            n(self.young_kept),
            n(self.refreshed_kept)
        );
        let _ = writeln!(
            s,
            "  planned      {} deletes, {} (about {:.0} more kept by bloom false positives)",
            n(self.planned_deletes),
            human_bytes(self.planned_bytes),
            self.expected_false_positives
        );
        let guard = &self.guard;
        let verdict = if guard.tripped { "TRIPPED: --execute would delete nothing" } else { "ok" };
        let _ = writeln!(
            s,
            "  guard        {:.1}% of {} old chunks planned, limit {:.1}%: {verdict}",
            guard.fraction * 100.0,
            n(guard.old_chunks),
            guard.max_delete_fraction * 100.0
        );
        if matches!(self.mode, ModeName::Execute | ModeName::Apply) {
            let _ = writeln!(
                s,
                "  deleted      {} chunks, {}; {} failed; {} not started",
                n(self.deleted),
                human_bytes(self.deleted_bytes),
                n(self.delete_failures),
                n(self.deletes_not_started)
            );
            let c = &self.delete_conditions;
            let unconditional = if c.unconditional > 0 {
                " (the store cannot tell a refresh from the object judged: see doc/stores.md, How deletes are issued)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  conditions   {} deletes tied to the object judged old, {} unconditional{unconditional}",
                n(c.conditional),
                n(c.unconditional)
            );
        }
        if !self.deleting_snapshots.is_empty() {
            let d = &self.deleting_snapshots;
            let sum = |f: fn(&DeletingSnapshot) -> u64| d.iter().map(f).sum::<u64>();
            let unreadable = d.iter().filter(|s| s.error.is_some()).count();
            let not_found = d.iter().filter_map(|s| s.not_found).sum::<u64>();
            let _ = writeln!(
                s,
                "  deleting     {} snapshots name {} chunks: {} {} ({}), {} shared with live snapshots, {} not found{}",
                n(d.len() as u64),
                n(sum(|s| s.chunks)),
                n(sum(|s| s.freed_chunks)),
                if self.mode == ModeName::DryRun { "would be freed" } else { "freed" },
                human_bytes(sum(|s| s.freed_bytes)),
                n(sum(|s| s.shared_kept)),
                n(not_found),
                if unreadable > 0 {
                    format!("; {unreadable} with unreadable manifests (see the report)")
                } else {
                    String::new()
                }
            );
        }
        if !self.reclaimed_snapshots.is_empty() || !self.reclaimable_snapshots.is_empty() {
            let (done, would) = (self.reclaimed_snapshots.len(), self.reclaimable_snapshots.len());
            let _ = writeln!(
                s,
                "  reclaimed    {done} deleting snapshots' manifests{}",
                if would > 0 { format!(" ({would} would be, by --execute)") } else { String::new() }
            );
        }
        if self.held_chunks.found > 0 {
            let _ = writeln!(
                s,
                "  held         {} chunks left renamed aside by a stopped run, {} put back",
                n(self.held_chunks.found),
                n(self.held_chunks.put_back)
            );
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(
                s,
                "  verify       {}: {} planned but referenced, {} referenced missing{}",
                match v {
                    v if v.ok => "ok",
                    v if self.mode == ModeName::Execute && !v.after_checked && v.planned_but_referenced == 0 => {
                        "not finished (stopped before the check after the deletes)"
                    }
                    _ => "FAILED",
                },
                v.planned_but_referenced,
                v.missing_before,
                if v.after_checked {
                    format!(" before, {} missing after the deletes", v.missing_after)
                } else {
                    String::new()
                }
            );
        }
        for e in self.explain.iter().flatten() {
            let _ = writeln!(s, "  explain      {} {}: {}", e.id, e.decision, e.reason);
            for copy in &e.found {
                let _ = writeln!(
                    s,
                    "               stored at {}/{} ({} B, last modified {})",
                    copy.bucket, copy.key, copy.size, copy.last_modified
                );
            }
        }
        if let Some(bill) = &self.requests {
            let _ = writeln!(s, "  requests     {}", bill.summary());
        }
        let stages: Vec<String> = self.durations_ms.iter().map(|(k, v)| format!("{k} {v} ms")).collect();
        let _ = writeln!(s, "  durations    {}", stages.join(", "));
        let _ = writeln!(s, "  next         {}", self.next_step);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Mode;
    use crate::plan::Guard;
    use crate::report::json::success_next_step;

    #[test]
    fn units_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }

    #[test]
    fn summary_names_the_verdicts() {
        let report = Report {
            mode: ModeName::DryRun,
            planned_deletes: 1200,
            planned_bytes: 2048,
            next_step: success_next_step(&Mode::DryRun, &Guard::unjudged(0.5)),
            ..Report::default()
        };
        let text = report.human();
        assert!(text.contains("1,200 deletes, 2.0 KiB"), "{text}");
        assert!(text.contains("rerun with --execute --verify"), "{text}");
    }
}
