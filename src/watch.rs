//! Host address tracking: a thread that follows the kernel's address and link
//! notifications and refreshes the never-label entries after each burst of
//! changes (see [`AddressWatcher::start`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sys::address_watch::{AddressEvents, Netns};
use crate::{Encapsulator, Error};

/// How long the thread waits at most between looks at the stop flag: the
/// longest a drop of the [`AddressWatcher`] waits.
const TICK: Duration = Duration::from_millis(100);
/// A change is acted on once no other came for this long...
const QUIET: Duration = Duration::from_millis(50);
/// ...or this long after the first change of a burst, whichever is first:
/// a host address is tracked within about a quarter of a second.
const MAX_DELAY: Duration = Duration::from_millis(250);
/// After a failed refresh (tables full, a map write refused), or a broken
/// socket, the next attempt comes this long after, changes or not.
const RETRY: Duration = Duration::from_secs(1);

/// Follows the host's address changes and keeps an [`Encapsulator`]'s
/// never-label entries current, from [`AddressWatcher::start`].
///
/// A thread in the network namespace of the thread that started the watcher
/// listens to the kernel's netlink address and link notifications
/// (RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK). Notifications are
/// coalesced: once none has come for 50 ms (or 250 ms after the first of a
/// burst) it calls [`Encapsulator::refresh_local_addresses`], so a new address
/// is never labelled, and a removed one is labelled again by whatever route
/// covers it, within about a quarter of a second. A failed refresh is logged
/// (`log` facade, target `lnetd_host_encap::watch`) and retried a second
/// later; the watcher never prints.
///
/// The watcher holds the encapsulator weakly: it does not keep it alive, and
/// stops by itself (within about 100 ms) once the encapsulator is gone. Dropping the watcher stops
/// the thread and waits for it (at most about 100 ms, plus a refresh under
/// way).
#[derive(Debug)]
pub struct AddressWatcher {
    stop: Arc<AtomicBool>,
    refreshes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl AddressWatcher {
    /// Subscribes in the calling thread's network namespace, refreshes the
    /// host addresses once (changes made before the subscription are not
    /// missed), and starts the thread. Call it from a thread of the namespace
    /// whose addresses count, as for attach (entering it otherwise needs
    /// CAP_SYS_ADMIN). Needs the `watch` feature.
    ///
    /// ```no_run
    /// // Not run: needs root and an interface named eth1.
    /// use std::sync::Arc;
    /// use lnetd_host_encap::encap::AddressWatcher;
    /// use lnetd_host_encap::{Encapsulator, XdpMode};
    ///
    /// let enc = Arc::new(Encapsulator::builder().attach("eth1", XdpMode::Auto)?);
    /// let _watcher = AddressWatcher::start(&enc)?;
    /// // ... program routes; addresses added or removed are tracked.
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Sys`] when the namespace cannot be read or entered, or the
    /// netlink socket cannot be opened; as
    /// [`Encapsulator::refresh_local_addresses`] for the first refresh.
    pub fn start(enc: &Arc<Encapsulator>) -> Result<AddressWatcher, Error> {
        let sys = |(call, errno)| Error::Sys { call, errno };
        let netns = Netns::current().map_err(sys)?;
        let events = AddressEvents::subscribe().map_err(sys)?;
        enc.refresh_local_addresses()?;
        let stop = Arc::new(AtomicBool::new(false));
        let refreshes = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker = Worker { enc: Arc::downgrade(enc), events, stop: stop.clone(), refreshes: refreshes.clone() };
        let thread = std::thread::Builder::new()
            .name("lhe-addr-watch".to_owned())
            .spawn(move || {
                // Before anything else: the addresses read must be those of the
                // namespace the socket listens to.
                if let Err((call, errno)) = netns.enter() {
                    let _ = ready_tx.send(Err(Error::Sys { call, errno }));
                    return;
                }
                drop(netns);
                let _ = ready_tx.send(Ok(()));
                worker.run();
            })
            .map_err(|e| Error::Sys {
                call: "pthread_create",
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            })?;
        // The thread always answers; a closed channel would mean it died first.
        let started = ready_rx
            .recv()
            .unwrap_or(Err(Error::Sys { call: "address watcher thread", errno: nix::errno::Errno::ESRCH }));
        if let Err(e) = started {
            let _ = thread.join();
            return Err(e);
        }
        log::debug!("watching host addresses");
        Ok(AddressWatcher { stop, refreshes, thread: Some(thread) })
    }

    /// How many refreshes the watcher made after address changes (the one at
    /// start not counted), failed ones included.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Whether the thread still runs: false once the encapsulator is gone.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for AddressWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the address watcher thread panicked");
            }
        }
    }
}

/// The thread's state.
struct Worker {
    enc: Weak<Encapsulator>,
    events: AddressEvents,
    stop: Arc<AtomicBool>,
    refreshes: Arc<AtomicU64>,
}

impl Worker {
    fn run(mut self) {
        // The first and the latest change of the burst not yet acted on.
        let mut pending: Option<(Instant, Instant)> = None;
        // When to try again after a failure, changes or not.
        let mut retry_at: Option<Instant> = None;
        // Whether the socket failed on the last read (logged once per streak).
        let mut failing = false;
        while !self.stop.load(Ordering::Relaxed) {
            if self.enc.strong_count() == 0 {
                log::debug!("address watch: the encapsulator is gone; stopping");
                return;
            }
            let now = Instant::now();
            let due = match (pending, retry_at) {
                (Some((first, last)), _) => Some(after(last, QUIET).min(after(first, MAX_DELAY))),
                (None, retry) => retry,
            };
            let wait = due.map_or(TICK, |d| d.saturating_duration_since(now).min(TICK));
            match self.events.wait(wait) {
                Ok(changes) if changes.any() => {
                    failing = false;
                    if changes.lost {
                        log::debug!("address watch: notifications were lost; re-reading every address");
                    }
                    let now = Instant::now();
                    pending = Some(pending.map_or((now, now), |(first, _)| (first, now)));
                }
                Ok(_) => failing = false,
                Err(errno) => {
                    if !failing {
                        log::warn!("address watch: reading netlink failed: {errno}; re-reading addresses every second");
                        failing = true;
                    }
                    retry_at.get_or_insert(after(Instant::now(), RETRY));
                    std::thread::sleep(TICK);
                }
            }
            let now = Instant::now();
            let burst_over =
                pending.is_some_and(|(first, last)| now >= after(last, QUIET) || now >= after(first, MAX_DELAY));
            let retry_due = retry_at.is_some_and(|at| now >= at);
            if !(burst_over || retry_due) {
                continue;
            }
            pending = None;
            retry_at = None;
            let Some(enc) = self.enc.upgrade() else {
                log::debug!("address watch: the encapsulator is gone; stopping");
                return;
            };
            self.refreshes.fetch_add(1, Ordering::Relaxed);
            match enc.refresh_local_addresses() {
                Ok(n) => log::info!("host addresses changed: {n} never-label entries"),
                Err(e) => {
                    log::warn!("address watch: refreshing host addresses failed: {e}; retrying in {RETRY:?}");
                    retry_at = Some(after(Instant::now(), RETRY));
                }
            }
        }
    }
}

/// `t + d`, saturating (the operator panics on overflow).
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watcher_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<AddressWatcher>();
    }
}
