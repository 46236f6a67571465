//! Reading the state back: the snapshot, the journal replayed onto it up to
//! its first torn record, the allocators rebuilt from the ids in use, and
//! whether the last process died in the middle of a change.

use std::path::Path;

use serde::Deserialize;

use super::journal::{self, COMMIT, DONE, INTENT};
use super::records::Keep;
use super::snapshot::{self, Position};
use super::{Attached, LoadConfig, OpenError, Unreadable, JOURNAL, OLD_STATE, SNAPSHOT};
use crate::error::PinError;
use crate::rib::alloc::{Boottime, Slots};
use crate::rib::Rib;

/// The state as found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub rib: Rib,
    pub config: LoadConfig,
    pub attached: Attached,
    /// The journal ends in a change begun and never finished: the kernel may
    /// hold part of it, which the RIB (what was acknowledged) does not.
    pub unfinished: bool,
    /// The last change stored.
    pub at: Position,
    /// The snapshot's format (older ones are rewritten by the first writer).
    pub format: u32,
    pub snapshot_len: u64,
    /// Journal bytes read, and the valid records' share of them.
    pub journal_read: u64,
    pub journal_valid: u64,
}

/// The version fields of a `state.json` of an older build.
#[derive(Deserialize)]
struct OldVersion {
    format: u32,
    written_by: String,
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, OpenError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OpenError::Pin(PinError::Io { op: "reading", path: path.to_owned(), source })),
    }
}

/// What a reader needs without the RIB: the load config, the attachment,
/// whether a change was left unfinished.
#[derive(Debug)]
pub(crate) struct Peeked {
    pub config: LoadConfig,
    pub attached: Attached,
    pub unfinished: bool,
}

/// Checks the state as [`load`] does (format, checksum, the journal's
/// records) without decoding a route: what a reader that may never look at
/// the RIB (`stats`) pays. [`load`] reads it all later, if needed.
/// With `checked` false (a writer, which reads and checks the whole state
/// next), only the snapshot's first bytes are read, unchecked.
pub(crate) fn peek(dir: &Path, checked: bool) -> Result<Peeked, OpenError> {
    let head = match checked {
        true => snapshot::decode_head(&snapshot_bytes(dir)?),
        false => snapshot::decode_head_unchecked(&snapshot_start(dir)?),
    }
    .map_err(OpenError::Unreadable)?;
    let journal_bytes = read(&dir.join(JOURNAL))?.unwrap_or_default();
    let (records, _) = journal::scan(&journal_bytes);
    let mut at = head.at.seq;
    let begun = walk(&records, |record| {
        at = at.max(record.seq);
        Ok(())
    })
    .map_err(OpenError::Unreadable)?;
    Ok(Peeked { config: head.config, attached: head.attached, unfinished: begun.is_some_and(|seq| seq > at) })
}

