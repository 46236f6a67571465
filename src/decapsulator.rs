//! [`Decapsulator`]: pops the labels addressed to this host from the frames
//! an interface receives and hands the IP packets to its stack.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;

use crate::abi::{self, decap::types};
use crate::dataplane::decap::{self as loader, DecapConfig, DecapMaps, LoadedDecap};
use crate::domain::config::{AttachedMode, OtherLabels, XdpMode};
use crate::domain::label::Label;
use crate::encapsulator::Attachment;
use crate::error::{AttachError, Error, LoadError, MapError, TestRunError};
use crate::stats::{Counter, DecapStats};
use crate::sys::link::{self, XdpLink};
use crate::sys::test_run::{self, TestRun};

/// Settings for [`Decapsulator`], applied when the program is loaded.
///
/// ```no_run
/// use lnetd_host_encap::{Decapsulator, Label, OtherLabels, XdpMode};
/// let dec = Decapsulator::builder()
///     .pop_labels([Label::IPV4_EXPLICIT_NULL, Label::IPV6_EXPLICIT_NULL, Label::new(5000)?])
///     .other_labels(OtherLabels::Drop)
///     .attach("eth0", XdpMode::Auto)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct DecapsulatorBuilder {
    pop: BTreeSet<Label>,
    config: DecapConfig,
}

impl Default for DecapsulatorBuilder {
    fn default() -> Self {
        DecapsulatorBuilder {
            pop: [Label::IPV4_EXPLICIT_NULL, Label::IPV6_EXPLICIT_NULL].into(),
            config: DecapConfig {
                other: OtherLabels::default(),
                max_pop_labels: types::decap_limits::DECAP_DEFAULT_MAX_POP_LABELS.0,
            },
        }
    }
}

impl DecapsulatorBuilder {
    /// The labels to pop (default: the explicit nulls, 0 and 2). Replaces the
    /// set; it can be changed later with [`Decapsulator::set_pop_labels`].
    pub fn pop_labels(mut self, labels: impl IntoIterator<Item = Label>) -> Self {
        self.pop = labels.into_iter().collect();
        self
    }

    /// What happens to frames with a label not in the set (default
    /// [`OtherLabels::Pass`]). Fixed for the program's life (the verifier
    /// prunes the other branch).
    pub fn other_labels(mut self, policy: OtherLabels) -> Self {
        self.config.other = policy;
        self
    }

    /// Capacity of the pop set (default 1,024 labels).
    pub fn max_pop_labels(mut self, n: u32) -> Self {
        self.config.max_pop_labels = n;
        self
    }

    /// Loads the program into the kernel, with its pop set written, without
    /// attaching it: [`Decapsulator::test_run`] works.
    ///
    /// # Errors
    /// [`LoadError`]: missing capabilities (named), a zero capacity, more
    /// labels than the capacity ([`LoadError::Map`], E2BIG), or the kernel
    /// refusing the program.
    pub fn load(self) -> Result<Decapsulator, LoadError> {
        let LoadedDecap { prog, maps } = loader::load(&self.config)?;
        let dec =
            Decapsulator { prog, maps, config: self.config, attachment: Mutex::new(None), writer: Mutex::new(()) };
        for label in &self.pop {
            dec.add_pop_label(*label)?;
        }
        log::debug!("XDP decapsulator loaded ({:?}, popping {:?})", self.config, self.pop);
        Ok(dec)
    }

    /// Loads, then attaches to `iface` (see [`Decapsulator::attach`]).
    ///
    /// # Errors
    /// Any [`LoadError`] or [`AttachError`].
    pub fn attach(self, iface: &str, mode: XdpMode) -> Result<Decapsulator, Error> {
        let dec = self.load()?;
        dec.attach(iface, mode)?;
        Ok(dec)
    }
}

#[derive(Debug)]
struct Attached {
    info: Attachment,
    link: XdpLink,
}

