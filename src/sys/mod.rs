//! Thin wrappers over the kernel: map fds, XDP links, pins on bpffs, test
//! runs and run statistics, capabilities, host addresses, libbpf's log. No
//! policy lives here: each returns the kernel's errno for its caller to name.

pub(crate) mod bpffs;
pub(crate) mod host_addresses;
pub(crate) mod libbpf_log;
pub(crate) mod link;
pub(crate) mod map;
pub(crate) mod privileges;
pub(crate) mod test_run;
