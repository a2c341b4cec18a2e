//! The one integration test binary.

mod soma_fixtures;
mod support;
