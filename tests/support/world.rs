//! The engine in process against scripted appliances ([`FakeAppliance`]), with an in-memory
//! journal and a clock on tokio time: run it under paused time
//! (`#[tokio::test(start_paused = true)]`) and every backoff, poll, quiesce wait and timeout
//! passes at once, in an order fixed by the script instead of by the machine's load.
//!
//! ```ignore
//! #[tokio::test(start_paused = true)]
//! async fn retries_back_off() {
//!     let w = PausedWorld::new([FakeAppliance::new("QA1")
//!         .fault(Fault::on("SecureBackup", FaultKind::Http500).times(2))]);
//!     let (report, journal) = w.run(PLAN, "p").await;
//!     assert_eq!(w.device("QA1").ops("SecureBackup"), 3);
//! }
//! ```
//!
//! Hook scripts are real processes: tests with scripts stay on real time (the simulator's
//! `World` in tests/engine.rs), since paused time would jump to a script's timeout while the
//! script runs.

use super::appliance::FakeAppliance;
use chrono::{DateTime, TimeZone, Utc};
use dpplan::appliance::Appliance;
use dpplan::check::{self, Device, Root};
use dpplan::engine::clock::Clock;
use dpplan::engine::{Connector, Engine, Observer, RunOptions, RunReport};
use dpplan::store::memory::MemoryJournal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A clock on tokio's time: it reads `start` when first asked, then moves with tokio's
/// `Instant` (paused or not) and sleeps with tokio.
#[derive(Debug)]
pub struct TokioClock {
    start: DateTime<Utc>,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now.
    pub fn new(start: DateTime<Utc>) -> TokioClock {
        TokioClock {
            start,
            base: tokio::time::Instant::now(),
        }
    }
}

#[async_trait::async_trait]
impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.base.elapsed()).unwrap_or_default()
    }
}

/// The time every paused world's clock starts at: 2026-11-22 01:00:00 UTC.
pub fn world_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 1, 0, 0).unwrap()
}

/// Connects each device of the inventory to the fake of the same name; a device without
/// one is unreachable.
struct FakeConnector(Vec<Arc<FakeAppliance>>);

impl Connector for FakeConnector {
    fn connect(&self, device: &Device) -> Result<Arc<dyn Appliance>, String> {
        self.0
            .iter()
            .find(|f| f.device() == device.name)
            .map(|f| f.clone() as Arc<dyn Appliance>)
            .ok_or_else(|| format!("{}: cannot connect: no such appliance", device.name))
    }
}

/// Scripted appliances, a directory with the plan and the store, and the engine run in
/// process on them.
pub struct PausedWorld {
    pub devices: Vec<Arc<FakeAppliance>>,
    /// Devices in the inventory with no appliance behind them (down).
    pub down: Vec<String>,
    pub dir: tempfile::TempDir,
    pub clock: Arc<TokioClock>,
}

impl PausedWorld {
    /// A world of these appliances. Call it inside the (paused) runtime: the clock starts.
    pub fn new(devices: impl IntoIterator<Item = FakeAppliance>) -> PausedWorld {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        PausedWorld {
            devices: devices.into_iter().map(Arc::new).collect(),
            down: Vec::new(),
            dir,
            clock: Arc::new(TokioClock::new(world_start())),
        }
    }

    /// Adds a device to the inventory that no appliance answers for.
    pub fn with_down(mut self, name: &str) -> PausedWorld {
        self.down.push(name.to_string());
        self
    }

    /// The appliance named `name`.
    #[track_caller]
    pub fn device(&self, name: &str) -> &FakeAppliance {
        self.devices
            .iter()
            .find(|d| d.device() == name)
            .unwrap_or_else(|| panic!("no fake appliance {name}"))
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// An inventory block naming every device (`device_extra` goes inside each device's
    /// braces, e.g. `timeout = 2s`); hosts and ports are never used.
    pub fn inventory(&self, device_extra: &str) -> String {
        let mut s = String::from(
            "inventory {\n  defaults {\n    user     = \"admin\"\n    password = file(\"pw\")\n    tls      = false\n  }\n",
        );
        let names = self
            .devices
            .iter()
            .map(|d| d.device().to_string())
            .chain(self.down.iter().cloned());
        for (i, name) in names.enumerate() {
            s.push_str(&format!(
                "  device \"{name}\" {{ host = \"127.0.0.1\"  port = {}  {device_extra} }}\n",
                1 + i
            ));
        }
        s.push_str("}\n");
        s
    }

    /// Checks `plan` (clean but for warnings) with the standard library, the store and the
    /// inventory, and runs plan `name` of it under the product's default options.
    pub async fn run(&self, plan: &str, name: &str) -> (RunReport, Arc<MemoryJournal>) {
        self.run_full(plan, name, "", RunOptions::default(), None)
            .await
    }

    /// [`PausedWorld::run`] with `device_extra` in every inventory entry, chosen options and
    /// an observer.
    pub async fn run_full(
        &self,
        plan: &str,
        name: &str,
        device_extra: &str,
        options: RunOptions,
        observer: Option<Arc<dyn Observer>>,
    ) -> (RunReport, Arc<MemoryJournal>) {
        let text = format!(
            "import \"std/datapower\"\nstore \"store\" {{}}\n{}\n{plan}",
            self.inventory(device_extra)
        );
        let path = self.dir.path().join("plan.dpplan");
        std::fs::write(&path, &text).unwrap();
        let checked = check::check(&Root::Path(path));
        assert!(!checked.has_errors(), "{:#?}", checked.diagnostics);
        let journal = Arc::new(MemoryJournal::new());
        let connector = Arc::new(FakeConnector(self.devices.clone()));
        let mut engine = Engine::new(
            Arc::new(checked.program),
            name,
            journal.clone(),
            connector,
            self.clock.clone(),
            options,
        );
        if let Some(o) = observer {
            engine = engine.observe(o);
        }
        // A hang is a failure (a day of paused time passes in no real time).
        let report = tokio::time::timeout(Duration::from_secs(86_400), engine.run(&text))
            .await
            .expect("the run finished within a day of tokio time")
            .unwrap();
        (report, journal)
    }

    /// Nothing quiesced and nothing left in `temporary:` on any appliance.
    #[track_caller]
    pub fn assert_clean(&self) {
        for d in &self.devices {
            d.assert_clean();
        }
    }

    /// Tokio time since the world began (paused: only what the run waited).
    pub fn elapsed(&self) -> Duration {
        self.clock.base.elapsed()
    }
}
