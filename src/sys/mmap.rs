//! A BPF array map (`BPF_F_MMAPABLE`) mapped into this process: user space
//! then reads and writes its entries with plain loads and stores, which the
//! program sees at once, with no syscall per entry.

#![allow(unsafe_code)]

use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::error::MapError;
use crate::sys::map::BpfMap;

/// The entries of an array map of `len` elements of `stride` bytes, shared
/// with the kernel. Word accesses are atomic: the program reads each entry
/// whole, old or new.
#[derive(Debug)]
pub(crate) struct MappedArray {
    base: NonNull<u8>,
    bytes: usize,
    stride: usize,
    len: usize,
    name: &'static str,
}

// SAFETY: the mapping is plain shared memory; every access goes through
// atomics or through `write_bytes`, whose callers serialize writers (the
// FIB's lock) as the kernel's own array update would.
unsafe impl Send for MappedArray {}
// SAFETY: as above.
unsafe impl Sync for MappedArray {}

impl MappedArray {
    /// Maps `map`, an array of `len` elements of `stride` bytes (the value
    /// size rounded up to 8, as the kernel lays array elements out).
    pub(crate) fn new(map: &BpfMap, len: usize, value_size: usize) -> Result<MappedArray, MapError> {
        let stride = value_size.div_ceil(8) * 8;
        let fail = |errno| MapError { map: map.name(), op: "mmap", errno };
        let page = 4096usize;
        let bytes = (len.checked_mul(stride).ok_or(fail(Errno::EOVERFLOW))?).div_ceil(page) * page;
        let length = std::num::NonZeroUsize::new(bytes).ok_or(fail(Errno::EINVAL))?;
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks the length.
        let base = unsafe {
            mmap(None, length, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, map.fd().as_fd(), 0)
        }
        .map_err(fail)?;
        Ok(MappedArray { base: base.cast(), bytes, stride, len, name: map.name() })
    }

    /// The whole mapping as 32-bit words, for arrays of u32 entries laid end
    /// to end (an element size that is a multiple of 8: no padding between).
    pub(crate) fn words(&self) -> &[AtomicU32] {
        // SAFETY: the mapping is `bytes` long, page aligned and lives as long
        // as `self`; AtomicU32 has u32's size and alignment.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().cast::<AtomicU32>(), self.bytes / 4) }
    }

    fn at(&self, index: usize, offset: usize, size: usize) -> Option<*mut u8> {
        if index >= self.len || offset + size > self.stride {
            return None;
        }
        // SAFETY: in bounds of the mapping, checked above.
        Some(unsafe { self.base.as_ptr().add(index * self.stride + offset) })
    }

    /// Stores a u32 at `offset` of element `index`, atomically, after every
    /// earlier write (a packet that sees it sees what it points at).
    pub(crate) fn store_u32(&self, index: usize, offset: usize, value: u32) {
        if let Some(p) = self.at(index, offset, 4) {
            // SAFETY: in bounds and 4-aligned.
            unsafe { AtomicU32::from_ptr(p.cast()) }.store(value, Ordering::Release);
        }
    }

    /// Stores the first 8 bytes of element `index`, atomically.
    pub(crate) fn store_u64(&self, index: usize, value: u64) {
        if let Some(p) = self.at(index, 0, 8) {
            // SAFETY: in bounds and 8-aligned (element starts are).
            unsafe { AtomicU64::from_ptr(p.cast()) }.store(value, Ordering::Release);
        }
    }

    /// The first 8 bytes of element `index`, read atomically.
    pub(crate) fn load_u64(&self, index: usize) -> Option<u64> {
        let p = self.at(index, 0, 8)?;
        // SAFETY: in bounds and 8-aligned (element starts are).
        Some(unsafe { AtomicU64::from_ptr(p.cast()) }.load(Ordering::Acquire))
    }

    /// Takes the first 8 bytes of element `index`: returns them and leaves
    /// 0, atomically against the program's own atomic updates (a plain
    /// load first, so that an element already 0 costs no locked swap).
    #[cfg(feature = "bgp")]
    pub(crate) fn take_u64(&self, index: usize) -> u64 {
        let Some(p) = self.at(index, 0, 8) else { return 0 };
        // SAFETY: in bounds and 8-aligned (element starts are).
        let word = unsafe { AtomicU64::from_ptr(p.cast()) };
        if word.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        word.swap(0, Ordering::AcqRel)
    }

    /// Element `index`'s bytes (value size `size`), copied out.
    pub(crate) fn read_bytes(&self, index: usize, size: usize) -> Option<Vec<u8>> {
        let p = self.at(index, 0, size)?;
        let mut out = vec![0u8; size];
        // SAFETY: `size` bytes in bounds; a racing writer is excluded by the caller's lock.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), size) };
        Some(out)
    }

    /// Whether element `index` starts with exactly `bytes`, compared in place.
    pub(crate) fn holds(&self, index: usize, bytes: &[u8]) -> bool {
        let Some(p) = self.at(index, 0, bytes.len()) else { return false };
        // SAFETY: `bytes.len()` bytes in bounds; a racing writer is excluded by the caller's lock.
        unsafe { std::slice::from_raw_parts(p, bytes.len()) == bytes }
    }

    /// Asks the CPU to bring the first `bytes` of element `index` into its
    /// caches, without waiting: many such requests overlap, where the
    /// program's own first reads, one per run, would each wait in turn.
    /// A hint only (a no-op off x86_64).
    #[cfg(feature = "bgp")]
    pub(crate) fn prefetch(&self, index: usize, bytes: usize) {
        let Some(p) = self.at(index, 0, bytes.min(self.stride)) else { return };
        #[cfg(target_arch = "x86_64")]
        for line in (0..bytes.min(self.stride)).step_by(64) {
            // SAFETY: a prefetch never faults, and the address is in bounds.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(line).cast::<i8>());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }

    /// Overwrites element `index` (no packet may be reading it: a slot
    /// not referenced, or out of its grace period).
    pub(crate) fn write_bytes(&self, index: usize, bytes: &[u8]) -> bool {
        let Some(p) = self.at(index, 0, bytes.len()) else { return false };
        // SAFETY: in bounds; writers are serialized by the caller.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        std::sync::atomic::fence(Ordering::Release);
        true
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        if let Err(e) = unsafe { munmap(self.base.cast(), self.bytes) } {
            log::warn!("unmapping {}: {e}", self.name);
        }
    }
}
