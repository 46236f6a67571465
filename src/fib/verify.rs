//! Compares the kernel's maps with what the RIB says they hold.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;
use nix::errno::Errno;
use rustc_hash::FxHashMap;

use super::key::RouteKey;
use super::table::{Entry, RouteTable};
use super::{encode, Fib};
use crate::abi::{self, types};
use crate::domain::route::Table;
use crate::error::{MapError, RouteError};
use crate::rib::Rib;

/// One way the kernel's maps differ from the RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The map.
    pub map: &'static str,
    /// The entry, as a person reads it (a prefix, a policy id, a setting).
    pub entry: String,
    /// How it differs.
    pub kind: DifferenceKind,
}

/// How an entry differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceKind {
    /// The RIB has it, the kernel does not.
    Missing,
    /// The kernel has it, the RIB does not.
    Unexpected,
    /// Both have it, with different values.
    Differs,
}

impl DifferenceKind {
    /// Its name in the command's JSON and the gRPC API: `missing`,
    /// `unexpected` or `differs`.
    pub fn name(self) -> &'static str {
        match self {
            DifferenceKind::Missing => "missing",
            DifferenceKind::Unexpected => "unexpected",
            DifferenceKind::Differs => "differs",
        }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.kind {
            DifferenceKind::Missing => "missing from the kernel",
            DifferenceKind::Unexpected => "in the kernel but not in the RIB",
            DifferenceKind::Differs => "differs between the kernel and the RIB",
        };
        write!(f, "{} {}: {how}", self.map, self.entry)
    }
}

/// What an entry is called in a difference: a route's name is derived from
/// its key only when it differs, so a comparison of a million routes that
/// agree formats none.
#[derive(Clone)]
enum Name {
    Route,
    Text(String),
}

impl Name {
    fn of(&self, key: &[u8]) -> String {
        match self {
            Name::Route => describe_route(key),
            Name::Text(text) => text.clone(),
        }
    }
}

type Entries = BTreeMap<Vec<u8>, (Name, Vec<u8>)>;

/// Every entry of a hash or LPM map.
fn dump(map: &dyn RouteTable, name: impl Fn(&[u8]) -> Name) -> Result<Entries, MapError> {
    Ok(map.entries()?.into_iter().map(|(key, value)| (key.clone(), (name(&key), value))).collect())
}

/// A difference, and what makes the kernel agree with the RIB again.
struct Fix<'a> {
    map: &'a dyn RouteTable,
    key: Vec<u8>,
    /// The value the RIB implies; `None`: the entry must go.
    want: Option<Vec<u8>>,
    difference: Difference,
}

fn compare<'a>(
    map: &'a dyn RouteTable,
    want: Entries,
    got: Entries,
    allow_extra: impl Fn(&[u8]) -> bool,
) -> Vec<Fix<'a>> {
    let mut out = Vec::new();
    let mut fix = |key: Vec<u8>, name: &Name, want: Option<Vec<u8>>, kind| {
        let entry = name.of(&key);
        out.push(Fix { map, key, want, difference: Difference { map: map.name(), entry, kind } });
    };
    for (key, (name, value)) in &want {
        match got.get(key) {
            None => fix(key.clone(), name, Some(value.clone()), DifferenceKind::Missing),
            Some((_, v)) if v != value => fix(key.clone(), name, Some(value.clone()), DifferenceKind::Differs),
            Some(_) => {}
        }
    }
    for (key, (name, _)) in got {
        if !want.contains_key(&key) && !allow_extra(&key) {
            fix(key, &name, None, DifferenceKind::Unexpected);
        }
    }
    out
}

/// Everything the RIB implies the maps hold, copied out of it: `verify`
/// takes this under the RIB's lock and compares the kernel with it after
/// letting go, so changes wait for a copy, not for a dump of every map.
struct Expected {
    /// The route tries, by `trie_index`.
    tries: [Flat; 4],
    policies: Entries,
    /// Retired policy ids, left in the map until their grace period is over.
    retired: Vec<[u8; 4]>,
    sources: (Entries, Entries),
    dscp: Vec<u8>,
    settings: Vec<u8>,
}

