//! The RIB on disk, beside the pins: a compact binary snapshot plus an
//! append-only journal of what changed since, so that making a change
//! durable costs what the change costs (one appended record), not a
//! rewrite of a million routes. See docs/store.md.
//!
//! ```text
//! <state root>/net<netns>/<iface>/rib.snapshot   the whole RIB ([`snapshot`])
//! <state root>/net<netns>/<iface>/rib.journal    changes since ([`journal`])
//! ```
//!
//! A change is acknowledged only once its COMMIT record is written. When
//! the journal grows past half the snapshot, the snapshot is rewritten
//! (beside, fsync, rename, fsync of the directory) and the journal emptied.

#[cfg(feature = "testing")]
pub(crate) mod bench;
mod codec;
mod journal;
mod records;
mod recovery;
mod snapshot;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::alloc::Boottime;
use super::tracked::Changed;
use super::Rib;
use crate::domain::config::{AttachedMode, Ipv4Lookup, MtuPolicy, TtlMode};
use crate::error::PinError;
use records::Smalls;
pub(crate) use records::{Covering, Keep};
pub(crate) use recovery::{Peeked, Recovered};
use snapshot::{Position, Tally};

/// The state's format. Bump it when the files or the maps' layout change in
/// a way an older or newer build cannot read; the crate version is recorded
/// beside it for the error message. 3 was the whole-file `state.json`; 4
/// the store without shared policy objects (5: routes carry their policy's
/// name and lists out of service, the small sets the objects); 6: each
/// route record carries its origin (agent, or BGP with its policy's color
/// and endpoint), the small sets what the origins say of BGP's policies;
/// 7: the route cache's map holds 64-byte buckets, not 112-byte entries;
/// 8: the program counts a packet dropped for want of a live path (the
/// `counters` map has 11 entries, which an older program's does not), and
/// an invalid policy's record says whether its packets are dropped; 9: the
/// snapshot and every commit carry a tally (routes per trie, counter slots
/// free), so that a change of one route reads that route, not the RIB.
/// Format 8 is still read, and rewritten as 9 by its first writer.
pub(crate) const FORMAT: u32 = 9;

const SNAPSHOT: &str = "rib.snapshot";
const JOURNAL: &str = "rib.journal";
/// The state file of builds before the store (format 3 and older).
pub(crate) const OLD_STATE: &str = "state.json";

/// The journal is folded into a new snapshot once it is this fraction of
/// the snapshot (a reload then reads at most 1.5 times the table) and
/// larger than [`COMPACT_MIN`] (a small table is not rewritten every few
/// changes).
const COMPACT_FRACTION: u64 = 2;
const COMPACT_MIN: u64 = 256 << 10;

/// The load-time settings a dataplane was built with; an adopting process
/// loads its program with the same ones so that the pinned maps fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadConfig {
    #[serde(with = "text")]
    pub ttl: TtlMode,
    #[serde(with = "text")]
    pub mtu: MtuPolicy,
    pub max_routes_v4: u32,
    pub max_routes_v6: u32,
    pub max_policies: u32,
    pub max_counted_routes: u32,
    #[serde(with = "text")]
    pub lookup: Ipv4Lookup,
    /// DIR-24-8: groups of 256 entries for /24s holding longer prefixes.
    pub dir_groups: u32,
    /// DIR-24-8: distinct route values.
    pub route_values: u32,
    /// Entries of the route cache (a power of two; 0: none).
    pub route_cache: u32,
    /// Main-table routes of a family from which its lookups use the cache.
    pub route_cache_min_routes: u32,
    /// Egress: label what the kernel sends to an on-link neighbour too (by
    /// default it leaves unlabelled). Written only when set, so that a
    /// build before it still reads the default's stores; absent in theirs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub label_on_link: bool,
    /// Stages left out (`encap_skip` bits): benchmark variants only, never
    /// pinned.
    #[serde(skip)]
    pub skip_stages: u32,
}

/// Where a pinned dataplane is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Attached {
    pub iface: String,
    pub ifindex: u32,
    #[serde(with = "text")]
    pub mode: AttachedMode,
}

/// Why stored state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Written in another format (found, written by).
    Version(u32, String),
    /// Not state of this format, or a value in it does not validate.
    Invalid(String),
}

