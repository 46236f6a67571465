//! What the running kernel offers beyond the oldest supported one, read from
//! its BTF (`/sys/kernel/btf/vmlinux`) once per process.

use std::sync::OnceLock;

use libbpf_rs::btf::types::Func;
use libbpf_rs::btf::Btf;

/// Whether the kernel has `bpf_cast_to_kern_ctx` (Linux 6.2+), the kfunc that
/// lets a program read its device's MTU in place instead of calling
/// bpf_check_mtu. False when the kernel's BTF cannot be read (the programs
/// then use the helper, as on older kernels).
pub(crate) fn has_cast_to_kern_ctx() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        // libbpf's own warnings go to the `log` facade, whoever asks first.
        super::libbpf_log::route();
        match Btf::from_vmlinux() {
            Ok(btf) => {
                let has = btf.type_by_name::<Func<'_>>("bpf_cast_to_kern_ctx").is_some();
                log::debug!("kernel BTF: bpf_cast_to_kern_ctx {}", if has { "present" } else { "absent" });
                has
            }
            Err(e) => {
                log::debug!("kernel BTF unreadable: {e}");
                false
            }
        }
    })
}
