//! The serde forms of [`Route`] and [`Policy`]: the words of a desired-state
//! file (and of `routes --output json`), so a value written by one reads back
//! through the other, and a bad value is refused by the same checks.
//! A `Policy` keeps the lists a liveness check took out of service
//! (`lists_down`); a `Route` is a desired-state entry, which says what is
//! wanted, not what S-BFD found, so its form leaves them out.

use serde::{Deserialize, Serialize};

use super::desired::{number_or_text, DesiredRoute, DesiredState};
use super::policy::{EntropyLabel, Policy, PolicyError};
use super::route::Route;

/// A policy's words: `policy` (the lists, `16001/16002@7,16003@3`, or
/// `invalid` / `invalid drop` for a named policy with no live path), `entropy_label`
/// (`"bottom"` or N), `policy_name`, `lists_down` (the indexes of the lists
/// out of service, when any is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyForm {
    policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "number_or_text")]
    entropy_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lists_down: Vec<usize>,
}

/// The lists of `policy` as the files write them: every weight, or
/// `invalid` (`invalid drop`); the entropy label and the name are keys of
/// their own.
pub(crate) fn lists_text(policy: &Policy) -> String {
    if policy.is_valid() {
        policy.lists().iter().map(|l| format!("{}@{}", l.stack, l.weight)).collect::<Vec<_>>().join(",")
    } else {
        policy.to_string()
    }
}

impl From<Policy> for PolicyForm {
    fn from(policy: Policy) -> Self {
        PolicyForm {
            policy: lists_text(&policy),
            entropy_label: policy.entropy_label().map(|e| e.to_string()),
            policy_name: policy.name().map(str::to_owned),
            lists_down: (0..policy.lists().len()).filter(|i| policy.is_list_down(*i)).collect(),
        }
    }
}

impl TryFrom<PolicyForm> for Policy {
    type Error = PolicyError;
    fn try_from(form: PolicyForm) -> Result<Self, Self::Error> {
        let policy = Policy::from_text(&form.policy, form.policy_name.as_deref())?;
        let entropy = form.entropy_label.as_deref().map(str::parse::<EntropyLabel>).transpose()?;
        let policy = policy.with_entropy_label(entropy)?;
        if form.lists_down.is_empty() {
            return Ok(policy);
        }
        let lists = policy.lists().len();
        let mut down = vec![false; lists];
        for index in form.lists_down {
            *down.get_mut(index).ok_or(PolicyError::NoSuchList { index, lists })? = true;
        }
        policy.with_lists_down(&down)
    }
}

impl From<&Route> for DesiredRoute {
    /// The route as a desired-state entry of the main table.
    fn from(r: &Route) -> Self {
        DesiredRoute {
            prefix: r.prefix.to_string(),
            policy: lists_text(&r.policy),
            tc: Some(r.tc.to_string()),
            table: None,
            entropy_label: r.policy.entropy_label().map(|e| e.to_string()),
            policy_name: r.policy.name().map(str::to_owned),
        }
    }
}

impl From<Route> for DesiredRoute {
    fn from(r: Route) -> Self {
        DesiredRoute::from(&r)
    }
}

/// A route read from its serde form that was refused: why, in the words
/// of the type that refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteFormError(String);