/// Why a store could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// A file could not be read or written.
    Pin(PinError),
    /// Its content could not be restored.
    Unreadable(Unreadable),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PinError + 'a {
    move |source| PinError::Io { op, path: path.to_owned(), source }
}

/// The writer of a pinned dataplane's state (one per dataplane: the owner
/// lock's holder).
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    journal: File,
    journal_len: u64,
    snapshot_len: u64,
    /// The last change stored.
    at: Position,
    config: LoadConfig,
    attached: Attached,
    /// The small sets as last stored.
    smalls: Smalls,
    /// An INTENT is written and neither COMMIT nor DONE yet.
    open_intent: bool,
    /// The RIB committed from holds only the routes of its changes
    /// ([`Store::open_for_change`]): never written whole from.
    partial: bool,
    /// The snapshot's format: an older one takes no journal record of this
    /// build's; its first commit rewrites it.
    format: u32,
}

impl Store {
    /// Writes the first snapshot of `rib` in `dir` (an empty journal beside it).
    pub(crate) fn create(dir: &Path, rib: &mut Rib, config: LoadConfig, attached: Attached) -> Result<Store, PinError> {
        let _ = rib.take_changes();
        let path = dir.join(JOURNAL);
        let journal = open_journal(&path, true)?;
        let mut store = Store {
            dir: dir.to_owned(),
            journal,
            journal_len: 0,
            snapshot_len: 0,
            at: Position {
                seq: 0,
                stamp: Boottime::now(),
                policy_next: rib.policy_ids.next(),
                counter_next: rib.counter_slots.next(),
                tally: Some(Tally::of(rib)),
            },
            config,
            attached,
            smalls: Smalls::default(),
            open_intent: false,
            partial: false,
            format: FORMAT,
        };
        store.compact(rib)?;
        Ok(store)
    }

    /// The state's load config, attachment and whether a change was left
    /// unfinished, checked but without decoding the RIB (for a reader).
    pub(crate) fn peek(dir: &Path) -> Result<Peeked, OpenError> {
        recovery::peek(dir, true)
    }

    /// As [`Store::peek`] for a writer, which checks the whole state when
    /// it reads its RIB next: the snapshot's head alone, unchecked.
    pub(crate) fn peek_head(dir: &Path) -> Result<Peeked, OpenError> {
        recovery::peek(dir, false)
    }

    /// A reader's RIB of the routes `keep` wants and every small set
    /// (sources, host addresses, objects): what answers for a few
    /// destinations without decoding a million routes. Never written from.
    pub(crate) fn read_if(dir: &Path, keep: Keep<'_>) -> Result<Rib, OpenError> {
        recovery::load_if(dir, Some(keep)).map(|recovered| recovered.rib)
    }

    /// Reads the state in `dir`: the snapshot, then the journal replayed
    /// onto it. `writable`: also returns the store to append to (a torn
    /// tail is cut off first).
    pub(crate) fn open(dir: &Path, writable: bool) -> Result<(Recovered, Option<Store>), OpenError> {
        let mut recovered = recovery::load(dir)?;
        if !writable {
            return Ok((recovered, None));
        }
        let mut store = Store::writer(dir, &recovered, false)?;
        if recovered.format < FORMAT && !recovered.unfinished {
            // An older format is rewritten at once, so that a writer of one
            // route finds this format's tally. Failing that, its first
            // commit rewrites it (never a journal record of this format).
            match store.compact(&recovered.rib) {
                Ok(()) => recovered.format = FORMAT,
                Err(e) => log::warn!("{e} (the state stays in format {} until the next change)", recovered.format),
            }
        }
        Ok((recovered, Some(store)))
    }

    /// As [`Store::open`] for a writer that changes only the routes `keep`
    /// wants: its RIB holds those and every small set, with pools that hand
    /// out only ids above those ever handed out, and the store's route
    /// counts. `None` when the state cannot be written from such a RIB (an
    /// older format, or a change left unfinished): read it whole.
    pub(crate) fn open_for_change(dir: &Path, keep: Keep<'_>) -> Result<Option<(Recovered, Store)>, OpenError> {
        let Some(recovered) = recovery::load_for_change(dir, keep)? else { return Ok(None) };
        if recovered.unfinished {
            return Ok(None);
        }
        let store = Store::writer(dir, &recovered, true)?;
        Ok(Some((recovered, store)))
    }

