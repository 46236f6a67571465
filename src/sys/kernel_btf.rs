//! What the running kernel offers beyond the oldest supported one, read from
//! its BTF (`/sys/kernel/btf/vmlinux`) once per process.

use std::sync::OnceLock;

use libbpf_rs::btf::types::Func;
use libbpf_rs::btf::Btf;

/// The kfuncs of Linux 6.2+ the programs use where the kernel has them
/// (part of a program's fingerprint: they change what it is loaded with).
#[derive(Debug, Clone, Copy, Default, Hash)]
pub(crate) struct Kfuncs {
    cast_to_kern_ctx: bool,
    rdonly_cast: bool,
}

pub(crate) fn kfuncs() -> Kfuncs {
    static HAS: OnceLock<Kfuncs> = OnceLock::new();
    *HAS.get_or_init(|| {
        // libbpf's own warnings go to the `log` facade, whoever asks first.
        super::libbpf_log::route();
        match Btf::from_vmlinux() {
            Ok(btf) => {
                let has = |name: &str| btf.type_by_name::<Func<'_>>(name).is_some();
                let k = Kfuncs { cast_to_kern_ctx: has("bpf_cast_to_kern_ctx"), rdonly_cast: has("bpf_rdonly_cast") };
                log::debug!("kernel BTF: {k:?}");
                k
            }
            Err(e) => {
                log::debug!("kernel BTF unreadable: {e}");
                Kfuncs::default()
            }
        }
    })
}

/// Whether the kernel has `bpf_cast_to_kern_ctx` (Linux 6.2+), the kfunc that
/// lets a program read its device's MTU in place instead of calling
/// bpf_check_mtu. False when the kernel's BTF cannot be read (the programs
/// then use the helper, as on older kernels).
pub(crate) fn has_cast_to_kern_ctx() -> bool {
    kfuncs().cast_to_kern_ctx
}

/// Whether the egress program can read the route the kernel attached to a
/// packet: `bpf_cast_to_kern_ctx` for the skb, `bpf_rdonly_cast` for the
/// route behind it (both Linux 6.2+).
pub(crate) fn can_read_skb_route() -> bool {
    let k = kfuncs();
    k.cast_to_kern_ctx && k.rdonly_cast
}
