//! The fleet file (TOML): `[defaults]` and `[[device]]` tables, each device with its
//! `[[device.fault]]` list. A contract: tests outside the project write these files. Every key
//! of `[defaults]` may also be set per device; the per-device value wins.
//! See docs/simulator.md.

use serde::Deserialize;
use std::time::Duration;

/// An invalid fleet file.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Not valid TOML or not the expected shape.
    #[error("fleet file: {0}")]
    Toml(String),
    /// A value that does not make sense (named key and device).
    #[error("fleet file: device {device}: {key}: {message}")]
    Value {
        device: String,
        key: String,
        message: String,
    },
}

/// Keys settable in `[defaults]` and per device.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    name: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    firmware: Option<String>,
    build: Option<String>,
    machine_type: Option<String>,
    model: Option<String>,
    serial: Option<String>,
    /// Which firmware status class the device knows (older firmware: `FirmwareVersion2`).
    firmware_class: Option<String>,
    /// Send SOAP Faults with HTTP 500, as SOAP 1.1 allows (some firmware does).
    fault_http500: Option<bool>,
    /// Old firmware: DomainStatus rows carry no QuiesceState.
    no_quiesce_state: Option<bool>,
    /// How long every answer waits, as a real appliance takes its time.
    latency: Option<String>,
    free_temporary_mb: Option<u64>,
    certs: Option<Vec<String>>,
    /// Identification credentials SecureRestore accepts.
    creds: Option<Vec<String>>,
    /// How long the device is down after a SecureRestore (validate off).
    restore_downtime: Option<String>,
    secure_backup_mode: Option<bool>,
    quiesce_delay: Option<String>,
    unquiesce_delay: Option<String>,
    backup_file_size: Option<String>,
    domains: Option<Vec<String>>,
    unsaved: Option<Vec<String>>,
    down: Option<bool>,
    #[serde(default)]
    fault: Vec<FaultEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultEntry {
    op: String,
    #[serde(default)]
    after: u64,
    #[serde(default = "one")]
    times: u64,
    kind: FaultKind,
    delay: Option<String>,
    text: Option<String>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    #[serde(default)]
    defaults: Keys,
    #[serde(default)]
    device: Vec<Keys>,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The connection is reset (RST) without a response.
    Reset,
    /// HTTP 500 with a plain-text body.
    Http500,
    /// A SOAP Fault (`env:Client`, `Internal Error (from client)`).
    SoapFault,
    /// `dp:result` `Authentication failure`, whatever the credentials.
    AuthFailure,
    /// The answer comes after `delay`.
    Delay,
    /// The body stops half way (the announced length is not reached).
    Truncate,
    /// A payload (`dp:file`) with characters that are not base64. Payload operations only.
    BadBase64,
    /// `dp:result` with `text` instead of the answer.
    ErrorText,
    /// The quiesce is accepted but never completes. Quiesce actions only.
    NeverQuiesce,
    /// The unquiesce is accepted but never completes. Unquiesce actions only.
    NeverUnquiesce,
    /// The import's last object fails (`cfg-result` ERROR with `text`) and is not applied;
    /// the rest is. do-import requests that are not dry runs only.
    ImportError,
    /// SaveCheckpoint is refused as if the domain held its maximum of checkpoints.
    /// SaveCheckpoint only.
    CheckpointFull,
}

/// One `[[device.fault]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// A SOMA operation (`get-file`, `get-status`...), a `do-action` child name
    /// (`SecureBackup`...), `do-action` for every action, or `*`.
    pub op: String,
    /// Matching requests let through before the fault starts.
    pub after: u64,
    /// How many matching requests get the fault.
    pub times: u64,
    /// What happens.
    pub kind: FaultKind,
    /// For `delay`.
    pub delay: Duration,
    /// For `error-text`.
    pub text: String,
}