    /// The store to append to after `recovered`, a torn tail cut off first.
    fn writer(dir: &Path, recovered: &Recovered, partial: bool) -> Result<Store, OpenError> {
        let path = dir.join(JOURNAL);
        let journal = open_journal(&path, false).map_err(OpenError::Pin)?;
        if recovered.journal_valid < recovered.journal_read {
            journal.set_len(recovered.journal_valid).map_err(|e| OpenError::Pin(io("truncating", &path)(e)))?;
        }
        Ok(Store {
            dir: dir.to_owned(),
            journal,
            journal_len: recovered.journal_valid,
            snapshot_len: recovered.snapshot_len,
            at: recovered.at,
            config: recovered.config,
            attached: recovered.attached.clone(),
            smalls: Smalls::of(&recovered.rib),
            open_intent: false,
            partial,
            format: recovered.format,
        })
    }

    /// Records that a change begins (before its first kernel write), once
    /// per change. Not synced: it only has to survive the process, since a
    /// crash of the machine also takes the kernel state it protects.
    pub(crate) fn begin(&mut self) -> Result<(), PinError> {
        if self.open_intent {
            return Ok(());
        }
        let record = journal::frame(journal::INTENT, self.at.seq + 1, Boottime::now(), &[]);
        self.append(&record)?;
        self.open_intent = true;
        Ok(())
    }

    /// Ends a change begun that changed nothing (refused, undone).
    pub(crate) fn end(&mut self) {
        if !std::mem::take(&mut self.open_intent) {
            return;
        }
        let record = journal::frame(journal::DONE, self.at.seq + 1, Boottime::now(), &[]);
        if let Err(e) = self.append(&record) {
            // The next process repairs a change it cannot see the end of: harmless.
            log::warn!("{e} (the next process to adopt checks the dataplane)");
        }
    }

    /// Makes what changed in `rib` durable: one COMMIT record, synced
    /// (a snapshot when the table was replaced whole, or once the journal is
    /// large). On error the change stays marked, for the next save.
    pub(crate) fn commit(&mut self, rib: &mut Rib) -> Result<(), PinError> {
        let changed = rib.take_changes();
        let next = Position {
            seq: self.at.seq + 1,
            stamp: Boottime::now(),
            policy_next: rib.policy_ids.next(),
            counter_next: rib.counter_slots.next(),
            tally: Some(Tally::of(rib)),
        };
        let result = match &changed {
            Changed::All if self.partial => {
                // Unreachable by construction (a table replaced whole reads
                // the RIB first); refused rather than written from a few routes.
                Err(PinError::Io {
                    op: "writing the whole state from the routes of one change",
                    path: self.dir.join(SNAPSHOT),
                    source: std::io::Error::from(std::io::ErrorKind::Unsupported),
                })
            }
            Changed::All => {
                self.at = next;
                self.compact(rib)
            }
            Changed::Ids(_) if self.format < FORMAT => {
                // A change to a state of an older format (repaired at its
                // adoption, so not rewritten then) rewrites it in this one.
                self.at = next;
                self.compact(rib)
            }
            Changed::Ids(ids) => {
                let smalls = (!self.smalls.matches(rib)).then(|| Smalls::of(rib));
                let same_pools = (next.policy_next, next.counter_next) == (self.at.policy_next, self.at.counter_next);
                if ids.is_empty() && smalls.is_none() && same_pools {
                    self.end();
                    return Ok(());
                }
                let body = journal::commit_body(&next, rib, ids, smalls.as_ref());
                let record = journal::frame(journal::COMMIT, next.seq, next.stamp, &body);
                self.append(&record).map(|()| {
                    self.at = next;
                    if let Some(s) = smalls {
                        self.smalls = s;
                    }
                    // A RIB of a few routes is never written whole: the next
                    // writer that reads the RIB compacts.
                    let large =
                        self.journal_len > COMPACT_MIN && self.journal_len * COMPACT_FRACTION > self.snapshot_len;
                    if large && !self.partial {
                        if let Err(e) = self.compact(rib) {
                            // The change is durable in the journal; compaction is retried later.
                            log::warn!("{e} (the journal keeps growing until a snapshot can be written)");
                        }
                    }
                })
            }
        };
        self.open_intent = false;
        if result.is_err() {
            rib.restore_changes(changed);
        }
        result
    }

