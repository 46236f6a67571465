//! A tcx ingress observer for labs: what the stack will see of a received
//! skb after the interface's other programs (a decapsulator) ran.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use crate::abi::testing::types::observed_skb;
use crate::abi::{from_bytes, Pod};
use crate::error::{AttachError, MapError};
use crate::sys::link::{self, BpfLink};
use crate::sys::map::BpfMap;

use super::dup;

// SAFETY: a generated #[repr(C)] struct of four u32 (src/bpf/testing.bpf.c),
// no padding (asserted below).
unsafe impl Pod for observed_skb {}

const _: () = assert!(std::mem::size_of::<observed_skb>() == 4 * 4);

/// What [`IngressObserver`] saw of the last skb that carried a VLAN tag the
/// kernel took off on receive, as the stack will see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObservedSkb {
    /// Tagged skbs seen.
    pub seen: u32,
    /// The tag's TPID (0x8100 or 0x88a8).
    pub vlan_proto: u16,
    /// The tag's TCI (priority, DEI and VLAN id).
    pub vlan_tci: u16,
    /// skb->protocol: what the stack dispatches on.
    pub protocol: u16,
}

/// A tcx ingress program attached after the interface's others (while this
/// value lives) that records the last skb carrying a VLAN tag the kernel
/// took off on receive, and passes everything on: what a decapsulator left.
#[derive(Debug)]
pub struct IngressObserver {
    _prog: OwnedFd,
    _link: BpfLink,
    observed: BpfMap,
}

impl IngressObserver {
    /// Loads the observer and attaches it last on `iface`'s ingress in the
    /// calling thread's network namespace.
    ///
    /// # Errors
    /// [`crate::Error::Load`] or [`crate::Error::Attach`].
    pub fn attach(iface: &str) -> Result<IngressObserver, crate::Error> {
        let (prog, observed) =
            super::load(|s| Ok((dup(s.progs.tc_observe.as_fd())?, BpfMap::new(&s.maps.observed, "observed")?)))?;
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        let link = link::attach_tcx_ingress(prog.as_fd(), ifindex)
            .map_err(|errno| AttachError::from_tcx(iface, crate::encap::AttachedMode::Ingress, errno))?;
        Ok(IngressObserver { _prog: prog, _link: link, observed })
    }

    /// The last tagged skb seen (and how many were).
    ///
    /// # Errors
    /// [`MapError`] when the map cannot be read.
    pub fn read(&self) -> Result<ObservedSkb, MapError> {
        let bytes = self.observed.lookup(&0u32.to_ne_bytes())?.unwrap_or_default();
        let o = from_bytes::<observed_skb>(&bytes).ok_or(MapError {
            map: "observed",
            op: "decode",
            errno: Errno::EINVAL,
        })?;
        // The kernel hands these as network-order 16-bit values in 32-bit fields.
        let be = |v: u32| u16::from_be(v as u16);
        Ok(ObservedSkb {
            seen: o.seen,
            vlan_proto: be(o.vlan_proto),
            vlan_tci: o.vlan_tci as u16,
            protocol: be(o.protocol),
        })
    }
}
