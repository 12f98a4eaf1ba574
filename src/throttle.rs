//! Politeness toward a store that pushes back (spec 8.7).
//!
//! [`Aimd`] bounds one stage's requests in flight like a semaphore whose size moves: it starts
//! at the stage's `--*-concurrency` bound, is halved when a request met a throttle answer and
//! grows back by one per limit's worth of fine answers (TCP's congestion avoidance), never
//! above the bound, never below 1.
//!
//! How a throttle answer is seen: object_store's HTTP clients retry 429 and 5xx themselves
//! (`RetryConfig`, up to `--max-retries` times with backoff) and, when they give up, return an
//! `Error::Generic` whose source is a private `RetryError` rendering the status ("503 Service
//! Unavailable", "429 Too Many Requests"); S3's `DeleteObjects` reports per-key `SlowDown`
//! codes. The [`crate::store::CountingStore`] sits below our [`crate::store::RetryStore`] and
//! counts every attempt whose error reads as a throttle ([`crate::store::is_throttle`]), so
//! a throttle our retry layer absorbs still counts. A permit compares that shared count when
//! it is released with the count when it was taken: a rise means its request overlapped a
//! throttle answer. Throttles the HTTP client absorbed and then got past are invisible to
//! any layer above it; their backoff already slowed that request.
//!
//! To keep one burst of throttle answers from collapsing the limit to 1, the limit is cut at
//! most once per generation: only a permit taken after the last cut can cut again.
//!
//! [`RateCap`] is `--max-delete-rate`: a virtual-time token bucket. A batch of `n` keys
//! reserves the next `n / rate` seconds of the schedule and waits for its slot, so deletes
//! never run ahead of the rate over any stretch longer than one batch. `governor` was
//! considered: its `until_n_ready` refuses a batch larger than the burst size, and our batches
//! reach 1,000 keys, so a 20-line bucket on tokio's clock is the simpler fit (and it runs
//! under `tokio::time::pause` in tests).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::store::RequestCounters;

#[derive(Debug)]
struct State {
    /// The current limit; its floor is the number of permits.
    limit: f64,
    in_flight: usize,
    /// Bumped at every cut.
    generation: u64,
    cuts: u64,
    lowest: f64,
}

/// An additive-increase / multiplicative-decrease bound on requests in flight.
#[derive(Debug)]
pub(crate) struct Aimd {
    bound: usize,
    state: Mutex<State>,
    notify: Notify,
    throttle_signal: Arc<RequestCounters>,
}

/// One request's place in flight; released on drop, reporting how the request went.
#[derive(Debug)]
pub(crate) struct AimdPermit<'a> {
    aimd: &'a Aimd,
    generation: u64,
    throttles_before: u64,
}

impl Aimd {
    /// A limiter starting at `bound` (at least 1) that reads throttle answers from `signal`.
    pub fn new(bound: usize, signal: Arc<RequestCounters>) -> Self {
        let bound = bound.max(1);
        Self {
            bound,
            state: Mutex::new(State {
                limit: bound as f64,
                in_flight: 0,
                generation: 0,
                cuts: 0,
                lowest: bound as f64,
            }),
            notify: Notify::new(),
            throttle_signal: signal,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    /// The requests that may be in flight now.
    pub fn limit(&self) -> usize {
        self.state().limit as usize
    }

    #[cfg(test)]
    /// How often the limit was cut, and the lowest it reached.
    pub(crate) fn cuts(&self) -> (u64, usize) {
        let state = self.state();
        (state.cuts, state.lowest as usize)
    }

    fn throttles(&self) -> u64 {
        self.throttle_signal.throttled.load(Ordering::Relaxed)
    }

    /// Waits for a place in flight.
    pub(crate) async fn acquire(&self) -> AimdPermit<'_> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state();
                if state.in_flight < (state.limit as usize).max(1) {
                    state.in_flight += 1;
                    return AimdPermit { aimd: self, generation: state.generation, throttles_before: self.throttles() };
                }
            }
            notified.await;
        }
    }

    fn release(&self, generation: u64, throttled: bool) {
        let mut state = self.state();
        state.in_flight -= 1;
        let before = state.limit as usize;
        if throttled {
            if generation == state.generation {
                state.limit = (state.limit / 2.0).max(1.0);
                state.generation += 1;
                state.cuts += 1;
                state.lowest = state.lowest.min(state.limit);
                tracing::info!(
                    limit = state.limit as usize,
                    bound = self.bound,
                    "store throttling: fewer requests in flight"
                );
            }
        } else {
            state.limit = (state.limit + 1.0 / state.limit).min(self.bound as f64);
        }
        let wake = 1 + (state.limit as usize).saturating_sub(before);
        drop(state);
        for _ in 0..wake {
            self.notify.notify_one();
        }
    }
}

impl Drop for AimdPermit<'_> {
    fn drop(&mut self) {
        let throttled = self.aimd.throttles() > self.throttles_before;
        self.aimd.release(self.generation, throttled);
    }
}

/// `--max-delete-rate`: at most `rate` keys per second (see the module docs).
#[derive(Debug)]
pub(crate) struct RateCap {
    per_key: Duration,
    next: Mutex<Option<Instant>>,
    admitted: AtomicU64,
}