    /// Appends one record; a failed write is cut off again, so that no torn
    /// record hides the ones after it.
    /// Appends one record with one `write`. Not synced: what the store
    /// describes (kernel maps) lives as long as the boot, so a record only
    /// has to survive the death of a process, which the page cache does;
    /// an `fdatasync` per change cost 3.7 ms where /run is a disk.
    fn append(&mut self, record: &[u8]) -> Result<(), PinError> {
        let path = self.dir.join(JOURNAL);
        let result = self.journal.write_all(record);
        match result {
            Ok(()) => {
                self.journal_len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.journal.set_len(self.journal_len) {
                    log::warn!("cutting a failed journal write off {}: {cut}", path.display());
                }
                Err(io("appending to", &path)(e))
            }
        }
    }

    /// Writes `rib` as the new snapshot and empties the journal.
    fn compact(&mut self, rib: &Rib) -> Result<(), PinError> {
        // Computed by the commit that got here; an older format's has none.
        self.at.tally.get_or_insert_with(|| Tally::of(rib));
        let bytes = snapshot::encode(rib, &self.config, &self.attached, self.at);
        let path = self.dir.join(SNAPSHOT);
        let tmp = self.dir.join(format!(".{SNAPSHOT}.{}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_data()));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("writing", &tmp)(e));
        }
        std::fs::rename(&tmp, &path).map_err(io("renaming", &path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io("syncing", &self.dir))?;
        // The snapshot holds every change up to `at.seq`: a journal record
        // left behind by a crash here is skipped by its sequence number.
        let journal = self.dir.join(JOURNAL);
        self.journal.set_len(0).and_then(|()| self.journal.sync_data()).map_err(io("truncating", &journal))?;
        self.journal_len = 0;
        self.snapshot_len = bytes.len() as u64;
        self.format = FORMAT;
        self.smalls = Smalls::of(rib);
        Ok(())
    }
}

fn open_journal(path: &Path, create_empty: bool) -> Result<File, PinError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .and_then(|f| if create_empty { f.set_len(0).map(|()| f) } else { Ok(f) })
        .map_err(io("opening", path))
}

/// Whether `dir` holds a dataplane's state (of this format or an older one).
pub(crate) fn exists(dir: &Path) -> bool {
    dir.join(SNAPSHOT).exists() || dir.join(OLD_STATE).exists()
}

/// Fields stored in their text syntax (`Display` out, `FromStr` in).
mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::route::{Route, Table};
    use crate::rib::alloc::CounterSlots;
    use crate::rib::RouteId;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lhe-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config() -> LoadConfig {
        LoadConfig {
            ttl: TtlMode::default(),
            mtu: MtuPolicy::default(),
            max_routes_v4: 1000,
            max_routes_v6: 1000,
            max_policies: 10,
            max_counted_routes: 100,
            lookup: Ipv4Lookup::LpmTrie,
            dir_groups: 0,
            route_values: 0,
            route_cache: 0,
            route_cache_min_routes: 0,
            label_on_link: false,
            skip_stages: 0,
        }
    }

    fn attached() -> Attached {
        Attached { iface: "eth9".into(), ifindex: 9, mode: AttachedMode::Generic }
    }

    fn id(p: &str) -> RouteId {
        (Table::Main, p.parse().unwrap())
    }

    fn set(rib: &mut Rib, p: &str, label: &str) {
        let slot = rib.counter_slots.take().unwrap();
        rib.counters_of.insert(id(p), CounterSlots { route: slot, lists: vec![] });
        rib.routes.insert(id(p), Route::new(id(p).1, label.parse().unwrap()));
    }

    fn prefixes(rib: &Rib) -> Vec<String> {
        rib.routes.keys().map(|(_, p)| p.to_string()).collect()
    }

