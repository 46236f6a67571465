//! The probes through a `PACKET_TX_RING` (TPACKET_V2): the frames are
//! written into a ring shared with the kernel and one `send` hands over
//! every frame written since the last one, without a message header or a
//! copy from user space per frame (the per-frame skb stays).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{fence, Ordering};

use nix::errno::Errno;
use nix::libc;

/// Bytes per slot: the tpacket2 header (32 bytes, aligned) and the frame.
const SLOT: usize = 256;
/// Slots in the ring: a few ticks' worth of 1,000 lists' probes.
const SLOTS: usize = 1024;
/// Where the frame starts in a slot without PACKET_TX_HAS_OFF:
/// TPACKET2_HDRLEN less the sockaddr_ll the receive side puts there.
const DATA: usize = libc::TPACKET2_HDRLEN - std::mem::size_of::<libc::sockaddr_ll>();
/// Offsets of tp_status and tp_len in `struct tpacket2_hdr`.
const STATUS: usize = 0;
const LEN: usize = 4;

/// A TX ring mapped on an AF_PACKET socket.
#[derive(Debug)]
pub struct TxRing {
    map: *mut u8,
    len: usize,
    /// The next slot to fill; the kernel walks the ring in the same order.
    next: usize,
}

// SAFETY: the mapping belongs to this value alone (it is unmapped in Drop)
// and is only touched through `&mut self`; the kernel's side of it is
// synchronised through each slot's status word.
unsafe impl Send for TxRing {}

impl TxRing {
    /// Sets `fd` (an AF_PACKET socket) to TPACKET_V2 and maps a TX ring on it.
    ///
    /// # Errors
    /// The errno of setsockopt or mmap (a socket that already has a ring, a
    /// kernel without TPACKET_V2).
    pub fn new(fd: BorrowedFd<'_>) -> Result<TxRing, Errno> {
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setsockopt(fd, libc::PACKET_VERSION, &version)?;
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(SLOT);
        let per_block = page / SLOT;
        let blocks = SLOTS.div_ceil(per_block);
        let req = libc::tpacket_req {
            tp_block_size: page as libc::c_uint,
            tp_block_nr: blocks as libc::c_uint,
            tp_frame_size: SLOT as libc::c_uint,
            tp_frame_nr: (blocks * per_block) as libc::c_uint,
        };
        setsockopt(fd, libc::PACKET_TX_RING, &req)?;
        let len = page * blocks;
        // SAFETY: a fresh shared mapping of the ring the kernel just made
        // for this socket; its address is checked before use.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(TxRing { map: map.cast(), len, next: 0 })
    }

    fn slots(&self) -> usize {
        self.len / SLOT
    }

    /// Writes `frames` into free slots and hands them to the kernel with
    /// one `send`. Returns how many were queued: fewer than given when the
    /// ring is full (the kernel has not sent the earlier ones yet).
    ///
    /// # Errors
    /// The errno of the `send` (the frames queued stay queued for the next one).
    pub fn send(&mut self, fd: BorrowedFd<'_>, frames: &[&[u8]]) -> Result<usize, Errno> {
        let mut queued = 0;
        for frame in frames {
            if frame.len() > SLOT - DATA {
                continue;
            }
            // SAFETY: `next` < slots, so the slot lies inside the mapping;
            // status and length are aligned u32s of the slot's header.
            unsafe {
                let slot = self.map.add(self.next * SLOT);
                let status = slot.add(STATUS).cast::<u32>();
                if status.read_volatile() != libc::TP_STATUS_AVAILABLE {
                    break;
                }
                std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(DATA), frame.len());
                slot.add(LEN).cast::<u32>().write_volatile(frame.len() as u32);
                // The frame is written before the kernel may see the request.
                fence(Ordering::Release);
                status.write_volatile(libc::TP_STATUS_SEND_REQUEST);
            }
            self.next = (self.next + 1) % self.slots();
            queued += 1;
        }
        if queued > 0 {
            // SAFETY: a send of no data: the kernel takes the ring's requests.
            let r = unsafe { libc::send(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
            if r < 0 {
                return Err(Errno::last());
            }
        }
        Ok(queued)
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.map.cast(), self.len);
        }
    }
}

fn setsockopt<T>(fd: BorrowedFd<'_>, option: libc::c_int, value: &T) -> Result<(), Errno> {
    // SAFETY: setsockopt reads size_of::<T>() bytes from a live reference.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
