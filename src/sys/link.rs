//! Attachments through BPF links (XDP, tcx egress and ingress): created, pinned,
//! adopted, retargeted at a new program atomically, detached.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use nix::errno::Errno;

use crate::domain::config::{AttachedMode, XdpMode};

/// What a link is attached to, as the kernel reports it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkTarget {
    /// The program the link runs.
    pub(crate) prog_id: u32,
    /// The device's ifindex for an XDP or tcx link: 0 once the device is gone
    /// (the kernel detaches the link then, and a device created later with the
    /// same ifindex is not attached to it); `None` for other link types.
    pub(crate) ifindex: Option<u32>,
}

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

    fn info(&self) -> Result<libbpf_sys::bpf_link_info, Errno> {
        // SAFETY: zeroed is a valid bpf_link_info; the kernel fills up to `len` bytes.
        let mut info: libbpf_sys::bpf_link_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libbpf_sys::bpf_link_info>() as u32;
        // SAFETY: info and len point to valid memory of the stated size.
        let rc = unsafe { libbpf_sys::bpf_link_get_info_by_fd(self.fd.as_raw_fd(), &mut info, &mut len) };
        if rc < 0 {
            return Err(Errno::from_raw(-rc));
        }
        Ok(info)
    }

    /// What the kernel says the link runs and where (`bpf_link_get_info_by_fd`).
    pub(crate) fn target(&self) -> Result<LinkTarget, Errno> {
        let info = self.info()?;
        // SAFETY: the kernel filled the union member that `type_` names; both
        // members read here start with the ifindex.
        let ifindex = match info.type_ {
            libbpf_sys::BPF_LINK_TYPE_XDP => Some(unsafe { info.__bindgen_anon_1.xdp.ifindex }),
            libbpf_sys::BPF_LINK_TYPE_TCX => Some(unsafe { info.__bindgen_anon_1.tcx.ifindex }),
            _ => None,
        };
        Ok(LinkTarget { prog_id: info.prog_id, ifindex })
    }

    /// The id of the program the link runs now.
    pub(crate) fn prog_id(&self) -> Result<u32, Errno> {
        Ok(self.info()?.prog_id)
    }

    /// The program the link runs now, by a new fd.
    pub(crate) fn prog(&self) -> Result<OwnedFd, Errno> {
        let info = self.info()?;
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

/// Whether `ifindex` in the calling thread's network namespace runs XDP
/// program `prog_id`, in any mode: one query per mode, since the kernel
/// reports no single id when programs are attached in two modes.
pub(crate) fn runs_xdp_program(ifindex: u32, prog_id: u32) -> Result<bool, Errno> {
    let target = i32::try_from(ifindex).map_err(|_| Errno::ENODEV)?;
    for flags in [libbpf_sys::XDP_FLAGS_SKB_MODE, libbpf_sys::XDP_FLAGS_DRV_MODE, libbpf_sys::XDP_FLAGS_HW_MODE] {
        let mut id = 0u32;
        // SAFETY: `id` outlives the call.
        let rc = unsafe { libbpf_sys::bpf_xdp_query_id(target, flags as i32, &mut id) };
        if rc < 0 {
            return Err(Errno::from_raw(-rc));
        }
        if id == prog_id {
            return Ok(true);
        }
    }
    Ok(false)
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
