//! Views on an [`Encapsulator`] that group the calls of one concept, like
//! aya's typed maps: [`Sources`] (the source prefixes that select alternate
//! tables) and [`Diagnostics`] (verify and repair, test runs, run time, map
//! memory, pins). Each borrows the encapsulator and dispatches to it; they
//! hold no state of their own.

use std::path::PathBuf;

use ipnetwork::IpNetwork;

use crate::diagnostics::{Difference, RunStats, TestRun};
use crate::encapsulator::Encapsulator;
use crate::error::{Error, MapError, RouteError, TestRunError};
use crate::routes::Table;

/// The source prefixes of an [`Encapsulator`] and the alternate tables they
/// select, from [`Encapsulator::sources`].
///
/// A packet whose source address falls in a source prefix (longest match)
/// uses that prefix's alternate table: its route for the destination if it
/// has one, else the main table's.
///
/// ```no_run
/// // Not run: needs root (it loads the dataplane).
/// use lnetd_host_encap::{Encapsulator, Route, Table};
/// let enc = Encapsulator::builder().load()?;
/// let premium = Table::alternate(5).ok_or("table 0")?;
/// enc.set_route(premium, &Route::new("198.51.100.0/24".parse()?, "17001".parse()?))?;
/// enc.sources().set("10.0.0.0/8".parse()?, premium)?;
/// assert_eq!(enc.sources().list(), vec![("10.0.0.0/8".parse()?, premium)]);
/// assert!(enc.sources().remove("10.0.0.0/8".parse()?)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub(crate) enc: &'a Encapsulator,
}

impl Sources<'_> {
    /// Sends packets whose source address falls in `prefix` through
    /// alternate `table`. Replaces any table `prefix` selected.
    ///
    /// # Errors
    /// [`RouteError::Prefix`]; [`RouteError::TableFull`]; [`RouteError::Map`].
    pub fn set(&self, prefix: IpNetwork, table: Table) -> Result<(), RouteError> {
        self.enc.set_source(prefix, table)
    }

    /// Stops selecting a table by `prefix`; `Ok(false)` when it selected none.
    ///
    /// # Errors
    /// [`RouteError::Prefix`]; [`RouteError::Map`].
    pub fn remove(&self, prefix: IpNetwork) -> Result<bool, RouteError> {
        self.enc.remove_source(prefix)
    }

    /// The source prefixes and the tables they select.
    pub fn list(&self) -> Vec<(IpNetwork, Table)> {
        self.enc.source_list()
    }
}

/// The diagnostics of an [`Encapsulator`], from
/// [`Encapsulator::diagnostics`]: the checks and measurements an operator or
/// a test runs, beside [`Encapsulator::explain`].
///
/// ```no_run
/// // Not run: needs root and a dataplane pinned on eth1.
/// use lnetd_host_encap::Encapsulator;
/// let enc = Encapsulator::open("eth1")?;
/// let diag = enc.diagnostics();
/// assert!(diag.verify()?.is_empty(), "the kernel's tables match the bookkeeping");
/// for (map, bytes) in diag.map_memory()? {
///     println!("{map}: {bytes} bytes");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Diagnostics<'a> {
    pub(crate) enc: &'a Encapsulator,
}

impl Diagnostics<'_> {
    /// How many routes there are, every table (routes set aside by a host
    /// address included): what `status` counts, read from the RIB without
    /// copying a route.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let enc = lnetd_host_encap::encap::AdoptOptions::default().open("eth1")?;
    /// println!("{} routes", enc.diagnostics().route_count());
    /// # Ok(()) }
    /// ```
    pub fn route_count(&self) -> usize {
        self.enc.route_count()
    }

    /// The routes counted by table and by the origin the RIB records for
    /// each (`static`, `agent`, `bgp`; set-aside routes count in the main
    /// table): what `status` shows, with an agent or without. One pass over
    /// the routes and one over the recorded origins under the RIB's lock,
    /// nothing allocated per route: tens of milliseconds at a million.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let enc = lnetd_host_encap::encap::AdoptOptions::default().open("eth1")?;
    /// let counts = enc.diagnostics().route_counts();
    /// println!("{} routes, {:?} from the agent", counts.total, counts.by_origin.get("agent"));
    /// # Ok(()) }
    /// ```
    pub fn route_counts(&self) -> crate::diagnostics::RouteCounts {
        let counted = self.enc.route_counts();
        crate::diagnostics::RouteCounts {
            total: counted.total,
            by_table: counted.by_table,
            by_origin: counted.by_origin.into_iter().map(|(o, n)| (o.to_string(), n)).collect(),
        }
    }

    /// Host mode's on-link rule as the attached dataplane applies it:
    /// `Some(false)` when what the host sends to an on-link neighbour (a
    /// kernel route with no gateway) leaves unlabelled, the default;
    /// `Some(true)` when it is labelled like any destination the tables
    /// cover ([`crate::encap::EncapsulatorBuilder::label_on_link`], or a
    /// kernel without the kfuncs that read the route). `None` unless
    /// attached to tcx egress: an XDP program has no kernel route to read.
    pub fn labels_on_link(&self) -> Option<bool> {
        let program = crate::dataplane::Program::attached_as(self.enc.attachment()?.mode);
        (program == crate::dataplane::Program::TcEgress)
            .then(|| !crate::dataplane::passes_on_link(self.enc.fib.config(), program))
    }

    /// Compares the kernel's maps with the RIB (what this library programmed)
    /// and returns every difference; empty when the dataplane does exactly
    /// what the RIB says. A difference means something else wrote the maps,
    /// or a process died between a kernel write and saving its state.
    ///
    /// # Errors
    /// [`MapError`] when a map cannot be read.
    pub fn verify(&self) -> Result<Vec<Difference>, MapError> {
        self.enc.verify()
    }

    /// Makes the kernel's maps agree with the RIB again and returns what
    /// differed (empty: nothing to do). [`Encapsulator::open`] does it on
    /// adoption.
    ///
    /// # Errors
    /// [`RouteError::Map`] when the kernel refuses a write;
    /// [`RouteError::ReadOnly`] on a read-only handle.
    pub fn repair(&self) -> Result<Vec<Difference>, RouteError> {
        self.enc.repair()
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN, without any
    /// interface. Unlike [`Encapsulator::explain`], the dataplane's counters
    /// count it. The MTU checked is that of the calling thread's network
    /// namespace's loopback device.
    ///
    /// # Errors
    /// [`TestRunError::FrameTooLarge`] above
    /// [`MAX_TEST_FRAME`](crate::diagnostics::MAX_TEST_FRAME) bytes, or
    /// [`TestRunError::Kernel`].
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun, TestRunError> {
        self.enc.test_run(frame)
    }

    /// How often the program ran and the time it spent, as the kernel counts
    /// it while [`RunTimeStats`](crate::diagnostics::RunTimeStats) (or
    /// `sysctl kernel.bpf_stats_enabled`) is on; zeros otherwise.
    ///
    /// # Errors
    /// The kernel's errno when the program info cannot be read.
    pub fn run_stats(&self) -> Result<RunStats, Error> {
        self.enc.run_stats()
    }

    /// The kernel memory of every map of this dataplane, by map name, in
    /// bytes.
    ///
    /// # Errors
    /// [`MapError`] when a map's fdinfo cannot be read.
    pub fn map_memory(&self) -> Result<Vec<(&'static str, u64)>, MapError> {
        self.enc.map_memory()
    }

    /// Where this encapsulator's pins are (bpffs), if it is pinned.
    pub fn pin_dir(&self) -> Option<PathBuf> {
        self.enc.pin_dir()
    }
}
