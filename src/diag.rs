//! Diagnostics as data. (placeholder, filled by the language work)
