//! From a checked plan and facts about the fleet to tasks and one DAG of steps.
//!
//! [`expand`] creates the tasks exactly as docs/architecture.md says (activity order, then
//! inventory order, then the device's domain order; SKIPPED tasks for devices that do not
//! answer and for patterns that match nothing). [`graph`] compiles them into a petgraph DAG:
//! `plan.validate -> plan.pre_plan -> task steps -> plan.post_plan`, the steps of a task in
//! order (or as `after` says), tasks on one device in creation order, and lockstep barriers.
//! Step ids are stable strings derived from names, never petgraph indices.
//!
//! This layer gathers no facts itself (the engine probes the fleet and passes them in) and
//! depends only on [`crate::check`].

mod graph;
mod task;

pub use graph::{graph, GraphData, Node, NodeKind, OwnedGraphData, PlanGraph};
pub use task::{DeviceFacts, Target, Task, TaskStep};

use crate::check::patterns;
use crate::check::{Action, DomainSel, Kind, Per, Plan, Program, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The devices expansion needs facts about, and whether their domains are needed.
pub fn devices_to_probe<'p>(program: &'p Program, plan: &Plan) -> Vec<(&'p str, bool)> {
    let index = patterns::NameIndex::new(program.devices.iter().map(|d| d.name.as_str()));
    let mut wanted: HashMap<&str, bool> = HashMap::new();
    for a in &plan.activities {
        let needs_domains = matches!(a.domains, Some(DomainSel::Patterns(_)));
        for p in &a.devices {
            for name in index.matching(p) {
                let e = wanted.entry(name).or_insert(false);
                *e |= needs_domains;
            }
        }
    }
    program
        .devices
        .iter()
        .filter_map(|d| wanted.get(d.name.as_str()).map(|n| (d.name.as_str(), *n)))
        .collect()
}

/// Creates the tasks of `plan` (docs/architecture.md).
pub fn expand(program: &Program, plan: &Plan, facts: &HashMap<String, DeviceFacts>) -> Vec<Task> {
    let mut tasks = Vec::new();
    for (ai, a) in plan.activities.iter().enumerate() {
        let activity = ai as u32 + 1;
        let Some(kind) = program.kinds.get(&a.kind) else {
            continue;
        };
        let devices: Vec<&str> = program
            .devices
            .iter()
            .map(|d| d.name.as_str())
            .filter(|n| a.devices.iter().any(|p| patterns::matches(p, n)))
            .collect();
        // Every task of the activity runs the same steps.
        let shared: Arc<[TaskStep]> = task_steps(kind, plan, a, &a.params).into();
        let mut push = |device: &str, target: Target, skipped: Option<String>| {
            let id = tasks.len() as u32 + 1;
            let failed = match facts.get(device) {
                Some(DeviceFacts::Refused(why)) if skipped.is_none() => Some(why.clone()),
                _ => None,
            };
            let steps = if skipped.is_some() || failed.is_some() {
                Arc::from([])
            } else {
                shared.clone()
            };
            tasks.push(Task {
                id,
                activity,
                kind: kind.name.clone(),
                action: kind.action.clone(),
                device: device.to_string(),
                target,
                skipped,
                failed,
                params: a.params.clone(),
                steps,
            });
        };
        if devices.is_empty() {
            let pattern = a.devices.join(", ");
            let target = match (&kind.per, &a.domains) {
                (Per::Device, _) => Target::Device,
                (Per::Domain, Some(DomainSel::All)) => Target::AllDomains,
                (Per::Domain, _) => Target::Domain(domain_pattern(a.domains.as_ref())),
            };
            push(
                &pattern,
                target,
                Some(format!("no device matches {pattern}")),
            );
            continue;
        }
        for device in devices {
            let unavailable = match facts.get(device) {
                Some(DeviceFacts::Unavailable(why)) => Some(format!("device not available: {why}")),
                None => Some("device not available: not probed".to_string()),
                Some(DeviceFacts::Available { .. } | DeviceFacts::Refused(_)) => None,
            };
            match (&kind.per, &a.domains) {
                (Per::Device, _) => push(device, Target::Device, unavailable),
                (Per::Domain, Some(DomainSel::All)) => {
                    push(device, Target::AllDomains, unavailable)
                }
                (Per::Domain, sel) => {
                    if let Some(why) = unavailable {
                        push(
                            device,
                            Target::Domain(domain_pattern(sel.as_ref())),
                            Some(why),
                        );
                        continue;
                    }
                    if let Some(DeviceFacts::Refused(_)) = facts.get(device) {
                        // Its domains are unknown: one FAILED task for the pattern.
                        push(device, Target::Domain(domain_pattern(sel.as_ref())), None);
                        continue;
                    }
                    let pats = match sel {
                        Some(DomainSel::Patterns(p)) => p.as_slice(),
                        _ => &[],
                    };
                    let domains: Vec<&String> = match facts.get(device) {
                        Some(DeviceFacts::Available { domains }) => domains
                            .iter()
                            .filter(|d| pats.iter().any(|p| patterns::matches(p, d)))
                            .collect(),
                        _ => Vec::new(),
                    };
                    if domains.is_empty() {
                        let pattern = pats.join(", ");
                        push(
                            device,
                            Target::Domain(pattern.clone()),
                            Some(format!("no domain of {device} matches {pattern}")),
                        );
                    }
                    for d in domains {
                        push(device, Target::Domain(d.clone()), None);
                    }
                }
            }
        }
    }
    tasks
}

