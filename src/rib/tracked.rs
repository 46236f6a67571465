//! What changed since the last save, recorded by the writes themselves, so
//! that saving a change costs what the change costs and never a walk (or a
//! diff) of a million routes.

use std::collections::BTreeMap;

use super::RouteId;

/// Route ids written since the last [`Dirty::take`]; or "everything" after
/// a table was replaced whole.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dirty {
    ids: Vec<RouteId>,
    all: bool,
}

/// What [`Dirty::take`] hands the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Changed {
    /// These ids (sorted, each once).
    Ids(Vec<RouteId>),
    /// Too much to list: save everything.
    All,
}

impl Dirty {
    pub(crate) fn mark(&mut self, id: RouteId) {
        if !self.all {
            self.ids.push(id);
        }
    }

    pub(crate) fn mark_all(&mut self) {
        self.all = true;
        self.ids = Vec::new();
    }

    /// What was marked, leaving nothing marked.
    pub(crate) fn take(&mut self) -> Changed {
        if std::mem::take(&mut self.all) {
            return Changed::All;
        }
        let mut ids = std::mem::take(&mut self.ids);
        ids.sort_unstable();
        ids.dedup();
        Changed::Ids(ids)
    }

    /// Merges `other` in.
    pub(crate) fn absorb(&mut self, other: Changed) {
        match other {
            Changed::All => self.mark_all(),
            Changed::Ids(ids) => ids.into_iter().for_each(|id| self.mark(id)),
        }
    }
}

/// A map by route id whose writes mark their id dirty. Reads go through
/// `Deref`; every write is one of the methods below, so none is missed.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<V> {
    map: BTreeMap<RouteId, V>,
    pub(crate) dirty: Dirty,
}

impl<V> Default for Tracked<V> {
    fn default() -> Self {
        Tracked { map: BTreeMap::new(), dirty: Dirty::default() }
    }
}

impl<V> Tracked<V> {
    pub(crate) fn insert(&mut self, id: RouteId, value: V) -> Option<V> {
        self.dirty.mark(id);
        self.map.insert(id, value)
    }

    pub(crate) fn remove(&mut self, id: &RouteId) -> Option<V> {
        let old = self.map.remove(id);
        if old.is_some() {
            self.dirty.mark(*id);
        }
        old
    }

    /// A map read back from the store: nothing in it is dirty.
    pub(crate) fn clean(map: BTreeMap<RouteId, V>) -> Tracked<V> {
        Tracked { map, dirty: Dirty::default() }
    }
}

impl<V> std::ops::Deref for Tracked<V> {
    type Target = BTreeMap<RouteId, V>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::route::Table;

    fn id(p: &str) -> RouteId {
        (Table::Main, p.parse().unwrap())
    }

    #[test]
    fn writes_are_marked_once_and_taken_once() {
        let mut t = Tracked::default();
        t.insert(id("10.0.0.0/8"), 1);
        t.insert(id("10.0.0.0/8"), 2);
        assert_eq!(t.remove(&id("192.0.2.0/24")), None);
        t.insert(id("192.0.2.0/24"), 3);
        assert_eq!(t.dirty.take(), Changed::Ids(vec![id("10.0.0.0/8"), id("192.0.2.0/24")]));
        assert_eq!(t.dirty.take(), Changed::Ids(vec![]));
        t.dirty.mark_all();
        t.insert(id("10.0.0.0/8"), 4);
        assert_eq!(t.dirty.take(), Changed::All);
    }
}
