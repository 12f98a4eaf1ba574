//! The request bill (spec 8.6): what the store calls of a run cost at the provider's
//! published list prices, and what an execute of a dry run's plan would ask for.
//!
//! Prices are USD per 1,000 requests, standard storage class, as published (read 2026-11):
//! - GCS (<https://cloud.google.com/storage/pricing#operations-pricing>): `objects.list` is a
//!   Class A operation ($0.005), `objects.get` (data or metadata) Class B ($0.0004),
//!   `objects.delete` is free.
//! - S3 (<https://aws.amazon.com/s3/pricing/>, "Requests & data retrievals", us-east-1):
//!   LIST $0.005, GET and HEAD ("all other requests") $0.0004, DELETE free. A
//!   `DeleteObjects` call (1,000 keys) is priced as a DELETE; were it billed as a POST
//!   ($0.005) it would add 0.5 cents per million keys.
//!
//! Other regions and storage classes differ; the prices used are written beside the estimate
//! so a reader can redo it.

use serde::Serialize;

use crate::store::{DeleteBatching, LIST_PAGE, RequestCounts};

/// List prices of one store kind, USD per 1,000 requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Prices {
    pub store: &'static str,
    pub list_per_1000: f64,
    pub get_per_1000: f64,
    pub head_per_1000: f64,
    pub delete_per_1000: f64,
    pub source: &'static str,
}

pub const GCS: Prices = Prices {
    store: "gs:// (Standard, Class A list / Class B get)",
    list_per_1000: 0.005,
    get_per_1000: 0.0004,
    head_per_1000: 0.0004,
    delete_per_1000: 0.0,
    source: "https://cloud.google.com/storage/pricing#operations-pricing",
};

pub const S3: Prices = Prices {
    store: "s3:// (Standard, us-east-1)",
    list_per_1000: 0.005,
    get_per_1000: 0.0004,
    head_per_1000: 0.0004,
    delete_per_1000: 0.0,
    source: "https://aws.amazon.com/s3/pricing/",
};

/// The prices of a store URL scheme; `None` for `file://` and `memory://`, which bill nothing.
pub(crate) fn prices_for(scheme: &str) -> Option<Prices> {
    match scheme {
        "gs://" => Some(GCS),
        "s3://" => Some(S3),
        _ => None,
    }
}

impl Prices {
    pub fn cost(&self, counts: &RequestCounts) -> f64 {
        let per = |n: u64, price: f64| n as f64 / 1000.0 * price;
        per(counts.list_pages, self.list_per_1000)
            + per(counts.get, self.get_per_1000)
            + per(counts.head, self.head_per_1000)
            + per(counts.delete_calls, self.delete_per_1000)
    }
}

/// The `requests` object of the report: counts, the estimate and the prices it used.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct RequestBill {
    #[serde(flatten)]
    pub counts: RequestCounts,
    /// `null` for stores that bill nothing (`file://`, `memory://`).
    pub estimated_request_cost_usd: Option<f64>,
    pub prices: Option<Prices>,
    /// Dry run only: what `--execute` of this plan would add (its re-reads and deletes).
    pub execute_estimate: Option<ExecuteEstimate>,
    /// (heads + delete calls) / deleted chunks (spec 10.1); `null` when nothing was deleted.
    pub per_deleted_chunk: Option<f64>,
}

/// What `--execute` of a dry run's plan would add to the requests.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct ExecuteEstimate {
    pub head: u64,
    pub delete_calls: u64,
    pub deleted_keys: u64,
    pub estimated_request_cost_usd: Option<f64>,
}

impl RequestBill {
    pub fn new(counts: RequestCounts, prices: Option<Prices>) -> Self {
        Self {
            counts,
            estimated_request_cost_usd: prices.map(|p| p.cost(&counts)),
            prices,
            execute_estimate: None,
            per_deleted_chunk: None,
        }
    }

    /// Sets `per_deleted_chunk` from the chunks the run deleted.
    pub(crate) fn with_deleted(mut self, deleted: u64) -> Self {
        self.per_deleted_chunk =
            (deleted > 0).then(|| (self.counts.head + self.counts.delete_calls) as f64 / deleted as f64);
        self
    }

    /// Adds what an execute of the planned chunks (`planned_per_location`, the plan's count in
    /// each location) in batches of `batch_size` would ask: `re_reads` HEADs (one per chunk
    /// whose listing gave no version to condition its delete on), and each batch (never spanning two locations) one `delete_stream`
    /// call, split by the backend's `batching` rule. Assumes no chunk is refreshed meanwhile.
    pub(crate) fn with_execute_estimate(
        mut self,
        planned_per_location: &[u64],
        re_reads: u64,
        batch_size: u64,
        batching: DeleteBatching,
    ) -> Self {
        let batch = batch_size.max(1);
        let planned_deletes: u64 = planned_per_location.iter().sum();
        let delete_calls =
            planned_per_location.iter().map(|&n| (n / batch) * batching.calls(batch) + batching.calls(n % batch)).sum();
        let counts =
            RequestCounts { head: re_reads, delete_calls, deleted_keys: planned_deletes, ..RequestCounts::default() };
        self.execute_estimate = Some(ExecuteEstimate {
            head: counts.head,
            delete_calls,
            deleted_keys: planned_deletes,
            estimated_request_cost_usd: self.prices.map(|p| p.cost(&counts)),
        });
        self
    }

