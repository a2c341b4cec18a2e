//! Source text to AST. (placeholder, filled by the language work)
