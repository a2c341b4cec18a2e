//! A resumed task's state read back from the journal: which steps are done, how many
//! attempts each had, what must run again, and what is owed (an unquiesce).

#[allow(unused_imports)]
use crate::check::{Action, Policy};
use crate::engine::actions;
use crate::engine::context::*;
use crate::store::StepOutcome;
use std::collections::HashSet;

/// Rebuilds a resumed task's state from its journal: which steps are done, how many attempts
/// each had (and retries used, for a step that died waiting for its retry: it runs again),
/// its files and facts, whether it owes an unquiesce, what failed. An `always` step
/// after a step that must run again runs again too (so is a quiesce it released), so the
/// appliance is released after the work, not before.
pub(super) fn restore(
    ctx: &RunCtx,
    t: &Task,
    order: &[usize],
    p: &crate::store::TaskState,
    st: &mut TaskProgress,
    completed: &mut Vec<usize>,
) -> (HashSet<usize>, HashMap<usize, u32>, HashMap<usize, u32>) {
    let by_name = |name: &str| p.steps.iter().find(|s| s.name == name);
    let mut done = HashSet::new();
    let mut attempts = HashMap::new();
    let mut retried = HashMap::new();
    for &i in order {
        let s = &t.steps[i];
        let Some(j) = by_name(&s.name) else { continue };
        attempts.insert(i, j.attempts);
        if j.in_flight {
            continue;
        }
        match j.outcome {
            Some(StepOutcome::Succeeded) => {
                done.insert(i);
                completed.push(i);
            }
            Some(StepOutcome::Skipped) | Some(StepOutcome::Undone) => {
                done.insert(i);
            }
            // It was waiting for its retry: it runs again, with the retries it has left.
            Some(StepOutcome::Failed) if j.retry_pending => {
                retried.insert(i, j.retried);
            }
            Some(StepOutcome::Failed) => {
                // Its policy was applied before the crash; apply it to the state again.
                done.insert(i);
                st.failed_any = true;
                if st.error.is_none() {
                    st.error = Some(format!(
                        "{}: {}",
                        s.name,
                        j.error.clone().unwrap_or_default()
                    ));
                }
                match super::retries::Retries::new(&s.policy, 0).last() {
                    Policy::Continue => st.warned = true,
                    Policy::Rollback => {
                        st.stopped = true;
                        st.rolled_back = true;
                    }
                    _ => st.stopped = true,
                }
            }
            None => {}
        }
    }
    // Always steps after a step that runs again, and the quiesce an always step released.
    if !st.stopped {
        if let Some(first) = order
            .iter()
            .position(|i| !done.contains(i) && !t.steps[*i].always)
        {
            for &i in &order[first..] {
                if t.steps[i].always && done.remove(&i) {
                    completed.retain(|c| *c != i);
                }
            }
            for &i in &order[..first] {
                let q = &t.steps[i];
                if q.call.action == Action::Quiesce
                    && order[first..]
                        .iter()
                        .any(|u| t.steps[*u].call.action == Action::Unquiesce && !done.contains(u))
                {
                    done.remove(&i);
                    completed.retain(|c| *c != i);
                }
            }
        }
    }
    // An unquiesce is owed when a quiesce may have been issued and no unquiesce finished.
    let quiesce_tried = order.iter().any(|i| {
        t.steps[*i].call.action == Action::Quiesce && attempts.get(i).copied().unwrap_or(0) > 0
    });
    let released = order.iter().any(|i| {
        t.steps[*i].call.action == Action::Unquiesce && done.contains(i) && completed.contains(i)
    });
    st.quiesced = quiesce_tried && !released;
    if st.quiesced {
        if let Some(q) = t.steps.iter().find(|s| s.call.action == Action::Quiesce) {
            let target = actions::quiesce_target(t, &q.call);
            ctx.live.hold(actions::held(t, &target), true);
        }
    }
    // Files and facts recorded before.
    if let Some(root) = crate::engine::store_root(&ctx.program) {
        for f in &p.files {
            st.files.push((root.join(&f.path), f.clone()));
        }
        let ts = crate::backups::timestamp(ctx.started);
        let layout = match &t.target {
            crate::compile::Target::Device => crate::backups::Layout::secure_backup(&t.device, &ts),
            other => crate::backups::Layout::export(&t.device, other.domain_label(), &ts),
        };
        let m = root.join(layout.manifest());
        if m.exists() {
            st.manifests.push(m);
        }
    }
    if let Some(f) = crate::store::TaskFacts::from_pairs(&p.facts) {
        st.firmware = Some(crate::appliance::Firmware {
            version: f.version,
            build: f.build,
            machine_type: f.machine_type,
            model_type: f.model,
            serial: f.serial,
            ..Default::default()
        });
        st.save_needed = f.save_needed;
        st.source = f.source.map(std::path::PathBuf::from);
    }
    (done, attempts, retried)
}
