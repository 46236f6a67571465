//! The probes through XDP live frames: BPF_PROG_TEST_RUN with
//! `BPF_F_TEST_XDP_LIVE_FRAMES` (Linux 5.18+) runs `src/bpf/sbfd.bpf.c`
//! once per due probe over page-pool frames, and each run's XDP_TX leaves
//! by the interface's `ndo_xdp_xmit`: no skb per probe, no copy from user
//! space per probe, one system call per tick. The prebuilt frames, the due
//! list and the control word are BPF_F_MMAPABLE arrays written with plain
//! stores.
//!
//! Two kernel facts shape it (net/bpf/test_run.c, kernel/bpf/dispatcher.c):
//! - A call with `repeat > 1` adds the program to the kernel's XDP
//!   dispatcher for the call and takes it out after; each change of the
//!   dispatcher rebuilds its trampoline and waits for an RCU grace period:
//!   about 32 ms and 0.4 ms of CPU per call, measured here (against 7 µs for
//!   the rest of a call). A program that is attached somewhere stays in the
//!   dispatcher and the calls skip both. So the program is also attached, in
//!   generic mode, to the loopback of a private network namespace that
//!   nobody uses (it is down, no frame ever reaches it) and that disappears
//!   with this value.
//! - Pages are recycled without their bytes being restored (only the
//!   pointers and the length): the program writes each frame whole.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::MapCore;
use nix::errno::Errno;

use super::answers::AnswerTable;
use crate::error::MapError;
use crate::sys::link::{self, BpfLink};
use crate::sys::map::BpfMap;
use crate::sys::mmap::MappedArray;
use crate::XdpMode;

use crate::abi::sbfd::types::{sbfd_control, sbfd_template};
use crate::abi::sbfd::SbfdSkelBuilder;

/// Longest frame a template holds (`SBFD_TX_FRAME_MAX`).
pub(super) const FRAME_MAX: usize = std::mem::size_of::<sbfd_template>() - 4;
const _: () = assert!(std::mem::offset_of!(sbfd_template, bytes) == 4);
const _: () = assert!(std::mem::size_of::<sbfd_control>() == 16);
/// How much of a template to bring into the caches before a call: the
/// length word and a probe of up to 124 bytes (IPv4 with up to 10 labels,
/// IPv6 with up to 5), the common ones.
const PREFETCH: usize = 128;
/// Word offsets in `sbfd_control`.
const CURSOR: usize = 0;
const COUNT: usize = 4;
const ERRORS: usize = 8;

/// Why the live-frame transmitter cannot run (the engine then sends through
/// its socket, and logs this).
#[derive(Debug, thiserror::Error)]
pub(super) enum LiveFramesError {
    /// libbpf or the kernel refused the program.
    #[error("loading the S-BFD transmitter ({step}): {source}")]
    Load {
        /// What was being done.
        step: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A map could not be taken over or mapped.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The private namespace that keeps the program in the XDP dispatcher.
    #[error("keeping the S-BFD transmitter in the XDP dispatcher ({step}): {errno}")]
    Keeper {
        /// Which step.
        step: &'static str,
        /// The errno.
        errno: Errno,
    },
}

/// The program, its maps mapped, and what keeps it in the dispatcher.
pub(super) struct XdpTx {
    prog: OwnedFd,
    templates: MappedArray,
    due: MappedArray,
    control: MappedArray,
    slots: usize,
    ifindex: u32,
    /// What fresh live frames are initialised with (the program overwrites it).
    input: Vec<u8>,
    errors_seen: u32,
    _maps: [BpfMap; 3],
    _keeper: Keeper,
}

impl std::fmt::Debug for XdpTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpTx").field("ifindex", &self.ifindex).field("slots", &self.slots).finish_non_exhaustive()
    }
}

