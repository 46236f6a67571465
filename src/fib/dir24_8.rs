//! DIR-24-8 for the main IPv4 table (Gupta, Lin, McKeown 1998; DPDK's
//! rte_lpm): every /24 has an entry in `tbl24`; a /24 that holds longer
//! prefixes points at a group of 256 entries in `tbl8`. A packet's route is
//! one or two array reads away whatever the table's size.
//!
//! Leaves name a prefix slot; the slot holds the route value's index and the
//! counter slot in one 8-byte word, so replacing a route is one store, and
//! routes with the same labels share one value. Adding or removing a prefix
//! repaints the entries it covers, each an atomic 4-byte store: a packet
//! sees the old route or the new one, per address. The maps are memory
//! mapped: a full table is written with plain stores, not syscalls.
//!
//! The structure is derived: every entry follows from the set of prefixes,
//! which is the RIB's. A leaf records its prefix's length, so that painting
//! a prefix overwrites exactly the entries no longer prefix covers.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use ipnetwork::{IpNetwork, Ipv4Network};

use super::key::RouteKey;
use super::table::{Entry, RouteTable};
use crate::abi::{self, types};
use crate::dataplane::{EncapMaps, DIR_TBL16_ELEMENTS, DIR_TBL24_ELEMENTS};
use crate::error::{MapError, RouteError};
use crate::rib::alloc::Slots;
use crate::rib::store::LoadConfig;
use crate::sys::mmap::MappedArray;

const GROUP: u32 = types::encap_dir::DIR_GROUP.0;
const DEPTH_SHIFT: u32 = types::encap_dir::DIR_DEPTH_SHIFT.0;
const SLOT_MASK: u32 = types::encap_dir::DIR_SLOT_MASK.0;
const BLOCK: u32 = types::encap_dir::DIR_BLOCK.0;
const DESCEND: u32 = types::encap_dir::DIR_DESCEND.0;
/// `dir_prefix.len` of a free slot.
const FREE: u8 = 0xff;
/// Bytes of a `route_value`; its counter id is the last word.
const VALUE_SIZE: usize = std::mem::size_of::<types::route_value>();
const PREFIX_SIZE: usize = std::mem::size_of::<types::dir_prefix>();

fn load(words: &[AtomicU32], i: usize) -> u32 {
    words.get(i).map_or(0, |w| w.load(Ordering::Acquire))
}

/// Stores an entry after every earlier write: a packet that reads it finds
/// what it points at.
fn store(words: &[AtomicU32], i: usize, e: u32) {
    if let Some(w) = words.get(i) {
        w.store(e, Ordering::Release);
    }
}

fn leaf(slot: u32, len: u8) -> u32 {
    (u32::from(len) << DEPTH_SHIFT) | slot
}

fn is_group(e: u32) -> bool {
    e & GROUP != 0
}

/// True when a prefix of `len` may paint over entry `e` (empty, or a
/// prefix no longer than it).
fn covers(e: u32, len: u8) -> bool {
    e == 0 || (e >> DEPTH_SHIFT) & 0x7f <= u32::from(len)
}

/// The kernel's table, mapped, and the bookkeeping to change it.
#[derive(Debug)]
pub(crate) struct Dir24_8 {
    tbl16: MappedArray,
    tbl24: MappedArray,
    tbl8: MappedArray,
    prefixes: MappedArray,
    values: MappedArray,
    capacity: u32,
    groups: u32,
    route_values: u32,
    state: Mutex<State>,
    /// Adopted, and the bookkeeping not read back yet: it is on the first
    /// use, so a process that only reads (get, stats) never pays for it.
    unread: AtomicBool,
}

#[derive(Debug)]
struct State {
    /// Every prefix's slot; with `scope`, only that prefix's and those of
    /// the prefixes covering it (what changing it reads).
    slot_of: FxHashMap<Ipv4Network, u32>,
    /// Read back for a change of one prefix ([`Dir24_8::read_back_for`]).
    scope: Option<Scope>,
    /// Per /16: how many prefixes longer than /16 lie in it (none: its
    /// tbl16 entry is the leaf all its /24s share).
    longer: Vec<u32>,
    slots: Slots,
    groups: Slots,
    values: Slots,
    /// A value's bytes (counter id zero) -> its index and how many prefixes
    /// use it (the bytes of an index are read back from the mapped values).
    value_index: FxHashMap<ValueBytes, (u32, u32)>,
}