    /// One line of the human summary.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let cost = |usd: Option<f64>| usd.map_or_else(|| "no charge (local store)".to_owned(), |u| format!("~${u:.4}"));
        let mut line = format!(
            "{} list pages, {} gets, {} heads, {} delete calls ({} keys): {}",
            c.list_pages,
            c.get,
            c.head,
            c.delete_calls,
            c.deleted_keys,
            cost(self.estimated_request_cost_usd)
        );
        if c.batch_requests > 0 {
            line.push_str(&format!("; {} of the delete calls batches", c.batch_requests));
        }
        if let Some(per) = self.per_deleted_chunk {
            line.push_str(&format!("; {per:.2} heads and delete calls per deleted chunk"));
        }
        if c.throttled > 0 {
            line.push_str(&format!("; {} throttled answers", c.throttled));
        }
        if let Some(e) = &self.execute_estimate {
            line.push_str(&format!(
                "; --execute would add {} heads, {} delete calls: {}",
                e.head,
                e.delete_calls,
                cost(e.estimated_request_cost_usd)
            ));
        }
        line
    }
}

/// List pages a listing of `objects` objects spread over `directories` directories costs.
pub fn list_pages(objects: u64, directories: u64) -> u64 {
    let dirs = directories.max(1);
    let per_dir = objects.div_ceil(dirs);
    dirs * per_dir.div_ceil(LIST_PAGE).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcs_bills_lists_as_class_a_and_heads_as_class_b() {
        let counts =
            RequestCounts { list_pages: 10_000, head: 1_000_000, delete_calls: 1_000_000, ..Default::default() };
        let cost = GCS.cost(&counts);
        assert!((cost - (0.05 + 0.4)).abs() < 1e-9, "{cost}");
        assert_eq!(prices_for("file://"), None);
        assert_eq!(prices_for("memory://"), None);
        assert_eq!(prices_for("s3://"), Some(S3));
    }

    #[test]
    fn execute_estimate_follows_the_batching_rule() {
        // 2,500 planned chunks, batches of 16 (delete concurrency 32): 157 batches.
        let bill = RequestBill::new(RequestCounts::default(), Some(S3)).with_execute_estimate(
            &[2500],
            2500,
            16,
            DeleteBatching::Bulk(1000),
        );
        let e = bill.execute_estimate.as_ref().unwrap();
        assert_eq!((e.head, e.delete_calls, e.deleted_keys), (2500, 157, 2500));
        // Batches never span locations: 2,000 + 500 keys in batches of 1,000 are 3 calls.
        let bill = RequestBill::new(RequestCounts::default(), Some(S3)).with_execute_estimate(
            &[2000, 500],
            2500,
            1000,
            DeleteBatching::Bulk(1000),
        );
        assert_eq!(bill.execute_estimate.as_ref().unwrap().delete_calls, 3);
        let bill = RequestBill::new(RequestCounts::default(), Some(GCS)).with_execute_estimate(
            &[2500],
            2500,
            1000,
            DeleteBatching::Single,
        );
        let e = bill.execute_estimate.as_ref().unwrap();
        assert_eq!((e.head, e.delete_calls), (2500, 2500));
        assert!((e.estimated_request_cost_usd.unwrap() - 0.001).abs() < 1e-12);
        // Chunks listed with their generation are deleted without a re-read (spec 10.1).
        let bill = RequestBill::new(RequestCounts::default(), Some(GCS)).with_execute_estimate(
            &[2500],
            0,
            1,
            DeleteBatching::Single,
        );
        let e = bill.execute_estimate.as_ref().unwrap();
        assert_eq!((e.head, e.delete_calls), (0, 2500));
        let local =
            RequestBill::new(RequestCounts::default(), None).with_execute_estimate(&[5], 5, 2, DeleteBatching::Single);
        assert!(local.execute_estimate.as_ref().unwrap().estimated_request_cost_usd.is_none());
        assert!(local.summary().contains("no charge"));
    }

    #[test]
    fn list_pages_round_up_per_directory() {
        assert_eq!(list_pages(0, 256), 256);
        assert_eq!(list_pages(256_000, 256), 256);
        assert_eq!(list_pages(256_001, 256), 512);
    }
}
