//! Writing shared policy objects (see [`crate::rib::objects`]): a route with
//! a named policy points at its object's id; changing the object is one
//! write to `policies` (a hash map: a packet sees the old value or the new
//! one, whole), and the routes' entries are not touched.

use std::collections::HashMap;

use super::apply::{route_value, Taken, Undo};
use super::{encode, full, Fib};
use crate::abi::{self, types};
use crate::domain::policy::Policy;
use crate::domain::route::{Route, Tc};
use crate::error::RouteError;
use crate::rib::alloc::CounterSlots;
use crate::rib::objects::{same_tc_kind, Object};
use crate::rib::{Rib, RouteId};

/// What a change did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyUpdate {
    /// Routes that point at the object (and follow the change).
    pub routes: usize,
    /// Map writes done (0 when the object already held this content).
    pub map_operations: usize,
}

/// The refusal of a route on object `name` (traffic class `object_tc`) with
/// `tc` of another kind while other routes still use the object: it would
/// have to be replaced under them. An apply moves all of a name's routes at
/// once; one route cannot.
pub(crate) fn tc_kind_refused(name: &str, object_tc: Tc, tc: Tc) -> RouteError {
    RouteError::PolicyObject {
        name: name.to_owned(),
        problem: format!("its routes take the traffic class {object_tc}, this one {tc}"),
        remedy: "routes sharing a policy name share one traffic class kind (fixed or dscp): change them all in one \
                 apply, or give this route another name",
    }
}

/// An object's counter slots for `lists` lists: its own first, new ones
/// for what it lacks (0: none left). Returns them and those newly taken.
pub(crate) fn list_slots(rib: &mut Rib, own: &[u32], lists: usize) -> (Vec<u32>, Vec<u32>) {
    let mut slots: Vec<u32> = own.iter().copied().take(lists).collect();
    let mut fresh = Vec::new();
    while slots.len() < lists {
        let s = rib.counter_slots.take_or_wait().unwrap_or(0);
        if s != 0 {
            fresh.push(s);
        }
        slots.push(s);
    }
    (slots, fresh)
}

/// Records an object's new content (written to the kernel already); list
/// slots it no longer needs are freed.
pub(crate) fn record(rib: &mut Rib, id: u32, policy: &Policy, tc: Tc, lists: Vec<u32>) {
    match rib.objects.get_mut(id) {
        Some(o) => {
            let surplus: Vec<u32> = o.lists.iter().copied().filter(|s| !lists.contains(s)).collect();
            o.policy = policy.clone();
            o.tc = tc;
            o.lists = lists;
            surplus.into_iter().for_each(|s| rib.counter_slots.give_back(s));
        }
        None => rib.objects.insert(id, Object { policy: policy.clone(), tc, lists, users: 0 }),
    }
}

/// Objects staged by an apply, by name: written once, recorded at commit.
#[derive(Default)]
pub(crate) struct Staged {
    pub by_name: HashMap<String, StagedObject>,
}

/// One object an apply writes (or finds as wanted).
pub(crate) struct StagedObject {
    pub id: u32,
    pub policy: Policy,
    pub tc: Tc,
    pub lists: Vec<u32>,
}

impl Fib {
    /// Replaces the content of the object named by `policy`'s name: one
    /// write to `policies`; every route on it follows, none is rewritten.
    /// `None` when no route uses that name.
    pub(crate) fn update_policy(&self, policy: &Policy) -> Result<Option<PolicyUpdate>, RouteError> {
        let Some(name) = policy.name() else {
            return Err(RouteError::PolicyObject {
                name: String::new(),
                problem: "the policy has no name".into(),
                remedy: "name it (Policy::with_name) after the object to change",
            });
        };
        let mut rib = self.changer()?;
        self.bury_policies(&mut rib);
        let Some((p, o)) = rib.objects.named(name) else { return Ok(None) };
        let (tc, own, routes) = (o.tc, o.lists.clone(), o.users);
        if o.policy == *policy {
            return Ok(Some(PolicyUpdate { routes, map_operations: 0 }));
        }
        let (lists, fresh) = list_slots(&mut rib, &own, policy.lists().len());
        let mut ops = 0;
        let mut written = fresh.iter().try_for_each(|s| {
            ops += 1;
            self.maps.route_counters.zero_percpu(&s.to_ne_bytes())
        });
        if written.is_ok() {
            let value = encode::policy_value(policy, encode::entry_tc(tc), &lists);
            written = self.maps.policies.update(&p.to_ne_bytes(), abi::bytes_of(value.as_ref()));
            ops += 1;
        }
        if let Err(e) = written {
            fresh.iter().for_each(|s| rib.counter_slots.give_back(*s));
            return Err(e.into());
        }
        record(&mut rib, p, policy, tc, lists);
        self.saved(&mut rib)?;
        Ok(Some(PolicyUpdate { routes, map_operations: ops }))
    }
}

