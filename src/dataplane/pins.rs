//! Where a pinned dataplane lives, one directory per network namespace and
//! interface (two namespaces may each have an `eth0`):
//!
//! ```text
//! <bpffs root>/net<netns inode>/<iface>/maps/<map>   the maps
//! <bpffs root>/net<netns inode>/<iface>/link         the XDP link
//! <state root>/net<netns inode>/<iface>/rib.snapshot, rib.journal
//!                                                     the RIB (bpffs holds no files; see
//!                                                     crate::rib::store)
//! ```
//!
//! A pinned decapsulator lives the same way under the roots' `decap`
//! sub-directory ([`decap_roots`]), so an encapsulator and a decapsulator
//! pinned for the same interface never share a directory:
//!
//! ```text
//! <bpffs root>/decap/net<netns inode>/<iface>/maps/<map>, .../link
//! <state root>/decap/net<netns inode>/<iface>/state.json
//! ```
//!
//! Directories are mode 0700 and files 0600: whoever can open a pin controls
//! the dataplane.

use std::fs::{File, OpenOptions};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::EncapMaps;
use crate::error::PinError;
use crate::sys::bpffs;
use crate::sys::link::BpfLink;
use crate::sys::map::BpfMap;

/// The default bpffs directory for pins.
pub const DEFAULT_BPFFS_ROOT: &str = "/sys/fs/bpf/lnetd-host-encap";
/// The default directory for state files (tmpfs: it lives as long as the pins).
pub const DEFAULT_STATE_ROOT: &str = "/run/lnetd-host-encap";

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

/// The one process that may change a pinned dataplane holds this lock
/// (flock on a file beside the state); the kernel releases it when the
/// process dies, SIGKILL included.
#[derive(Debug)]
pub(crate) struct OwnerLock {
    _lock: Flock<File>,
}

/// The two roots under which pinned dataplanes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRoots {
    /// A directory on bpffs for the maps and the link.
    pub bpffs: PathBuf,
    /// A directory on a local filesystem for the state file.
    pub state: PathBuf,
}

impl Default for PinRoots {
    fn default() -> Self {
        PinRoots { bpffs: DEFAULT_BPFFS_ROOT.into(), state: DEFAULT_STATE_ROOT.into() }
    }
}

impl PinRoots {
    /// Checks that the bpffs root is the host's as this process sees it.
    ///
    /// # Errors
    /// [`PinError::NotHostBpffs`] when the process runs in a mount namespace
    /// of its own (as under `ip netns exec`, which mounts another bpffs, or
    /// none, over /sys): the host's pins cannot be seen or removed from there,
    /// so a cleanup would report success and leave them (and the program
    /// they hold) in place.
    pub fn check_hosts_bpffs(&self) -> Result<(), PinError> {
        not_hosts(&self.bpffs).map_or(Ok(()), Err)
    }
}

/// [`PinError::NotHostBpffs`] when `dir` is not on the host's bpffs as this
/// process sees it (a mount namespace of its own).
fn not_hosts(dir: &Path) -> Option<PinError> {
    (bpffs::is_hosts_bpffs(dir) == Some(false)).then(|| PinError::NotHostBpffs { dir: dir.to_owned() })
}

/// Why pins cannot be made or seen under `dir` from this process, if they
/// cannot: a mount namespace of its own first (there, "mount a bpffs", the
/// advice for a host without one, only led to that refusal), then no bpffs.
fn unseen(dir: &Path) -> Option<PinError> {
    not_hosts(dir).or_else(|| (!bpffs::is_bpffs(dir)).then(|| PinError::NotBpffs { dir: dir.to_owned() }))
}

/// The roots of pinned decapsulators: the `decap` sub-directory of `roots`
/// (beside the encapsulators' `net<netns>` directories, never one of them).
pub(crate) fn decap_roots(roots: &PinRoots) -> PinRoots {
    PinRoots { bpffs: roots.bpffs.join("decap"), state: roots.state.join("decap") }
}

/// One pinned dataplane's directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PinDir {
    pins: PathBuf,
    state: PathBuf,
}

/// The state directory's record of the program the link runs
/// ([`PinDir::record_program`]).
const PROGRAM: &str = "program";

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PinError + 'a {
    move |source| PinError::Io { op, path: path.to_owned(), source }
}