/// One simulated appliance, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub name: String,
    /// 0: any free port.
    pub port: u16,
    pub user: String,
    pub password: String,
    pub firmware: String,
    pub build: String,
    pub machine_type: String,
    pub model: String,
    pub serial: String,
    pub firmware_class: String,
    pub free_temporary_mb: u64,
    pub certs: Vec<String>,
    /// Identification credentials SecureRestore accepts.
    pub creds: Vec<String>,
    /// Down (connection refused) this long after a SecureRestore with validate off.
    pub restore_downtime: Duration,
    pub secure_backup_mode: bool,
    pub quiesce_delay: Duration,
    pub unquiesce_delay: Duration,
    pub backup_file_size: u64,
    /// Always starts with `default`.
    pub domains: Vec<String>,
    pub unsaved: Vec<String>,
    pub down: bool,
    pub faults: Vec<Fault>,
    /// SOAP Faults are sent with HTTP 500.
    pub fault_http500: bool,
    /// DomainStatus rows carry no QuiesceState (firmware older than quiesce).
    pub no_quiesce_state: bool,
    /// Every answer waits this long first.
    pub latency: Duration,
}

/// A parsed fleet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// In file order.
    pub devices: Vec<DeviceSpec>,
}

impl Fleet {
    /// Parses a fleet file's text.
    pub fn parse(text: &str) -> Result<Fleet, FleetError> {
        let file: FleetFile = toml::from_str(text).map_err(|e| FleetError::Toml(e.to_string()))?;
        let d = &file.defaults;
        for (key, set) in [("name", d.name.is_some()), ("port", d.port.is_some())] {
            if set {
                return Err(value_error("[defaults]", key, "only per device"));
            }
        }
        if !d.fault.is_empty() {
            return Err(value_error("[defaults]", "fault", "only per device"));
        }
        let mut devices = Vec::new();
        for entry in &file.device {
            let device = resolve(&file.defaults, entry)?;
            if devices
                .iter()
                .any(|other: &DeviceSpec| other.name == device.name)
            {
                return Err(value_error(&device.name, "name", "appears twice"));
            }
            devices.push(device);
        }
        Ok(Fleet { devices })
    }

    /// Reads and parses a fleet file.
    pub fn load(path: &std::path::Path) -> Result<Fleet, FleetError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FleetError::Toml(format!("{}: {e}", path.display())))?;
        Fleet::parse(&text)
    }
}

fn value_error(device: &str, key: &str, message: impl Into<String>) -> FleetError {
    FleetError::Value {
        device: device.into(),
        key: key.into(),
        message: message.into(),
    }
}

fn resolve(defaults: &Keys, entry: &Keys) -> Result<DeviceSpec, FleetError> {
    let name = entry
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| value_error("?", "name", "every [[device]] needs a name"))?;
    macro_rules! pick {
        ($field:ident, $default:expr) => {
            entry
                .$field
                .clone()
                .or_else(|| defaults.$field.clone())
                .unwrap_or_else(|| $default)
        };
    }
    let duration =
        |key: &str, text: String| parse_duration(&text).map_err(|m| value_error(&name, key, m));
    let mut domains: Vec<String> = pick!(domains, vec!["default".to_string()]);
    if !domains.iter().any(|d| d == "default") {
        domains.insert(0, "default".into());
    }
    let unsaved: Vec<String> = pick!(unsaved, Vec::new());
    if let Some(unknown) = unsaved.iter().find(|u| !domains.contains(u)) {
        return Err(value_error(
            &name,
            "unsaved",
            format!("{unknown} is not in domains"),
        ));
    }
    let faults = entry
        .fault
        .iter()
        .map(|f| {
            Ok(Fault {
                op: f.op.clone(),
                after: f.after,
                times: f.times,
                kind: f.kind,
                delay: match &f.delay {
                    Some(d) => duration("fault.delay", d.clone())?,
                    None if f.kind == FaultKind::Delay => {
                        return Err(value_error(
                            &name,
                            "fault.delay",
                            "kind = \"delay\" needs it",
                        ))
                    }
                    None => Duration::ZERO,
                },
                text: f.text.clone().unwrap_or_else(|| "Simulated error".into()),
            })
        })
        .collect::<Result<Vec<_>, FleetError>>()?;
    Ok(DeviceSpec {
        port: entry.port.unwrap_or(0),
        user: pick!(user, "admin".into()),
        password: pick!(password, "admin".into()),
        firmware: pick!(firmware, "IDG.10.5.0.12".into()),
        build: pick!(build, "354871".into()),
        machine_type: pick!(machine_type, "8436".into()),
        model: pick!(model, "52X".into()),
        serial: pick!(serial, format!("{name}-0001")),
        firmware_class: pick!(firmware_class, "FirmwareVersion3".into()),
        free_temporary_mb: pick!(free_temporary_mb, 4096),
        certs: pick!(certs, vec!["backup-cert".into()]),
        creds: pick!(creds, vec!["backup-cred".into()]),
        restore_downtime: duration("restore_downtime", pick!(restore_downtime, "3s".into()))?,
        secure_backup_mode: pick!(secure_backup_mode, true),
        quiesce_delay: duration("quiesce_delay", pick!(quiesce_delay, "2s".into()))?,
        unquiesce_delay: duration("unquiesce_delay", pick!(unquiesce_delay, "1s".into()))?,
        backup_file_size: parse_size(&pick!(backup_file_size, "8MiB".into()))
            .map_err(|m| value_error(&name, "backup_file_size", m))?,
        domains,
        unsaved,
        down: pick!(down, false),
        faults,
        fault_http500: pick!(fault_http500, false),
        no_quiesce_state: pick!(no_quiesce_state, false),
        latency: duration("latency", pick!(latency, "0s".into()))?,
        name,
    })
}

