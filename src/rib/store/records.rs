//! What the snapshot and the journal both hold: per route id, its whole
//! state (route, policy id, counter slots; a tombstone when it has none),
//! and the small sets written whole (host addresses, set-aside routes,
//! sources, the DSCP table, the policy graveyard).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::codec::{Reader, Writer};
use super::Unreadable;
use crate::domain::label::DscpMap;
use crate::domain::route::{Route, Table};
use crate::rib::alloc::{Boottime, CounterSlots};
use crate::rib::objects::{Object, Objects};
use crate::rib::origins::Noted;
use crate::rib::{Rib, RouteId};

/// The prefix an object's content is read with (the codec's routes carry one; objects have none).
const OBJECT_PREFIX: IpNetwork =
    IpNetwork::V4(ipnetwork::Ipv4Network::new_checked(std::net::Ipv4Addr::UNSPECIFIED, 0).unwrap());

const HAS_ROUTE: u8 = 1;
const HAS_POLICY: u8 = 2;
const HAS_COUNTERS: u8 = 4;
/// The route's origin (format 6; none: static).
const FROM_AGENT: u8 = 8;
const FROM_BGP: u8 = 16;
/// A BGP route's policy (color varint, endpoint) follows.
const BGP_KEY: u8 = 32;
const FLAGS: u8 = HAS_ROUTE | HAS_POLICY | HAS_COUNTERS | FROM_AGENT | FROM_BGP | BGP_KEY;

/// One route id's state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteState {
    pub id: RouteId,
    pub route: Option<Route>,
    pub policy: Option<u32>,
    pub counters: Option<CounterSlots>,
    pub origin: Option<Noted>,
}

/// Writes `id`'s state in `rib` (a tombstone when the RIB holds nothing for it).
pub(crate) fn put_route_state(w: &mut Writer, rib: &Rib, id: &RouteId) {
    let parts = Parts {
        route: rib.routes.get(id),
        policy: rib.policy_of.get(id).copied(),
        counters: rib.counters_of.get(id),
        origin: rib.origin_of.get(id).copied(),
    };
    put_parts(w, id, parts);
}

/// What one record holds.
struct Parts<'a> {
    route: Option<&'a Route>,
    policy: Option<u32>,
    counters: Option<&'a CounterSlots>,
    origin: Option<Noted>,
}

fn put_parts(w: &mut Writer, id: &RouteId, Parts { route, policy, counters: c, origin }: Parts<'_>) {
    w.table(id.0);
    w.prefix(&id.1);
    let from = match origin {
        None => 0,
        Some(Noted::Agent) => FROM_AGENT,
        Some(Noted::Bgp(None)) => FROM_BGP,
        Some(Noted::Bgp(Some(_))) => FROM_BGP | BGP_KEY,
    };
    let flags = route.map_or(0, |_| HAS_ROUTE) | policy.map_or(0, |_| HAS_POLICY) | c.map_or(0, |_| HAS_COUNTERS);
    w.u8(flags | from);
    if let Some(r) = route {
        w.route_body(r);
    }
    if let Some(p) = policy {
        w.varint(u64::from(p));
    }
    if let Some(c) = c {
        w.counters(c);
    }
    if let Some(Noted::Bgp(Some((color, endpoint)))) = origin {
        w.varint(u64::from(color));
        w.addr(endpoint);
    }
}

/// Which route ids a reader wants (the others are stepped over, never built).
pub(crate) type Keep<'a> = &'a Covering<'a>;

/// The routes covering one of some addresses, in any table: what explaining
/// those destinations reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Covering<'a>(pub &'a [IpAddr]);

impl Covering<'_> {
    pub(crate) fn wants(&self, id: &RouteId) -> bool {
        self.0.iter().any(|a| id.1.contains(*a))
    }

    /// Whether a run of sorted ids from `first` up to (not including)
    /// `next` may hold one wanted: at most 33 (129 for IPv6) prefixes cover
    /// an address in a table, so most chunks of a snapshot can be passed by
    /// without reading a record.
    pub(crate) fn may_hold(&self, first: &RouteId, next: Option<&RouteId>) -> bool {
        let Some(next) = next.filter(|n| n.0 == first.0) else { return true };
        self.0.iter().any(|addr| {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            (0..=max).any(|len| {
                let covering = IpNetwork::new(*addr, len).and_then(|n| IpNetwork::new(n.network(), len));
                covering.is_ok_and(|c| (first.0, c) >= *first && (first.0, c) < *next)
            })
        })
    }
}

