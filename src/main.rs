//! The `dpplan` binary: parse argv, hand over to [`dpplan::cli::run`], exit with its code.

fn main() -> std::process::ExitCode {
    dpplan::cli::run()
}
