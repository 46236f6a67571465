//! A route table as the FIB writes it: the kernel's LPM tries, or DIR-24-8.
//! Both take the same keys (`RouteKey` bytes) and values (`route_value`
//! bytes), so the apply path, its undo journal and verify serve either.

use crate::error::{MapError, RouteError};
use crate::sys::map::BpfMap;

/// One entry's key and value bytes.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Entries keyed and valued like an LPM trie of routes.
pub(crate) trait RouteTable: Sync + std::fmt::Debug {
    /// The map's name, for errors and differences.
    fn name(&self) -> &'static str;
    /// Adds or atomically replaces one entry.
    fn update(&self, key: &[u8], value: &[u8]) -> Result<(), RouteError>;
    /// Adds or replaces entries in order; on error the ones before it are written.
    fn update_batch(&self, keys: &[u8], values: &[u8]) -> Result<(), RouteError>;
    /// Deletes one entry; `Ok(false)` when it was not there.
    fn delete(&self, key: &[u8]) -> Result<bool, RouteError>;
    /// Deletes entries that all exist, in order.
    fn delete_batch(&self, keys: &[u8]) -> Result<(), RouteError>;
    /// Every entry (key, value).
    fn entries(&self) -> Result<Vec<Entry>, MapError>;
    /// Whether the table holds exactly the `count` entries of `want`, if it
    /// can tell without listing its entries (DIR-24-8 reads its own
    /// bookkeeping in place); `false` says only "list them and compare".
    fn holds_exactly<'a>(&self, _count: usize, _want: &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>) -> bool {
        false
    }
}

impl RouteTable for BpfMap {
    fn name(&self) -> &'static str {
        BpfMap::name(self)
    }

    fn update(&self, key: &[u8], value: &[u8]) -> Result<(), RouteError> {
        Ok(BpfMap::update(self, key, value)?)
    }

    fn update_batch(&self, keys: &[u8], values: &[u8]) -> Result<(), RouteError> {
        Ok(BpfMap::update_batch(self, keys, values)?)
    }

    fn delete(&self, key: &[u8]) -> Result<bool, RouteError> {
        Ok(BpfMap::delete(self, key)?)
    }

    fn delete_batch(&self, keys: &[u8]) -> Result<(), RouteError> {
        Ok(BpfMap::delete_batch(self, keys)?)
    }

    fn entries(&self) -> Result<Vec<Entry>, MapError> {
        let mut out = Vec::new();
        for key in self.keys(usize::MAX)? {
            if let Some(value) = self.lookup(&key)? {
                out.push((key, value));
            }
        }
        Ok(out)
    }
}