#[cfg(test)]
pub(crate) fn get_route_state(r: &mut Reader<'_>) -> Result<RouteState, Unreadable> {
    get_route_state_if(r, None)?.ok_or_else(|| Unreadable::Invalid("a route record kept by no filter".into()))
}

/// The next route state if `keep` (when given) wants its id; `None` once
/// stepped over it.
pub(crate) fn get_route_state_if(r: &mut Reader<'_>, keep: Option<Keep<'_>>) -> Result<Option<RouteState>, Unreadable> {
    let table = r.table()?;
    let prefix = r.prefix_unchecked()?;
    let flags = r.u8()?;
    if flags & !FLAGS != 0
        || (flags & BGP_KEY != 0 && flags & FROM_BGP == 0)
        || flags & (FROM_AGENT | FROM_BGP) == FROM_AGENT | FROM_BGP
    {
        return Err(Unreadable::Invalid(format!("route record flags {flags:#x}")));
    }
    if keep.is_some_and(|keep| !keep.wants(&(table, prefix))) {
        if flags & HAS_ROUTE != 0 {
            r.skip_route_body()?;
        }
        if flags & HAS_POLICY != 0 {
            r.varint()?;
        }
        if flags & HAS_COUNTERS != 0 {
            r.skip_counters()?;
        }
        if flags & (FROM_BGP | BGP_KEY) == FROM_BGP | BGP_KEY {
            r.varint()?;
            r.addr()?;
        }
        return Ok(None);
    }
    let prefix = crate::domain::prefix::check(prefix).map_err(|e| Unreadable::Invalid(e.to_string()))?;
    let route = (flags & HAS_ROUTE != 0).then(|| r.route_body(prefix)).transpose()?;
    let policy = (flags & HAS_POLICY != 0).then(|| r.u32v()).transpose()?;
    let counters = (flags & HAS_COUNTERS != 0).then(|| r.counters()).transpose()?;
    let origin = match (flags & FROM_AGENT != 0, flags & FROM_BGP != 0, flags & BGP_KEY != 0) {
        (true, _, _) => Some(Noted::Agent),
        (_, true, true) => Some(Noted::Bgp(Some((r.u32v()?, r.addr()?)))),
        (_, true, false) => Some(Noted::Bgp(None)),
        _ => None,
    };
    Ok(Some(RouteState { id: (table, prefix), route, policy, counters, origin }))
}

/// Every route id the RIB holds anything for, in order: the routes, and
/// the set-aside routes that keep their counter slots. A merge of the two
/// sorted maps, never a lookup per route. Written in chunks of `chunk`
/// records, each behind its byte length and record count (u32 each), so a
/// reader can decode chunks in parallel. Returns the number of chunks.
pub(crate) fn put_all_route_states(w: &mut Writer, rib: &Rib, chunk: usize) -> usize {
    let mut routes = rib.routes.iter().peekable();
    let mut counters = rib.counters_of.iter().peekable();
    let mut origins = rib.origin_of.iter().peekable();
    let (mut chunks, mut in_chunk, mut head) = (0, 0u32, None);
    loop {
        let ids = [
            routes.peek().map(|(id, _)| **id),
            counters.peek().map(|(id, _)| **id),
            origins.peek().map(|(id, _)| **id),
        ];
        let Some(next) = ids.into_iter().flatten().min() else { break };
        if head.is_none() {
            head = Some(w.buf.len());
            w.u64_le(0);
        }
        let id = next;
        let route = routes.next_if(|(k, _)| **k == id).map(|(_, r)| r);
        let counters = counters.next_if(|(k, _)| **k == id).map(|(_, c)| c);
        let origin = origins.next_if(|(k, _)| **k == id).map(|(_, o)| *o);
        put_parts(w, &id, Parts { route, policy: rib.policy_of.get(&id).copied(), counters, origin });
        in_chunk += 1;
        if in_chunk as usize == chunk {
            close_chunk(w, head.take(), std::mem::take(&mut in_chunk));
            chunks += 1;
        }
    }
    if in_chunk > 0 {
        close_chunk(w, head.take(), in_chunk);
        chunks += 1;
    }
    chunks
}

fn close_chunk(w: &mut Writer, head: Option<usize>, records: u32) {
    let Some(at) = head else { return };
    let len = (w.buf.len() - at - 8) as u32;
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&records.to_le_bytes());
    if let Some(h) = w.buf.get_mut(at..at + 8) {
        h.copy_from_slice(&head);
    }
}

