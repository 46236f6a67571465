//! What `GetStatus` says about the routes and the kernel, without a walk of
//! a million routes per call: the counts per table and origin are taken once
//! per change (in the background a second after it, or by the first
//! `GetStatus` that finds them older than the last change), and the full
//! comparison of the kernel's maps with the RIB runs on a schedule (a
//! minute after the start, or sooner with a shorter interval, then every
//! [`crate::agent::AgentConfig::verify_interval`]), or when a client calls
//! `Verify` or `Repair`. `status` says which comparison its
//! answer is based on and when it ran.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::diagnostics::Difference;
use crate::domain::route::Table;
use crate::encapsulator::Encapsulator;

/// Identifies the state of the routes: it changes with every change made
/// through the agent and with BGP's last change.
pub(crate) type Stamp = (u64, Option<SystemTime>);

/// The routes, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// The state they were counted in.
    pub stamp: Stamp,
    /// When.
    pub at: Option<SystemTime>,
    pub routes: u64,
    /// "main" and each alternate table's id.
    pub by_table: BTreeMap<String, u64>,
    /// "static", "agent", "bgp".
    pub by_origin: BTreeMap<String, u64>,
    pub sources: u64,
}

/// One full comparison of the kernel with the RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verification {
    pub at: SystemTime,
    pub took: Duration,
    pub differences: u64,
    pub example: Option<String>,
    /// "background", "verify" or "repair".
    pub trigger: &'static str,
}

impl Verification {
    /// The outcome of a comparison that found `found`, started at `started`.
    pub(crate) fn of(found: &[Difference], started: Instant, trigger: &'static str) -> Verification {
        Verification {
            at: SystemTime::now(),
            took: started.elapsed(),
            differences: found.len() as u64,
            example: found.first().map(ToString::to_string),
            trigger,
        }
    }
}

/// The counts and the last comparison, shared by the background task and
/// `GetStatus`.
pub(crate) struct Audit {
    enc: Arc<Encapsulator>,
    /// Between background comparisons (None: only at start and on request).
    pub interval: Option<Duration>,
    /// Held while counting, so that two callers do not count twice.
    summary: Mutex<Option<Summary>>,
    verified: Mutex<Option<Verification>>,
}

/// How long a change must be quiet before the background counts it (a burst
/// of changes is counted once).
const QUIET: Duration = Duration::from_secs(1);
/// The first background comparison, at most this long after the start.
const FIRST_VERIFY: Duration = Duration::from_secs(60);
/// Under constant change, the background counts at most this often.
const BUSY: Duration = Duration::from_secs(5);

impl Audit {
    pub(crate) fn new(enc: Arc<Encapsulator>, interval: Option<Duration>) -> Audit {
        Audit { enc, interval, summary: Mutex::new(None), verified: Mutex::new(None) }
    }

    /// The counts for the state `stamp` names: the stored ones when they are
    /// of it, counted now otherwise (from the origins the RIB records beside
    /// its routes).
    pub(crate) fn summary(&self, stamp: Stamp) -> Summary {
        let mut stored = self.summary.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = stored.as_ref().filter(|s| s.stamp == stamp) {
            return s.clone();
        }
        let started = Instant::now();
        // The stamp was read before the routes: a change while counting
        // makes these counts stale, and the next caller counts again.
        let counted = self.enc.diagnostics().route_counts();
        let s = Summary {
            stamp,
            at: Some(SystemTime::now()),
            routes: counted.total,
            sources: self.enc.sources().list().len() as u64,
            by_table: counted
                .by_table
                .into_iter()
                .map(|(t, n)| (if t == Table::Main { "main".to_owned() } else { t.id().to_string() }, n))
                .collect(),
            by_origin: counted.by_origin.into_iter().collect(),
        };
        log::debug!("status: {} routes counted in {:?}", s.routes, started.elapsed());
        *stored = Some(s.clone());
        s
    }

    /// Whether the stored counts are of `stamp`.
    fn counted(&self, stamp: Stamp) -> bool {
        self.summary.lock().unwrap_or_else(PoisonError::into_inner).as_ref().is_some_and(|s| s.stamp == stamp)
    }

    /// The last comparison, if any.
    pub(crate) fn last_verification(&self) -> Option<Verification> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records a comparison (the background's, or a client's `Verify`/`Repair`).
    pub(crate) fn record(&self, v: Verification) {
        if v.differences > 0 {
            log::warn!(
                "the kernel differs from the RIB in {} entries ({}), e.g. {}: `repair` fixes them",
                v.differences,
                v.trigger,
                v.example.as_deref().unwrap_or("?")
            );
        }
        *self.verified.lock().unwrap_or_else(PoisonError::into_inner) = Some(v);
    }

    /// Compares the kernel with the RIB now and records it.
    fn verify(&self) {
        let started = Instant::now();
        match self.enc.verify() {
            Ok(found) => self.record(Verification::of(&found, started, "background")),
            Err(e) => log::warn!("background verification: {e}"),
        }
    }
}

/// The background: counts the routes a second after a burst of changes ends
/// (at most every few seconds under constant change), and compares the
/// kernel with the RIB [`FIRST_VERIFY`] after the start (or one interval,
/// if shorter) and every `audit.interval`. Runs until the
/// agent stops (the task is aborted).
pub(crate) async fn run(audit: Arc<Audit>, writes: super::Writes) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Not at once: the agent just adopted the dataplane (and repaired what
    // an interrupted change left), and a comparison costs seconds of CPU at
    // a million routes (and the RIB's lock while it copies it) when the
    // first clients come back.
    let mut next_verify = audit.interval.map(|i| Instant::now() + i.min(FIRST_VERIFY));
    // The stamp last seen and since when; since when the counts are stale.
    let mut seen: Option<(Stamp, Instant)> = None;
    let mut stale_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        let stamp = writes.stamp();
        let quiet = match seen {
            Some((s, at)) if s == stamp => at.elapsed(),
            _ => {
                seen = Some((stamp, Instant::now()));
                Duration::ZERO
            }
        };
        if audit.counted(stamp) {
            stale_since = None;
        } else if quiet >= QUIET || stale_since.get_or_insert_with(Instant::now).elapsed() >= BUSY {
            let a = Arc::clone(&audit);
            let _ = tokio::task::spawn_blocking(move || a.summary(stamp)).await;
            stale_since = None;
        }
        if next_verify.is_some_and(|at| Instant::now() >= at) {
            let a = Arc::clone(&audit);
            let _ = tokio::task::spawn_blocking(move || a.verify()).await;
            next_verify = audit.interval.map(|i| Instant::now() + i);
        }
    }
}
