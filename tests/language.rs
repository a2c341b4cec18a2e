//! DESIGN.md section 2's example plan (plans/nightly.dpplan, copied verbatim and formatted)
//! checks clean and means what the design says it means.

use crate::support::root;
use dpplan::check::{
    self, DomainSel, OnWindowClose, Per, Policy, ScriptWhen, Space, Stages, Value,
};

#[test]
fn the_design_example_means_what_it_says() {
    let checked = check::check_file(&root().join("plans/nightly.dpplan"));
    let diagnostics = crate::support::without_missing_secrets(checked.diagnostics.clone());
    assert!(diagnostics.is_empty(), "diagnostics: {diagnostics:#?}");
    let p = &checked.program;

    // settings and store
    assert!(p.settings.backups_enabled);
    assert_eq!(p.settings.max_parallel, 8);
    assert_eq!(p.settings.appliance_min_free, 512 * 1024 * 1024);
    assert_eq!(p.settings.quiesce_grace_ms, 3 * 60_000);
    let store = p.store.as_ref().expect("store");
    assert!(store.path.ends_with("data/backup/store"));
    assert!(store.require_remote);
    assert_eq!(store.min_free, Some(Space::Bytes(20 * 1024 * 1024 * 1024)));

    // inventory, defaults applied, device order kept
    let names: Vec<&str> = p.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["QA1", "QA2", "QA3", "TEST8", "TEST9"]);
    let test9 = p.device("TEST9").expect("TEST9");
    assert_eq!(test9.host, "test9.example.com");
    assert_eq!(test9.port, 5551);
    assert_eq!(p.device("QA1").unwrap().port, 5550);
    assert_eq!(test9.user.as_deref(), Some("backup"));
    assert_eq!(
        test9.password,
        Some(check::Secret::Env("DP_PASSWORD".to_string()))
    );
    assert!(test9.tls && !test9.insecure);
    assert!(test9.tls_ca.as_ref().unwrap().ends_with("certs/dp-ca.pem"));

    // the stdlib kinds, with the contract's step names and order
    let sb = &p.kinds["secure_backup"];
    assert_eq!(sb.per, Per::Device);
    assert_eq!(sb.action, "SECURE_BACKUP");
    let steps: Vec<&str> = sb.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        steps,
        [
            "validate",
            "pre_script",
            "quiesce",
            "backup",
            "unquiesce",
            "post_script"
        ]
    );
    let ex = &p.kinds["export_domain"];
    assert_eq!(ex.per, Per::Domain);
    let steps: Vec<&str> = ex.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        steps,
        [
            "validate",
            "pre_script",
            "quiesce",
            "export",
            "unquiesce",
            "post_script"
        ]
    );
    assert!(sb.steps[4].always && sb.steps[5].always && !sb.steps[3].always);
    assert_eq!(sb.steps[2].when.as_deref(), Some("quiesce"));
    assert!(sb.steps[3].undo.is_some());

    // the plan
    let plan = p.plan("nightly").expect("plan nightly");
    let w = plan.window.as_ref().expect("window");
    assert_eq!(w.days, [0, 1, 2, 3, 4]);
    assert_eq!(w.from_min, Some(22 * 60));
    assert_eq!(w.to_min, Some(4 * 60));
    assert_eq!(w.tz.as_deref(), Some("Europe/Berlin"));
    assert_eq!(plan.on_failure, Policy::Stop);
    assert_eq!(plan.stages, Stages::Pipelined);
    assert_eq!(plan.on_window_close, OnWindowClose::Cancel);
    assert!(plan
        .pre_plan
        .as_ref()
        .unwrap()
        .path
        .ends_with("scripts/pre-plan.sh"));
    assert_eq!(plan.pre_plan.as_ref().unwrap().timeout_ms, Some(5 * 60_000));
    assert!(plan
        .post_plan
        .as_ref()
        .unwrap()
        .path
        .ends_with("scripts/post-plan.sh"));

    assert_eq!(plan.activities.len(), 2);
    let a = &plan.activities[0];
    assert_eq!(a.kind, "secure_backup");
    assert_eq!(a.label, None);
    assert_eq!(a.devices, ["QA*"]);
    assert_eq!(a.domains, None);
    assert_eq!(a.params["cert"], Value::Str("backup-cert".into()));
    assert_eq!(a.params["quiesce"], Value::Duration(120_000));
    assert!(
        matches!(&a.params["pre"], Value::Script(s) if s.path.ends_with("scripts/pre-task.sh"))
    );
    assert_eq!(a.params["post"], Value::None);
    assert_eq!(a.on_failure, None);
    assert_eq!(
        a.step_policies["backup"],
        Policy::Retry {
            times: 2,
            backoff_ms: 30_000,
            max_backoff_ms: None,
            then: Box::new(Policy::Rollback),
        }
    );

    let b = &plan.activities[1];
    assert_eq!(b.kind, "export_domain");
    assert_eq!(b.label.as_deref(), Some("test-domains"));
    assert_eq!(b.devices, ["TEST8", "TEST9"]);
    assert_eq!(b.domains, Some(DomainSel::Patterns(vec!["DOMAIN*".into()])));
    assert_eq!(b.params["quiesce"], Value::Duration(60_000));
    match &b.params["post"] {
        Value::Script(s) => {
            assert!(s.path.ends_with("scripts/post-task.sh"));
            assert_eq!(s.when, ScriptWhen::Failed);
        }
        other => panic!("post is {other:?}"),
    }
    assert_eq!(b.on_failure, Some(Policy::Continue));
    assert!(b.step_policies.is_empty());
}

#[test]
fn the_design_text_itself_checks_clean() {
    // The example as it stands in DESIGN.md (not reformatted) parses and checks clean, with
    // the scripts it names resolved next to it.
    // shared/ sits beside the checkout, in CI and on developer machines.
    let design = std::fs::read_to_string(root().join("../shared/DESIGN.md"))
        .expect("../shared/DESIGN.md beside the checkout");
    let start = design
        .find("# plans/nightly.dpplan")
        .expect("example in DESIGN.md");
    let end = start + design[start..].find("```").expect("end of example");
    let text = &design[start..end];
    let checked = check::check(&check::Root::Text {
        name: "nightly.dpplan".into(),
        text: text.to_string(),
        base: root().join("plans"),
    });
    let diagnostics = crate::support::without_missing_secrets(checked.diagnostics);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    // Users have docs/, not DESIGN.md: comments citing its sections cite the docs instead.
    let formatted = dpplan::syntax::format(text)
        .expect("formats")
        .replace("(see 2.3)", "(see docs/language.md, Recovery policies)")
        .replace("(see 4.4)", "(see docs/language.md, Plans)");
    let committed = std::fs::read_to_string(root().join("plans/nightly.dpplan")).unwrap();
    assert_eq!(
        formatted, committed,
        "plans/nightly.dpplan is DESIGN.md's example, formatted, citing the docs"
    );
}

#[test]
fn values_parse_to_their_units() {
    use dpplan::syntax::{parse_duration_ms, parse_size};
    assert_eq!(parse_duration_ms("500ms"), Some(500));
    assert_eq!(parse_duration_ms("1h30m"), Some(90 * 60_000));
    assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
    assert_eq!(parse_duration_ms("2m5s"), Some(125_000));
    assert_eq!(parse_size("512MiB"), Some(512 << 20));
    assert_eq!(parse_size("1TB"), Some(1_000_000_000_000));
    assert_eq!(parse_size("99999999999TiB"), None);
}