/// The chunks [`put_all_route_states`] wrote: each one's records and count.
pub(crate) fn chunks<'a>(r: &mut Reader<'a>, n: usize) -> Result<Vec<(&'a [u8], u32)>, Unreadable> {
    (0..n)
        .map(|_| {
            let len = r.u32_le()? as usize;
            let records = r.u32_le()?;
            Ok((r.take(len)?, records))
        })
        .collect()
}

/// The decoded states of some chunks: routes, policy ids, counter slots, origins.
pub(crate) type Decoded =
    (Vec<(RouteId, Route)>, Vec<(RouteId, u32)>, Vec<(RouteId, CounterSlots)>, Vec<(RouteId, Noted)>);

/// The first route id of a chunk (where its records begin).
pub(crate) fn first_id(chunk: &[u8]) -> Result<RouteId, Unreadable> {
    let mut r = Reader::new(chunk);
    Ok((r.table()?, r.prefix_unchecked()?))
}

/// Decodes chunks in order, refusing ids out of order.
pub(crate) fn decode_chunks(chunks: &[(&[u8], u32)], keep: Option<Keep<'_>>) -> Result<Decoded, Unreadable> {
    let total: usize = if keep.is_some() { 0 } else { chunks.iter().map(|(_, n)| *n as usize).sum() };
    let (mut routes, mut policies, mut counters) = (Vec::with_capacity(total), Vec::new(), Vec::with_capacity(total));
    let mut origins = Vec::new();
    let mut last: Option<RouteId> = None;
    for (bytes, n) in chunks {
        let mut r = Reader::new(bytes);
        for _ in 0..*n {
            let Some(s) = get_route_state_if(&mut r, keep)? else { continue };
            if last.is_some_and(|l| l >= s.id) {
                return Err(Unreadable::Invalid(format!("route {} out of order", s.id.1)));
            }
            last = Some(s.id);
            if let Some(route) = s.route {
                routes.push((s.id, route));
            }
            if let Some(p) = s.policy {
                policies.push((s.id, p));
            }
            if let Some(c) = s.counters {
                counters.push((s.id, c));
            }
            if let Some(o) = s.origin {
                origins.push((s.id, o));
            }
        }
        if !r.is_empty() {
            return Err(Unreadable::Invalid("a chunk longer than its records".into()));
        }
    }
    Ok((routes, policies, counters, origins))
}

/// Records `state` in the RIB's maps (whose dirty marks the caller clears).
pub(crate) fn install(rib: &mut Rib, state: RouteState) {
    let id = state.id;
    match state.route {
        Some(r) => rib.routes.insert(id, r),
        None => rib.routes.remove(&id),
    };
    match state.policy {
        Some(p) => rib.policy_of.insert(id, p),
        None => rib.policy_of.remove(&id),
    };
    match state.counters {
        Some(c) => rib.counters_of.insert(id, c),
        None => rib.counters_of.remove(&id),
    };
    match state.origin {
        Some(o) => rib.origin_of.insert(id, o),
        None => rib.origin_of.remove(&id),
    };
}

/// The small sets, as last written: compared with the RIB's at every save
/// (cheap: they hold a few entries), written whole when they differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Smalls {
    pub local: BTreeSet<IpAddr>,
    pub shadowed: BTreeMap<IpNetwork, Route>,
    pub sources: BTreeMap<IpNetwork, Table>,
    pub dscp: [u8; 64],
    pub graveyard: Vec<(u32, Boottime)>,
    /// The shared policy objects (format 5): few, so written whole like the rest.
    pub objects: Objects,
    /// What the origins say of BGP's policies (format 6), opaque.
    pub origin_notes: Vec<u8>,
}

impl Default for Smalls {
    fn default() -> Self {
        Smalls::of(&Rib::new(0))
    }
}

impl Smalls {
    pub(crate) fn of(rib: &Rib) -> Smalls {
        Smalls {
            local: rib.local.clone(),
            shadowed: rib.shadowed.clone(),
            sources: rib.sources.clone(),
            dscp: rib.dscp.values(),
            graveyard: rib.graveyard.clone(),
            objects: rib.objects.clone(),
            origin_notes: rib.origin_notes.clone(),
        }
    }

    /// Whether the RIB's small sets are still these.
    pub(crate) fn matches(&self, rib: &Rib) -> bool {
        self.local == rib.local
            && self.graveyard == rib.graveyard
            && self.dscp == rib.dscp.values()
            && self.sources == rib.sources
            && self.shadowed == rib.shadowed
            && self.objects == rib.objects
            && self.origin_notes == rib.origin_notes
    }

