//! The engine against the simulator over real sockets: DESIGN.md section 3's DPOD example,
//! recovery policies driven by injected faults, quiesce timeouts, windows, scripts, stages,
//! and names that try to leave the store.

use crate::support::fleet::dpod;
use dpplan::check::{self, Root};
use dpplan::engine::clock::{Clock, SystemClock};
use dpplan::engine::{Engine, Observer, RunOptions, RunReport};
use dpplan::sim::{self, Fleet, RunningFleet, SimState};
use dpplan::soma::SomaConnector;
use dpplan::store::memory::MemoryJournal;
use dpplan::store::{Record, RunStatus, TaskStatus};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A simulated fleet and a directory with a plan that reaches it.
pub struct World {
    pub fleet: RunningFleet,
    pub dir: tempfile::TempDir,
}

impl World {
    /// Serves `fleet` (a fleet file: a `&str`, or a [`crate::support::fleet::FleetFile`]).
    pub async fn new(fleet: impl std::fmt::Display) -> World {
        let fleet = sim::serve(&Fleet::parse(&fleet.to_string()).unwrap(), LOCAL, false)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        World { fleet, dir }
    }

    /// An inventory block for the fleet (plain HTTP, password from the file `pw`).
    pub fn inventory(&self) -> String {
        let mut s = String::from(
            "inventory {\n  defaults {\n    user     = \"admin\"\n    password = file(\"pw\")\n    tls      = false\n  }\n",
        );
        for d in &self.fleet.devices {
            s.push_str(&format!(
                "  device \"{}\" {{ host = \"127.0.0.1\"  port = {} }}\n",
                d.name,
                d.addr.port()
            ));
        }
        s.push_str("}\n");
        s
    }