impl Fib {
    /// The shared object of a named route in this apply: found, rewritten
    /// in place (its content changed: one write for all its routes) or
    /// created (a new name, or a traffic class kind that changed), once per
    /// name. Returns its id and the route's entry to write, `None` when the
    /// entry the kernel holds is already that value.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stage_named<'a>(
        &'a self,
        rib: &mut Rib,
        id: RouteId,
        route: &Route,
        staged: &mut Staged,
        undo: &mut Vec<Undo<'a>>,
        taken: &mut Taken,
        ops: &mut usize,
    ) -> Result<(u32, Option<(types::route_value, CounterSlots)>), RouteError> {
        let name = route.policy.name().unwrap_or_default();
        let p = match staged.by_name.get(name) {
            Some(o) => o.id,
            None => {
                let m = self.maps();
                let (p, own, old) = match rib.objects.named(name) {
                    Some((p, o)) if same_tc_kind(o.tc, route.tc) => {
                        if o.holds(&route.policy, route.tc) {
                            let o = StagedObject { id: p, policy: o.policy.clone(), tc: o.tc, lists: o.lists.clone() };
                            staged.by_name.insert(name.to_owned(), o);
                            return self.stage_route(rib, id, route, p, taken);
                        }
                        (p, o.lists.clone(), Some(abi::bytes_of(encode::object(o).as_ref()).to_vec()))
                    }
                    _ => {
                        let p = rib
                            .policy_ids
                            .take()
                            .ok_or_else(|| RouteError::full("policy", self.config.max_policies))?;
                        taken.policy_ids.push(p);
                        (p, Vec::new(), None)
                    }
                };
                let (lists, fresh) = list_slots(rib, &own, route.policy.lists().len());
                taken.counter_slots.extend_from_slice(&fresh);
                if old.is_some() {
                    // An object in use is live as soon as it is written: its new
                    // lists' slots start from zero first.
                    taken.zero_fresh(&m.route_counters)?;
                }
                let value = encode::policy_value(&route.policy, encode::entry_tc(route.tc), &lists);
                let key = p.to_ne_bytes().to_vec();
                let written = m.policies.update(&key, abi::bytes_of(value.as_ref()));
                undo.push(Undo { map: &m.policies, keys: key, olds: vec![old] });
                written.map_err(full("policy", self.config.max_policies))?;
                *ops += 1;
                let o = StagedObject { id: p, policy: route.policy.clone(), tc: route.tc, lists };
                staged.by_name.insert(name.to_owned(), o);
                p
            }
        };
        self.stage_route(rib, id, route, p, taken)
    }

    /// A named route's entry on object `p`, unless the kernel holds it already.
    fn stage_route(
        &self,
        rib: &mut Rib,
        id: RouteId,
        route: &Route,
        p: u32,
        taken: &mut Taken,
    ) -> Result<(u32, Option<(types::route_value, CounterSlots)>), RouteError> {
        let (slots, fresh) = rib.counters_for(id, 0);
        taken.counter_slots.extend_from_slice(&fresh);
        let value = encode::route_value(route, Some(p), slots.route);
        let current = route_value(rib, &id);
        if current.as_deref() == Some(abi::bytes_of(&value)) {
            return Ok((p, None));
        }
        Ok((p, Some((value, slots))))
    }
}
