//! The built-in actions against an appliance and the store: validate, quiesce, unquiesce,
//! secure backup, export, save config, scripts, discard.
//!
//! Idempotence on resume: quiesce and unquiesce attempted before (a retry, or a step in
//! flight at a crash) read the appliance's state before acting; a backup or export downloads again into a fresh temporary name (the half-written
//! one is removed, and so is the appliance's directory); a script runs again; discard removes
//! whatever of the task's files exist.

mod download;
mod restore;
mod step;

use super::context::{RunCtx, TaskProgress};
use super::fsinfo;
use super::hooks::{run_script, task_env};
use crate::appliance::{Appliance, QuiesceState, QuiesceTarget};
use crate::check::{Action, ActionCall};
use crate::compile::{Target, Task};
use crate::store::Record;
use chrono::{DateTime, Utc};
use download::{discard, export, secure_backup};
use std::sync::Arc;
use std::time::Duration;
use step::{appliance, duration_arg, log, poll_until, string_arg};
pub(crate) use step::{quiesce_target, script_arg, StepError};

/// Runs one action of a step.
pub(crate) async fn execute(
    ctx: &RunCtx,
    t: &Task,
    call: &ActionCall,
    step: &str,
    st: &mut TaskProgress,
    attempt: u32,
) -> Result<(), StepError> {
    match call.action {
        Action::Validate => validate(ctx, t, call, st).await,
        Action::Quiesce => quiesce(ctx, t, call, st, attempt).await,
        Action::Unquiesce => unquiesce(ctx, t, call, st, attempt).await,
        Action::SecureBackup => secure_backup(ctx, t, call, st).await,
        Action::Export => export(ctx, t, st).await,
        Action::SaveConfig => {
            let app = appliance(ctx, t)?;
            let domain = match &t.target {
                Target::Domain(d) => d.clone(),
                _ => "default".to_string(),
            };
            app.save_config(&domain).await.map_err(StepError::from)
        }
        Action::Run => {
            let Some(script) = script_arg(t, call) else {
                return Ok(());
            };
            let hook =
                if st.files.is_empty() && !st.stopped && !st.failed_any && !after_backup(t, step) {
                    "pre_task"
                } else {
                    "post_task"
                };
            let env = task_env(ctx, t, hook, attempt, st);
            run_script(ctx, &script, env, Some(t.id), Some(step))
                .await
                .map_err(StepError::permanent)
        }
        Action::Discard => discard(ctx, t, st).await,
        Action::Checkpoint => restore::checkpoint(ctx, t, st, step).await,
        Action::RollbackCheckpoint => restore::end_checkpoint(ctx, t, true).await,
        Action::RemoveCheckpoint => restore::end_checkpoint(ctx, t, false).await,
        Action::Import => restore::import(ctx, t, call, st, step).await,
        Action::Upload => restore::upload(ctx, t, st, step).await,
        Action::SecureRestore => restore::secure_restore(ctx, t, call, st, step, attempt).await,
        Action::WaitReady => restore::wait_ready(ctx, t, call, st, step, attempt).await,
        Action::RemoveUpload => restore::remove_upload(ctx, t).await,
    }
}

