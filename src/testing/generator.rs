//! Packet rates on a veth pair: a generator that sends live frames out of an
//! interface from BPF_PROG_TEST_RUN, and a counter of the frames that come
//! back to it.
//!
//! ```text
//!  [ns A] Generator --XDP_TX--> veth A ======== veth B --> program under test (XDP_TX)
//!         ReturnCounter <-- XDP on veth A <======/
//! ```
//!
//! The generator runs the testing object's `xdp_generate` program with
//! `BPF_F_TEST_XDP_LIVE_FRAMES` (Linux 5.18+): the kernel builds real frames
//! from a page pool, runs the program on each, and transmits what it returns
//! XDP_TX for on the interface given as the context's ingress interface. The
//! program writes the next of the frames set with [`Generator::set_frames`]
//! over every live frame before sending it, because the page pool recycles
//! frames the far side has rewritten (a MAC swap, a label push) without
//! restoring their bytes. A veth delivers these frames only while its peer
//! runs an XDP program, and sends the peer's XDP_TX frames back only while it
//! runs one itself: [`ReturnCounter`] is that program on the generator's side.
//!
//! Some kernels refuse live frames even to root (EPERM; seen on a 6.18
//! build): [`Generator::live_frames`] tells. There the generator
//! recirculates instead ([`Generator::recirculate_on`]): its program sits
//! where the counter would, counts what comes back and sends it out again
//! as the next frame, so a few seed frames keep the pair busy.

#![allow(unsafe_code)]

use std::collections::HashSet;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use ipnetwork::IpNetwork;

use libbpf_rs::libbpf_sys;
use libbpf_rs::MapCore;
use nix::errno::Errno;

use crate::abi::testing::types::{gen_config, gen_frame, gen_patch, returned_counts};
use crate::abi::{bytes_of, from_bytes, zeroed, Pod};
use crate::domain::config::XdpMode;
use crate::error::{AttachError, LoadError, MapError};
use crate::sys::link::{self, BpfLink};
use crate::sys::map::BpfMap;

use super::dup;

// SAFETY: generated #[repr(C)] structs of integers (src/bpf/testing.bpf.c);
// the sizes asserted below equal the sum of their fields, so no padding.
unsafe impl Pod for gen_config {}
unsafe impl Pod for returned_counts {}

const _: () = {
    assert!(size_of::<gen_config>() == 5 * 4);
    assert!(size_of::<returned_counts>() == 8 + 8 + 4 + 4 + 8);
};

/// The generator could not be set up or could not send.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeneratorError {
    /// No frames were given, or more than the generator holds.
    #[error("the generator takes 1 to {max} frames, not {count}")]
    FrameCount {
        /// Frames given.
        count: usize,
        /// The most it holds.
        max: usize,
    },
    /// A frame is empty, longer than the generator's slots, or not as long as
    /// the first one (every live frame of a run has the same length).
    #[error("frame {index} is {len} bytes: frames must all be as long as the first ({first} bytes), at most {max}")]
    FrameLength {
        /// Which frame.
        index: usize,
        /// Its length.
        len: usize,
        /// The first frame's length.
        first: usize,
        /// The longest frame a slot holds.
        max: usize,
    },
    /// [`Generator::send`] before [`Generator::set_frames`].
    #[error("no frames to send: call set_frames first")]
    NoFrames,
    /// The interface does not exist in the calling thread's namespace.
    #[error("no interface named {iface:?} in this network namespace")]
    NoSuchInterface {
        /// The name.
        iface: String,
    },
    /// Writing the generator's maps failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The kernel refused the run (EINVAL before Linux 5.18, which has no
    /// live frames; EPERM without CAP_BPF / CAP_NET_ADMIN, or from a kernel
    /// that forbids live frames: then [`Generator::recirculate_on`]).
    #[error("BPF_PROG_TEST_RUN with live frames failed: {0}")]
    Kernel(Errno),
    /// [`Generator::start_recirculating`] before [`Generator::recirculate_on`].
    #[error("not recirculating: call recirculate_on first")]
    NotRecirculating,
    /// A seed frame could not be sent.
    #[error("sending a seed frame: {0}")]
    Seed(#[from] super::lab::LabError),
}

