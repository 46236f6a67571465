//! The /16 summary in front of the main IPv6 trie, as DIR-24-8's `tbl16` is
//! for IPv4: per /16, the leaf of the longest prefix of /16 or shorter that
//! covers it when no longer prefix lies in it, else "ask the trie". A default
//! route (and any /16 without longer routes) is then answered by two array
//! reads the JIT inlines, not by a call into the kernel's trie.
//!
//! It wraps the trie as a [`RouteTable`]: every write goes to the trie first
//! (which always holds every IPv6 route), then the summary follows, so a
//! packet reads the old answer or the new one, never a wrong one. A prefix of
//! /16 or shorter has a slot in `route6_short`, whose 8-byte word names its
//! value in `route6_values` and its counter: replacing a route is one store.
//! When the slots run out, the /16s such a prefix would answer are sent to
//! the trie instead. The entries are derived, like DIR-24-8's: from the set
//! of prefixes, which the trie holds and the RIB decides.

use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use ipnetwork::{IpNetwork, Ipv6Network};
use rustc_hash::{FxHashMap, FxHashSet};

use super::key::RouteKey;
use super::table::{Entry, RouteTable};
use crate::abi::{self, types};
use crate::dataplane::EncapMaps;
use crate::error::{MapError, RouteError};
use crate::rib::alloc::Slots;
use crate::sys::map::BpfMap;
use crate::sys::mmap::MappedArray;

const DEPTH_SHIFT: u32 = types::encap_dir::DIR_DEPTH_SHIFT.0;
const BLOCK: u32 = types::encap_dir::DIR_BLOCK.0;
const DESCEND: u32 = types::encap_dir::DIR_DESCEND.0;
const SLOTS: u32 = types::encap_limits::ENCAP_V6_SHORT_SLOTS.0;
const VALUES: u32 = types::encap_limits::ENCAP_V6_SHORT_VALUES.0;
const SIXTEENS: u32 = 1 << 16;
/// `dir_prefix.len` of a free slot.
const FREE: u8 = 0xff;
const VALUE_SIZE: usize = std::mem::size_of::<types::route_value>();
const PREFIX_SIZE: usize = std::mem::size_of::<types::dir_prefix>();
const KEY_SIZE: usize = std::mem::size_of::<types::route_key_v6>();

/// The summary and the trie it stands in front of.
#[derive(Debug)]
pub(crate) struct Summary6 {
    trie: BpfMap,
    tbl16: MappedArray,
    short: MappedArray,
    values: MappedArray,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Prefixes of /16 or shorter, with their slot (`None`: the slots ran
    /// out, their /16s go to the trie).
    shorts: FxHashMap<Ipv6Network, Option<u32>>,
    /// Prefixes longer than /16, and how many lie in each /16.
    long: FxHashSet<Ipv6Network>,
    longer: Vec<u32>,
    slots: Slots,
    values: Slots,
}

/// What the trie holds: its prefixes longer than /16, and the value of
/// each of /16 or shorter.
#[derive(Default)]
struct TriePrefixes {
    long: FxHashSet<Ipv6Network>,
    short: FxHashMap<Ipv6Network, Vec<u8>>,
}

/// The /16 a prefix starts in.
fn sixteen(p: &Ipv6Network) -> u32 {
    (u128::from(p.network()) >> 112) as u32
}

/// The /16s a prefix of /16 or shorter covers: first, count.
fn sixteens(p: &Ipv6Network) -> (u32, u32) {
    (sixteen(p), 1u32 << (16 - u32::from(p.prefix().min(16))))
}

fn bad(op: &'static str) -> RouteError {
    RouteError::Map(MapError { map: "routes_v6", op, errno: nix::errno::Errno::EINVAL })
}

fn decode(key: &[u8]) -> Option<Ipv6Network> {
    match RouteKey::from_v6_bytes(key)? {
        IpNetwork::V6(p) => Some(p),
        IpNetwork::V4(_) => None,
    }
}

impl State {
    fn empty() -> State {
        State {
            shorts: FxHashMap::default(),
            long: FxHashSet::default(),
            longer: vec![0; SIXTEENS as usize],
            slots: Slots::new(SLOTS),
            values: Slots::new(VALUES),
        }
    }

