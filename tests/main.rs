//! The one integration test binary (STYLE.md habit 8): every integration test is a module
//! here, so the crate links once.

// Helpers outside #[test] functions panic on purpose when a test's setup fails.
#![allow(clippy::unwrap_used)]

mod support;

mod appliance_answers;
mod cli;
mod cli_sim;
mod crash;
mod dashboard;
mod demo;
mod docs;
mod engine;
mod everyday;
mod examples;
mod flows;
mod fuzz;
mod fuzz_soma;
mod hardening;
mod language;
mod layout;
mod notify;
mod policies;
mod progress;
mod reports;
mod restore;
mod run_cli;
mod schedules;
mod serve;
mod sim_client;
mod sim_restore;
mod soma_fixtures;
mod state_file;
mod store;
mod ui;
mod windows;
