//! `dpplan demo`: the nightly example against the embedded simulated fleet, through the
//! binary, with no setup.

use crate::support::Test;

#[test]
fn demo_runs_dpods_example_and_shows_its_pages() {
    let started = std::time::Instant::now();
    let ran = Test::new().args(["demo"]).run().status(0);
    let out = &ran.stdout;
    // The outcome table (stderr): DPOD's example's six tasks.
    let table: Vec<&str> = ran
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("ID  ACTION"))
        .collect();
    let rows = [
        ("1", "SECURE_BACKUP", "QA1", "all-domains", "SUCCEEDED"),
        ("2", "SECURE_BACKUP", "QA2", "all-domains", "SUCCEEDED"),
        ("3", "SECURE_BACKUP", "QA3", "all-domains", "SUCCEEDED"),
        ("4", "EXPORT_DOMAIN", "TEST8", "DOMAIN1", "SUCCEEDED"),
        ("5", "EXPORT_DOMAIN", "TEST8", "DOMAIN2", "SUCCEEDED"),
        ("6", "EXPORT_DOMAIN", "TEST9", "", "SKIPPED"),
    ];
    for (i, (id, action, device, domain, status)) in rows.iter().enumerate() {
        let cells: Vec<&str> = table[i + 1].split_whitespace().collect();
        assert_eq!(&cells[..3], &[*id, *action, *device], "{}", ran.stderr);
        assert!(cells.contains(status), "{}", ran.stderr);
        if !domain.is_empty() {
            assert_eq!(cells[3], *domain, "{}", ran.stderr);
        }
    }
    assert!(ran.stderr.contains("run 1: WARNING"), "{}", ran.stderr);
    // The pages, each after the command that prints it.
    for cmd in [
        "$ dpplan runs --state",
        "$ dpplan show 1 --state",
        "$ dpplan show 1 --activity 1 --state",
        "$ dpplan show 1 --activity 2 --state",
        "$ dpplan show 1 --task 1 --state",
    ] {
        assert!(out.contains(cmd), "no {cmd:?}:\n{out}");
    }
    let activity2 = &out[out.find("--activity 2").unwrap()..out.find("--task 1").unwrap()];
    for needle in ["TEST8", "DOMAIN1", "DOMAIN2", "TEST9", "SKIPPED"] {
        assert!(activity2.contains(needle), "{needle}:\n{activity2}");
    }
    assert!(out.contains("QA1/secure-backup/"), "{out}");
    assert!(
        out.contains("TEST8/domain/DOMAIN2/DOMAIN2-export-"),
        "{out}"
    );
    assert!(out.contains("-nonpersisted.zip"), "{out}");
    // The directory it names is kept, with a plan that checks clean and is canonical.
    let dir = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("directory"))
        .unwrap()
        .trim();
    assert!(out.contains(&format!("files stay in {dir}")), "{out}");
    let plan = std::path::Path::new(dir).join("demo.dpplan");
    let plan = plan.to_str().unwrap();
    Test::new()
        .args(["check", "--deny-warnings", plan])
        .run()
        .status(0);
    Test::new().args(["fmt", "--check", plan]).run().status(0);
    std::fs::remove_dir_all(dir).unwrap();
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
}

#[test]
fn demo_clean_removes_its_directory() {
    let ran = Test::new()
        .args(["demo", "--clean", "--quiet"])
        .run()
        .status(0);
    let dir = ran
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("directory"))
        .unwrap()
        .trim();
    assert!(!std::path::Path::new(dir).exists(), "{dir} is still there");
    assert!(!ran.stdout.contains("files stay in"), "{}", ran.stdout);
}
