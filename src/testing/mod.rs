//! Helper programs for labs and benchmarks (not for production paths).

pub mod generator;
pub mod lab;
pub mod observer;

pub use crate::rib::store::bench::StoreBench;

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::abi::testing::{TestingSkel, TestingSkelBuilder};
use crate::domain::config::XdpMode;
use crate::error::{AttachError, LoadError, TestRunError};
use crate::sys::link::{self, BpfLink};
use crate::sys::test_run::{self, RunStats, TestRun};

/// Loads the testing object and takes what `pick` wants of it (program and
/// map fds, which outlive the skeleton); the rest closes with the skeleton.
fn load<T>(pick: impl FnOnce(&TestingSkel<'_>) -> Result<T, LoadError>) -> Result<T, LoadError> {
    if let Some(missing) = crate::sys::privileges::missing() {
        return Err(LoadError::Privileges(missing));
    }
    crate::sys::libbpf_log::route();
    let mut storage = MaybeUninit::uninit();
    let open = TestingSkelBuilder::default()
        .open(&mut storage)
        .map_err(|source| LoadError::Kernel { step: "opening the testing object", source })?;
    let skel = open.load().map_err(|source| LoadError::Kernel { step: "loading the testing object", source })?;
    pick(&skel)
}

/// A new fd for a program or map of the testing object, which outlives the skeleton.
fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd, LoadError> {
    fd.try_clone_to_owned().map_err(|e| LoadError::Kernel { step: "duplicating a program fd", source: e.into() })
}

/// One program of the testing object, by a new fd.
fn load_prog(pick: for<'a, 'b> fn(&'a TestingSkel<'b>) -> BorrowedFd<'a>) -> Result<OwnedFd, LoadError> {
    load(|s| dup(pick(s)))
}

/// An `XDP_PASS` program attached to an interface while this value lives.
///
/// A veth delivers frames sent into it with XDP_TX or a redirect only when its
/// PEER runs an XDP program; attach this to the peer of the interface that runs
/// the encapsulator in native mode.
#[derive(Debug)]
pub struct PassProgram {
    _prog: OwnedFd,
    _link: BpfLink,
}

impl PassProgram {
    /// Loads the program and attaches it natively (generic as a fallback) to
    /// `iface` in the calling thread's network namespace.
    ///
    /// # Errors
    /// [`crate::Error::Load`] or [`crate::Error::Attach`].
    pub fn attach(iface: &str) -> Result<PassProgram, crate::Error> {
        let prog = load_prog(|s| s.progs.xdp_pass.as_fd())?;
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        let (link, _) = link::attach(prog.as_fd(), ifindex, XdpMode::Auto).map_err(|tried| {
            AttachError::ModeUnsupported { iface: iface.to_owned(), mode: XdpMode::Auto, tried, hint: "see dmesg" }
        })?;
        Ok(PassProgram { _prog: prog, _link: link })
    }
}

/// A baseline for benchmarks, run only through BPF_PROG_TEST_RUN.
#[derive(Debug)]
pub struct BaselineProgram {
    prog: OwnedFd,
}

impl BaselineProgram {
    /// The encapsulator's fixed costs without its work: the same parser, a MAC
    /// swap and XDP_TX; no lookup, no push, no counter. The encapsulator's time
    /// over this one's is what the encapsulation costs.
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn floor() -> Result<BaselineProgram, LoadError> {
        Ok(BaselineProgram { prog: load_prog(|s| s.progs.xdp_floor.as_fd())? })
    }

    /// The floor plus the least any encapsulator does: room for one label
    /// stack entry (`bpf_xdp_adjust_head`), the L2 header moved to the new
    /// front, one constant label (16, S=1, the IP TTL); no lookup, MTU check
    /// or counter. Untagged frames only. Its time over the floor's is a lower
    /// bound for what encapsulation can cost on this hook.
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn min_push() -> Result<BaselineProgram, LoadError> {
        Ok(BaselineProgram { prog: load_prog(|s| s.progs.xdp_min_push.as_fd())? })
    }

    /// A program that only returns XDP_PASS: what the measurement itself costs
    /// (the kernel's two clock reads around every timed run).
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn empty() -> Result<BaselineProgram, LoadError> {
        Ok(BaselineProgram { prog: load_prog(|s| s.progs.xdp_pass.as_fd())? })
    }

    /// Attaches the program to `iface` of the calling thread's network
    /// namespace, in `mode` (native then generic for [`XdpMode::Auto`]),
    /// until the returned value is dropped: the floor as the program under
    /// test of a rate measurement on the wire.
    ///
    /// # Errors
    /// [`crate::Error::Attach`].
    pub fn attach(&self, iface: &str, mode: XdpMode) -> Result<Attached, crate::Error> {
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        let (link, _) = link::attach(self.prog.as_fd(), ifindex, mode).map_err(|tried| {
            AttachError::ModeUnsupported { iface: iface.to_owned(), mode, tried, hint: "see dmesg" }
        })?;
        Ok(Attached { _link: link })
    }

    /// As [`crate::diagnostics::Diagnostics::test_run`].
    ///
    /// # Errors
    /// [`TestRunError`].
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun, TestRunError> {
        test_run::test_run(self.prog.as_fd(), frame)
    }

    /// As [`crate::diagnostics::Diagnostics::run_stats`].
    ///
    /// # Errors
    /// [`crate::Error::Sys`].
    pub fn run_stats(&self) -> Result<RunStats, crate::Error> {
        test_run::run_stats(self.prog.as_fd())
            .map_err(|errno| crate::Error::Sys { call: "bpf_prog_get_info_by_fd", errno })
    }
}

/// A [`BaselineProgram`] attached to an interface; detached on drop.
#[derive(Debug)]
pub struct Attached {
    _link: BpfLink,
}

/// Whether this kernel lets the encapsulator read its device's MTU in place
/// (it has bpf_cast_to_kern_ctx, Linux 6.2+; what every encapsulator the
/// library loads then does) rather than through bpf_check_mtu. A benchmark
/// variant built with [`stages::MTU_IN_PLACE`] calls the helper regardless.
pub fn mtu_read_in_place() -> bool {
    crate::sys::kernel_btf::has_cast_to_kern_ctx()
}

/// Removes whatever is pinned for `iface` in the calling thread's network
/// namespace under `roots` (pins and state file), attached or not: the
/// cleanup of tests that pin, run even when they fail.
///
/// # Errors
/// [`crate::errors::PinError`] when the directories cannot be removed.
pub fn remove_pins(roots: &crate::pins::PinRoots, iface: &str) -> Result<(), crate::errors::PinError> {
    crate::dataplane::pins::PinDir::of(roots, iface)?.remove()
}

/// Writes one entry of one of `enc`'s maps by name, bypassing the RIB: what
/// another process writing the maps would do, for tests of `verify` and
/// `repair`.
///
/// # Errors
/// [`crate::errors::MapError`]: no such map (ENOENT) or the kernel refused the write.
pub fn write_map_entry(
    enc: &crate::Encapsulator,
    map: &str,
    key: &[u8],
    value: &[u8],
) -> Result<(), crate::errors::MapError> {
    map_by_name(enc, map)?.update(key, value)
}

/// Deletes one entry of one of `enc`'s maps by name, bypassing the RIB (and
/// the route cache's invalidation): what another process would do.
///
/// # Errors
/// [`crate::errors::MapError`]: no such map or entry (ENOENT), or the kernel refused.
pub fn delete_map_entry(enc: &crate::Encapsulator, map: &str, key: &[u8]) -> Result<(), crate::errors::MapError> {
    let found = map_by_name(enc, map)?;
    match found.delete(key)? {
        true => Ok(()),
        false => Err(crate::errors::MapError { map: found.name(), op: "delete", errno: nix::errno::Errno::ENOENT }),
    }
}

/// One map entry's key and value bytes.
pub type MapEntry = (Vec<u8>, Vec<u8>);

/// Every entry (key, value) of one of `enc`'s hash or LPM maps by name:
/// what a test compares before and after a change to prove what it wrote.
///
/// # Errors
/// [`crate::errors::MapError`]: no such map (ENOENT) or the kernel refused a read.
pub fn map_entries(enc: &crate::Encapsulator, map: &str) -> Result<Vec<MapEntry>, crate::errors::MapError> {
    use crate::fib::table::RouteTable;
    map_by_name(enc, map)?.entries()
}

fn map_by_name<'a>(
    enc: &'a crate::Encapsulator,
    map: &str,
) -> Result<&'a crate::sys::map::BpfMap, crate::errors::MapError> {
    enc.fib.maps().all().into_iter().find(|m| m.name() == map).ok_or(crate::errors::MapError {
        map: "unknown",
        op: "lookup by name",
        errno: nix::errno::Errno::ENOENT,
    })
}

