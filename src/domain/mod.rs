//! The domain: labels, prefixes, SR policies, routes, tables and the choices
//! made at load and attach. Pure types with their text syntaxes
//! (`FromStr`/`Display`), validated once at construction; nothing here knows
//! how the kernel stores them.

pub(crate) mod config;
pub(crate) mod desired;
pub(crate) mod label;
pub(crate) mod maglev;
pub(crate) mod no_live_path;
pub(crate) mod policy;
pub mod prefix;
pub(crate) mod route;
pub(crate) mod serde_forms;
