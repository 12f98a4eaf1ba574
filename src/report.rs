//! The report (spec section 6): built once from what the stages handed back ([`Outcome`]),
//! printed as JSON ([`Report`]) or as the human summary.

mod human;
mod json;
mod outcome;

pub(crate) use json::REPORT_VERSION;
pub use json::{BloomReport, LocationReport, ManifestCounts, Report};
pub use outcome::{Outcome, PlanCounts, StoreUsage};