    #[test]
    fn commits_replay_in_order_and_an_unfinished_change_is_reported() {
        let dir = temp_dir("replay");
        let mut rib = Rib::new(100);
        set(&mut rib, "10.0.0.0/8", "100");
        let mut store = Store::create(&dir, &mut rib, config(), attached()).unwrap();
        store.begin().unwrap();
        set(&mut rib, "10.1.0.0/16", "101");
        rib.graveyard.push((3, Boottime::now()));
        store.commit(&mut rib).unwrap();
        store.begin().unwrap();
        rib.routes.remove(&id("10.0.0.0/8"));
        rib.counters_of.remove(&id("10.0.0.0/8"));
        store.commit(&mut rib).unwrap();
        // A change refused: DONE, nothing to replay.
        store.begin().unwrap();
        store.end();
        drop(store);

        let (back, _) = Store::open(&dir, false).unwrap();
        assert_eq!(prefixes(&back.rib), ["10.1.0.0/16"]);
        assert_eq!(back.rib.graveyard, rib.graveyard);
        assert!(!back.unfinished);
        assert_eq!(back.rib.counter_slots.next(), 2, "the pool goes on where it was");
        assert_eq!(back.rib.policy_ids.next(), 3, "the graveyard's id stays taken");

        // A process killed after its INTENT: reported, until someone ends it.
        let (_, store) = Store::open(&dir, true).unwrap();
        let mut store = store.unwrap();
        store.begin().unwrap();
        drop(store);
        let peeked = Store::peek(&dir).unwrap();
        assert!(peeked.unfinished, "a reader that decodes no route sees it too");
        assert_eq!((peeked.config, peeked.attached), (config(), attached()));
        let (back, store) = Store::open(&dir, true).unwrap();
        assert!(back.unfinished);
        let mut store = store.unwrap();
        store.open_intent = true;
        store.end();
        assert!(!Store::open(&dir, false).unwrap().0.unfinished);
        assert!(!Store::peek(&dir).unwrap().unfinished);
        // A damaged snapshot is refused by a reader as by a writer.
        let snapshot = std::fs::read(dir.join(SNAPSHOT)).unwrap();
        let mut damaged = snapshot.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x08;
        std::fs::write(dir.join(SNAPSHOT), &damaged).unwrap();
        assert!(matches!(Store::peek(&dir), Err(OpenError::Unreadable(Unreadable::Invalid(_)))));
        std::fs::write(dir.join(SNAPSHOT), &snapshot).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_writer_for_one_change_reads_its_routes_with_the_stores_counts_and_never_compacts() {
        let dir = temp_dir("one-change");
        let mut rib = Rib::new(100);
        for p in ["10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "2001:db8::/32"] {
            set(&mut rib, p, "100");
        }
        drop(Store::create(&dir, &mut rib, config(), attached()).unwrap());
        let addrs = ["10.1.2.3".parse().unwrap()];
        let (read, mut store) = Store::open_for_change(&dir, &Covering(&addrs)).unwrap().expect("format 9");
        let mut part = read.rib;
        assert_eq!(prefixes(&part), ["10.0.0.0/8", "10.1.0.0/16"], "the routes covering it, no more");
        assert_eq!(part.routes.trie_counts(), [3, 1, 0, 0], "the whole table's counts");
        // Ids above every one handed out; the free ones below are only counted.
        assert_eq!(part.counter_slots.take(), Some(5));
        part.counter_slots.give_back(5);
        store.begin().unwrap();
        part.routes.remove(&id("10.1.0.0/16"));
        if let Some(slots) = part.counters_of.remove(&id("10.1.0.0/16")) {
            part.counter_slots.give_back(slots.route);
        }
        part.routes.insert(id("10.1.2.0/24"), Route::new(id("10.1.2.0/24").1, "700".parse().unwrap()));
        store.commit(&mut part).unwrap();
        // A RIB of a few routes is never written whole, however long the journal.
        store.journal_len = COMPACT_MIN + 1;
        store.snapshot_len = 1;
        store.begin().unwrap();
        part.routes.insert(id("10.1.3.0/24"), Route::new(id("10.1.3.0/24").1, "800".parse().unwrap()));
        store.commit(&mut part).unwrap();
        assert!(std::fs::metadata(dir.join(JOURNAL)).unwrap().len() > 0, "not compacted");
        drop(store);
        let (whole, _) = Store::open(&dir, false).unwrap();
        assert_eq!(prefixes(&whole.rib), ["10.0.0.0/8", "10.1.2.0/24", "10.1.3.0/24", "10.2.0.0/16", "2001:db8::/32"]);
        assert_eq!(whole.at.tally.map(|t| t.tries), Some([4, 1, 0, 0]), "counted as the whole RIB counts");
        assert_eq!(whole.at.tally.map(|t| t.free_counters), Some(2), "slot 5 (taken and given back) and 10.1/16's");
        assert_eq!(snapshot::Tally::of(&whole.rib).free_counters, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_format_8_state_is_read_and_rewritten_by_its_first_writer() {
        let dir = temp_dir("format-8");
        let mut rib = Rib::new(100);
        set(&mut rib, "10.0.0.0/8", "100");
        set(&mut rib, "10.1.0.0/16", "101");
        drop(Store::create(&dir, &mut rib, config(), attached()).unwrap());
        let old = snapshot::as_format_8(&std::fs::read(dir.join(SNAPSHOT)).unwrap());
        std::fs::write(dir.join(SNAPSHOT), &old).unwrap();
        let addrs = ["10.1.2.3".parse().unwrap()];
        assert!(Store::open_for_change(&dir, &Covering(&addrs)).unwrap().is_none(), "no counts: read whole");
        let (read, _) = Store::open(&dir, false).unwrap();
        assert_eq!((read.format, prefixes(&read.rib).len(), read.at.tally), (8, 2, None), "a reader reads it as it is");
        assert_eq!(std::fs::read(dir.join(SNAPSHOT)).unwrap(), old, "and writes nothing");
        let (read, _) = Store::open(&dir, true).unwrap();
        assert_eq!(read.format, FORMAT);
        let (again, _) = Store::open(&dir, false).unwrap();
        assert_eq!((again.format, prefixes(&again.rib)), (FORMAT, prefixes(&rib)));
        assert!(Store::open_for_change(&dir, &Covering(&addrs)).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_table_replaced_whole_compacts_and_a_stale_journal_is_skipped() {
        let dir = temp_dir("compact");
        let mut rib = Rib::new(100);
        set(&mut rib, "10.0.0.0/8", "100");
        let mut store = Store::create(&dir, &mut rib, config(), attached()).unwrap();
        store.begin().unwrap();
        set(&mut rib, "10.1.0.0/16", "101");
        store.commit(&mut rib).unwrap();
        let stale = std::fs::read(dir.join(JOURNAL)).unwrap();
        assert!(!stale.is_empty());

        store.begin().unwrap();
        let mut whole = std::collections::BTreeMap::clone(&rib.routes);
        whole.remove(&id("10.0.0.0/8"));
        rib.routes = whole.into();
        rib.counters_of.remove(&id("10.0.0.0/8"));
        store.commit(&mut rib).unwrap();
        assert_eq!(std::fs::metadata(dir.join(JOURNAL)).unwrap().len(), 0, "the snapshot took it all");
        // A crash between the snapshot's rename and the journal's truncation
        // leaves records the snapshot holds: skipped by sequence number.
        std::fs::write(dir.join(JOURNAL), &stale).unwrap();
        let (back, _) = Store::open(&dir, false).unwrap();
        assert_eq!(prefixes(&back.rib), ["10.1.0.0/16"]);
        assert!(!back.unfinished);
        assert!(!Store::peek(&dir).unwrap().unfinished);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_before_the_next_append() {
        let dir = temp_dir("torn");
        let mut rib = Rib::new(100);
        let mut store = Store::create(&dir, &mut rib, config(), attached()).unwrap();
        store.begin().unwrap();
        set(&mut rib, "10.1.0.0/16", "101");
        store.commit(&mut rib).unwrap();
        drop(store);
        let mut bytes = std::fs::read(dir.join(JOURNAL)).unwrap();
        bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2]);
        std::fs::write(dir.join(JOURNAL), &bytes).unwrap();

        let (back, store) = Store::open(&dir, true).unwrap();
        let (mut rib, mut store) = (back.rib, store.unwrap());
        assert_eq!(prefixes(&rib), ["10.1.0.0/16"]);
        store.begin().unwrap();
        set(&mut rib, "10.2.0.0/16", "102");
        store.commit(&mut rib).unwrap();
        let (back, _) = Store::open(&dir, false).unwrap();
        assert_eq!(prefixes(&back.rib), ["10.1.0.0/16", "10.2.0.0/16"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
