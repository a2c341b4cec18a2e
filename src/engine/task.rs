//! One task's runner: its steps in order, each attempt journaled (intent, then result), the
//! recovery policies (docs/language.md, "Recovery policies"), `always` steps, and script hooks.

mod restore;
mod retries;

use super::actions::{self, StepError};
use super::context::{window, RunCtx, RunStatus, TaskProgress};
use crate::check::{Action, Policy, ScriptWhen, Stages};
use crate::compile::Task;
use crate::store::{Record, StepOutcome, StoreError, TaskStatus};
use restore::restore;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// What a task runner returns: (task id, final status, error, files written).
pub(crate) type TaskEnd = (u32, TaskOutcome);

/// What a task came to in this process: its status, its error, the files it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskOutcome {
    pub status: TaskStatus,
    pub error: Option<String>,
    pub files: Vec<String>,
}

impl TaskOutcome {
    /// A status and an error, no files.
    pub fn new(status: TaskStatus, error: Option<String>) -> TaskOutcome {
        TaskOutcome {
            status,
            error,
            files: Vec::new(),
        }
    }
}

/// The steps of `t` in an order that respects `after` (Kahn's algorithm; the checker
/// refused cycles, so every step appears).
fn topo_order(t: &Task) -> Vec<usize> {
    let n = t.steps.len();
    let mut indeg: Vec<usize> = t.steps.iter().map(|s| s.after.len()).collect();
    let mut order = Vec::with_capacity(n);
    let mut ready: Vec<usize> = (0..n).filter(|i| indeg[*i] == 0).rev().collect();
    while let Some(i) = ready.pop() {
        order.push(i);
        let mut next: Vec<usize> = (0..n).filter(|j| t.steps[*j].after.contains(&i)).collect();
        next.reverse();
        for j in next {
            indeg[j] -= 1;
            if indeg[j] == 0 {
                ready.push(j);
            }
        }
    }
    order
}