/// What a read-back for one prefix keeps instead of the maps of every
/// prefix and value.
#[derive(Debug)]
struct Scope {
    prefix: Ipv4Network,
    /// How many prefixes use each value index: `value_index` holds only the
    /// values looked up since ([`Dir24_8::index_on_demand`]).
    users: Vec<u32>,
    /// The /24s holding longer prefixes, whose groups are looked up (a
    /// cache miss each in 64 MiB of tbl24) only if the change takes or
    /// frees a group ([`Dir24_8::groups`]); `None` once they were.
    long: Option<Vec<u32>>,
}

/// A route value's bytes, the key values are shared by.
type ValueBytes = [u8; VALUE_SIZE];

/// A route value without its counter id (what prefixes share), and that id.
fn split_value(value: &[u8]) -> Option<(ValueBytes, u32)> {
    let mut v: types::route_value = abi::from_bytes(value)?;
    let counter = v.counter_id;
    v.counter_id = 0;
    Some((abi::bytes_of(&v).try_into().ok()?, counter))
}

fn bad(op: &'static str) -> RouteError {
    RouteError::Map(MapError { map: "dir4_prefixes", op, errno: nix::errno::Errno::EINVAL })
}

fn decode_key(key: &[u8]) -> Option<Ipv4Network> {
    match RouteKey::from_v4_bytes(key)? {
        IpNetwork::V4(p) => Some(p),
        IpNetwork::V6(_) => None,
    }
}

impl Dir24_8 {
    /// Maps the DIR-24-8 maps of a dataplane loaded with `config`; with
    /// `adopt`, reads back what an earlier process wrote.
    pub(crate) fn open(maps: &EncapMaps, config: &LoadConfig, adopt: bool) -> Result<Dir24_8, MapError> {
        let capacity = config.max_routes_v4.saturating_add(1);
        let dir = Dir24_8 {
            tbl16: MappedArray::new(&maps.dir4_tbl16, DIR_TBL16_ELEMENTS as usize, 4 * BLOCK as usize)?,
            tbl24: MappedArray::new(&maps.dir4_tbl24, DIR_TBL24_ELEMENTS as usize, 4 * BLOCK as usize)?,
            tbl8: MappedArray::new(&maps.dir4_tbl8, config.dir_groups as usize, 1024)?,
            prefixes: MappedArray::new(&maps.dir4_prefixes, capacity as usize, PREFIX_SIZE)?,
            values: MappedArray::new(&maps.dir4_values, config.route_values as usize, VALUE_SIZE)?,
            capacity,
            groups: config.dir_groups,
            route_values: config.route_values,
            unread: AtomicBool::new(adopt),
            state: Mutex::new(State {
                slot_of: FxHashMap::default(),
                scope: None,
                longer: vec![0; 1 << 16],
                slots: Slots::new(capacity),
                groups: Slots::new(config.dir_groups),
                values: Slots::new(config.route_values),
                value_index: FxHashMap::default(),
            }),
        };
        Ok(dir)
    }

