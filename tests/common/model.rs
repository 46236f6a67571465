//! The reference model: what the encapsulator must do with a frame, written
//! from the specification and RFC 3032, never from the BPF C.
//!
//! Precedence of the verdicts (which counter a frame lands in): not IP, then
//! malformed, then multicast, then local, then no route, then a policy with
//! no live path (passed as no route, or dropped), then MTU, then labelled.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use ipnetwork::IpNetwork;
use lnetd_host_encap::{
    diagnostics::XdpAction, encap::MtuPolicy, encap::TtlMode, labels::DscpMap, labels::EntropyLabel,
    labels::LabelStackEntry, labels::NoLivePath, routes::Tc, Policy, Route,
};

use super::{labelled, Frame};

/// Which counter a frame lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Labelled,
    NotIp,
    Malformed,
    Multicast,
    Local,
    NoRoute,
    MtuDropped,
    MtuPassed,
    /// Its policy has no live path and says drop (`NoLivePath::Drop`).
    NoLivePathDropped,
}

impl Verdict {
    pub fn counter(self, stats: &lnetd_host_encap::Stats) -> lnetd_host_encap::counters::Counter {
        match self {
            Verdict::Labelled => stats.labelled,
            Verdict::NotIp => stats.not_ip,
            Verdict::Malformed => stats.malformed,
            Verdict::Multicast => stats.multicast,
            Verdict::Local => stats.local,
            Verdict::NoRoute => stats.no_route,
            Verdict::MtuDropped => stats.mtu_dropped,
            Verdict::MtuPassed => stats.mtu_passed,
            Verdict::NoLivePathDropped => stats.no_live_path_dropped,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    pub ttl: TtlMode,
    pub mtu_policy: MtuPolicy,
    /// The ingress interface's MTU.
    pub mtu: usize,
    pub routes: Vec<Route>,
    /// The host's addresses: never labelled.
    pub local: Vec<IpAddr>,
    /// DSCP -> TC for `Tc::FromDscp` routes.
    pub dscp_map: DscpMap,
    /// Source prefixes and the alternate table id each selects.
    pub sources: Vec<(IpNetwork, u32)>,
    /// Alternate tables' routes, by table id.
    pub alternate: HashMap<u32, Vec<Route>>,
}

fn longest(routes: &[Route], addr: IpAddr) -> Option<&Route> {
    routes
        .iter()
        .filter(|r| r.prefix.contains(addr) && r.prefix.is_ipv4() == addr.is_ipv4())
        .max_by_key(|r| r.prefix.prefix())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: XdpAction,
    /// The frame after the program; for XDP_DROP, the input (not compared).
    pub frame: Vec<u8>,
    pub verdict: Verdict,
}

struct Parsed {
    l2_len: usize,
    dst: IpAddr,
    src: IpAddr,
    ttl: u8,
    ip_len: usize,
    proto: u8,
    ports: Option<u32>,
    dscp: u8,
}

/// Ports (source << 16 | destination) of TCP, UDP and SCTP, when the first
/// four L4 bytes lie inside the IP packet.
fn ports(proto: u8, l4: &[u8]) -> Option<u32> {
    if !matches!(proto, 6 | 17 | 132) || l4.len() < 4 {
        return None;
    }
    Some(u32::from_be_bytes([l4[0], l4[1], l4[2], l4[3]]))
}

/// The documented flow hash: MurmurHash3 x86_32, seed 0, over big-endian
/// words [src, dst, protocol, ports] (IPv6: 4 + 4 address words).
pub fn flow_hash(src: IpAddr, dst: IpAddr, proto: u8, ports: Option<u32>) -> u32 {
    let mut words = Vec::new();
    for a in [src, dst] {
        match a {
            IpAddr::V4(a) => words.push(u32::from(a)),
            IpAddr::V6(a) => words.extend(a.octets().chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))),
        }
    }
    words.push(u32::from(proto));
    words.push(ports.unwrap_or(0));
    let mut h: u32 = 0;
    for k in &words {
        let k = k.wrapping_mul(0xcc9e_2d51).rotate_left(15).wrapping_mul(0x1b87_3593);
        h = (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    h ^= (words.len() as u32) * 4;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Slots of a policy's flow table (README: the list is `flow_table()[hash % 1021]`).
pub const SLOTS: usize = 1021;

/// The entropy label for a flow hash (README, SR policies): 16 + (the hash
/// rotated by 16 bits) mod (2^20 - 16), so never one of the special-purpose
/// labels 0..=15 and always within 20 bits. (A 32-bit word rotated by 16 is
/// the same either way: its two halves swapped.)
pub fn entropy_label(hash: u32) -> u32 {
    let swapped = (hash >> 16) | ((hash & 0xffff) << 16);
    16 + swapped % (0x10_0000 - 16)
}

/// A segment list's 64-bit identity: FNV-1a (64-bit offset basis and prime)
/// over the big-endian bytes of its label values, then of the number of
/// earlier lists in the policy with the same labels (so twins differ).
fn list_identity(labels: &[u32], twins_before: u32) -> u64 {
    let mut bytes = Vec::with_capacity(4 * labels.len() + 4);
    for word in labels.iter().chain([&twins_before]) {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Weighted Maglev (Eisenbud et al., NSDI 2016, with weights), step by step:
/// 1. each list's preference order over the slots is the permutation
///    `(offset + j * skip) mod SLOTS`, j = 0, 1, ..., where offset is its
///    identity mod SLOTS and skip is (identity >> 32) mod (SLOTS - 1) + 1;
/// 2. in rounds, each list in order earns its weight in credit, and for every
///    whole largest-weight of credit it holds it takes its next preferred slot
///    still free;
/// 3. until every slot has a list.
///
/// `lists` are (labels top first, weight); the result is the list index per slot.
pub fn maglev_table(lists: &[(Vec<u32>, u16)]) -> Vec<u8> {
    let n = lists.len();
    assert!((1..=8).contains(&n), "1 to 8 lists");
    // Step 1: every list's whole preference order, written out.
    let preferences: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let twins = lists[..i].iter().filter(|(labels, _)| *labels == lists[i].0).count() as u32;
            let id = list_identity(&lists[i].0, twins);
            let offset = (id % SLOTS as u64) as usize;
            let skip = ((id >> 32) % (SLOTS as u64 - 1)) as usize + 1;
            (0..SLOTS).map(|j| (offset + j * skip) % SLOTS).collect()
        })
        .collect();
    let largest = lists.iter().map(|(_, w)| u64::from(*w)).max().expect("at least one list");
    let mut owner: Vec<Option<usize>> = vec![None; SLOTS];
    let mut credit = vec![0u64; n];
    let mut next = vec![0usize; n];
    let mut free = SLOTS;
    // Steps 2 and 3.
    'fill: loop {
        for i in 0..n {
            credit[i] += u64::from(lists[i].1);
            while credit[i] >= largest {
                if free == 0 {
                    break 'fill;
                }
                credit[i] -= largest;
                while owner[preferences[i][next[i]]].is_some() {
                    next[i] += 1;
                }
                owner[preferences[i][next[i]]] = Some(i);
                next[i] += 1;
                free -= 1;
            }
        }
        if free == 0 {
            break;
        }
    }
    owner.into_iter().map(|o| o.expect("every slot filled") as u8).collect()
}

/// A policy's lists as [`maglev_table`] takes them: (labels, weight).
pub type Lists = Vec<(Vec<u32>, u16)>;

/// [`maglev_table`] for a policy's lists (computed once per distinct lists).
pub fn policy_table(policy: &Policy) -> Rc<Vec<u8>> {
    thread_local! {
        static TABLES: RefCell<HashMap<Lists, Rc<Vec<u8>>>> = RefCell::new(HashMap::new());
    }
    let lists: Lists =
        policy.lists().iter().map(|l| (l.stack.labels().iter().map(|x| x.value()).collect(), l.weight)).collect();
    TABLES.with(|t| t.borrow_mut().entry(lists).or_insert_with_key(|k| Rc::new(maglev_table(k))).clone())
}

/// The labels of the list a flow with `hash` takes under `policy`.
pub fn list_for(policy: &Policy, hash: u32) -> Vec<u32> {
    let i = policy_table(policy)[hash as usize % SLOTS];
    policy.lists()[usize::from(i)].stack.labels().iter().map(|l| l.value()).collect()
}

fn parse(b: &[u8]) -> Result<Parsed, Verdict> {
    if b.len() < 14 {
        return Err(Verdict::Malformed);
    }
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([b[12], b[13]]);
    for _ in 0..2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        if b.len() < off + 2 + 4 {
            return Err(Verdict::Malformed);
        }
        off += 4;
        ethertype = u16::from_be_bytes([b[off], b[off + 1]]);
    }
    let l2_len = off + 2;
    let ip = &b[l2_len..];
    match ethertype {
        0x0800 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return Err(Verdict::Malformed);
            }
            let ihl = usize::from(ip[0] & 0xf) * 4;
            let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ihl < 20 || tot < ihl || tot > ip.len() {
                return Err(Verdict::Malformed);
            }
            let dst: [u8; 4] = ip[16..20].try_into().unwrap();
            let src: [u8; 4] = ip[12..16].try_into().unwrap();
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            let ports = if fragment { None } else { ports(ip[9], &ip[ihl..tot]) };
            Ok(Parsed {
                l2_len,
                dst: IpAddr::from(dst),
                src: IpAddr::from(src),
                ttl: ip[8],
                ip_len: tot,
                proto: ip[9],
                ports,
                dscp: ip[1] >> 2,
            })
        }
        0x86dd => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return Err(Verdict::Malformed);
            }
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if 40 + payload > ip.len() {
                return Err(Verdict::Malformed);
            }
            let dst: [u8; 16] = ip[24..40].try_into().unwrap();
            let src: [u8; 16] = ip[8..24].try_into().unwrap();
            Ok(Parsed {
                l2_len,
                dst: IpAddr::from(dst),
                src: IpAddr::from(src),
                ttl: ip[7],
                ip_len: 40 + payload,
                dscp: (((ip[0] & 0x0f) << 4) | (ip[1] >> 4)) >> 2,
                proto: ip[6],
                ports: ports(ip[6], &ip[40..40 + payload]),
            })
        }
        _ => Err(Verdict::NotIp),
    }
}