/// Pops MPLS labels addressed to this host from the frames an interface
/// receives and hands the packets to the host's stack (XDP_PASS): the receive
/// side of a host that a controller reaches with labelled traffic.
///
/// For a frame whose ethertype (after up to two VLAN tags) is 0x8847, the
/// program pops consecutive entries from the top of the stack while their
/// label is in the pop set (at most 16):
///
/// - down to and including the bottom entry (S=1): the ethertype becomes
///   0x0800 or 0x86DD according to the IP version nibble under the stack
///   (never inferred from the label), the L2 header (MACs and VLAN tags) is
///   kept, the IP packet is not touched (no TTL copied from the label), and
///   the frame goes to the stack ([`DecapStats::popped`]);
/// - then a label not in the set: with [`OtherLabels::Pass`] the entries
///   above it are popped and the rest of the stack stays under 0x8847
///   ([`DecapStats::popped_partial`]); with [`OtherLabels::Drop`] the frame
///   is dropped untouched;
/// - a top label not in the set: passed untouched or dropped, per
///   [`OtherLabels`].
///
/// Passed untouched and counted: non-MPLS frames, truncated frames or
/// stacks, stacks whose first 16 entries are all in the set without an S
/// bit, and payloads that are neither IPv4 nor IPv6.
///
/// The program is attached through a BPF link: dropping the decapsulator, or
/// the process dying, detaches it. All methods take `&self`; it is `Send` and
/// `Sync`. Requires Linux 5.18+ (BPF links for XDP), BTF, and CAP_BPF +
/// CAP_PERFMON + CAP_NET_ADMIN (or root).
///
/// ```no_run
/// use lnetd_host_encap::{Decapsulator, Label, XdpMode};
/// let dec = Decapsulator::builder().attach("eth0", XdpMode::Auto)?;
/// dec.add_pop_label(Label::new(5000)?)?; // a label the controller gave this host
/// println!("{:?}", dec.stats()?.popped);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Decapsulator {
    prog: OwnedFd,
    maps: DecapMaps,
    config: DecapConfig,
    attachment: Mutex<Option<Attached>>,
    /// Serialises changes of the pop set (a replacement reads, then writes).
    writer: Mutex<()>,
}

fn key(label: Label) -> types::pop_label_key {
    let mut key: types::pop_label_key = abi::zeroed();
    key.label = label.value();
    key
}

impl Decapsulator {
    /// Settings for a new decapsulator.
    pub fn builder() -> DecapsulatorBuilder {
        DecapsulatorBuilder::default()
    }

