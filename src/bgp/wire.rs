//! GoBGP's API messages as this crate's values: a `Path` (an NLRI and its
//! attributes, each a `google.protobuf.Any` told apart by its type URL) becomes
//! an SR policy candidate path or a colored route; and the reverse, for a
//! controller (or a test) that injects them into GoBGP with `AddPath`.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use prost::Message;
use prost_types::Any;

use super::accept::{Addressing, NO_ADVERTISE, SUBTYPE_ROUTE_TARGET};
use super::enlp::Enlp;
use super::proto as api;
use super::select::{Candidate, CandidateList, Invalid, PolicyKey};

/// The type URL prefix GoBGP gives its attributes.
const TYPE_PREFIX: &str = "type.googleapis.com/apipb.";

/// RFC 9256 section 2.7: a candidate path without a preference has 100.
pub const DEFAULT_PREFERENCE: u32 = 100;

/// The Tunnel Encapsulation attribute's tunnel type for SR Policy (RFC 9830).
const TUNNEL_TYPE_SR_POLICY: u32 = 15;

/// The Policy Name sub-TLV (RFC 9830 section 2.4.8): GoBGP 3.10 hands it
/// over as an unknown sub-TLV, its value a reserved octet then the name.
pub const SUB_TLV_POLICY_NAME: u32 = 130;

/// The SRv6 Binding SID sub-TLV (RFC 9830 section 2.4.3), also unknown to
/// GoBGP 3.10: flags, a reserved octet, the 16-octet SID, then optional parts.
pub const SUB_TLV_SRV6_BINDING_SID: u32 = 20;

/// A path GoBGP sent that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A message inside an `Any` did not decode as its type URL says.
    #[error("GoBGP sent a {what} that does not decode ({source}); is gobgpd's API version 3.x?")]
    Decode {
        /// The message type.
        what: &'static str,
        /// Why.
        #[source]
        source: prost::DecodeError,
    },
    /// An address or prefix that does not parse.
    #[error("GoBGP sent a {what} `{text}` that is not an IP address or prefix")]
    Address {
        /// Which field.
        what: &'static str,
        /// The text.
        text: String,
    },
}

/// The name of an `Any`'s message, without the type URL prefix.
fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or("").strip_prefix("apipb.").unwrap_or("")
}

fn decode<M: Message + Default>(any: &Any, what: &'static str) -> Result<M, WireError> {
    M::decode(any.value.as_slice()).map_err(|source| WireError::Decode { what, source })
}

/// `m` packed into an `Any` with GoBGP's type URL for `name` (e.g. `"SRPolicyNLRI"`).
pub fn pack<M: Message>(name: &str, m: &M) -> Any {
    Any { type_url: format!("{TYPE_PREFIX}{name}"), value: m.encode_to_vec() }
}

/// An NLRI this crate cares about: the key a path is replaced or withdrawn by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Nlri {
    /// SR Policy SAFI 73: distinguisher, color, endpoint.
    SrPolicy {
        /// Tells apart the candidate paths of one policy.
        distinguisher: u32,
        /// Color and endpoint.
        key: PolicyKey,
    },
    /// IPv4 or IPv6 unicast.
    Unicast(IpNetwork),
}

/// What a path says, beside its NLRI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// An SR policy candidate path.
    Candidate(Candidate),
    /// A unicast route: its next hop and color extended communities.
    Route {
        /// The next hop (the policy endpoint it is steered to).
        next_hop: IpAddr,
        /// Color extended communities, in the order received.
        colors: Vec<u32>,
    },
}

/// One path event: an NLRI announced (with what it says) or withdrawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathUpdate {
    /// The NLRI.
    pub nlri: Nlri,
    /// The peer it came from (GoBGP's `neighbor_ip`; empty for local paths).
    pub neighbor: String,
    /// `None`: withdrawn.
    pub learned: Option<Learned>,
}

