//! [`Decapsulator`]: pops the labels addressed to this host from the frames
//! an interface receives and hands the IP packets to its stack.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;

use crate::abi::{self, decap::types};
use crate::dataplane::decap::{self as loader, DecapConfig, DecapMaps, DecapState, LoadedDecap};
use crate::dataplane::pins::{decap_roots, OwnerLock, PinDir, PinRoots};
use crate::domain::config::{AttachedMode, OtherLabels, XdpMode};
use crate::domain::label::Label;
use crate::encapsulator::Attachment;
use crate::error::{AttachError, Error, LoadError, MapError, PinError, TestRunError};
use crate::stats::{Counter, DecapStats};
use crate::sys::link::{self, BpfLink};
use crate::sys::test_run::{self, TestRun};

/// Settings for [`Decapsulator`], applied when the program is loaded.
///
/// ```no_run
/// use lnetd_host_encap::{decap::Decapsulator, Label, encap::OtherLabels, XdpMode};
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
    pin: Option<PinRoots>,
}

impl Default for DecapsulatorBuilder {
    fn default() -> Self {
        DecapsulatorBuilder {
            pop: [Label::IPV4_EXPLICIT_NULL, Label::IPV6_EXPLICIT_NULL].into(),
            config: DecapConfig {
                other: OtherLabels::default(),
                max_pop_labels: types::decap_limits::DECAP_DEFAULT_MAX_POP_LABELS.0,
            },
            pin: None,
        }
    }
}

impl DecapsulatorBuilder {
    /// The labels to pop (default: the explicit nulls, 0 and 2). Replaces the
    /// set; it can be changed later with [`Decapsulator::set_pop_labels`].
    /// [`Label`] refuses the special-purpose values other than the explicit
    /// nulls, so an ELI/EL pair or a GAL is never popped (it is an other label).
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

    /// Pins the decapsulator when it is attached: its maps and its link under
    /// `/sys/fs/bpf/lnetd-host-encap/decap/net<netns>/<iface>/`, its policy
    /// and attachment in `/run/lnetd-host-encap/decap/net<netns>/<iface>/state.json`
    /// (the `decap` sub-directory keeps it apart from an encapsulator's pins).
    /// Popping then continues after the process exits or is killed,
    /// [`Decapsulator::open`] adopts it from another process, and
    /// [`Decapsulator::detach`] removes program and pins. Without it (the
    /// default), dropping the decapsulator detaches the program.
    pub fn pinned(self) -> Self {
        self.pinned_at(PinRoots::default())
    }

