//! What a run needs to reach its appliances and cannot find (checked before any appliance
//! is touched).

#[allow(unused_imports)]
use super::context::*;
use crate::secrets::read_secret;

/// What a run of `plan` needs and cannot find: unset `env()` variables, unreadable
/// `file()` secrets, missing `tls_ca` files and scripts, each named with where the plan
/// uses it. Empty when everything is there.
pub fn unresolved_config(
    program: &Program,
    plan: &Plan,
    wanted: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, _) in compile::devices_to_probe(program, plan) {
        if !wanted(name) {
            continue;
        }
        let Some(d) = program.device(name) else {
            continue;
        };
        if let Some(secret) = &d.password {
            if let Err(e) = read_secret(secret) {
                missing.push(format!(
                    "{e} (the password of device {}, inventory entry {})",
                    d.name, d.at
                ));
            }
        }
        if let Some(ca) = &d.tls_ca {
            if let Err(e) = std::fs::metadata(ca) {
                missing.push(format!(
                    "cannot read the CA file {}: {e} (tls_ca of device {}, inventory entry {})",
                    ca.display(),
                    d.name,
                    d.at
                ));
            }
        }
    }
    let mut scripts: Vec<(&crate::check::Script, String)> = Vec::new();
    if let Some(s) = &plan.pre_plan {
        scripts.push((s, format!("pre_plan of plan {}", plan.name)));
    }
    if let Some(s) = &plan.post_plan {
        scripts.push((s, format!("post_plan of plan {}", plan.name)));
    }
    for (i, a) in plan.activities.iter().enumerate() {
        for (param, v) in &a.params {
            if let crate::check::Value::Script(s) = v {
                scripts.push((s, format!("`{param}` of activity {}", i + 1)));
            }
        }
    }
    for (s, what) in scripts {
        if let Err(e) = std::fs::metadata(&s.path) {
            missing.push(format!("script {}: {e} ({what})", s.path.display()));
        }
    }
    // Several devices usually share one secret: say each problem once.
    let mut seen = std::collections::HashSet::new();
    missing.retain(|m| seen.insert(m.split(" (").next().unwrap_or(m).to_string()));
    missing
}

/// The environment variables the inventory reads passwords from: kept from scripts.
pub(super) fn secret_vars(program: &Program) -> Vec<String> {
    program
        .devices
        .iter()
        .filter_map(|d| match &d.password {
            Some(Secret::Env(v)) => Some(v.clone()),
            _ => None,
        })
        .collect()
}
