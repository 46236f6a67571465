//! Attachments through BPF links (XDP, tcx egress and ingress): created, pinned,
//! adopted, retargeted at a new program atomically, detached.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use nix::errno::Errno;

use crate::domain::config::{AttachedMode, XdpMode};

/// A program attached to an interface through a BPF link (XDP or tcx):
/// closing the link's last fd detaches it, so a process that dies leaves
/// nothing behind (unless the link is pinned).
#[derive(Debug)]
pub(crate) struct BpfLink {
    fd: OwnedFd,
}

impl BpfLink {
    /// Adopts a link from its fd (e.g. one read back from a pin).
    pub(crate) fn from_fd(fd: OwnedFd) -> BpfLink {
        BpfLink { fd }
    }

    /// Points the link at `prog`, atomically: every packet runs the old
    /// program or the new one (BPF_LINK_UPDATE).
    pub(crate) fn update_prog(&self, prog: BorrowedFd<'_>) -> Result<(), Errno> {
        // SAFETY: both fds are valid; NULL opts means "no expected old program".
        let rc = unsafe { libbpf_sys::bpf_link_update(self.fd.as_raw_fd(), prog.as_raw_fd(), std::ptr::null()) };
        if rc < 0 {
            return Err(Errno::from_raw(-rc));
        }
        Ok(())
    }

    /// The program the link runs now, by a new fd.
    pub(crate) fn prog(&self) -> Result<OwnedFd, Errno> {
        // SAFETY: zeroed is a valid bpf_link_info; the kernel fills up to `len` bytes.
        let mut info: libbpf_sys::bpf_link_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libbpf_sys::bpf_link_info>() as u32;
        // SAFETY: info and len point to valid memory of the stated size.
        let rc = unsafe { libbpf_sys::bpf_link_get_info_by_fd(self.fd.as_raw_fd(), &mut info, &mut len) };
        if rc < 0 {
            return Err(Errno::from_raw(-rc));
        }
        // SAFETY: plain syscall wrapper.
        let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(info.prog_id) };
        if fd < 0 {
            return Err(Errno::from_raw(-fd));
        }
        // SAFETY: a new fd owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Detaches now; the fd is closed on drop.
    pub(crate) fn detach(&self) -> Result<(), Errno> {
        // SAFETY: plain syscall wrapper on an fd we own.
        let rc = unsafe { libbpf_sys::bpf_link_detach(self.fd.as_raw_fd()) };
        if rc < 0 {
            return Err(Errno::from_raw(-rc));
        }
        Ok(())
    }
}

/// Attaches `prog` to `ifindex`'s egress through tcx (Linux 6.6+): after the
/// qdisc layer's own programs, before the device; the skb already carries
/// the next hop's MACs.
pub(crate) fn attach_tcx_egress(prog: BorrowedFd<'_>, ifindex: u32) -> Result<BpfLink, Errno> {
    link_create_for(prog, ifindex, libbpf_sys::BPF_TCX_EGRESS, 0)
}

/// Attaches `prog` to `ifindex`'s ingress through tcx (Linux 6.6+): received
/// skbs, after the device's XDP program (if any), before the IP stack.
pub(crate) fn attach_tcx_ingress(prog: BorrowedFd<'_>, ifindex: u32) -> Result<BpfLink, Errno> {
    link_create_for(prog, ifindex, libbpf_sys::BPF_TCX_INGRESS, 0)
}

fn link_create(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> Result<BpfLink, Errno> {
    link_create_for(prog, ifindex, libbpf_sys::BPF_XDP, flags)
}

fn link_create_for(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    attach: libbpf_sys::bpf_attach_type,
    flags: u32,
) -> Result<BpfLink, Errno> {
    // SAFETY: zeroed opts with `sz` set is how libbpf's OPTS are initialised.
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    opts.flags = flags;
    let target = i32::try_from(ifindex).map_err(|_| Errno::ENODEV)?;
    // SAFETY: valid prog fd, opts initialised above.
    let fd = unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), target, attach, &opts) };
    if fd < 0 {
        return Err(Errno::from_raw(-fd));
    }
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(BpfLink { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
}

/// The id of the XDP program attached to `ifindex` (any mode), if any.
pub(crate) fn attached_prog_id(ifindex: u32) -> Result<Option<u32>, Errno> {
    let mut id = 0u32;
    let target = i32::try_from(ifindex).map_err(|_| Errno::ENODEV)?;
    // SAFETY: `id` outlives the call.
    let rc = unsafe { libbpf_sys::bpf_xdp_query_id(target, 0, &mut id) };
    if rc < 0 {
        return Err(Errno::from_raw(-rc));
    }
    Ok(Some(id).filter(|id| *id != 0))
}

/// One mode tried, and how it failed.
pub(crate) type Tried = (AttachedMode, Errno);

/// Attaches `prog` to `ifindex` in `mode`; for [`XdpMode::Auto`], native then
/// generic. On failure returns every attempt's errno.
pub(crate) fn attach(prog: BorrowedFd<'_>, ifindex: u32, mode: XdpMode) -> Result<(BpfLink, AttachedMode), Vec<Tried>> {
    let order: &[AttachedMode] = match mode {
        XdpMode::Native => &[AttachedMode::Native],
        XdpMode::Generic => &[AttachedMode::Generic],
        XdpMode::Offload => &[AttachedMode::Offload],
        XdpMode::Auto => &[AttachedMode::Native, AttachedMode::Generic],
    };
    let mut tried = Vec::new();
    for &m in order {
        let flags = match m {
            AttachedMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            AttachedMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
            AttachedMode::Offload => libbpf_sys::XDP_FLAGS_HW_MODE,
            AttachedMode::Egress | AttachedMode::Ingress => continue,
        };
        match link_create(prog, ifindex, flags) {
            Ok(link) => return Ok((link, m)),
            // Busy means another program holds the interface: falling back would not help.
            Err(e @ (Errno::EBUSY | Errno::EEXIST | Errno::EPERM | Errno::ENODEV)) => {
                tried.push((m, e));
                break;
            }
            Err(e) => {
                log::debug!("XDP attach in {m} mode failed: {e}");
                tried.push((m, e));
            }
        }
    }
    Err(tried)
}

impl AsFd for BpfLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
