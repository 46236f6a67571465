//! Host address changes, from the kernel: a netlink route socket subscribed to
//! the address and link multicast groups of the calling thread's network
//! namespace, read synchronously with a timeout. And the namespace itself, held
//! by fd so that another thread can be put in it.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;

/// Where the calling thread's network namespace is named.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// The receive buffer asked for: a burst of changes (an interface with many
/// addresses going away) fits; past it the kernel reports ENOBUFS and the
/// caller re-reads everything anyway.
const RCVBUF: usize = 1 << 20;

/// What one wait saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Address or link notifications received (and notifications that could
    /// not be parsed, counted as changes).
    pub(crate) events: usize,
    /// The socket overflowed (ENOBUFS): notifications were lost.
    pub(crate) lost: bool,
}

impl Changes {
    /// Whether the host's addresses may have changed.
    pub(crate) fn any(&self) -> bool {
        self.events > 0 || self.lost
    }
}

/// A netlink route socket subscribed to RTMGRP_LINK, RTMGRP_IPV4_IFADDR and
/// RTMGRP_IPV6_IFADDR. The namespace is the one of the thread that subscribed,
/// whichever thread reads it afterwards.
pub(crate) struct AddressEvents {
    socket: Socket,
    buf: Vec<u8>,
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

impl AddressEvents {
    /// Subscribes in the calling thread's network namespace. Notifications
    /// queue from here on, before the first [`AddressEvents::wait`].
    pub(crate) fn subscribe() -> Result<AddressEvents, (&'static str, Errno)> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| ("socket(NETLINK_ROUTE)", io_errno(&e)))?;
        let groups = libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR;
        let groups = u32::try_from(groups).map_err(|_| ("bind(NETLINK_ROUTE)", Errno::EINVAL))?;
        socket.bind(&SocketAddr::new(0, groups)).map_err(|e| ("bind(NETLINK_ROUTE)", io_errno(&e)))?;
        socket.set_non_blocking(true).map_err(|e| ("fcntl(O_NONBLOCK)", io_errno(&e)))?;
        // Best effort: the default buffer only loses more under a burst, and
        // a loss is reported and handled.
        if let Err(e) = socket.set_rx_buf_sz(RCVBUF) {
            log::debug!("address watch: SO_RCVBUF {RCVBUF}: {e}");
        }
        Ok(AddressEvents { socket, buf: Vec::with_capacity(64 * 1024) })
    }

    /// Waits up to `timeout` for notifications, then takes every one queued
    /// without waiting more. Returns what was seen; nothing on a timeout.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Result<Changes, Errno> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(Errno::EINTR) => return Ok(Changes::default()),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        self.drain()
    }

    /// Reads every queued datagram without blocking.
    fn drain(&mut self) -> Result<Changes, Errno> {
        let mut changes = Changes::default();
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, libc::MSG_DONTWAIT) {
                Ok(0) => return Ok(changes),
                Ok(n) if n > self.buf.len() => {
                    // Truncated (MSG_TRUNC semantics): unreadable, but a change.
                    log::debug!("address watch: a {n}-byte notification was truncated");
                    changes.events += 1;
                }
                Ok(_) => changes.events += count_changes(&self.buf),
                Err(e) => match io_errno(&e) {
                    Errno::EAGAIN => return Ok(changes),
                    Errno::EINTR => {}
                    Errno::ENOBUFS => changes.lost = true,
                    errno => return Err(errno),
                },
            }
        }
    }
}