fn describe_route(key: &[u8]) -> String {
    let decoded = RouteKey::from_v4_bytes(key)
        .map(|p| (0, p))
        .or_else(|| RouteKey::from_v6_bytes(key).map(|p| (0, p)))
        .or_else(|| RouteKey::from_alt_v4_bytes(key))
        .or_else(|| RouteKey::from_alt_v6_bytes(key));
    match decoded {
        Some((0, p)) => p.to_string(),
        Some((t, p)) => format!("{p} (table {t})"),
        None => format!("{key:02x?}"),
    }
}

/// A route trie's expected entries, keys and values back to back in one
/// buffer: a million routes are copied under the RIB's lock as two
/// allocations, not two each, and named only if they differ.
#[derive(Default)]
struct Flat {
    bytes: Vec<u8>,
    /// Where each entry's key ends and its value ends (its key starts where
    /// the previous value ended).
    ends: Vec<(usize, usize)>,
}

impl Flat {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((key_end, self.bytes.len()));
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(_, end)| end));
        starts.zip(&self.ends).filter_map(|(start, &(key_end, end))| {
            Some((self.bytes.get(start..key_end)?, self.bytes.get(key_end..end)?))
        })
    }
}

/// As [`compare`], for a route trie: the kernel's entries are indexed once
/// by key (a hash of slices, no copy), the RIB's looked up in it. The
/// differences come out as `compare`'s would: the RIB's in key order, then
/// the kernel's extra ones in key order.
fn compare_routes<'a>(map: &'a dyn RouteTable, want: &Flat, got: Vec<Entry>) -> Vec<Fix<'a>> {
    let index: FxHashMap<&[u8], usize> = got.iter().enumerate().map(|(i, (key, _))| (key.as_slice(), i)).collect();
    let mut seen = vec![false; got.len()];
    let mut wrong: Vec<(&[u8], &[u8], DifferenceKind)> = Vec::new();
    for (key, value) in want.iter() {
        match index.get(key) {
            None => wrong.push((key, value, DifferenceKind::Missing)),
            Some(&i) => {
                if let Some(s) = seen.get_mut(i) {
                    *s = true;
                }
                if got.get(i).is_some_and(|(_, v)| v.as_slice() != value) {
                    wrong.push((key, value, DifferenceKind::Differs));
                }
            }
        }
    }
    wrong.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let fix = |key: Vec<u8>, want: Option<Vec<u8>>, kind| {
        let entry = describe_route(&key);
        Fix { map, key, want, difference: Difference { map: map.name(), entry, kind } }
    };
    let mut out: Vec<Fix<'a>> =
        wrong.into_iter().map(|(key, value, kind)| fix(key.to_vec(), Some(value.to_vec()), kind)).collect();
    let mut extra: Vec<Vec<u8>> =
        got.into_iter().zip(seen).filter(|(_, seen)| !seen).map(|((key, _), _)| key).collect();
    extra.sort_unstable();
    out.extend(extra.into_iter().map(|key| fix(key, None, DifferenceKind::Unexpected)));
    out
}

/// The route tries' entries the RIB implies, by `trie_index`.
fn expected_routes(rib: &Rib) -> [Flat; 4] {
    let mut out: [Flat; 4] = Default::default();
    let mut put = |table: Table, prefix: IpNetwork, value: &types::route_value| {
        let key = RouteKey::in_table(table.id(), prefix);
        if let Some(trie) = out.get_mut(super::trie_index(table, &prefix)) {
            trie.push(key.bytes(), abi::bytes_of(value));
        }
    };
    for id in rib.routes.keys() {
        if let Some(value) = encode::installed_value(rib, id) {
            put(id.0, id.1, &value);
        }
    }
    for addr in &rib.local {
        put(Table::Main, IpNetwork::from(*addr), &encode::local());
    }
    out
}

