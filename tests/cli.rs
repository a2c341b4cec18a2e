//! The lint commands through the binary: formats, exit codes, explain, fmt.

use crate::support::Test;

const CLEAN: &str = r#"import "std/datapower"
inventory {
  defaults { password = env("DP_PASSWORD") }
  device "QA1" { host = "qa1.example.com" }
}
plan "p" {
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
  }
}
"#;

const WARNS: &str = r#"import "std/datapower"
inventory {
  defaults { password = env("DP_PASSWORD") }
  device "QA1" { host = "qa1.example.com" }
}
plan "p" {
  activity secure_backup {
    devices = "PROD*"
    cert    = "backup-cert"
  }
}
"#;

const BROKEN: &str = r#"import "std/datapower"
settings { max_parallel = 0 }
inventory {
  defaults { password = "secret" }
  device "QA1" { host = "qa1.example.com" }
}
plan "p" {
  activity secure_backup { devices = "QA*" }
}
"#;

#[test]
fn clean_plan_exits_zero() {
    Test::new()
        .file("p.dpplan", CLEAN)
        .args(["check", "p.dpplan"])
        .run()
        .status(0)
        .stderr_has("1 file checked: no problems");
}

#[test]
fn warnings_pass_unless_denied() {
    Test::new()
        .file("p.dpplan", WARNS)
        .args(["check", "p.dpplan"])
        .run()
        .status(0)
        .stderr_has("DP0024")
        .stderr_has("0 errors, 1 warning");
    Test::new()
        .file("p.dpplan", WARNS)
        .args(["check", "--deny-warnings", "p.dpplan"])
        .run()
        .status(1);
}

#[test]
fn all_errors_in_one_pass_as_json() {
    let ran = Test::new()
        .file("p.dpplan", BROKEN)
        .args(["check", "--format", "json", "p.dpplan"])
        .run()
        .status(1);
    let v = ran.json();
    let arr = v.as_array().expect("array");
    let codes: Vec<&str> = arr.iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["DP0015", "DP0025", "DP0009"], "{v:#}");
    let d = &arr[1];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["file"], "p.dpplan");
    assert_eq!(d["line"], 4);
    assert_eq!(d["column"], 25);
    assert_eq!(d["end_line"], 4);
    assert_eq!(d["end_column"], 33);
    assert!(d["message"].as_str().unwrap().contains("password"));
    assert!(d["help"].as_str().unwrap().contains("env("));
    for key in [
        "code",
        "severity",
        "message",
        "file",
        "line",
        "column",
        "end_line",
        "end_column",
        "help",
    ] {
        assert!(d.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn sarif_names_rules_and_regions() {
    let ran = Test::new()
        .file("p.dpplan", BROKEN)
        .args(["check", "--format", "sarif", "p.dpplan"])
        .run()
        .status(1);
    let v = ran.json();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "dpplan");
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["DP0009", "DP0015", "DP0025"]);
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let region = &results[1]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], 4);
    assert_eq!(results[1]["level"], "error");
}

#[test]
fn json_reports_nothing_for_a_clean_plan() {
    let ran = Test::new()
        .file("p.dpplan", CLEAN)
        .args(["check", "--format", "json", "p.dpplan"])
        .run()
        .status(0);
    assert_eq!(ran.json(), serde_json::json!([]));
}

#[test]
fn usage_errors_exit_two() {
    Test::new().args(["check"]).run().status(2);
    Test::new()
        .args(["check", "--format", "xml", "x"])
        .run()
        .status(2);
    Test::new().args(["frobnicate"]).run().status(2);
    Test::new()
        .args(["explain", "DP9999"])
        .run()
        .status(2)
        .stderr_has("not a dpplan diagnostic code");
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    Test::new()
        .args(["check", "nope.dpplan"])
        .run()
        .status(1)
        .stderr_has("cannot read `nope.dpplan`");
}

#[test]
fn directories_are_searched_for_plans() {
    Test::new()
        .file("plans/a.dpplan", CLEAN)
        .file("plans/sub/b.dpplan", WARNS)
        .file("plans/readme.txt", "not a plan")
        .args(["check", "plans"])
        .run()
        .status(0)
        .stderr_has("2 files checked: 0 errors, 1 warning");
}

#[test]
fn explain_prints_the_page() {
    Test::new()
        .args(["explain", "dp0007"])
        .run()
        .status(0)
        .stdout_has("# DP0007: duplicate name")
        .stdout_has("## How to fix");
    let ran = Test::new().args(["explain"]).run().status(0);
    assert_eq!(ran.stdout.lines().count(), dpplan::diag::Code::ALL.len());
    assert!(ran
        .stdout
        .contains("DP0024  warning  pattern matches no inventory device"));
}

#[test]
fn fmt_rewrites_in_place_and_check_reports_a_diff() {
    let messy = "plan \"p\" {\n      on_failure=stop # why\n  stages =  lockstep\n}\n";
    let want = "plan \"p\" {\n  on_failure = stop  # why\n  stages     = lockstep\n}\n";
    let t = Test::new()
        .file("p.dpplan", messy)
        .args(["fmt", "--check", "p.dpplan"]);
    t.run()
        .status(1)
        .stdout_has("-      on_failure=stop # why")
        .stdout_has("+  on_failure = stop  # why");
    assert_eq!(
        std::fs::read_to_string(t.path().join("p.dpplan")).unwrap(),
        messy
    );
    let t = Test::new()
        .file("p.dpplan", messy)
        .args(["fmt", "p.dpplan"]);
    t.run().status(0);
    assert_eq!(
        std::fs::read_to_string(t.path().join("p.dpplan")).unwrap(),
        want
    );
    Test::new()
        .file("p.dpplan", want)
        .args(["fmt", "--check", "p.dpplan"])
        .run()
        .status(0);
}

#[test]
fn fmt_stdin_to_stdout() {
    let ran = Test::new()
        .args(["fmt", "-"])
        .stdin("settings{max_parallel=4 quiesce_grace=1m}\n")
        .run()
        .status(0);
    assert_eq!(
        ran.stdout,
        "settings { max_parallel = 4  quiesce_grace = 1m }\n"
    );
}

#[test]
fn fmt_refuses_text_that_does_not_parse() {
    let t = Test::new()
        .file("p.dpplan", "plan \"p\" {\n")
        .args(["fmt", "p.dpplan"]);
    t.run().status(1).stderr_has("DP0001");
    assert_eq!(
        std::fs::read_to_string(t.path().join("p.dpplan")).unwrap(),
        "plan \"p\" {\n"
    );
}

/// Output into a pipe whose reader has gone (`dpplan ... | head`) ends the command quietly
/// with 141, as a death by SIGPIPE would, instead of a panic message.
#[test]
fn a_closed_output_pipe_ends_quietly() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut plan = String::from("inventory {\n  defaults { password = env(\"DP_PASSWORD\") }\n");
    for i in 0..4000 {
        plan.push_str(&format!(
            "  device \"D{i:05}\" {{ host = \"d{i}.example.com\" }}\n"
        ));
    }
    plan.push_str("}\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes before dpplan writes a byte: its output (over 64 KiB) cannot fit.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(plan.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // The same through `print!` (explain): stdout is a pipe whose reader is already closed.
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(["explain", "DP0001"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
