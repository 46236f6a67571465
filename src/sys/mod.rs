//! Thin wrappers over the kernel: map fds, XDP links, pins on bpffs, test
//! runs and run statistics, capabilities, the kernel's BTF, routing netlink
//! (links, the route to an address), host addresses (and, with
//! `watch`, their netlink notifications), libbpf's log. No
//! policy lives here: each returns the kernel's errno for its caller to name.

#[cfg(feature = "watch")]
pub(crate) mod address_watch;
pub(crate) mod bpffs;
pub(crate) mod ethtool;
#[cfg(feature = "agent")]
pub(crate) mod heap;
pub(crate) mod host_addresses;
pub(crate) mod kernel_btf;
pub(crate) mod libbpf_log;
pub(crate) mod link;
pub(crate) mod map;
pub(crate) mod mmap;
pub(crate) mod netlink;
pub(crate) mod privileges;
pub(crate) mod rtnetlink;
pub(crate) mod test_run;
pub(crate) mod veth_peer;