/// Sends live frames out of an interface with BPF_PROG_TEST_RUN (see the
/// module's documentation). Loading it needs CAP_BPF and CAP_NET_ADMIN.
#[derive(Debug)]
pub struct Generator {
    prog: OwnedFd,
    recirculate: OwnedFd,
    /// Drops every frame: [`Generator::live_frames`]'s probe.
    drop_prog: OwnedFd,
    frames: BpfMap,
    patches: BpfMap,
    config: BpfMap,
    /// What `config` holds (written whole: the frames and the switch).
    config_value: std::sync::Mutex<gen_config>,
    /// What came back where [`Generator::recirculate_on`] attached.
    returned: BpfMap,
    /// The recirculating program's attachment, while there is one.
    recirculating: Option<BpfLink>,
    /// Send every frame whole even where patches would do.
    whole: bool,
    /// Slots in `frames`.
    slots: usize,
    /// The first frame: what the kernel initialises fresh live frames with.
    first: Vec<u8>,
}

impl Generator {
    /// The longest frame the generator sends.
    pub const MAX_FRAME: usize = size_of::<gen_frame>();

    /// Loads the generator program and its maps.
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn load() -> Result<Generator, LoadError> {
        super::load(|s| {
            Ok(Generator {
                prog: dup(s.progs.xdp_generate.as_fd())?,
                recirculate: dup(s.progs.xdp_recirculate.as_fd())?,
                drop_prog: dup(s.progs.xdp_drop.as_fd())?,
                frames: BpfMap::new(&s.maps.gen_frames, "gen_frames")?,
                patches: BpfMap::new(&s.maps.gen_patches, "gen_patches")?,
                whole: false,
                config: BpfMap::new(&s.maps.gen_config, "gen_config")?,
                config_value: std::sync::Mutex::new(zeroed()),
                returned: BpfMap::new(&s.maps.returned, "returned")?,
                recirculating: None,
                slots: s.maps.gen_frames.max_entries() as usize,
                first: Vec::new(),
            })
        })
    }

    /// How many different frames the generator holds.
    pub fn max_frames(&self) -> usize {
        self.slots
    }

    /// Sends every frame from its own 256-byte slot, as before patches: for
    /// a benchmark that compares the two ways (see [`Generator::set_frames`]).
    pub fn whole_frames(&mut self, whole: bool) {
        self.whole = whole;
    }

    /// The frames to send, in turn, from the destination MAC on; all of the
    /// same length, at most [`Generator::MAX_FRAME`] bytes, at most
    /// [`Generator::max_frames`] of them. Each CPU cycles through them on
    /// its own.
    ///
    /// Frames that differ from the first only within 32 bytes (a destination
    /// address and its checksum) are sent as the first one plus a 32-byte
    /// patch each, unless [`Generator::whole_frames`] says otherwise: the
    /// generator shares the CPU with the program under test, and reading a
    /// 256-byte slot per frame would stream up to 16 MiB through that CPU's
    /// caches each cycle, which no NIC's receive ring does.
    ///
    /// # Errors
    /// [`GeneratorError::FrameCount`], [`GeneratorError::FrameLength`], or
    /// [`GeneratorError::Map`] when a map write fails.
    pub fn set_frames(&mut self, frames: &[Vec<u8>]) -> Result<(), GeneratorError> {
        let max = self.max_frames();
        let Some(first) = frames.first().filter(|_| frames.len() <= max) else {
            return Err(GeneratorError::FrameCount { count: frames.len(), max });
        };
        for (index, frame) in frames.iter().enumerate() {
            if frame.is_empty() || frame.len() != first.len() || frame.len() > Self::MAX_FRAME {
                return Err(GeneratorError::FrameLength {
                    index,
                    len: frame.len(),
                    first: first.len(),
                    max: Self::MAX_FRAME,
                });
            }
        }
        let patch_off = if self.whole { None } else { patch_offset(frames) };
        let mut slot = vec![0u8; Self::MAX_FRAME];
        let whole = if patch_off.is_some() { 1 } else { frames.len() };
        for (index, frame) in frames.iter().take(whole).enumerate() {
            slot.fill(0);
            for (to, from) in slot.iter_mut().zip(frame) {
                *to = *from;
            }
            self.frames.update(&(index as u32).to_ne_bytes(), &slot)?;
        }
        if let Some(off) = patch_off {
            for (index, frame) in frames.iter().enumerate() {
                let patch = frame.get(off..off + PATCH_LEN).unwrap_or_default();
                self.patches.update(&(index as u32).to_ne_bytes(), patch)?;
            }
        }
        self.update_config(|config| {
            config.frames = frames.len() as u32;
            config.len = first.len() as u32;
            config.patched = u32::from(patch_off.is_some());
            config.patch_off = patch_off.unwrap_or(0) as u32;
        })?;
        self.first.clone_from(first);
        Ok(())
    }

