//! Simulator fleet files (docs/simulator.md), built instead of written out in each test file:
//! the defaults every test fleet shares (user `admin`, password `s3cret`), the fleets several
//! files use ([`dpod`], [`qa`]), and a builder for the rest.
//!
//! ```ignore
//! let toml = qa(&["QA1", "QA2"])
//!     .set("quiesce_delay", "100ms")
//!     .device(DeviceEntry::new("QA3").fault(SimFault::new("SecureBackup", "http500").times(2)))
//!     .to_string();
//! ```

use std::fmt;

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of strings.
fn strings(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}

/// Sets `key` to the TOML `value` in `keys`, replacing an earlier value.
fn put(keys: &mut Vec<(String, String)>, key: &str, value: String) {
    match keys.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => keys.push((key.to_string(), value)),
    }
}

fn write_keys(f: &mut fmt::Formatter<'_>, keys: &[(String, String)]) -> fmt::Result {
    for (k, v) in keys {
        writeln!(f, "{k} = {v}")?;
    }
    Ok(())
}

/// A fault of one device (`[[device.fault]]`): `kind` on operation `op`.
#[derive(Debug, Clone)]
pub struct SimFault {
    keys: Vec<(String, String)>,
}

impl SimFault {
    /// `kind` (`http500`, `error-text`, `delay`, `never-quiesce`...) on every request of `op`.
    pub fn new(op: &str, kind: &str) -> SimFault {
        SimFault {
            keys: vec![("op".into(), quote(op)), ("kind".into(), quote(kind))],
        }
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u32) -> SimFault {
        put(&mut self.keys, "times", n.to_string());
        self
    }

    /// Only after `n` matching requests went through.
    pub fn after(mut self, n: u32) -> SimFault {
        put(&mut self.keys, "after", n.to_string());
        self
    }

    /// A string setting of the fault (`text`, `delay`).
    pub fn set(mut self, key: &str, value: &str) -> SimFault {
        put(&mut self.keys, key, quote(value));
        self
    }
}

/// One `[[device]]`.
#[derive(Debug, Clone)]
pub struct DeviceEntry {
    keys: Vec<(String, String)>,
    faults: Vec<SimFault>,
}

impl DeviceEntry {
    pub fn new(name: &str) -> DeviceEntry {
        DeviceEntry {
            keys: vec![("name".into(), quote(name))],
            faults: Vec::new(),
        }
    }

    /// A string setting (`quiesce_delay`, `firmware_class`, `serial`...).
    pub fn set(mut self, key: &str, value: &str) -> DeviceEntry {
        put(&mut self.keys, key, quote(value));
        self
    }

    /// A setting written as TOML as it is (`true`, a number).
    pub fn set_raw(mut self, key: &str, toml: &str) -> DeviceEntry {
        put(&mut self.keys, key, toml.to_string());
        self
    }

    /// Its domains.
    pub fn domains(mut self, names: &[&str]) -> DeviceEntry {
        put(&mut self.keys, "domains", strings(names));
        self
    }

    /// Domains with unsaved changes.
    pub fn unsaved(mut self, names: &[&str]) -> DeviceEntry {
        put(&mut self.keys, "unsaved", strings(names));
        self
    }

    /// Listed, but not answering.
    pub fn down(self) -> DeviceEntry {
        self.set_raw("down", "true")
    }

    pub fn fault(mut self, fault: SimFault) -> DeviceEntry {
        self.faults.push(fault);
        self
    }
}

/// A fleet file: `[defaults]` and the devices.
#[derive(Debug, Clone)]
pub struct FleetFile {
    defaults: Vec<(String, String)>,
    devices: Vec<DeviceEntry>,
}

impl Default for FleetFile {
    fn default() -> Self {
        FleetFile::new()
    }
}

impl FleetFile {
    /// No devices yet; user `admin`, password `s3cret` (the tests' `pw` file).
    pub fn new() -> FleetFile {
        FleetFile {
            defaults: vec![
                ("user".into(), quote("admin")),
                ("password".into(), quote("s3cret")),
            ],
            devices: Vec::new(),
        }
    }

    /// A string default (`quiesce_delay`, `backup_file_size`...), replacing an earlier one.
    pub fn set(mut self, key: &str, value: &str) -> FleetFile {
        put(&mut self.defaults, key, quote(value));
        self
    }

    /// The default domains.
    pub fn domains(mut self, names: &[&str]) -> FleetFile {
        put(&mut self.defaults, "domains", strings(names));
        self
    }

    /// Adds a device.
    pub fn device(mut self, device: DeviceEntry) -> FleetFile {
        self.devices.push(device);
        self
    }

    /// Adds plain devices named `names`.
    pub fn devices(self, names: &[&str]) -> FleetFile {
        names
            .iter()
            .fold(self, |f, n| f.device(DeviceEntry::new(n)))
    }

    /// Changes the device named `name` (which must be there).
    #[track_caller]
    pub fn edit(
        mut self,
        name: &str,
        change: impl FnOnce(DeviceEntry) -> DeviceEntry,
    ) -> FleetFile {
        let quoted = quote(name);
        let i = self
            .devices
            .iter()
            .position(|d| d.keys[0].1 == quoted)
            .unwrap_or_else(|| panic!("no device {name} in the fleet"));
        let d = self.devices.remove(i);
        self.devices.insert(i, change(d));
        self
    }
}

impl fmt::Display for FleetFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[defaults]")?;
        write_keys(f, &self.defaults)?;
        for d in &self.devices {
            writeln!(f, "\n[[device]]")?;
            write_keys(f, &d.keys)?;
            for fault in &d.faults {
                writeln!(f, "[[device.fault]]")?;
                write_keys(f, &fault.keys)?;
            }
        }
        Ok(())
    }
}

/// The DPOD example fleet (DESIGN.md section 3): QA1-3, TEST8 with DOMAIN1, DOMAIN2
/// (unsaved) and default, TEST9 down; quick quiesces, 64 KiB backup files.
pub fn dpod() -> FleetFile {
    FleetFile::new()
        .set("quiesce_delay", "150ms")
        .set("unquiesce_delay", "100ms")
        .set("backup_file_size", "64KiB")
        .domains(&["default", "DOMAIN1", "DOMAIN2"])
        .device(DeviceEntry::new("QA1").set("serial", "QA1-0001"))
        .devices(&["QA2", "QA3"])
        .device(DeviceEntry::new("TEST8").unsaved(&["DOMAIN2"]))
        .device(DeviceEntry::new("TEST9").down())
}

/// Devices `names`, each with `default` and DOMAIN1, quiescing in 100 ms and unquiescing in
/// 50 ms, 16 KiB backup files.
pub fn qa(names: &[&str]) -> FleetFile {
    FleetFile::new()
        .set("quiesce_delay", "100ms")
        .set("unquiesce_delay", "50ms")
        .set("backup_file_size", "16KiB")
        .domains(&["default", "DOMAIN1"])
        .devices(names)
}
