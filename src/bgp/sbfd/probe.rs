//! The probe on the wire: Ethernet + the segment list's MPLS stack + IPv4 or
//! IPv6 + UDP (to port 7784) + the BFD control packet. The frame is built
//! whole in user space and sent on the router-facing interface, so the probe
//! takes exactly the path the list's traffic takes: the router forwards on
//! the same top label, and the list's last segment delivers the inner packet
//! to the endpoint, whose reflector answers with plain IP/UDP.

use std::net::IpAddr;

use super::packet::{Control, LEN as BFD_LEN, SBFD_PORT};
use crate::domain::label::{LabelStack, TrafficClass};

/// The addressing of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    /// The router's MAC (the next hop of every segment list).
    pub router_mac: [u8; 6],
    /// The router-facing interface's MAC.
    pub host_mac: [u8; 6],
    /// The inner packet's source: a host address the answer comes back to.
    pub source: IpAddr,
    /// The inner packet's destination: the policy's endpoint.
    pub endpoint: IpAddr,
    /// The UDP source port (49152-65535), where the answers arrive.
    pub source_port: u16,
}

/// Why a probe frame cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The source and the endpoint are of different families.
    #[error("the probe source {from} and the endpoint {endpoint} are of different address families; configure a source of the endpoint's family")]
    Family {
        /// The source address.
        from: IpAddr,
        /// The endpoint.
        endpoint: IpAddr,
    },
}

/// Hops the inner packet may take after the last label is popped: the
/// endpoint is reached by the list itself, but it may sit behind its own
/// loopback routing.
const INNER_TTL: u8 = 255;
/// Each pushed entry's TTL: the list's path may be long.
const LABEL_TTL: u8 = 255;

/// The whole probe frame for a list `stack`, carrying `control`.
///
/// # Errors
/// [`ProbeError::Family`] when source and endpoint differ in family.
pub fn frame(stack: &LabelStack, a: &Addressing, control: &Control) -> Result<Vec<u8>, ProbeError> {
    let bfd = control.encode();
    let udp_len = (8 + BFD_LEN) as u16;
    let mut out = Vec::with_capacity(14 + 4 * stack.len() + 40 + 8 + BFD_LEN);
    out.extend_from_slice(&a.router_mac);
    out.extend_from_slice(&a.host_mac);
    out.extend_from_slice(&0x8847u16.to_be_bytes());
    for e in stack.entries(TrafficClass::default(), LABEL_TTL) {
        out.extend_from_slice(&e.encode());
    }
    let mut udp = [0u8; 8 + BFD_LEN];
    udp[0..2].copy_from_slice(&a.source_port.to_be_bytes());
    udp[2..4].copy_from_slice(&SBFD_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[8..].copy_from_slice(&bfd);
    match (a.source, a.endpoint) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            // DSCP CS6 (network control), as routers send BFD.
            ip[1] = 0xc0;
            ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = INNER_TTL;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let sum = checksum(0, &ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            let pseudo = sum_words(sum_words(sum_words(0, &s.octets()), &d.octets()), &[0, 17]);
            let l4 = checksum(sum_words(pseudo, &udp_len.to_be_bytes()), &udp);
            udp[6..8].copy_from_slice(&nonzero(l4).to_be_bytes());
            out.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = [0u8; 40];
            ip[0] = 0x6c; // version 6, traffic class CS6 (0xc0) across the nibbles
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = 17;
            ip[7] = INNER_TTL;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            let pseudo = sum_words(sum_words(sum_words(0, &s.octets()), &d.octets()), &[0, 17]);
            let l4 = checksum(sum_words(pseudo, &udp_len.to_be_bytes()), &udp);
            udp[6..8].copy_from_slice(&nonzero(l4).to_be_bytes());
            out.extend_from_slice(&ip);
        }
        (from, endpoint) => return Err(ProbeError::Family { from, endpoint }),
    }
    out.extend_from_slice(&udp);
    Ok(out)
}

/// The offset of the BFD packet's My Discriminator in a frame built by
/// [`frame`] for a stack of `labels` entries: the transmitter rewrites
/// only the state byte between sends, never the whole frame.
pub fn bfd_offset(labels: usize, v6: bool) -> usize {
    14 + 4 * labels + if v6 { 40 } else { 20 } + 8
}