    /// Whether this kernel runs live frames: one run of a program that
    /// drops its frame, so nothing is sent. `Err` carries the kernel's
    /// answer (EPERM from kernels that forbid live frames even to root).
    ///
    /// # Errors
    /// [`GeneratorError::Kernel`].
    pub fn live_frames(&self) -> Result<(), GeneratorError> {
        live_run(&self.drop_prog, &[0u8; 64], None, 1)
    }

    /// Attaches the recirculating generator in native mode to `iface` of
    /// the calling thread's network namespace, where a [`ReturnCounter`]
    /// would be: what comes back is counted as that counts it, then, while
    /// recirculating ([`Generator::start_recirculating`]), overwritten with
    /// the next frame and sent out again (else dropped). The way to load a
    /// pair on a kernel without live frames; detached on drop (or when
    /// called again).
    ///
    /// # Errors
    /// [`crate::Error::Attach`] (an interface without native XDP, or one
    /// that already runs a program).
    pub fn recirculate_on(&mut self, iface: &str) -> Result<(), crate::Error> {
        self.recirculating = None;
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        let (link, _) = link::attach(self.recirculate.as_fd(), ifindex, XdpMode::Native).map_err(|tried| {
            AttachError::ModeUnsupported { iface: iface.to_owned(), mode: XdpMode::Native, tried, hint: "see dmesg" }
        })?;
        self.recirculating = Some(link);
        Ok(())
    }

    /// Starts recirculating: `seeds` copies of the first frame, marked as
    /// seeds (ethertype 0x88B5), are sent out of `seed_iface` of the
    /// calling thread's namespace, whose peer is the interface given to
    /// [`Generator::recirculate_on`]; each is rewritten there into the next
    /// frame and sent on, and keeps going round until
    /// [`Generator::stop_recirculating`]. The frames go round on the CPU
    /// that sends the seeds (a veth's NAPI runs where it was woken).
    ///
    /// # Errors
    /// [`GeneratorError::NoFrames`], [`GeneratorError::NotRecirculating`],
    /// [`GeneratorError::Map`] or [`GeneratorError::Seed`].
    pub fn start_recirculating(&self, seed_iface: &str, seeds: u32) -> Result<(), GeneratorError> {
        if self.first.len() < 14 {
            return Err(GeneratorError::NoFrames);
        }
        if self.recirculating.is_none() {
            return Err(GeneratorError::NotRecirculating);
        }
        self.update_config(|c| c.recirculate = 1)?;
        let mut seed = self.first.clone();
        if let Some(ethertype) = seed.get_mut(12..14) {
            ethertype.copy_from_slice(&SEED_ETHERTYPE.to_be_bytes());
        }
        for _ in 0..seeds {
            super::lab::traffic::raw_frame(seed_iface, &seed)?;
        }
        Ok(())
    }

    /// Stops recirculating: what comes back from now on is counted and dropped.
    ///
    /// # Errors
    /// [`GeneratorError::Map`].
    pub fn stop_recirculating(&self) -> Result<(), GeneratorError> {
        self.update_config(|c| c.recirculate = 0)
    }

    /// Changes the configuration and writes it whole.
    fn update_config(&self, change: impl FnOnce(&mut gen_config)) -> Result<(), GeneratorError> {
        let mut held = self.config_value.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut config = *held;
        change(&mut config);
        self.config.update(&0u32.to_ne_bytes(), bytes_of(&config))?;
        *held = config;
        Ok(())
    }

