//! Which capabilities the process lacks for loading and attaching XDP.

use std::fmt;

/// Capabilities the process lacks, named as in capabilities(7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCapabilities(pub Vec<&'static str>);

impl fmt::Display for MissingCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the process lacks {}: run as root, or grant them (e.g. `setcap cap_bpf,cap_net_admin,cap_perfmon+ep <binary>`)",
            self.0.join(" and ")
        )
    }
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities XDP needs that the effective set lacks, read from
/// /proc/self/status; `None` when that cannot be read (the kernel's answer then
/// decides). Loading needs CAP_BPF (or CAP_SYS_ADMIN, which covers it on every
/// kernel); packet access in programs needs CAP_PERFMON (or CAP_SYS_ADMIN);
/// attaching to an interface needs CAP_NET_ADMIN.
pub(crate) fn missing() -> Option<MissingCapabilities> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    let eff = u64::from_str_radix(hex, 16).ok()?;
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let mut lacking = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        lacking.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        lacking.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        lacking.push("CAP_NET_ADMIN");
    }
    Some(MissingCapabilities(lacking)).filter(|m| !m.0.is_empty())
}