impl Expected {
    fn of(rib: &Rib) -> Expected {
        let mut policies = Entries::new();
        for (id, policy_id) in rib.policy_of.iter() {
            if rib.objects.contains(*policy_id) {
                continue;
            }
            if let Some((_, Some(p))) = encode::installed(rib, id) {
                let name = Name::Text(format!("policy {policy_id} of {}", id.1));
                policies.insert(policy_id.to_ne_bytes().to_vec(), (name, abi::bytes_of(p.as_ref()).to_vec()));
            }
        }
        // Shared objects: one entry each, whatever the number of routes on them.
        for (policy_id, o) in rib.objects.iter() {
            let name = Name::Text(format!("policy {policy_id} ({:?})", o.name()));
            policies
                .insert(policy_id.to_ne_bytes().to_vec(), (name, abi::bytes_of(encode::object(o).as_ref()).to_vec()));
        }
        let (mut v4, mut v6) = (Entries::new(), Entries::new());
        for (prefix, table) in &rib.sources {
            let key = RouteKey::new(*prefix).bytes().to_vec();
            let value = types::source_value { table: table.id() };
            let family = if prefix.is_ipv4() { &mut v4 } else { &mut v6 };
            family.insert(key, (Name::Text(prefix.to_string()), abi::bytes_of(&value).to_vec()));
        }
        Expected {
            tries: expected_routes(rib),
            policies,
            retired: rib.graveyard.iter().map(|(id, _)| id.to_ne_bytes()).collect(),
            sources: (v4, v6),
            dscp: abi::bytes_of(&types::dscp_map { tc: rib.dscp.values() }).to_vec(),
            settings: abi::bytes_of(&types::settings { sources: rib.sources.len() as u32 }).to_vec(),
        }
    }
}

/// Whether a write was refused for want of room (an LPM trie or hash map
/// full, or a DIR-24-8 pool).
fn is_full(e: &RouteError) -> bool {
    matches!(e, RouteError::TableFull { .. } | RouteError::Map(MapError { errno: Errno::E2BIG | Errno::ENOSPC, .. }))
}

/// A /24 (or a /16 summary) whose DIR-24-8 entries are not what its prefixes imply.
fn structure_difference(block: ipnetwork::Ipv4Network) -> Difference {
    let map = if block.prefix() == 16 { "dir4_tbl16" } else { "dir4_tbl24" };
    Difference { map, entry: block.to_string(), kind: DifferenceKind::Differs }
}

impl Fib {
    /// Compares every map with the RIB; empty when they agree.
    ///
    /// The RIB's lock is held only to copy what it implies; the maps are
    /// dumped and compared after. A change made meanwhile can only add
    /// differences that are not real, never hide one, so when anything
    /// differs the comparison runs again holding the lock throughout and
    /// that answer is the one returned: changes wait for a whole comparison
    /// only when the first pass saw a difference (a real one, or a change
    /// that ran meanwhile).
    pub(crate) fn verify(&self) -> Result<Vec<Difference>, MapError> {
        let expected = Expected::of(&self.writer());
        let dir_differs = self.dir24_8().is_some_and(|dir| !dir.inconsistent().is_empty());
        if !dir_differs && self.fixes_against(expected)?.is_empty() {
            return Ok(Vec::new());
        }
        let rib = self.writer();
        let mut out: Vec<Difference> = self.fixes(&rib)?.into_iter().map(|f| f.difference).collect();
        if let Some(dir) = self.dir24_8() {
            out.extend(dir.inconsistent().into_iter().map(structure_difference));
        }
        Ok(out)
    }