    /// What came back to the recirculating program since it was attached
    /// or [`Generator::reset_returned`].
    ///
    /// # Errors
    /// [`MapError`] when the per-CPU counters cannot be read.
    pub fn returned(&self) -> Result<Returned, MapError> {
        read_returned(&self.returned)
    }

    /// Sets the recirculating program's counts back to zero.
    ///
    /// # Errors
    /// [`MapError`] when the per-CPU counters cannot be written.
    pub fn reset_returned(&self) -> Result<(), MapError> {
        self.returned.zero_percpu(&0u32.to_ne_bytes())
    }

    /// Sends `count` frames out of `iface` of the calling thread's network
    /// namespace, in one BPF_PROG_TEST_RUN call, and returns when the kernel
    /// has handed the last one to the interface. Each call also costs the
    /// kernel tens of milliseconds of page-pool teardown: send millions per
    /// call. Several threads may send at once (each on its own CPU's frames).
    ///
    /// # Errors
    /// [`GeneratorError::NoFrames`], [`GeneratorError::NoSuchInterface`],
    /// or [`GeneratorError::Kernel`] (Linux 5.18+ has live frames).
    pub fn send(&self, iface: &str, count: u32) -> Result<(), GeneratorError> {
        if self.first.is_empty() {
            return Err(GeneratorError::NoFrames);
        }
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .map_err(|_| GeneratorError::NoSuchInterface { iface: iface.to_owned() })?;
        let mut ctx = libbpf_sys::xdp_md {
            data: 0,
            data_end: self.first.len() as u32,
            ingress_ifindex: ifindex,
            ..Default::default()
        };
        // Live-frame runs report no verdict (retval stays 0): what the
        // program did shows in what arrives at the other end.
        live_run(&self.prog, &self.first, Some(&mut ctx), i32::try_from(count).unwrap_or(i32::MAX))
    }
}

/// Runs `prog` `repeat` times on live frames initialised from `data` (out
/// of `ctx`'s ingress interface; without one, the namespace's loopback).
fn live_run(
    prog: &OwnedFd,
    data: &[u8],
    ctx: Option<&mut libbpf_sys::xdp_md>,
    repeat: i32,
) -> Result<(), GeneratorError> {
    // SAFETY: zeroed opts with `sz` set is how libbpf's OPTS are initialised.
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    opts.data_in = data.as_ptr().cast();
    opts.data_size_in = data.len() as u32;
    if let Some(ctx) = ctx {
        opts.ctx_in = (ctx as *mut libbpf_sys::xdp_md).cast();
        opts.ctx_size_in = size_of::<libbpf_sys::xdp_md>() as u32;
    }
    opts.repeat = repeat;
    opts.flags = libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES;
    // SAFETY: data_in and ctx_in outlive the call and their sizes are given;
    // live-frame runs write no output buffers.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc < 0 {
        return Err(GeneratorError::Kernel(Errno::from_raw(-rc)));
    }
    Ok(())
}

/// The seeds' ethertype (GEN_SEED_ETHERTYPE in src/bpf/testing.bpf.c).
const SEED_ETHERTYPE: u16 = 0x88B5;

/// Bytes of a patch (GEN_PATCH_LEN in src/bpf/testing.bpf.c).
const PATCH_LEN: usize = size_of::<gen_patch>();

/// Where a 32-byte patch covering every byte in which some frame differs
/// from the first starts, if one does; frames are all as long as the first.
fn patch_offset(frames: &[Vec<u8>]) -> Option<usize> {
    let first = frames.first()?;
    if frames.len() < 2 || first.len() < PATCH_LEN {
        return None;
    }
    let (mut lo, mut hi) = (first.len(), 0);
    for frame in frames.iter().skip(1) {
        for (at, (a, b)) in first.iter().zip(frame).enumerate() {
            if a != b {
                lo = lo.min(at);
                hi = hi.max(at + 1);
            }
        }
    }
    if hi == 0 {
        return Some(0);
    }
    (hi - lo <= PATCH_LEN).then(|| lo.min(first.len() - PATCH_LEN))
}

