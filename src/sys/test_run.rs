//! BPF_PROG_TEST_RUN and the kernel's per-program run-time statistics.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use libbpf_rs::libbpf_sys;
use nix::errno::Errno;

use crate::error::TestRunError;

/// The verdict of an XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XdpAction {
    /// XDP_ABORTED: dropped, with a trace event.
    Aborted,
    /// XDP_DROP.
    Drop,
    /// XDP_PASS: to the host's stack.
    Pass,
    /// XDP_TX: back out of the receiving interface.
    Tx,
    /// XDP_REDIRECT.
    Redirect,
    /// Any other return value.
    Other(u32),
}

/// The verdict by its kernel name: `XDP_TX`, `XDP_PASS`, ... (`XDP_ACTION_7` for another value).
impl std::fmt::Display for XdpAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XdpAction::Aborted => f.write_str("XDP_ABORTED"),
            XdpAction::Drop => f.write_str("XDP_DROP"),
            XdpAction::Pass => f.write_str("XDP_PASS"),
            XdpAction::Tx => f.write_str("XDP_TX"),
            XdpAction::Redirect => f.write_str("XDP_REDIRECT"),
            XdpAction::Other(n) => write!(f, "XDP_ACTION_{n}"),
        }
    }
}

impl From<u32> for XdpAction {
    fn from(v: u32) -> Self {
        match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => XdpAction::Other(other),
        }
    }
}

/// What a program did to one frame under BPF_PROG_TEST_RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The program's verdict.
    pub action: XdpAction,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

/// Largest frame BPF_PROG_TEST_RUN takes for XDP (a page less headroom and
/// skb_shared_info, rounded down).
pub const MAX_TEST_FRAME: usize = 3500;

/// Room the program may add at the front (the deepest stack) plus slack.
const OUT_SLACK: usize = 4 * crate::abi::MAX_LABELS + 64;

fn run_opts() -> libbpf_sys::bpf_test_run_opts {
    // SAFETY: zeroed opts with `sz` set is how libbpf's OPTS are initialised.
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    opts
}

/// Runs `prog` once on `frame` in the calling thread's network namespace (its
/// loopback device is the ingress interface, so its MTU is the one checked).
pub(crate) fn test_run(prog: BorrowedFd<'_>, frame: &[u8]) -> Result<TestRun, TestRunError> {
    let (retval, frame) = run_once(prog, frame)?;
    Ok(TestRun { action: XdpAction::from(retval), frame })
}

/// As [`test_run`], for a TC program: the kernel builds an skb from `frame`
/// (eth_type_trans sets its protocol; a VLAN tag stays in the frame, as no
/// receive path took it off), and TC_ACT_UNSPEC or TC_ACT_OK (on to the
/// next program, or the stack) and TC_ACT_SHOT are reported as
/// [`XdpAction::Pass`] and [`XdpAction::Drop`].
pub(crate) fn test_run_skb(prog: BorrowedFd<'_>, frame: &[u8]) -> Result<TestRun, TestRunError> {
    let (retval, frame) = run_once(prog, frame)?;
    let action = match retval {
        u32::MAX | 0 => XdpAction::Pass,
        2 => XdpAction::Drop,
        other => XdpAction::Other(other),
    };
    Ok(TestRun { action, frame })
}

fn run_once(prog: BorrowedFd<'_>, frame: &[u8]) -> Result<(u32, Vec<u8>), TestRunError> {
    if frame.len() > MAX_TEST_FRAME {
        return Err(TestRunError::FrameTooLarge { len: frame.len(), max: MAX_TEST_FRAME });
    }
    let mut out = vec![0u8; frame.len() + OUT_SLACK];
    let mut opts = run_opts();
    opts.data_in = frame.as_ptr().cast();
    opts.data_size_in = frame.len() as u32;
    opts.data_out = out.as_mut_ptr().cast();
    opts.data_size_out = out.len() as u32;
    opts.repeat = 1;
    // SAFETY: the buffers outlive the call and their sizes are given.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc < 0 {
        return Err(TestRunError::Kernel(Errno::from_raw(-rc)));
    }
    out.truncate(opts.data_size_out as usize);
    Ok((opts.retval, out))
}

/// How often a program ran and how long it took in total, as the kernel
/// measures it while run-time statistics are on (see [`RunTimeStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunStats {
    /// Runs counted.
    pub runs: u64,
    /// Time spent inside the program, summed.
    pub run_time: Duration,
}

impl RunStats {
    /// The runs and time accumulated since `earlier`.
    pub fn since(&self, earlier: &RunStats) -> RunStats {
        RunStats {
            runs: self.runs.saturating_sub(earlier.runs),
            run_time: self.run_time.saturating_sub(earlier.run_time),
        }
    }

    /// Average time per run; `None` before any run.
    pub fn per_run(&self) -> Option<Duration> {
        let runs = u32::try_from(self.runs).ok().filter(|r| *r > 0)?;
        Some(self.run_time / runs)
    }
}

pub(crate) fn run_stats(prog: BorrowedFd<'_>) -> Result<RunStats, Errno> {
    // SAFETY: zeroed is a valid bpf_prog_info; the kernel fills up to `len` bytes.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info and len point to valid memory of the stated size.
    let rc = unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(
            prog.as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(Errno::from_raw(-rc));
    }
    Ok(RunStats { runs: info.run_cnt, run_time: Duration::from_nanos(info.run_time_ns) })
}

/// While this value lives, the kernel times every BPF program run
/// (BPF_ENABLE_STATS / BPF_STATS_RUN_TIME), for [`RunStats`]. It costs two
/// clock reads per run, for every program on the machine: turn it on to
/// measure, not permanently. Needs CAP_SYS_ADMIN.
#[derive(Debug)]
pub struct RunTimeStats {
    _fd: OwnedFd,
}

impl RunTimeStats {
    /// Turns run-time statistics on.
    ///
    /// # Errors
    /// The kernel's errno (EPERM without CAP_SYS_ADMIN).
    pub fn enable() -> Result<RunTimeStats, Errno> {
        // SAFETY: plain syscall wrapper.
        let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
        if fd < 0 {
            return Err(Errno::from_raw(-fd));
        }
        // SAFETY: a new fd owned by nobody else.
        Ok(RunTimeStats { _fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }
}