/// The address and link notifications in one datagram; a message that cannot
/// be parsed counts as one (the caller re-reads the addresses regardless).
fn count_changes(datagram: &[u8]) -> usize {
    let mut rest = datagram;
    let mut n = 0;
    while !rest.is_empty() {
        let Ok(len) = NetlinkBuffer::new_checked(rest).map(|b| b.length() as usize) else {
            log::debug!("address watch: {} unparsable bytes", rest.len());
            return n + 1;
        };
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest) {
            Ok(msg) => match msg.payload {
                NetlinkPayload::InnerMessage(m) => {
                    if let Some(what) = describe(&m) {
                        log::debug!("address watch: {what}");
                        n += 1;
                    }
                }
                NetlinkPayload::Overrun(_) => n += 1,
                _ => {}
            },
            Err(e) => {
                log::debug!("address watch: unparsable notification: {e}");
                n += 1;
            }
        }
        // Messages are 4-byte aligned; a zero length would never advance.
        let step = len.max(16).next_multiple_of(4);
        rest = rest.get(step..).unwrap_or(&[]);
    }
    n
}

/// A notification that may change the host's addresses, described for the
/// log; `None` for the others.
fn describe(msg: &RouteNetlinkMessage) -> Option<String> {
    use netlink_packet_route::address::AddressAttribute;
    let (what, a) = match msg {
        RouteNetlinkMessage::NewAddress(a) => ("address added", a),
        RouteNetlinkMessage::DelAddress(a) => ("address removed", a),
        RouteNetlinkMessage::NewLink(l) => return Some(format!("link {} changed", l.header.index)),
        RouteNetlinkMessage::DelLink(l) => return Some(format!("link {} removed", l.header.index)),
        _ => return None,
    };
    let addr = a.attributes.iter().find_map(|attr| match attr {
        AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    let addr = addr.map_or_else(|| "?".to_owned(), |ip| ip.to_string());
    Some(format!("{what}: {addr}/{} on link {}", a.header.prefix_len, a.header.index))
}

/// A network namespace held open by fd.
#[derive(Debug)]
pub(crate) struct Netns {
    fd: OwnedFd,
    id: (u64, u64),
}

impl Netns {
    /// The calling thread's network namespace.
    pub(crate) fn current() -> Result<Netns, (&'static str, Errno)> {
        let fd: OwnedFd =
            File::open(THREAD_NETNS).map_err(|e| ("open(/proc/thread-self/ns/net)", io_errno(&e)))?.into();
        let st = nix::sys::stat::fstat(&fd).map_err(|e| ("fstat(netns)", e))?;
        Ok(Netns { fd, id: (st.st_dev, st.st_ino) })
    }

    /// Puts the calling thread in this namespace, unless it is there already
    /// (setns needs CAP_SYS_ADMIN; a thread spawned from a thread of the
    /// namespace is in it already and needs nothing). Returns whether it moved.
    pub(crate) fn enter(&self) -> Result<bool, (&'static str, Errno)> {
        let here = nix::sys::stat::stat(THREAD_NETNS).map(|st| (st.st_dev, st.st_ino));
        if here == Ok(self.id) {
            return Ok(false);
        }
        nix::sched::setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| ("setns(CLONE_NEWNET)", e))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_counts_as_one_change() {
        assert_eq!(count_changes(&[1, 2, 3]), 1);
        assert_eq!(count_changes(&[]), 0);
    }

    #[test]
    fn an_address_notification_counts() {
        use netlink_packet_core::NetlinkHeader;
        use netlink_packet_route::address::{AddressAttribute, AddressMessage};
        let mut a = AddressMessage::default();
        a.header.index = 3;
        a.header.prefix_len = 32;
        a.attributes.push(AddressAttribute::Local("10.77.0.5".parse().unwrap()));
        let mut two = Vec::new();
        for m in [RouteNetlinkMessage::NewAddress(a.clone()), RouteNetlinkMessage::DelAddress(a)] {
            let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(m));
            msg.finalize();
            let mut buf = vec![0u8; msg.buffer_len()];
            msg.serialize(&mut buf);
            two.extend_from_slice(&buf);
        }
        assert_eq!(count_changes(&two), 2);
    }

    #[test]
    fn the_current_namespace_is_entered_without_setns() {
        let ns = Netns::current().unwrap();
        assert_eq!(ns.enter(), Ok(false));
    }
}