    /// What /16 `k`'s entry should be.
    fn want(&self, k: u32) -> u32 {
        if self.longer.get(k as usize).is_some_and(|n| *n > 0) {
            return DESCEND;
        }
        let addr = u128::from(k) << 112;
        for len in (0..=16u8).rev() {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            let Ok(p) = Ipv6Network::new(Ipv6Addr::from(addr & mask), len) else { continue };
            if let Some(slot) = self.shorts.get(&p) {
                return slot.map_or(DESCEND, |s| (u32::from(len) << DEPTH_SHIFT) | s);
            }
        }
        0
    }
}

impl Summary6 {
    /// Maps the summary of a dataplane's maps; with `adopt`, reads back what
    /// an earlier process wrote (the prefixes from the trie, the slots from
    /// their records) and, unless `read_only`, completes what it left half
    /// done.
    pub(crate) fn open(maps: &EncapMaps, adopt: bool, read_only: bool) -> Result<Summary6, MapError> {
        let fd = maps.routes_v6.fd().try_clone_to_owned().map_err(|e| MapError {
            map: "routes_v6",
            op: "dup",
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
        let summary = Summary6 {
            trie: BpfMap::from_fd(fd, "routes_v6")?,
            tbl16: MappedArray::new(&maps.route6_tbl16, (SIXTEENS / BLOCK) as usize, 4 * BLOCK as usize)?,
            short: MappedArray::new(&maps.route6_short, SLOTS as usize, PREFIX_SIZE)?,
            values: MappedArray::new(&maps.route6_values, VALUES as usize, VALUE_SIZE)?,
            state: Mutex::new(State::empty()),
        };
        if adopt {
            summary.read_back(read_only)?;
        }
        Ok(summary)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn words(&self) -> &[AtomicU32] {
        self.tbl16.words()
    }

    /// Rewrites /16s `first..first + count` to what the prefixes say.
    fn repaint(&self, st: &State, first: u32, count: u32) {
        for (k, w) in (first..).zip(self.words().iter().skip(first as usize).take(count as usize)) {
            let want = st.want(k);
            if w.load(Ordering::Acquire) != want {
                w.store(want, Ordering::Release);
            }
        }
    }

    fn record(&self, slot: u32) -> Option<types::dir_prefix> {
        abi::from_bytes(&self.short.read_bytes(slot as usize, PREFIX_SIZE)?)
    }

    /// Writes `value` for `prefix` into a fresh value index; its index.
    fn write_value(&self, st: &mut State, value: &types::route_value) -> Result<u32, RouteError> {
        let index = st.values.take_or_wait().ok_or_else(|| bad("update"))?;
        self.values.write_bytes(index as usize, abi::bytes_of(value));
        Ok(index)
    }

    /// The summary's part of a write the trie has taken: `prefix` -> `value`.
    fn added(&self, st: &mut State, prefix: Ipv6Network, value: &[u8]) -> Result<(), RouteError> {
        if prefix.prefix() > 16 {
            if st.long.insert(prefix) {
                let k = sixteen(&prefix);
                if let Some(n) = st.longer.get_mut(k as usize) {
                    *n += 1;
                }
                self.repaint(st, k, 1);
            }
            return Ok(());
        }
        let mut v: types::route_value = abi::from_bytes(value).ok_or_else(|| bad("update"))?;
        let counter = v.counter_id;
        v.counter_id = 0;
        match st.shorts.get(&prefix).copied() {
            // Replaced: the new value first, then value and counter in one store.
            Some(Some(slot)) => {
                let old = self.record(slot).map(|r| r.value);
                let index = self.write_value(st, &v)?;
                self.short.store_u64(slot as usize, (u64::from(counter) << 32) | u64::from(index));
                if let Some(old) = old {
                    st.values.give_back(old);
                }
            }
            // Past the slots: the trie answers for it.
            Some(None) => {}
            None => {
                let slot = st.slots.take();
                if let Some(slot) = slot {
                    let index = match self.write_value(st, &v) {
                        Ok(i) => i,
                        Err(e) => {
                            st.slots.give_back(slot);
                            return Err(e);
                        }
                    };
                    let mut addr = [0u8; 4];
                    addr.copy_from_slice(&prefix.network().octets()[..4]);
                    let rec = types::dir_prefix {
                        value: index,
                        counter_id: counter,
                        addr,
                        len: prefix.prefix(),
                        pad: [0; 3],
                    };
                    self.short.write_bytes(slot as usize, abi::bytes_of(&rec));
                } else {
                    log::debug!("IPv6 /16 summary: {prefix} past its {} slots, answered by the trie", SLOTS - 1);
                }
                st.shorts.insert(prefix, slot);
                let (first, count) = sixteens(&prefix);
                self.repaint(st, first, count);
            }
        }
        Ok(())
    }

    /// The summary's part of a deletion the trie has done.
    fn removed(&self, st: &mut State, prefix: Ipv6Network) {
        if prefix.prefix() > 16 {
            if st.long.remove(&prefix) {
                let k = sixteen(&prefix);
                if let Some(n) = st.longer.get_mut(k as usize) {
                    *n = n.saturating_sub(1);
                }
                self.repaint(st, k, 1);
            }
            return;
        }
        let Some(slot) = st.shorts.remove(&prefix) else { return };
        let (first, count) = sixteens(&prefix);
        self.repaint(st, first, count);
        if let Some(slot) = slot {
            // Free for adoption; value and counter stay readable for packets
            // in flight until the grace period is over.
            self.short.store_u32(slot as usize, 12, u32::from(FREE));
            if let Some(rec) = self.record(slot) {
                st.values.give_back(rec.value);
            }
            st.slots.give_back(slot);
        }
    }

    /// The trie's prefixes, and the value of each of /16 or shorter.
    fn trie_prefixes(&self) -> Result<TriePrefixes, MapError> {
        let mut out = TriePrefixes::default();
        for key in self.trie.keys(usize::MAX)? {
            let Some(p) = decode(&key) else { continue };
            if p.prefix() > 16 {
                out.long.insert(p);
            } else if let Some(value) = self.trie.lookup(&key)? {
                out.short.insert(p, value);
            }
        }
        Ok(out)
    }

    /// Adoption: the prefixes from the trie, the slots their records name.
    fn read_back(&self, read_only: bool) -> Result<(), MapError> {
        let TriePrefixes { long, short } = self.trie_prefixes()?;
        let mut st = self.lock();
        let (mut used_slots, mut used_values) = (Vec::new(), Vec::new());
        for slot in 1..SLOTS {
            let Some(rec) = self.record(slot) else { continue };
            if rec.len > 16 || rec.value == 0 {
                continue;
            }
            let mut octets = [0u8; 16];
            octets[..4].copy_from_slice(&rec.addr);
            let Ok(p) = Ipv6Network::new(Ipv6Addr::from(octets), rec.len) else { continue };
            if short.contains_key(&p) {
                st.shorts.insert(p, Some(slot));
                used_slots.push(slot);
                used_values.push(rec.value);
            }
        }
        for p in short.keys() {
            st.shorts.entry(*p).or_insert(None);
        }
        for p in &long {
            if let Some(n) = st.longer.get_mut(sixteen(p) as usize) {
                *n += 1;
            }
        }
        st.long = long;
        st.slots = Slots::from_used(used_slots, SLOTS);
        st.values = Slots::from_used(used_values, VALUES);
        // What an earlier process left half done is made whole.
        if !read_only {
            self.repaint(&st, 0, SIXTEENS);
        }
        Ok(())
    }

    /// The /16s whose entries, or the prefixes whose records, are not what
    /// the trie's prefixes imply (a write the summary did not see).
    pub(crate) fn inconsistent(&self) -> Result<Vec<Ipv6Network>, MapError> {
        let TriePrefixes { long, short } = self.trie_prefixes()?;
        let st = self.lock();
        let mut out: Vec<Ipv6Network> = long.symmetric_difference(&st.long).copied().collect();
        for p in short
            .keys()
            .filter(|p| !st.shorts.contains_key(p))
            .chain(st.shorts.keys().filter(|p| !short.contains_key(p)))
        {
            out.push(*p);
        }
        for (p, value) in &short {
            let Some(Some(slot)) = st.shorts.get(p) else { continue };
            let same = self.record(*slot).is_some_and(|rec| {
                let stored = self.values.read_bytes(rec.value as usize, VALUE_SIZE);
                abi::from_bytes::<types::route_value>(value).is_some_and(|mut v| {
                    let counter = v.counter_id;
                    v.counter_id = 0;
                    counter == rec.counter_id && stored.as_deref() == Some(abi::bytes_of(&v))
                })
            });
            if !same {
                out.push(*p);
            }
        }
        for (k, w) in (0..SIXTEENS).zip(self.words()) {
            if w.load(Ordering::Acquire) != st.want(k) {
                if let Ok(p) = Ipv6Network::new(Ipv6Addr::from(u128::from(k) << 112), 16) {
                    out.push(p);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Brings the summary back in line with the trie's prefixes: every
    /// prefix the trie holds is (re)written, every other one let go, then
    /// every /16 repainted.
    pub(crate) fn resync(&self) -> Result<(), RouteError> {
        let TriePrefixes { long, short } = self.trie_prefixes()?;
        let mut st = self.lock();
        let gone: Vec<Ipv6Network> = st
            .long
            .iter()
            .filter(|p| !long.contains(p))
            .chain(st.shorts.keys().filter(|p| !short.contains_key(p)))
            .copied()
            .collect();
        for p in gone {
            self.removed(&mut st, p);
        }
        for p in long {
            self.added(&mut st, p, &[])?;
        }
        for (p, value) in short {
            // Rewritten whatever the record says: one store if it was right.
            self.added(&mut st, p, &value)?;
        }
        self.repaint(&st, 0, SIXTEENS);
        Ok(())
    }

    /// After a batch the trie took only in part: the summary follows each
    /// key of it as the trie now has it.
    fn follow_trie(&self, st: &mut State, keys: &[u8]) -> Result<(), RouteError> {
        for key in keys.chunks_exact(KEY_SIZE) {
            let prefix = decode(key).ok_or_else(|| bad("update_batch"))?;
            match self.trie.lookup(key)? {
                Some(value) => self.added(st, prefix, &value)?,
                None => self.removed(st, prefix),
            }
        }
        Ok(())
    }
}

impl RouteTable for Summary6 {
    fn name(&self) -> &'static str {
        self.trie.name()
    }

    fn update(&self, key: &[u8], value: &[u8]) -> Result<(), RouteError> {
        let prefix = decode(key).ok_or_else(|| bad("update"))?;
        let mut st = self.lock();
        self.trie.update(key, value)?;
        self.added(&mut st, prefix, value)
    }

    fn update_batch(&self, keys: &[u8], values: &[u8]) -> Result<(), RouteError> {
        if keys.len() / KEY_SIZE != values.len() / VALUE_SIZE {
            return Err(bad("update_batch"));
        }
        let mut st = self.lock();
        if let Err(e) = self.trie.update_batch(keys, values) {
            self.follow_trie(&mut st, keys)?;
            return Err(e.into());
        }
        for (key, value) in keys.chunks_exact(KEY_SIZE).zip(values.chunks_exact(VALUE_SIZE)) {
            let prefix = decode(key).ok_or_else(|| bad("update_batch"))?;
            self.added(&mut st, prefix, value)?;
        }
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<bool, RouteError> {
        let prefix = decode(key).ok_or_else(|| bad("delete"))?;
        let mut st = self.lock();
        let existed = self.trie.delete(key)?;
        self.removed(&mut st, prefix);
        Ok(existed)
    }

    fn delete_batch(&self, keys: &[u8]) -> Result<(), RouteError> {
        let mut st = self.lock();
        if let Err(e) = self.trie.delete_batch(keys) {
            self.follow_trie(&mut st, keys)?;
            return Err(e.into());
        }
        for key in keys.chunks_exact(KEY_SIZE) {
            let prefix = decode(key).ok_or_else(|| bad("delete_batch"))?;
            self.removed(&mut st, prefix);
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<Entry>, MapError> {
        RouteTable::entries(&self.trie)
    }
}
