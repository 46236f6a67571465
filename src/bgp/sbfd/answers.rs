//! The answers counted in the kernel: a socket filter on the engine's UDP
//! socket (`sbfd_answer_filter` in src/bpf/sbfd.bpf.c) checks each answer,
//! counts it in its list's record of an mmapable array (found by our
//! discriminator) and drops it; the engine reads the counts each tick with
//! plain loads instead of receiving 100,000 datagrams a second.
//!
//! A record is found by our discriminator modulo the table's size, so the
//! engine gives each list a discriminator whose record no other running
//! list uses ([`AnswerTable::free`]). The filter also sets the record's bit
//! in a bitmap, so that a tick reads the records that moved
//! ([`AnswerTable::take_answered`]), not all of them: with 1,000 lists and
//! nothing answering, reading every record every tick was most of the
//! engine's user-space time.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::hash::Hasher;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

use nix::errno::Errno;
use nix::libc;

use crate::sys::map::BpfMap;
use crate::sys::mmap::MappedArray;

/// Word offsets in `struct sbfd_answer` and `struct sbfd_control`.
const LOCAL: usize = 0;
const REFLECTOR: usize = 4;
const ANSWERS: usize = 8;
const UP: usize = 12;
const INVALID: usize = 12;

/// The records, the filter program, and the slots in use.
pub(super) struct AnswerTable {
    records: MappedArray,
    control: MappedArray,
    /// One bit per record (`sbfd_answered`), in 64-bit words.
    answered: MappedArray,
    slots: usize,
    used: HashSet<usize>,
    prog: OwnedFd,
    _maps: [BpfMap; 3],
}

impl std::fmt::Debug for AnswerTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerTable").field("slots", &self.slots).finish_non_exhaustive()
    }
}

impl AnswerTable {
    /// The table over `records` (`slots` records, a power of two), the
    /// control word and the answered bitmap (`slots` bits), for the filter
    /// `prog`.
    pub(super) fn new(
        prog: OwnedFd,
        (records, control, answered): (BpfMap, BpfMap, BpfMap),
        slots: usize,
    ) -> Result<AnswerTable, crate::error::MapError> {
        let r = MappedArray::new(&records, slots, 16)?;
        let c = MappedArray::new(&control, 1, 16)?;
        let a = MappedArray::new(&answered, slots.div_ceil(64), 8)?;
        Ok(AnswerTable {
            records: r,
            control: c,
            answered: a,
            slots,
            used: HashSet::new(),
            prog,
            _maps: [records, control, answered],
        })
    }

    /// Attaches the filter to `socket` (SO_ATTACH_BPF): from now on no
    /// datagram reaches its queue.
    ///
    /// # Errors
    /// The errno of setsockopt.
    pub(super) fn attach(&self, socket: BorrowedFd<'_>) -> Result<(), Errno> {
        let fd: libc::c_int = self.prog.as_raw_fd();
        // SAFETY: setsockopt reads one c_int (the program's fd) from a live local.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_BPF,
                (&fd as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }

    fn slot(&self, local: u32) -> usize {
        local as usize & (self.slots - 1)
    }

    /// Whether `local`'s record is free (no running list uses it).
    pub(super) fn free(&self, local: u32) -> bool {
        local != 0 && !self.used.contains(&self.slot(local))
    }

    /// How many records there are: at most this many lists can be running.
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// Answers to `local` count from now on when they carry `reflector`.
    /// The counts start again from 0.
    pub(super) fn open(&mut self, local: u32, reflector: u32) {
        let slot = self.slot(local);
        self.used.insert(slot);
        // The filter checks `local` last: zero it first so that no answer
        // is counted against a half-written record.
        self.records.store_u32(slot, LOCAL, 0);
        self.records.store_u32(slot, ANSWERS, 0);
        self.records.store_u32(slot, UP, 0);
        self.records.store_u32(slot, REFLECTOR, reflector);
        self.records.store_u32(slot, LOCAL, local);
    }

    /// Answers to `local` count no more; its record is free.
    pub(super) fn close(&mut self, local: u32) {
        let slot = self.slot(local);
        self.records.store_u32(slot, LOCAL, 0);
        self.used.remove(&slot);
    }

    /// Calls `each(local, (answers, up))` for every record answered since
    /// the last call, taking its bit. An answer counted while this runs is
    /// seen now or at the next call (the filter sets the bit after the
    /// counts, and the bit is taken before they are read).
    pub(super) fn take_answered(&self, mut each: impl FnMut(u32, (u32, u32))) {
        let records = self.records.words();
        let load = |slot: usize, w: usize| records.get(slot * 4 + w / 4).map_or(0, |a| a.load(Ordering::Acquire));
        for n in 0..self.slots.div_ceil(64) {
            let mut bits = self.answered.take_u64(n);
            while bits != 0 {
                let slot = n * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let local = load(slot, LOCAL);
                if local != 0 {
                    each(local, (load(slot, ANSWERS), load(slot, UP)));
                }
            }
        }
    }

    /// Datagrams that were no answer of a running list, since the start.
    pub(super) fn invalid(&self) -> u32 {
        self.control.words().get(INVALID / 4).map_or(0, |a| a.load(Ordering::Relaxed))
    }
}

/// A hasher for our own discriminators (sequential numbers that nobody
/// else picks): one multiplication (Fibonacci hashing) instead of SipHash,
/// which the answers' lookups spent most of their user-space time on.
#[derive(Debug, Default)]
pub(super) struct Discriminators(u64);

impl Hasher for Discriminators {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
