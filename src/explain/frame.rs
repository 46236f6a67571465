//! The probe's Ethernet frame, written by hand: Ethernet, IPv4 or IPv6, then
//! UDP, a TCP SYN or an ICMP echo request, with their checksums.
//!
//! A packet library (etherparse) did this before; it was the only use of one
//! in the default build and cost a dependent about 4 s of compiling for some
//! 40 lines. The unit tests below compare every frame with etherparse's,
//! byte for byte (etherparse stays a dev-dependency).

use std::net::IpAddr;

use super::{Probe, ProbeProtocol};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
pub(super) const IPPROTO_TCP: u8 = 6;
pub(super) const IPPROTO_UDP: u8 = 17;
pub(super) const IPPROTO_ICMP: u8 = 1;
pub(super) const IPPROTO_ICMPV6: u8 = 58;
/// What the probe carries after its transport header: enough to look like a
/// datagram, and the same for every protocol.
const PAYLOAD: [u8; 32] = [0; 32];
const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// A frame under construction; fields are appended in wire order (network
/// byte order), and a field written earlier can be patched by its offset
/// (lengths and checksums known only once what follows is written).
struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Overwrites the 16-bit field at `at` (written before as a placeholder).
    fn patch_u16(&mut self, at: usize, v: u16) {
        if let Some(field) = self.0.get_mut(at..at + 2) {
            field.copy_from_slice(&v.to_be_bytes());
        }
    }

    fn tail(&self, at: usize) -> &[u8] {
        self.0.get(at..).unwrap_or_default()
    }
}

