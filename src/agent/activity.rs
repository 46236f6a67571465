//! What the agent remembers about its own work for `status`: when it
//! started and the last change of the routes it made (through the API or
//! the configuration file). BGP's changes are recorded by the learner
//! ([`crate::bgp::BgpCounters::last_change`]); `GetStatus` reports the later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::fib::apply::ApplyReport;

/// One change of the routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// When it was made.
    pub at: SystemTime,
    /// Who made it: "agent" or "static".
    pub origin: &'static str,
    /// Routes added, replaced or removed.
    pub routes: u64,
}

/// The agent's start and its last change.
#[derive(Debug)]
pub(crate) struct Activity {
    started: SystemTime,
    last: Mutex<Option<Change>>,
    /// Changes made (of routes or sources): `status`'s counts are of one value.
    generation: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity { started: SystemTime::now(), last: Mutex::new(None), generation: AtomicU64::new(0) }
    }

    pub(crate) fn started(&self) -> SystemTime {
        self.started
    }

    /// Records a change of `routes` routes by `origin` (nothing for none).
    pub(crate) fn record(&self, origin: &'static str, routes: u64) {
        if routes > 0 {
            self.touch();
            *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Change { at: SystemTime::now(), origin, routes });
        }
    }

    /// Records an apply's report (a dry run changed nothing).
    pub(crate) fn record_apply(&self, origin: &'static str, report: &ApplyReport) {
        if !report.dry_run {
            // Sources and the DSCP table count as changes for `status` too.
            self.touch();
            self.record(origin, (report.added.len() + report.replaced.len() + report.removed.len()) as u64);
        }
    }

    /// Records a change that is not of routes (a source).
    pub(crate) fn touch(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// How many changes were recorded.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub(crate) fn last(&self) -> Option<Change> {
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_changes_are_recorded() {
        let a = Activity::new();
        a.record("agent", 0);
        assert_eq!(a.last(), None);
        let mut dry = ApplyReport { dry_run: true, ..ApplyReport::default() };
        dry.removed.push((crate::Table::Main, "10.0.0.0/8".parse().unwrap()));
        a.record_apply("static", &dry);
        assert_eq!(a.last(), None);
        dry.dry_run = false;
        a.record_apply("static", &dry);
        let last = a.last().unwrap();
        assert_eq!((last.origin, last.routes), ("static", 1));
        assert!(last.at >= a.started());
    }
}