    pub(crate) fn put(&self, w: &mut Writer) {
        w.len(self.local.len());
        self.local.iter().for_each(|a| w.addr(*a));
        w.len(self.shadowed.len());
        for r in self.shadowed.values() {
            w.prefix(&r.prefix);
            w.route_body(r);
        }
        w.len(self.sources.len());
        for (p, t) in &self.sources {
            w.prefix(p);
            w.table(*t);
        }
        w.buf.extend_from_slice(&self.dscp);
        w.len(self.graveyard.len());
        for (id, at) in &self.graveyard {
            w.varint(u64::from(*id));
            w.varint(at.0);
        }
        w.len(self.objects.len());
        for (id, o) in self.objects.iter() {
            w.varint(u64::from(id));
            w.route_body(&Route { prefix: OBJECT_PREFIX, policy: o.policy.clone(), tc: o.tc });
            w.counters(&CounterSlots { route: 0, lists: o.lists.clone() });
        }
        w.len(self.origin_notes.len());
        w.buf.extend_from_slice(&self.origin_notes);
    }

    pub(crate) fn get(r: &mut Reader<'_>) -> Result<Smalls, Unreadable> {
        let mut s = Smalls::default();
        for _ in 0..r.len()? {
            s.local.insert(r.addr()?);
        }
        for _ in 0..r.len()? {
            let prefix = r.prefix()?;
            s.shadowed.insert(prefix, r.route_body(prefix)?);
        }
        for _ in 0..r.len()? {
            let prefix = r.prefix()?;
            s.sources.insert(prefix, r.table()?);
        }
        s.dscp.copy_from_slice(r.take(64)?);
        for _ in 0..r.len()? {
            s.graveyard.push((r.u32v()?, Boottime(r.varint()?)));
        }
        for _ in 0..r.len()? {
            let id = r.u32v()?;
            let Route { policy, tc, .. } = r.route_body(OBJECT_PREFIX)?;
            if policy.name().is_none() {
                return Err(Unreadable::Invalid(format!("policy object {id} without a name")));
            }
            let lists = r.counters()?.lists;
            s.objects.insert(id, Object { policy, tc, lists, users: 0 });
        }
        let n = r.len()?;
        s.origin_notes = r.take(n)?.to_vec();
        Ok(s)
    }