    /// As [`DecapsulatorBuilder::pinned`], under other roots (the decapsulator
    /// uses their `decap` sub-directories).
    pub fn pinned_at(mut self, roots: PinRoots) -> Self {
        self.pin = Some(roots);
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
        let LoadedDecap { xdp, tc, maps } = loader::load(&self.config)?;
        let dec = Decapsulator {
            xdp: Some(xdp),
            tc: Some(tc),
            maps,
            config: self.config,
            attachment: Mutex::new(None),
            writer: Mutex::new(()),
            pin: self.pin,
        };
        for label in &self.pop {
            dec.add_pop_label(*label)?;
        }
        log::debug!("decapsulator loaded ({:?}, popping {:?})", self.config, self.pop);
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

    /// Loads, then attaches to `iface`'s ingress (see [`Decapsulator::attach_ingress`]).
    ///
    /// # Errors
    /// Any [`LoadError`] or [`AttachError`].
    pub fn attach_ingress(self, iface: &str) -> Result<Decapsulator, Error> {
        let dec = self.load()?;
        dec.attach_ingress(iface)?;
        Ok(dec)
    }
}

#[derive(Debug)]
struct Attached {
    info: Attachment,
    link: BpfLink,
    /// Where it is pinned, if it is.
    pins: Option<PinDir>,
    /// Held while this process owns the pinned decapsulator.
    _owner: Option<OwnerLock>,
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
/// Two hooks, one worker compiled into two programs that share the pop set,
/// the policy and the counters:
///
/// - XDP ([`Decapsulator::attach`]): the frame is popped before the kernel
///   builds an skb, the fastest path for MTU-sized frames from a NIC.
/// - TC ingress ([`Decapsulator::attach_ingress`], tcx): on the skb, so a
///   GSO super-packet (a veth hands its peer the sender's super-packets) is
///   popped whole, where XDP on a veth would make the sender segment every
///   packet in software (a veth whose peer runs XDP loses its GSO features).
///   It pops only whole stacks (a partial pop is an other-label frame there),
///   and a stack under a VLAN tag still in the frame (the inner tag of two;
///   the kernel takes the outer one off first) is counted malformed and
///   passed: attach to the VLAN device. GSO types other than TCP and UDP
///   (SCTP, ESP) cannot be popped whole and are dropped as aborted. A popped
///   super-packet's segment count is left at 0 by the kernel's helper
///   (readers take it as 1: IP and TCP segment counters undercount).
///   Frames it passes go on to the next tcx program, if any.
///
/// The program is attached through a BPF link: dropping the decapsulator, or
/// the process dying, detaches it, unless it was pinned
/// ([`DecapsulatorBuilder::pinned`]). All methods take `&self`; it is `Send` and
/// `Sync`. Requires Linux 5.18+ (BPF links for XDP), BTF, and CAP_BPF +
/// CAP_PERFMON + CAP_NET_ADMIN (or root).
///
/// ```no_run
/// use lnetd_host_encap::{decap::Decapsulator, Label, XdpMode};
/// let dec = Decapsulator::builder().attach("eth0", XdpMode::Auto)?;
/// dec.add_pop_label(Label::new(5000)?)?; // a label the controller gave this host
/// println!("{:?}", dec.stats()?.popped);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Decapsulator {
    /// The XDP program; `None` when adopted running on TC.
    xdp: Option<OwnedFd>,
    /// The TC ingress program; `None` when adopted running on XDP.
    tc: Option<OwnedFd>,
    maps: DecapMaps,
    config: DecapConfig,
    attachment: Mutex<Option<Attached>>,
    /// Serialises changes of the pop set (a replacement reads, then writes).
    writer: Mutex<()>,
    /// Pin at attach, under these roots (their `decap` sub-directories).
    pin: Option<PinRoots>,
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
    /// [`AttachError::ModeUnsupported`], [`AttachError::Privileges`],
    /// [`AttachError::NoProgramForHook`] for a handle adopted from a
    /// decapsulator on TC ingress.
    pub fn attach(&self, iface: &str, mode: XdpMode) -> Result<AttachedMode, AttachError> {
        self.attach_with(iface, |ifindex| {
            let prog = self
                .program(AttachedMode::Native)
                .map_err(|(wanted, running)| AttachError::NoProgramForHook { wanted, running })?;
            link::attach(prog, ifindex, mode).map_err(|tried| AttachError::from_attempts(iface, mode, tried))
        })
    }

    /// Attaches to `iface`'s ingress through tcx (Linux 6.6+), on the skb
    /// path: GSO super-packets are popped whole (see the type's
    /// documentation for what differs from XDP). Returns
    /// [`AttachedMode::Ingress`]. Beside it, the interface may run any XDP
    /// program, an encapsulator's included.
    ///
    /// # Errors
    /// [`AttachError::NoSuchInterface`], [`AttachError::AlreadyAttached`],
    /// [`AttachError::Privileges`], [`AttachError::Ingress`] (tcx refused),
    /// [`AttachError::NoProgramForHook`] for a handle adopted from an XDP
    /// decapsulator (it holds no TC program).
    pub fn attach_ingress(&self, iface: &str) -> Result<AttachedMode, AttachError> {
        self.attach_with(iface, |ifindex| {
            let prog = self
                .program(AttachedMode::Ingress)
                .map_err(|(wanted, running)| AttachError::NoProgramForHook { wanted, running })?;
            let link = link::attach_tcx_ingress(prog, ifindex)
                .map_err(|errno| AttachError::from_tcx(iface, AttachedMode::Ingress, errno))?;
            Ok((link, AttachedMode::Ingress))
        })
    }

    /// The program for a hook (`Ingress`, or any XDP mode), and the names of
    /// the hook asked for and of the other one, for the error when this
    /// handle, adopted on the other hook, holds none.
    fn program(&self, mode: AttachedMode) -> Result<BorrowedFd<'_>, (&'static str, &'static str)> {
        let (prog, wanted, running) = match mode {
            AttachedMode::Ingress => (&self.tc, "TC ingress", "XDP"),
            _ => (&self.xdp, "XDP", "TC ingress"),
        };
        prog.as_ref().map(AsFd::as_fd).ok_or((wanted, running))
    }

