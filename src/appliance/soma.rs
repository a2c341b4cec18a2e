//! SOMA request envelopes: one builder per operation the client sends. Text is XML-escaped;
//! the children of `do-action` are unqualified, as every known client sends them.

use quick_xml::escape::escape;
use std::time::Duration;

/// The management namespace of `dp:` elements.
pub const DP_NS: &str = "http://www.datapower.com/schemas/management";
/// The path of the XML management interface on the appliance's management port.
pub const PATH: &str = "/service/mgmt/current";
/// The SOAP 1.1 envelope namespace.
pub const ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Wraps one operation element in a `dp:request` for `domain` and the SOAP envelope.
pub fn envelope(domain: &str, operation: &str) -> String {
    format!(
        "<env:Envelope xmlns:env=\"{ENV_NS}\"><env:Body>\
         <dp:request domain=\"{}\" xmlns:dp=\"{DP_NS}\">{operation}</dp:request>\
         </env:Body></env:Envelope>",
        escape(domain)
    )
}

/// `get-status` of `class`, asked in `domain`.
pub fn get_status(domain: &str, class: &str) -> String {
    envelope(
        domain,
        &format!("<dp:get-status class=\"{}\"/>", escape(class)),
    )
}

/// `get-config` of the object `name` of `class`, asked in `domain`.
pub fn get_config(domain: &str, class: &str, name: &str) -> String {
    envelope(
        domain,
        &format!(
            "<dp:get-config class=\"{}\" name=\"{}\"/>",
            escape(class),
            escape(name)
        ),
    )
}

/// `do-action` with one action element (already serialised), in `domain`.
pub fn do_action(domain: &str, action: &str) -> String {
    envelope(domain, &format!("<dp:do-action>{action}</dp:do-action>"))
}

fn seconds(timeout: Duration) -> u64 {
    timeout.as_secs().max(60)
}

/// `QuiesceDP` with `timeout` (at least 60 s).
pub fn quiesce_device(timeout: Duration) -> String {
    do_action(
        "default",
        &format!(
            "<QuiesceDP><timeout>{}</timeout><delay>0</delay></QuiesceDP>",
            seconds(timeout)
        ),
    )
}

/// `UnquiesceDP`.
pub fn unquiesce_device() -> String {
    do_action("default", "<UnquiesceDP/>")
}

/// `DomainQuiesce` of `name` with `timeout` (at least 60 s), sent in `default`.
pub fn quiesce_domain(name: &str, timeout: Duration) -> String {
    do_action(
        "default",
        &format!(
            "<DomainQuiesce><name>{}</name><timeout>{}</timeout><delay>0</delay></DomainQuiesce>",
            escape(name),
            seconds(timeout)
        ),
    )
}

/// `DomainUnquiesce` of `name`, sent in `default`.
pub fn unquiesce_domain(name: &str) -> String {
    do_action(
        "default",
        &format!(
            "<DomainUnquiesce><name>{}</name></DomainUnquiesce>",
            escape(name)
        ),
    )
}

/// `SaveConfig` of `domain`.
pub fn save_config(domain: &str) -> String {
    do_action(domain, "<SaveConfig/>")
}

/// `SecureBackup` for certificate `cert` into `destination`.
pub fn secure_backup(cert: &str, destination: &str) -> String {
    do_action(
        "default",
        &format!(
            "<SecureBackup><cert>{}</cert><destination>{}</destination>\
             <include-iscsi>off</include-iscsi><include-raid>off</include-raid></SecureBackup>",
            escape(cert),
            escape(destination)
        ),
    )
}

/// `RemoveDir` of `dir`.
pub fn remove_dir(dir: &str) -> String {
    do_action(
        "default",
        &format!("<RemoveDir><Dir>{}</Dir></RemoveDir>", escape(dir)),
    )
}

/// `get-filestore` of `location` (e.g. `temporary:`).
pub fn get_filestore(location: &str) -> String {
    envelope(
        "default",
        &format!("<dp:get-filestore location=\"{}\"/>", escape(location)),
    )
}

/// `get-file` of `name`.
pub fn get_file(name: &str) -> String {
    envelope(
        "default",
        &format!("<dp:get-file name=\"{}\"/>", escape(name)),
    )
}

/// `do-export` of everything in `domain` as a ZIP, saved (`persisted`) or running configuration.
pub fn do_export(domain: &str, persisted: bool, comment: &str) -> String {
    envelope(
        domain,
        &format!(
            "<dp:do-export format=\"ZIP\" all-files=\"true\" persisted=\"{persisted}\">\
             <dp:user-comment>{}</dp:user-comment>\
             <dp:object class=\"all-classes\" name=\"all-objects\" ref-objects=\"true\" ref-files=\"true\"/>\
             </dp:do-export>",
            escape(comment)
        ),
    )
}

