//! How the route counters read to a person (their type lives with the
//! forwarding tables, which fill it).

use std::fmt;

use crate::fib::RouteCounters;

impl fmt::Display for RouteCounters {
    /// `N packets, M bytes` labelled; for a route of several segment lists,
    /// each list's share after it, in the policy's order; `not counted` for a
    /// route that got no counter slot (what the command shows as `-`).
    ///
    /// ```text
    /// 10 packets, 1000 bytes (list 0: 7 packets, 700 bytes; list 1: 3 packets, 300 bytes)
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.counted {
            return f.write_str("not counted (no counter slot left: raise EncapsulatorBuilder::max_counted_routes)");
        }
        write!(f, "{}", self.labelled)?;
        if self.lists.len() > 1 {
            f.write_str(" (")?;
            for (i, c) in self.lists.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "list {i}: {c}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counter;

    fn c(packets: u64) -> Counter {
        Counter { packets, bytes: packets * 100 }
    }

    #[test]
    fn route_counters_display() {
        let plain = RouteCounters { counted: true, labelled: c(10), lists: vec![c(10)] };
        assert_eq!(plain.to_string(), "10 packets, 1000 bytes");
        let policy = RouteCounters { counted: true, labelled: c(10), lists: vec![c(7), c(3)] };
        assert_eq!(
            policy.to_string(),
            "10 packets, 1000 bytes (list 0: 7 packets, 700 bytes; list 1: 3 packets, 300 bytes)"
        );
        let uncounted = RouteCounters { counted: false, labelled: c(0), lists: vec![c(0), c(0)] };
        assert!(uncounted.to_string().starts_with("not counted"), "{uncounted}");
    }
}