/// `500ms`, `2s`, `1m30s`, `1h`, `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s, 1m"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let too_long = || format!("{text:?} is too long");
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(too_long)?),
            "h" => Duration::from_secs(number.checked_mul(3600).ok_or_else(too_long)?),
            _ => return Err(format!("{text:?} is not a duration such as 500ms, 2s, 1m")),
        };
        total = total.checked_add(part).ok_or_else(too_long)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `100`, `100B`, `512KiB`, `8MiB`, `2GiB`, `1KB`, `1MB`, `1GB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits]
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 8MiB"))?;
    let unit: u64 = match &text[digits..] {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("{text:?} is not a size such as 8MiB")),
    };
    number
        .checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_example_parses() {
        let fleet = Fleet::parse(
            r#"
[defaults]
user = "admin"
password = "admin"
firmware = "IDG.10.5.0.12"
build = "354871"
machine_type = "8436"
model = "52X"
free_temporary_mb = 4096
certs = ["backup-cert"]
secure_backup_mode = true
quiesce_delay = "2s"
unquiesce_delay = "1s"
backup_file_size = "8MiB"

[[device]]
name = "QA1"
port = 18101
domains = ["default", "DOMAIN1", "DOMAIN2"]
unsaved = ["DOMAIN2"]
serial = "QA1-0001"

[[device.fault]]
op = "get-file"
after = 2
times = 1
kind = "reset"
delay = "5s"
text = "Appliance busy"

[[device]]
name = "TEST9"
port = 18109
down = true
"#,
        )
        .unwrap();
        assert_eq!(fleet.devices.len(), 2);
        let qa1 = &fleet.devices[0];
        assert_eq!(qa1.port, 18101);
        assert_eq!(qa1.domains, ["default", "DOMAIN1", "DOMAIN2"]);
        assert_eq!(qa1.backup_file_size, 8 << 20);
        assert_eq!(qa1.quiesce_delay, Duration::from_secs(2));
        assert_eq!(qa1.faults[0].kind, FaultKind::Reset);
        assert_eq!(qa1.faults[0].after, 2);
        assert!(fleet.devices[1].down);
        assert_eq!(fleet.devices[1].domains, ["default"]);
        assert_eq!(fleet.devices[1].serial, "TEST9-0001");
    }

    #[test]
    fn bad_values_are_named() {
        let e = Fleet::parse("[[device]]\nname = \"A\"\nquiesce_delay = \"2x\"\n").unwrap_err();
        assert!(e.to_string().contains("quiesce_delay"), "{e}");
        let e = Fleet::parse("[[device]]\nname = \"A\"\ncolour = 1\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Fleet::parse("[[device]]\nname = \"A\"\nunsaved = [\"X\"]\n").unwrap_err();
        assert!(e.to_string().contains("unsaved"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_values_never_panic(text in "\\PC{0,40}", digits in "[0-9]{1,25}[a-zA-Z]{0,3}") {
            let _ = parse_duration(&text);
            let _ = parse_size(&text);
            let _ = parse_duration(&digits);
            let _ = parse_size(&digits);
            let _ = Fleet::parse(&text);
            let _ = Fleet::parse(&format!("[[device]]\nname = \"A\"\nquiesce_delay = \"{digits}\"\nbackup_file_size = \"{digits}\"\n"));
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1 TiB").is_err());
    }
}
