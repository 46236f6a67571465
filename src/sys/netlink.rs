//! Netlink requests written and read by hand: one request, its one answer
//! (matched by sequence number), attributes found by type. A socket answers
//! for the network namespace of the thread that opened it, whichever thread
//! asks later. Routing netlink (`rtnetlink`) and the `netdev` generic family
//! (S-BFD's transmitter) are built on it.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

const NLMSG_HDR: usize = 16;
const NLM_F_REQUEST: u16 = 1;
/// The top bits of an attribute's type are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A netlink socket of one protocol (NETLINK_ROUTE, NETLINK_GENERIC).
/// A request takes it `&mut`: two callers at once would each read and
/// drop the other's answer.
#[derive(Debug)]
pub(crate) struct Netlink {
    fd: OwnedFd,
    /// The last request's sequence number: an answer to an earlier one
    /// (left queued by a failed read) is never taken for the next's.
    seq: u32,
}

impl Netlink {
    /// Opens one of `protocol` in the calling thread's network namespace.
    pub(crate) fn open(protocol: libc::c_int) -> Result<Netlink, Errno> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The kernel answers at once; a bound on the wait keeps a caller
        // (and any lock it holds) from waiting forever on one that never comes.
        let timeout = libc::timeval { tv_sec: 1, tv_usec: 0 };
        // SAFETY: `timeout` outlives the call and its length is given.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if set < 0 {
            return Err(Errno::last());
        }
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends one request of type `ty` (`header`, then `attrs`) and returns
    /// the body of its answer of type `answer` (that header and the
    /// attributes); an NLMSG_ERROR answer is its errno.
    pub(crate) fn request(
        &mut self,
        ty: u16,
        header: &[u8],
        attrs: &[(u16, &[u8])],
        answer: u16,
    ) -> Result<Vec<u8>, Errno> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = Vec::with_capacity(NLMSG_HDR + header.len() + 32);
        req.extend_from_slice(&[0; 4]); // length, below
        req.extend_from_slice(&ty.to_ne_bytes());
        req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel assigns ours
        req.extend_from_slice(header);
        for (kind, payload) in attrs {
            let len = u16::try_from(4 + payload.len()).map_err(|_| Errno::EINVAL)?;
            req.extend_from_slice(&len.to_ne_bytes());
            req.extend_from_slice(&kind.to_ne_bytes());
            req.extend_from_slice(payload);
            req.resize(align4(req.len()), 0);
        }
        let total = u32::try_from(req.len()).map_err(|_| Errno::EINVAL)?;
        req.splice(..4, total.to_ne_bytes());
        // SAFETY: zeroed sockaddr_nl with the family set addresses the kernel.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `req` and `to` outlive the call and their lengths are given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(Errno::last());
        }
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: `buf` outlives the call and its length is given.
            let got = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if got < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    e => return Err(e),
                }
            }
            let msg = buf.get(..got as usize).ok_or(Errno::EIO)?;
            let len = read_u32(msg).ok_or(Errno::EIO)? as usize;
            let ty = msg.get(4..6).and_then(|t| t.try_into().ok()).map(u16::from_ne_bytes).ok_or(Errno::EIO)?;
            if msg.get(8..12).and_then(read_u32) != Some(seq) {
                continue;
            }
            let body = msg.get(NLMSG_HDR..len.min(msg.len())).ok_or(Errno::EIO)?;
            if i32::from(ty) == libc::NLMSG_ERROR {
                let code = body.get(..4).and_then(|c| c.try_into().ok()).map(i32::from_ne_bytes).ok_or(Errno::EIO)?;
                return Err(code.checked_neg().filter(|e| *e > 0).map_or(Errno::EIO, Errno::from_raw));
            }
            if ty == answer {
                return Ok(body.to_vec());
            }
            // Anything else (a notification cannot arrive: we joined no group;
            // an answer to an earlier request) is skipped.
        }
    }
}

/// The payload of the first attribute of `kind` in a run of attributes.
pub(crate) fn find(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while let Some(&[l0, l1, t0, t1]) = attrs.first_chunk::<4>() {
        let len = usize::from(u16::from_ne_bytes([l0, l1]));
        let ty = u16::from_ne_bytes([t0, t1]) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == kind {
            return attrs.get(4..len);
        }
        attrs = attrs.get(align4(len)..).unwrap_or(&[]);
    }
    None
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// A u32 attribute's value.
pub(crate) fn read_u32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_found_by_type_past_padding_and_nesting_bits() {
        // A 5-byte attribute (padded to 8), then a nested one (NLA_F_NESTED set).
        let mut attrs = vec![5, 0, 3, 0, b'v', 0, 0, 0];
        attrs.extend_from_slice(&[8, 0, 18, 0x80, 1, 2, 3, 4]);
        assert_eq!(find(&attrs, 3), Some(&b"v"[..]));
        assert_eq!(find(&attrs, 18), Some(&[1, 2, 3, 4][..]));
        assert_eq!(find(&attrs, 7), None);
        // A length running past the end is not trusted.
        assert_eq!(find(&[40, 0, 1, 0, 0, 0], 1), None);
    }
}
