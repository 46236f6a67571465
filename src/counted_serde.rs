//! The serde form of a [`CountedRoute`]: the route's own serde form (a
//! desired-state entry) with its table, then its counters. It is the route
//! of `routes --output json` (docs/operations-json.md), so its keys are a
//! contract: every key is written, `null` when unset, and `apply` reads the
//! document back (the counters are ignored there).

use serde::ser::{Serialize, Serializer};

use crate::domain::desired::DesiredRoute;
use crate::metrics::CountedRoute;
use crate::stats::Counter;

/// One segment list with its counter.
#[derive(serde::Serialize)]
struct ListForm {
    stack: String,
    weight: u16,
    packets: u64,
    bytes: u64,
}

/// The keys, in the order they are written.
#[derive(serde::Serialize)]
struct CountedForm {
    prefix: String,
    table: u32,
    policy: String,
    tc: Option<String>,
    entropy_label: Option<String>,
    policy_name: Option<String>,
    counted: bool,
    labelled: Counter,
    lists: Vec<ListForm>,
    set_aside: bool,
}

impl Serialize for CountedRoute {
    /// `prefix`, `table` (0: main), `policy`, `tc`, `entropy_label`,
    /// `policy_name`: the keys of the route's serde form (a desired-state
    /// entry) and of a desired-state file's route, every one written
    /// (`null` when unset); `policy` in its shortest text (a single list
    /// of weight 1 without `@1`: the `Display` of the policy's lists).
    /// Then `counted`, `labelled` (a [`Counter`]), `lists` (`stack`,
    /// `weight`, `packets`, `bytes` per segment list, in policy order) and
    /// `set_aside` (a route kept for one of the host's addresses, not in
    /// force).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let DesiredRoute { prefix, policy, tc, entropy_label, policy_name, .. } = DesiredRoute::from(&self.route);
        let policy = if self.route.policy.is_valid() { shortest(&self.route.policy) } else { policy };
        let lists = self
            .route
            .policy
            .lists()
            .iter()
            .zip(&self.counters.lists)
            .map(|(l, c)| ListForm { stack: l.stack.to_string(), weight: l.weight, packets: c.packets, bytes: c.bytes })
            .collect();
        CountedForm {
            prefix,
            table: self.table.id(),
            policy,
            tc,
            entropy_label,
            policy_name,
            counted: self.counters.counted,
            labelled: self.counters.labelled,
            lists,
            set_aside: self.set_aside,
        }
        .serialize(serializer)
    }
}

/// The policy's lists as its `Display` writes them, without the entropy
/// label marker (the label has its own key).
fn shortest(policy: &crate::Policy) -> String {
    let shown = policy.to_string();
    match shown.split_once(" +EL") {
        Some((lists, _)) => lists.to_owned(),
        None => shown,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::counters::{CountedRoute, Counter, RouteCounters};
    use crate::labels::EntropyLabel;
    use crate::{DesiredState, Policy, Route, Table};

    fn c(packets: u64) -> Counter {
        Counter { packets, bytes: packets * 100 }
    }

    fn routes() -> Vec<CountedRoute> {
        let single = Route::new("198.51.100.0/24".parse().unwrap(), "16001/16002".parse().unwrap());
        let policy: Policy = "16001/16002@7,16003@3".parse().unwrap();
        let policy = policy.with_entropy_label(Some(EntropyLabel::After(2))).unwrap().with_name("blue").unwrap();
        let weighted = Route::with_policy("203.0.113.0/24".parse().unwrap(), policy).with_tc_from_dscp();
        vec![
            CountedRoute {
                table: Table::Main,
                route: single,
                counters: RouteCounters { counted: true, labelled: c(3), lists: vec![c(3)] },
                set_aside: false,
            },
            CountedRoute {
                table: Table::alternate(3).unwrap(),
                route: weighted,
                counters: RouteCounters { counted: false, labelled: c(0), lists: vec![c(0), c(0)] },
                set_aside: false,
            },
        ]
    }

    /// The document's keys and values as docs/operations-json.md lists
    /// them (what the command wrote by hand before).
    #[test]
    fn the_form_is_the_routes_documents() {
        let [single, weighted] = routes().try_into().unwrap();
        assert_eq!(
            serde_json::to_value(&single).unwrap(),
            json!({
                "prefix": "198.51.100.0/24", "table": 0, "policy": "16001/16002", "tc": "0",
                "entropy_label": null, "policy_name": null,
                "counted": true, "labelled": {"packets": 3, "bytes": 300},
                "lists": [{"stack": "16001/16002", "weight": 1, "packets": 3, "bytes": 300}],
                "set_aside": false,
            })
        );
        assert_eq!(
            serde_json::to_value(&weighted).unwrap(),
            json!({
                "prefix": "203.0.113.0/24", "table": 3, "policy": "16001/16002@7,16003@3", "tc": "dscp",
                "entropy_label": "2", "policy_name": "blue",
                "counted": false, "labelled": {"packets": 0, "bytes": 0},
                "lists": [
                    {"stack": "16001/16002", "weight": 7, "packets": 0, "bytes": 0},
                    {"stack": "16003", "weight": 3, "packets": 0, "bytes": 0},
                ],
                "set_aside": false,
            })
        );
    }

    /// What a program reads back: the routes of the form, with the counters
    /// left out, are a desired state giving the same routes in the same tables.
    #[test]
    fn the_form_reads_back_as_a_desired_state() {
        let counted = routes();
        let mut doc: Vec<Value> = counted.iter().map(|r| serde_json::to_value(r).unwrap()).collect();
        for route in &mut doc {
            let route = route.as_object_mut().unwrap();
            for counter in ["counted", "labelled", "lists", "set_aside"] {
                route.remove(counter);
            }
            route.retain(|_, v| !v.is_null());
        }
        let desired = DesiredState::from_json(&json!({ "routes": doc }).to_string()).unwrap();
        let valid = desired.validate().unwrap();
        for r in &counted {
            assert_eq!(valid.routes().get(&(r.table, r.route.prefix)), Some(&r.route));
        }
        assert_eq!(valid.routes().len(), counted.len());
    }
}
