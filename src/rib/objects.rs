//! Shared policy objects: every route whose policy carries the same name
//! points at one policy id in the dataplane (like a kernel nexthop object),
//! so changing the named policy is one write to `policies`, however many
//! routes use it. Names are global to an encapsulator (every table).
//!
//! The RIB keeps the object's content here and only here: a route's own
//! copy of a named policy may be older (a content change does not touch the
//! routes), so every reader resolves a route through [`super::Rib::resolve`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::domain::policy::Policy;
use crate::domain::route::{Route, Tc};

/// One shared policy object. Equal when the stored part is (its routes aside).
#[derive(Debug, Clone)]
pub(crate) struct Object {
    /// The policy in force, named.
    pub policy: Policy,
    /// The traffic class its lists are encoded with (every route on it has it).
    pub tc: Tc,
    /// Its counter slots, one per segment list (shared by its routes).
    pub lists: Vec<u32>,
    /// Routes pointing at it (not stored: counted from the routes' policy ids).
    pub users: usize,
}

impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        self.policy == other.policy && self.tc == other.tc && self.lists == other.lists
    }
}

impl Eq for Object {}

impl Object {
    /// Its name (every object has one).
    pub(crate) fn name(&self) -> &str {
        self.policy.name().unwrap_or_default()
    }

    /// Whether a route with `policy` and `tc` would find exactly this content.
    pub(crate) fn holds(&self, policy: &Policy, tc: Tc) -> bool {
        self.tc == tc && self.policy.same_content(policy)
    }
}

/// Whether two traffic classes encode the route value alike: the route's
/// flag says "from the DSCP", so an object can change between fixed
/// classes in place, but not between fixed and DSCP.
pub(crate) fn same_tc_kind(a: Tc, b: Tc) -> bool {
    matches!(a, Tc::FromDscp) == matches!(b, Tc::FromDscp)
}

/// The objects, by policy id and by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Objects {
    by_id: BTreeMap<u32, Object>,
    /// The object a name resolves to for new routes. An object whose name
    /// was bound to a fresh id (its traffic class kind changed) keeps its
    /// id until its last route leaves.
    by_name: HashMap<Arc<str>, u32>,
}

impl Objects {
    pub(crate) fn get(&self, id: u32) -> Option<&Object> {
        self.by_id.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Object> {
        self.by_id.get_mut(&id)
    }

    /// The id and object a name resolves to.
    pub(crate) fn named(&self, name: &str) -> Option<(u32, &Object)> {
        let id = *self.by_name.get(name)?;
        self.by_id.get(&id).map(|o| (id, o))
    }

    pub(crate) fn contains(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Adds an object (no route on it yet) and binds its name to it.
    pub(crate) fn insert(&mut self, id: u32, object: Object) {
        self.by_name.insert(object.name().into(), id);
        self.by_id.insert(id, object);
    }

    /// Removes an object whose last route left; its name is unbound unless
    /// it names another object by now.
    pub(crate) fn remove(&mut self, id: u32) -> Option<Object> {
        let object = self.by_id.remove(&id)?;
        if self.by_name.get(object.name()) == Some(&id) {
            self.by_name.remove(object.name());
        }
        Some(object)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Object)> {
        self.by_id.iter().map(|(id, o)| (*id, o))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Counts each object's routes from the routes' policy ids (after a load).
    pub(crate) fn recount<'a>(&mut self, policy_ids: impl Iterator<Item = &'a u32>) {
        self.by_id.values_mut().for_each(|o| o.users = 0);
        for id in policy_ids {
            if let Some(o) = self.by_id.get_mut(id) {
                o.users += 1;
            }
        }
    }
}

impl PartialEq for Objects {
    fn eq(&self, other: &Self) -> bool {
        self.by_id == other.by_id
    }
}

impl Eq for Objects {}

/// `route` as it is in force: a route on an object carries the object's
/// content (its own copy may predate a change of the object).
pub(crate) fn resolve<'a>(route: &'a Route, object: Option<&Object>) -> Cow<'a, Route> {
    match object {
        Some(o) if route.policy.name().is_some() && (route.policy != o.policy || route.tc != o.tc) => {
            Cow::Owned(Route { prefix: route.prefix, policy: o.policy.clone(), tc: o.tc })
        }
        _ => Cow::Borrowed(route),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, lists: &str) -> Object {
        let policy = lists.parse::<Policy>().unwrap().with_name(name).unwrap();
        Object { policy, tc: Tc::default(), lists: vec![], users: 0 }
    }

    #[test]
    fn a_rebound_name_leaves_the_old_object_until_it_goes() {
        let mut o = Objects::default();
        o.insert(1, object("blue", "100"));
        o.insert(2, object("blue", "200"));
        assert_eq!(o.named("blue").map(|(id, _)| id), Some(2));
        assert!(o.remove(1).is_some());
        assert_eq!(o.named("blue").map(|(id, _)| id), Some(2), "the name stays on the newer object");
        o.recount([2, 2, 7].iter());
        assert_eq!(o.get(2).map(|x| x.users), Some(2));
        assert!(o.remove(2).is_some());
        assert!(o.named("blue").is_none());
    }

    #[test]
    fn routes_resolve_to_their_objects_content() {
        let old: Route = Route::with_policy(
            "10.0.0.0/8".parse().unwrap(),
            "100".parse::<Policy>().unwrap().with_name("blue").unwrap(),
        );
        let obj = object("blue", "200@1,300@1");
        assert_eq!(resolve(&old, Some(&obj)).policy.to_string(), "200@1,300@1");
        assert!(matches!(resolve(&old, None), Cow::Borrowed(_)));
        let same = Route { policy: obj.policy.clone(), ..old.clone() };
        assert!(matches!(resolve(&same, Some(&obj)), Cow::Borrowed(_)));
        assert!(same_tc_kind(Tc::default(), Tc::Fixed(crate::domain::label::TrafficClass::new(5).unwrap())));
        assert!(!same_tc_kind(Tc::default(), Tc::FromDscp));
    }
}
