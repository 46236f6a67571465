//! Which way the probes leave: XDP live frames ([`super::xdp_tx`]) while
//! the interface takes redirected frames, else the AF_PACKET socket
//! ([`super::io::PacketTx`]). The frames are the same bytes either way:
//! the live path sends copies of the socket path's frames.

use std::time::{Duration, Instant};

use super::io::PacketTx;
use super::xdp_features::XdpFeatures;
use super::xdp_tx::XdpTx;

/// How often the interface is asked again whether it takes redirected frames.
const RECHECK: Duration = Duration::from_secs(1);

/// What one tick's send did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sent {
    /// Probes handed to the interface.
    pub(super) sent: usize,
    /// Of which through live frames.
    pub(super) live: usize,
    /// Probes refused (a full ring, a failed call, a template missing).
    pub(super) errors: usize,
    /// Live-frame runs that failed before sending (their probes went
    /// through the socket): at most one a tick, and none after a refusal
    /// for good.
    pub(super) live_failed: usize,
}

/// Whether a live-frame run's error means the kernel will never run one
/// (a kernel or a security policy that forbids BPF_PROG_TEST_RUN's live
/// mode, seen as EPERM on a 6.18 build), not that this run failed.
fn refuses_for_good(errno: nix::errno::Errno) -> bool {
    use nix::errno::Errno;
    matches!(errno, Errno::EPERM | Errno::EACCES | Errno::EOPNOTSUPP | Errno::EINVAL)
}

/// The live-frame transmitter and whether it may be used now.
#[derive(Debug)]
pub(super) struct Live {
    tx: XdpTx,
    ifindex: u32,
    /// `None` before Linux 6.3 (no `netdev` family): then never used,
    /// since a driver without `ndo_xdp_xmit` would drop every probe unseen.
    features: Option<XdpFeatures>,
    ready: bool,
    next_check: Instant,
}

impl Live {
    /// Wraps an opened transmitter for `ifindex`.
    pub(super) fn new(tx: XdpTx, ifindex: u32) -> Live {
        let features = XdpFeatures::open()
            .map_err(|e| log::info!("S-BFD: the kernel cannot tell whether the interface takes XDP frames ({e}): probes go through the socket"))
            .ok();
        Live { tx, ifindex, features, ready: false, next_check: Instant::now() }
    }
}

/// The engine's transmitter.
#[derive(Debug)]
pub(super) struct Transmit {
    socket: PacketTx,
    live: Option<Live>,
    /// Socket-path probes of one tick (those the live path cannot take).
    slow: Vec<usize>,
    fast: Vec<u32>,
    /// By probe: whether the live path holds its frame (set by
    /// [`Transmit::set`]), so that a send looks at no probe's frame.
    live_holds: Vec<bool>,
}

impl Transmit {
    /// Sends through `socket`, and through `live` where it can.
    pub(super) fn new(socket: PacketTx, live: Option<Live>) -> Transmit {
        Transmit { socket, live, slow: Vec::new(), fast: Vec::new(), live_holds: Vec::new() }
    }

    /// Probe `slot`'s frame is now `frame` (the live path keeps a copy).
    pub(super) fn set(&mut self, slot: usize, frame: &[u8]) {
        let Some(live) = &self.live else { return };
        let holds = slot < live.tx.slots() && live.tx.set(slot, frame);
        if !holds {
            log::debug!("S-BFD: probe {slot} ({} bytes) goes through the socket", frame.len());
        }
        if self.live_holds.len() <= slot {
            self.live_holds.resize(slot + 1, false);
        }
        if let Some(h) = self.live_holds.get_mut(slot) {
            *h = holds;
        }
    }

    /// Probes from `len` on are gone (the set of lists shrank): the live
    /// path holds no frame of theirs any more.
    pub(super) fn forget_from(&mut self, len: usize) {
        self.live_holds.truncate(len);
    }

    /// Asks the interface again, at most every second, whether it takes
    /// redirected frames (a veth does only while its peer can receive them).
    pub(super) fn refresh(&mut self, now: Instant) {
        let Some(live) = &mut self.live else { return };
        if now < live.next_check {
            return;
        }
        live.next_check = now + RECHECK;
        let ready = match &mut live.features {
            Some(f) => f.ndo_xmit(live.ifindex).unwrap_or_else(|errno| {
                log::debug!("S-BFD: the XDP features of ifindex {} unread ({errno}): the socket path", live.ifindex);
                false
            }),
            None => false,
        };
        if ready != live.ready {
            if ready {
                log::info!("S-BFD: probes leave through XDP live frames (one system call a tick, no skb per probe)");
            } else {
                log::info!("S-BFD: the interface does not take XDP frames now: probes go through the socket");
            }
            live.ready = ready;
        }
    }

    /// Sends the probes `slots`, whose frames `frame` gives (by slot).
    pub(super) fn send<'a>(
        &mut self,
        slots: &[usize],
        frame: impl Fn(usize) -> Option<&'a [u8]>,
        batched: bool,
    ) -> Sent {
        let mut out = Sent::default();
        self.slow.clear();
        self.fast.clear();
        if self.live.as_ref().is_some_and(|l| l.ready) {
            for slot in slots {
                if self.live_holds.get(*slot).copied().unwrap_or(false) {
                    self.fast.push(*slot as u32);
                } else {
                    self.slow.push(*slot);
                }
            }
        } else {
            self.slow.extend_from_slice(slots);
        }
        if let (Some(live), false) = (&mut self.live, self.fast.is_empty()) {
            match live.tx.send(&self.fast) {
                // Runs the program refused (no template) and runs a signal
                // cut short alike: not sent.
                Ok((sent, _refused)) => {
                    out.sent += sent;
                    out.live += sent;
                    out.errors += self.fast.len().saturating_sub(sent);
                }
                // Nothing left: the socket takes this tick's probes, so a
                // kernel that will not run live frames costs no probe.
                Err(errno) => {
                    out.live_failed += 1;
                    self.slow.extend(self.fast.iter().map(|slot| *slot as usize));
                    if refuses_for_good(errno) {
                        log::info!(
                            "S-BFD: the kernel refuses XDP live frames (BPF_PROG_TEST_RUN: {errno}): probes go through the socket from now on"
                        );
                        self.live = None;
                        self.live_holds.clear();
                    } else {
                        log::debug!(
                            "S-BFD: sending probes through live frames: {errno}; this tick's go through the socket"
                        );
                    }
                }
            }
        }
        if !self.slow.is_empty() {
            let rest: Vec<&[u8]> = self.slow.iter().filter_map(|slot| frame(*slot)).collect();
            match self.socket.send(&rest, batched) {
                Ok(n) => {
                    out.sent += n;
                    out.errors += rest.len() - n;
                }
                Err(e) => {
                    log::debug!("S-BFD: sending probes: {e}");
                    out.errors += rest.len();
                }
            }
        }
        out
    }
}
