//! The installed routes, by table and prefix, with each route trie's size
//! kept as they change: the route cache turns itself on per family by the
//! main table's size after every change (see `Fib::invalidate_route_cache`),
//! and a change checks its tables' room, neither of which may cost a walk of
//! the table. A RIB read for one change holds a few routes and the sizes
//! the store recorded ([`Routes::set_counts`]).

use std::collections::BTreeMap;

use crate::domain::route::Route;

use super::tracked::Dirty;
use super::{trie_index, RouteId};

/// A `BTreeMap` of the installed routes that counts the routes of each
/// trie ([`trie_index`]). Reads go through `Deref`; every write is one of
/// the methods below, so the counts cannot drift.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    map: BTreeMap<RouteId, Route>,
    /// Routes per trie: main IPv4, main IPv6, alternate IPv4, alternate IPv6.
    counts: [usize; 4],
    /// Ids written since the store last saved.
    pub(crate) dirty: Dirty,
}

fn count_of<'a>(counts: &'a mut [usize; 4], id: &RouteId) -> Option<&'a mut usize> {
    counts.get_mut(trie_index(id.0, &id.1))
}

impl Routes {
    /// The main table's IPv4 (`v6` false) or IPv6 routes.
    pub(crate) fn main_count(&self, v6: bool) -> usize {
        self.counts.get(usize::from(v6)).copied().unwrap_or(0)
    }

    /// Routes per trie ([`trie_index`]), whether or not this map holds them all.
    pub(crate) fn trie_counts(&self) -> [usize; 4] {
        self.counts
    }

    pub(crate) fn insert(&mut self, id: RouteId, route: Route) -> Option<Route> {
        self.dirty.mark(id);
        let old = self.map.insert(id, route);
        if old.is_none() {
            if let Some(n) = count_of(&mut self.counts, &id) {
                *n += 1;
            }
        }
        old
    }

    pub(crate) fn remove(&mut self, id: &RouteId) -> Option<Route> {
        let old = self.map.remove(id);
        if old.is_some() {
            self.dirty.mark(*id);
            if let Some(n) = count_of(&mut self.counts, id) {
                *n = n.saturating_sub(1);
            }
        }
        old
    }

    pub(crate) fn extend(&mut self, routes: impl IntoIterator<Item = (RouteId, Route)>) {
        for (id, route) in routes {
            self.insert(id, route);
        }
    }
}

impl Routes {
    /// Routes read back from the store: nothing in them is dirty.
    pub(crate) fn clean(map: BTreeMap<RouteId, Route>) -> Routes {
        let mut counts = [0; 4];
        for id in map.keys() {
            if let Some(n) = count_of(&mut counts, id) {
                *n += 1;
            }
        }
        Routes { map, counts, dirty: Dirty::default() }
    }

    /// Makes the counts those of the whole tables, as the store recorded
    /// them, when this map holds only the routes one change touches: the
    /// counts then follow the change as they would on the whole map.
    pub(crate) fn set_counts(&mut self, counts: [usize; 4]) {
        self.counts = counts;
    }
}

/// A table replaced whole: every id is dirty.
impl From<BTreeMap<RouteId, Route>> for Routes {
    fn from(map: BTreeMap<RouteId, Route>) -> Routes {
        let mut routes = Routes::clean(map);
        routes.dirty.mark_all();
        routes
    }
}

impl std::ops::Deref for Routes {
    type Target = BTreeMap<RouteId, Route>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::route::Table;

    fn id(table: Table, prefix: &str) -> RouteId {
        (table, prefix.parse().unwrap())
    }

    fn route(prefix: &str) -> Route {
        Route::new(prefix.parse().unwrap(), "100".parse().unwrap())
    }

    #[test]
    fn counts_follow_every_write() {
        let alt = Table::alternate(3).unwrap();
        let mut r = Routes::default();
        r.insert(id(Table::Main, "10.0.0.0/8"), route("10.0.0.0/8"));
        r.insert(id(Table::Main, "10.0.0.0/8"), route("10.0.0.0/8")); // a replace
        r.insert(id(alt, "10.0.0.0/8"), route("10.0.0.0/8"));
        r.extend([
            (id(Table::Main, "2001:db8::/32"), route("2001:db8::/32")),
            (id(Table::Main, "::/0"), route("::/0")),
            (id(alt, "::/0"), route("::/0")),
        ]);
        assert_eq!((r.main_count(false), r.main_count(true)), (1, 2));
        assert!(r.remove(&id(Table::Main, "::/0")).is_some());
        assert!(r.remove(&id(Table::Main, "::/0")).is_none());
        assert!(r.remove(&id(alt, "10.0.0.0/8")).is_some());
        assert_eq!((r.main_count(false), r.main_count(true)), (1, 1));
        assert_eq!(r.trie_counts(), [1, 1, 0, 1]);
        let rebuilt = Routes::from(r.map.clone());
        assert_eq!(rebuilt.counts, r.counts);
        assert_eq!(r.len(), 3);
    }
}