/// Runs task `index` of the run to a final status.
pub(crate) async fn run_task(
    ctx: Arc<RunCtx>,
    index: usize,
    limit: Arc<super::gate::Gate>,
) -> Result<TaskEnd, StoreError> {
    let t = &ctx.tasks[index];
    let order = topo_order(t);
    let lockstep = ctx.plan.stages == Stages::Lockstep;
    let prior = ctx.prior.get(&t.id);
    let had_started = prior.is_some_and(|p| p.status == TaskStatus::Running);
    // Wait for what comes before the task (the pre-plan script, the device's previous task)
    // before taking a permit, so no permit is held by a task that cannot start.
    for &i in &order {
        if t.steps[i].after.is_empty() {
            ctx.wait_preds(&t.step_id(&t.steps[i].name)).await;
        }
    }
    let permit = if lockstep {
        None
    } else {
        Some(limit.acquire(t.id).await)
    };
    // Another run of the process may be working on the device: after the permit, so that
    // whoever holds a device lock is running (a lockstep run took its devices at its start).
    let _device = match (&ctx.device_locks, lockstep) {
        (Some(locks), false) => Some(locks.lock(&t.device).await),
        _ => None,
    };
    if ctx.interrupted.load(Ordering::SeqCst) && !had_started {
        // Not started: it stays PENDING and `resume` runs it.
        finish_all(&ctx, t);
        drop(permit);
        return Ok((t.id, TaskOutcome::new(TaskStatus::Pending, None)));
    }
    // A task that had started before a crash is finished, whatever the window says now: it
    // may owe an unquiesce.
    let not_started = if had_started {
        None
    } else if ctx.halted.load(Ordering::SeqCst) {
        Some("cancelled: the run was halted")
    } else if !ctx.window_open() && !sleep_while_closed(&ctx).await? {
        Some("cancelled: the maintenance window closed")
    } else {
        None
    };
    if let Some(reason) = not_started {
        ctx.record(vec![Record::Task {
            task: t.id,
            status: TaskStatus::Cancelled,
            error: Some(reason.to_string()),
            at: ctx.clock.now(),
        }])
        .await?;
        notify(&ctx, t, TaskStatus::Cancelled);
        finish_all(&ctx, t);
        return Ok((
            t.id,
            TaskOutcome::new(TaskStatus::Cancelled, Some(reason.to_string())),
        ));
    }
    if ctx.interrupted.load(Ordering::SeqCst) && !had_started {
        // Interrupted while the run slept through a closed window: left for resume.
        finish_all(&ctx, t);
        return Ok((t.id, TaskOutcome::new(TaskStatus::Pending, None)));
    }
    let mut st = TaskProgress::default();
    if !had_started {
        // Written with the first intent: nothing has happened before that.
        st.pending.push(Record::Task {
            task: t.id,
            status: TaskStatus::Running,
            error: None,
            at: ctx.clock.now(),
        });
    }
    notify(&ctx, t, TaskStatus::Running);
    let mut completed: Vec<usize> = Vec::new();
    let (done, attempts_before, retried_before) = match prior {
        Some(p) => restore(&ctx, t, &order, p, &mut st, &mut completed),
        None => (HashSet::new(), HashMap::new(), HashMap::new()),
    };
    // Interrupted: steps left for `resume`, so the task does not end.
    let mut cut = false;
    // The task's last steps: tasks after it on the device wait for them.
    let sinks: HashSet<usize> = (0..t.steps.len())
        .filter(|i| !t.steps.iter().any(|s| s.after.contains(i)))
        .collect();
    let mut deferred: Vec<String> = Vec::new();
    for &i in &order {
        let s = &t.steps[i];
        let sid = t.step_id(&s.name);
        ctx.wait_preds(&sid).await;
        // Whatever becomes of the step, it is released once (below).
        'step: {
            if done.contains(&i) {
                break 'step;
            }
            if ctx.interrupted.load(Ordering::SeqCst) && !s.always {
                cut = true;
                break 'step;
            }
            let skip = if st.stopped && !s.always {
                Some("skipped: an earlier step failed")
            } else if s.call.action == Action::Unquiesce && !st.quiesced {
                Some("skipped: this task quiesced nothing")
            } else if s.always && !script_wanted(t, s, &st) {
                Some("skipped: the script's `when` does not match the task's outcome")
            } else {
                None
            };
            if let Some(why) = skip {
                st.pending.push(Record::StepResult {
                    task: t.id,
                    step: s.name.clone(),
                    attempt: 0,
                    outcome: StepOutcome::Skipped,
                    error: Some(why.to_string()),
                    at: ctx.clock.now(),
                    retry: false,
                });
                break 'step;
            }
            let step_permit = if lockstep {
                Some(limit.acquire(t.id).await)
            } else {
                None
            };
            let first_attempt = attempts_before.get(&i).copied().unwrap_or(0) + 1;
            let retried = retried_before.get(&i).copied().unwrap_or(0);
            let failure = attempt_step(&ctx, t, i, &mut st, first_attempt, retried).await?;
            drop(step_permit);
            match failure {
                None => completed.push(i),
                Some((err, _)) if err.interrupted => cut = true,
                Some((err, policy)) => {
                    st.failed_any = true;
                    if st.error.is_none() {
                        st.error = Some(format!("{}: {}", s.name, err.message));
                    }
                    apply_policy(&ctx, t, &s.name, &policy, &completed, &mut st).await?;
                }
            }
        }
        release(
            &ctx,
            &mut st,
            &sid,
            sinks.contains(&i),
            lockstep,
            &mut deferred,
        )
        .await?;
    }
    let files: Vec<String> = st.files.iter().map(|(_, f)| f.path.clone()).collect();
    if cut {
        let rest = std::mem::take(&mut st.pending);
        if !rest.is_empty() {
            ctx.record(rest).await?;
        }
        notify(&ctx, t, TaskStatus::Running);
        for sid in deferred {
            ctx.finish(&sid);
        }
        drop(permit);
        return Ok((
            t.id,
            TaskOutcome {
                status: TaskStatus::Running,
                error: st.error,
                files,
            },
        ));
    }
    let status = if st.rolled_back {
        TaskStatus::RolledBack
    } else if st.stopped {
        TaskStatus::Failed
    } else if st.warned {
        TaskStatus::Warning
    } else {
        TaskStatus::Succeeded
    };
    let mut last = std::mem::take(&mut st.pending);
    last.push(Record::Task {
        task: t.id,
        status,
        error: st.error.clone(),
        at: ctx.clock.now(),
    });
    // The records are queued for the writer before the permit goes, so the next task's first
    // intent commits with them or after them; the task ends once they are durable. (Were the
    // process to die in between, resume redoes this task's last step, as after any crash.)
    let write = ctx.record(last);
    tokio::pin!(write);
    let queued = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    drop(permit);
    match queued {
        Poll::Ready(r) => r?,
        Poll::Pending => write.await?,
    }
    notify(&ctx, t, status);
    // Tasks after this one on the device wait for these: what this one did is durable.
    for sid in deferred {
        ctx.finish(&sid);
    }
    Ok((
        t.id,
        TaskOutcome {
            status,
            error: st.error,
            files,
        },
    ))
}

