//! Maintenance windows: the arithmetic lives in [`crate::schedule::window`], which the checker
//! and `dpplan serve` use too; the engine names it here.

pub use crate::schedule::window::*;
