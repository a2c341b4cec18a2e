//! Before a run's tasks exist: the plan's checks (backups enabled, window, store), the
//! probe of the fleet, the run's scope (`--devices`, `retry`), and the first lines of its log.

#[allow(unused_imports)]
use super::context::*;
use super::fsinfo;

impl Engine {
    /// Connects to and probes every device the plan names, in parallel.
    pub(super) async fn probe(
        &self,
        plan: &Plan,
    ) -> (
        HashMap<String, DeviceFacts>,
        HashMap<String, Arc<dyn Appliance>>,
    ) {
        let mut wanted = compile::devices_to_probe(&self.program, plan);
        wanted.retain(|(name, _)| self.base.options.includes(name));
        let mut set = tokio::task::JoinSet::new();
        let limit = Arc::new(tokio::sync::Semaphore::new(64));
        for (name, needs_domains) in wanted {
            let Some(device) = self.program.device(name).cloned() else {
                continue;
            };
            let connector = self.base.connector.clone();
            // The probe may take up to four requests (three firmware classes, newest first,
            // and the domains beside them), each held to the device's own `timeout`: an old
            // appliance that needs all of them is slow, not down.
            let per_request = Duration::from_millis(device.timeout_ms);
            let timeout = self
                .base
                .options
                .probe_timeout
                .max(per_request * PROBE_REQUESTS);
            let limit = limit.clone();
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let app = match connector.connect(&device) {
                    Ok(a) => a,
                    Err(e) => {
                        let why = format!("{e} (inventory entry {})", device.at);
                        return (device.name, DeviceFacts::Unavailable(why), None);
                    }
                };
                let facts = tokio::time::timeout(timeout, async {
                    if !needs_domains {
                        app.probe().await?;
                        return Ok(Vec::new());
                    }
                    // Independent requests, asked together: one round trip fewer. The
                    // firmware's failure is the probe's, as when it was asked first.
                    let (firmware, domains) = tokio::join!(app.probe(), app.domains());
                    firmware?;
                    Ok::<_, crate::appliance::ApplianceError>(
                        domains?.into_iter().map(|d| d.name).collect(),
                    )
                })
                .await;
                let user = device.user.as_deref().unwrap_or(crate::check::DEFAULT_USER);
                match facts {
                    Ok(Ok(domains)) => (device.name, DeviceFacts::Available { domains }, Some(app)),
                    Ok(Err(crate::appliance::ApplianceError {
                        kind: crate::appliance::ErrorKind::Auth(_),
                        ..
                    })) => {
                        let why = format!(
                            "authentication failed for user {user} on {} (inventory entry {})",
                            device.name, device.at
                        );
                        (device.name, DeviceFacts::Refused(why), None)
                    }
                    Ok(Err(e)) => {
                        let why = format!("{e} (inventory entry {})", device.at);
                        (device.name, DeviceFacts::Unavailable(why), None)
                    }
                    Err(_) => {
                        let why = format!(
                            "{}: the availability probe (firmware and domains) did not finish within {}s: {PROBE_REQUESTS} requests of at most {}s each, the device's `timeout` (inventory entry {})",
                            device.name,
                            timeout.as_secs(),
                            per_request.as_secs(),
                            device.at
                        );
                        (device.name, DeviceFacts::Unavailable(why), None)
                    }
                }
            });
        }
        let mut facts = HashMap::new();
        let mut apps = HashMap::new();
        while let Some(r) = set.join_next().await {
            if let Ok((name, f, app)) = r {
                if let Some(a) = app {
                    apps.insert(name.clone(), a);
                }
                facts.insert(name, f);
            }
        }
        (facts, apps)
    }

    /// The first lines of a run's log: who started it and how, and what it retries.
    pub(super) fn origin_log(&self) -> Vec<Record> {
        let mut lines = Vec::new();
        if let Some(o) = &self.base.options.origin {
            lines.push(format!("started by {o}"));
        }
        lines.extend(self.base.options.warnings.iter().cloned());
        if self.base.options.ignore_window {
            lines.push("the maintenance window is ignored (--ignore-window)".to_string());
        }
        if !self.base.options.devices.is_empty() {
            lines.push(format!(
                "narrowed to devices {}",
                self.base.options.devices.join(", ")
            ));
        }
        if let Some(r) = &self.base.options.retry {
            lines.push(format!("retries {} task(s) of run {}", r.tasks.len(), r.of));
        }
        let at = self.base.clock.now();
        lines
            .into_iter()
            .map(|message| Record::Log {
                task: None,
                step: None,
                at,
                message,
            })
            .collect()
    }

    /// The tasks in the run's scope (`--devices`, `retry`), renumbered from 1 in creation
    /// order; all of them when the run is not narrowed.
    pub(super) fn narrow(&self, tasks: Vec<Task>) -> Vec<Task> {
        if self.base.options.devices.is_empty() && self.base.options.retry.is_none() {
            return tasks;
        }
        let mut kept: Vec<Task> = tasks
            .into_iter()
            .filter(|t| {
                self.program.device(&t.device).is_some()
                    && self.base.options.includes(&t.device)
                    && self.base.options.retry.as_ref().is_none_or(|r| r.wants(t))
            })
            .collect();
        for (i, t) in kept.iter_mut().enumerate() {
            t.id = i as u32 + 1;
        }
        kept
    }

    /// The plan checks before any task (docs/architecture.md); `Some` ends the run before any task.
    pub(super) fn prevalidate(
        &self,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Option<(RunStatus, String)> {
        if !self.program.settings.backups_enabled {
            return Some((
                RunStatus::BackupsDisabled,
                "backups are disabled (settings.backups_enabled = false)".into(),
            ));
        }
        if !self.base.options.ignore_window {
            if let Some(w) = &plan.window {
                if !window::is_open(w, now) {
                    return Some((RunStatus::OutsideWindow, window::closed_message(w, now)));
                }
            }
        }
        let store = self.program.store.as_ref()?;
        if !store.path.is_dir() {
            return Some((
                RunStatus::StoreNotMounted,
                format!("the store {} does not exist", store.path.display()),
            ));
        }
        if store.require_remote {
            match fsinfo::mount_of(&store.path) {
                Ok(m) if m.is_remote() => {}
                Ok(m) => {
                    return Some((
                        RunStatus::StoreNotMounted,
                        format!(
                            "the store {} is on a local filesystem ({}, mounted at {}), not a mounted remote one (require_remote = true): mount the share first",
                            store.path.display(),
                            m.fstype,
                            m.mount_point.display()
                        ),
                    ))
                }
                Err(e) => {
                    return Some((
                        RunStatus::StoreNotMounted,
                        format!("cannot inspect the store {}: {e}", store.path.display()),
                    ))
                }
            }
        }
        if let Err(e) = fsinfo::check_space(&store.path, store.min_free) {
            return Some((RunStatus::StoreOutOfSpace, e));
        }
        None
    }
}
