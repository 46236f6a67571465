//! The snapshot: the whole RIB in one file, written beside and renamed over
//! the old one, so a reader finds the old snapshot or the new one, whole.
//!
//! ```text
//! magic "LHE-RIB\n" | format u32 | written_by (len, bytes)     read first, in every format
//! header (len, JSON: the load config and the attachment)
//! seq u64 | stamp u64 (CLOCK_BOOTTIME ns) | policy next | counter next
//! tally (format 9: routes per trie, counter slots free)
//! route states (chunk count, then chunks: byte length u32, record count u32,
//!   records: table, prefix, flags, route, policy id, counter slots)
//! small sets (host addresses, set-aside routes, sources, DSCP, graveyard)
//! crc32 u32 of everything before it
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::codec::{Reader, Writer};
#[cfg(test)]
use super::records::Covering;
use super::records::{self, Keep, Smalls};
use super::{Attached, LoadConfig, Unreadable, FORMAT};
use crate::rib::alloc::Boottime;
use crate::rib::routes::Routes;
use crate::rib::tracked::Tracked;
use crate::rib::{Rib, RouteId};

const MAGIC: &[u8; 8] = b"LHE-RIB\n";
/// Route records per chunk: the unit decoded on one thread, and what a
/// reader of a few routes passes by whole.
const CHUNK: usize = 4_096;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    config: LoadConfig,
    attachment: Attached,
}

/// Where a store stands: the last change it holds, and when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    /// The sequence number of the last change included.
    pub seq: u64,
    /// When it was written (CLOCK_BOOTTIME).
    pub stamp: Boottime,
    /// The allocators' highest ids (policy ids, counter slots).
    pub policy_next: u32,
    pub counter_next: u32,
    /// What a change of one route needs to know of the whole RIB (format
    /// 9; `None`: written by format 8, read whole).
    pub tally: Option<Tally>,
}

/// The sizes a writer that reads only the routes it changes cannot count:
/// how many routes each trie holds (for its room, and the route cache) and
/// how many counter slots are free below the pool's highest (when the pool
/// is used up to its capacity, a new route takes one of those, which only
/// the whole RIB can name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tally {
    /// Routes per trie (`rib::trie_index`).
    pub tries: [u32; 4],
    pub free_counters: u32,
}

impl Tally {
    pub(crate) fn of(rib: &Rib) -> Tally {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Tally { tries: rib.routes.trie_counts().map(count), free_counters: count(rib.counter_slots.free_count()) }
    }

    pub(crate) fn put(&self, w: &mut Writer) {
        for n in self.tries {
            w.varint(u64::from(n));
        }
        w.varint(u64::from(self.free_counters));
    }

    /// Reads a tally where format `format` wrote one.
    pub(crate) fn get(r: &mut Reader<'_>, format: u32) -> Result<Option<Tally>, Unreadable> {
        if format < 9 {
            return Ok(None);
        }
        let tries = [r.u32v()?, r.u32v()?, r.u32v()?, r.u32v()?];
        Ok(Some(Tally { tries, free_counters: r.u32v()? }))
    }
}

/// A snapshot read back: the RIB without its allocators (rebuilt once the
/// journal is replayed), and where it stands.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub rib: Rib,
    pub config: LoadConfig,
    pub attached: Attached,
    pub at: Position,
    /// The format it was written in ([`READABLE`]).
    pub format: u32,
}

/// The formats this build reads: its own, and 8 (the same records without
/// the [`Tally`]), rewritten in its own by the first writer that adopts it.
pub(crate) const READABLE: std::ops::RangeInclusive<u32> = 8..=FORMAT;