/// Marks a step finished for the steps that wait for it. A step that other tasks wait for is
/// released only once what it did is durable: in lockstep now (every phase step has waiters
/// elsewhere), otherwise when the task's final record is written.
async fn release(
    ctx: &RunCtx,
    st: &mut TaskProgress,
    sid: &str,
    sink: bool,
    lockstep: bool,
    deferred: &mut Vec<String>,
) -> Result<(), StoreError> {
    if lockstep {
        let rest = std::mem::take(&mut st.pending);
        if !rest.is_empty() {
            ctx.record(rest).await?;
        }
        ctx.finish(sid);
    } else if sink {
        deferred.push(sid.to_string());
    } else {
        ctx.finish(sid);
    }
    Ok(())
}

/// What a failed step's final policy does to the task.
async fn apply_policy(
    ctx: &RunCtx,
    t: &Task,
    step: &str,
    policy: &Policy,
    completed: &[usize],
    st: &mut TaskProgress,
) -> Result<(), StoreError> {
    match policy {
        Policy::Continue => st.warned = true,
        Policy::Stop | Policy::Retry { .. } => st.stopped = true,
        Policy::Halt => {
            st.stopped = true;
            ctx.halted.store(true, Ordering::SeqCst);
            ctx.log(
                Some(t.id),
                Some(step),
                "halt: tasks not started are cancelled".into(),
            )
            .await?;
        }
        Policy::Rollback => {
            st.stopped = true;
            st.rolled_back = true;
            rollback(ctx, t, completed, st).await?;
        }
    }
    Ok(())
}

fn notify(ctx: &RunCtx, t: &Task, status: TaskStatus) {
    if let Some(o) = &ctx.observer {
        o.task(t, status);
    }
}

/// Marks every step of `t` finished, so tasks after it do not wait for it.
fn finish_all(ctx: &RunCtx, t: &Task) {
    for s in t.steps.iter() {
        ctx.finish(&t.step_id(&s.name));
    }
}

/// Whether an `always` script step runs, by its `when` and the task's outcome so far.
fn script_wanted(t: &Task, s: &crate::compile::TaskStep, st: &TaskProgress) -> bool {
    if s.call.action != Action::Run {
        return true;
    }
    let when = actions::script_arg(t, &s.call).map(|sc| sc.when);
    match when {
        Some(ScriptWhen::Failed) => st.failed_any,
        Some(ScriptWhen::Succeeded) => !st.failed_any,
        _ => true,
    }
}

/// Runs one step with its retries; `Some` is the failure and the policy that now applies.
async fn attempt_step(
    ctx: &RunCtx,
    t: &Task,
    i: usize,
    st: &mut TaskProgress,
    first_attempt: u32,
    retried: u32,
) -> Result<Option<(StepError, Policy)>, StoreError> {
    let s = &t.steps[i];
    // A resumed step continues its retry budget: `retried` retries were used before.
    let mut retries = retries::Retries::new(&s.policy, retried);
    let mut attempt = first_attempt - 1;
    loop {
        attempt += 1;
        // The intent is durable before the side effect starts: resume must know it may
        // have happened.
        // Waiting results and facts of earlier steps share this commit.
        let mut recs = std::mem::take(&mut st.pending);
        recs.push(Record::StepIntent {
            task: t.id,
            step: s.name.clone(),
            attempt,
            at: ctx.clock.now(),
        });
        ctx.record(recs).await?;
        super::failpoint::hit("after-intent");
        super::failpoint::panic_at("panic-after-intent");
        if let Some(o) = &ctx.observer {
            o.step(t, &s.name);
        }
        let fut = actions::execute(ctx, t, &s.call, &s.name, st, attempt);
        let result = match s.timeout_ms {
            Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), fut).await {
                Ok(r) => r,
                Err(_) => Err(StepError::transient(format!(
                    "step timed out after {}",
                    human(Duration::from_millis(ms))
                ))),
            },
            None => fut.await,
        };
        let err = match result {
            Ok(()) => {
                // Durable with the next intent or the task's end. A crash before that redoes
                // this step on resume, which every action allows.
                st.pending.push(Record::StepResult {
                    task: t.id,
                    step: s.name.clone(),
                    attempt,
                    outcome: StepOutcome::Succeeded,
                    error: None,
                    at: ctx.clock.now(),
                    retry: false,
                });
                super::failpoint::hit("after-result");
                return Ok(None);
            }
            Err(e) if e.interrupted => {
                // No result: the intent stays open and resume redoes the step.
                let line = Record::Log {
                    task: Some(t.id),
                    step: Some(s.name.clone()),
                    at: ctx.clock.now(),
                    message: format!("{}; resume does this step again", e.message),
                };
                st.pending.push(line);
                return Ok(Some((e, retries.last().clone())));
            }
            Err(e) => e,
        };
        let mut records = std::mem::take(&mut st.pending);
        records.push(Record::StepResult {
            task: t.id,
            step: s.name.clone(),
            attempt,
            outcome: StepOutcome::Failed,
            error: Some(err.message.clone()),
            at: ctx.clock.now(),
            retry: false,
        });
        let next = if err.transient {
            retries.advance()
        } else {
            if retries.any_left() {
                records.push(Record::Log {
                    task: Some(t.id),
                    step: Some(s.name.clone()),
                    at: ctx.clock.now(),
                    message: format!("not retried: the error is permanent ({})", err.message),
                });
            }
            None
        };
        let Some(next) = next else {
            ctx.record(records).await?;
            return Ok(Some((err, retries.last().clone())));
        };
        // Resume after a crash in the backoff retries the step too.
        if let Some(Record::StepResult { retry, .. }) = records
            .iter_mut()
            .rev()
            .find(|r| matches!(r, Record::StepResult { .. }))
        {
            *retry = true; // this attempt's failure, pushed last
        }
        records.push(Record::Log {
            task: Some(t.id),
            step: Some(s.name.clone()),
            at: ctx.clock.now(),
            message: format!(
                "attempt {attempt} failed ({}); retry {} of {} in {}",
                err.message,
                next.number,
                next.of,
                human(next.wait)
            ),
        });
        ctx.record(records).await?;
        super::failpoint::hit("retry-backoff");
        ctx.clock.sleep(next.wait).await;
    }
}

