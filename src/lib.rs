//! dpplan backs up fleets of IBM DataPower appliances from plans kept as text.
//!
//! # Layout
//!
//! Data flows one way, and lower layers never name higher ones:
//!
//! - [`diag`]: diagnostics as data (stable codes, severities, spans, help), shared by the
//!   front end layers.
//! - [`syntax`]: source text to an AST where every node carries its span (pest grammar in
//!   `grammar/dpplan.pest`), plus the canonical formatter.
//! - [`check`]: AST to a checked [`check::Program`] and every diagnostic in one pass; resolves
//!   imports and the embedded standard library.
//! - [`schedule`]: time arithmetic over the checked model, pure: maintenance windows, cron
//!   schedules, when a plan is next due; used by the checker's schedule rules, the engine's
//!   window checks, the reports and `dpplan serve`.
//! - [`appliance`]: the [`appliance::Appliance`] trait the engine calls, its one error type
//!   (a device and an operation around an `ErrorKind` that decides `is_transient()`), and the
//!   SOMA client over HTTP(S) with streaming payload decoding.
//! - [`sim`]: the SOMA simulator: a fleet file, one real HTTP(S) server per device, stateful
//!   domains, deterministic content, injected faults.
//! - [`backups`]: the backup store on disk: layout, names made safe, manifests, atomic
//!   writes; used by the engine, the reports and the CLI.
//! - [`store`]: the durable journal and history of runs (redb): what the engine writes, what
//!   reports and `resume` read.
//! - [`notify`]: notifications of run outcomes (webhook, syslog, e-mail), queued in the state
//!   file's outbox with the run's status and delivered at least once.
//! - [`report`]: the result pages (runs, activities, tasks, the activity log) as tables and
//!   JSON views built from the store's history, and the store's file tools (verify, prune).
//! - [`serve`]: `dpplan serve`, the daemon: the plan catalogue, schedules, the runs it drives,
//!   the HTTP API, and the dashboard for browsers (server-rendered pages, sign-in, actions).
//! - [`cli`]: clap commands; the only place that prints or renders diagnostics.

// The pest-generated parser names `alloc` (pest is built without `std`, see Cargo.toml).
extern crate alloc;

pub mod appliance;
pub mod backups;
pub mod check;
pub mod cli;
pub mod compile;
pub mod diag;
pub mod engine;
pub mod notify;
pub mod report;
pub mod schedule;
pub mod secrets;
pub mod serve;
pub mod sim;
pub mod soma;
pub mod store;
pub mod syntax;

/// The allocator of every binary built on this crate (the CLI, its tests and benches alike,
/// so the benchmarks measure what ships). A run makes several small allocations per request
/// on tokio's worker threads and frees many on another thread; glibc's malloc spent about
/// 15% of an HTTP run there (docs/performance.md, "Engine"). Built with `no_thp`: with
/// transparent huge pages its arenas raised a 2 GiB download's peak RSS past 64 MiB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
