//! Adopting a dataplane pinned by another process: [`AdoptOptions`], and
//! what an adoption reads (the whole RIB, or one prefix's routes) and checks.

use super::*;

/// How [`AdoptOptions::open`] adopts a pinned dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptOptions {
    /// Where the pins are (default: [`PinRoots::default`]).
    pub roots: PinRoots,
    /// Move the link to this build's program (the default: how upgrades
    /// happen; a no-op where it already runs); false keeps the program
    /// running (for tools that only read).
    pub replace_program: bool,
    /// How long to wait for another process that owns the dataplane to let
    /// go (default: not at all: [`PinError::Busy`]).
    pub wait: std::time::Duration,
    /// Only read (routes, counters, explain): takes no ownership, so it works
    /// beside the owner (an agent); every change is refused with
    /// [`RouteError::ReadOnly`]. Implies `replace_program: false`.
    pub read_only: bool,
}

impl AdoptOptions {
    /// Adopts the dataplane pinned on `iface` with these options (see
    /// [`Encapsulator::open`], which uses the defaults), like
    /// `std::fs::OpenOptions::open`.
    ///
    /// ```no_run
    /// // Not run: needs root and a dataplane pinned on eth1.
    /// use lnetd_host_encap::encap::AdoptOptions;
    /// let reader = AdoptOptions { read_only: true, ..AdoptOptions::default() }.open("eth1")?;
    /// println!("{}", reader.stats()?);
    /// # Ok::<(), lnetd_host_encap::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Encapsulator::open`].
    pub fn open(&self, iface: &str) -> Result<Encapsulator, Error> {
        Encapsulator::open_with(iface, self, None)
    }

    /// As [`AdoptOptions::open`], for a writer about to change the routes
    /// for `prefix` (in any table): it reads those routes from the state
    /// beside the pins, not the whole table, so that setting or removing one
    /// route costs the same at a million routes as at ten. Anything else
    /// asked of it (another prefix, an apply, the routes) reads the rest
    /// first, so it is an ordinary handle that is only fast at that one thing.
    ///
    /// ```no_run
    /// // Not run: needs root and a dataplane pinned on eth1.
    /// use lnetd_host_encap::{encap::AdoptOptions, Route, Table};
    /// let prefix = "198.51.100.0/24".parse()?;
    /// let enc = AdoptOptions::default().open_for("eth1", prefix)?;
    /// enc.set_route(Table::Main, &Route::new(prefix, "16001/16002".parse()?))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`AdoptOptions::open`].
    pub fn open_for(&self, iface: &str, prefix: ipnetwork::IpNetwork) -> Result<Encapsulator, Error> {
        Encapsulator::open_with(iface, self, Some(prefix))
    }

    /// Whether a dataplane is pinned on `iface` under these options' roots,
    /// in the calling thread's network namespace.
    ///
    /// # Errors
    /// [`PinError`] when the namespace cannot be read or the name is invalid.
    pub fn is_pinned(&self, iface: &str) -> Result<bool, PinError> {
        if self.roots == PinRoots::default() {
            return Encapsulator::is_pinned(iface);
        }
        PinDir::of(&self.roots, iface)?.exists()
    }
}

impl Default for AdoptOptions {
    fn default() -> Self {
        AdoptOptions {
            roots: PinRoots::default(),
            replace_program: true,
            wait: std::time::Duration::ZERO,
            read_only: false,
        }
    }
}

impl Encapsulator {
    /// Adopts the dataplane pinned on `iface` (in the calling thread's
    /// network namespace) by another process, with every route, policy,
    /// source, counter and id allocation intact (the host's addresses are
    /// re-read, as at attach: they may have changed since), and moves its
    /// link to this build's program atomically (a packet runs the old program
    /// or the new one, and the maps are kept): this is also how a newer build
    /// takes over a running dataplane. Forwarding never stops. Where this
    /// build's own program, with the same settings, already runs (recorded
    /// beside the pins at attach and at every move), it is kept: a restart
    /// does not verify an identical program again.
    ///
    /// ```no_run
    /// use lnetd_host_encap::{Encapsulator, Table};
    /// let enc = Encapsulator::open("eth1")?;
    /// for route in enc.routes(Table::Main)? {
    ///     println!("{} -> {}", route.prefix, route.policy);
    /// }
    /// # Ok::<(), lnetd_host_encap::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`PinError::NotPinned`] when nothing is pinned there;
    /// [`PinError::Incompatible`] for state written by a build of another
    /// format (naming both versions); [`PinError::StaleInterface`] when the
    /// interface was recreated; [`PinError::StaleLink`] when the pinned link no
    /// longer attaches the live interface (deleted and recreated, with its
    /// namespace or alone); [`LoadError`] when this build's program cannot
    /// be loaded against the pinned maps; [`AttachError::Replace`].
    pub fn open(iface: &str) -> Result<Encapsulator, Error> {
        Encapsulator::open_with(iface, &AdoptOptions::default(), None)
    }