    /// The attach steps both hooks share: the interface, the pins; `link`
    /// makes the attachment itself.
    fn attach_with(
        &self,
        iface: &str,
        link: impl FnOnce(u32) -> Result<(BpfLink, AttachedMode), AttachError>,
    ) -> Result<AttachedMode, AttachError> {
        let mut slot = self.attached();
        if let Some(current) = slot.as_ref() {
            return Err(AttachError::AlreadyAttached { iface: current.info.iface.clone() });
        }
        let ifindex = crate::sys::host_addresses::ifindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        let pins = match &self.pin {
            Some(roots) => {
                let dir = PinDir::of(&decap_roots(roots), iface)?;
                if dir.exists()? {
                    return Err(PinError::AlreadyPinned { dir: dir.pins().to_owned() }.into());
                }
                Some(dir)
            }
            None => None,
        };
        let (link, got) = link(ifindex)?;
        let mut owner = None;
        if let Some(dir) = &pins {
            let state = DecapState::new(&self.config, ifindex, got);
            let pinned = serde_json::to_string_pretty(&state)
                .map_err(|e| PinError::Corrupt { path: dir.pins().to_owned(), reason: e.to_string() })
                .and_then(|text| dir.create(&self.maps.all(), &link, &text))
                .and_then(|()| dir.lock(std::time::Duration::ZERO));
            match pinned {
                Ok(lock) => owner = Some(lock),
                Err(e) => {
                    // Not attached unpinned when pinning was asked for: the link closes on return.
                    if let Err(remove) = dir.remove() {
                        log::warn!("{remove}");
                    }
                    return Err(e.into());
                }
            }
            log::info!("pinned in {}", dir.pins().display());
        }
        log::info!("decapsulator attached to {iface} (ifindex {ifindex}) in {got} mode");
        let info = Attachment { iface: iface.to_owned(), ifindex, mode: got };
        *slot = Some(Attached { info, link, pins, _owner: owner });
        Ok(got)
    }

    /// Where it is attached, if anywhere.
    pub fn attachment(&self) -> Option<Attachment> {
        self.attached().as_ref().map(|a| a.info.clone())
    }

    /// Detaches; the pop set and counters are kept, and it can be attached
    /// again. A pinned decapsulator's pins and state file are removed.
    /// Returns the attachment removed, if any. An interface deleted meanwhile
    /// counts as detached.
    ///
    /// # Errors
    /// [`AttachError::Detach`] when the kernel refuses (the attachment is
    /// kept); [`AttachError::Pin`] when the pins cannot be removed (the
    /// program is detached).
    pub fn detach(&self) -> Result<Option<Attachment>, AttachError> {
        let mut slot = self.attached();
        let Some(current) = slot.as_ref() else { return Ok(None) };
        match current.link.detach() {
            Ok(()) | Err(Errno::ENOLINK | Errno::ENODEV | Errno::EINVAL) => {}
            Err(errno) => return Err(AttachError::Detach { iface: current.info.iface.clone(), errno }),
        }
        let Some(removed) = slot.take() else { return Ok(None) };
        log::info!("decapsulator detached from {}", removed.info.iface);
        if let Some(dir) = &removed.pins {
            dir.remove()?;
        }
        Ok(Some(removed.info))
    }

    /// Adopts the decapsulator pinned on `iface` (in the calling thread's
    /// network namespace, under the default roots) by another process: the
    /// program that runs, its pop set and counters, its policy. It becomes
    /// this process's to change and to detach. The program is kept as it runs
    /// (not replaced by this build's).
    ///
    /// # Errors
    /// [`PinError::NotPinned`] (naming another XDP program attached there, if
    /// any), [`PinError::Busy`] while another process owns it,
    /// [`PinError::Incompatible`], [`PinError::Corrupt`],
    /// [`PinError::StaleInterface`] when the interface was recreated,
    /// [`AttachError::NoSuchInterface`], [`Error::Sys`].
    pub fn open(iface: &str) -> Result<Decapsulator, Error> {
        Decapsulator::open_at(iface, &PinRoots::default())
    }