fn is_multicast(frame: &[u8], dst: IpAddr) -> bool {
    frame[0] & 1 == 1
        || match dst {
            IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_multicast(),
        }
}

impl Model {
    /// The longest route or host address covering `dst`: Ok(route), or Err(()) for local.
    /// Local first (whatever the source); then the alternate table the source
    /// selects, if it covers the destination; else the main table.
    fn lookup(&self, src: IpAddr, dst: IpAddr) -> Option<Result<&Route, ()>> {
        // Link-local (169.254/16, fe80::/10) is never routed: the host's, like its own addresses.
        let link_local = match dst {
            IpAddr::V4(a) => a.octets()[..2] == [169, 254],
            IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
        };
        if self.local.contains(&dst) || link_local {
            return Some(Err(()));
        }
        let table = self
            .sources
            .iter()
            .filter(|(p, _)| p.contains(src) && p.is_ipv4() == src.is_ipv4())
            .max_by_key(|(p, _)| p.prefix())
            .map(|(_, t)| *t);
        let alternate = table.and_then(|t| self.alternate.get(&t)).and_then(|routes| longest(routes, dst));
        alternate.or_else(|| longest(&self.routes, dst)).map(Ok)
    }

    pub fn run(&self, frame: &[u8]) -> Outcome {
        let pass = |verdict| Outcome { action: XdpAction::Pass, frame: frame.to_vec(), verdict };
        let p = match parse(frame) {
            Ok(p) => p,
            Err(v) => return pass(v),
        };
        if is_multicast(frame, p.dst) {
            return pass(Verdict::Multicast);
        }
        let route = match self.lookup(p.src, p.dst) {
            None => return pass(Verdict::NoRoute),
            Some(Err(())) => return pass(Verdict::Local),
            Some(Ok(r)) => r,
        };
        // RFC 9256 section 5: an invalid policy's routes are unlabelled or dropped, as it says.
        match route.policy.when_invalid() {
            Some(NoLivePath::Unlabelled) => return pass(Verdict::NoRoute),
            Some(NoLivePath::Drop) => {
                return Outcome { action: XdpAction::Drop, frame: frame.to_vec(), verdict: Verdict::NoLivePathDropped }
            }
            None => {}
        }
        // The segment list: the policy's flow table at the flow hash.
        let hash = flow_hash(p.src, p.dst, p.proto, p.ports);
        let mut labels = list_for(&route.policy, hash);
        let ttl = match self.ttl {
            TtlMode::Copy => p.ttl,
            TtlMode::Fixed(n) => n,
        };
        let mut ttls = vec![ttl; labels.len()];
        if let Some(e) = route.policy.entropy_label() {
            // RFC 6790: ELI (7) then EL, the flow's entropy mapped into 16..2^20-1, TTL 0.
            let at = match e {
                EntropyLabel::Bottom => labels.len(),
                EntropyLabel::After(n) => n.min(labels.len()),
            };
            labels.splice(at..at, [7, entropy_label(hash)]);
            ttls.splice(at..at, [ttl, 0]);
        }
        if p.ip_len + 4 * labels.len() > self.mtu {
            return match self.mtu_policy {
                MtuPolicy::Drop => {
                    Outcome { action: XdpAction::Drop, frame: frame.to_vec(), verdict: Verdict::MtuDropped }
                }
                MtuPolicy::Pass => pass(Verdict::MtuPassed),
            };
        }
        let tc = match route.tc {
            Tc::Fixed(tc) => tc,
            Tc::FromDscp => self.dscp_map.get(p.dscp),
        };
        let mut entries: Vec<LabelStackEntry> = super::entries(&labels, tc.value(), ttl);
        for (e, t) in entries.iter_mut().zip(ttls) {
            e.ttl = t;
        }
        let input = Frame { bytes: frame.to_vec(), l2_len: p.l2_len };
        Outcome { action: XdpAction::Tx, frame: labelled(&input, &entries), verdict: Verdict::Labelled }
    }
}

/// True when `prefix` is a host route for one of `local`.
pub fn is_local_host_route(prefix: &IpNetwork, local: &[IpAddr]) -> bool {
    let full = if prefix.is_ipv4() { 32 } else { 128 };
    prefix.prefix() == full && local.contains(&prefix.ip())
}
