//! What the agent and BGP need of an encapsulator beyond the public
//! surface: changes recorded with their origin, and the origins read back.

use super::*;

impl Encapsulator {
    /// Applies the routes that change (an origin's delta), sources and DSCP
    /// table as they are: batched, ordered and undone on refusal like an
    /// apply, at the cost of the changes alone (no diff of the table).
    #[cfg(feature = "bgp")]
    pub(crate) fn apply_patch(
        &self,
        patch: &crate::rib::diff::Patch,
        origins: &crate::fib::apply::Origins,
    ) -> Result<ApplyReport, RouteError> {
        let report = self.fib.apply_from(Desired::Patch(patch), ApplyOptions::default(), Some(origins))?;
        log::debug!("patch: {report}");
        Ok(report)
    }

    /// As [`Encapsulator::apply`] of an owned state, recording the routes'
    /// origins (those absent are static).
    #[cfg(feature = "agent")]
    pub(crate) fn apply_from(
        &self,
        desired: ValidState,
        options: ApplyOptions,
        origins: &crate::fib::apply::Origins,
    ) -> Result<ApplyReport, RouteError> {
        self.fib.apply_from(Desired::Owned(desired), options, Some(origins))
    }

    /// As [`Encapsulator::set_route_in`], recording the route's origin (`None`: static).
    #[cfg(feature = "agent")]
    pub(crate) fn set_route_from(
        &self,
        table: Table,
        route: &Route,
        origin: Option<crate::rib::origins::Noted>,
    ) -> Result<(), RouteError> {
        self.fib.set_route_from(table, route, origin)
    }

    /// The origins the RIB records: of each route that is not static, and
    /// what the origins said of BGP's policies.
    #[cfg(feature = "agent")]
    pub(crate) fn origin_records(&self) -> (crate::fib::apply::Origins, Vec<u8>) {
        self.fib.read(|rib| (rib.origin_of.iter().map(|(id, o)| (*id, *o)).collect(), rib.origin_notes.clone()))
    }

    /// Visits every route in force (set-aside ones last), resolved, with the
    /// origin the RIB records for it, under the RIB's lock; returns what the
    /// origins said of BGP's policies. What an agent's start sorts into its
    /// origins' tables: one pass, no copy of the table in between.
    #[cfg(feature = "bgp")]
    pub(crate) fn visit_routes_with_origins(
        &self,
        mut visit: impl FnMut((Table, IpNetwork), Route, Option<crate::rib::origins::Noted>),
    ) -> Vec<u8> {
        self.fib.read(|rib| {
            // Both sorted by id: read in step, not looked up per route.
            let mut noted = rib.origin_of.iter().peekable();
            for (id, route) in rib.routes.iter() {
                while noted.next_if(|(n, _)| *n < id).is_some() {}
                let origin = noted.next_if(|(n, _)| *n == id).map(|(_, o)| *o);
                visit(*id, rib.resolve(id, route).into_owned(), origin);
            }
            for (prefix, route) in &rib.shadowed {
                let id = (Table::Main, *prefix);
                visit(id, route.clone(), rib.origin_of.get(&id).copied());
            }
            rib.origin_notes.clone()
        })
    }

    /// The origin the RIB records for the route `id` (none: static).
    #[cfg(all(feature = "agent", not(feature = "bgp")))]
    pub(crate) fn recorded_origin(&self, id: (Table, IpNetwork)) -> crate::rib::origins::Origin {
        self.fib.read(|rib| rib.origin_of.get(&id).map_or(crate::rib::origins::Origin::Static, |n| n.origin()))
    }

    /// As [`Encapsulator::origin_records`], of the routes covering `addr`
    /// only (a reader that has not read its RIB reads only those).
    #[cfg(feature = "bgp")]
    pub(crate) fn origin_records_covering(&self, addr: IpAddr) -> (crate::fib::apply::Origins, Vec<u8>) {
        self.fib.read_covering(&[addr], |rib| {
            let covering = rib.origin_of.iter().filter(|((_, prefix), _)| prefix.contains(addr));
            (covering.map(|(id, o)| (*id, *o)).collect(), rib.origin_notes.clone())
        })
    }

    /// Replaces what the origins say of BGP's policies (durable like a change).
    #[cfg(feature = "bgp")]
    pub(crate) fn set_origin_notes(&self, notes: Vec<u8>) -> Result<(), RouteError> {
        self.fib.set_origin_notes(notes)
    }

    /// The tables in force, typed: what an apply of it would leave
    /// unchanged (set-aside routes included, in the main table). For the
    /// agent without BGP (with BGP, the origins read the RIB through
    /// [`Encapsulator::visit_routes_with_origins`]); a library user reads
    /// `desired_state().validate()`.
    #[cfg(all(feature = "agent", not(feature = "bgp")))]
    pub(crate) fn valid_state(&self) -> ValidState {
        self.fib.read(|rib| {
            let mut routes = rib.resolved_routes();
            for (prefix, route) in &rib.shadowed {
                routes.insert((Table::Main, *prefix), route.clone());
            }
            ValidState::from_parts(routes, rib.sources.clone(), rib.dscp)
        })
    }
}
