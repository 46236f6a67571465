//! Attaching a loaded dataplane to an interface (XDP, or tcx egress),
//! pinning it, and detaching it.

use super::*;

/// Where an encapsulator is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// The mode obtained.
    pub mode: AttachedMode,
}

/// What an encapsulator holds while attached.
#[derive(Debug)]
pub(super) struct Attached {
    pub(super) info: Attachment,
    pub(super) link: BpfLink,
    /// Where it is pinned, if it is.
    pub(super) pins: Option<PinDir>,
    /// Held while this process owns the pinned dataplane.
    pub(super) _owner: Option<OwnerLock>,
}

impl Encapsulator {
    pub(super) fn attached(&self) -> MutexGuard<'_, Option<Attached>> {
        // A panic while holding the lock cannot leave the Option half-written.
        self.attachment.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Attaches to `iface` (in the calling thread's network namespace) and
    /// returns the mode obtained. The host-address table is refreshed first.
    ///
    /// # Errors
    /// [`AttachError::NoSuchInterface`], [`AttachError::AlreadyAttached`] (this
    /// encapsulator), [`AttachError::InterfaceBusy`] (another XDP program),
    /// [`AttachError::ModeUnsupported`], [`AttachError::Privileges`].
    ///
    /// [`XdpMode::Auto`] on a veth whose peer runs no native XDP program
    /// attaches in generic mode and logs a warning saying why (see
    /// [`XdpMode::Auto`]); [`XdpMode::Native`] there attaches as asked and
    /// logs a warning that labelled frames will be lost until the peer runs one.
    pub fn attach(&self, iface: &str, hook: impl Into<Hook>) -> Result<AttachedMode, AttachError> {
        match hook.into() {
            Hook::Xdp(mode) => self.attach_xdp(iface, mode),
            Hook::Egress => self.attach_egress(iface),
        }
    }

    fn attach_xdp(&self, iface: &str, mode: XdpMode) -> Result<AttachedMode, AttachError> {
        self.attach_with(iface, |ifindex| {
            let order = match mode {
                XdpMode::Auto => match crate::sys::veth_peer::veth_peer(ifindex) {
                    Ok(Some(peer)) if !peer.native_xdp => {
                        let at = peer.netnsid.map(|id| format!(" in namespace id {id}")).unwrap_or_default();
                        log::warn!(
                            "{iface} is a veth whose peer (ifindex {}{at}) runs no XDP program in native mode: \
                             in native mode every labelled frame would be dropped by the veth driver \
                             (xdp_tx_errors), so generic mode is used; attach an XDP program to the peer \
                             and ask for native mode explicitly to run natively",
                            peer.ifindex
                        );
                        XdpMode::Generic
                    }
                    Ok(_) => XdpMode::Auto,
                    Err(errno) => {
                        log::debug!("{iface}: the veth peer could not be read ({errno}); native first");
                        XdpMode::Auto
                    }
                },
                XdpMode::Native => {
                    // Asked for: kept, but never silently lossy.
                    if let Ok(Some(peer)) = crate::sys::veth_peer::veth_peer(ifindex) {
                        if !peer.native_xdp {
                            let at = peer.netnsid.map(|id| format!(" in namespace id {id}")).unwrap_or_default();
                            log::warn!(
                                "{iface} is a veth whose peer (ifindex {}{at}) runs no XDP program in native mode: \
                                 every labelled frame will be dropped by the veth driver (xdp_tx_errors, \
                                 `stats` tx_errors) until one runs there; attach an XDP program to the peer, \
                                 or use generic mode",
                                peer.ifindex
                            );
                        }
                    }
                    XdpMode::Native
                }
                other => other,
            };
            link::attach(self.prog.as_fd(), ifindex, order)
                .map_err(|tried| AttachError::from_attempts(iface, mode, tried))
        })
    }

    /// Attaches to `iface`'s egress (tcx, Linux 6.6+): the host's OWN
    /// packets leaving through it get the same routes, policies, stacks,
    /// TTL modes, traffic classes, entropy labels and counters as on the XDP
    /// path; the MACs the kernel chose are kept and the stack goes after L2
    /// (and VLAN tags). Super-packets stay correct: the push keeps the
    /// network header on IP, so software GSO copies Ethernet and labels into
    /// every segment. A device that segments TCP itself (TSO on) is refused
    /// unless [`EncapsulatorBuilder::allow_tso`] says it segments MPLS:
    /// turn TSO off (`ethtool -K IFACE tso off`; GSO stays on). Labelled
    /// segments need 4 bytes a label under the MTU: give the routes through
    /// the interface an MTU that leaves that room (README, "Host mode").
    ///
    /// # Errors
    /// As [`Encapsulator::attach`], and [`AttachError::TsoEnabled`].
    fn attach_egress(&self, iface: &str) -> Result<AttachedMode, AttachError> {
        // Inside attach_with: its checks (attached already, pinned already)
        // come first, and say what is wrong before TSO would.
        self.attach_with(iface, |ifindex| {
            let tso = crate::sys::ethtool::tso_enabled(iface)
                .map_err(|errno| AttachError::Ethtool { iface: iface.to_owned(), errno })?;
            if tso && !self.allow_tso {
                return Err(AttachError::TsoEnabled { iface: iface.to_owned() });
            }
            let tc =
                dataplane::load_program(self.fib.config(), self.fib.maps(), Program::TcEgress).map_err(Box::new)?;
            let link = link::attach_tcx_egress(tc.as_fd(), ifindex)
                .map_err(|errno| AttachError::from_tcx(iface, AttachedMode::Egress, errno))?;
            Ok((link, AttachedMode::Egress))
        })
    }

    /// The attach steps every hook shares: the interface, the host's
    /// addresses, the pins; `link` makes the attachment itself.
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
        self.refresh_local_addresses().map_err(|e| AttachError::HostAddresses(Box::new(e)))?;

        let pins = match &self.pin {
            Some(roots) => {
                let dir = PinDir::of(roots, iface)?;
                if dir.exists()? {
                    return Err(PinError::AlreadyPinned { dir: dir.pins().to_owned() }.into());
                }
                Some(dir)
            }
            None => None,
        };
        let (link, got) = link(ifindex)?;
        // The driver's statistics and the kernel's routes are read in this namespace, later from any thread.
        self.netns.reopen();
        let info = Attachment { iface: iface.to_owned(), ifindex, mode: got };
        let mut owner = None;
        if let Some(dir) = &pins {
            // The lock first: a process adopting meanwhile waits or is refused,
            // and never sees pins this attach may still take back.
            let pinned = dir
                .lock(std::time::Duration::ZERO)
                .and_then(|lock| {
                    owner = Some(lock);
                    dir.create_with(&self.fib.maps().all(), &link, |dir| {
                        let mut rib = self.fib.read(Clone::clone);
                        Store::create(dir.state_dir(), &mut rib, *self.fib.config(), store_attached(&info))
                    })
                })
                .map(|store| {
                    self.fib.set_store(Some(store));
                    dir.record_program(dataplane::fingerprint(self.fib.config(), Program::attached_as(got)), &link);
                });
            if let Err(e) = pinned {
                // Not attached unpinned when pinning was asked for: the link closes on return.
                if let Err(remove) = dir.remove() {
                    log::warn!("{remove}");
                }
                return Err(e.into());
            }
            log::info!("pinned in {}", dir.pins().display());
        }
        log::info!("encapsulator attached to {iface} (ifindex {ifindex}) in {got} mode");
        *slot = Some(Attached { info, link, pins, _owner: owner });
        Ok(got)
    }

