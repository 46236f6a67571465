//! The decapsulator: pops the labels addressed to this host from the frames
//! an interface receives and hands the IP packets to its stack.

pub use crate::decapsulator::{Decapsulator, DecapsulatorBuilder};
pub use crate::stats::DecapStats;