/// The snapshot's bytes.
pub(crate) fn encode(rib: &Rib, config: &LoadConfig, attached: &Attached, at: Position) -> Vec<u8> {
    let mut w = Writer { buf: Vec::with_capacity(64 + rib.routes.len() * 24) };
    w.buf.extend_from_slice(MAGIC);
    w.u32_le(FORMAT);
    w.bytes(env!("CARGO_PKG_VERSION").as_bytes());
    let header = Header { config: *config, attachment: attached.clone() };
    // Serializing two plain structs cannot fail.
    w.bytes(&serde_json::to_vec(&header).unwrap_or_default());
    w.u64_le(at.seq);
    w.u64_le(at.stamp.0);
    w.varint(u64::from(at.policy_next));
    w.varint(u64::from(at.counter_next));
    at.tally.unwrap_or_else(|| Tally::of(rib)).put(&mut w);
    let count_at = w.buf.len();
    // The count goes in front of the chunks once known: fixed width, so
    // the records need not be moved.
    w.u64_le(0);
    let n = records::put_all_route_states(&mut w, rib, CHUNK);
    if let Some(count) = w.buf.get_mut(count_at..count_at + 8) {
        count.copy_from_slice(&(n as u64).to_le_bytes());
    }
    Smalls::of(rib).put(&mut w);
    let crc = crc32fast::hash(&w.buf);
    w.u32_le(crc);
    w.buf
}

/// The format and writer of a snapshot, read before anything else.
fn version(r: &mut Reader<'_>) -> Result<(u32, String), Unreadable> {
    if r.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
        return Err(Unreadable::Invalid("not a state snapshot of lnetd-host-encap".into()));
    }
    let format = r.u32_le()?;
    let written_by = String::from_utf8_lossy(r.bytes()?).into_owned();
    Ok((format, written_by))
}

/// A snapshot's head: what an adopter needs before (or without) the RIB.
#[derive(Debug)]
pub(crate) struct Head {
    pub config: LoadConfig,
    pub attached: Attached,
    pub at: Position,
    pub format: u32,
}

/// Checks a snapshot (version, checksum) and reads its head, leaving `r` at
/// the route states. Checking the whole file's checksum costs a few
/// milliseconds at a million routes; decoding them is what costs.
fn head<'a>(bytes: &'a [u8]) -> Result<(Head, Reader<'a>), Unreadable> {
    let (body, crc) = bytes.split_at(bytes.len().saturating_sub(4));
    // The version first: another format is said as such, not as damage.
    parse_head(body)?;
    let crc = crc.try_into().map(u32::from_le_bytes).map_err(|_| Unreadable::Invalid("truncated".into()))?;
    if crc32fast::hash(body) != crc {
        return Err(Unreadable::Invalid("checksum mismatch: the snapshot is damaged".into()));
    }
    parse_head(body)
}

/// The head at the start of `bytes`, unchecked, and a reader after it.
fn parse_head(bytes: &[u8]) -> Result<(Head, Reader<'_>), Unreadable> {
    let mut r = Reader::new(bytes);
    let (format, written_by) = version(&mut r)?;
    if !READABLE.contains(&format) {
        return Err(Unreadable::Version(format, written_by));
    }
    let header: Header =
        serde_json::from_slice(r.bytes()?).map_err(|e| Unreadable::Invalid(format!("snapshot header: {e}")))?;
    let (seq, stamp, policy_next, counter_next) = (r.u64_le()?, Boottime(r.u64_le()?), r.u32v()?, r.u32v()?);
    let at = Position { seq, stamp, policy_next, counter_next, tally: Tally::get(&mut r, format)? };
    Ok((Head { config: header.config, attached: header.attachment, at, format }, r))
}

/// Reads a snapshot's head only (checked as [`decode`] checks it).
pub(crate) fn decode_head(bytes: &[u8]) -> Result<Head, Unreadable> {
    head(bytes).map(|(head, _)| head)
}

/// Reads the head from the first bytes of a snapshot, not checked: for a
/// writer, whose read of the RIB checks the whole file next.
pub(crate) fn decode_head_unchecked(start: &[u8]) -> Result<Head, Unreadable> {
    parse_head(start).map(|(head, _)| head)
}

/// Reads a snapshot back, refusing another format by its version and a
/// damaged one by its checksum.
#[cfg(test)]
pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, Unreadable> {
    decode_if(bytes, None)
}

