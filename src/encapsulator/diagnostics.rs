//! What an encapsulator says about itself beyond its routes: where it is
//! pinned, its maps and their memory, `verify` and `repair`, `explain`,
//! and test runs of its program.

use super::*;
use crate::sys::rtnetlink::L4;

impl Encapsulator {
    /// Where this encapsulator's pins are, if it is pinned.
    pub(crate) fn pin_dir(&self) -> Option<std::path::PathBuf> {
        self.attached().as_ref().and_then(|a| a.pins.as_ref()).map(|d| d.pins().to_owned())
    }

    /// Where probe copies of the program are pinned, if this encapsulator is.
    fn probe_pins(&self) -> Option<ProbePins> {
        let attached = self.attached();
        let dir = attached.as_ref().and_then(|a| a.pins.as_ref())?;
        Some(ProbePins { probes: dir.probes_dir(), lock: dir.probe_lock() })
    }

    /// The routes (set-aside ones in the main table) counted by table and by
    /// the origin the RIB records for them: what the agent's `status` shows.
    /// One pass over the routes and one over the recorded origins, under the
    /// RIB's lock, allocating nothing per route (a million routes: tens of
    /// milliseconds, where asking each route's origin took most of a second).
    pub(crate) fn route_counts(&self) -> crate::rib::origins::Counted {
        self.fib.read(crate::rib::origins::Counted::of)
    }

    /// Kernel map ids of the IPv4 main table, the IPv4 alternate tables and
    /// the IPv4 source table: the ids the proof of concept's protocol names
    /// its tables by (`bpftool map show` lists them).
    #[cfg(feature = "agent")]
    pub(crate) fn table_map_ids(&self) -> Result<[u32; 3], MapError> {
        let m = self.fib.maps();
        Ok([m.routes_v4.id()?, m.alt_routes_v4.id()?, m.sources_v4.id()?])
    }

    /// Compares the kernel's maps with the RIB (what this library programmed)
    /// and returns every difference; empty when the dataplane does exactly
    /// what the RIB says. A difference means something else wrote the maps,
    /// or a process died between a kernel write and saving its state.
    ///
    /// # Errors
    /// [`MapError`] when a map cannot be read.
    pub(crate) fn verify(&self) -> Result<Vec<Difference>, MapError> {
        self.fib.verify()
    }

    /// Makes the kernel's maps agree with the RIB again and returns what
    /// differed (empty: nothing to do). [`Encapsulator::open`] does it on
    /// adoption, since a process killed between a kernel write and saving
    /// its state leaves the kernel one unacknowledged change ahead.
    ///
    /// # Errors
    /// [`RouteError::Map`] when the kernel refuses a write;
    /// [`RouteError::ReadOnly`] on a read-only handle.
    pub(crate) fn repair(&self) -> Result<Vec<Difference>, RouteError> {
        self.fib.repair()
    }

    /// The kernel memory of every map of this dataplane, by map name, in
    /// bytes (what each map allocated: fixed for arrays, per entry present
    /// for LPM tries and hash maps).
    ///
    /// # Errors
    /// [`MapError`] when a map's fdinfo cannot be read.
    pub(crate) fn map_memory(&self) -> Result<Vec<(&'static str, u64)>, MapError> {
        self.fib.maps().all().into_iter().map(|m| Ok((m.name(), m.memory()?))).collect()
    }

    /// What the dataplane does with `probe`: the real program runs on a
    /// frame built from it (BPF_PROG_TEST_RUN) and the answer says the
    /// verdict, the route and segment list chosen and the stack pushed. Like
    /// `ip route get`, for labels.
    ///
    /// Probes are not counted: no counter of [`Encapsulator::stats`] or
    /// [`Encapsulator::route_counters`] moves. They run in a copy of the
    /// program that shares the dataplane's tables but has counters of its
    /// own, loaded at the first call (one more verifier pass; held until
    /// the encapsulator is dropped, and pinned beside a pinned dataplane for
    /// the next process); probes are serialised, across processes too.
    ///
    /// On tcx egress the program also reads the route the kernel attached
    /// to the packet, which a probe has none of: for an answer past that
    /// stage (labelled, or dropped by the policy or the MTU) the kernel is
    /// asked for the route to the destination (RTM_GETROUTE, from the
    /// probe's source when it has one, as `ip route get DST [from SRC]`),
    /// in the namespace the dataplane was
    /// attached or adopted in. A route out of this interface with no
    /// gateway makes the answer `local`, unlabelled, as the program does
    /// unless [`crate::encap::EncapsulatorBuilder::label_on_link`]. When the
    /// kernel cannot answer (no route, no socket), the tables' answer
    /// stands, logged at debug level.
    ///
    /// ```no_run
    /// use lnetd_host_encap::{Encapsulator, diagnostics::Probe};
    /// let enc = Encapsulator::open("eth1")?;
    /// println!("{}", enc.explain(&Probe::to("198.51.100.7".parse().unwrap()))?);
    /// # Ok::<(), lnetd_host_encap::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`TestRunError`] when the program cannot be run; [`RouteError::Invalid`]
    /// for a probe that cannot be built (mixed families, DSCP above 63);
    /// [`LoadError`] when the probe copy cannot be loaded.
    pub fn explain(&self, probe: &Probe) -> Result<Explanation, Error> {
        let frame = probe.frame().map_err(|reason| {
            RouteError::Invalid(crate::domain::desired::DesiredError { what: "probe".into(), reason })
        })?;
        let mut slot = self.probe.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let program = match slot.take() {
            Some(program) => program,
            None => match self.probe_pins() {
                Some(pins) => ProbeProgram::open_or_load(self.fib.config(), self.fib.maps(), &pins)?,
                None => ProbeProgram::load(self.fib.config(), self.fib.maps())?,
            },
        };
        let ran = program.run(&frame);
        *slot = Some(program);
        drop(slot);
        let (run, moved) = ran?;
        let (route, fallback) =
            self.fib.read_covering(&[probe.dst], |rib| match rib.lookup(probe.source(), probe.dst) {
                Lookup::Route(table, route) => (Some((table, route.into_owned())), "no_route"),
                Lookup::Local => (None, "local"),
                Lookup::NoRoute => (None, "no_route"),
            });
        let stack = explain::pushed_stack(&run.frame);
        // The probe copy's counter says why; only if it moved none (never
        // expected) do the verdict and the RIB decide.
        let counted: Vec<&'static str> = moved.named().iter().filter(|(_, c)| c.packets > 0).map(|(n, _)| *n).collect();
        let outcome = match (counted.as_slice(), run.action) {
            ([one], _) => one,
            (_, XdpAction::Tx) => "labelled",
            (_, XdpAction::Aborted) => "aborted",
            _ if probe.dst.is_multicast() => "multicast",
            _ => fallback,
        };
        let list = route.as_ref().and_then(|(_, r)| explain::list_of(r, &stack));
        let attachment = self.attachment();
        let egress = attachment.as_ref().is_some_and(|a| a.mode == AttachedMode::Egress);
        let explanation = Explanation { action: run.action, outcome, route, list, stack, egress };
        // The interface whose program applies the on-link rule, if it does.
        let on_link = attachment
            .filter(|a| dataplane::passes_on_link(self.fib.config(), Program::attached_as(a.mode)))
            .map(|a| a.ifindex);
        Ok(match on_link {
            Some(ifindex) => self.on_link_rule(probe, ifindex, explanation),
            None => explanation,
        })
    }