impl TryFrom<DesiredRoute> for Route {
    type Error = RouteFormError;
    /// Checked as an entry of a desired state is. A route has no table: an
    /// entry of an alternate table is refused (read a `DesiredState`).
    fn try_from(entry: DesiredRoute) -> Result<Self, Self::Error> {
        if let Some(table) = entry.table.filter(|t| *t != 0) {
            return Err(RouteFormError(format!(
                "{}: table {table}: a Route has no table; read it as part of a DesiredState",
                entry.prefix
            )));
        }
        let prefix = entry.prefix.clone();
        let state = DesiredState { routes: vec![entry], ..DesiredState::default() };
        // Named by its prefix: "routes[0]" would point into a file there is not.
        let valid = state.validate().map_err(|e| RouteFormError(format!("{prefix}: {}", e.reason)))?;
        valid.routes().values().next().cloned().ok_or_else(|| RouteFormError("no route".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::NoLivePath;

    #[test]
    fn a_policy_keeps_its_lists_out_of_service_and_refuses_one_it_lacks() {
        let policy = "16001@7,16002@3".parse::<Policy>().unwrap().with_lists_down(&[true, false]).unwrap();
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(json["lists_down"], serde_json::json!([0]), "{json}");
        let back: Policy = serde_json::from_value(json).unwrap();
        assert_eq!(back, policy);
        assert!(back.is_list_down(0) && !back.is_list_down(1));
        // Without a list down, the key is not written.
        assert!(serde_json::to_value("16001".parse::<Policy>().unwrap()).unwrap().get("lists_down").is_none());
        let bad = serde_json::from_str::<Policy>(r#"{"policy": "16001@7,16002@3", "lists_down": [2]}"#).unwrap_err();
        assert!(bad.to_string().contains("segment list 2 is marked down, but the policy has 2 lists"), "{bad}");
    }

    #[test]
    fn a_bad_route_is_named_by_its_prefix_not_by_a_file_position() {
        let bad = serde_json::from_str::<Route>(r#"{"prefix": "198.51.100.0/24", "policy": "3"}"#).unwrap_err();
        let text = bad.to_string();
        assert!(text.starts_with("198.51.100.0/24: ") && text.contains("Implicit NULL"), "{text}");
        assert!(!text.contains("routes["), "{text}");
    }

    #[test]
    fn route_serde_round_trips_in_the_files_words() {
        let route: Route = serde_json::from_str(
            r#"{"prefix": "198.51.100.0/24", "policy": "16001/16002@7,16003@3", "tc": "dscp", "entropy_label": 2}"#,
        )
        .unwrap();
        assert_eq!(route.to_string(), "198.51.100.0/24 -> 16001/16002@7,16003@3 +EL@2 (tc dscp)");
        let json = serde_json::to_value(&route).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"prefix": "198.51.100.0/24", "policy": "16001/16002@7,16003@3", "tc": "dscp", "entropy_label": "2"})
        );
        assert_eq!(serde_json::from_value::<Route>(json).unwrap(), route);
        let named = Route::with_policy(route.prefix, Policy::invalid("blue").unwrap());
        assert_eq!(serde_json::from_value::<Route>(serde_json::to_value(&named).unwrap()).unwrap(), named);
        let dropping = Route::with_policy(route.prefix, Policy::invalid_with("blue", NoLivePath::Drop).unwrap());
        let json = serde_json::to_value(&dropping).unwrap();
        assert_eq!((json["policy"].as_str(), json["policy_name"].as_str()), (Some("invalid drop"), Some("blue")));
        assert_eq!(serde_json::from_value::<Route>(json).unwrap(), dropping);
        let policy = serde_json::to_value(&dropping.policy).unwrap();
        assert_eq!(serde_json::from_value::<Policy>(policy).unwrap(), dropping.policy);
    }

    #[test]
    fn a_bad_route_is_refused_with_the_input_quoted() {
        let err = serde_json::from_str::<Route>(r#"{"prefix": "10.0.0.1/8", "policy": "16001"}"#).unwrap_err();
        assert!(err.to_string().contains("10.0.0.1/8"), "{err}");
        let err = serde_json::from_str::<Route>(r#"{"prefix": "10.0.0.0/8", "policy": "16001", "table": 5}"#);
        assert!(err.unwrap_err().to_string().contains("has no table"));
        assert!(serde_json::from_str::<Route>(r#"{"prefix": "10.0.0.0/8", "policy": "16001", "color": 5}"#).is_err());
    }

    #[test]
    fn policy_serde_keeps_name_and_entropy_label() {
        let policy = "16001@1,16002@3".parse::<Policy>().unwrap().with_name("blue").unwrap();
        let policy = policy.with_entropy_label(Some(EntropyLabel::Bottom)).unwrap();
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"policy": "16001@1,16002@3", "entropy_label": "bottom", "policy_name": "blue"})
        );
        assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), policy);
        assert!(serde_json::from_str::<Policy>(r#"{"policy": "16001@0"}"#).is_err());
    }
}