    /// Puts them in the RIB.
    pub(crate) fn install(&self, rib: &mut Rib) -> Result<(), Unreadable> {
        rib.local = self.local.clone();
        rib.shadowed = self.shadowed.clone();
        rib.sources = self.sources.clone();
        rib.dscp = DscpMap::new(self.dscp).map_err(|e| Unreadable::Invalid(format!("DSCP table: {e}")))?;
        rib.graveyard = self.graveyard.clone();
        // Their routes are counted once every route is read (recovery).
        rib.objects = self.objects.clone();
        rib.origin_notes = self.origin_notes.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(t: Table, p: &str) -> RouteId {
        (t, p.parse().unwrap())
    }

    #[test]
    fn states_and_tombstones_round_trip() {
        let mut rib = Rib::new(100);
        let a = id(Table::Main, "10.0.0.0/8");
        let b = id(Table::alternate(7).unwrap(), "2001:db8::/32");
        rib.routes.insert(a, Route::new(a.1, "100".parse().unwrap()));
        rib.routes.insert(b, Route::with_policy(b.1, "16001@2,16002@1".parse().unwrap()));
        rib.policy_of.insert(b, 9);
        rib.counters_of.insert(b, CounterSlots { route: 3, lists: vec![4, 5] });
        rib.origin_of.insert(a, Noted::Agent);
        rib.origin_of.insert(b, Noted::Bgp(Some((100, "2001:db8::1".parse().unwrap()))));
        // Only counters: a route set aside for a host address keeps its slots.
        let c = id(Table::Main, "192.0.2.1/32");
        rib.counters_of.insert(c, CounterSlots { route: 6, lists: vec![] });
        let gone = id(Table::Main, "198.51.100.0/24");

        let mut w = Writer::default();
        assert_eq!(put_all_route_states(&mut w, &rib, 2), 2, "3 records in chunks of 2");
        let mut r = Reader::new(&w.buf);
        let (routes, policies, counters, origins) = decode_chunks(&chunks(&mut r, 2).unwrap(), None).unwrap();
        assert!(r.is_empty());
        assert_eq!(origins, vec![(a, Noted::Agent), (b, Noted::Bgp(Some((100, "2001:db8::1".parse().unwrap()))))]);
        assert_eq!((routes.len(), policies.len(), counters.len()), (2, 1, 2));
        let mut w = Writer::default();
        put_route_state(&mut w, &rib, &gone);
        let tombstone = get_route_state(&mut Reader::new(&w.buf)).unwrap();
        assert!(tombstone.route.is_none() && tombstone.policy.is_none() && tombstone.counters.is_none());
        let mut back = Rib::new(100);
        back.routes.insert(gone, Route::new(gone.1, "200".parse().unwrap()));
        install(&mut back, tombstone);
        routes.into_iter().for_each(|(id, r)| {
            back.routes.insert(id, r);
        });
        policies.into_iter().for_each(|(id, p)| {
            back.policy_of.insert(id, p);
        });
        counters.into_iter().for_each(|(id, c)| {
            back.counters_of.insert(id, c);
        });
        assert_eq!(*back.routes, *rib.routes);
        assert_eq!(*back.policy_of, *rib.policy_of);
        assert_eq!(*back.counters_of, *rib.counters_of);
    }

    #[test]
    fn a_filtered_read_steps_over_every_kind_of_record_and_keeps_the_rest_whole() {
        // Every field a record may carry, on both sides of each kept one:
        // a skip that read one byte too many or too few would misread the next.
        let mut rib = Rib::new(100);
        let shapes = [
            ("10.0.0.0/8", "100", None),
            ("10.1.0.0/16", "16001@2,16002@1", Some(Noted::Bgp(Some((7, "192.0.2.9".parse().unwrap()))))),
            ("10.1.2.0/24", "16001/16002/16003", Some(Noted::Agent)),
            ("10.1.2.128/25", "200", Some(Noted::Bgp(None))),
            ("2001:db8::/32", "16001@1,16002/16005@3", None),
        ];
        for (i, (p, policy, origin)) in shapes.iter().enumerate() {
            let id = id(Table::Main, p);
            let mut route = Route::with_policy(id.1, policy.parse().unwrap());
            if i == 1 {
                route.policy = route.policy.with_name("bgp color 7").unwrap();
            }
            rib.routes.insert(id, route);
            rib.policy_of.insert(id, i as u32 + 1);
            rib.counters_of.insert(id, CounterSlots { route: i as u32 + 1, lists: vec![10 + i as u32; i] });
            if let Some(o) = origin {
                rib.origin_of.insert(id, *o);
            }
        }
        let mut w = Writer::default();
        let n = put_all_route_states(&mut w, &rib, 2);
        let dst: IpAddr = "10.1.2.200".parse().unwrap();
        let addrs = [dst];
        let keep = Covering(&addrs);
        let mut r = Reader::new(&w.buf);
        let (routes, policies, counters, origins) = decode_chunks(&chunks(&mut r, n).unwrap(), Some(&keep)).unwrap();
        assert!(r.is_empty());
        let wanted: Vec<RouteId> = rib.routes.keys().copied().filter(|id| keep.wants(id)).collect();
        assert_eq!(wanted.len(), 4, "every IPv4 route but none of IPv6's covers it");
        assert_eq!(routes.iter().map(|(id, _)| *id).collect::<Vec<_>>(), wanted);
        for (id, route) in &routes {
            assert_eq!(Some(route), rib.routes.get(id));
        }
        assert_eq!(policies.len() + counters.len(), 8);
        assert_eq!(origins.len(), 3);
        assert!(counters.iter().all(|(id, c)| rib.counters_of.get(id) == Some(c)));
    }

    #[test]
    fn small_sets_round_trip_and_compare() {
        let mut rib = Rib::new(10);
        rib.local.insert("192.0.2.1".parse().unwrap());
        let host: IpNetwork = "192.0.2.1/32".parse().unwrap();
        rib.shadowed.insert(host, Route::new(host, "300".parse().unwrap()));
        rib.sources.insert("10.9.0.0/16".parse().unwrap(), Table::alternate(2).unwrap());
        rib.graveyard.push((4, Boottime(123_456_789)));
        let smalls = Smalls::of(&rib);
        assert!(smalls.matches(&rib));
        let mut w = Writer::default();
        smalls.put(&mut w);
        let back = Smalls::get(&mut Reader::new(&w.buf)).unwrap();
        assert_eq!(back, smalls);
        rib.graveyard.clear();
        assert!(!smalls.matches(&rib));
        back.install(&mut rib).unwrap();
        assert!(smalls.matches(&rib));
    }
}
