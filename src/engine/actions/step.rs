//! What every action shares: the step error, reading a call's arguments, the task's
//! appliance, and the one polling loop. Below both `actions.rs` and its download room.

use crate::appliance::{Appliance, ApplianceError, QuiesceTarget};
use crate::check::{ActionCall, ArgValue, Script, Value};
use crate::compile::{Target, Task};
use crate::engine::context::RunCtx;
use std::sync::Arc;
use std::time::Duration;

/// Why a step failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepError {
    pub message: String,
    pub transient: bool,
    /// Stopped by an interrupt, not failed: the step is left for `resume` to redo.
    pub interrupted: bool,
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            transient: false,
            interrupted: false,
        }
    }

    pub fn transient(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            transient: true,
            interrupted: false,
        }
    }

    pub(super) fn interrupted(message: impl Into<String>) -> StepError {
        StepError {
            interrupted: true,
            ..StepError::permanent(message)
        }
    }
}

impl From<ApplianceError> for StepError {
    fn from(e: ApplianceError) -> StepError {
        StepError {
            transient: e.is_transient(),
            message: e.to_string(),
            interrupted: false,
        }
    }
}

pub(super) fn io(what: &str, e: std::io::Error) -> StepError {
    StepError::permanent(format!("{what}: {e}"))
}

pub(super) fn param<'t>(t: &'t Task, call: &'t ActionCall, arg: &str) -> Option<&'t Value> {
    match call.args.get(arg)? {
        ArgValue::Param(p) => t.params.get(p),
        ArgValue::Literal(v) => Some(v),
        ArgValue::Device | ArgValue::Domain => None,
    }
}

pub(super) fn duration_arg(t: &Task, call: &ActionCall, arg: &str) -> Option<Duration> {
    match param(t, call, arg)? {
        Value::Duration(ms) => Some(Duration::from_millis(*ms)),
        _ => None,
    }
}

pub(super) fn string_arg(t: &Task, call: &ActionCall, arg: &str) -> Option<String> {
    match param(t, call, arg)? {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    }
}

/// The script a `run(...)` call names, if set.
pub(crate) fn script_arg(t: &Task, call: &ActionCall) -> Option<Script> {
    match param(t, call, "script")? {
        Value::Script(s) => Some(s.clone()),
        _ => None,
    }
}

pub(crate) fn quiesce_target(t: &Task, call: &ActionCall) -> QuiesceTarget {
    match (call.args.get("target"), &t.target) {
        (Some(ArgValue::Domain), Target::Domain(d)) => QuiesceTarget::Domain(d.clone()),
        _ => QuiesceTarget::Device,
    }
}

pub(super) fn appliance(ctx: &RunCtx, t: &Task) -> Result<Arc<dyn Appliance>, StepError> {
    ctx.appliances
        .get(&t.device)
        .cloned()
        .ok_or_else(|| StepError::transient(format!("{}: no connection", t.device)))
}

/// The wait before the next poll: 50 ms, doubling up to the poll interval, so quick
/// transitions are seen quickly and slow ones cost few requests.
pub(super) fn poll_delay(ctx: &RunCtx, polls: &mut u32) -> Duration {
    let d = Duration::from_millis(50)
        .saturating_mul(1 << (*polls).min(16))
        .min(ctx.options.poll_interval);
    *polls += 1;
    d
}

/// Runs `check` until it yields a value, at most until `limit` has passed (then `None`),
/// waiting the run's poll delay (growing from 50 ms to `poll_interval`) between tries: the
/// one polling loop of the actions.
pub(super) async fn poll_until<T, F, Fut>(
    ctx: &RunCtx,
    limit: Duration,
    mut check: F,
) -> Result<Option<T>, StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, StepError>>,
{
    let deadline =
        ctx.clock.now() + chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX);
    let mut polls = 0;
    loop {
        if let Some(v) = check().await? {
            return Ok(Some(v));
        }
        if ctx.clock.now() >= deadline {
            return Ok(None);
        }
        ctx.clock.sleep(poll_delay(ctx, &mut polls)).await;
    }
}

/// A line of the task's activity log, written with the step's next records.
pub(super) fn log(
    ctx: &RunCtx,
    t: &Task,
    st: &mut crate::engine::context::TaskProgress,
    step: &str,
    message: String,
) {
    st.pending.push(crate::store::Record::Log {
        task: Some(t.id),
        step: Some(step.to_string()),
        at: ctx.clock.now(),
        message,
    });
}