fn domain_pattern(sel: Option<&DomainSel>) -> String {
    match sel {
        Some(DomainSel::Patterns(p)) => p.join(", "),
        Some(DomainSel::All) => "all".to_string(),
        None => String::new(),
    }
}

/// The steps of one task: `when` resolved, `after` mapped to indices, policies decided.
fn task_steps(
    kind: &Kind,
    plan: &Plan,
    activity: &crate::check::Activity,
    params: &BTreeMap<String, Value>,
) -> Vec<TaskStep> {
    let included: Vec<&crate::check::StepDef> = kind
        .steps
        .iter()
        .filter(|s| match &s.when {
            Some(p) => params.get(p).is_some_and(Value::is_on),
            None => true,
        })
        .filter(|s| match &s.unless {
            Some(p) => !params.get(p).is_some_and(Value::is_on),
            None => true,
        })
        .collect();
    let seen_backup = |i: usize| included[..i].iter().any(|s| s.call.action.is_work());
    included
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let after = if s.after.is_empty() {
                if i == 0 {
                    Vec::new()
                } else {
                    vec![i - 1]
                }
            } else {
                s.after
                    .iter()
                    .filter_map(|n| included.iter().position(|t| &t.name == n))
                    .collect()
            };
            // Precedence: the activity's block for this step, the activity's own policy,
            // the kind's modifier on the step, the plan's default.
            let policy = activity
                .step_policies
                .get(&s.name)
                .or(activity.on_failure.as_ref())
                .or(s.on_failure.as_ref())
                .unwrap_or(&plan.on_failure)
                .clone();
            let phase = match s.call.action {
                Action::Validate => 0,
                Action::Run if !seen_backup(i) => 0,
                Action::Quiesce => 1,
                Action::SecureBackup
                | Action::Export
                | Action::SaveConfig
                | Action::Discard
                | Action::Checkpoint
                | Action::RollbackCheckpoint
                | Action::RemoveCheckpoint
                | Action::Import
                | Action::Upload
                | Action::SecureRestore
                | Action::WaitReady
                | Action::RemoveUpload => 2,
                Action::Unquiesce => 3,
                Action::Run => 4,
            };
            TaskStep {
                name: s.name.clone(),
                call: s.call.clone(),
                always: s.always,
                undo: s.undo.clone(),
                policy,
                timeout_ms: s.timeout_ms,
                after,
                phase,
            }
        })
        .collect()
}