/// Reads one of GoBGP's paths; `Ok(None)` for an NLRI of another kind (EVPN,
/// flowspec, ...), which this crate ignores.
///
/// # Errors
/// [`WireError`] for a message that does not decode or an address that does not parse.
pub fn read_path(path: &api::Path) -> Result<Option<PathUpdate>, WireError> {
    let Some(nlri_any) = &path.nlri else { return Ok(None) };
    let nlri = match type_name(nlri_any) {
        "SRPolicyNLRI" => {
            let n: api::SrPolicyNlri = decode(nlri_any, "SRPolicyNLRI")?;
            let endpoint = endpoint(&n.endpoint)?;
            Nlri::SrPolicy { distinguisher: n.distinguisher, key: PolicyKey { color: n.color, endpoint } }
        }
        "IPAddressPrefix" => {
            let n: api::IpAddressPrefix = decode(nlri_any, "IPAddressPrefix")?;
            let bad = || WireError::Address { what: "prefix", text: format!("{}/{}", n.prefix, n.prefix_len) };
            let addr: IpAddr = n.prefix.parse().map_err(|_| bad())?;
            let len = u8::try_from(n.prefix_len).map_err(|_| bad())?;
            let net = IpNetwork::new(addr, len).map_err(|_| bad())?;
            // GoBGP sends the network address; normalise in case it does not.
            Nlri::Unicast(IpNetwork::new(net.network(), len).map_err(|_| bad())?)
        }
        _ => return Ok(None),
    };
    let neighbor = path.neighbor_ip.clone();
    if path.is_withdraw {
        return Ok(Some(PathUpdate { nlri, neighbor, learned: None }));
    }
    let learned = match nlri {
        Nlri::SrPolicy { distinguisher, key } => Learned::Candidate(candidate(distinguisher, key, &path.pattrs)?),
        Nlri::Unicast(_) => {
            let (next_hop, colors) = route_attributes(&path.pattrs)?;
            match next_hop {
                Some(next_hop) => Learned::Route { next_hop, colors },
                // A route without a next hop cannot be steered: as if withdrawn.
                None => return Ok(Some(PathUpdate { nlri, neighbor, learned: None })),
            }
        }
    };
    Ok(Some(PathUpdate { nlri, neighbor, learned: Some(learned) }))
}

fn endpoint(bytes: &[u8]) -> Result<IpAddr, WireError> {
    let bad = || WireError::Address { what: "SR policy endpoint", text: format!("{bytes:02x?}") };
    match bytes.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(bytes).map_err(|_| bad())?)),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(bytes).map_err(|_| bad())?)),
        _ => Err(bad()),
    }
}

/// The next hop (NextHopAttribute for IPv4, MpReachNLRIAttribute for IPv6)
/// and the color extended communities of a unicast path.
fn route_attributes(pattrs: &[Any]) -> Result<(Option<IpAddr>, Vec<u32>), WireError> {
    let mut next_hop = None;
    let mut colors = Vec::new();
    let parse = |text: &str| -> Result<IpAddr, WireError> {
        text.parse().map_err(|_| WireError::Address { what: "next hop", text: text.to_owned() })
    };
    for a in pattrs {
        match type_name(a) {
            "NextHopAttribute" => {
                let nh: api::NextHopAttribute = decode(a, "NextHopAttribute")?;
                next_hop = Some(parse(&nh.next_hop)?);
            }
            "MpReachNLRIAttribute" => {
                let mp: api::MpReachNlriAttribute = decode(a, "MpReachNLRIAttribute")?;
                // The first next hop is the global one (a second is link-local).
                if let Some(first) = mp.next_hops.first() {
                    next_hop = Some(parse(first)?);
                }
            }
            "ExtendedCommunitiesAttribute" => {
                let ec: api::ExtendedCommunitiesAttribute = decode(a, "ExtendedCommunitiesAttribute")?;
                for c in &ec.communities {
                    if type_name(c) == "ColorExtended" {
                        colors.push(decode::<api::ColorExtended>(c, "ColorExtended")?.color);
                    }
                }
            }
            _ => {}
        }
    }
    Ok((next_hop, colors))
}

