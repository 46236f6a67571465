//! The installed routes, by table and prefix, with the main table's size per
//! family kept as they change: the route cache turns itself on per family by
//! that size after every change (see `Fib::invalidate_route_cache`), which
//! must not cost a walk of the table.

use std::collections::BTreeMap;

use crate::domain::route::{Route, Table};

use super::tracked::Dirty;
use super::RouteId;

/// A `BTreeMap` of the installed routes that counts the main table's IPv4 and
/// IPv6 routes. Reads go through `Deref`; every write is one of the methods
/// below, so the counts cannot drift.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    map: BTreeMap<RouteId, Route>,
    /// Main-table routes: IPv4, IPv6.
    main: (usize, usize),
    /// Ids written since the store last saved.
    pub(crate) dirty: Dirty,
}

/// Whether `id` is a main-table IPv6 route (`Some(true)`) or IPv4 one.
fn main_family(id: &RouteId) -> Option<bool> {
    (id.0 == Table::Main).then_some(id.1.is_ipv6())
}

/// The count of one family.
fn count(main: &mut (usize, usize), v6: bool) -> &mut usize {
    match v6 {
        false => &mut main.0,
        true => &mut main.1,
    }
}

impl Routes {
    /// The main table's IPv4 (`v6` false) or IPv6 routes.
    pub(crate) fn main_count(&self, v6: bool) -> usize {
        match v6 {
            false => self.main.0,
            true => self.main.1,
        }
    }

    pub(crate) fn insert(&mut self, id: RouteId, route: Route) -> Option<Route> {
        let family = main_family(&id);
        self.dirty.mark(id);
        let old = self.map.insert(id, route);
        if let (Some(f), None) = (family, &old) {
            *count(&mut self.main, f) += 1;
        }
        old
    }

    pub(crate) fn remove(&mut self, id: &RouteId) -> Option<Route> {
        let old = self.map.remove(id);
        if old.is_some() {
            self.dirty.mark(*id);
        }
        if let (Some(f), Some(_)) = (main_family(id), &old) {
            *count(&mut self.main, f) -= 1;
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
        let mut main = (0, 0);
        for f in map.keys().filter_map(main_family) {
            *count(&mut main, f) += 1;
        }
        Routes { map, main, dirty: Dirty::default() }
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
        let rebuilt = Routes::from(r.map.clone());
        assert_eq!(rebuilt.main, r.main);
        assert_eq!(r.len(), 3);
    }
}