/// A UDP checksum of 0 means "none" in IPv4 and is invalid in IPv6: 0xffff is the same sum.
fn nonzero(sum: u16) -> u16 {
    if sum == 0 {
        0xffff
    } else {
        sum
    }
}

fn sum_words(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        if let Ok(pair) = <[u8; 2]>::try_from(c) {
            acc += u32::from(u16::from_be_bytes(pair));
        }
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// The Internet checksum (RFC 1071) of `bytes` on top of a partial sum.
fn checksum(acc: u32, bytes: &[u8]) -> u16 {
    let mut s = sum_words(acc, bytes);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[cfg(test)]
mod tests {
    use super::super::packet::State;
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn control() -> Control {
        Control {
            diag: 0,
            state: State::Down,
            poll: false,
            final_: false,
            detect_mult: 3,
            my_discriminator: 7,
            your_discriminator: 0xc000_0201,
            desired_min_tx_us: 10_000,
            required_min_rx_us: 10_000,
            required_min_echo_rx_us: 0,
        }
    }

    fn addressing(source: &str, endpoint: &str) -> Addressing {
        Addressing {
            router_mac: [2, 0, 0, 0, 0, 1],
            host_mac: [2, 0, 0, 0, 0, 2],
            source: source.parse().unwrap(),
            endpoint: endpoint.parse().unwrap(),
            source_port: 49152,
        }
    }

    /// The frame parsed by an independent parser (etherparse) after the
    /// labels: addresses, ports, checksums and the BFD payload all check out.
    #[test]
    fn the_probe_is_a_labelled_udp_datagram_to_7784() {
        let stack: LabelStack = "16001/16002".parse().unwrap();
        for (src, dst) in [("10.0.0.2", "192.0.2.1"), ("fd00::2", "2001:db8::1")] {
            let a = addressing(src, dst);
            let f = frame(&stack, &a, &control()).unwrap();
            assert_eq!(&f[..14], &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0x47]);
            let (entries, inner) = crate::domain::label::decode_stack(&f[14..]).unwrap();
            let labels: Vec<(u32, bool, u8)> = entries.iter().map(|e| (e.label, e.bottom, e.ttl)).collect();
            assert_eq!(labels, [(16001, false, 255), (16002, true, 255)]);
            let p = SlicedPacket::from_ip(inner).unwrap();
            match p.net.unwrap() {
                NetSlice::Ipv4(v4) => {
                    assert_eq!(IpAddr::V4(v4.header().source_addr()), a.source);
                    assert_eq!(IpAddr::V4(v4.header().destination_addr()), a.endpoint);
                    let h = v4.header().to_header();
                    assert_eq!(h.header_checksum, h.calc_header_checksum());
                }
                NetSlice::Ipv6(v6) => assert_eq!(IpAddr::V6(v6.header().destination_addr()), a.endpoint),
                _ => panic!("not IP"),
            }
            let Some(TransportSlice::Udp(udp)) = p.transport else { panic!("not UDP") };
            assert_eq!((udp.source_port(), udp.destination_port()), (49152, SBFD_PORT));
            let h = udp.to_header();
            let want = match (a.source, a.endpoint) {
                (IpAddr::V4(s), IpAddr::V4(d)) => h.calc_checksum_ipv4_raw(s.octets(), d.octets(), udp.payload()),
                (IpAddr::V6(s), IpAddr::V6(d)) => h.calc_checksum_ipv6_raw(s.octets(), d.octets(), udp.payload()),
                _ => unreachable!(),
            }
            .unwrap();
            assert_eq!(udp.checksum(), want);
            assert_eq!(Control::decode(udp.payload()), Ok(control()));
            assert_eq!(bfd_offset(2, a.source.is_ipv6()), f.len() - BFD_LEN);
        }
        let mixed = frame(&stack, &addressing("10.0.0.2", "2001:db8::1"), &control());
        assert!(matches!(mixed, Err(ProbeError::Family { .. })));
    }
}