    /// The bookkeeping of every prefix.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.lock_for(None)
    }

    /// The bookkeeping, read back first if it was not, or if it was for one
    /// prefix other than `prefix` (`None`: for every prefix).
    fn lock_for(&self, prefix: Option<Ipv4Network>) -> MutexGuard<'_, State> {
        // Every change completes its kernel writes before it records them.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let unread = self.unread.swap(false, Ordering::AcqRel);
        if unread || st.scope.as_ref().is_some_and(|scope| Some(scope.prefix) != prefix) {
            self.read_back(&mut st);
        }
        st
    }

    /// The prefix of a batch of one key (a one-route change is written as a batch too).
    fn single(keys: &[u8]) -> Option<Ipv4Network> {
        (keys.len() == std::mem::size_of::<types::route_key_v4>()).then(|| decode_key(keys)).flatten()
    }

    /// Reads back only what changing `prefix` needs: every count and pool,
    /// but the slots of that prefix and those covering it only, and the
    /// groups from the /24s holding longer prefixes (not a scan of 64 MiB of
    /// tbl24). What a command that changes one route pays; anything else
    /// asked of the table afterwards reads it all back first.
    pub(crate) fn read_back_for(&self, prefix: Ipv4Network) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.unread.store(false, Ordering::Release);
        self.read_back_scoped(&mut st, prefix);
    }

    /// Reads the bookkeeping back now if it was not (adoption), rather
    /// than on the first change.
    pub(crate) fn read_back_now(&self) {
        drop(self.lock());
    }

    fn get16(&self, k: u32) -> u32 {
        load(self.tbl16.words(), k as usize)
    }

    fn set16(&self, k: u32, e: u32) {
        store(self.tbl16.words(), k as usize, e);
    }

    /// What /16 `k`'s summary should be: its /24s' shared leaf, or "read tbl24".
    fn summary(&self, longer: &[u32], k: u32) -> u32 {
        match longer.get(k as usize) {
            Some(0) => self.get24(k << 8),
            _ => DESCEND,
        }
    }

    /// Rewrites the summaries of /16s `first..first + count` after their /24s changed.
    fn summarize(&self, st: &State, first: u32, count: u32) {
        for k in first..first + count {
            self.set16(k, self.summary(&st.longer, k));
        }
    }

    fn get24(&self, i: u32) -> u32 {
        load(self.tbl24.words(), i as usize)
    }

    fn set24(&self, i: u32, e: u32) {
        store(self.tbl24.words(), i as usize, e);
    }

    fn get8(&self, g: u32, j: u32) -> u32 {
        load(self.tbl8.words(), (g * 256 + j) as usize)
    }

    fn set8(&self, g: u32, j: u32, e: u32) {
        store(self.tbl8.words(), (g * 256 + j) as usize, e);
    }

    /// tbl24 entries `start..start + count`, for loops over many.
    fn range24(&self, start: u32, count: u32) -> &[AtomicU32] {
        self.tbl24.words().get(start as usize..(start + count) as usize).unwrap_or_default()
    }

    /// Rebuilds the bookkeeping from the mapped tables (adoption): the
    /// prefixes from their slots, the values they use, the groups tbl24 names.
    fn read_back(&self, st: &mut State) {
        let started = std::time::Instant::now();
        // Read back for one prefix before: ids this process freed above the
        // highest in use keep their grace period (rebuilt free from `next`).
        let before = st.scope.as_ref().map(|_| (st.slots.next(), st.groups.next(), st.values.next()));
        let mut used_slots = Vec::new();
        // The 64 MiB of tbl24 are scanned for groups on another core while
        // this one reads the prefixes: the two share nothing.
        let (used_groups, found) = std::thread::scope(|s| {
            let groups = s.spawn(|| {
                self.range24(0, 1 << 24)
                    .iter()
                    .map(|w| w.load(Ordering::Acquire))
                    .filter(|e| is_group(*e))
                    .map(|e| e & SLOT_MASK)
                    .collect::<Vec<u32>>()
            });
            let mut found = Vec::new();
            self.each_prefix(|slot, prefix, value| found.push((prefix, slot, value)));
            (groups.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), found)
        });
        // Prefixes per value index first: a million prefixes share a few
        // thousand values, so each value's bytes are hashed once, not once a prefix.
        let mut users = vec![0u32; self.route_values as usize];
        st.slot_of.clear();
        // Sized once: a million inserts into a growing map rehash it twenty times.
        st.slot_of.reserve(found.len());
        used_slots.reserve(found.len());
        for (prefix, slot, value) in found {
            st.slot_of.insert(prefix, slot);
            used_slots.push(slot);
            if let Some(n) = users.get_mut(value as usize) {
                *n += 1;
            }
        }
        let used_values = self.index_values(st, users);
        st.longer = Self::count_longer(&st.slot_of);
        st.scope = None;
        // Freed entries may have been freed just before: a grace period from now.
        let now = crate::rib::alloc::Boottime::now();
        let restore = |used: &[u32], capacity: u32, before: u32| {
            let next = used.iter().copied().max().unwrap_or(0).max(before);
            Slots::rebuild(next, capacity, used.iter().copied(), now, false)
        };
        let (slots, groups, values) = before.unwrap_or_default();
        st.slots = restore(&used_slots, self.capacity, slots);
        st.groups = restore(&used_groups, self.groups, groups);
        st.values = restore(&used_values, self.route_values, values);
        log::debug!("DIR-24-8 bookkeeping read back: {} prefixes in {:?}", st.slot_of.len(), started.elapsed());
    }

    /// [`Dir24_8::read_back_for`]: one pass over the prefix slots, keeping
    /// counts, not a map of a million prefixes. Slots and groups are taken
    /// above the highest in use (one freed below it is found by the whole
    /// read-back, which a refusal for want of room falls back to).
    fn read_back_scoped(&self, st: &mut State, scope: Ipv4Network) {
        let started = std::time::Instant::now();
        let mut users = vec![0u32; self.route_values as usize];
        let mut longer = vec![0u32; 1 << 16];
        let (mut highest_slot, mut used_slots, mut long) = (0u32, 0u32, Vec::new());
        st.slot_of.clear();
        self.each_prefix(|slot, prefix, value| {
            highest_slot = slot;
            used_slots += 1;
            if let Some(n) = users.get_mut(value as usize) {
                *n += 1;
            }
            let (len, base) = (prefix.prefix(), u32::from(prefix.network()));
            if len > 16 {
                if let Some(n) = longer.get_mut((base >> 16) as usize) {
                    *n += 1;
                }
            }
            if len > 24 {
                long.push(base >> 8);
            }
            if len <= scope.prefix() && prefix.contains(scope.network()) {
                st.slot_of.insert(prefix, slot);
            }
        });
        st.value_index.clear();
        let used_values: Vec<u32> = (0u32..).zip(users.iter()).filter(|(_, n)| **n > 0).map(|(i, _)| i).collect();
        st.scope = Some(Scope { prefix: scope, users, long: Some(long) });
        st.longer = longer;
        let now = crate::rib::alloc::Boottime::now();
        st.slots = Slots::above(highest_slot, self.capacity, highest_slot - used_slots);
        let next = used_values.iter().copied().max().unwrap_or(0);
        st.values = Slots::rebuild(next, self.route_values, used_values, now, false);
        log::debug!(
            "DIR-24-8 bookkeeping read back for {scope}: {used_slots} prefixes counted, {} named, in {:?}",
            st.slot_of.len(),
            started.elapsed()
        );
    }

    /// The groups' pool, found first when read back for one prefix: a /24
    /// holds a group exactly while a prefix longer than /24 lies in it (the
    /// last one's removal collapses it). Ids are taken above the highest in
    /// use, as for the slots.
    fn groups<'a>(&self, st: &'a mut State) -> &'a mut Slots {
        if let Some(mut long) = st.scope.as_mut().and_then(|scope| scope.long.take()) {
            long.sort_unstable();
            long.dedup();
            let mut groups: Vec<u32> =
                long.into_iter().map(|i| self.get24(i)).filter(|e| is_group(*e)).map(|e| e & SLOT_MASK).collect();
            groups.sort_unstable();
            groups.dedup();
            let highest = groups.last().copied().unwrap_or(0);
            st.groups = Slots::above(highest, self.groups, highest.saturating_sub(groups.len() as u32));
        }
        &mut st.groups
    }

    /// Calls `f` with every prefix in the slots (its slot, prefix and value
    /// index), in slot order. Read in place, a word at a time (value,
    /// counter, address, length): two million slots copied out one by one
    /// cost more than the rest of the read-back.
    fn each_prefix(&self, mut f: impl FnMut(u32, Ipv4Network, u32)) {
        const _: () = assert!(PREFIX_SIZE == 16);
        let records = self.prefixes.words().chunks_exact(4).take(self.capacity as usize).enumerate().skip(1);
        for (slot, words) in records {
            let [value, _, addr, len] = words else { continue };
            let value = value.load(Ordering::Acquire);
            if value == 0 {
                continue;
            }
            let [len, ..] = len.load(Ordering::Acquire).to_ne_bytes();
            let addr = Ipv4Addr::from(addr.load(Ordering::Acquire).to_ne_bytes());
            let Ok(prefix) = Ipv4Network::new(addr, len) else { continue };
            f(slot as u32, prefix, value);
        }
    }

    /// Indexes the values in use by their bytes, from how many prefixes use
    /// each index; returns the indices in use.
    fn index_values(&self, st: &mut State, users: Vec<u32>) -> Vec<u32> {
        let mut used = Vec::new();
        st.value_index.clear();
        for (index, n) in users.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            let index = index as u32;
            if let Some(bytes) = self.value_bytes(index) {
                let entry = st.value_index.entry(bytes).or_insert((index, 0));
                if entry.0 == index {
                    used.push(index);
                }
                entry.1 += n;
            }
        }
        used
    }

    /// The bytes of value `index`, read back from the mapped table.
    fn value_bytes(&self, index: u32) -> Option<ValueBytes> {
        self.values.read_bytes(index as usize, VALUE_SIZE)?.try_into().ok()
    }

    /// The value index for `bytes`, shared or new; `None` when the table of
    /// values is full.
    fn intern(&self, st: &mut State, bytes: &ValueBytes) -> Option<u32> {
        self.index_on_demand(st, bytes);
        if let Some(e) = st.value_index.get_mut(bytes) {
            e.1 += 1;
            return Some(e.0);
        }
        let index = st.values.take_or_wait()?;
        self.values.write_bytes(index as usize, bytes);
        st.value_index.insert(*bytes, (index, 1));
        Some(index)
    }

    /// Writes back every interned value whose bytes in the kernel are not
    /// the ones interned there (someone else's write), and returns their
    /// indices. `repair` needs it: rewriting a prefix interns the same bytes
    /// and keeps the same index, so it would leave the value as found.
    /// Packets may be reading one meanwhile (against `write_bytes`' rule):
    /// they were reading foreign bytes already, and may see a mix for the
    /// moment of the copy.
    pub(crate) fn restore_values(&self) -> Vec<u32> {
        let st = self.lock();
        let mut out = Vec::new();
        for (bytes, (index, _)) in &st.value_index {
            if !self.values.holds(*index as usize, bytes) {
                self.values.write_bytes(*index as usize, bytes);
                out.push(*index);
            }
        }
        out
    }

    /// One prefix less uses value `index`; the last one frees it (after the
    /// grace period, for packets still reading it).
    fn release(&self, st: &mut State, index: u32) {
        let Some(bytes) = self.value_bytes(index) else { return };
        self.index_on_demand(st, &bytes);
        let last = match st.value_index.get_mut(&bytes) {
            Some(e) if e.0 == index => {
                e.1 = e.1.saturating_sub(1);
                e.1 == 0
            }
            _ => false,
        };
        if last {
            st.value_index.remove(&bytes);
            if let Some(n) = st.scope.as_mut().and_then(|scope| scope.users.get_mut(index as usize)) {
                *n = 0;
            }
            st.values.give_back(index);
        }
    }

    /// Read back for one prefix, the values are indexed by their bytes only
    /// as a change asks for them (hashing a hundred thousand values costs
    /// more than a one-route change): `bytes` is looked for among the values
    /// in use, in index order (the index the whole read-back would keep).
    fn index_on_demand(&self, st: &mut State, bytes: &ValueBytes) {
        let Some(Scope { users, .. }) = &st.scope else { return };
        if st.value_index.contains_key(bytes) {
            return;
        }
        let found = (0u32..).zip(users.iter()).find(|(i, n)| **n > 0 && self.value_bytes(*i).as_ref() == Some(bytes));
        if let Some((index, n)) = found {
            st.value_index.insert(*bytes, (index, *n));
        }
    }

    fn record(&self, slot: u32) -> Option<types::dir_prefix> {
        abi::from_bytes(&self.prefixes.read_bytes(slot as usize, PREFIX_SIZE)?)
    }

    fn set(&self, st: &mut State, prefix: Ipv4Network, value: &[u8]) -> Result<(), RouteError> {
        let (bytes, counter) = split_value(value).ok_or_else(|| bad("update"))?;
        if let Some(&slot) = st.slot_of.get(&prefix) {
            let old = self.record(slot).map(|r| r.value);
            let index = self.intern(st, &bytes).ok_or(self.values_full())?;
            // Value and counter in one store: a packet sees the old pair or the new.
            self.prefixes.store_u64(slot as usize, (u64::from(counter) << 32) | u64::from(index));
            if let Some(old) = old {
                self.release(st, old);
            }
            return Ok(());
        }
        let len = prefix.prefix();
        let base = u32::from(prefix.network());
        if st.scope.is_some() && self.pools_short(st, len, base) {
            // Ids free below the highest in use are named by the whole read-back only.
            self.read_back(st);
        }
        // Everything this prefix needs is taken before anything is written.
        let slot = st.slots.take_or_wait().ok_or(RouteError::full("IPv4", self.capacity - 1))?;
        let index = match self.intern(st, &bytes) {
            Some(i) => i,
            None => {
                st.slots.give_back(slot);
                return Err(self.values_full());
            }
        };
        let mut new_group = None;
        if len > 24 && !is_group(self.get24(base >> 8)) {
            match self.groups(st).take_or_wait() {
                Some(g) => new_group = Some(g),
                None => {
                    st.slots.give_back(slot);
                    self.release(st, index);
                    return Err(self.groups_full());
                }
            }
        }
        let rec =
            types::dir_prefix { value: index, counter_id: counter, addr: prefix.network().octets(), len, pad: [0; 3] };
        self.prefixes.write_bytes(slot as usize, abi::bytes_of(&rec));
        if let Some(g) = new_group {
            // Filled with what the /24 holds before tbl24 points at it.
            let i = base >> 8;
            let under = self.get24(i);
            for j in 0..256 {
                self.set8(g, j, under);
            }
            self.set24(i, GROUP | g);
        }
        let e = leaf(slot, len);
        Self::count_in_sixteen(st, prefix, true);
        self.paint(st, prefix, |old| covers(old, len).then_some(e));
        st.slot_of.insert(prefix, slot);
        Ok(())
    }

    /// Whether a new prefix of `len` at `base` needs an id (a slot, a group)
    /// that a bookkeeping read back for one prefix cannot hand out now.
    fn pools_short(&self, st: &mut State, len: u8, base: u32) -> bool {
        let needs_group = len > 24 && !is_group(self.get24(base >> 8));
        st.slots.available_now() == 0 || (needs_group && self.groups(st).available_now() == 0)
    }

    /// Keeps `longer` (prefixes longer than /16 per /16) current as `prefix` comes or goes.
    fn count_in_sixteen(st: &mut State, prefix: Ipv4Network, added: bool) {
        if prefix.prefix() <= 16 {
            return;
        }
        if let Some(n) = st.longer.get_mut((u32::from(prefix.network()) >> 16) as usize) {
            *n = if added { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    fn groups_full(&self) -> RouteError {
        RouteError::full("IPv4 /24s holding longer prefixes (DIR-24-8 groups)", self.groups - 1)
    }

    fn values_full(&self) -> RouteError {
        RouteError::full("distinct IPv4 route values (DIR-24-8)", self.route_values - 1)
    }

    /// The entry of the longest prefix shorter than `prefix` that covers it (0: none).
    fn parent_entry(st: &State, prefix: Ipv4Network) -> u32 {
        let addr = u32::from(prefix.network());
        (0..prefix.prefix())
            .rev()
            .find_map(|len| {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                let parent = Ipv4Network::new(Ipv4Addr::from(addr & mask), len).ok()?;
                st.slot_of.get(&parent).map(|slot| leaf(*slot, len))
            })
            .unwrap_or(0)
    }

    /// Rewrites every entry `prefix` covers (its /24s, and the groups under
    /// them; or its part of one group) to what `new` says of the entry there
    /// (`None`: leave it), then lets go of groups left uniform and brings the
    /// /16 summaries up to date. tbl24 is complete before any summary points
    /// at it or holds its leaf.
    fn paint(&self, st: &mut State, prefix: Ipv4Network, new: impl Fn(u32) -> Option<u32>) {
        let (len, base) = (prefix.prefix(), u32::from(prefix.network()));
        let paint_group = |g: u32, start: u32, count: u32| {
            for j in start..start + count {
                if let Some(e) = new(self.get8(g, j)) {
                    self.set8(g, j, e);
                }
            }
        };
        let mut groups = Vec::new();
        if len <= 24 {
            let start = base >> 8;
            for (i, w) in (start..).zip(self.range24(start, 1u32 << (24 - len))) {
                let old = w.load(Ordering::Acquire);
                if is_group(old) {
                    paint_group(old & SLOT_MASK, 0, 256);
                    groups.push((i, old & SLOT_MASK));
                } else if let Some(e) = new(old) {
                    w.store(e, Ordering::Release);
                }
            }
        } else {
            let i = base >> 8;
            let e = self.get24(i);
            if is_group(e) {
                paint_group(e & SLOT_MASK, base & 0xff, 1u32 << (32 - len));
                groups.push((i, e & SLOT_MASK));
            }
        }
        for (i, g) in groups {
            self.collapse(st, i, g);
        }
        let sixteens = if len > 16 { 1 } else { 1u32 << (16 - len) };
        self.summarize(st, base >> 16, sixteens);
    }

    fn remove(&self, st: &mut State, prefix: Ipv4Network) -> bool {
        let Some(slot) = st.slot_of.remove(&prefix) else { return false };
        let under = Self::parent_entry(st, prefix);
        Self::count_in_sixteen(st, prefix, false);
        self.paint(st, prefix, |old| (!is_group(old) && old & SLOT_MASK == slot).then_some(under));
        // Marked free for adoption; its value and counter stay readable for
        // packets in flight until the slot's grace period is over.
        self.prefixes.store_u32(slot as usize, 12, u32::from(FREE));
        if let Some(rec) = self.record(slot) {
            self.release(st, rec.value);
        }
        st.slots.give_back(slot);
        true
    }

    /// Replaces group `g` under /24 `i` by one tbl24 entry when its 256
    /// entries are all the same prefix of /24 or shorter (or empty).
    fn collapse(&self, st: &mut State, i: u32, g: u32) {
        let first = self.get8(g, 0);
        if !covers(first, 24) || (1..256).any(|j| self.get8(g, j) != first) {
            return;
        }
        self.set24(i, first);
        self.groups(st).give_back(g);
    }

    /// What the entries should be for the prefixes present, recomputed from
    /// them alone, compared with what they are: the /24s that differ.
    pub(crate) fn inconsistent(&self) -> Vec<Ipv4Network> {
        let st = self.lock();
        let (top, groups) = Self::paint_all(&st.slot_of);
        let mut out = Vec::new();
        for ((i, want), w) in (0u32..).zip(top.iter()).zip(self.range24(0, 1 << 24)) {
            let e = w.load(Ordering::Acquire);
            let same = match (is_group(e), groups.get(&i)) {
                (false, None) => e == *want,
                (true, Some(g)) => (0u32..).zip(g.iter()).all(|(j, w)| self.get8(e & SLOT_MASK, j) == *w),
                (false, Some(g)) => g.iter().all(|w| *w == e),
                (true, None) => (0..256).all(|j| self.get8(e & SLOT_MASK, j) == *want),
            };
            if !same {
                if let Ok(block) = Ipv4Network::new(Ipv4Addr::from(i << 8), 24) {
                    out.push(block);
                }
            }
        }
        let longer = Self::count_longer(&st.slot_of);
        for k in 0..(1u32 << 16) {
            let want = match longer.get(k as usize) {
                Some(0) => top.get((k << 8) as usize).copied().unwrap_or(0),
                _ => DESCEND,
            };
            if self.get16(k) != want {
                if let Ok(block) = Ipv4Network::new(Ipv4Addr::from(k << 16), 16) {
                    out.push(block);
                }
            }
        }
        out
    }

    /// Per /16, the prefixes longer than /16 in it.
    fn count_longer(slot_of: &FxHashMap<Ipv4Network, u32>) -> Vec<u32> {
        let mut longer = vec![0u32; 1 << 16];
        for p in slot_of.keys().filter(|p| p.prefix() > 16) {
            if let Some(n) = longer.get_mut((u32::from(p.network()) >> 16) as usize) {
                *n += 1;
            }
        }
        longer
    }

    /// Rewrites the /24s whose entries differ from what the prefixes imply.
    pub(crate) fn repaint(&self, blocks: &[Ipv4Network]) -> Result<(), RouteError> {
        let mut st = self.lock();
        let (top, groups) = Self::paint_all(&st.slot_of);
        for block in blocks.iter().filter(|b| b.prefix() == 24) {
            let i = u32::from(block.network()) >> 8;
            let e = self.get24(i);
            match groups.get(&i) {
                None => {
                    self.set24(i, top.get(i as usize).copied().unwrap_or(0));
                    if is_group(e) {
                        st.groups.give_back(e & SLOT_MASK);
                    }
                }
                Some(want) => {
                    let g =
                        if is_group(e) { e & SLOT_MASK } else { st.groups.take_or_wait().ok_or(self.groups_full())? };
                    for (j, w) in (0..256).zip(want.iter()) {
                        self.set8(g, j, *w);
                    }
                    self.set24(i, GROUP | g);
                }
            }
        }
        // tbl24 right, the summaries follow from it.
        st.longer = Self::count_longer(&st.slot_of);
        self.summarize(&st, 0, 1 << 16);
        Ok(())
    }

    /// Every entry from scratch: the /24 leaves, and the 256 leaves of each
    /// /24 holding a longer prefix. Shorter prefixes first, so longer ones
    /// paint over them.
    fn paint_all(slot_of: &FxHashMap<Ipv4Network, u32>) -> (Vec<u32>, HashMap<u32, Vec<u32>>) {
        let mut sorted: Vec<(&Ipv4Network, &u32)> = slot_of.iter().collect();
        sorted.sort_unstable_by_key(|(p, _)| p.prefix());
        let mut top = vec![0u32; 1 << 24];
        let mut groups: HashMap<u32, Vec<u32>> = HashMap::new();
        for (p, &slot) in sorted {
            let (len, base) = (p.prefix(), u32::from(p.network()));
            let e = leaf(slot, len);
            if len <= 24 {
                let start = base >> 8;
                for i in start..start + (1u32 << (24 - len)) {
                    if let Some(t) = top.get_mut(i as usize) {
                        *t = e;
                    }
                }
                // No group exists yet: groups come from prefixes longer than
                // /24, painted after every prefix of /24 or shorter.
            } else {
                let i = base >> 8;
                let under = top.get(i as usize).copied().unwrap_or(0);
                let g = groups.entry(i).or_insert_with(|| vec![under; 256]);
                let start = (base & 0xff) as usize;
                for x in g.iter_mut().skip(start).take(1 << (32 - len)) {
                    *x = e;
                }
            }
        }
        (top, groups)
    }
}

impl RouteTable for Dir24_8 {
    fn name(&self) -> &'static str {
        "dir4"
    }

    fn update(&self, key: &[u8], value: &[u8]) -> Result<(), RouteError> {
        let prefix = decode_key(key).ok_or_else(|| bad("update"))?;
        self.set(&mut self.lock_for(Some(prefix)), prefix, value)
    }

    fn update_batch(&self, keys: &[u8], values: &[u8]) -> Result<(), RouteError> {
        let key_size = std::mem::size_of::<types::route_key_v4>();
        if keys.len() / key_size != values.len() / VALUE_SIZE {
            return Err(bad("update_batch"));
        }
        let mut st = self.lock_for(Self::single(keys));
        for (key, value) in keys.chunks_exact(key_size).zip(values.chunks_exact(VALUE_SIZE)) {
            let prefix = decode_key(key).ok_or_else(|| bad("update_batch"))?;
            self.set(&mut st, prefix, value)?;
        }
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<bool, RouteError> {
        let prefix = decode_key(key).ok_or_else(|| bad("delete"))?;
        Ok(self.remove(&mut self.lock_for(Some(prefix)), prefix))
    }

    fn delete_batch(&self, keys: &[u8]) -> Result<(), RouteError> {
        let key_size = std::mem::size_of::<types::route_key_v4>();
        let mut st = self.lock_for(Self::single(keys));
        for key in keys.chunks_exact(key_size) {
            let prefix = decode_key(key).ok_or_else(|| bad("delete_batch"))?;
            self.remove(&mut st, prefix);
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<Entry>, MapError> {
        let st = self.lock();
        let mut out = Vec::with_capacity(st.slot_of.len());
        for (prefix, slot) in &st.slot_of {
            let Some(rec) = self.record(*slot) else { continue };
            let Some(bytes) = self.values.read_bytes(rec.value as usize, VALUE_SIZE) else { continue };
            let Some(mut value) = abi::from_bytes::<types::route_value>(&bytes) else { continue };
            value.counter_id = rec.counter_id;
            out.push((RouteKey::new(IpNetwork::V4(*prefix)).bytes().to_vec(), abi::bytes_of(&value).to_vec()));
        }
        Ok(out)
    }

    /// Read in place: verifying a million prefixes that agree copies none
    /// of them out.
    fn holds_exactly<'a>(&self, count: usize, want: &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>) -> bool {
        let st = self.lock();
        if st.slot_of.len() != count {
            return false;
        }
        for (key, value) in want {
            let Some(IpNetwork::V4(prefix)) = RouteKey::from_v4_bytes(key) else { return false };
            let Some(rec) = st.slot_of.get(&prefix).and_then(|slot| self.record(*slot)) else { return false };
            let Some(mut held) = self.value_bytes(rec.value).and_then(|b| abi::from_bytes::<types::route_value>(&b))
            else {
                return false;
            };
            held.counter_id = rec.counter_id;
            if abi::bytes_of(&held) != value {
                return false;
            }
        }
        true
    }
}
