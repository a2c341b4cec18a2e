//! Faults and hostile input end in a clear error and lose nothing: names from the fleet that
//! sanitise alike, names that look like dpplan's temporary files.

use crate::engine::World;
use crate::support::Test;

const ODD_NAMES: &str = r#"
[defaults]
user = "admin"
password = "s3cret"
backup_file_size = "4KiB"
domains = ["default", "a/b", "a_b", "..", "日本", ".dpplan-tmp-x"]

[[device]]
name = "QA 1"
[[device]]
name = "QA_1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_sanitise_alike_get_their_own_files() {
    let w = World::new(ODD_NAMES).await;
    let pw = w.dir.path().join("pw").display().to_string();
    let plan = format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n  activity secure_backup {{\n    devices = \"QA*\"\n    cert = \"backup-cert\"\n  }}\n  activity export_domain {{\n    devices = \"QA 1\"\n    domains = \"*\"\n  }}\n}}\n",
        w.store().display(),
        w.inventory().replace("file(\"pw\")", &format!("file(\"{pw}\")")),
    );
    let t = Test::new()
        .file("p.dpplan", &plan)
        .args(["run", "p.dpplan", "--json", "--quiet"]);
    let ran = tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let v = ran.json();
    assert_eq!(v["status"], "COMPLETED", "{}", ran.stdout);
    let mut files: Vec<String> = Vec::new();
    for t in v["tasks"].as_array().unwrap() {
        for f in t["files"].as_array().unwrap() {
            files.push(f.as_str().unwrap().to_string());
        }
    }
    // 2 secure backups of 10 files each (9 + manifest? the listing) and 6 exports.
    let exports: Vec<&String> = files.iter().filter(|f| f.ends_with(".zip")).collect();
    assert_eq!(exports.len(), 6, "{files:#?}");
    let unique: std::collections::BTreeSet<&String> = files.iter().collect();
    assert_eq!(
        unique.len(),
        files.len(),
        "two tasks wrote one file: {files:#?}"
    );
    // Every recorded file is on disk after the run (the end-of-run sweep kept them all).
    for f in &files {
        assert!(w.store().join(f).is_file(), "{f} is gone");
    }
    assert!(
        files.iter().any(|f| f.starts_with("QA%201/"))
            && files.iter().any(|f| f.starts_with("QA_1/")),
        "{files:#?}"
    );
    w.assert_clean();
}
