//! The boundary with the dataplane: the generated skeletons and the byte views
//! of the structs they share with the C side.
//!
//! Every layout here comes from the objects' BTF (see `src/bpf/encap_shared.h`
//! and `src/bpf/decap_shared.h`, the single sources of truth); nothing is
//! restated by hand.

#![allow(unsafe_code)]

/// Includes a libbpf-cargo skeleton from OUT_DIR as a module.
macro_rules! skeleton {
    ($module:ident, $file:literal) => {
        pub(crate) mod $module {
            #![allow(
                                                                                                clippy::all,
                                                                                                clippy::pedantic,
                                                                                                missing_docs,
                                                                                                dead_code,
                                                                                                unused_imports,
                                                                                                non_camel_case_types,
                                                                                                non_upper_case_globals,
                                                                                                unsafe_code,
                                                                                                // Generated: its expects fire only if the embedded object lacks
                                                                                                // a map or program it was generated from.
                                                                                                clippy::unwrap_used,
                                                                                                clippy::expect_used,
                                                                                                clippy::panic
                                                                                            )]
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

skeleton!(encap, "encap.skel.rs");
skeleton!(decap, "decap.skel.rs");
#[cfg(feature = "testing")]
skeleton!(testing, "testing.skel.rs");
// S-BFD probes leaving as XDP live frames (src/bgp/sbfd/xdp_tx.rs).
#[cfg(feature = "bgp")]
skeleton!(sbfd, "sbfd.skel.rs");

pub(crate) use encap::types;

/// Deepest stack one route pushes (`ENCAP_MAX_LABELS`).
pub(crate) const MAX_LABELS: usize = types::encap_limits::ENCAP_MAX_LABELS.0 as usize;

/// `route_value.flags` bit of a host-address entry (`ENCAP_ROUTE_LOCAL`).
pub(crate) const ROUTE_LOCAL: u16 = types::encap_route_flags::ENCAP_ROUTE_LOCAL.0 as u16;
/// `route_value.flags` bit of a route that pushes one of a policy's lists.
pub(crate) const ROUTE_POLICY: u16 = types::encap_route_flags::ENCAP_ROUTE_POLICY.0 as u16;
/// `route_value.flags` bit of a route whose TC comes from the packet's DSCP.
pub(crate) const ROUTE_TC_FROM_DSCP: u16 = types::encap_route_flags::ENCAP_ROUTE_TC_FROM_DSCP.0 as u16;

/// `policy_value.flags` bit of an invalid policy whose packets are dropped.
pub(crate) const POLICY_DROP: u8 = types::encap_policy_flags::ENCAP_POLICY_DROP.0 as u8;

/// Number of counters (`ENCAP_CNT__MAX`).
pub(crate) const COUNTERS: u32 = types::encap_counter::ENCAP_CNT__MAX.0;

/// Structs that cross the boundary as raw bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]`, contain only integers and integer arrays, and
/// have no padding, so every byte pattern of their size is a valid value.
pub(crate) unsafe trait Pod: Copy {}

// SAFETY: generated #[repr(C)] structs of integers; sizes asserted below equal the
// sum of their fields, so there is no padding.
unsafe impl Pod for types::route_key_v4 {}
unsafe impl Pod for types::route_key_v6 {}
unsafe impl Pod for types::route_value {}
unsafe impl Pod for types::counter_value {}
unsafe impl Pod for types::segment_list {}
unsafe impl Pod for types::policy_value {}
unsafe impl Pod for types::dscp_map {}
unsafe impl Pod for types::alt_key_v4 {}
unsafe impl Pod for types::alt_key_v6 {}
unsafe impl Pod for types::source_value {}
unsafe impl Pod for types::settings {}
unsafe impl Pod for types::dir_prefix {}
unsafe impl Pod for types::route_cache_ctl {}
// SAFETY: as above, for the decapsulator's object (src/bpf/decap_shared.h).
unsafe impl Pod for decap::types::counter_value {}
unsafe impl Pod for decap::types::pop_label_key {}
unsafe impl Pod for decap::types::pop_label_value {}

const _: () = {
    use std::mem::size_of;
    assert!(size_of::<types::route_key_v4>() == 4 + 4);
    assert!(size_of::<types::route_key_v6>() == 4 + 16);
    assert!(size_of::<types::segment_list>() == 4 + 4 * MAX_LABELS);
    assert!(size_of::<types::alt_key_v4>() == 4 + 4 + 4);
    assert!(size_of::<types::alt_key_v6>() == 4 + 4 + 16);
    assert!(size_of::<types::route_value>() == 8 + size_of::<types::segment_list>() + 4);
    assert!(size_of::<types::policy_value>() == 1024 + 8 * size_of::<types::segment_list>() + 8 * 4);
    assert!(size_of::<types::counter_value>() == 16);
    assert!(size_of::<decap::types::counter_value>() == 16);
    assert!(size_of::<decap::types::pop_label_key>() == 4);
    assert!(size_of::<decap::types::pop_label_value>() == 4);
};

/// Number of decapsulator counters (`DECAP_CNT__MAX`).
pub(crate) const DECAP_COUNTERS: u32 = decap::types::decap_counter::DECAP_CNT__MAX.0;

/// The bytes of a shared struct, as the map syscalls want them.
pub(crate) fn bytes_of<T: Pod>(value: &T) -> &[u8] {
    // SAFETY: T is Pod (no padding, no pointers), so all size_of::<T>() bytes are
    // initialised; the slice borrows `value`.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// A shared struct with every byte zero (padding included, as the kernel wants).
pub(crate) fn zeroed<T: Pod>() -> T {
    // SAFETY: T is Pod, so all-zero bytes are a valid T.
    unsafe { std::mem::zeroed() }
}

/// A shared struct read back from map bytes; `None` when the size is wrong.
pub(crate) fn from_bytes<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() != std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the length matches and T is Pod, so any bytes form a valid T;
    // read_unaligned copes with the Vec's alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}
