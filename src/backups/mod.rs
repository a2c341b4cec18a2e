//! The backup store on disk: its layout (docs/language.md, "store"), names made into path
//! components reversibly, manifests, and writes that are complete or absent (temporary name,
//! fsync, rename, fsync of the directory). Used by the engine (which writes backups), the
//! reports (`verify`, `prune`) and the CLI (progress); it names none of them.

pub mod catalogue;
pub mod export;
mod layout;

pub use layout::*;