/// Undoes the completed steps of `t`, newest first (those that have an `undo`).
async fn rollback(
    ctx: &RunCtx,
    t: &Task,
    completed: &[usize],
    st: &mut TaskProgress,
) -> Result<(), StoreError> {
    for &i in completed.iter().rev() {
        let s = &t.steps[i];
        let Some(undo) = &s.undo else { continue };
        let name = format!("{}.undo", s.name);
        let mut recs = std::mem::take(&mut st.pending);
        recs.push(Record::StepIntent {
            task: t.id,
            step: name.clone(),
            attempt: 1,
            at: ctx.clock.now(),
        });
        ctx.record(recs).await?;
        let r = actions::execute(ctx, t, undo, &name, st, 1).await;
        ctx.record(vec![
            Record::StepResult {
                task: t.id,
                step: name.clone(),
                attempt: 1,
                outcome: if r.is_ok() {
                    StepOutcome::Succeeded
                } else {
                    StepOutcome::Failed
                },
                error: r.as_ref().err().map(|e| e.message.clone()),
                at: ctx.clock.now(),
                retry: false,
            },
            Record::StepResult {
                task: t.id,
                step: s.name.clone(),
                attempt: 0,
                outcome: StepOutcome::Undone,
                error: None,
                at: ctx.clock.now(),
                retry: false,
            },
        ])
        .await?;
    }
    Ok(())
}

fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The window closed before a task started. Under `on_window_close = sleep` the run goes
/// SLEEPING until the window opens again (one task records it and waits; the others wait
/// behind it) and the task then starts: `Ok(true)`. `Ok(false)`: the task is cancelled (the
/// plan cancels on close, the window never opens again, or an interrupt came while asleep:
/// then the task is left for resume by the interrupt check that follows).
async fn sleep_while_closed(ctx: &RunCtx) -> Result<bool, StoreError> {
    if ctx.plan.on_window_close != crate::check::OnWindowClose::Sleep {
        return Ok(false);
    }
    let Some(w) = ctx.plan.window.as_ref() else {
        return Ok(true);
    };
    let _turn = ctx.sleeper.lock().await;
    if ctx.window_open() {
        return Ok(true);
    }
    let Some(opens) = window::next_open(w, ctx.clock.now()) else {
        return Ok(false);
    };
    ctx.record(vec![
        Record::Log {
            task: None,
            step: None,
            at: ctx.clock.now(),
            message: format!(
                "the maintenance window closed: sleeping until it opens again at {}",
                window::local_time(w, opens)
            ),
        },
        Record::Run {
            status: RunStatus::Sleeping,
            error: None,
            at: ctx.clock.now(),
        },
    ])
    .await?;
    // Until the opening, or an interrupt (`Live::interrupt` wakes it). The wake-up is
    // registered before the flag is read, so an interrupt in between is not lost.
    while !ctx.window_open() {
        let woken = ctx.live.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if ctx.interrupted.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let left = (opens - ctx.clock.now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = ctx.clock.sleep(left.max(Duration::from_millis(10))) => {}
            _ = woken => {}
        }
    }
    ctx.record(vec![
        Record::Run {
            status: RunStatus::Running,
            error: None,
            at: ctx.clock.now(),
        },
        Record::Log {
            task: None,
            step: None,
            at: ctx.clock.now(),
            message: "the maintenance window opened: the run continues".into(),
        },
    ])
    .await?;
    Ok(true)
}
