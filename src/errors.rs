//! Errors: one enum per area, each convertible into [`Error`].
//!
//! Every enum is `#[non_exhaustive]` (match with a wildcard arm); every
//! message quotes the input that was refused and says what to do. A label
//! error stays a [`LabelError`] when it comes from parsing a stack, a policy
//! or a route.
//!
//! ```
//! use lnetd_host_encap::errors::LabelError;
//! use lnetd_host_encap::LabelStack;
//!
//! let err = "100//200".parse::<LabelStack>().unwrap_err();
//! assert!(matches!(err, LabelError::StackParse { position: 2, .. }));
//! assert!(err.to_string().contains("\"100//200\""), "{err}");
//! ```

pub use crate::domain::config::ConfigParseError;
pub use crate::domain::desired::{DesiredError, DesiredFileError};
pub use crate::domain::label::LabelError;
pub use crate::domain::policy::PolicyError;
pub use crate::domain::prefix::PrefixError;
pub use crate::domain::serde_forms::RouteFormError;
pub use crate::error::{AttachError, Error, LoadError, MapError, PinError, RouteError, TestRunError};
pub use crate::sys::privileges::MissingCapabilities;
