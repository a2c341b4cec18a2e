//! The task's and the plan's scripts: their environment and how a run reads their end.

#[allow(unused_imports)]
use super::context::*;
use crate::check::Script;

/// Runs a plan or task script; `Err` says why it failed. Its output goes to the activity log.
pub(crate) async fn run_script(
    ctx: &RunCtx,
    script: &Script,
    env: BTreeMap<String, String>,
    task: Option<u32>,
    step: Option<&str>,
) -> Result<(), String> {
    let hook = env.get("DPPLAN_HOOK").cloned().unwrap_or_default();
    let r = crate::engine::scripts::run(
        script,
        &env,
        &ctx.secret_vars,
        ctx.options.script_timeout,
        &ctx.live.scripts,
    )
    .await;
    let run = match r {
        Ok(run) => run,
        Err(e) => {
            let msg = format!("cannot start {}: {e}", script.path.display());
            let _ = ctx.log(task, step, format!("{hook}: {msg}")).await;
            return Err(msg);
        }
    };
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        if !text.trim().is_empty() {
            let _ = ctx
                .log(task, step, format!("{hook} {name}:\n{}", text.trim_end()))
                .await;
        }
    }
    if run.ok() {
        let _ = ctx
            .log(
                task,
                step,
                format!("{hook}: {} exited 0", script.path.display()),
            )
            .await;
        return Ok(());
    }
    let msg = if run.timed_out {
        format!("{} killed at its timeout", script.path.display())
    } else {
        match run.code {
            Some(c) => format!("{} exited {c}", script.path.display()),
            None => format!("{} was killed by a signal", script.path.display()),
        }
    };
    let _ = ctx.log(task, step, format!("{hook}: {msg}")).await;
    Err(msg)
}

/// The environment of a task script.
pub(crate) fn task_env(
    ctx: &RunCtx,
    t: &Task,
    hook: &str,
    attempt: u32,
    st: &TaskProgress,
) -> BTreeMap<String, String> {
    let mut env = plan_env(ctx, hook, Some(t), Some(attempt));
    if hook == "post_task" {
        let status = if st.rolled_back {
            "ROLLED_BACK"
        } else if st.stopped {
            "FAILED"
        } else if st.warned {
            "WARNING"
        } else {
            "SUCCEEDED"
        };
        env.insert("DPPLAN_STATUS".into(), status.into());
        let out: Vec<String> = st
            .files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        env.insert("DPPLAN_OUTPUT".into(), out.join("\n"));
    }
    env
}

/// The environment every script of the run gets.
pub(crate) fn plan_env(
    ctx: &RunCtx,
    hook: &str,
    task: Option<&Task>,
    attempt: Option<u32>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("DPPLAN_RUN_ID".into(), ctx.run.to_string());
    env.insert("DPPLAN_PLAN".into(), ctx.plan.name.clone());
    env.insert("DPPLAN_HOOK".into(), hook.into());
    if let Some(t) = task {
        env.insert("DPPLAN_TASK_ID".into(), t.id.to_string());
        env.insert("DPPLAN_ACTION".into(), t.action.clone());
        env.insert("DPPLAN_DEVICE".into(), t.device.clone());
        if let Some(d) = ctx.program.device(&t.device) {
            env.insert("DPPLAN_DEVICE_HOST".into(), d.host.clone());
        }
        env.insert("DPPLAN_DOMAIN".into(), t.target.domain_label().to_string());
    }
    if let Some(a) = attempt {
        env.insert("DPPLAN_ATTEMPT".into(), a.to_string());
    }
    if ctx.resumed {
        env.insert("DPPLAN_RESUMED".into(), "1".into());
    }
    env
}