/// What came back to an interface watched by a [`ReturnCounter`], summed
/// over the CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Returned {
    /// Frames received.
    pub frames: u64,
    /// Of those, frames whose outer ethertype is MPLS unicast (0x8847).
    pub labelled: u64,
    /// The first label stack entry of a labelled frame seen last on one of
    /// the CPUs (RFC 3032 layout: label << 12 | TC << 9 | S << 8 | TTL), if
    /// any was seen since the counter was attached or last reset.
    pub last_top_entry: Option<u32>,
    /// Frames sent out again ([`Generator::recirculate_on`]; 0 for a
    /// [`ReturnCounter`]).
    pub resent: u64,
}

impl Returned {
    /// The frames counted since `earlier` (the entry is this reading's).
    pub fn since(&self, earlier: &Returned) -> Returned {
        Returned {
            frames: self.frames.saturating_sub(earlier.frames),
            labelled: self.labelled.saturating_sub(earlier.labelled),
            last_top_entry: self.last_top_entry,
            resent: self.resent.saturating_sub(earlier.resent),
        }
    }
}

/// An XDP program in native mode that counts the frames an interface
/// receives and drops them: the receiving end of a rate measurement, and
/// what makes a veth accept its peer's XDP_TX frames. Detached on drop.
#[derive(Debug)]
pub struct ReturnCounter {
    _prog: OwnedFd,
    _link: BpfLink,
    counts: BpfMap,
}

impl ReturnCounter {
    /// Loads the counter and attaches it in native mode to `iface` of the
    /// calling thread's network namespace.
    ///
    /// # Errors
    /// [`crate::Error::Load`] or [`crate::Error::Attach`] (an interface
    /// without native XDP, or one that already runs a program).
    pub fn attach(iface: &str) -> Result<ReturnCounter, crate::Error> {
        let (prog, counts) = super::load(|s| {
            Ok((dup(s.progs.xdp_count_returned.as_fd())?, BpfMap::new(&s.maps.returned, "returned")?))
        })?;
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        let (link, _) = link::attach(prog.as_fd(), ifindex, XdpMode::Native).map_err(|tried| {
            AttachError::ModeUnsupported { iface: iface.to_owned(), mode: XdpMode::Native, tried, hint: "see dmesg" }
        })?;
        Ok(ReturnCounter { _prog: prog, _link: link, counts })
    }

    /// Sets every count back to zero (and forgets the last entry seen).
    ///
    /// # Errors
    /// [`MapError`] when the per-CPU counters cannot be written.
    pub fn reset(&self) -> Result<(), MapError> {
        self.counts.zero_percpu(&0u32.to_ne_bytes())
    }

    /// The totals since the counter was attached or last reset.
    ///
    /// # Errors
    /// [`MapError`] when the per-CPU counters cannot be read.
    pub fn read(&self) -> Result<Returned, MapError> {
        read_returned(&self.counts)
    }
}

/// The per-CPU `returned` counts, summed.
fn read_returned(counts: &BpfMap) -> Result<Returned, MapError> {
    let mut total = Returned::default();
    for cpu in counts.lookup_percpu(&0u32.to_ne_bytes())? {
        let Some(c) = from_bytes::<returned_counts>(&cpu) else {
            return Err(MapError { map: "returned", op: "decode", errno: Errno::EINVAL });
        };
        total.frames += c.frames;
        total.labelled += c.labelled;
        total.resent += c.resent;
        if c.labelled > 0 {
            total.last_top_entry = Some(u32::from_be(c.last_top_entry));
        }
    }
    Ok(total)
}

/// Up to `n` destinations spread evenly over `prefixes`, each inside a
/// different prefix and answered by that prefix: no longer prefix of the
/// list covers it, so every destination is a different route of the table
/// (what a host talking to many peers makes its lookup do). A prefix whose
/// first, last and middle addresses all lie inside longer prefixes is
/// passed over for the next one.
pub fn spread_destinations(prefixes: &[IpNetwork], n: usize) -> Vec<IpAddr> {
    let all: HashSet<IpNetwork> = prefixes.iter().filter_map(|p| normalized(p.network(), p.prefix())).collect();
    let answered_by = |addr: IpAddr, p: &IpNetwork| {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (p.prefix() + 1..=max).all(|len| normalized(addr, len).is_none_or(|longer| !all.contains(&longer)))
    };
    let step = (prefixes.len() / n.max(1)).max(1);
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while out.len() < n {
        // The first prefix from i on that has an address of its own.
        let found = prefixes.iter().enumerate().skip(i).find_map(|(k, p)| {
            let candidates = [p.network(), last_address(p), middle_address(p)];
            candidates.into_iter().find(|a| answered_by(*a, p)).map(|a| (k, a))
        });
        let Some((k, addr)) = found else { break };
        out.push(addr);
        i = k + step;
    }
    out
}

