//! A BPF map by fd, with the kernel's errno on every failure (libbpf-rs folds
//! ENOSPC and friends into an opaque kind, and "table full" must be told apart).

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libbpf_rs::{libbpf_sys, MapCore};
use nix::errno::Errno;

use crate::error::MapError;

#[derive(Debug)]
pub(crate) struct BpfMap {
    fd: OwnedFd,
    name: &'static str,
    key_size: usize,
    value_size: usize,
}

/// Entries per batch syscall: large enough that the syscall cost vanishes,
/// small enough that the kernel's copy of the keys stays modest.
const BATCH: usize = 16_384;

fn check(name: &'static str, op: &'static str, rc: i32) -> Result<(), MapError> {
    if rc < 0 {
        return Err(MapError { map: name, op, errno: Errno::from_raw(-rc) });
    }
    Ok(())
}

impl BpfMap {
    /// Takes its own fd for `map` so that it outlives the skeleton.
    pub(crate) fn new<M: MapCore>(map: &M, name: &'static str) -> Result<BpfMap, MapError> {
        let fd = map.as_fd().try_clone_to_owned().map_err(|e| MapError {
            map: name,
            op: "dup",
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
        Ok(BpfMap { fd, name, key_size: map.key_size() as usize, value_size: map.value_size() as usize })
    }

    /// Adopts a map by fd (e.g. one read back from a pin), asking the kernel
    /// for its key and value sizes.
    pub(crate) fn from_fd(fd: OwnedFd, name: &'static str) -> Result<BpfMap, MapError> {
        // SAFETY: zeroed is a valid bpf_map_info; the kernel fills up to `len` bytes.
        let mut info: libbpf_sys::bpf_map_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
        // SAFETY: info and len point to valid memory of the stated size.
        let rc = unsafe {
            libbpf_sys::bpf_map_get_info_by_fd(
                fd.as_raw_fd(),
                (&mut info as *mut libbpf_sys::bpf_map_info).cast(),
                &mut len,
            )
        };
        check(name, "get_info", rc)?;
        Ok(BpfMap { fd, name, key_size: info.key_size as usize, value_size: info.value_size as usize })
    }

    /// The map's kernel id (what `bpftool map show` lists).
    pub(crate) fn id(&self) -> Result<u32, MapError> {
        // SAFETY: zeroed is a valid bpf_map_info; the kernel fills up to `len` bytes.
        let mut info: libbpf_sys::bpf_map_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
        // SAFETY: info and len point to valid memory of the stated size.
        let rc = unsafe {
            libbpf_sys::bpf_map_get_info_by_fd(
                self.fd.as_raw_fd(),
                (&mut info as *mut libbpf_sys::bpf_map_info).cast(),
                &mut len,
            )
        };
        check(self.name, "get_info", rc)?;
        Ok(info.id)
    }

    /// The map's fd, to pin it or hand it to a program being loaded.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    fn sized(&self, op: &'static str, key: &[u8], value: Option<usize>) -> Result<(), MapError> {
        if key.len() != self.key_size || value.is_some_and(|v| v != self.value_size) {
            return Err(MapError { map: self.name, op, errno: Errno::EINVAL });
        }
        Ok(())
    }

    pub(crate) fn update(&self, key: &[u8], value: &[u8]) -> Result<(), MapError> {
        self.sized("update", key, Some(value.len()))?;
        self.update_unchecked(key, value)
    }

    /// The update syscall; the caller checked the key's size and that `value`
    /// holds what the kernel reads (one value, or one per CPU for per-CPU maps).
    fn update_unchecked(&self, key: &[u8], value: &[u8]) -> Result<(), MapError> {
        // SAFETY: key and value are as large as the kernel reads and outlive the call.
        let rc = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.fd.as_raw_fd(),
                key.as_ptr().cast(),
                value.as_ptr().cast(),
                u64::from(libbpf_sys::BPF_ANY),
            )
        };
        check(self.name, "update", rc)
    }

    /// Writes `keys.len() / key_size` entries in one BPF_MAP_UPDATE_BATCH
    /// call per chunk (hash maps and LPM tries; 5.6+): a full table in a few
    /// syscalls instead of one per entry. On error, the entries before the
    /// failing one are written (the caller knows which: it wrote them in order).
    pub(crate) fn update_batch(&self, keys: &[u8], values: &[u8]) -> Result<(), MapError> {
        let n = keys.len() / self.key_size.max(1);
        if keys.len() != n * self.key_size || values.len() != n * self.value_size {
            return Err(MapError { map: self.name, op: "update_batch", errno: Errno::EINVAL });
        }
        for (k, v) in keys.chunks(BATCH * self.key_size).zip(values.chunks(BATCH * self.value_size)) {
            let mut count = (k.len() / self.key_size) as u32;
            // SAFETY: `count` keys and values of the map's sizes, alive for the call; NULL opts.
            let rc = unsafe {
                libbpf_sys::bpf_map_update_batch(
                    self.fd.as_raw_fd(),
                    k.as_ptr().cast(),
                    v.as_ptr().cast(),
                    &mut count,
                    std::ptr::null(),
                )
            };
            check(self.name, "update_batch", rc)?;
        }
        Ok(())
    }

    /// Deletes entries in BPF_MAP_DELETE_BATCH calls. Every key must exist
    /// (the kernel stops at a missing one with ENOENT).
    pub(crate) fn delete_batch(&self, keys: &[u8]) -> Result<(), MapError> {
        let n = keys.len() / self.key_size.max(1);
        if keys.len() != n * self.key_size {
            return Err(MapError { map: self.name, op: "delete_batch", errno: Errno::EINVAL });
        }
        for k in keys.chunks(BATCH * self.key_size) {
            let mut count = (k.len() / self.key_size) as u32;
            // SAFETY: `count` keys of the map's size, alive for the call; NULL opts.
            let rc = unsafe {
                libbpf_sys::bpf_map_delete_batch(self.fd.as_raw_fd(), k.as_ptr().cast(), &mut count, std::ptr::null())
            };
            check(self.name, "delete_batch", rc)?;
        }
        Ok(())
    }

    /// The kernel's memory for this map (`memlock` in its fdinfo: what the
    /// map has allocated; for an LPM trie, its nodes present).
    pub(crate) fn memory(&self) -> Result<u64, MapError> {
        let fail = |errno| MapError { map: self.name, op: "fdinfo", errno };
        let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.fd.as_raw_fd()))
            .map_err(|e| fail(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        text.lines()
            .find_map(|l| l.strip_prefix("memlock:").and_then(|v| v.trim().parse().ok()))
            .ok_or(fail(Errno::ENODATA))
    }

    /// `Ok(false)` when the key was not there.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<bool, MapError> {
        self.sized("delete", key, None)?;
        // SAFETY: key has the map's key size and outlives the call.
        let rc = unsafe { libbpf_sys::bpf_map_delete_elem(self.fd.as_raw_fd(), key.as_ptr().cast()) };
        match check(self.name, "delete", rc) {
            Ok(()) => Ok(true),
            Err(MapError { errno: Errno::ENOENT, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets every CPU's value of a per-CPU map's `key` to zero.
    pub(crate) fn zero_percpu(&self, key: &[u8]) -> Result<(), MapError> {
        self.sized("update", key, None)?;
        let zeros = vec![0u8; self.percpu_stride() * self.possible_cpus()?];
        self.update_unchecked(key, &zeros)
    }

    /// Sets every CPU's value of each of `keys` (u32 keys of a per-CPU
    /// array) to zero, in BPF_MAP_UPDATE_BATCH calls.
    pub(crate) fn zero_percpu_batch(&self, keys: &[u32]) -> Result<(), MapError> {
        let per_key = self.percpu_stride() * self.possible_cpus()?;
        for chunk in keys.chunks(BATCH) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|k| k.to_ne_bytes()).collect();
            let zeros = vec![0u8; per_key * chunk.len()];
            let mut count = chunk.len() as u32;
            // SAFETY: `count` keys and per-CPU values of the map's sizes, alive for the call; NULL opts.
            let rc = unsafe {
                libbpf_sys::bpf_map_update_batch(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    zeros.as_ptr().cast(),
                    &mut count,
                    std::ptr::null(),
                )
            };
            check(self.name, "update_batch", rc)?;
        }
        Ok(())
    }

    /// The values of a per-CPU array's keys 0 to `last`, each the values of
    /// every possible CPU (padded to 8 bytes each, as
    /// [`BpfMap::lookup_percpu`] gives them), in BPF_MAP_LOOKUP_BATCH calls
    /// (5.6+) of about 1 MiB each: a counter pool in a few syscalls instead
    /// of one per slot, and never more than the keys asked for (a host with
    /// many CPUs holds a copy per CPU). Returns the bytes and how many of
    /// them a key takes.
    pub(crate) fn percpu_array_values(&self, last: u32) -> Result<(Vec<u8>, usize), MapError> {
        let per_key = self.percpu_stride() * self.possible_cpus()?;
        let wanted = last as usize + 1;
        let batch = ((1 << 20) / per_key.max(1)).clamp(1, BATCH);
        let mut all = Vec::with_capacity(wanted * per_key);
        let mut keys = vec![0u8; batch * 4];
        let mut values = vec![0u8; batch * per_key];
        let (mut at, mut next) = (None::<u32>, 0u32);
        while all.len() < wanted * per_key {
            let mut count = batch.min(wanted - all.len() / per_key) as u32;
            let in_batch = at.as_mut().map_or(std::ptr::null_mut(), |k| std::ptr::from_mut(k).cast());
            // SAFETY: the batch tokens are u32 (an array's key); `keys` and
            // `values` have room for `count` entries of the map's sizes; NULL opts.
            let rc = unsafe {
                libbpf_sys::bpf_map_lookup_batch(
                    self.fd.as_raw_fd(),
                    in_batch,
                    std::ptr::from_mut(&mut next).cast(),
                    keys.as_mut_ptr().cast(),
                    values.as_mut_ptr().cast(),
                    &mut count,
                    std::ptr::null(),
                )
            };
            let done = match check(self.name, "lookup_batch", rc) {
                Ok(()) => false,
                // The end of the map: `count` holds what this call read.
                Err(MapError { errno: Errno::ENOENT, .. }) => true,
                Err(e) => return Err(e),
            };
            all.extend_from_slice(values.get(..count as usize * per_key).unwrap_or_default());
            if done || count == 0 {
                break;
            }
            at = Some(next);
        }
        Ok((all, per_key))
    }

    /// Bytes per CPU in a per-CPU map's value buffer: the value, padded to 8.
    fn percpu_stride(&self) -> usize {
        self.value_size.div_ceil(8) * 8
    }

    fn possible_cpus(&self) -> Result<usize, MapError> {
        // SAFETY: plain query of sysfs by libbpf.
        usize::try_from(unsafe { libbpf_sys::libbpf_num_possible_cpus() }).map_err(|_| MapError {
            map: self.name,
            op: "possible CPUs",
            errno: Errno::EINVAL,
        })
    }

    /// The value for `key` (an LPM trie answers with the longest match).
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.lookup_sized(key, self.value_size)
    }

    /// Per-CPU maps: one value per possible CPU, each padded to 8 bytes.
    pub(crate) fn lookup_percpu(&self, key: &[u8]) -> Result<Vec<Vec<u8>>, MapError> {
        let stride = self.percpu_stride();
        let all = self.lookup_sized(key, stride * self.possible_cpus()?)?.unwrap_or_default();
        Ok(all.chunks(stride).map(|c| c.iter().take(self.value_size).copied().collect()).collect())
    }

    fn lookup_sized(&self, key: &[u8], size: usize) -> Result<Option<Vec<u8>>, MapError> {
        self.sized("lookup", key, None)?;
        let mut value = vec![0u8; size];
        // SAFETY: key has the map's key size; value has room for what the kernel writes.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_elem(self.fd.as_raw_fd(), key.as_ptr().cast(), value.as_mut_ptr().cast())
        };
        match check(self.name, "lookup", rc) {
            Ok(()) => Ok(Some(value)),
            Err(MapError { errno: Errno::ENOENT, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every key, by BPF_MAP_GET_NEXT_KEY, each once. Keys deleted meanwhile
    /// may be missed; a walk that restarts (its previous key was deleted) is
    /// bounded by `limit` steps.
    pub(crate) fn keys(&self, limit: usize) -> Result<Vec<Vec<u8>>, MapError> {
        let mut seen = std::collections::HashSet::new();
        let mut keys = Vec::new();
        let mut prev: Option<Vec<u8>> = None;
        for _ in 0..limit {
            let mut next = vec![0u8; self.key_size];
            let prev_ptr = prev.as_ref().map(|k| k.as_ptr().cast()).unwrap_or(std::ptr::null());
            // SAFETY: prev is null or a key of the map's size; next has room for one key.
            let rc =
                unsafe { libbpf_sys::bpf_map_get_next_key(self.fd.as_raw_fd(), prev_ptr, next.as_mut_ptr().cast()) };
            match check(self.name, "get_next_key", rc) {
                Ok(()) => {
                    if seen.insert(next.clone()) {
                        keys.push(next.clone());
                    }
                    prev = Some(next);
                }
                Err(MapError { errno: Errno::ENOENT, .. }) => return Ok(keys),
                Err(e) => return Err(e),
            }
        }
        log::warn!("{}: key walk stopped after {limit} steps (concurrent deletions)", self.name);
        Ok(keys)
    }
}