/// Which headend a path is for: its route targets (Route Target extended
/// communities, RFC 4360) and whether it carries NO_ADVERTISE.
fn addressing(pattrs: &[Any]) -> Result<Addressing, WireError> {
    let mut out = Addressing::default();
    for a in pattrs {
        match type_name(a) {
            "ExtendedCommunitiesAttribute" => {
                let ec: api::ExtendedCommunitiesAttribute = decode(a, "ExtendedCommunitiesAttribute")?;
                for c in &ec.communities {
                    match type_name(c) {
                        "IPv4AddressSpecificExtended" => {
                            let e: api::IPv4AddressSpecificExtended = decode(c, "IPv4AddressSpecificExtended")?;
                            if e.is_transitive && e.sub_type == SUBTYPE_ROUTE_TARGET {
                                let rt: Ipv4Addr = e.address.parse().map_err(|_| WireError::Address {
                                    what: "route target's global administrator",
                                    text: e.address.clone(),
                                })?;
                                out.route_targets.push(rt);
                            }
                        }
                        "TwoOctetAsSpecificExtended" => {
                            let e: api::TwoOctetAsSpecificExtended = decode(c, "TwoOctetAsSpecificExtended")?;
                            out.other_route_targets += u32::from(e.is_transitive && e.sub_type == SUBTYPE_ROUTE_TARGET);
                        }
                        "FourOctetAsSpecificExtended" => {
                            let e: api::FourOctetAsSpecificExtended = decode(c, "FourOctetAsSpecificExtended")?;
                            out.other_route_targets += u32::from(e.is_transitive && e.sub_type == SUBTYPE_ROUTE_TARGET);
                        }
                        _ => {}
                    }
                }
            }
            "CommunitiesAttribute" => {
                let c: api::CommunitiesAttribute = decode(a, "CommunitiesAttribute")?;
                out.no_advertise |= c.communities.contains(&NO_ADVERTISE);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The name in a Policy Name sub-TLV's value (a reserved octet, then the
/// name); `None` when there is no name. Bytes that are not printable are
/// replaced: the name goes into logs and the command's output.
pub fn policy_name(value: &[u8]) -> Option<String> {
    let name = value.get(1..).filter(|n| !n.is_empty())?;
    Some(String::from_utf8_lossy(name).chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect())
}

/// The SR Policy sub-TLVs of the Tunnel Encapsulation attribute (RFC 9830):
/// preference, binding SID, ENLP, policy name, segment lists with weights;
/// and the path's route targets. A path without the attribute (GoBGP drops
/// one it cannot parse) is an invalid candidate path, not an error.
fn candidate(distinguisher: u32, key: PolicyKey, pattrs: &[Any]) -> Result<Candidate, WireError> {
    let mut c = Candidate::new(distinguisher, key);
    c.preference = DEFAULT_PREFERENCE;
    c.addressing = addressing(pattrs)?;
    let (mut attribute, mut sr_tunnel) = (false, false);
    for a in pattrs.iter().filter(|a| type_name(a) == "TunnelEncapAttribute") {
        attribute = true;
        let tea: api::TunnelEncapAttribute = decode(a, "TunnelEncapAttribute")?;
        for tlv in tea.tlvs.iter().filter(|t| t.r#type == TUNNEL_TYPE_SR_POLICY) {
            sr_tunnel = true;
            for sub in &tlv.tlvs {
                match type_name(sub) {
                    "TunnelEncapSubTLVSRPreference" => {
                        c.preference =
                            decode::<api::TunnelEncapSubTlvsrPreference>(sub, "SR preference sub-TLV")?.preference;
                    }
                    "TunnelEncapSubTLVSRBindingSID" => {
                        let b: api::TunnelEncapSubTlvsrBindingSid = decode(sub, "binding SID sub-TLV")?;
                        if let Some(bsid) = b.bsid.as_ref().filter(|b| type_name(b) == "SRBindingSID") {
                            let sid: api::SrBindingSid = decode(bsid, "SRBindingSID")?;
                            // An MPLS binding SID: 4 octets, the label in the top 20 bits.
                            if let Ok(word) = <[u8; 4]>::try_from(sid.sid.as_slice()) {
                                c.binding_sid = Some(u32::from_be_bytes(word) >> 12);
                            } else if let Ok(v6) = <[u8; 16]>::try_from(sid.sid.as_slice()) {
                                c.srv6_binding_sid = Some(v6.into());
                            }
                        }
                    }
                    "TunnelEncapSubTLVSRENLP" => {
                        let e: api::TunnelEncapSubTlvsrenlp = decode(sub, "ENLP sub-TLV")?;
                        c.enlp = u32::try_from(e.enlp).ok().and_then(Enlp::from_value);
                    }
                    "TunnelEncapSubTLVUnknown" => {
                        let u: api::TunnelEncapSubTlvUnknown = decode(sub, "unknown sub-TLV")?;
                        match u.r#type {
                            SUB_TLV_POLICY_NAME => c.name = policy_name(&u.value),
                            SUB_TLV_SRV6_BINDING_SID => {
                                let sid = u.value.get(2..18).and_then(|s| <[u8; 16]>::try_from(s).ok());
                                c.srv6_binding_sid = sid.map(Into::into);
                            }
                            _ => {}
                        }
                    }
                    "TunnelEncapSubTLVSRSegmentList" => {
                        let sl: api::TunnelEncapSubTlvsrSegmentList = decode(sub, "segment list sub-TLV")?;
                        let mut list = CandidateList {
                            // RFC 9830 2.4.4.1: no weight sub-TLV means weight 1.
                            weight: sl.weight.as_ref().map_or(1, |w| w.weight),
                            labels: Vec::with_capacity(sl.segments.len()),
                            unsupported: 0,
                        };
                        for seg in &sl.segments {
                            if type_name(seg) == "SegmentTypeA" {
                                let s: api::SegmentTypeA = decode(seg, "SegmentTypeA")?;
                                // Label (20 bits), TC, S, TTL: the label is the top 20 bits.
                                list.labels.push(s.label >> 12);
                            } else {
                                list.unsupported += 1;
                            }
                        }
                        c.ignored_segments += list.unsupported;
                        c.lists.push(list);
                    }
                    _ => {}
                }
            }
        }
    }
    if !attribute {
        c.problem = Some(Invalid::NoTunnelEncapsulation);
    } else if !sr_tunnel {
        c.problem = Some(Invalid::NoSrPolicyTunnel);
    }
    Ok(c)
}

/// A path for GoBGP's `AddPath`/`DeletePath`: the SR policy candidate path
/// `c` (preference, binding SID, ENLP, policy name, segment lists of type-A
/// segments with weights; its IPv4-address-specific route targets and
/// NO_ADVERTISE), with next hop `next_hop` (GoBGP requires one).
pub fn candidate_path(c: &Candidate, next_hop: IpAddr) -> api::Path {
    let endpoint = match c.key.endpoint {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let v6 = c.key.endpoint.is_ipv6();
    let nlri = api::SrPolicyNlri {
        length: if v6 { 192 } else { 96 },
        distinguisher: c.distinguisher,
        color: c.key.color,
        endpoint,
    };
    let mut subs = vec![pack(
        "TunnelEncapSubTLVSRPreference",
        &api::TunnelEncapSubTlvsrPreference { flags: 0, preference: c.preference },
    )];
    if let Some(bsid) = c.binding_sid {
        // GoBGP's API takes an MPLS binding SID as the label value and shifts
        // it into the top 20 bits on the wire; it reports received ones as the
        // wire word (label << 12), which `candidate` reads.
        let sid = api::SrBindingSid { s_flag: true, i_flag: false, sid: bsid.to_be_bytes().to_vec() };
        subs.push(pack(
            "TunnelEncapSubTLVSRBindingSID",
            &api::TunnelEncapSubTlvsrBindingSid { bsid: Some(pack("SRBindingSID", &sid)) },
        ));
    }
    if let Some(e) = c.enlp {
        let enlp = api::TunnelEncapSubTlvsrenlp { flags: 0, enlp: i32::try_from(e.value()).unwrap_or_default() };
        subs.push(pack("TunnelEncapSubTLVSRENLP", &enlp));
    }
    if let Some(name) = &c.name {
        let value = std::iter::once(0).chain(name.bytes()).collect();
        subs.push(pack(
            "TunnelEncapSubTLVUnknown",
            &api::TunnelEncapSubTlvUnknown { r#type: SUB_TLV_POLICY_NAME, value },
        ));
    }
    for list in &c.lists {
        let segments = list
            .labels
            .iter()
            .map(|l| {
                pack("SegmentTypeA", &api::SegmentTypeA { flags: Some(api::SegmentFlags::default()), label: l << 12 })
            })
            .collect();
        subs.push(pack(
            "TunnelEncapSubTLVSRSegmentList",
            &api::TunnelEncapSubTlvsrSegmentList {
                weight: Some(api::SrWeight { flags: 0, weight: list.weight }),
                segments,
            },
        ));
    }
    let tunnel =
        api::TunnelEncapAttribute { tlvs: vec![api::TunnelEncapTlv { r#type: TUNNEL_TYPE_SR_POLICY, tlvs: subs }] };
    let afi = if v6 { api::family::Afi::Ip6 } else { api::family::Afi::Ip };
    let mut pattrs = vec![
        pack("OriginAttribute", &api::OriginAttribute { origin: 0 }),
        next_hop_attribute(next_hop, None, afi, api::family::Safi::SrPolicy),
        pack("TunnelEncapAttribute", &tunnel),
    ];
    pattrs.extend(addressing_attributes(&c.addressing));
    api::Path {
        nlri: Some(pack("SRPolicyNLRI", &nlri)),
        pattrs,
        family: Some(api::Family { afi: afi as i32, safi: api::family::Safi::SrPolicy as i32 }),
        ..Default::default()
    }
}

/// The communities that say `a`: IPv4-address-specific route targets (local
/// administrator 0) and NO_ADVERTISE. Route targets of other types are
/// counted in [`Addressing`] but cannot be rebuilt from a count: none are written.
pub fn addressing_attributes(a: &Addressing) -> Vec<Any> {
    let mut out = Vec::new();
    if !a.route_targets.is_empty() {
        let communities = a
            .route_targets
            .iter()
            .map(|rt| {
                let e = api::IPv4AddressSpecificExtended {
                    is_transitive: true,
                    sub_type: SUBTYPE_ROUTE_TARGET,
                    address: rt.to_string(),
                    local_admin: 0,
                };
                pack("IPv4AddressSpecificExtended", &e)
            })
            .collect();
        out.push(pack("ExtendedCommunitiesAttribute", &api::ExtendedCommunitiesAttribute { communities }));
    }
    if a.no_advertise {
        out.push(pack("CommunitiesAttribute", &api::CommunitiesAttribute { communities: vec![NO_ADVERTISE] }));
    }
    out
}

/// The next hop as GoBGP wants it: NextHopAttribute for IPv4 unicast,
/// MpReachNLRIAttribute (carrying the NLRI too) otherwise.
fn next_hop_attribute(next_hop: IpAddr, nlri: Option<&Any>, afi: api::family::Afi, safi: api::family::Safi) -> Any {
    if afi == api::family::Afi::Ip && safi == api::family::Safi::Unicast {
        return pack("NextHopAttribute", &api::NextHopAttribute { next_hop: next_hop.to_string() });
    }
    if safi == api::family::Safi::SrPolicy {
        return pack("NextHopAttribute", &api::NextHopAttribute { next_hop: next_hop.to_string() });
    }
    pack(
        "MpReachNLRIAttribute",
        &api::MpReachNlriAttribute {
            family: Some(api::Family { afi: afi as i32, safi: safi as i32 }),
            next_hops: vec![next_hop.to_string()],
            nlris: nlri.cloned().into_iter().collect(),
        },
    )
}

/// A path for GoBGP's `AddPath`/`DeletePath`: unicast `prefix` via
/// `next_hop`, carrying the color extended communities `colors`.
pub fn colored_route_path(prefix: IpNetwork, next_hop: IpAddr, colors: &[u32]) -> api::Path {
    let nlri = pack(
        "IPAddressPrefix",
        &api::IpAddressPrefix { prefix_len: u32::from(prefix.prefix()), prefix: prefix.network().to_string() },
    );
    let afi = if prefix.is_ipv6() { api::family::Afi::Ip6 } else { api::family::Afi::Ip };
    let mut pattrs = vec![
        pack("OriginAttribute", &api::OriginAttribute { origin: 0 }),
        next_hop_attribute(next_hop, Some(&nlri), afi, api::family::Safi::Unicast),
    ];
    if !colors.is_empty() {
        let communities = colors.iter().map(|c| pack("ColorExtended", &api::ColorExtended { color: *c })).collect();
        pattrs.push(pack("ExtendedCommunitiesAttribute", &api::ExtendedCommunitiesAttribute { communities }));
    }
    api::Path {
        nlri: Some(nlri),
        pattrs,
        family: Some(api::Family { afi: afi as i32, safi: api::family::Safi::Unicast as i32 }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PolicyKey {
        PolicyKey { color: 100, endpoint: "192.0.2.1".parse().unwrap() }
    }

    #[test]
    fn a_candidate_path_reads_back_as_written() {
        let c = Candidate {
            preference: 200,
            lists: vec![
                CandidateList { weight: 3, labels: vec![16001, 16002], unsupported: 0 },
                CandidateList { weight: 1, labels: vec![17001], unsupported: 0 },
            ],
            addressing: Addressing {
                route_targets: vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()],
                other_route_targets: 0,
                no_advertise: true,
            },
            enlp: Some(Enlp::Both),
            name: Some("blue-to-dc2".into()),
            ..Candidate::new(7, key())
        };
        let mut path = candidate_path(&c, "10.0.0.1".parse().unwrap());
        path.neighbor_ip = "10.201.0.1".into();
        let read = read_path(&path).unwrap().unwrap();
        assert_eq!(read.nlri, Nlri::SrPolicy { distinguisher: 7, key: key() });
        assert_eq!(read.neighbor, "10.201.0.1");
        assert_eq!(read.learned, Some(Learned::Candidate(c)));
        path.is_withdraw = true;
        assert_eq!(read_path(&path).unwrap().unwrap().learned, None);
    }

    #[test]
    fn binding_sids_follow_gobgps_api_conventions() {
        let c = Candidate {
            binding_sid: Some(24001),
            lists: vec![CandidateList { weight: 1, labels: vec![16001], unsupported: 0 }],
            ..Candidate::new(1, key())
        };
        let path = candidate_path(&c, "10.0.0.1".parse().unwrap());
        let tea: api::TunnelEncapAttribute =
            decode(path.pattrs.iter().find(|a| type_name(a) == "TunnelEncapAttribute").unwrap(), "t").unwrap();
        let b: api::TunnelEncapSubTlvsrBindingSid =
            decode(tea.tlvs[0].tlvs.iter().find(|a| type_name(a) == "TunnelEncapSubTLVSRBindingSID").unwrap(), "b")
                .unwrap();
        let sid: api::SrBindingSid = decode(b.bsid.as_ref().unwrap(), "s").unwrap();
        // Into AddPath: the label value. Out of ListPath/WatchEvent: the wire word.
        assert_eq!(sid.sid, 24001u32.to_be_bytes());
        let wire = api::SrBindingSid { sid: (24001u32 << 12).to_be_bytes().to_vec(), ..sid };
        let mut tea = tea;
        tea.tlvs[0].tlvs = vec![pack(
            "TunnelEncapSubTLVSRBindingSID",
            &api::TunnelEncapSubTlvsrBindingSid { bsid: Some(pack("SRBindingSID", &wire)) },
        )];
        let read = candidate(1, key(), &[pack("TunnelEncapAttribute", &tea)]).unwrap();
        assert_eq!(read.binding_sid, Some(24001));
    }

    #[test]
    fn other_segment_types_are_counted_not_read_as_labels() {
        let c = Candidate {
            lists: vec![CandidateList { weight: 1, labels: vec![16001], unsupported: 0 }],
            ..Candidate::new(1, key())
        };
        let mut path = candidate_path(&c, "10.0.0.1".parse().unwrap());
        // Add a type-B (SRv6) segment to the list.
        let tea_any = path.pattrs.iter_mut().find(|a| type_name(a) == "TunnelEncapAttribute").unwrap();
        let mut tea: api::TunnelEncapAttribute = decode(tea_any, "t").unwrap();
        let sl_any = tea.tlvs[0].tlvs.iter_mut().find(|a| type_name(a) == "TunnelEncapSubTLVSRSegmentList").unwrap();
        let mut sl: api::TunnelEncapSubTlvsrSegmentList = decode(sl_any, "s").unwrap();
        sl.segments.push(pack("SegmentTypeB", &api::SegmentTypeB { flags: None, sid: vec![0x20, 0x01, 0x0d, 0xb8] }));
        *sl_any = pack("TunnelEncapSubTLVSRSegmentList", &sl);
        *tea_any = pack("TunnelEncapAttribute", &tea);
        let Some(Learned::Candidate(read)) = read_path(&path).unwrap().unwrap().learned else { panic!() };
        assert_eq!(read.ignored_segments, 1);
        assert_eq!(read.lists[0].labels, [16001]);
        assert_eq!(read.lists[0].unsupported, 1);
    }

    #[test]
    fn colored_routes_read_back_for_both_families() {
        for (prefix, nh) in [("198.51.100.0/24", "192.0.2.1"), ("2001:db8:1::/48", "2001:db8::1")] {
            let prefix: IpNetwork = prefix.parse().unwrap();
            let path = colored_route_path(prefix, nh.parse().unwrap(), &[100, 200]);
            let read = read_path(&path).unwrap().unwrap();
            assert_eq!(read.nlri, Nlri::Unicast(prefix));
            assert_eq!(read.learned, Some(Learned::Route { next_hop: nh.parse().unwrap(), colors: vec![100, 200] }));
        }
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        let mut path = colored_route_path("198.51.100.0/24".parse().unwrap(), "192.0.2.1".parse().unwrap(), &[]);
        path.nlri = Some(Any { type_url: format!("{TYPE_PREFIX}IPAddressPrefix"), value: vec![0xff, 0xff] });
        assert!(matches!(read_path(&path), Err(WireError::Decode { .. })));
        path.nlri = Some(pack("IPAddressPrefix", &api::IpAddressPrefix { prefix_len: 24, prefix: "nope".into() }));
        assert!(matches!(read_path(&path), Err(WireError::Address { .. })));
        path.nlri = Some(pack("EVPNIPPrefixRoute", &api::NextHopAttribute::default()));
        assert_eq!(read_path(&path).unwrap(), None);
    }

    /// A decoded SR Policy path with these extended communities and communities.
    fn decoded(extended: Vec<Any>, communities: Vec<u32>) -> Candidate {
        let c = Candidate {
            lists: vec![CandidateList { weight: 1, labels: vec![16001], unsupported: 0 }],
            ..Candidate::new(1, key())
        };
        let mut path = candidate_path(&c, "10.0.0.1".parse().unwrap());
        if !extended.is_empty() {
            let ec = api::ExtendedCommunitiesAttribute { communities: extended };
            path.pattrs.push(pack("ExtendedCommunitiesAttribute", &ec));
        }
        if !communities.is_empty() {
            path.pattrs.push(pack("CommunitiesAttribute", &api::CommunitiesAttribute { communities }));
        }
        let Some(Learned::Candidate(read)) = read_path(&path).unwrap().unwrap().learned else {
            panic!("not a candidate")
        };
        read
    }

    fn ipv4_rt(address: &str, sub_type: u32) -> Any {
        let e =
            api::IPv4AddressSpecificExtended { is_transitive: true, sub_type, address: address.into(), local_admin: 7 };
        pack("IPv4AddressSpecificExtended", &e)
    }

    #[test]
    fn the_acceptance_table_on_decoded_paths() {
        use crate::bgp::accept::{accept, Ignored};
        let me: Ipv4Addr = "10.0.0.2".parse().unwrap();
        let as2_rt = pack(
            "TwoOctetAsSpecificExtended",
            &api::TwoOctetAsSpecificExtended { is_transitive: true, sub_type: 2, asn: 65000, local_admin: 1 },
        );
        let as4_rt = pack(
            "FourOctetAsSpecificExtended",
            &api::FourOctetAsSpecificExtended { is_transitive: true, sub_type: 2, asn: 4_200_000_000, local_admin: 1 },
        );
        let color = pack("ColorExtended", &api::ColorExtended { color: 100 });
        type Case = (&'static str, Vec<Any>, Vec<u32>, Result<(), Ignored>);
        let cases: Vec<Case> = vec![
            ("route target match", vec![ipv4_rt("10.0.0.2", 2)], vec![], Ok(())),
            ("route target mismatch", vec![ipv4_rt("10.0.0.3", 2)], vec![], Err(Ignored::RouteTargetMismatch)),
            ("absent, with NO_ADVERTISE", vec![], vec![0xFFFF_0001, NO_ADVERTISE], Ok(())),
            ("absent, without NO_ADVERTISE", vec![color.clone()], vec![0xFFFF_0001], Err(Ignored::NoRouteTarget)),
            (
                "several targets, one matching",
                vec![ipv4_rt("10.0.0.1", 2), ipv4_rt("10.0.0.2", 2), ipv4_rt("10.0.0.3", 2)],
                vec![],
                Ok(()),
            ),
            ("a two-octet AS route target", vec![as2_rt.clone()], vec![], Err(Ignored::RouteTargetNotIpv4)),
            (
                "a four-octet AS route target with NO_ADVERTISE",
                vec![as4_rt],
                vec![NO_ADVERTISE],
                Err(Ignored::RouteTargetNotIpv4),
            ),
            ("an AS route target beside a matching one", vec![as2_rt, ipv4_rt("10.0.0.2", 2)], vec![], Ok(())),
            // Sub-type 0x03 is a route origin, not a target: as if absent.
            ("an IPv4 route origin, NO_ADVERTISE", vec![ipv4_rt("10.0.0.3", 3)], vec![NO_ADVERTISE], Ok(())),
            ("an IPv4 route origin only", vec![ipv4_rt("10.0.0.2", 3)], vec![], Err(Ignored::NoRouteTarget)),
        ];
        for (name, extended, communities, want) in cases {
            let c = decoded(extended, communities);
            assert_eq!(accept(&c.addressing, Some(me)), want, "{name}: {}", c.addressing);
        }
    }

    #[test]
    fn a_path_without_its_tunnel_encapsulation_attribute_is_an_invalid_candidate() {
        let c = Candidate {
            lists: vec![CandidateList { weight: 1, labels: vec![16001], unsupported: 0 }],
            addressing: Addressing::peer(),
            ..Candidate::new(1, key())
        };
        let mut path = candidate_path(&c, "10.0.0.1".parse().unwrap());
        // What GoBGP 3.10 hands over after discarding an attribute it could not parse.
        path.pattrs.retain(|a| type_name(a) != "TunnelEncapAttribute");
        let Some(Learned::Candidate(read)) = read_path(&path).unwrap().unwrap().learned else { panic!() };
        assert_eq!(read.invalid(), Some(Invalid::NoTunnelEncapsulation));
        assert_eq!((read.lists.len(), read.policy()), (0, None));
        assert_eq!(read.addressing, Addressing::peer(), "still addressed: counted as invalid, not as ignored");
        // An attribute with another tunnel type only.
        let other = api::TunnelEncapAttribute { tlvs: vec![api::TunnelEncapTlv { r#type: 7, tlvs: vec![] }] };
        path.pattrs.push(pack("TunnelEncapAttribute", &other));
        let Some(Learned::Candidate(read)) = read_path(&path).unwrap().unwrap().learned else { panic!() };
        assert_eq!(read.invalid(), Some(Invalid::NoSrPolicyTunnel));
    }

    #[test]
    fn policy_names_and_reserved_enlp_values() {
        assert_eq!(policy_name(b"\0blue"), Some("blue".to_owned()));
        assert_eq!(policy_name(b"\0"), None);
        assert_eq!(policy_name(b""), None);
        assert_eq!(policy_name(b"\0a\nb"), Some("a\u{fffd}b".to_owned()));
        let enlp = |value: i32| {
            let sub = pack("TunnelEncapSubTLVSRENLP", &api::TunnelEncapSubTlvsrenlp { flags: 0, enlp: value });
            let tea = api::TunnelEncapAttribute {
                tlvs: vec![api::TunnelEncapTlv { r#type: TUNNEL_TYPE_SR_POLICY, tlvs: vec![sub] }],
            };
            candidate(1, key(), &[pack("TunnelEncapAttribute", &tea)]).unwrap().enlp
        };
        assert_eq!(enlp(2), Some(Enlp::Ipv6));
        // An SRv6 binding SID as GoBGP 3.10 hands it over: an unknown sub-TLV 20.
        let sid: std::net::Ipv6Addr = "2001:db8::24".parse().unwrap();
        let value = [&[0u8, 0][..], &sid.octets()].concat();
        let sub = pack("TunnelEncapSubTLVUnknown", &api::TunnelEncapSubTlvUnknown { r#type: 20, value });
        let tea = api::TunnelEncapAttribute {
            tlvs: vec![api::TunnelEncapTlv { r#type: TUNNEL_TYPE_SR_POLICY, tlvs: vec![sub] }],
        };
        assert_eq!(candidate(1, key(), &[pack("TunnelEncapAttribute", &tea)]).unwrap().srv6_binding_sid, Some(sid));
        assert_eq!(enlp(0), None, "reserved: ignored");
        assert_eq!(enlp(9), None, "reserved: ignored");
    }
}
