//! The one integration test binary.

// Helpers outside #[test] functions panic on purpose when a test's setup fails.
#![allow(clippy::unwrap_used)]

mod cli_sim;
mod sim_client;
mod soma_fixtures;
mod support;
