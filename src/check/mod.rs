//! AST to checked program. (placeholder, filled by the language work)

/// The checked program.
#[derive(Debug, Default)]
pub struct Program {}