    fn attached(&self) -> MutexGuard<'_, Option<Attached>> {
        // A panic while holding the lock cannot leave the Option half-written.
        self.attachment.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Attaches to `iface` (in the calling thread's network namespace) and
    /// returns the mode obtained.
    ///
    /// # Errors
    /// [`AttachError::NoSuchInterface`], [`AttachError::AlreadyAttached`] (this
    /// decapsulator), [`AttachError::InterfaceBusy`] (another XDP program, an
    /// encapsulator included: one XDP program per interface),
    /// [`AttachError::ModeUnsupported`], [`AttachError::Privileges`].
    pub fn attach(&self, iface: &str, mode: XdpMode) -> Result<AttachedMode, AttachError> {
        let mut slot = self.attached();
        if let Some(current) = slot.as_ref() {
            return Err(AttachError::AlreadyAttached { iface: current.info.iface.clone() });
        }
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        let (link, got) = link::attach(self.prog.as_fd(), ifindex, mode)
            .map_err(|tried| AttachError::from_attempts(iface, mode, tried))?;
        log::info!("XDP decapsulator attached to {iface} (ifindex {ifindex}) in {got} mode");
        *slot = Some(Attached { info: Attachment { iface: iface.to_owned(), ifindex, mode: got }, link });
        Ok(got)
    }

    /// Where it is attached, if anywhere.
    pub fn attachment(&self) -> Option<Attachment> {
        self.attached().as_ref().map(|a| a.info.clone())
    }

    /// Detaches; the pop set and counters are kept, and it can be attached
    /// again. Returns the attachment removed, if any. An interface deleted
    /// meanwhile counts as detached.
    ///
    /// # Errors
    /// [`AttachError::Detach`] when the kernel refuses (the attachment is kept).
    pub fn detach(&self) -> Result<Option<Attachment>, AttachError> {
        let mut slot = self.attached();
        let Some(current) = slot.as_ref() else { return Ok(None) };
        match current.link.detach() {
            Ok(()) | Err(Errno::ENOLINK | Errno::ENODEV | Errno::EINVAL) => {}
            Err(errno) => return Err(AttachError::Detach { iface: current.info.iface.clone(), errno }),
        }
        let removed = slot.take().map(|a| a.info);
        if let Some(info) = &removed {
            log::info!("XDP decapsulator detached from {}", info.iface);
        }
        Ok(removed)
    }

    /// What frames with a label not in the pop set get (fixed at load).
    pub fn other_labels(&self) -> OtherLabels {
        self.config.other
    }

    /// The labels popped now, in order, as the kernel's map holds them.
    ///
    /// # Errors
    /// [`MapError`] when the map cannot be read.
    pub fn pop_labels(&self) -> Result<Vec<Label>, MapError> {
        let limit = usize::try_from(self.config.max_pop_labels).unwrap_or(usize::MAX).saturating_mul(2);
        let mut labels: Vec<Label> = self
            .maps
            .pop_labels
            .keys(limit)?
            .iter()
            .filter_map(|k| abi::from_bytes::<types::pop_label_key>(k))
            // Only this crate writes the map, with valid labels.
            .filter_map(|k| Label::new(k.label).ok())
            .collect();
        labels.sort_unstable();
        Ok(labels)
    }

    /// Pops `label` from now on; `Ok(false)` when it already was.
    ///
    /// # Errors
    /// [`MapError`]: E2BIG when the set is full
    /// ([`DecapsulatorBuilder::max_pop_labels`]).
    pub fn add_pop_label(&self, label: Label) -> Result<bool, MapError> {
        let _writer = self.write_lock();
        self.add_unlocked(label)
    }

    fn add_unlocked(&self, label: Label) -> Result<bool, MapError> {
        let key = key(label);
        if self.maps.pop_labels.lookup(abi::bytes_of(&key))?.is_some() {
            return Ok(false);
        }
        let value: types::pop_label_value = abi::zeroed();
        self.maps.pop_labels.update(abi::bytes_of(&key), abi::bytes_of(&value))?;
        log::debug!("decapsulator pops label {label}");
        Ok(true)
    }

    /// Stops popping `label` (frames carrying it become "other labels");
    /// `Ok(false)` when it was not popped.
    ///
    /// # Errors
    /// [`MapError`].
    pub fn remove_pop_label(&self, label: Label) -> Result<bool, MapError> {
        let _writer = self.write_lock();
        self.maps.pop_labels.delete(abi::bytes_of(&key(label)))
    }

    /// Makes the pop set exactly `labels`: new labels are added before stale
    /// ones are removed, so a label in both sets is never briefly "other".
    ///
    /// # Errors
    /// [`MapError`] (E2BIG when the union of the old and new sets does not
    /// fit); the set may then be part-way changed: read it back with
    /// [`Decapsulator::pop_labels`].
    pub fn set_pop_labels(&self, labels: &[Label]) -> Result<(), MapError> {
        let _writer = self.write_lock();
        let wanted: BTreeSet<Label> = labels.iter().copied().collect();
        let current: BTreeSet<Label> = self.pop_labels()?.into_iter().collect();
        for label in wanted.difference(&current) {
            self.add_unlocked(*label)?;
        }
        for label in current.difference(&wanted) {
            self.maps.pop_labels.delete(abi::bytes_of(&key(*label)))?;
        }
        Ok(())
    }

    /// The counters, summed over CPUs. They only grow; use
    /// [`DecapStats::since`] for rates.
    ///
    /// # Errors
    /// [`MapError`] when the kernel refuses the lookup.
    pub fn stats(&self) -> Result<DecapStats, MapError> {
        let mut stats = DecapStats::default();
        for index in 0..abi::DECAP_COUNTERS {
            for bytes in self.maps.decap_counters.lookup_percpu(&index.to_ne_bytes())? {
                if let Some(v) = abi::from_bytes::<types::counter_value>(&bytes) {
                    stats.accumulate(index, Counter { packets: v.packets, bytes: v.bytes });
                }
            }
        }
        Ok(stats)
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN, without any
    /// interface. The counters count it.
    ///
    /// # Errors
    /// [`TestRunError::FrameTooLarge`] above [`crate::MAX_TEST_FRAME`] bytes, or
    /// [`TestRunError::Kernel`].
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun, TestRunError> {
        test_run::test_run(self.prog.as_fd(), frame)
    }
}

impl Drop for Decapsulator {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            // The link fd closes below regardless, which detaches in the kernel.
            log::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decapsulator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Decapsulator>();
    }

    #[test]
    fn default_pops_the_explicit_nulls_and_passes_others() {
        let b = Decapsulator::builder();
        assert_eq!(b.pop, [Label::new(0), Label::new(2)].into_iter().collect::<Result<BTreeSet<_>, _>>().unwrap());
        assert_eq!(b.config.other, OtherLabels::Pass);
    }
}
