//! The pest grammar (`grammar/dpplan.pest`) and its `Rule` enum, derived here.
//!
//! A leaf of the parser: the lowering and the error messages import it from here, never
//! from `parser.rs`.

/// The generated parser; [`Rule`] names its rules.
#[derive(pest_derive::Parser)]
#[grammar = "../grammar/dpplan.pest"]
pub(super) struct Grammar;
