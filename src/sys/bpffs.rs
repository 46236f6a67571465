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

/// Whether the bpffs mount under `dir` is the one the host sees at the same
/// path. `ip netns exec` gives the command its own mount namespace and
/// remounts /sys there, so a bpffs mounted under it (and every pin made in
/// it) is private to that shell and vanishes with it. "The host" is every
/// ancestor process, up to PID 1, whose view can be read and that lives in
/// another mount namespace: the shell that ran `ip netns exec` is one. A
/// bind mount of the host's bpffs (as a sandboxed unit has) is the same
/// device, so it passes. `None` when no such ancestor can be read (no
/// CAP_SYS_PTRACE over them, a hidden /proc): nobody can tell, and the caller
/// goes on.
pub(crate) fn is_hosts_bpffs(dir: &Path) -> Option<bool> {
    let ours = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    let mut answer = None;
    let mut pid = parent_of("self")?;
    // The chain ends at PID 1 (whose parent is 0); the bound guards against a
    // chain that changes under us.
    for _ in 0..64 {
        let proc_dir = format!("/proc/{pid}");
        let theirs = std::fs::read_link(format!("{proc_dir}/ns/mnt")).ok();
        if theirs.as_ref().is_some_and(|ns| *ns != ours) {
            match same_mount(dir, Path::new(&format!("{proc_dir}/root"))) {
                Some(false) => return Some(false),
                Some(true) => answer = Some(true),
                None => {}
            }
        } else if theirs.is_some() && pid == 1 {
            answer = Some(true);
        }
        if pid <= 1 {
            break;
        }
        pid = parent_of(&pid.to_string())?;
    }
    answer
}

/// The parent pid, from /proc/<pid>/stat (its fourth field, after the
/// parenthesised command name, which may hold spaces).
fn parent_of(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `dir` here and `dir` under another process's `root` are on the
/// same device, compared at the deepest directory both views have: below it,
/// a path missing on one side says nothing; at it, two mounts differ by
/// their device.
fn same_mount(dir: &Path, root: &Path) -> Option<bool> {
    std::fs::metadata(root).ok()?;
    let mut probe = Some(dir);
    while let Some(p) = probe {
        let theirs = root.join(p.strip_prefix("/").unwrap_or(p));
        if let (Ok(a), Ok(b)) = (std::fs::metadata(p), std::fs::metadata(&theirs)) {
            return Some(a.dev() == b.dev());
        }
        probe = p.parent();
    }
    None
}