/// The Internet checksum (RFC 1071) of `parts`, concatenated: the one's
/// complement of the one's complement sum of 16-bit words.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for byte in parts.iter().flat_map(|p| p.iter().copied()) {
        match odd.take() {
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
            None => odd = Some(byte),
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The frame for `probe`, or why there is none (mixed families, DSCP above 63).
pub(super) fn build(probe: &Probe) -> Result<Vec<u8>, String> {
    if probe.dscp > 63 {
        return Err(format!("DSCP {} is out of range (0..=63)", probe.dscp));
    }
    let (src, dst) = (probe.source(), probe.dst);
    let v4 = dst.is_ipv4();
    let proto = probe.ip_protocol();
    let transport_len = if probe.protocol == ProbeProtocol::Tcp { 20 } else { 8 };
    let upper_len = (transport_len + PAYLOAD.len()) as u16;
    let mut w = Writer(Vec::with_capacity(14 + 40 + usize::from(upper_len)));
    w.bytes(&DST_MAC).bytes(&SRC_MAC).u16(if v4 { ETH_P_IPV4 } else { ETH_P_IPV6 });

    // The pseudo-header of the transport checksum (RFC 768, RFC 8200 8.1):
    // ICMPv4 is the one transport whose checksum does not cover it.
    let mut pseudo = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = w.len();
            w.u8(0x45) // version 4, 5 words: no options
                .u8(probe.dscp << 2)
                .u16(20 + upper_len)
                .u16(0) // identification
                .u16(0x4000) // don't fragment, offset 0
                .u8(probe.ttl)
                .u8(proto)
                .u16(0) // checksum, below
                .bytes(&s.octets())
                .bytes(&d.octets());
            let sum = checksum(&[w.tail(ip)]);
            w.patch_u16(ip + 10, sum);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&upper_len.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            // Version 6, the traffic class (DSCP, ECN 0) across the next 8 bits, flow label 0.
            w.u32((6 << 28) | (u32::from(probe.dscp) << 22))
                .u16(upper_len)
                .u8(proto)
                .u8(probe.ttl)
                .bytes(&s.octets())
                .bytes(&d.octets());
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&u32::from(upper_len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        }
        (s, d) => return Err(format!("source {s} and destination {d} are of different families")),
    }

    let upper = w.len();
    let sum_at = match probe.protocol {
        ProbeProtocol::Udp => {
            w.u16(probe.sport).u16(probe.dport).u16(upper_len).u16(0);
            upper + 6
        }
        ProbeProtocol::Tcp => {
            w.u16(probe.sport)
                .u16(probe.dport)
                .u32(1) // sequence number
                .u32(0) // acknowledgment number
                .u8(5 << 4) // 5 words: no options
                .u8(0x02) // SYN
                .u16(64240) // window
                .u16(0) // checksum, below
                .u16(0); // urgent pointer
            upper + 16
        }
        ProbeProtocol::Icmp => {
            // Echo request: type 8 (ICMPv6: 128), code 0, identifier 1, sequence 1.
            w.u8(if v4 { 8 } else { 128 }).u8(0).u16(0).u16(1).u16(1);
            upper + 2
        }
    };
    w.bytes(&PAYLOAD);
    let covered: &[u8] = if proto == IPPROTO_ICMP { &[] } else { &pseudo };
    let mut sum = checksum(&[covered, w.tail(upper)]);
    // UDP sends a computed 0 as all ones: 0 there means "no checksum".
    if proto == IPPROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    w.patch_u16(sum_at, sum);
    Ok(w.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// The frame etherparse builds for `probe` (what `build` replaced).
    fn etherparse_frame(probe: &Probe) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        let ip = match (probe.source(), probe.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h =
                    etherparse::Ipv4Header::new(0, probe.ttl, etherparse::IpNumber::UDP, s.octets(), d.octets())
                        .unwrap();
                h.dscp = etherparse::IpDscp::try_new(probe.dscp).unwrap();
                eth.ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = etherparse::Ipv6Header {
                    traffic_class: probe.dscp << 2,
                    flow_label: Default::default(),
                    payload_length: 0,
                    next_header: etherparse::IpNumber::UDP,
                    hop_limit: probe.ttl,
                    source: s.octets(),
                    destination: d.octets(),
                };
                eth.ip(etherparse::IpHeaders::Ipv6(h, Default::default()))
            }
            _ => panic!("mixed families"),
        };
        let mut out = Vec::new();
        match probe.protocol {
            ProbeProtocol::Udp => ip.udp(probe.sport, probe.dport).write(&mut out, &PAYLOAD),
            ProbeProtocol::Tcp => ip.tcp(probe.sport, probe.dport, 1, 64240).syn().write(&mut out, &PAYLOAD),
            ProbeProtocol::Icmp if probe.dst.is_ipv4() => ip.icmpv4_echo_request(1, 1).write(&mut out, &PAYLOAD),
            ProbeProtocol::Icmp => ip.icmpv6_echo_request(1, 1).write(&mut out, &PAYLOAD),
        }
        .unwrap();
        out
    }

    #[test]
    fn every_frame_is_byte_for_byte_what_etherparse_builds() {
        let pairs: [(&str, &str); 4] = [
            ("0.0.0.0", "198.51.100.7"),
            ("10.0.0.5", "255.255.255.255"),
            ("::", "2001:db8::7"),
            ("2001:db8:ffff::1", "ff02::1"),
        ];
        let mut checked = 0;
        for (src, dst) in pairs {
            for protocol in [ProbeProtocol::Udp, ProbeProtocol::Tcp, ProbeProtocol::Icmp] {
                for (sport, dport, dscp, ttl) in [(49152, 4789, 0, 64), (1234, 443, 46, 1), (65535, 0, 63, 255)] {
                    let probe = Probe::udp(dst.parse().unwrap())
                        .from(src.parse().unwrap())
                        .protocol(protocol)
                        .sport(sport)
                        .dport(dport)
                        .dscp(dscp)
                        .ttl(ttl);
                    assert_eq!(build(&probe).unwrap(), etherparse_frame(&probe), "{probe:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 36);
    }

    #[test]
    fn the_checksum_is_rfc_1071s() {
        // RFC 1071 section 3's example: the sum of these words is 0xddf2.
        assert_eq!(checksum(&[&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]]), !0xddf2);
        // An odd length pads with a zero byte; a split across parts changes nothing.
        assert_eq!(checksum(&[&[0xab]]), !0xab00);
        assert_eq!(checksum(&[&[0x12], &[0x34, 0x56]]), checksum(&[&[0x12, 0x34, 0x56]]));
    }
}