    /// As [`Decapsulator::open`], under other roots (as given to
    /// [`DecapsulatorBuilder::pinned_at`]).
    ///
    /// # Errors
    /// As [`Decapsulator::open`].
    pub fn open_at(iface: &str, roots: &PinRoots) -> Result<Decapsulator, Error> {
        let dir = PinDir::of(&decap_roots(roots), iface)?;
        if !dir.exists()? {
            // A misspelt name is said as such, not as "nothing pinned there".
            let ifindex = crate::sys::host_addresses::ifindex(iface)
                .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
            let other_program = link::attached_prog_id(ifindex).ok().flatten();
            return Err(
                PinError::NotPinned { iface: iface.to_owned(), dir: dir.pins().to_owned(), other_program }.into()
            );
        }
        let owner = dir.lock(std::time::Duration::ZERO)?;
        let corrupt = |reason: String| PinError::Corrupt { path: dir.pins().to_owned(), reason };
        let state: DecapState = serde_json::from_str(&dir.read()?).map_err(|e| corrupt(e.to_string()))?;
        if !DecapState::reads(state.format) {
            return Err(PinError::Incompatible {
                found: state.format,
                written_by: state.written_by,
                ours: DecapState::FORMAT,
                ours_version: env!("CARGO_PKG_VERSION"),
                dir: dir.pins().to_owned(),
            }
            .into());
        }
        let (config, mode) = state.parts().map_err(corrupt)?;
        let ifindex = crate::sys::host_addresses::ifindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        if ifindex != state.ifindex {
            return Err(
                PinError::StaleInterface { iface: iface.to_owned(), pinned: state.ifindex, now: ifindex }.into()
            );
        }
        let maps = DecapMaps::from_pins(&dir.maps_dir()).map_err(|(name, errno)| {
            dir.elsewhere(errno).unwrap_or_else(|| PinError::Kernel {
                op: "opening",
                path: dir.maps_dir().join(name),
                errno,
            })
        })?;
        let link = dir.open_link()?;
        let prog = link.prog().map_err(|errno| Error::Sys { call: "bpf_link_get_info_by_fd", errno })?;
        log::info!("adopted the decapsulator pinned in {}", dir.pins().display());
        let info = Attachment { iface: iface.to_owned(), ifindex, mode };
        let (xdp, tc) = if mode == AttachedMode::Ingress { (None, Some(prog)) } else { (Some(prog), None) };
        Ok(Decapsulator {
            xdp,
            tc,
            maps,
            config,
            attachment: Mutex::new(Some(Attached { info, link, pins: Some(dir), _owner: Some(owner) })),
            writer: Mutex::new(()),
            pin: Some(roots.clone()),
        })
    }

    /// Where this decapsulator's pins are, if it is pinned and attached.
    pub fn pin_dir(&self) -> Option<std::path::PathBuf> {
        self.attached().as_ref().and_then(|a| a.pins.as_ref()).map(|d| d.pins().to_owned())
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

    /// Runs the XDP program once on `frame` with BPF_PROG_TEST_RUN, without
    /// any interface. The counters count it.
    ///
    /// # Errors
    /// [`TestRunError::FrameTooLarge`] above [`crate::diagnostics::MAX_TEST_FRAME`] bytes, or
    /// [`TestRunError::Kernel`], [`TestRunError::NoProgram`] for a handle
    /// adopted from a decapsulator running on TC.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun, TestRunError> {
        let prog = self
            .program(AttachedMode::Native)
            .map_err(|(wanted, running)| TestRunError::NoProgram { wanted, running })?;
        test_run::test_run(prog, frame)
    }

    /// Runs the TC ingress program once on `frame` with BPF_PROG_TEST_RUN,
    /// without any interface; on (TC_ACT_UNSPEC: the next program, or the
    /// stack) is reported as [`XdpAction::Pass`] and TC_ACT_SHOT as
    /// [`XdpAction::Drop`](crate::diagnostics::XdpAction::Drop). The frame
    /// is handed over as it is: a VLAN tag stays in it (on an interface the
    /// kernel takes the outer one off first). The counters count it.
    ///
    /// # Errors
    /// As [`Decapsulator::test_run`] ([`TestRunError::NoProgram`] for a
    /// handle adopted from a decapsulator running in XDP).
    ///
    /// [`XdpAction::Pass`]: crate::diagnostics::XdpAction::Pass
    pub fn test_run_ingress(&self, frame: &[u8]) -> Result<TestRun, TestRunError> {
        let prog = self
            .program(AttachedMode::Ingress)
            .map_err(|(wanted, running)| TestRunError::NoProgram { wanted, running })?;
        test_run::test_run_skb(prog, frame)
    }
}

impl Drop for Decapsulator {
    fn drop(&mut self) {
        // A pinned decapsulator outlives its handle: that is what pinning is for.
        if self.attached().as_ref().is_some_and(|a| a.pins.is_some()) {
            return;
        }
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
