//! A created run: the pre-plan script, the tasks in the step graph, the post-plan script,
//! and the run's end (its status, its report, the owed releases when the journal fails).

#[allow(unused_imports)]
use super::context::*;
use super::hooks::{plan_env, run_script};
use super::task::TaskOutcome;
use super::{actions, gate, task};

/// A created run: the pre-plan script, the tasks, the post-plan script (docs/architecture.md).
pub(super) async fn execute(ctx: Arc<RunCtx>) -> Result<RunReport, EngineError> {
    let now = ctx.clock.now();
    if let Some(o) = &ctx.observer {
        let root = store_root(&ctx.program);
        o.run(&RunStart {
            run: ctx.run,
            started: ctx.started,
            store: root.as_deref(),
            tasks: &ctx.tasks,
            resumed: ctx.resumed,
        });
    }
    let mut outcome: HashMap<u32, TaskOutcome> = HashMap::new();
    for t in &ctx.tasks {
        if let Some(r) = &t.skipped {
            outcome.insert(t.id, TaskOutcome::new(TaskStatus::Skipped, Some(r.clone())));
        } else if let Some(r) = &t.failed {
            outcome.insert(t.id, TaskOutcome::new(TaskStatus::Failed, Some(r.clone())));
        } else if let Some(p) = ctx.prior.get(&t.id).filter(|p| p.status.is_final()) {
            // Finished before the resume: nothing of it runs again.
            let files = p.files.iter().map(|f| f.path.clone()).collect();
            outcome.insert(
                t.id,
                TaskOutcome {
                    status: p.status,
                    error: p.error.clone(),
                    files,
                },
            );
            for s in t.steps.iter() {
                ctx.finish(&t.step_id(&s.name));
            }
        }
    }
    let started_before = ctx.tasks.iter().filter(|t| t.runs()).any(|t| {
        ctx.prior
            .get(&t.id)
            .is_some_and(|p| p.status != TaskStatus::Pending)
    });
    // 6: no task can run: the run stops, no pre-plan script. Every task SKIPPED is STOPPED;
    // tasks whose device refused the credentials make it FAILED.
    if !ctx.tasks.iter().any(Task::runs) {
        let (status, why) = if ctx.tasks.iter().any(|t| t.failed.is_some()) {
            (RunStatus::Failed, "no task could start")
        } else {
            (RunStatus::Stopped, "every task was skipped")
        };
        return finish(&ctx, outcome, status, Some(why.into())).await;
    }
    ctx.record(vec![Record::Run {
        status: RunStatus::Running,
        error: None,
        at: now,
    }])
    .await?;
    ctx.finish("plan.validate");
    // 7: the pre-plan script (once: not again when a resumed run had started its tasks).
    if let Some(script) = ctx.plan.pre_plan.as_ref().filter(|_| !started_before) {
        let env = plan_env(&ctx, "pre_plan", None, None);
        let r = run_script(&ctx, script, env, None, None).await;
        if let Err(e) = r {
            for t in ctx.tasks.iter().filter(|t| t.runs()) {
                ctx.record(vec![Record::Task {
                    task: t.id,
                    status: TaskStatus::Cancelled,
                    error: Some("the pre-plan script failed".into()),
                    at: ctx.clock.now(),
                }])
                .await?;
                outcome.insert(
                    t.id,
                    TaskOutcome::new(
                        TaskStatus::Cancelled,
                        Some("the pre-plan script failed".into()),
                    ),
                );
            }
            // The post-plan script is the plan's `finally`: it runs after a failed pre-plan too.
            post_plan(&ctx, RunStatus::Failed, &outcome).await?;
            return finish(
                &ctx,
                outcome,
                RunStatus::Failed,
                Some(format!("pre-plan script: {e}")),
            )
            .await;
        }
    }
    ctx.finish("plan.pre_plan");
    // 8: tasks, then the post-plan script.
    let limit = gate::Gate::new(ctx.program.settings.max_parallel.max(1) as usize);
    // Tasks that need wait for nothing but the pre-plan script are ready now, all at once:
    // so the first permits go to the first of them, whichever runner is polled first.
    for t in &ctx.tasks {
        let first_preds_plan_only = t.steps.iter().filter(|s| s.after.is_empty()).all(|s| {
            ctx.graph
                .preds(&t.step_id(&s.name))
                .iter()
                .all(|p| p.starts_with("plan."))
        });
        if t.runs() && !outcome.contains_key(&t.id) && first_preds_plan_only {
            limit.ready(t.id);
        }
    }
    // Lockstep barriers finish when everything before them has.
    let mut barriers = tokio::task::JoinSet::new();
    for n in ctx.graph.dag.node_weights() {
        if let compile::NodeKind::Barrier(_) = n.kind {
            let ctx = ctx.clone();
            let id = n.id.clone();
            barriers.spawn(async move {
                ctx.wait_preds(&id).await;
                ctx.finish(&id);
            });
        }
    }
    // A lockstep run holds its devices for the whole run (its tasks wait for each other at
    // the barriers): taken in name order, before any task starts.
    let _devices = match (&ctx.device_locks, ctx.plan.stages) {
        (Some(locks), crate::check::Stages::Lockstep) => {
            locks
                .lock_all(
                    ctx.tasks
                        .iter()
                        .filter(|t| t.runs())
                        .map(|t| t.device.as_str()),
                )
                .await
        }
        _ => Vec::new(),
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..ctx.tasks.len() {
        if !ctx.tasks[i].runs() || outcome.contains_key(&ctx.tasks[i].id) {
            continue;
        }
        let ctx = ctx.clone();
        let limit = limit.clone();
        set.spawn(async move { task::run_task(ctx, i, limit).await });
    }
    let mut store_error = None;
    let mut bug = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok((id, ended))) => {
                outcome.insert(id, ended);
            }
            Ok(Err(e)) => {
                if store_error.is_none() && bug.is_none() {
                    journal_failed(&ctx);
                }
                store_error.get_or_insert(e);
            }
            // A runner that panicked: a bug, not the journal. The others stop as at an
            // interrupt; the run is recorded INTERRUPTED, for `resume`.
            Err(e) => {
                if store_error.is_none() && bug.is_none() {
                    journal_failed(&ctx);
                }
                bug.get_or_insert(format!(
                    "a task runner failed (a bug in dpplan; please report it): {e}"
                ));
            }
        }
    }
    barriers.abort_all();
    if let (Some(why), None) = (&bug, &store_error) {
        let (_, still_held) = actions::release_held(&ctx).await;
        let mut why = why.clone();
        if !still_held.is_empty() {
            why.push_str(&format!(
                "; still quiesced (or quiescing): {}",
                still_held.join(", ")
            ));
        }
        ctx.log(None, None, why.clone()).await?;
        return finish(&ctx, outcome, RunStatus::Interrupted, Some(why)).await;
    }
    if let Some(error) = store_error {
        // Nothing more can be recorded; what the run holds is released all the same.
        let (released, still_held) = actions::release_held(&ctx).await;
        return Err(EngineError::JournalFailed {
            run: ctx.run,
            error,
            released,
            still_held,
        });
    }
    sweep_temporaries(&ctx);
    if ctx.live.is_cancelled() {
        // An operator's cancel: what was left ends CANCELLED (owed unquiesces have run).
        let why = "cancelled by an operator".to_string();
        let mut records = Vec::new();
        for t in ctx.tasks.iter().filter(|t| t.runs()) {
            let entry = outcome
                .entry(t.id)
                .or_insert(TaskOutcome::new(TaskStatus::Pending, None));
            if !entry.status.is_final() {
                entry.status = TaskStatus::Cancelled;
                entry.error = Some(why.clone());
                records.push(Record::Task {
                    task: t.id,
                    status: TaskStatus::Cancelled,
                    error: Some(why.clone()),
                    at: ctx.clock.now(),
                });
            }
        }
        if !records.is_empty() {
            ctx.record(records).await?;
        }
        post_plan(&ctx, RunStatus::Cancelled, &outcome).await?;
        return finish(&ctx, outcome, RunStatus::Cancelled, Some(why)).await;
    }
    if ctx.interrupted.load(Ordering::SeqCst) || outcome.values().any(|o| !o.status.is_final()) {
        return finish(
            &ctx,
            outcome,
            RunStatus::Interrupted,
            Some(format!(
                "interrupted; `dpplan resume {}` continues it",
                ctx.run
            )),
        )
        .await;
    }
    let status = run_status(outcome.values().map(|o| o.status));
    post_plan(&ctx, status, &outcome).await?;
    finish(&ctx, outcome, status, None).await
}

