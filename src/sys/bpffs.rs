//! Pins on bpffs: objects (maps, links) that outlive the process that made
//! them, kept in root-only directories.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::DirBuilder;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use libbpf_rs::libbpf_sys;
use nix::errno::Errno;

fn c_path(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// Whether `dir` (or the nearest existing ancestor) is on bpffs.
pub(crate) fn is_bpffs(dir: &Path) -> bool {
    let mut probe = Some(dir);
    while let Some(p) = probe {
        if p.exists() {
            return nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC);
        }
        probe = p.parent();
    }
    false
}

/// Creates `dir` and its missing parents, each mode 0700 (pins grant whoever
/// can open them full control of the dataplane).
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Pins the object behind `fd` at `path` (BPF_OBJ_PIN), readable and
/// writable by its owner only.
pub(crate) fn pin(fd: BorrowedFd<'_>, path: &Path) -> Result<(), Errno> {
    let c = c_path(path)?;
    // SAFETY: valid fd and NUL-terminated path.
    let rc = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) };
    if rc < 0 {
        return Err(Errno::from_raw(-rc));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))
}

/// Opens a pinned object (BPF_OBJ_GET).
pub(crate) fn get(path: &Path) -> Result<OwnedFd, Errno> {
    let c = c_path(path)?;
    // SAFETY: NUL-terminated path.
    let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
    if fd < 0 {
        return Err(Errno::from_raw(-fd));
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The calling thread's network namespace, as the inode of its nsfs file:
/// what tells apart two namespaces that each have an `eth0`.
pub(crate) fn netns_id() -> std::io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}