/// Whether step `step` of `t` comes after the task's backup or export step.
fn after_backup(t: &Task, step: &str) -> bool {
    let pos = |pred: &dyn Fn(&crate::compile::TaskStep) -> bool| t.steps.iter().position(pred);
    match (pos(&|s| s.name == step), pos(&|s| s.call.action.is_work())) {
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

async fn validate(
    ctx: &RunCtx,
    t: &Task,
    call: &ActionCall,
    st: &mut TaskProgress,
) -> Result<(), StepError> {
    if !ctx.window_open() {
        return Err(StepError::permanent("the maintenance window is closed"));
    }
    if let Some(store) = &ctx.program.store {
        fsinfo::check_space(&store.path, store.min_free).map_err(StepError::permanent)?;
    }
    let app = appliance(ctx, t)?;
    let wants_quiesce = duration_arg(t, call, "quiesce").is_some();
    let needs_domains = wants_quiesce || matches!(t.target, Target::Domain(_));
    let cert = string_arg(t, call, "cert");
    let need = ctx.program.settings.appliance_min_free;
    // The reads are independent of each other: asked together (one round trip, not up to
    // four), judged below in the order they were once asked, so the failure reported is
    // the same. The firmware is usually the probe's, kept by the client: no request.
    let (domains, free, cert_found, fw) = tokio::join!(
        async {
            if needs_domains {
                app.domains().await.map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if cert.is_some() && need > 0 {
                app.free_temporary().await.map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            match &cert {
                Some(c) => app.certificate_exists(c).await.map(Some),
                None => Ok(None),
            }
        },
        app.firmware(),
    );
    if let Some(domains) = domains? {
        if let Target::Domain(d) = &t.target {
            let Some(row) = domains.iter().find(|r| &r.name == d) else {
                return Err(StepError::permanent(format!("{}: no domain {d}", t.device)));
            };
            st.save_needed = row.save_needed;
        }
        if wants_quiesce && !domains.iter().any(|r| r.reports_quiesce) {
            // Nothing would ever show the quiesce: fail now, not after timeout + grace.
            return Err(StepError::permanent(format!(
                "{}: the appliance does not report quiesce states (its DomainStatus has no QuiesceState: firmware older than quiesce); remove `quiesce` from this activity",
                t.device
            )));
        }
        if wants_quiesce {
            let busy: Vec<&str> = domains
                .iter()
                .filter(|r| match (&t.target, &quiesce_target(t, call)) {
                    (_, QuiesceTarget::Domain(d)) => &r.name == d,
                    _ => r.name != "default",
                })
                .filter(|r| r.quiesce_state != QuiesceState::Normal)
                .map(|r| r.name.as_str())
                .collect();
            if !busy.is_empty() && !st.quiesced {
                return Err(StepError::permanent(format!(
                    "{}: already quiesced or in transition: {}",
                    t.device,
                    busy.join(", ")
                )));
            }
        }
    }
    if let Some(free) = free? {
        if free < need {
            return Err(StepError::permanent(format!(
                "{}: {} MiB free in temporary:, {} MiB required (appliance_min_free)",
                t.device,
                free >> 20,
                need >> 20
            )));
        }
    }
    if let (Some(false), Some(cert)) = (cert_found?, &cert) {
        return Err(StepError::permanent(format!(
            "{}: no crypto certificate named {cert}",
            t.device
        )));
    }
    let fw = fw?;
    if call.args.contains_key("from") {
        let chosen = restore::choose(ctx, t, call)?;
        if let Some(theirs) = restore::backup_firmware(&chosen) {
            if crate::backups::catalogue::compare_firmware(&theirs, &fw.version)
                == Some(std::cmp::Ordering::Greater)
            {
                return Err(StepError::permanent(format!(
                    "{}: the backup {} is of firmware {theirs}, newer than the device's {}",
                    t.device,
                    chosen.path.display(),
                    fw.version
                )));
            }
        }
        st.source = Some(chosen.path);
    }
    st.pending.push(Record::Facts {
        task: t.id,
        facts: crate::store::TaskFacts {
            version: fw.version.clone(),
            build: fw.build.clone(),
            machine_type: fw.machine_type.clone(),
            model: fw.model_type.clone(),
            serial: fw.serial.clone(),
            save_needed: st.save_needed,
            source: st.source.as_ref().map(|p| p.display().to_string()),
        }
        .to_pairs(),
    });
    st.firmware = Some(fw);
    Ok(())
}

/// Polls the quiesce state of `target` until `want`, at most for `limit`.
async fn wait_state(
    ctx: &RunCtx,
    app: &dyn Appliance,
    target: &QuiesceTarget,
    want: QuiesceState,
    limit: Duration,
) -> Result<bool, StepError> {
    let want = &want;
    let reached = poll_until(ctx, limit, || async move {
        Ok(match app.observed_quiesce_state(target).await? {
            Some(state) if state == *want => Some(()),
            // Nothing on the appliance shows it (a device with only `default`): no wait.
            None => Some(()),
            Some(_) => None,
        })
    })
    .await?;
    Ok(reached.is_some())
}

/// What quiesce and unquiesce both need: the appliance, the target, the step's timeout
/// (60 s when unset) and the plan's grace.
fn quiesce_setup(
    ctx: &RunCtx,
    t: &Task,
    call: &ActionCall,
) -> Result<(Arc<dyn Appliance>, QuiesceTarget, Duration, Duration), StepError> {
    Ok((
        appliance(ctx, t)?,
        quiesce_target(t, call),
        duration_arg(t, call, "timeout").unwrap_or(Duration::from_secs(60)),
        Duration::from_millis(ctx.program.settings.quiesce_grace_ms),
    ))
}

async fn quiesce(
    ctx: &RunCtx,
    t: &Task,
    call: &ActionCall,
    st: &mut TaskProgress,
    attempt: u32,
) -> Result<(), StepError> {
    let (app, target, timeout, grace) = quiesce_setup(ctx, t, call)?;
    // A step attempted before (a retry, or a redo on resume) reads the state first: a
    // quiesce that was accepted is not requested again. A first attempt follows validate,
    // which found the target not quiesced.
    let key = held(t, &target);
    let what = shown(&key);
    let asked = ctx.clock.now();
    if attempt <= 1 || app.quiesce_state(&target).await? != QuiesceState::Quiesced {
        // Held from before the request: a forced exit names it even if the answer is lost.
        ctx.live.hold(key.clone(), true);
        app.quiesce(&target, timeout.max(Duration::from_secs(60)))
            .await?;
        log(
            ctx,
            t,
            st,
            "quiesce",
            format!(
                "quiesce of {what} issued (timeout {}s)",
                timeout.max(Duration::from_secs(60)).as_secs()
            ),
        );
    }
    ctx.live.hold(key.clone(), true);
    st.quiesced = true;
    if wait_state(
        ctx,
        app.as_ref(),
        &target,
        QuiesceState::Quiesced,
        timeout + grace,
    )
    .await?
    {
        log(
            ctx,
            t,
            st,
            "quiesce",
            format!("{what} quiesced (confirmed after {})", since(ctx, asked)),
        );
        return Ok(());
    }
    // Not quiesced in time: release it now rather than leave it half-way.
    let _ = app.unquiesce(&target).await;
    log(
        ctx,
        t,
        st,
        "quiesce",
        format!("{what} not quiesced in time; unquiesce issued"),
    );
    Err(StepError::permanent(format!(
        "{}: not quiesced within {}s (timeout {}s + grace {}s); unquiesce issued",
        t.device,
        (timeout + grace).as_secs(),
        timeout.as_secs(),
        grace.as_secs()
    )))
}

async fn unquiesce(
    ctx: &RunCtx,
    t: &Task,
    call: &ActionCall,
    st: &mut TaskProgress,
    attempt: u32,
) -> Result<(), StepError> {
    let (app, target, timeout, grace) = quiesce_setup(ctx, t, call)?;
    // A first attempt releases what this task quiesced; a repeated one reads the state first.
    let key = held(t, &target);
    let what = shown(&key);
    let asked = ctx.clock.now();
    if attempt <= 1 || app.quiesce_state(&target).await? != QuiesceState::Normal {
        app.unquiesce(&target).await?;
        log(
            ctx,
            t,
            st,
            "unquiesce",
            format!("unquiesce of {what} issued"),
        );
    }
    if wait_state(
        ctx,
        app.as_ref(),
        &target,
        QuiesceState::Normal,
        timeout + grace,
    )
    .await?
    {
        st.quiesced = false;
        ctx.live.hold(key.clone(), false);
        log(
            ctx,
            t,
            st,
            "unquiesce",
            format!("{what} unquiesced (confirmed after {})", since(ctx, asked)),
        );
        return Ok(());
    }
    // The appliance's unquiesce goes on; dpplan stops waiting for it.
    Err(StepError::permanent(format!(
        "{}: still not unquiesced after {}s (timeout + grace); the appliance continues on its own",
        t.device,
        (timeout + grace).as_secs()
    )))
}

/// What a quiesce holds: the device, and the domain when it is one.
pub(crate) fn held(t: &Task, target: &QuiesceTarget) -> (String, Option<String>) {
    match target {
        QuiesceTarget::Device => (t.device.clone(), None),
        QuiesceTarget::Domain(d) => (t.device.clone(), Some(d.clone())),
    }
}

/// What a quiesce holds, as messages name it: `QA1` or `TEST8/DOMAIN1`.
fn shown(held: &(String, Option<String>)) -> String {
    match &held.1 {
        Some(d) => format!("{}/{d}", held.0),
        None => held.0.clone(),
    }
}

/// Releases what the run still holds quiesced, without the journal (which failed): issues
/// each unquiesce and waits for it as the unquiesce step would. Returns what was released
/// (confirmed back to normal) and what may still be quiesced (the request failed, or the
/// appliance did not confirm in time).
pub(crate) async fn release_held(ctx: &RunCtx) -> (Vec<String>, Vec<String>) {
    let grace = Duration::from_millis(ctx.program.settings.quiesce_grace_ms);
    let (mut released, mut still) = (Vec::new(), Vec::new());
    for key in ctx.live.held() {
        let name = shown(&key);
        let Some(app) = ctx.appliances.get(&key.0) else {
            still.push(name);
            continue;
        };
        let target = match &key.1 {
            Some(d) => QuiesceTarget::Domain(d.clone()),
            None => QuiesceTarget::Device,
        };
        let confirmed = app.unquiesce(&target).await.is_ok()
            && matches!(
                wait_state(
                    ctx,
                    app.as_ref(),
                    &target,
                    QuiesceState::Normal,
                    Duration::from_secs(60) + grace,
                )
                .await,
                Ok(true)
            );
        if confirmed {
            ctx.live.hold(key, false);
            released.push(name);
        } else {
            still.push(name);
        }
    }
    (released, still)
}

/// The time since `from`, as `1.2s`.
fn since(ctx: &RunCtx, from: DateTime<Utc>) -> String {
    let ms = (ctx.clock.now() - from).num_milliseconds().max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    }
}
