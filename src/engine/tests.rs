//! Unit tests of the engine core.

use super::*;
use crate::check::{Action, ActionCall, Policy};
use crate::compile::Target;

fn task(id: u32, steps: &Arc<[TaskStep]>) -> Task {
    Task {
        id,
        activity: 1,
        kind: "k".into(),
        action: "SECURE_BACKUP".into(),
        device: format!("D{id}"),
        target: Target::Device,
        skipped: None,
        failed: None,
        params: BTreeMap::new(),
        steps: steps.clone(),
    }
}

fn steps() -> Arc<[TaskStep]> {
    let step = |name: &str, action: Action, after: Vec<usize>| TaskStep {
        name: name.into(),
        call: ActionCall {
            action,
            args: BTreeMap::new(),
        },
        always: false,
        undo: None,
        policy: Policy::Stop,
        timeout_ms: None,
        after,
        phase: 0,
    };
    vec![
        step("validate", Action::Validate, vec![]),
        step("save", Action::SaveConfig, vec![0]),
    ]
    .into()
}

/// Version 2: step lists stored once, edges by index; read back whole.
#[test]
fn a_stored_run_reads_back() {
    let shared = steps();
    let other: Arc<[TaskStep]> = shared[..1].to_vec().into();
    let tasks = vec![task(1, &shared), task(2, &shared), task(3, &other)];
    let plan = Plan {
        name: "p".into(),
        window: None,
        on_failure: Policy::Stop,
        stages: crate::check::Stages::Pipelined,
        on_window_close: crate::check::OnWindowClose::Cancel,
        pre_plan: None,
        post_plan: None,
        activities: Vec::new(),
        schedule: None,
        notify: Vec::new(),
    };
    let graph = compile::graph(&plan, &tasks);
    let program = Program::default();
    let out = StoredRunOut::new(&program, "p", &tasks, &graph, StoredOptions::default());
    assert_eq!(out.step_sets.len(), 2);
    assert_eq!(out.task_steps, [0, 0, 1]);
    let text = serde_json::to_string(&out).unwrap();
    let (back, g) = read_stored_run(&text).unwrap();
    assert_eq!(back.tasks, tasks);
    assert_eq!(back.plan, "p");
    assert_eq!(g.dag.node_count(), graph.dag.node_count());
    assert_eq!(g.dag.edge_count(), graph.dag.edge_count());
    for id in ["a1/D1:save", "a1/D3:validate"] {
        assert_eq!(g.preds(id), graph.preds(id), "{id}");
    }
    // A damaged index is an error, not a panic.
    let bad = text.replace("\"task_steps\":[0,0,1]", "\"task_steps\":[0,0,7]");
    assert!(read_stored_run(&bad).unwrap_err().contains("step list 7"));
}

/// Version 1 (the first release) kept the graph as a JSON string, edges by node id.
#[test]
fn a_version_1_stored_run_reads_back() {
    let tasks = vec![task(1, &steps())];
    let graph_v1 = r#"{"nodes":[{"id":"a1/D1:validate","kind":{"Step":[1,0]}},{"id":"a1/D1:save","kind":{"Step":[1,1]}}],"edges":[["a1/D1:validate","a1/D1:save"]]}"#;
    let text = serde_json::json!({
        "version": 1,
        "program": Program::default(),
        "plan": "p",
        "tasks": tasks,
        "graph": graph_v1,
    })
    .to_string();
    let (back, g) = read_stored_run(&text).unwrap();
    assert_eq!(back.tasks, tasks);
    assert_eq!(g.preds("a1/D1:save"), ["a1/D1:validate"]);
    let newer = text.replace("\"version\":1", "\"version\":9");
    let e = read_stored_run(&newer).unwrap_err();
    assert!(e.contains("newer"), "{e}");
}

/// COMPLETED when every task succeeded, WARNING when nothing failed but
/// some were skipped or warned, FAILED otherwise (an unfinished task counts as failed).
#[test]
fn a_runs_status_follows_its_tasks() {
    use TaskStatus::*;
    let of = |s: &[TaskStatus]| run_status(s.iter().copied());
    assert_eq!(of(&[Succeeded, Succeeded]), RunStatus::Completed);
    assert_eq!(of(&[Succeeded, Skipped]), RunStatus::Warning);
    assert_eq!(of(&[Warning]), RunStatus::Warning);
    for bad in [Failed, RolledBack, Cancelled, Pending, Running] {
        assert_eq!(of(&[Succeeded, Skipped, bad]), RunStatus::Failed, "{bad:?}");
    }
    assert_eq!(of(&[]), RunStatus::Completed);
}

/// A retry takes a chosen task by activity, device and target; a skipped one (no target)
/// by activity and device, whatever its device's domains are now.
#[test]
fn a_retry_takes_the_chosen_tasks() {
    let steps = steps();
    let mut t = task(1, &steps);
    t.device = "QA1".into();
    let r = Retry {
        of: 1,
        tasks: vec![
            (1, "QA1".into(), Some(Target::Device)),
            (2, "TEST9".into(), None),
        ],
    };
    assert!(r.wants(&t));
    t.activity = 2;
    assert!(!r.wants(&t));
    t.device = "TEST9".into();
    t.target = Target::Domain("DOMAIN1".into());
    assert!(r.wants(&t));
    let options = RunOptions {
        devices: vec!["QA*".into()],
        retry: Some(r),
        ..RunOptions::default()
    };
    // In scope: matching a --devices pattern and chosen by the retry.
    assert!(options.includes("QA1"));
    assert!(!options.includes("TEST9"), "not matched by --devices");
    assert!(!options.includes("QA2"), "not chosen by the retry");
}

/// Everything a run needs that is missing, each named with where it is used; devices out
/// of the run's scope are not looked at.
#[test]
fn missing_secrets_and_files_are_named() {
    let dir = std::env::temp_dir();
    let text = r#"import "std/datapower"
inventory {
  device "QA1" { host = "qa1" password = env("DPPLAN_UNIT_TEST_UNSET") }
  device "QA2" { host = "qa2" password = file("no-such-secret-file") tls_ca = "no-such-ca.pem" }
}
plan "p" {
  activity secure_backup {
devices = "QA*"
cert = "c"
  }
}
"#;
    let checked = crate::check::check(&crate::check::Root::Text {
        name: "unit.dpplan".into(),
        text: text.into(),
        base: dir,
    });
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    let program = checked.program;
    let plan = program.plan("p").unwrap().clone();
    let all = unresolved_config(&program, &plan, |_| true);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all[0].contains("DPPLAN_UNIT_TEST_UNSET") && all[0].contains("device QA1"));
    assert!(all[0].contains("unit.dpplan:3:"), "{}", all[0]);
    assert!(all[1].contains("no-such-secret-file") && all[1].contains("device QA2"));
    assert!(all[2].contains("no-such-ca.pem"));
    let qa2 = unresolved_config(&program, &plan, |d| d == "QA2");
    assert_eq!(qa2.len(), 2);
    assert!(unresolved_config(&program, &plan, |_| false).is_empty());
}