/// As [`decode`], with only the routes `keep` wants (when given) and every
/// small set: a RIB that answers for those routes only.
pub(crate) fn decode_if(bytes: &[u8], keep: Option<Keep<'_>>) -> Result<Snapshot, Unreadable> {
    let (Head { config, attached, at, format }, mut r) = head(bytes)?;
    let n = usize::try_from(r.u64_le()?).map_err(|_| Unreadable::Invalid("chunk count".into()))?;
    let mut chunks = records::chunks(&mut r, n)?;
    if let Some(keep) = keep {
        // Only the chunks whose id range may hold a wanted route are read.
        let firsts = chunks.iter().map(|(bytes, _)| records::first_id(bytes)).collect::<Result<Vec<_>, _>>()?;
        let mut i = 0;
        chunks.retain(|_| {
            i += 1;
            firsts.get(i - 1).is_some_and(|first| keep.may_hold(first, firsts.get(i)))
        });
    }
    // Chunks decoded on every core, then the maps built side by side: a
    // million routes cost two allocations each, which is most of a load.
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get()).clamp(1, 8);
    let per = chunks.len().div_ceil(threads).max(1);
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = chunks.chunks(per).map(|c| s.spawn(move || records::decode_chunks(c, keep))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Unreadable::Invalid("decoder".into()))))
            .collect::<Vec<_>>()
    });
    let (mut routes, mut policies, mut counters, mut origins) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for part in parts {
        let (r, p, c, o) = part?;
        // Each part is in order; the parts must follow each other.
        let follows = |a: Option<&RouteId>, b: Option<&RouteId>| a.zip(b).is_none_or(|(a, b)| a < b);
        if !follows(routes.last().map(|(id, _)| id), r.first().map(|(id, _)| id))
            || !follows(counters.last().map(|(id, _)| id), c.first().map(|(id, _)| id))
            || !follows(policies.last().map(|(id, _)| id), p.first().map(|(id, _)| id))
            || !follows(origins.last().map(|(id, _)| id), o.first().map(|(id, _)| id))
        {
            return Err(Unreadable::Invalid("route records out of order".into()));
        }
        routes.extend(r);
        policies.extend(p);
        counters.extend(c);
        origins.extend(o);
    }
    let mut rib = Rib::new(config.max_counted_routes);
    // Sorted input: the maps are built in bulk, not by a million inserts.
    let (built_routes, built_counters) = std::thread::scope(|s| {
        let r = s.spawn(move || Routes::clean(BTreeMap::from_iter(routes)));
        let c = Tracked::clean(BTreeMap::from_iter(counters));
        (r.join(), c)
    });
    rib.routes = built_routes.map_err(|_| Unreadable::Invalid("route map".into()))?;
    rib.counters_of = built_counters;
    rib.policy_of = Tracked::clean(BTreeMap::from_iter(policies));
    rib.origin_of = Tracked::clean(BTreeMap::from_iter(origins));
    Smalls::get(&mut r)?.install(&mut rib)?;
    if !r.is_empty() {
        return Err(Unreadable::Invalid(format!("{} bytes after the end", r.rest.len())));
    }
    Ok(Snapshot { rib, config, attached, at, format })
}