    /// Where it is attached, if anywhere.
    pub fn attachment(&self) -> Option<Attachment> {
        self.attached().as_ref().map(|a| a.info.clone())
    }

    /// Detaches; routes and counters are kept, and it can be attached again.
    /// A pinned dataplane's pins and state file are removed. Returns the
    /// attachment removed, if any. An interface deleted meanwhile counts as
    /// detached.
    ///
    /// # Errors
    /// [`AttachError::Detach`] when the kernel refuses (the attachment is
    /// kept); [`AttachError::Pin`] when the pins cannot be removed (the
    /// program is detached).
    pub fn detach(&self) -> Result<Option<Attachment>, AttachError> {
        if self.fib.is_read_only() {
            return Err(AttachError::ReadOnly);
        }
        // A handle adopted for one prefix reads the rest of its RIB while the
        // state is there: unpinned, it goes on with every route (and a
        // later attach pins them all, not the few it read).
        self.fib.read_all()?;
        let mut slot = self.attached();
        let Some(current) = slot.as_ref() else { return Ok(None) };
        match current.link.detach() {
            Ok(()) | Err(Errno::ENOLINK | Errno::ENODEV | Errno::EINVAL) => {}
            Err(errno) => return Err(AttachError::Detach { iface: current.info.iface.clone(), errno }),
        }
        let Some(removed) = slot.take() else { return Ok(None) };
        log::info!("XDP encapsulator detached from {}", removed.info.iface);
        if let Some(dir) = &removed.pins {
            self.fib.set_store(None);
            dir.remove()?;
        }
        Ok(Some(removed.info))
    }
}

pub(super) fn store_attached(info: &Attachment) -> store::Attached {
    store::Attached { iface: info.iface.clone(), ifindex: info.ifindex, mode: info.mode }
}