/// The post-plan script, with the run's outcome in its environment, when its `when` matches
/// the outcome: `succeeded` a COMPLETED run, `failed` any other.
pub(super) async fn post_plan(
    ctx: &RunCtx,
    status: RunStatus,
    outcome: &HashMap<u32, TaskOutcome>,
) -> Result<(), EngineError> {
    let Some(script) = &ctx.plan.post_plan else {
        return Ok(());
    };
    let wanted = match script.when {
        crate::check::ScriptWhen::Always => true,
        crate::check::ScriptWhen::Succeeded => status == RunStatus::Completed,
        crate::check::ScriptWhen::Failed => status != RunStatus::Completed,
    };
    if !wanted {
        ctx.log(
            None,
            None,
            format!(
                "post_plan: not run: its `when` does not match the run's outcome ({})",
                status.as_str()
            ),
        )
        .await?;
        return Ok(());
    }
    let mut env = plan_env(ctx, "post_plan", None, None);
    env.insert("DPPLAN_STATUS".into(), status.as_str().into());
    env.insert("DPPLAN_TASKS".into(), tasks_json(ctx, outcome));
    if let Err(e) = run_script(ctx, script, env, None, None).await {
        ctx.log(None, None, format!("post-plan script failed: {e}"))
            .await?;
    }
    Ok(())
}