/// The prefix of `len` bits holding `addr`, host bits cleared (a set key);
/// None for a length past the family's.
fn normalized(addr: IpAddr, len: u8) -> Option<IpNetwork> {
    let network = IpNetwork::new(addr, len).ok()?.network();
    IpNetwork::new(network, len).ok()
}

fn last_address(p: &IpNetwork) -> IpAddr {
    match p {
        IpNetwork::V4(v4) => IpAddr::V4(v4.broadcast()),
        IpNetwork::V6(v6) => {
            let host = u128::MAX.checked_shr(u32::from(v6.prefix())).unwrap_or(0);
            IpAddr::V6((u128::from(v6.network()) | host).into())
        }
    }
}

fn middle_address(p: &IpNetwork) -> IpAddr {
    match p {
        IpNetwork::V4(v4) => {
            let half = u32::MAX.checked_shr(u32::from(v4.prefix()) + 1).map_or(0, |h| h + 1);
            IpAddr::V4((u32::from(v4.network()) | half).into())
        }
        IpNetwork::V6(v6) => {
            let half = u128::MAX.checked_shr(u32::from(v6.prefix()) + 1).map_or(0, |h| h + 1);
            IpAddr::V6((u128::from(v6.network()) | half).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNetwork> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn frames_that_differ_within_a_patch_are_sent_as_patches() {
        let base: Vec<u8> = (0..60).collect();
        let with = |edits: &[(usize, u8)]| {
            let mut f = base.clone();
            for &(at, v) in edits {
                f[at] = v;
            }
            f
        };
        // An IPv4 checksum (24) and destination (30..34): the patch starts at the first difference.
        assert_eq!(patch_offset(&[base.clone(), with(&[(24, 0), (33, 1)]), with(&[(30, 9)])]), Some(24));
        // Near the end: the patch is pulled back so that it stays inside the frame.
        assert_eq!(patch_offset(&[base.clone(), with(&[(59, 0)])]), Some(60 - PATCH_LEN));
        // Exactly 32 bytes apart fits; 33 does not.
        assert_eq!(patch_offset(&[base.clone(), with(&[(10, 0), (41, 0)])]), Some(10));
        assert_eq!(patch_offset(&[base.clone(), with(&[(10, 0)]), with(&[(42, 0)])]), None);
        // One frame, or frames shorter than a patch: whole frames.
        assert_eq!(patch_offset(std::slice::from_ref(&base)), None);
        assert_eq!(patch_offset(&[vec![1; 20], vec![2; 20]]), None);
        // Identical frames: any patch is frame 0's own bytes.
        assert_eq!(patch_offset(&[base.clone(), base.clone()]), Some(0));
    }

    #[test]
    fn each_destination_is_answered_by_its_own_prefix() {
        // 10.0.0.0/8's first address lies in 10.0.0.0/16 and its last in the
        // /24: its middle is taken.
        let p = nets(&["10.0.0.0/8", "10.0.0.0/16", "10.255.255.0/24", "2001:db8::/32", "2001:db8::/48"]);
        let d = spread_destinations(&p, 10);
        let want: Vec<IpAddr> =
            ["10.128.0.0", "10.0.0.0", "10.255.255.0", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
        assert_eq!(d, want);
    }

    #[test]
    fn destinations_are_spread_over_the_list() {
        let p: Vec<IpNetwork> = (0..100u32).map(|i| IpNetwork::new(IpAddr::V4((i << 8).into()), 24).unwrap()).collect();
        let d = spread_destinations(&p, 10);
        assert_eq!(d.len(), 10);
        assert_eq!(d[1], IpAddr::V4((10u32 << 8).into()), "every 10th prefix");
    }
}