impl XdpTx {
    /// Loads the transmitter for `ifindex`, with room for `slots` probes,
    /// and the answer filter of the same object.
    ///
    /// # Errors
    /// [`LiveFramesError`]: no CAP_BPF/CAP_SYS_ADMIN, a kernel without
    /// mmapable arrays or the helpers (5.18+), no private namespace.
    pub(super) fn open(ifindex: u32, slots: usize) -> Result<(XdpTx, AnswerTable), LiveFramesError> {
        crate::sys::libbpf_log::route();
        let slots = slots.clamp(1, 1 << 20);
        let mut storage = MaybeUninit::uninit();
        let mut open = SbfdSkelBuilder::default()
            .open(&mut storage)
            .map_err(|source| LiveFramesError::Load { step: "open", source })?;
        if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
            rodata.sbfd_ifindex = ifindex;
        }
        for map in [&mut open.maps.sbfd_templates, &mut open.maps.sbfd_due] {
            map.set_max_entries(slots as u32).map_err(|source| LiveFramesError::Load { step: "size", source })?;
        }
        let skel = open.load().map_err(|source| LiveFramesError::Load { step: "load", source })?;
        let maps = [
            BpfMap::new(&skel.maps.sbfd_templates, "sbfd_templates")?,
            BpfMap::new(&skel.maps.sbfd_due, "sbfd_due")?,
            BpfMap::new(&skel.maps.sbfd_control, "sbfd_control")?,
        ];
        let prog = skel
            .progs
            .xdp_sbfd_tx
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| LiveFramesError::Keeper { step: "dup", errno: errno_of(&e) })?;
        let templates = MappedArray::new(&maps[0], slots, std::mem::size_of::<sbfd_template>())?;
        let due = MappedArray::new(&maps[1], slots, 4)?;
        let control = MappedArray::new(&maps[2], 1, std::mem::size_of::<sbfd_control>())?;
        let keeper = Keeper::attach(prog.as_fd())?;
        let filter = skel
            .progs
            .sbfd_answer_filter
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| LiveFramesError::Keeper { step: "dup", errno: errno_of(&e) })?;
        let answers = AnswerTable::new(
            filter,
            (
                BpfMap::new(&skel.maps.sbfd_answers, "sbfd_answers")?,
                BpfMap::new(&skel.maps.sbfd_control, "sbfd_control")?,
                BpfMap::new(&skel.maps.sbfd_answered, "sbfd_answered")?,
            ),
            skel.maps.sbfd_answers.max_entries() as usize,
        )?;
        let tx = XdpTx {
            prog,
            templates,
            due,
            control,
            slots,
            ifindex,
            input: vec![0; FRAME_MAX],
            errors_seen: 0,
            _maps: maps,
            _keeper: keeper,
        };
        Ok((tx, answers))
    }

    /// How many probes it holds.
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// Sets probe `slot`'s frame; false when the slot or the frame is too
    /// large (that probe must go through the socket).
    pub(super) fn set(&self, slot: usize, frame: &[u8]) -> bool {
        if slot >= self.slots || frame.len() > FRAME_MAX {
            return false;
        }
        let mut value = [0u8; std::mem::size_of::<sbfd_template>()];
        value[..4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        for (to, from) in value.iter_mut().skip(4).zip(frame) {
            *to = *from;
        }
        // Only this thread writes the templates and runs the program, and
        // never both at once: no run reads a template being written.
        self.templates.write_bytes(slot, &value)
    }

    /// Sends the probes of `slots` (each set with [`XdpTx::set`]), in one
    /// call. Returns how many left and how many the program refused.
    ///
    /// # Errors
    /// The errno of the call (EINTR: a signal cut it short).
    pub(super) fn send(&mut self, slots: &[u32]) -> Result<(usize, usize), Errno> {
        let n = slots.len().min(self.slots);
        for (k, slot) in slots.iter().take(n).enumerate() {
            self.due.store_u32(k, 0, *slot);
            // The run's first read of its template was most of the
            // program's time, each a miss in turn (docs/liveness.md):
            // requested here together, they overlap.
            self.templates.prefetch(*slot as usize, PREFETCH);
        }
        self.control.store_u32(0, COUNT, n as u32);
        self.control.store_u32(0, CURSOR, 0);
        let mut ctx = libbpf_sys::xdp_md {
            data_end: self.input.len() as u32,
            ingress_ifindex: self.ifindex,
            ..Default::default()
        };
        // SAFETY: zeroed opts with `sz` set is how libbpf's OPTS are initialised.
        let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _;
        opts.data_in = self.input.as_ptr().cast();
        opts.data_size_in = self.input.len() as u32;
        opts.ctx_in = (&mut ctx as *mut libbpf_sys::xdp_md).cast();
        opts.ctx_size_in = std::mem::size_of::<libbpf_sys::xdp_md>() as u32;
        opts.repeat = n as i32;
        opts.flags = libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES;
        // SAFETY: data_in and ctx_in outlive the call and their sizes are
        // given; live-frame runs write no output buffers.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        let words = self.control.words();
        let word = |at: usize| words.get(at / 4).map_or(0, |w| w.load(std::sync::atomic::Ordering::Acquire));
        let ran = (word(CURSOR) as usize).min(n);
        let errors = word(ERRORS);
        let refused = errors.wrapping_sub(self.errors_seen) as usize;
        self.errors_seen = errors;
        if rc < 0 && ran == 0 {
            return Err(Errno::from_raw(-rc));
        }
        Ok((ran.saturating_sub(refused), refused))
    }
}

/// The program attached to the loopback of a private network namespace,
/// held by the namespace's fd: it keeps the program in the XDP dispatcher.
struct Keeper {
    _link: BpfLink,
    _netns: OwnedFd,
}

impl Keeper {
    fn attach(prog: BorrowedFd<'_>) -> Result<Keeper, LiveFramesError> {
        let prog =
            prog.try_clone_to_owned().map_err(|e| LiveFramesError::Keeper { step: "dup", errno: errno_of(&e) })?;
        // A thread of its own: unshare moves only the calling thread into
        // the new namespace, and this one ends right after.
        std::thread::scope(|s| {
            s.spawn(move || {
                let fail = |step| move |errno| LiveFramesError::Keeper { step, errno };
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(fail("unshare a network namespace"))?;
                let netns = std::fs::File::open("/proc/thread-self/ns/net")
                    .map_err(|e| LiveFramesError::Keeper { step: "open the namespace", errno: errno_of(&e) })?;
                let lo = nix::net::if_::if_nametoindex("lo").map_err(fail("find its loopback"))?;
                let (link, _) =
                    link::attach(prog.as_fd(), lo, XdpMode::Generic).map_err(|tried| LiveFramesError::Keeper {
                        step: "attach to its loopback",
                        errno: tried.first().map_or(Errno::EINVAL, |t| t.1),
                    })?;
                Ok(Keeper { _link: link, _netns: OwnedFd::from(netns) })
            })
            .join()
            .unwrap_or(Err(LiveFramesError::Keeper { step: "the namespace thread", errno: Errno::EINTR }))
        })
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}
