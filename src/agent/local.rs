//! The agent's local Unix socket: where it lives, how it is created (mode
//! and group), and the credentials of each peer as the kernel recorded them
//! at connect time.
//!
//! ```text
//! <state root>/sock/net<netns inode>/<iface>.sock
//! ```
//!
//! The socket has its own directory tree beside the state directories
//! (which are 0700): its directories are searchable (0755) so that the
//! socket's own mode decides who may connect.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};

use super::authz::ReadAccess;
use super::AgentError;

/// The sub-directory of the state root that holds the agents' sockets.
const SOCKET_DIR: &str = "sock";

/// The local socket of the agent that owns `iface` in the calling thread's
/// network namespace (under the default state root, `/run/lnetd-host-encap`).
///
/// # Errors
/// A bad interface name, or the namespace cannot be read.
pub fn socket_path(iface: &str) -> io::Result<PathBuf> {
    socket_path_in(Path::new(crate::dataplane::pins::DEFAULT_STATE_ROOT), iface)
}

/// As [`socket_path`], under another state root.
///
/// # Errors
/// As [`socket_path`].
pub fn socket_path_in(state_root: &Path, iface: &str) -> io::Result<PathBuf> {
    if iface.is_empty() || iface.contains('/') || iface.starts_with('.') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{iface:?} is not an interface name")));
    }
    let ns = crate::sys::bpffs::netns_id()?;
    Ok(state_root.join(SOCKET_DIR).join(format!("net{ns}")).join(format!("{iface}.sock")))
}

/// The local socket: where, and who may do what on it.
#[derive(Debug, Clone)]
pub struct LocalSocket {
    /// The socket's path ([`socket_path`]).
    pub path: PathBuf,
    /// The group whose members may change routes (beside root and the
    /// agent's own user); the socket's group.
    pub write_group: Option<String>,
    /// What everyone else may do.
    pub read_access: ReadAccess,
}

/// A peer of the local socket, as the kernel saw it at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Process id (0 when unknown).
    pub pid: i32,
    /// Supplementary groups (SO_PEERGROUPS, Linux 4.13+; empty before).
    pub groups: Vec<u32>,
}

impl Peer {
    /// Whether the peer is in group `gid` (effective or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    fn of(stream: &UnixStream) -> io::Result<Peer> {
        let cred = stream.peer_cred()?;
        Ok(Peer { uid: cred.uid(), gid: cred.gid(), pid: cred.pid().unwrap_or(0), groups: peer_groups(stream) })
    }
}

/// SO_PEERGROUPS: the peer's supplementary groups at connect time.
fn peer_groups(stream: &UnixStream) -> Vec<u32> {
    let mut groups = vec![0 as nix::libc::gid_t; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<nix::libc::gid_t>()) as nix::libc::socklen_t;
        // SAFETY: the buffer is `len` bytes of gid_t; the kernel writes at most `len` bytes and sets `len`.
        let rc = unsafe {
            nix::libc::getsockopt(
                stream.as_raw_fd(),
                nix::libc::SOL_SOCKET,
                nix::libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<nix::libc::gid_t>();
        if rc == 0 {
            groups.truncate(count);
            return groups;
        }
        // ERANGE: the kernel said how much room it needs.
        if io::Error::last_os_error().raw_os_error() == Some(nix::libc::ERANGE) && count > groups.len() {
            groups.resize(count, 0);
            continue;
        }
        return Vec::new();
    }
}

/// A connection of the local socket, carrying its peer's credentials into
/// every request's extensions (as [`Peer`]).
#[derive(Debug)]
pub struct PeerStream {
    stream: UnixStream,
    peer: Peer,
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections of a bound local socket, each with its peer.
pub(crate) fn incoming(listener: UnixListener) -> impl tokio_stream::Stream<Item = io::Result<PeerStream>> {
    tokio_stream::wrappers::UnixListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        let peer = Peer::of(&stream)?;
        Ok(PeerStream { stream, peer })
    })
}

use tokio_stream::StreamExt as _;

/// The gid of group `name`.
pub(crate) fn group_id(name: &str) -> Result<u32, AgentError> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(AgentError::NoSuchGroup { group: name.to_owned() }),
        Err(errno) => Err(AgentError::Socket {
            op: "looking up the write group",
            path: PathBuf::from("/etc/group"),
            source: io::Error::from(errno),
        }),
    }
}

/// Binds the socket: its directories searchable (0755), a stale socket of a
/// dead agent replaced, then mode 0666 (`read_access` all) or 0660, group
/// `gid` (the write group) or the agent's own.
pub(crate) fn bind(path: &Path, read_access: ReadAccess, gid: Option<u32>) -> Result<UnixListener, AgentError> {
    let err = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source: io::Error| AgentError::Socket { op, path, source }
    };
    let dir = path.parent().ok_or_else(|| err("finding the directory of", path)(io::ErrorKind::InvalidInput.into()))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(err("creating", dir))?;
    // The state root may have been created 0700 (by a command run before any
    // agent): only search permission is added, its sub-directories stay 0700.
    if let Some(root) = dir.parent().and_then(Path::parent) {
        let mode = std::fs::metadata(root).map_err(err("reading", root))?.permissions().mode();
        if mode & 0o011 != 0o011 {
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode | 0o011))
                .map_err(err("making searchable", root))?;
        }
    }
    for d in [dir, dir.parent().unwrap_or(dir)] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).map_err(err("setting the mode of", d))?;
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => return Err(AgentError::SocketInUse { path: path.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // A socket nobody listens on: left by an agent that was killed.
        Err(_) => std::fs::remove_file(path).map_err(err("removing the stale socket", path))?,
    }
    let listener = UnixListener::bind(path).map_err(err("binding", path))?;
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| err("setting the group of", path)(io::Error::from(e)))?;
    }
    let mode = match read_access {
        ReadAccess::All => 0o666,
        ReadAccess::None => 0o660,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err("setting the mode of", path))?;
    Ok(listener)
}

/// Removes the socket when the agent stops (a later agent would replace it
/// anyway; this keeps a stopped agent from looking alive to `ls`).
pub(crate) fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("removing {}: {e}", path.display());
        }
    }
    // The namespace's directory goes with its last socket.
    if let Some(dir) = path.parent() {
        let _ignored_if_not_empty = std::fs::remove_dir(dir);
    }
}
