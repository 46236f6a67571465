//! The journal: records appended after the snapshot, each framed as
//!
//! ```text
//! length u32 | crc32 u32 of the payload | payload: kind u8, seq u64, stamp u64, body
//! ```
//!
//! A change writes an INTENT before its first kernel write and a COMMIT
//! (its new route states and, when they changed, the small sets) once the
//! kernel accepted it; a change that wrote nothing, or was undone, ends with
//! DONE. A journal whose last record is an INTENT belongs to a process that
//! died in the middle of a change: the kernel may hold part of it. A torn or
//! damaged record ends the journal there (the change it carried was never
//! acknowledged); it is never fatal.

use super::codec::{Reader, Writer};
use super::records::{self, Keep, Smalls};
use super::snapshot::{Position, Tally};
use super::Unreadable;
use crate::rib::alloc::Boottime;
use crate::rib::{Rib, RouteId};

/// A change begins: kernel writes follow.
pub(crate) const INTENT: u8 = 1;
/// A change the kernel accepted, with what it changed in the RIB.
pub(crate) const COMMIT: u8 = 2;
/// The change begun ended without changing anything (refused, undone, or
/// repaired by the next process).
pub(crate) const DONE: u8 = 3;

const FRAME: usize = 8;
const PAYLOAD_HEAD: usize = 17;

/// One framed record.
pub(crate) fn frame(kind: u8, seq: u64, stamp: Boottime, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(PAYLOAD_HEAD + body.len());
    payload.push(kind);
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(&stamp.0.to_le_bytes());
    payload.extend_from_slice(body);
    let mut out = Vec::with_capacity(FRAME + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// A record read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub kind: u8,
    pub seq: u64,
    pub stamp: Boottime,
    pub body: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The record at the start of `bytes` and its framed length; `None` when
/// it is torn, damaged or of an unknown kind.
fn read_record(bytes: &[u8]) -> Option<(Record<'_>, usize)> {
    let len = u32_at(bytes, 0)? as usize;
    let crc = u32_at(bytes, 4)?;
    let payload = bytes.get(FRAME..FRAME + len)?;
    if len < PAYLOAD_HEAD || crc32fast::hash(payload) != crc {
        return None;
    }
    let kind = *payload.first()?;
    if !matches!(kind, INTENT | COMMIT | DONE) {
        return None;
    }
    let record = Record {
        kind,
        seq: u64_at(payload, 1)?,
        stamp: Boottime(u64_at(payload, 9)?),
        body: payload.get(PAYLOAD_HEAD..)?,
    };
    Some((record, FRAME + len))
}

/// The journal's records up to the first torn or damaged one, and the
/// number of bytes they span (what stays; the rest is discarded).
pub(crate) fn scan(bytes: &[u8]) -> (Vec<Record<'_>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(record) = read_record(bytes.get(at..).unwrap_or_default()) {
        out.push(record.0);
        at += record.1;
    }
    (out, at)
}

/// A commit's body: the allocators' highest ids and the tally as of `at`
/// (the position the commit makes), the state of every changed route id,
/// and the small sets when they changed.
pub(crate) fn commit_body(at: &Position, rib: &Rib, ids: &[RouteId], smalls: Option<&Smalls>) -> Vec<u8> {
    let mut w = Writer { buf: Vec::with_capacity(16 + ids.len() * 24) };
    w.varint(u64::from(at.policy_next));
    w.varint(u64::from(at.counter_next));
    at.tally.unwrap_or_else(|| Tally::of(rib)).put(&mut w);
    w.len(ids.len());
    for id in ids {
        records::put_route_state(&mut w, rib, id);
    }
    match smalls {
        Some(s) => {
            w.u8(1);
            s.put(&mut w);
        }
        None => w.u8(0),
    }
    w.buf
}

/// Replays a commit onto a RIB read from the snapshot.
pub(crate) fn replay_commit(
    rib: &mut Rib,
    at: &mut Position,
    record: &Record<'_>,
    keep: Option<Keep<'_>>,
    format: u32,
) -> Result<(), Unreadable> {
    let mut r = Reader::new(record.body);
    at.policy_next = r.u32v()?;
    at.counter_next = r.u32v()?;
    at.tally = Tally::get(&mut r, format)?;
    for _ in 0..r.len()? {
        if let Some(state) = records::get_route_state_if(&mut r, keep)? {
            records::install(rib, state);
        }
    }
    if r.u8()? == 1 {
        Smalls::get(&mut r)?.install(rib)?;
    }
    if !r.is_empty() {
        return Err(Unreadable::Invalid(format!(
            "journal record {}: {} bytes after its end",
            record.seq,
            r.rest.len()
        )));
    }
    at.seq = record.seq;
    at.stamp = record.stamp;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_or_damaged_tail_ends_the_journal_there() {
        let mut bytes = frame(INTENT, 1, Boottime(5), &[]);
        bytes.extend(frame(COMMIT, 1, Boottime(6), &[1, 2, 3]));
        let whole = bytes.len();
        bytes.extend(frame(INTENT, 2, Boottime(7), &[]));
        let (records, len) = scan(&bytes);
        assert_eq!(len, bytes.len());
        assert_eq!(records.iter().map(|r| r.kind).collect::<Vec<_>>(), [INTENT, COMMIT, INTENT]);
        assert_eq!(records[1].body, [1, 2, 3]);

        for cut in whole + 1..bytes.len() {
            let (records, len) = scan(&bytes[..cut]);
            assert_eq!((records.len(), len), (2, whole), "cut at {cut}");
        }
        let mut damaged = bytes.clone();
        damaged[whole - 1] ^= 1;
        let (records, len) = scan(&damaged);
        assert_eq!((records.len(), len), (1, whole - FRAME - PAYLOAD_HEAD - 3));
        assert_eq!(scan(&[0xff; 3]).0.len(), 0);
        assert_eq!(scan(&[0; 64]), (vec![], 0), "zeroes (a preallocated tail) are no record");
    }
}