/// Walks the journal's records in order, handing `commit` every COMMIT;
/// returns the sequence number of a change begun (INTENT) and never ended by
/// a COMMIT or a DONE.
fn walk(
    records: &[journal::Record<'_>],
    mut commit: impl FnMut(&journal::Record<'_>) -> Result<(), Unreadable>,
) -> Result<Option<u64>, Unreadable> {
    let mut begun = None;
    for record in records {
        match record.kind {
            INTENT => begun = Some(record.seq),
            DONE => begun = None,
            COMMIT => {
                begun = None;
                commit(record)?;
            }
            _ => {}
        }
    }
    Ok(begun)
}

/// The snapshot's first 64 KiB (its head, the header JSON included, is far less).
fn snapshot_start(dir: &Path) -> Result<Vec<u8>, OpenError> {
    use std::io::Read;
    let path = dir.join(SNAPSHOT);
    let mut start = Vec::with_capacity(64 << 10);
    match std::fs::File::open(&path) {
        Ok(f) => f
            .take(64 << 10)
            .read_to_end(&mut start)
            .map(|_| start)
            .map_err(|source| OpenError::Pin(PinError::Io { op: "reading", path, source })),
        // No snapshot: what the whole read says of it (an older state.json...).
        Err(_) => snapshot_bytes(dir),
    }
}

fn snapshot_bytes(dir: &Path) -> Result<Vec<u8>, OpenError> {
    let Some(bytes) = read(&dir.join(SNAPSHOT))? else {
        // A dataplane pinned by a build that kept its RIB in state.json.
        let old = read(&dir.join(OLD_STATE))?.unwrap_or_default();
        return Err(OpenError::Unreadable(match serde_json::from_slice::<OldVersion>(&old) {
            Ok(v) => Unreadable::Version(v.format, v.written_by),
            Err(_) => Unreadable::Invalid(format!("no {SNAPSHOT}")),
        }));
    };
    Ok(bytes)
}

pub(crate) fn load(dir: &Path) -> Result<Recovered, OpenError> {
    load_if(dir, None)
}

/// As [`load`], with only the routes `keep` wants (when given): a reader's
/// RIB for a few destinations, read without building the rest. Its
/// allocators are not rebuilt: it must never be written from.
pub(crate) fn load_if(dir: &Path, keep: Option<Keep<'_>>) -> Result<Recovered, OpenError> {
    let bytes = snapshot_bytes(dir)?;
    let snap = snapshot::decode_if(&bytes, keep).map_err(OpenError::Unreadable)?;
    let snapshot_len = bytes.len() as u64;
    drop(bytes);
    let (mut rib, mut at) = (snap.rib, snap.at);
    let journal_bytes = read(&dir.join(JOURNAL))?.unwrap_or_default();
    let (records, valid) = journal::scan(&journal_bytes);
    if valid < journal_bytes.len() {
        log::warn!(
            "{}: {} bytes of a torn or damaged journal tail discarded (a change never acknowledged)",
            dir.display(),
            journal_bytes.len() - valid
        );
    }
    let begun = walk(&records, |record| {
        // Left behind by a compaction that did not get to empty the journal.
        if record.seq > at.seq {
            journal::replay_commit(&mut rib, &mut at, record, keep, snap.format)?;
        }
        Ok(())
    })
    .map_err(OpenError::Unreadable)?;
    // A snapshot written by the change itself (a table replaced whole) finished it.
    let unfinished = begun.is_some_and(|seq| seq > at.seq);
    let _ = rib.take_changes();
    if keep.is_none() {
        rebuild_allocators(&mut rib, &at, snap.config.max_counted_routes);
    }
    Ok(Recovered {
        rib,
        config: snap.config,
        attached: snap.attached,
        unfinished,
        at,
        format: snap.format,
        snapshot_len,
        journal_read: journal_bytes.len() as u64,
        journal_valid: valid as u64,
    })
}

/// As [`load`] for a writer of the routes `keep` wants, which reads no
/// other: its pools hand out only ids above every id ever handed out, and
/// its route counts are the store's. `None` for a state written before the
/// store kept those counts (format 8): its first writer reads it whole.
pub(crate) fn load_for_change(dir: &Path, keep: Keep<'_>) -> Result<Option<Recovered>, OpenError> {
    let mut recovered = load_if(dir, Some(keep))?;
    let Some(tally) = recovered.at.tally else { return Ok(None) };
    let rib = &mut recovered.rib;
    rib.routes.set_counts(tally.tries.map(|n| n as usize));
    rib.policy_ids = Slots::above(recovered.at.policy_next, u32::MAX, 0);
    rib.counter_slots =
        Slots::above(recovered.at.counter_next, recovered.config.max_counted_routes, tally.free_counters);
    Ok(Some(recovered))
}

/// The pools, from the ids in use: a policy id not named by a route nor
/// waiting in the graveyard is free at once (its grace period was the
/// graveyard's); a free counter slot waits out a grace period from the
/// last stored change (the latest it can have been freed).
fn rebuild_allocators(rib: &mut Rib, at: &Position, counter_capacity: u32) {
    let policies = rib.policy_of.values().copied().chain(rib.graveyard.iter().map(|(id, _)| *id));
    rib.policy_ids = Slots::rebuild(at.policy_next, u32::MAX, policies, Boottime::EPOCH, true);
    rib.objects.recount(rib.policy_of.values());
    let objects: Vec<u32> = rib.objects.iter().flat_map(|(_, o)| o.lists.clone()).collect();
    let counters = rib.counters_of.values().flat_map(|c| c.ids()).chain(objects.into_iter().filter(|s| *s != 0));
    rib.counter_slots = Slots::rebuild(at.counter_next, counter_capacity, counters, at.stamp, false);
}