/// A checkpoint action (`SaveCheckpoint`, `RollbackCheckpoint`, `RemoveCheckpoint`) of
/// checkpoint `name`, in `domain`.
pub fn checkpoint(domain: &str, action: &str, name: &str) -> String {
    do_action(
        domain,
        &format!("<{action}><ChkName>{}</ChkName></{action}>", escape(name)),
    )
}

/// What a `do-import` asks besides its input file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Report what would happen; change nothing.
    pub dry_run: bool,
    /// Replace files that exist.
    pub overwrite_files: bool,
    /// Replace objects that exist.
    pub overwrite_objects: bool,
    /// Rewrite local addresses to the appliance's.
    pub rewrite_local_ip: bool,
    /// The deployment policy object applied to the import.
    pub deployment_policy: Option<String>,
}

/// A request whose middle is a file's base64, streamed: the text before it and after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    /// Everything up to the base64 text.
    pub head: String,
    /// Everything after it.
    pub tail: String,
}

const PAYLOAD: &str = "\u{0}PAYLOAD\u{0}";

fn framed(whole: String) -> Framed {
    match whole.split_once(PAYLOAD) {
        Some((head, tail)) => Framed {
            head: head.to_string(),
            tail: tail.to_string(),
        },
        None => Framed {
            head: whole,
            tail: String::new(),
        },
    }
}

/// `do-import` of a ZIP export into `domain`; the export's base64 goes between the parts.
pub fn do_import(domain: &str, o: &ImportOptions) -> Framed {
    let policy = match &o.deployment_policy {
        Some(p) => format!(" deployment-policy=\"{}\"", escape(p)),
        None => String::new(),
    };
    framed(envelope(
        domain,
        &format!(
            "<dp:do-import source-type=\"ZIP\" dry-run=\"{}\" overwrite-files=\"{}\" \
             overwrite-objects=\"{}\" rewrite-local-ip=\"{}\"{policy}>\
             <dp:input-file>{PAYLOAD}</dp:input-file></dp:do-import>",
            o.dry_run, o.overwrite_files, o.overwrite_objects, o.rewrite_local_ip
        ),
    ))
}

/// `set-file` of appliance file `name` (e.g. `temporary:///dir/f.tgz`); its base64 goes
/// between the parts.
pub fn set_file(name: &str) -> Framed {
    framed(envelope(
        "default",
        &format!(
            "<dp:set-file name=\"{}\">{PAYLOAD}</dp:set-file>",
            escape(name)
        ),
    ))
}

/// `SecureRestore` from appliance directory `source` with credential `cred`; with
/// `validate`, the backup is only checked.
pub fn secure_restore(cred: &str, source: &str, validate: bool) -> String {
    do_action(
        "default",
        &format!(
            "<SecureRestore><cred>{}</cred><source>{}</source><validate>{}</validate></SecureRestore>",
            escape(cred),
            escape(source),
            if validate { "on" } else { "off" }
        ),
    )
}

/// `do-backup` of all domains as a ZIP of ZIPs.
pub fn do_backup_all(comment: &str) -> String {
    envelope(
        "default",
        &format!(
            "<dp:do-backup format=\"ZIP\" persisted=\"true\">\
             <dp:user-comment>{}</dp:user-comment><dp:domain name=\"all-domains\"/></dp:do-backup>",
            escape(comment)
        ),
    )
}

/// Splits an appliance URL such as `temporary:///dir/sub/` into its location (`temporary:`)
/// and the directory name as `get-filestore` lists it (`temporary:/dir/sub`).
pub fn split_dir(dir: &str) -> (String, String) {
    match dir.find(':') {
        Some(colon) => {
            let location = &dir[..=colon];
            let rest = dir[colon + 1..].trim_matches('/');
            let listed = if rest.is_empty() {
                location.to_string()
            } else {
                format!("{location}/{rest}")
            };
            (location.to_string(), listed)
        }
        None => (String::new(), dir.trim_matches('/').to_string()),
    }
}

/// Joins an appliance directory URL and a base name: `temporary:///d/` + `a.tgz`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_dir_normalises_slashes() {
        assert_eq!(
            split_dir("temporary:///dpplan-1/"),
            ("temporary:".to_string(), "temporary:/dpplan-1".to_string())
        );
        assert_eq!(
            split_dir("temporary:/a/b"),
            ("temporary:".to_string(), "temporary:/a/b".to_string())
        );
        assert_eq!(
            split_dir("temporary:"),
            ("temporary:".to_string(), "temporary:".to_string())
        );
    }

    #[test]
    fn text_is_escaped() {
        let xml = do_export("D<1>", true, "a & b");
        assert!(xml.contains("domain=\"D&lt;1&gt;\""));
        assert!(xml.contains("a &amp; b"));
    }
}
