//! The route cache's generation (include/route_cache.h): the dataplane's
//! buckets keep only its low 32 bits, so before those wrap around the
//! buckets are emptied; else a bucket left alone for 2^32 changes would
//! answer again with what it held before them.

use crate::abi::types;
use crate::dataplane::{route_cache_buckets, EncapMaps};
use crate::error::MapError;
use crate::sys::mmap::MappedArray;
use std::sync::atomic::Ordering;

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
    const BUCKET: usize = std::mem::size_of::<types::route_cache_bucket>();
    const GENERATION: usize = std::mem::offset_of!(types::route_cache_bucket, generation);
    const _: () = assert!(BUCKET % 8 == 0 && GENERATION % 4 == 0);
    let buckets = route_cache_buckets(entries).max(1) as usize;
    let mapped = MappedArray::new(&maps.route_cache, buckets, BUCKET)?;
    // Each bucket's generation word, every BUCKET bytes from GENERATION.
    for word in mapped.words().iter().skip(GENERATION / 4).step_by(BUCKET / 4).take(buckets) {
        word.store(0, Ordering::Release);
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