impl PinDir {
    /// The directories of `iface` in the calling thread's network namespace.
    pub(crate) fn of(roots: &PinRoots, iface: &str) -> Result<PinDir, PinError> {
        if iface.is_empty() || iface.contains('/') || iface == "." || iface == ".." {
            return Err(PinError::BadInterfaceName { iface: iface.to_owned() });
        }
        let ns =
            bpffs::netns_id().map_err(io("reading the network namespace", Path::new("/proc/thread-self/ns/net")))?;
        let sub = Path::new(&format!("net{ns}")).join(iface);
        Ok(PinDir { pins: roots.bpffs.join(&sub), state: roots.state.join(sub) })
    }

    /// The bpffs directory.
    pub(crate) fn pins(&self) -> &Path {
        &self.pins
    }

    pub(crate) fn maps_dir(&self) -> PathBuf {
        self.pins.join("maps")
    }

    pub(crate) fn link_path(&self) -> PathBuf {
        self.pins.join("link")
    }

    /// The lock file that serialises probe runs across processes.
    pub(crate) fn probe_lock(&self) -> PathBuf {
        self.state.join("probe.lock")
    }

    /// Where probe copies of the program are kept between processes
    /// (`explain`), one directory per build and load configuration.
    pub(crate) fn probes_dir(&self) -> PathBuf {
        self.pins.join("probe")
    }

    fn state_path(&self) -> PathBuf {
        self.state.join(STATE_FILE)
    }

    /// The directory of the state files.
    pub(crate) fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Records that `link` runs the program this build loaded as
    /// `fingerprint` ([`crate::dataplane::fingerprint`]), by the program's
    /// id. Best effort: without the record, the next adoption loads its
    /// program again, as before.
    pub(crate) fn record_program(&self, fingerprint: u64, link: &BpfLink) {
        let path = self.state.join(PROGRAM);
        let written = link
            .prog_id()
            .map_err(std::io::Error::from)
            .and_then(|id| std::fs::write(&path, format!("{fingerprint:016x} {id}\n")));
        if let Err(e) = written {
            log::debug!("recording the running program in {}: {e}", path.display());
        }
    }

    /// What [`PinDir::record_program`] recorded last, if it can be read.
    pub(crate) fn recorded_program(&self) -> Option<(u64, u32)> {
        let text = std::fs::read_to_string(self.state.join(PROGRAM)).ok()?;
        let (fingerprint, id) = text.trim().split_once(' ')?;
        Some((u64::from_str_radix(fingerprint, 16).ok()?, id.parse().ok()?))
    }

    /// Whether a dataplane is pinned here; [`PinError::NoAccess`] when the
    /// process may not look (`Path::exists` would say "no").
    pub(crate) fn exists(&self) -> Result<bool, PinError> {
        let found = |path: PathBuf| match path.try_exists() {
            Ok(found) => Ok(found),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(PinError::NoAccess { path }),
            Err(source) => Err(PinError::Io { op: "looking for", path, source }),
        };
        // The state directory is looked at once, fallibly; the store's own
        // files in it then need no second permission check.
        Ok(found(self.link_path())? || found(self.state_path())? || crate::rib::store::exists(&self.state))
    }

    /// Pins `maps` and `link` and writes the first state file. On error,
    /// removes whatever it pinned.
    pub(crate) fn create(&self, maps: &[&BpfMap], link: &BpfLink, state: &str) -> Result<(), PinError> {
        self.create_with(maps, link, |dir| dir.save(state))
    }

    /// Pins `maps` and `link`, then lets `write_state` write the first
    /// state. On error, removes whatever it pinned.
    pub(crate) fn create_with<T>(
        &self,
        maps: &[&BpfMap],
        link: &BpfLink,
        write_state: impl FnOnce(&PinDir) -> Result<T, PinError>,
    ) -> Result<T, PinError> {
        if let Some(e) = unseen(&self.pins) {
            return Err(e);
        }
        if self.exists()? {
            return Err(PinError::AlreadyPinned { dir: self.pins.clone() });
        }
        let result = self.pin_all(maps, link).and_then(|()| write_state(self));
        if result.is_err() {
            if let Err(e) = self.remove() {
                log::warn!("cleaning up after a failed pin: {e}");
            }
        }
        result
    }

    fn pin_all(&self, maps: &[&BpfMap], link: &BpfLink) -> Result<(), PinError> {
        let maps_dir = self.maps_dir();
        bpffs::create_private_dir(&maps_dir).map_err(io("creating", &maps_dir))?;
        bpffs::create_private_dir(&self.state).map_err(io("creating", &self.state))?;
        for map in maps {
            let path = maps_dir.join(map.name());
            bpffs::pin(map.fd(), &path).map_err(|errno| PinError::Kernel { op: "pinning", path, errno })?;
        }
        let path = self.link_path();
        bpffs::pin(std::os::fd::AsFd::as_fd(link), &path).map_err(|errno| PinError::Kernel {
            op: "pinning",
            path,
            errno,
        })
    }

