//! How a signal stops a run: no new deletes start, in-flight ones finish, the report is
//! written.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

/// The signal that stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

/// A stage that ended because a signal asked the run to stop. Each stage's error takes it in
/// (`From<Stopped>`), so a stage can watch the stop without knowing the run's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped by {0:?}: no new deletes were started")]
pub struct Stopped(pub Signal);

/// Asks a run to stop; every stage that waits or deletes watches it.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    signal: Arc<AtomicU8>,
}

impl Stop {
    pub fn trigger(&self, signal: Signal) {
        let code = match signal {
            Signal::Interrupt => 1,
            Signal::Terminate => 2,
        };
        let _ = self.signal.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.token.cancel();
    }

    pub fn signal(&self) -> Option<Signal> {
        match self.signal.load(Ordering::SeqCst) {
            1 => Some(Signal::Interrupt),
            2 => Some(Signal::Terminate),
            _ => None,
        }
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The stop as an error, when one was asked for.
    pub fn check(&self) -> Result<(), Stopped> {
        self.signal().map_or(Ok(()), |s| Err(Stopped(s)))
    }

    pub async fn stopped(&self) -> Stopped {
        self.token.cancelled().await;
        Stopped(self.signal().unwrap_or(Signal::Terminate))
    }

    /// Runs `stage` unless a stop arrives first.
    pub(crate) async fn unless_stopped<T, E: From<Stopped>>(
        &self,
        stage: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        tokio::select! {
            done = stage => done,
            stopped = self.stopped() => Err(stopped.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_wins() {
        let stop = Stop::default();
        assert!(stop.check().is_ok());
        stop.trigger(Signal::Interrupt);
        stop.trigger(Signal::Terminate);
        assert_eq!(stop.signal(), Some(Signal::Interrupt));
        assert_eq!(stop.check(), Err(Stopped(Signal::Interrupt)));
        assert!(stop.token().is_cancelled());
    }

    #[tokio::test]
    async fn a_stop_ends_a_stage_that_waits() {
        let stop = Stop::default();
        stop.trigger(Signal::Terminate);
        let waiting = stop.unless_stopped(std::future::pending::<Result<(), Stopped>>());
        assert_eq!(waiting.await, Err(Stopped(Signal::Terminate)));
    }
}
