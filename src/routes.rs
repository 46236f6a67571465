//! Routes and tables: which prefix is steered into which policy, and how
//! packets pick a table.
//!
//! A [`Route`] maps a destination prefix (no host bits) to a
//! [`Policy`](crate::Policy) and a traffic-class rule ([`Tc`]); a [`Table`]
//! is the main table or an alternate one selected by source prefix.
//!
//! ```
//! use lnetd_host_encap::routes::{prefix, Tc};
//! use lnetd_host_encap::{Route, Table};
//!
//! let route = Route::new(prefix::parse("198.51.100.0/24")?, "16001/16002".parse()?).with_tc(Tc::FromDscp);
//! assert_eq!(route.to_string(), "198.51.100.0/24 -> 16001/16002 (tc dscp)");
//! assert_eq!(Table::alternate(5).map(Table::id), Some(5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::domain::prefix;
pub use crate::domain::route::{Route, Table, Tc};
pub use crate::handles::Sources;
pub use ipnetwork::IpNetwork;