    /// On tcx egress the program reads the route the kernel attached to the
    /// packet, which a probe run has none of: a destination the tables
    /// label but the kernel hands to an on-link neighbour leaves
    /// unlabelled, counted in `local`. The kernel is asked for that route
    /// (as `ip route get` does) in the namespace of `ifindex`, the
    /// interface the program runs on.
    fn on_link_rule(&self, probe: &Probe, ifindex: u32, explanation: Explanation) -> Explanation {
        // The outcomes the program reaches past its on-link stage (after the
        // route lookup, before the policy, the MTU and the push); local and
        // multicast are decided before it.
        const PAST_THE_ON_LINK_STAGE: [&str; 6] =
            ["labelled", "no_route", "no_live_path_dropped", "mtu_passed", "mtu_dropped", "no_headroom"];
        if explanation.route.is_none() || !PAST_THE_ON_LINK_STAGE.contains(&explanation.outcome) {
            return explanation;
        }
        let mut routes = self.netns.routes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sock) = routes.as_mut() else { return explanation };
        // The probe's source, when given, for source-based rules, and its
        // transport and ports, for a multipath route that hashes on them;
        // what the kernel refuses (a source not the host's, say; a
        // transport an old kernel does not know) is left out in turn.
        let l4 = Some(L4 { protocol: probe.ip_protocol(), ports: probe.ports() });
        let mut asked = Err(Errno::EINVAL);
        let tries = [(probe.src, l4), (probe.src, None), (None, l4), (None, None)];
        for (n, (src, l4)) in tries.iter().enumerate() {
            // Without a source the second and third tries repeat others.
            if tries.get(..n).is_some_and(|before| before.contains(&(*src, *l4))) {
                continue;
            }
            asked = sock.route_to(probe.dst, *src, *l4);
            if !matches!(asked, Err(Errno::EINVAL | Errno::EOPNOTSUPP)) {
                break;
            }
        }
        drop(routes);
        let kernel = match asked {
            Ok(route) => route,
            Err(errno) => {
                log::debug!("explain: the kernel's route to {}: {errno}; the tables' answer stands", probe.dst);
                return explanation;
            }
        };
        // A route out of another interface never meets this program (a
        // VLAN or bond above it is another interface too: see host-mode.md).
        if !kernel.unicast || kernel.gateway || kernel.oif != Some(ifindex) {
            return explanation;
        }
        Explanation { action: XdpAction::Pass, outcome: "local", list: None, stack: Vec::new(), ..explanation }
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN, without any
    /// interface: for tests of what a configuration does to a given frame. The
    /// counters count it. The MTU checked is that of the calling thread's
    /// network namespace's loopback device.
    ///
    /// # Errors
    /// [`TestRunError::FrameTooLarge`] above [`crate::diagnostics::MAX_TEST_FRAME`] bytes, or
    /// [`TestRunError::Kernel`].
    pub(crate) fn test_run(&self, frame: &[u8]) -> Result<TestRun, TestRunError> {
        test_run::test_run(self.prog.as_fd(), frame)
    }

    /// How often the program ran and the time it spent, as the kernel counts
    /// it while [`crate::diagnostics::RunTimeStats`] (or `sysctl kernel.bpf_stats_enabled`)
    /// is on; zeros otherwise. Test runs count too, which is how the
    /// benchmarks time the program alone, without the syscall around it.
    ///
    /// # Errors
    /// The kernel's errno when the program info cannot be read.
    pub(crate) fn run_stats(&self) -> Result<RunStats, Error> {
        test_run::run_stats(self.prog.as_fd()).map_err(|errno| Error::Sys { call: "bpf_prog_get_info_by_fd", errno })
    }
}
