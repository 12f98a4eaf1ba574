//! How a run ends: the spec's exit codes (section 7), and what to do after each. A leaf
//! module: every stage's error says its [`Exit`], and `error.rs` asks them.

use crate::stop::Signal;

/// Every way a run ends, and its exit code (spec section 7): the one place codes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Done = 0,
    Usage = 2,
    LiveSet = 3,
    Manifest = 4,
    Listing = 5,
    Guard = 6,
    DeleteFailures = 7,
    Verify = 8,
    Internal = 9,
    Interrupted = 130,
    Terminated = 143,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// What to do after a run that ended this way, when the error says no more (the
    /// summary's `next` line). A successful run's advice depends on its mode: see the report.
    pub(crate) fn next_step(self) -> &'static str {
        match self {
            Exit::Done => "nothing: the partition is collected",
            Exit::Usage => "fix the flags (see --help); nothing was changed",
            Exit::LiveSet => "fix or re-export the live set; nothing was changed",
            Exit::Manifest => {
                "fix the snapshot's manifest, or take it out of the live set if it is being deleted; nothing was changed"
            }
            Exit::Listing => "check the store and credentials, then rerun; nothing was changed",
            Exit::Guard => "check the live set is complete; raise --max-delete-fraction only if the plan is right",
            Exit::DeleteFailures => "rerun to retry the failed deletes listed in the report",
            Exit::Verify => "stop: do not run GC on this partition again until the verify failure is understood",
            Exit::Internal => {
                "a bug in gc_partition: file a bug report with this run's report (--report-out) attached; no further delete was started"
            }
            Exit::Interrupted | Exit::Terminated => "rerun to finish the job",
        }
    }
}

/// Every exit, for reading a code back.
const ALL: [Exit; 11] = [
    Exit::Done,
    Exit::Usage,
    Exit::LiveSet,
    Exit::Manifest,
    Exit::Listing,
    Exit::Guard,
    Exit::DeleteFailures,
    Exit::Verify,
    Exit::Internal,
    Exit::Interrupted,
    Exit::Terminated,
];

impl TryFrom<u8> for Exit {
    type Error = u8;

    /// The exit a report's `exit_code` names.
    fn try_from(code: u8) -> Result<Self, u8> {
        ALL.into_iter().find(|exit| exit.code() == code).ok_or(code)
    }
}

impl From<Signal> for Exit {
    fn from(signal: Signal) -> Self {
        match signal {
            Signal::Interrupt => Exit::Interrupted,
            Signal::Terminate => Exit::Terminated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_its_exit() {
        for exit in ALL {
            assert_eq!(Exit::try_from(exit.code()), Ok(exit));
        }
        assert_eq!(Exit::try_from(1), Err(1));
    }
}