    /// As [`Encapsulator::open`], with options: other roots, keeping the
    /// program that runs, waiting for the current owner. One process owns a
    /// pinned dataplane at a time (a lock the kernel releases when it dies),
    /// so two never overwrite each other's state.
    ///
    /// # Errors
    /// As [`Encapsulator::open`], and [`PinError::Busy`] while another
    /// process owns it.
    /// With `scope`, a writer reads only the routes for that prefix
    /// ([`AdoptOptions::open_for`]).
    pub(crate) fn open_with(
        iface: &str,
        options: &AdoptOptions,
        scope: Option<IpNetwork>,
    ) -> Result<Encapsulator, Error> {
        let dir = PinDir::of(&options.roots, iface)?;
        if !dir.exists()? {
            // A misspelt name is said as such, not as "nothing pinned there".
            let ifindex = crate::sys::host_addresses::ifindex(iface)
                .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
            let other_program = link::attached_prog_id(ifindex).ok().flatten();
            return Err(
                PinError::NotPinned { iface: iface.to_owned(), dir: dir.pins().to_owned(), other_program }.into()
            );
        }
        let owner = if options.read_only { None } else { Some(dir.lock(options.wait)?) };
        let started = std::time::Instant::now();
        let unreadable = |e: OpenError| state_error(e, dir.pins(), dir.state_dir());
        // A reader checks the state (format, checksum) now and decodes the
        // RIB only when it first needs it: `stats` never does. A writer
        // decodes it on a thread of its own while this one verifies the
        // program: the two halves of an agent's restart, overlapped.
        let peek = if options.read_only { Store::peek } else { Store::peek_head };
        let store::Peeked { config, attached, mut unfinished } = peek(dir.state_dir()).map_err(unreadable)?;
        let state_dir = dir.state_dir().to_owned();
        // A writer for one prefix reads its routes alone (None: the state
        // cannot be written from so few, e.g. a change left unfinished).
        let scope = scope.filter(|_| !options.read_only && !unfinished);
        let decoding = if options.read_only {
            None
        } else {
            let state_dir = state_dir.clone();
            Some(std::thread::spawn(move || {
                let one = match scope {
                    Some(prefix) => Store::open_for_change(&state_dir, &store::Covering(&[prefix.network()]))?,
                    None => None,
                };
                match one {
                    Some((recovered, store)) => Ok((recovered, Some(store), scope)),
                    None => Store::open(&state_dir, true).map(|(recovered, store)| (recovered, store, None)),
                }
            }))
        };
        let read = started.elapsed();
        if attached.mode == AttachedMode::Ingress {
            // A decapsulator's hook: no encapsulator is ever attached there.
            let reason = "an encapsulator attached in ingress mode".to_owned();
            return Err(PinError::Corrupt { path: dir.pins().to_owned(), reason }.into());
        }
        let ifindex = crate::sys::host_addresses::ifindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        if ifindex != attached.ifindex {
            return Err(
                PinError::StaleInterface { iface: iface.to_owned(), pinned: attached.ifindex, now: ifindex }.into()
            );
        }
        let link = dir.open_link()?;
        dir.check_live(iface, ifindex, &link, attached.mode != AttachedMode::Egress)?;
        let maps = dir.open_maps()?;
        let program = Program::attached_as(attached.mode);
        // This build's own program, with these settings, already runs (a
        // restart, not an upgrade): an identical one would be verified for
        // nothing. The record names the running program's id, which the
        // kernel never gives two programs at once. Keeping it needs its fd,
        // which only CAP_SYS_ADMIN may take by id (BPF_PROG_GET_FD_BY_ID): an
        // agent with the unit's capabilities loads its own, as before.
        let writer = options.replace_program && !options.read_only;
        // Only a writer that may replace the program needs it (it reads the kernel's BTF).
        let ours = if writer { dataplane::fingerprint(&config, program) } else { 0 };
        let running_ours = writer && link.prog_id().is_ok_and(|id| dir.recorded_program() == Some((ours, id)));
        let kept = running_ours.then(|| link.prog().ok()).flatten();
        if running_ours {
            log::debug!("the running program is this build's: {}", if kept.is_some() { "kept" } else { "replaced" });
        }
        let replacement =
            if writer && kept.is_none() { Some(dataplane::load_program(&config, &maps, program)?) } else { None };
        // The RIB is read before the program is replaced: a state that
        // cannot be read leaves the running program alone.
        let (rib, store) = match decoding {
            None => {
                let load: crate::fib::RibLoader = Box::new(move |keep| {
                    let read = match keep {
                        None => Store::open(&state_dir, false).map(|(recovered, _)| recovered.rib),
                        Some(keep) => Store::read_if(&state_dir, keep),
                    };
                    read.map_err(|e| match e {
                        OpenError::Pin(e) => e.to_string(),
                        OpenError::Unreadable(Unreadable::Invalid(reason)) => {
                            format!("the state in {} cannot be read: {reason}", state_dir.display())
                        }
                        OpenError::Unreadable(Unreadable::Version(found, by)) => {
                            format!(
                                "the state in {} was replaced by format {found} (written by {by})",
                                state_dir.display()
                            )
                        }
                    })
                });
                (Err(load), None)
            }
            Some(decoding) => {
                // This thread reads the lookup table's bookkeeping back
                // while the other decodes the RIB.
                let table = match Fib::read_back_dir(&maps, &config, scope) {
                    Ok(table) => table,
                    Err(e) => {
                        // The decoder may be cutting the journal's torn tail:
                        // it finishes before the owner lock goes.
                        let _ = decoding.join();
                        return Err(e.into());
                    }
                };
                let decoded = decoding.join().unwrap_or_else(|_| {
                    Err(OpenError::Unreadable(Unreadable::Invalid("decoding it failed (a panic)".to_owned())))
                });
                let (recovered, store, scoped) = decoded.map_err(unreadable)?;
                unfinished = recovered.unfinished;
                (Ok((recovered.rib, table, scoped)), store)
            }
        };
        let prog = match replacement {
            Some(prog) => {
                link.update_prog(prog.as_fd())
                    .map_err(|errno| AttachError::Replace { iface: iface.to_owned(), errno })?;
                dir.record_program(ours, &link);
                ProbeProgram::remove_others(&config, &maps, &dir.probes_dir());
                prog
            }
            None => match kept {
                Some(fd) => fd,
                None => link.prog().map_err(|errno| Error::Sys { call: "bpf_link_get_info_by_fd", errno })?,
            },
        };
        let info = Attachment { iface: iface.to_owned(), ifindex, mode: attached.mode };
        let loaded = started.elapsed();
        let fib = match rib {
            Ok((rib, table, Some(scope))) => {
                let (pins, state_dir) = (dir.pins().to_owned(), dir.state_dir().to_owned());
                let whole: crate::fib::WholeLoader = Box::new(move || {
                    Store::open(&state_dir, true)
                        .map(|(recovered, store)| (recovered.rib, store))
                        .map_err(|e| state_error(e, &pins, &state_dir))
                });
                Fib::adopted_for(maps, config, rib, table, scope, whole)?
            }
            Ok((rib, table, None)) => Fib::adopted(maps, config, rib, table)?,
            Err(load) => Fib::adopted_lazily(maps, config, load)?,
        };
        fib.set_store(store);
        log::debug!("adopt: state read {read:?}, program and maps until {loaded:?}, FIB until {:?}", started.elapsed());
        if unfinished && options.read_only {
            log::warn!(
                "the dataplane on {iface} was left in the middle of a change: the kernel may differ from what \
                 `routes` shows until the next writer adopts it (`verify` lists the differences)"
            );
        } else if unfinished {
            // A process died between a change's first kernel write and its
            // commit: the kernel may hold part of a change never acknowledged.
            // The RIB is the truth, so the kernel is brought back to it. Only
            // then: a clean adoption reads no map.
            let repaired = fib.repair()?;
            log::warn!(
                "the dataplane on {iface} was left in the middle of a change: {} entries repaired to match the RIB",
                repaired.len()
            );
        }
        log::info!("adopted the dataplane pinned in {}", dir.pins().display());
        let enc = Encapsulator {
            fib,
            prog,
            attachment: Mutex::new(Some(Attached { info, link, pins: Some(dir), _owner: owner })),
            pin: Some(options.roots.clone()),
            allow_tso: false,
            netns: NetnsSockets::open(),
            probe: Mutex::new(None),
        };
        // Nothing follows the host's addresses between processes without an
        // agent: an address added since the attach was labelled and sent
        // away (and a removed one still handed to the host) until a re-attach.
        // Every writer brings them up to date; unchanged, this writes nothing.
        if !options.read_only {
            if let Err(e) = enc.refresh_local_addresses() {
                log::warn!("{iface}: the host's addresses could not be brought up to date: {e}");
            }
        }
        Ok(enc)
    }

    /// Whether a dataplane is pinned on `iface` in the calling thread's
    /// network namespace (under the default roots).
    ///
    /// # Errors
    /// [`PinError`] when the namespace cannot be read or the name is invalid.
    pub(crate) fn is_pinned(iface: &str) -> Result<bool, PinError> {
        PinDir::of(&PinRoots::default(), iface)?.exists()
    }
}

/// What a state that cannot be opened is, to its adopter: another format
/// (naming both builds), or damage.
fn state_error(e: OpenError, pins: &std::path::Path, state: &std::path::Path) -> PinError {
    match e {
        OpenError::Pin(e) => e,
        OpenError::Unreadable(Unreadable::Version(found, written_by)) => PinError::Incompatible {
            found,
            written_by,
            ours: store::FORMAT,
            ours_version: env!("CARGO_PKG_VERSION"),
            dir: pins.to_owned(),
        },
        OpenError::Unreadable(Unreadable::Invalid(reason)) => PinError::Corrupt { path: state.to_owned(), reason },
    }
}
