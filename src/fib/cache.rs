//! The route cache's generation (include/route_cache.h): the dataplane's
//! buckets keep only its low 32 bits, so before those wrap around the
//! buckets are emptied; else a bucket left alone for 2^32 changes would
//! answer again with what it held before them. And its chunks: the
//! cache is an array of maps whose inner arrays (`route_cache_chunk`) are
//! small enough for the kernel to kmalloc them (include/route_cache.h).

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{libbpf_sys, MapCore, MapFlags, MapHandle, MapType};
use nix::errno::Errno;

use crate::abi::types;
use crate::dataplane::{route_cache_chunks, EncapMaps};
use crate::error::MapError;
use crate::sys::map::BpfMap;

/// A chunk's one value (`struct route_cache_chunk`: 64-byte buckets; the object has no BTF for it).
const CHUNK: usize = types::route_cache_geometry::ROUTE_CACHE_CHUNK_PAD.0 as usize
    + types::route_cache_geometry::ROUTE_CACHE_CHUNK_BUCKETS.0 as usize * 64;

/// libbpf-rs keeps only the errno's kind; libbpf left the errno itself in `errno`.
fn kernel(op: &'static str) -> impl Fn(libbpf_rs::Error) -> MapError {
    move |_| MapError { map: "route_cache", op, errno: Errno::last() }
}

/// Puts an empty chunk in every slot of `route_cache` (`entries`: the
/// configured size) that has none: a freshly created dataplane's cache.
pub(crate) fn fill_chunks(outer: &BpfMap, entries: u32) -> Result<(), MapError> {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    for chunk in 0..route_cache_chunks(entries) {
        let key = chunk.to_ne_bytes();
        if outer.lookup(&key)?.is_some() {
            continue;
        }
        let inner = MapHandle::create(MapType::Array, Some("route_cache_c"), 4, CHUNK as u32, 1, &opts)
            .map_err(kernel("creating a chunk"))?;
        // The outer map keeps the chunk: this fd may close.
        outer.update(&key, &inner.as_fd().as_raw_fd().to_ne_bytes())?;
    }
    Ok(())
}

/// The generation after `generation`, and whether the cache must be emptied
/// before it is published: its low 32 bits are never 0 (a bucket's "never
/// filled") and never come back to a value a bucket may still hold.
pub(crate) fn next_generation(generation: u64) -> (u64, bool) {
    let next = generation.wrapping_add(1);
    match next as u32 {
        0 => (next.wrapping_add(1), true),
        _ => (next, false),
    }
}

/// Empties every bucket of `route_cache` (`entries`: the configured size):
/// a bucket whose generation is 0 answers no packet. A packet filling a
/// bucket meanwhile fills it under the generation it read before, which is
/// now out of use until the next wrap, when this runs again.
pub(crate) fn empty(maps: &EncapMaps, entries: u32) -> Result<(), MapError> {
    let zero = vec![0u8; CHUNK];
    for chunk in 0..route_cache_chunks(entries) {
        // An array of maps reads back the inner map's id.
        let Some(id) = maps.route_cache.lookup(&chunk.to_ne_bytes())? else { continue };
        let id = u32::from_ne_bytes(id[..4].try_into().unwrap_or_default());
        let inner = MapHandle::from_map_id(id).map_err(kernel("opening a chunk"))?;
        inner.update(&0u32.to_ne_bytes(), &zero, MapFlags::ANY).map_err(kernel("emptying a chunk"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::next_generation;

    #[test]
    fn the_low_half_skips_zero_and_says_when_to_empty() {
        assert_eq!(next_generation(0), (1, false));
        assert_eq!(next_generation(41), (42, false));
        assert_eq!(next_generation(0xffff_fffe), (0xffff_ffff, false));
        assert_eq!(next_generation(0xffff_ffff), (0x1_0000_0001, true));
        assert_eq!(next_generation(0x7_ffff_ffff), (0x8_0000_0001, true));
        assert_eq!(next_generation(u64::MAX), (1, true));
        // Every generation's low half but the first is non-zero.
        for g in [0u64, 1, 0xffff_ffff, 0x1_ffff_ffff, u64::MAX - 1, u64::MAX] {
            assert_ne!(next_generation(g).0 as u32, 0, "after {g:#x}");
        }
    }
}