/// `bytes` (a snapshot of this format) as format 8 wrote it: the same
/// without the tally.
#[cfg(test)]
pub(crate) fn as_format_8(bytes: &[u8]) -> Vec<u8> {
    let (head, r) = parse_head(bytes).unwrap();
    let mut tally = Writer { buf: Vec::new() };
    head.at.tally.unwrap().put(&mut tally);
    let tally_end = bytes.len() - r.rest.len();
    let tally_at = tally_end - tally.buf.len();
    let mut old = bytes[..tally_at].to_vec();
    old.extend_from_slice(&bytes[tally_end..bytes.len() - 4]);
    old[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&8u32.to_le_bytes());
    let crc = crc32fast::hash(&old);
    old.extend_from_slice(&crc.to_le_bytes());
    old
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::{AttachedMode, Ipv4Lookup, MtuPolicy, TtlMode};
    use crate::domain::route::{Route, Table};
    use ipnetwork::IpNetwork;

    pub(crate) fn config() -> LoadConfig {
        LoadConfig {
            ttl: TtlMode::default(),
            mtu: MtuPolicy::default(),
            max_routes_v4: 100,
            max_routes_v6: 100,
            max_policies: 10,
            max_counted_routes: 50,
            lookup: Ipv4Lookup::LpmTrie,
            dir_groups: 0,
            route_values: 0,
            route_cache: 0,
            route_cache_min_routes: 0,
            label_on_link: false,
            skip_stages: 0,
        }
    }

    fn attached() -> Attached {
        Attached { iface: "eth9".into(), ifindex: 9, mode: AttachedMode::Generic }
    }

    #[test]
    fn label_on_link_is_written_only_when_set_and_read_as_unset_where_absent() {
        // A build before the key refuses unknown keys: the default's stores must not have it.
        let header = Header { config: config(), attachment: attached() };
        let json = serde_json::to_string(&header).unwrap();
        assert!(!json.contains("label_on_link"), "{json}");
        let back: Header = serde_json::from_str(&json).unwrap();
        assert!(!back.config.label_on_link, "absent (earlier builds' stores) reads as unset");
        let set = Header { config: LoadConfig { label_on_link: true, ..config() }, attachment: attached() };
        let back: Header = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
        assert!(back.config.label_on_link, "set is kept");
    }

    #[test]
    fn a_read_for_a_few_destinations_passes_chunks_by_and_misses_no_covering_route() {
        // Ten chunks of routes of every length in two tables: whatever chunk
        // a covering route falls in, the read finds it.
        let mut rib = Rib::new(50);
        let alternate = Table::alternate(3).unwrap();
        for i in 0..40_000u32 {
            let len = (i % 25) as u8 + 8;
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (i.wrapping_mul(2_654_435_761) >> 8));
            let prefix = IpNetwork::new(addr.into(), len).unwrap();
            let prefix = IpNetwork::new(prefix.network(), len).unwrap();
            let table = if i % 7 == 0 { alternate } else { Table::Main };
            rib.routes.insert((table, prefix), Route::new(prefix, "100".parse().unwrap()));
        }
        let default: IpNetwork = "0.0.0.0/0".parse().unwrap();
        rib.routes.insert((Table::Main, default), Route::new(default, "700".parse().unwrap()));
        let at = Position { seq: 1, stamp: Boottime(1), policy_next: 1, counter_next: 1, tally: None };
        let bytes = encode(&rib, &config(), &attached(), at);
        for dst in ["10.1.2.3", "10.200.7.9", "10.255.255.255", "192.0.2.1", "2001:db8::1"] {
            let addrs = [dst.parse().unwrap()];
            let keep = Covering(&addrs);
            let read = decode_if(&bytes, Some(&keep)).unwrap().rib;
            let want: Vec<_> = rib.routes.iter().filter(|(id, _)| keep.wants(id)).collect();
            let got: Vec<_> = read.routes.iter().collect();
            assert_eq!(got, want, "{dst}");
        }
    }

    #[test]
    fn a_snapshot_round_trips_and_refuses_damage_and_other_formats() {
        let mut rib = Rib::new(50);
        for (i, p) in ["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"].iter().enumerate() {
            let prefix = p.parse().unwrap();
            rib.routes.insert((Table::Main, prefix), Route::new(prefix, "100".parse().unwrap()));
            rib.counters_of
                .insert((Table::Main, prefix), crate::rib::alloc::CounterSlots { route: i as u32 + 1, lists: vec![] });
        }
        let at = Position { seq: 7, stamp: Boottime(42), policy_next: 3, counter_next: 3, tally: None };
        let bytes = encode(&rib, &config(), &attached(), at);
        let back = decode(&bytes).unwrap();
        assert_eq!(*back.rib.routes, *rib.routes);
        assert_eq!(*back.rib.counters_of, *rib.counters_of);
        let tally = Some(Tally { tries: [2, 1, 0, 0], free_counters: 0 });
        assert_eq!((back.config, back.attached, back.at), (config(), attached(), Position { tally, ..at }));

        let mut damaged = bytes.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x40;
        assert!(matches!(decode(&damaged), Err(Unreadable::Invalid(_))));
        assert!(matches!(decode(&bytes[..bytes.len() - 1]), Err(Unreadable::Invalid(_))));
        let mut future = bytes.clone();
        future[8..12].copy_from_slice(&999u32.to_le_bytes());
        assert_eq!(decode(&future).unwrap_err(), Unreadable::Version(999, env!("CARGO_PKG_VERSION").into()));
        assert!(matches!(decode(b"{\"format\": 3}"), Err(Unreadable::Invalid(_))));
    }
}