    /// Replaces the state file atomically (write beside, then rename).
    pub(crate) fn save(&self, state: &str) -> Result<(), PinError> {
        let path = self.state_path();
        let tmp = self.state.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("writing", &tmp))?;
        file.write_all(state.as_bytes()).and_then(|()| file.sync_data()).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &path))
    }

    /// Takes the owner lock, waiting up to `wait` for another owner to let go.
    pub(crate) fn lock(&self, wait: Duration) -> Result<OwnerLock, PinError> {
        bpffs::create_private_dir(&self.state).map_err(io("creating", &self.state))?;
        let path = self.state.join(LOCK_FILE);
        let deadline = Instant::now() + wait;
        loop {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io("opening", &path))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(OwnerLock { _lock: lock }),
                Err((_, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err((_, Errno::EWOULDBLOCK)) => return Err(PinError::Busy { dir: self.pins.clone() }),
                Err((_, errno)) => return Err(PinError::Kernel { op: "locking", path, errno }),
            }
        }
    }

    /// The state file's text.
    pub(crate) fn read(&self) -> Result<String, PinError> {
        let path = self.state_path();
        std::fs::read_to_string(&path).map_err(io("reading", &path))
    }

    pub(crate) fn open_maps(&self) -> Result<EncapMaps, PinError> {
        EncapMaps::from_pins(&self.maps_dir()).map_err(|(name, errno)| {
            self.elsewhere(errno).unwrap_or_else(|| PinError::Kernel {
                op: "opening",
                path: self.maps_dir().join(name),
                errno,
            })
        })
    }

    pub(crate) fn open_link(&self) -> Result<BpfLink, PinError> {
        let path = self.link_path();
        let fd = bpffs::get(&path).map_err(|errno| {
            self.elsewhere(errno).unwrap_or_else(|| PinError::Kernel { op: "opening", path: path.clone(), errno })
        })?;
        Ok(BpfLink::from_fd(fd))
    }

    /// Why a pin the state directory promises is missing, when the reason is
    /// this process's view of bpffs: a mount namespace of its own (`ip netns
    /// exec` mounts another bpffs, or none, over /sys), where the host's
    /// pins cannot be seen. A bare ENOENT said nothing of that.
    pub(crate) fn elsewhere(&self, errno: Errno) -> Option<PinError> {
        if errno != Errno::ENOENT {
            return None;
        }
        unseen(&self.pins)
    }

    /// Refuses `link` unless it is attached to `ifindex`, the live interface
    /// `iface` of the calling thread's network namespace: a name and an
    /// ifindex can both come back after the interface or the whole namespace
    /// was deleted and recreated, while the link stays detached (ifindex 0)
    /// or attached to a device elsewhere.
    pub(crate) fn check_live(&self, iface: &str, ifindex: u32, link: &BpfLink, xdp: bool) -> Result<(), PinError> {
        let stale = |reason: String| PinError::StaleLink { iface: iface.to_owned(), path: self.link_path(), reason };
        let kernel = |errno| PinError::Kernel { op: "reading the link info of", path: self.link_path(), errno };
        let target = link.target().map_err(kernel)?;
        match target.ifindex {
            Some(0) => return Err(stale("the kernel reports it detached (its interface was deleted)".into())),
            Some(linked) if linked != ifindex => {
                return Err(stale(format!("it is attached to ifindex {linked}, {iface} is ifindex {ifindex}")))
            }
            _ => {}
        }
        // The link's ifindex is a number in some namespace: the interface
        // here running the link's program is what ties the two together.
        if xdp && !crate::sys::link::runs_xdp_program(ifindex, target.prog_id).map_err(kernel)? {
            let reason = format!("{iface} (ifindex {ifindex}) does not run its program (id {})", target.prog_id);
            return Err(stale(reason));
        }
        Ok(())
    }

    /// Removes the pins and the state file (the kernel frees the maps once
    /// nothing else holds them). Missing ones are not an error.
    pub(crate) fn remove(&self) -> Result<(), PinError> {
        for dir in [&self.pins, &self.state] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing", dir)(e)),
            }
            // The namespace's directory goes with its last interface.
            if let Some(parent) = dir.parent() {
                let _ignored_if_not_empty = std::fs::remove_dir(parent);
            }
        }
        Ok(())
    }
}