impl RateCap {
    /// `None` when `rate` is not a positive finite number: no cap.
    pub fn new(rate: f64) -> Option<Self> {
        (rate.is_finite() && rate > 0.0).then(|| Self {
            per_key: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(None),
            admitted: AtomicU64::new(0),
        })
    }

    /// Waits until `keys` more deletes fit under the rate.
    pub async fn admit(&self, keys: u64) {
        let start = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + self.per_key.saturating_mul(keys.min(u32::MAX as u64) as u32));
            start
        };
        tokio::time::sleep_until(start).await;
        self.admitted.fetch_add(keys, Ordering::Relaxed);
    }

    #[cfg(test)]
    /// Keys admitted so far.
    pub(crate) fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(bound: usize) -> (Aimd, Arc<RequestCounters>) {
        let signal = Arc::new(RequestCounters::default());
        (Aimd::new(bound, Arc::clone(&signal)), signal)
    }

    fn throttle(signal: &RequestCounters) {
        signal.throttled.fetch_add(1, Ordering::Relaxed);
    }

    #[tokio::test]
    async fn a_throttle_halves_the_limit_and_successes_grow_it_back_to_the_bound() {
        let (aimd, signal) = limiter(32);
        assert_eq!(aimd.limit(), 32);
        let permit = aimd.acquire().await;
        throttle(&signal);
        drop(permit);
        assert_eq!(aimd.limit(), 16);
        let permit = aimd.acquire().await;
        throttle(&signal);
        drop(permit);
        assert_eq!(aimd.limit(), 8);
        // Additive increase: 1/limit per success, so from 8 to 9 takes 9 successes
        // (8 + 1/8 + 1/8.125 + ...), about one limit's worth.
        let mut successes = 0;
        while aimd.limit() < 9 {
            drop(aimd.acquire().await);
            successes += 1;
        }
        assert_eq!(successes, 9);
        for _ in 0..10_000 {
            drop(aimd.acquire().await);
        }
        assert_eq!(aimd.limit(), 32, "never above the bound");
        assert_eq!(aimd.cuts(), (2, 8));
    }

    #[tokio::test]
    async fn never_below_one_and_one_burst_cuts_once() {
        let (aimd, signal) = limiter(4);
        for _ in 0..10 {
            let permit = aimd.acquire().await;
            throttle(&signal);
            drop(permit);
        }
        assert_eq!(aimd.limit(), 1);
        // Four requests in flight together all meet throttles: one cut, not four.
        let (aimd, signal) = limiter(16);
        let permits: Vec<AimdPermit<'_>> = futures::future::join_all((0..4).map(|_| aimd.acquire())).await;
        (0..4).for_each(|_| throttle(&signal));
        drop(permits);
        assert_eq!(aimd.limit(), 8);
        assert_eq!(aimd.cuts().0, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn permits_beyond_the_limit_wait_until_one_is_released() {
        let (aimd, signal) = limiter(4);
        let first = aimd.acquire().await;
        throttle(&signal);
        drop(first);
        assert_eq!(aimd.limit(), 2);
        let a = aimd.acquire().await;
        let b = aimd.acquire().await;
        let third = aimd.acquire();
        tokio::pin!(third);
        let waited = tokio::time::timeout(Duration::from_secs(1), third.as_mut()).await;
        assert!(waited.is_err(), "a third request in flight above a limit of 2");
        drop(a);
        let c = third.await;
        drop((b, c));
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_cap_spaces_batches_by_their_size() {
        let cap = RateCap::new(100.0).expect("cap");
        let t0 = Instant::now();
        // 50 keys at once, then 100 keys half a second later (50 / 100/s), then 10 keys a
        // second after that.
        let mut starts = Vec::new();
        for keys in [50u64, 100, 10] {
            cap.admit(keys).await;
            starts.push(Instant::now() - t0);
        }
        assert_eq!(starts, [Duration::ZERO, Duration::from_millis(500), Duration::from_millis(1500)]);
        assert_eq!(cap.admitted(), 160);
        assert!(RateCap::new(0.0).is_none());
        assert!(RateCap::new(f64::INFINITY).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_deleters_never_exceed_the_cap_in_any_second() {
        let cap = Arc::new(RateCap::new(200.0).expect("cap"));
        let t0 = Instant::now();
        let admissions = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (cap, admissions) = (Arc::clone(&cap), Arc::clone(&admissions));
            tasks.spawn(async move {
                for _ in 0..25 {
                    cap.admit(10).await;
                    admissions.lock().expect("lock").push((Instant::now() - t0).as_millis());
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let admissions = admissions.lock().expect("lock").clone();
        assert_eq!(cap.admitted(), 2000);
        // 2,000 keys at 200/s: the last batch starts at 9.95 s.
        assert_eq!(admissions.iter().max().copied(), Some(9950));
        for second in 0..10u128 {
            let keys = 10 * admissions.iter().filter(|&&ms| ms / 1000 == second).count();
            assert_eq!(keys, 200, "second {second}");
        }
    }
}