    /// Makes every map agree with the RIB again (after a process died
    /// between a kernel write and saving its state, or after someone else
    /// wrote the maps) and returns what differed. Values are written before
    /// entries are deleted (unless a map is too full to take what is
    /// missing: then the deletions go first), and policies before the routes
    /// that name them.
    pub(crate) fn repair(&self) -> Result<Vec<Difference>, RouteError> {
        let rib = self.changer()?;
        let mut fixes = self.fixes(&rib)?;
        // Writes first, policies before the routes that name them; then
        // deletions, routes before the policies they named.
        let policies = self.maps().policies.name();
        fixes.sort_by_key(|f| {
            let is_policy = f.map.name() == policies;
            (f.want.is_none(), if f.want.is_some() { !is_policy } else { is_policy })
        });
        // A map left full by an interrupted apply (old and new routes mixed)
        // has no room for what is missing: then the deletions come first.
        let (writes, deletes): (Vec<&Fix<'_>>, Vec<&Fix<'_>>) = fixes.iter().partition(|f| f.want.is_some());
        let mut deleted = false;
        let delete_all = || -> Result<(), RouteError> {
            deletes.iter().try_for_each(|f| f.map.delete(&f.key).map(|_| log::debug!("repaired: {}", f.difference)))
        };
        for f in &writes {
            let Some(value) = &f.want else { continue };
            match f.map.update(&f.key, value) {
                Err(e) if !deleted && is_full(&e) => {
                    delete_all()?;
                    deleted = true;
                    f.map.update(&f.key, value)?;
                }
                result => result?,
            }
            log::debug!("repaired: {}", f.difference);
        }
        if !deleted {
            delete_all()?;
        }
        let mut out: Vec<Difference> = fixes.into_iter().map(|f| f.difference).collect();
        // With every prefix right, the values they name are put back and the
        // DIR-24-8 entries are repainted from them.
        if let Some(dir) = self.dir24_8() {
            dir.restore_values().iter().for_each(|i| log::debug!("repaired: DIR-24-8 value {i} written back"));
            let blocks = dir.inconsistent();
            dir.repaint(&blocks)?;
            out.extend(blocks.iter().map(|b| structure_difference(*b)));
            blocks.iter().for_each(|b| log::debug!("repaired: {}", structure_difference(*b)));
        }
        Ok(out)
    }

    fn fixes(&self, rib: &Rib) -> Result<Vec<Fix<'_>>, MapError> {
        self.fixes_against(Expected::of(rib))
    }

    /// Where the maps differ from `expected`.
    fn fixes_against(&self, expected: Expected) -> Result<Vec<Fix<'_>>, MapError> {
        let maps = self.maps();
        let mut out = Vec::new();
        for (want, (map, _, _)) in expected.tries.iter().zip(self.tries()) {
            // A table that can check in place lists its entries only when
            // something differs, to say what.
            if map.holds_exactly(want.len(), &mut want.iter()) {
                continue;
            }
            out.extend(compare_routes(map, want, map.entries()?));
        }
        let retired = expected.retired;
        let policy_name = |k: &[u8]| Name::Text(format!("policy {:02x?}", k));
        out.extend(compare(&maps.policies, expected.policies, dump(&maps.policies, policy_name)?, |k| {
            retired.iter().any(|r| r[..] == *k)
        }));
        let (v4, v6) = expected.sources;
        out.extend(compare(&maps.sources_v4, v4, dump(&maps.sources_v4, |_| Name::Route)?, |_| false));
        out.extend(compare(&maps.sources_v6, v6, dump(&maps.sources_v6, |_| Name::Route)?, |_| false));

        let singletons =
            [(&maps.dscp_tc, "the DSCP table", expected.dscp), (&maps.settings, "the settings", expected.settings)];
        for (map, entry, value) in singletons {
            let key = 0u32.to_ne_bytes().to_vec();
            if map.lookup(&key)?.as_deref() != Some(&value[..]) {
                let difference = Difference { map: map.name(), entry: entry.to_owned(), kind: DifferenceKind::Differs };
                out.push(Fix { map, key, want: Some(value), difference });
            }
        }
        Ok(out)
    }
}
