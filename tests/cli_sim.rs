//! `dpplan sim` as a process: prints one line per device, serves SOMA and /sim/state on those
//! addresses, writes the inventory (and with --tls the CA), and exits 0 on SIGTERM or SIGINT.

use dpplan::appliance::{Appliance, ConnectionConfig, SomaClient};
use dpplan::sim::SimState;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Sim {
    child: Child,
    lines: Vec<(String, String)>,
}

impl Sim {
    fn start(dir: &std::path::Path, fleet: &str, extra: &[&str]) -> Sim {
        let fleet_path = dir.join("fleet.toml");
        std::fs::write(&fleet_path, fleet).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dpplan"))
            .arg("sim")
            .arg("--fleet")
            .arg(&fleet_path)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let count = fleet.matches("[[device]]").count();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for _ in 0..count {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            lines.push((
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            ));
        }
        Sim { child, lines }
    }

    fn stop(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args([signal, &pid]).status().unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("dpplan sim did not stop on {signal}");
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn sim_serves_prints_writes_inventory_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.dpplan");
    let sim = Sim::start(
        dir.path(),
        "[[device]]\nname = \"QA1\"\ndomains = [\"default\", \"D1\"]\n[[device]]\nname = \"TEST9\"\ndown = true\n",
        &["--inventory-out", inventory.to_str().unwrap()],
    );
    assert_eq!(sim.lines[0].0, "QA1");
    assert_eq!(sim.lines[1].0, "TEST9");
    let qa1 = port_of(&sim.lines[0].1);
    assert!(sim.lines[0].1.starts_with("http://127.0.0.1:"));
    assert!(sim.lines[0].1.ends_with("/service/mgmt/current"));
    let text = std::fs::read_to_string(&inventory).unwrap();
    // Its comment names the password: the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&inventory).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        text.contains(&format!(
            "device \"QA1\" {{ host = \"127.0.0.1\"  port = {qa1} }}"
        )),
        "{text}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = ConnectionConfig::new("QA1", "127.0.0.1", qa1, "admin", "admin");
        config.tls = false;
        let client = SomaClient::new(config).unwrap();
        assert_eq!(client.domains().await.unwrap().len(), 2);
        let body = crate::support::http_get(([127, 0, 0, 1], qa1).into(), "/sim/state").await;
        let state: SimState = serde_json::from_slice(&body).unwrap();
        assert_eq!(state.device, "QA1");
        assert_eq!(state.ops.get("get-status"), Some(&1));
    });
    assert!(sim.stop("-TERM").success());
}

#[test]
fn sim_with_tls_writes_the_ca_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let sim = Sim::start(
        dir.path(),
        "[[device]]\nname = \"S\"\n",
        &["--tls", "--ca-out", ca.to_str().unwrap()],
    );
    assert!(sim.lines[0].1.starts_with("https://127.0.0.1:"));
    let port = port_of(&sim.lines[0].1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = ConnectionConfig::new("S", "127.0.0.1", port, "admin", "admin");
        config.tls_ca = Some(ca.clone());
        SomaClient::new(config).unwrap().probe().await.unwrap();
    });
    assert!(sim.stop("-INT").success());
}

#[test]
fn sim_rejects_a_bad_fleet_file() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(&fleet, "[[device]]\nname = \"A\"\nbogus = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .arg("sim")
        .arg("--fleet")
        .arg(&fleet)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}