/// Stages a benchmark variant of the encapsulator leaves out
/// ([`crate::encap::EncapsulatorBuilder::skip_stages`]); a stage's cost is the full
/// program's time minus the variant's.
pub mod stages {
    use crate::abi::types::encap_skip;

    /// The route lookup (the variant reads the first DIR-24-8 route value directly).
    pub const LOOKUP: u32 = encap_skip::ENCAP_SKIP_LOOKUP.0;
    /// The MTU check.
    pub const MTU: u32 = encap_skip::ENCAP_SKIP_MTU.0;
    /// Growing the frame and pushing the stack (the frame goes back with its MACs swapped).
    pub const PUSH: u32 = encap_skip::ENCAP_SKIP_PUSH.0;
    /// Every counter update.
    pub const COUNTERS: u32 = encap_skip::ENCAP_SKIP_COUNTERS.0;
    /// Answers from the route cache: every packet looks its route up and
    /// fills the cache, the cost of a miss.
    pub const CACHE_HIT: u32 = encap_skip::ENCAP_SKIP_CACHE_HIT.0;
    /// Reading the device's MTU in place: the variant asks bpf_check_mtu for
    /// it, as on kernels without bpf_cast_to_kern_ctx (before 6.2).
    pub const MTU_IN_PLACE: u32 = encap_skip::ENCAP_SKIP_MTU_IN_PLACE.0;
}
