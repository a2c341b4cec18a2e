//! The answers that report on a device without changing it: `get-status` (DomainStatus,
//! FilesystemStatus, the firmware classes) and `get-config` of the crypto objects the fleet
//! file names. A leaf: the device passes in what it reports.

use super::fleet::DeviceSpec;
use super::reply::{document, soap_fault, status, Reply, STRAY_NS};
use quick_xml::escape::escape;

const FIRMWARE_CLASSES: [&str; 3] = ["FirmwareVersion", "FirmwareVersion2", "FirmwareVersion3"];

/// One DomainStatus row.
#[derive(Debug, Clone)]
pub struct DomainRow<'a> {
    pub name: &'a str,
    pub save_needed: bool,
    pub quiesce_state: &'a str,
}

/// `get-status` of `class`: `domains` are the rows DomainStatus lists (already filtered by
/// the request's domain), `free` the bytes left in temporary:.
pub fn get_status(spec: &DeviceSpec, domains: &[DomainRow<'_>], free: u64, class: &str) -> Reply {
    match class {
        "DomainStatus" => {
            let rows: Vec<_> = domains
                .iter()
                .map(|d| {
                    let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
                    let mut fields = vec![
                        ("Domain", d.name.to_string()),
                        ("SaveNeeded", on_off(d.save_needed)),
                        ("TraceEnabled", "off".into()),
                        ("DebugEnabled", "off".into()),
                        ("ProbeEnabled", "off".into()),
                        ("DiagEnabled", "off".into()),
                        ("CurrentCommand", String::new()),
                        ("QuiesceState", d.quiesce_state.into()),
                        ("InterfaceState", "ok".into()),
                        ("FailsafeMode", "none".into()),
                    ];
                    if spec.no_quiesce_state {
                        fields.retain(|(k, _)| *k != "QuiesceState");
                    }
                    ("DomainStatus", fields)
                })
                .collect();
            status(&rows)
        }
        "FilesystemStatus" => {
            let mib = |n: u64| n.to_string();
            let free = free >> 20;
            status(&[(
                "FilesystemStatus",
                vec![
                    ("FreeEncrypted", mib(spec.free_temporary_mb)),
                    (
                        "TotalEncrypted",
                        mib(spec.free_temporary_mb.saturating_mul(4)),
                    ),
                    ("FreeTemporary", mib(free)),
                    (
                        "TotalTemporary",
                        mib(spec.free_temporary_mb.saturating_mul(4)),
                    ),
                    ("FreeInternal", mib(spec.free_temporary_mb)),
                    (
                        "TotalInternal",
                        mib(spec.free_temporary_mb.saturating_mul(4)),
                    ),
                ],
            )])
        }
        class if FIRMWARE_CLASSES.contains(&class) => {
            let known = FIRMWARE_CLASSES
                .iter()
                .position(|c| *c == spec.firmware_class)
                .unwrap_or(FIRMWARE_CLASSES.len() - 1);
            let asked = FIRMWARE_CLASSES
                .iter()
                .position(|c| *c == class)
                .unwrap_or(0);
            if asked > known {
                // Older firmware does not know the newer class: the schema rejects it.
                return soap_fault("unknown status class");
            }
            status(&[(
                class,
                vec![
                    ("Serial", spec.serial.clone()),
                    ("Version", spec.firmware.clone()),
                    ("Build", spec.build.clone()),
                    ("BuildDate", "2024/01/01 00:00:00".into()),
                    ("DeliveryType", "LTS".into()),
                    ("WatchdogBuild", spec.firmware.clone()),
                    ("InstalledDPOS", spec.firmware.clone()),
                    ("RunningDPOS", spec.firmware.clone()),
                    ("XMLAccelerator", "none".into()),
                    ("MachineType", spec.machine_type.clone()),
                    ("ModelType", spec.model.clone()),
                ],
            )])
        }
        _ => soap_fault("unknown status class"),
    }
}

/// `get-status DomainCheckpointStatus` in `domain`: one row per checkpoint, oldest first
/// (their times count up from a fixed date, so the order shows).
pub fn checkpoint_status(domain: &str, names: &[&str]) -> Reply {
    let rows: String = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                "<DomainCheckpointStatus xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\">\
                 <Domain>{}</Domain><ChkName>{}</ChkName>\
                 <Date>2026-01-01</Date><Time>00:00:{:02}</Time></DomainCheckpointStatus>",
                quick_xml::escape::escape(domain),
                quick_xml::escape::escape(*name),
                i % 60
            )
        })
        .collect();
    Reply::Xml(document(&format!("<dp:status>{rows}</dp:status>")))
}

/// `get-config` of a `CryptoCertificate` (in `certs`) or `CryptoIdentCred` (in `creds`).
pub fn get_config(spec: &DeviceSpec, class: &str, name: Option<&str>) -> Reply {
    let known = match class {
        "CryptoCertificate" => &spec.certs,
        "CryptoIdentCred" => &spec.creds,
        _ => return Reply::Xml(document("         <dp:config/>")),
    };
    let found = name.is_some_and(|n| known.iter().any(|c| c == n));
    match (found, name) {
        (true, Some(name)) if class == "CryptoIdentCred" => Reply::Xml(document(&format!(
            "         <dp:config>\n            \
                 <CryptoIdentCred name=\"{n}\" xmlns:env=\"{STRAY_NS}\">\n               \
                 <mAdminState>enabled</mAdminState>\n               \
                 <Key>{n}-key</Key>\n               \
                 <Certificate>{n}-cert</Certificate>\n            </CryptoIdentCred>\n         \
                 </dp:config>",
            n = escape(name)
        ))),
        (true, Some(name)) => Reply::Xml(document(&format!(
            "         <dp:config>\n            \
                 <CryptoCertificate name=\"{n}\" xmlns:env=\"{STRAY_NS}\">\n               \
                 <mAdminState>enabled</mAdminState>\n               \
                 <Filename>cert:///{n}.pem</Filename>\n               \
                 <PasswordAlias>off</PasswordAlias>\n            </CryptoCertificate>\n         \
                 </dp:config>",
            n = escape(name)
        ))),
        _ => Reply::Xml(document("         <dp:config/>")),
    }
}