/// The journal failed under a task: no new step starts, and every step is marked finished
/// so that no task waits for another that will never finish (the runners end quickly).
pub(super) fn journal_failed(ctx: &RunCtx) {
    ctx.interrupted.store(true, Ordering::SeqCst);
    for n in ctx.graph.dag.node_weights() {
        ctx.finish(&n.id);
    }
}

/// Removes temporary names left in the store folders of the run's tasks (by a crash before
/// a resume, or an attempt that failed): after a run or resume, only complete files remain.
pub(super) fn sweep_temporaries(ctx: &RunCtx) {
    let Some(root) = store_root(&ctx.program) else {
        return;
    };
    let ts = output::timestamp(ctx.started);
    let mut dirs = std::collections::BTreeSet::new();
    for t in &ctx.tasks {
        match &t.target {
            compile::Target::Device => {
                if let output::Layout::SecureBackup { dir } =
                    output::Layout::secure_backup(&t.device, &ts)
                {
                    if let Some(p) = dir.parent() {
                        dirs.insert(root.join(p));
                    }
                }
            }
            other => {
                if let output::Layout::Export { dir, .. } =
                    output::Layout::export(&t.device, other.domain_label(), &ts)
                {
                    dirs.insert(root.join(dir));
                }
            }
        }
    }
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut removed = false;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if output::is_tmp_name(&name) {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                removed = true;
            }
        }
        if removed {
            let _ = output::sync_dir(&d);
        }
    }
}

/// The run's status from its tasks' (docs/cli.md, "Result pages").
pub fn run_status(tasks: impl Iterator<Item = TaskStatus>) -> RunStatus {
    let (mut bad, mut meh) = (false, false);
    for s in tasks {
        match s {
            TaskStatus::Failed | TaskStatus::RolledBack | TaskStatus::Cancelled => bad = true,
            TaskStatus::Skipped | TaskStatus::Warning => meh = true,
            TaskStatus::Pending | TaskStatus::Running => bad = true,
            TaskStatus::Succeeded => {}
        }
    }
    if bad {
        RunStatus::Failed
    } else if meh {
        RunStatus::Warning
    } else {
        RunStatus::Completed
    }
}

pub(super) fn tasks_json(ctx: &RunCtx, outcome: &HashMap<u32, TaskOutcome>) -> String {
    serde_json::to_string(&task_reports(ctx, outcome)).unwrap_or_default()
}

/// What every task of the run came to, in task order (PENDING for tasks with no outcome).
pub(super) fn task_reports(ctx: &RunCtx, outcome: &HashMap<u32, TaskOutcome>) -> Vec<TaskReport> {
    ctx.tasks
        .iter()
        .map(|t| {
            let TaskOutcome {
                status,
                error,
                files,
            } = outcome
                .get(&t.id)
                .cloned()
                .unwrap_or(TaskOutcome::new(TaskStatus::Pending, None));
            TaskReport {
                id: t.id,
                action: t.action.clone(),
                device: t.device.clone(),
                domain: t.target.domain_label().to_string(),
                status,
                error,
                files,
            }
        })
        .collect()
}

pub(super) async fn finish(
    ctx: &RunCtx,
    outcome: HashMap<u32, TaskOutcome>,
    status: RunStatus,
    error: Option<String>,
) -> Result<RunReport, EngineError> {
    let interrupted = status == RunStatus::Interrupted;
    let mut records = Vec::new();
    if interrupted {
        let left = ctx
            .tasks
            .iter()
            .filter(|t| outcome.get(&t.id).is_none_or(|o| !o.status.is_final()))
            .count();
        let held = ctx.live.quiesced();
        let quiesced = if held.is_empty() {
            "nothing left quiesced by this run".to_string()
        } else {
            format!("left quiesced (or quiescing): {}", held.join(", "))
        };
        records.push(Record::Log {
            task: None,
            step: None,
            at: ctx.clock.now(),
            message: format!(
                "interrupted: no new step started; {left} task(s) left for resume, {quiesced}"
            ),
        });
    }
    let at = ctx.clock.now();
    records.push(Record::Run {
        status,
        error: error.clone(),
        at,
    });
    let mut tasks = task_reports(ctx, &outcome);
    if interrupted {
        // Not running any more: they wait for `resume`, which continues them.
        for t in tasks.iter_mut().filter(|t| !t.status.is_final()) {
            t.status = TaskStatus::Pending;
            t.error = Some("interrupted before it finished; resume continues it".into());
        }
    }
    // The notifications of the outcome are queued in the commit of the status itself.
    let told = crate::notify::Outcome::new(
        ctx.run,
        &ctx.plan.name,
        ctx.started,
        status,
        error.clone(),
        at,
        tasks.clone(),
    );
    let queued = crate::notify::queue_for(&ctx.program, &ctx.plan.name, &told);
    records.extend(queued.log);
    ctx.journal
        .append_with_outbox(ctx.run, records, queued.entries)
        .await?;
    failpoint::hit("after-outcome");
    Ok(RunReport {
        run: ctx.run,
        status,
        error,
        tasks,
    })
}

/// The store root of the program, if it has one.
pub(crate) fn store_root(program: &Program) -> Option<PathBuf> {
    program.store.as_ref().map(|s| s.path.clone())
}