    /// A plan file for the fleet: the standard library, `settings` (may be empty), the store,
    /// the inventory with the password file's absolute path (so it runs from anywhere), then
    /// `rest` (the plans).
    pub fn plan_file(&self, settings: &str, rest: &str) -> String {
        let pw = self.dir.path().join("pw").display().to_string();
        format!(
            "import \"std/datapower\"\n{settings}store \"{}\" {{}}\n{}\n{rest}",
            self.store().display(),
            self.inventory()
                .replace("file(\"pw\")", &format!("file(\"{pw}\")")),
        )
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn state(&self, device: &str) -> SimState {
        self.fleet.device(device).unwrap().state().unwrap()
    }

    /// Checks `plan` (which must be clean but for warnings) and runs plan `name` of it.
    pub async fn run(&self, plan: &str, name: &str) -> (RunReport, Arc<MemoryJournal>) {
        self.run_with(plan, name, RunOptions::default()).await
    }

    pub async fn run_with(
        &self,
        plan: &str,
        name: &str,
        options: RunOptions,
    ) -> (RunReport, Arc<MemoryJournal>) {
        let mut options = options;
        // Real time: poll often, so tests are quick.
        options.poll_interval = Duration::from_millis(20);
        self.run_full(plan, name, options, Arc::new(SystemClock), None)
            .await
    }

    /// Runs with a chosen clock and observer (and the poll interval of `options`).
    pub async fn run_full(
        &self,
        plan: &str,
        name: &str,
        mut options: RunOptions,
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn Observer>>,
    ) -> (RunReport, Arc<MemoryJournal>) {
        // A plan that declares its own store replaces the default one.
        let store = if plan.contains("store \"") {
            ""
        } else {
            "store \"store\" {}\n"
        };
        let text = format!(
            "import \"std/datapower\"\n{store}{}\n{plan}",
            self.inventory()
        );
        let path = self.dir.path().join("plan.dpplan");
        std::fs::write(&path, &text).unwrap();
        let checked = check::check(&Root::Path(path));
        assert!(!checked.has_errors(), "{:#?}", checked.diagnostics);
        options.probe_timeout = Duration::from_secs(5);
        let journal = Arc::new(MemoryJournal::new());
        let mut engine = Engine::new(
            Arc::new(checked.program),
            name,
            journal.clone(),
            Arc::new(SomaConnector),
            clock,
            options,
        );
        if let Some(o) = observer {
            engine = engine.observe(o);
        }
        // A hang is a failure, not a CI timeout.
        let report = tokio::time::timeout(Duration::from_secs(120), engine.run(&text))
            .await
            .expect("the run finished within 120 s")
            .unwrap();
        (report, journal)
    }

    /// Nothing quiesced and nothing left in temporary: on any device that answers.
    pub fn assert_clean(&self) {
        for d in &self.fleet.devices {
            if d.down {
                continue;
            }
            let s = self.state(&d.name);
            assert_eq!(s.device_quiesce_state, "", "{} quiesced", d.name);
            for dom in &s.domains {
                assert_eq!(dom.quiesce_state, "", "{}/{} quiesced", d.name, dom.name);
            }
            assert!(
                s.temporary_files.is_empty(),
                "{}: {:?}",
                d.name,
                s.temporary_files
            );
        }
    }
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

const NIGHTLY: &str = r#"
settings {
  max_parallel  = 4
  quiesce_grace = 2s
}

plan "nightly" {
  on_failure = stop

  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
    quiesce = 60s
  }

  activity export_domain "test-domains" {
    devices    = ["TEST8", "TEST9"]
    domains    = "DOMAIN*"
    quiesce    = 60s
    on_failure = continue
  }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dpod_example_gives_its_six_tasks() {
    let w = World::new(dpod()).await;
    let (report, journal) = w.run(NIGHTLY, "nightly").await;
    let tasks: Vec<(String, String, String, TaskStatus)> = report
        .tasks
        .iter()
        .map(|t| {
            (
                t.action.clone(),
                t.device.clone(),
                t.domain.clone(),
                t.status,
            )
        })
        .collect();
    let s = |a: &str, d: &str, m: &str, st| (a.to_string(), d.to_string(), m.to_string(), st);
    assert_eq!(
        tasks,
        [
            s("SECURE_BACKUP", "QA1", "all-domains", TaskStatus::Succeeded),
            s("SECURE_BACKUP", "QA2", "all-domains", TaskStatus::Succeeded),
            s("SECURE_BACKUP", "QA3", "all-domains", TaskStatus::Succeeded),
            s("EXPORT_DOMAIN", "TEST8", "DOMAIN1", TaskStatus::Succeeded),
            s("EXPORT_DOMAIN", "TEST8", "DOMAIN2", TaskStatus::Succeeded),
            s("EXPORT_DOMAIN", "TEST9", "DOMAIN*", TaskStatus::Skipped),
        ],
        "{report:#?}"
    );
    assert_eq!(report.status, RunStatus::Warning);
    assert!(report.tasks[5]
        .error
        .as_deref()
        .unwrap()
        .contains("device not available"));

    // The layout: both exports for the domain with unsaved changes, one for the other.
    let files = files_below(&w.store());
    let ts = files[0].split('/').nth(2).unwrap().to_string();
    let mut want = Vec::new();
    for d in ["QA1", "QA2", "QA3"] {
        for f in [
            "backupmanifest.xml",
            "cert.tgz",
            "config.tgz",
            "local.tgz",
            "manifest.json",
            "password-map.tgz",
            "policyframework.tgz",
            "root.tgz",
            "sharedcert.tgz",
            "store.tgz",
        ] {
            want.push(format!("{d}/secure-backup/{ts}/{f}"));
        }
    }
    want.push(format!(
        "TEST8/domain/DOMAIN1/DOMAIN1-export-{ts}-persisted.zip"
    ));
    want.push(format!(
        "TEST8/domain/DOMAIN1/DOMAIN1-export-{ts}.manifest.json"
    ));
    want.push(format!(
        "TEST8/domain/DOMAIN2/DOMAIN2-export-{ts}-nonpersisted.zip"
    ));
    want.push(format!(
        "TEST8/domain/DOMAIN2/DOMAIN2-export-{ts}-persisted.zip"
    ));
    want.push(format!(
        "TEST8/domain/DOMAIN2/DOMAIN2-export-{ts}.manifest.json"
    ));
    want.sort();
    assert_eq!(files, want);
    assert_eq!(ts.len(), "2026-11-22-01-02-03-045".len());

    // Every manifest matches its files.
    for m in files.iter().filter(|f| f.ends_with("manifest.json")) {
        let mpath = w.store().join(m);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
        assert_eq!(v["run"], report.run);
        for key in ["task", "device", "domain", "action", "started", "finished"] {
            assert!(!v[key].is_null(), "{m}: no {key}");
        }
        assert_eq!(v["firmware"]["version"], "IDG.10.5.0.12");
        let entries = v["files"].as_array().unwrap();
        assert!(!entries.is_empty());
        for f in entries {
            let p = mpath.parent().unwrap().join(f["path"].as_str().unwrap());
            let (size, sha) = dpplan::backups::hash_file(&p).unwrap();
            assert_eq!(f["size"], size, "{}", p.display());
            assert_eq!(f["sha256"], sha, "{}", p.display());
        }
    }
    let qa1: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            w.store()
                .join(format!("QA1/secure-backup/{ts}/manifest.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(qa1["firmware"]["serial"], "QA1-0001");
    // The downloaded archives are the simulator's deterministic content.
    let cfg = std::fs::read(w.store().join(format!("QA2/secure-backup/{ts}/config.tgz"))).unwrap();
    assert_eq!(
        cfg,
        dpplan::sim::content::expected_bytes("QA2", "config.tgz", 64 * 1024)
    );

    // Nothing quiesced, nothing left in temporary:, every quiesce released.
    w.assert_clean();
    for d in ["QA1", "QA2", "QA3"] {
        let ops = w.state(d).ops;
        assert_eq!(ops.get("QuiesceDP"), Some(&1), "{d}: {ops:?}");
        assert_eq!(ops.get("UnquiesceDP"), Some(&1), "{d}: {ops:?}");
        assert_eq!(ops.get("SecureBackup"), Some(&1), "{d}: {ops:?}");
    }
    let ops = w.state("TEST8").ops;
    assert_eq!(ops.get("DomainQuiesce"), Some(&2), "{ops:?}");
    assert_eq!(ops.get("DomainUnquiesce"), Some(&2), "{ops:?}");

    // Every step attempt has its intent before its result.
    let records = journal.records(report.run);
    let mut open = std::collections::HashSet::new();
    for r in &records {
        match r {
            Record::StepIntent {
                task,
                step,
                attempt,
                ..
            } => {
                assert!(open.insert((*task, step.clone(), *attempt)));
            }
            Record::StepResult {
                task,
                step,
                attempt,
                ..
            } if *attempt > 0 => {
                assert!(
                    open.remove(&(*task, step.clone(), *attempt)),
                    "result without intent"
                );
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "intents without results: {open:?}");
}
