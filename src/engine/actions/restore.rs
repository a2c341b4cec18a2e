//! The restore actions: choosing the backup (`validate ... from`), checkpoints, imports,
//! uploads, `SecureRestore`, waiting for the appliance, and removing the upload.
//!
//! Idempotence on resume: the backup chosen by `validate` is recorded with the task's facts,
//! so a resumed task restores the same one even if a newer backup appeared; the checkpoint is
//! named after the run and task (`dpplan-<run>-<task>`): saving it again when it exists, or
//! removing or rolling back one that is gone, succeeds; an import imports the same export again
//! (an import is idempotent); an upload writes the same files again; a `SecureRestore` that may
//! have happened before (its step in flight at a crash) is not repeated when the uploaded files
//! are gone (the restart cleared `temporary:`); waiting reads the appliance afresh.

use super::step::{appliance, log, param, StepError};
use crate::appliance::soma::ImportOptions;
use crate::appliance::{Appliance, CheckpointOp};
use crate::backups::catalogue::{self, Chosen};
use crate::check::{ActionCall, BackupRef, Value};
use crate::compile::{Target, Task};
use crate::engine::context::{RunCtx, TaskProgress};
use crate::store::Record;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `wait` gives the appliance by default to go down and answer again.
const DEFAULT_WAIT: Duration = Duration::from_secs(15 * 60);
/// How long `wait` looks for the restart before taking an appliance that kept answering as
/// restarted.
const RESTART_GRACE: Duration = Duration::from_secs(30);

fn bool_arg(t: &Task, call: &ActionCall, arg: &str, default: bool) -> bool {
    match param(t, call, arg) {
        Some(Value::Bool(b)) => *b,
        _ => default,
    }
}

fn backup_arg(t: &Task, call: &ActionCall) -> Option<BackupRef> {
    match param(t, call, "from")? {
        Value::Backup(b) => Some(b.clone()),
        _ => None,
    }
}

fn domain_of(t: &Task) -> Result<&str, StepError> {
    match &t.target {
        Target::Domain(d) => Ok(d),
        _ => Err(StepError::permanent(format!(
            "{}: a domain restore needs a domain task",
            t.device
        ))),
    }
}

/// The checkpoint a task saves: named after the run and the task.
pub(crate) fn checkpoint_name(ctx: &RunCtx, t: &Task) -> String {
    format!("dpplan-{}-{}", ctx.run, t.id)
}

/// The appliance folder a secure restore's files are uploaded to.
fn upload_dir(ctx: &RunCtx, t: &Task) -> String {
    format!("temporary:///dpplan-restore-{}-{}", ctx.run, t.id)
}

/// Chooses the backup `from` names (`validate`); the choice is recorded with the facts.
pub(super) fn choose(ctx: &RunCtx, t: &Task, call: &ActionCall) -> Result<Chosen, StepError> {
    let from = backup_arg(t, call).unwrap_or(BackupRef::Latest);
    let root = crate::engine::store_root(&ctx.program).unwrap_or_else(|| PathBuf::from("."));
    let domain = match &t.target {
        Target::Domain(d) => Some(d.as_str()),
        _ => None,
    };
    let chosen = catalogue::choose(&root, &t.device, domain, &from)
        .map_err(|e| StepError::permanent(format!("{}: from = {from}: {e}", t.device)))?;
    catalogue::check_files(&chosen).map_err(StepError::permanent)?;
    Ok(chosen)
}

/// The firmware version of the chosen backup, when known.
pub(super) fn backup_firmware(chosen: &Chosen) -> Option<String> {
    if let Some(v) = chosen
        .entry
        .as_ref()
        .map(|e| e.manifest.firmware.version.clone())
        .filter(|v| !v.is_empty())
    {
        return Some(v);
    }
    if chosen.path.is_file() {
        return crate::backups::export::read(&chosen.path)
            .ok()
            .map(|c| c.firmware)
            .filter(|v| !v.is_empty());
    }
    None
}

/// The backup `validate` chose (after a resume: as recorded).
fn source(t: &Task, st: &TaskProgress) -> Result<PathBuf, StepError> {
    st.source.clone().ok_or_else(|| {
        StepError::permanent(format!(
            "{}: no backup chosen: the task's validate step did not run",
            t.device
        ))
    })
}

/// `dp.checkpoint`: SaveCheckpoint; when the domain is full, the oldest `dpplan-` checkpoint
/// makes room.
pub(super) async fn checkpoint(
    ctx: &RunCtx,
    t: &Task,
    st: &mut TaskProgress,
    step: &str,
) -> Result<(), StepError> {
    let app = appliance(ctx, t)?;
    let domain = domain_of(t)?;
    let name = checkpoint_name(ctx, t);
    let Err(first) = app.checkpoint(domain, CheckpointOp::Save, &name).await else {
        return Ok(());
    };
    if first.is_transient() {
        return Err(first.into());
    }
    let names = app.checkpoints(domain).await.map_err(|_| first.clone())?;
    if names.contains(&name) {
        return Ok(());
    }
    let Some(oldest) = names.iter().find(|n| n.starts_with("dpplan-")) else {
        return Err(first.into());
    };
    app.checkpoint(domain, CheckpointOp::Remove, oldest).await?;
    log(
        ctx,
        t,
        st,
        step,
        format!("{domain}: removed checkpoint {oldest} to make room ({first})"),
    );
    app.checkpoint(domain, CheckpointOp::Save, &name)
        .await
        .map_err(StepError::from)
}

/// `dp.rollback_checkpoint` (then the checkpoint is removed) and `dp.remove_checkpoint`.
pub(super) async fn end_checkpoint(
    ctx: &RunCtx,
    t: &Task,
    rollback: bool,
) -> Result<(), StepError> {
    let app = appliance(ctx, t)?;
    let domain = domain_of(t)?;
    let name = checkpoint_name(ctx, t);
    let exists = |app: std::sync::Arc<dyn Appliance>, name: String| async move {
        app.checkpoints(domain)
            .await
            .map(|names| names.contains(&name))
    };
    if rollback {
        if let Err(e) = app.checkpoint(domain, CheckpointOp::Rollback, &name).await {
            // Rolled back and removed before a crash: nothing left to do.
            if !e.is_transient() && matches!(exists(app.clone(), name.clone()).await, Ok(false)) {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    if let Err(e) = app.checkpoint(domain, CheckpointOp::Remove, &name).await {
        if !e.is_transient() && matches!(exists(app.clone(), name.clone()).await, Ok(false)) {
            return Ok(());
        }
        return Err(e.into());
    }
    Ok(())
}

/// `dp.import`: the import (or its dry run) of the chosen export; its report is recorded, and
/// any object or file the appliance refused fails the step.
pub(super) async fn import(
    ctx: &RunCtx,
    t: &Task,
    call: &ActionCall,
    st: &mut TaskProgress,
    step: &str,
) -> Result<(), StepError> {
    let app = appliance(ctx, t)?;
    let domain = domain_of(t)?;
    let zip = source(t, st)?;
    let options = ImportOptions {
        dry_run: bool_arg(t, call, "dry_run", false),
        overwrite_files: bool_arg(t, call, "overwrite_files", true),
        overwrite_objects: bool_arg(t, call, "overwrite_objects", true),
        rewrite_local_ip: bool_arg(t, call, "rewrite_local_ip", false),
        deployment_policy: match param(t, call, "deployment_policy") {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        },
    };
    // An all-domains export holds the domain's export inside: imported from a scratch copy.
    let scratch = tempfile::NamedTempFile::new()
        .map_err(|e| StepError::permanent(format!("a scratch file: {e}")))?;
    let zip = crate::backups::export::domain_export(&zip, domain, scratch.path())
        .map_err(|e| StepError::permanent(format!("{}: {e}", zip.display())))?;
    let report = app.import(domain, &zip, &options).await?;
    if !options.dry_run {
        // The appliance has imported; nothing of it is recorded yet.
        crate::engine::failpoint::hit("after-import");
    }
    let failures = report.failures();
    let c = report.counts();
    log(
        ctx,
        t,
        st,
        step,
        format!(
            "{domain}: {}{} new, {} modified, {} unchanged, {} refused",
            if options.dry_run { "dry run: " } else { "" },
            c.new,
            c.modified,
            c.unchanged,
            c.errors
        ),
    );
    st.pending.push(Record::Import {
        task: t.id,
        step: step.to_string(),
        report,
    });
    if failures.is_empty() {
        return Ok(());
    }
    Err(StepError::permanent(format!(
        "{domain}: {} refused: {}",
        if failures.len() == 1 {
            "1 object".to_string()
        } else {
            format!("{} objects", failures.len())
        },
        failures.join("; ")
    )))
}

/// The files of a secure backup the appliance reads: all but dpplan's `manifest.json`.
fn backup_files(dir: &Path) -> Result<Vec<PathBuf>, StepError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| StepError::permanent(format!("{}: {e}", dir.display())))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|f| f.is_file()))
        .filter(|e| e.file_name() != "manifest.json")
        .map(|e| e.path())
        .collect();
    files.sort();
    if !files
        .iter()
        .any(|f| f.file_name().is_some_and(|n| n == "backupmanifest.xml"))
    {
        return Err(StepError::permanent(format!(
            "{}: not a secure backup (no backupmanifest.xml)",
            dir.display()
        )));
    }
    Ok(files)
}

/// `dp.upload`: the secure backup's files into a folder of `temporary:`.
pub(super) async fn upload(
    ctx: &RunCtx,
    t: &Task,
    st: &mut TaskProgress,
    step: &str,
) -> Result<(), StepError> {
    let app = appliance(ctx, t)?;
    let dir = source(t, st)?;
    let remote = upload_dir(ctx, t);
    let files = backup_files(&dir)?;
    let mut bytes = 0u64;
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        app.upload(f, &format!("{remote}/{name}")).await?;
        bytes += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    }
    log(
        ctx,
        t,
        st,
        step,
        format!(
            "uploaded {} files ({bytes} bytes) to {remote}/",
            files.len()
        ),
    );
    Ok(())
}

/// Whether this step may have run before: a retry, or a task of a resumed run.
fn repeated(ctx: &RunCtx, t: &Task, attempt: u32) -> bool {
    attempt > 1 || ctx.prior.contains_key(&t.id)
}

/// `dp.secure_restore`: SecureRestore from the uploaded files (validate=on: a check only).
pub(super) async fn secure_restore(
    ctx: &RunCtx,
    t: &Task,
    call: &ActionCall,
    st: &mut TaskProgress,
    step: &str,
    attempt: u32,
) -> Result<(), StepError> {
    let app = appliance(ctx, t)?;
    let cred = match param(t, call, "cred") {
        Some(Value::Str(s)) => s.clone(),
        _ => return Err(StepError::permanent("dp.secure_restore needs `cred`")),
    };
    let validate = bool_arg(t, call, "validate", false);
    let remote = upload_dir(ctx, t);
    let redo = repeated(ctx, t, attempt);
    if !validate && redo {
        // It may have restored before a crash: the restart clears temporary:. An appliance
        // that does not answer is taken to be restarting: waited for, then asked.
        let deadline = ctx.clock.now() + chrono::Duration::seconds(DEFAULT_WAIT.as_secs() as i64);
        let mut polls = 0;
        let files = loop {
            match app.list_directory(&remote).await {
                Ok(files) => break files,
                Err(e) if e.is_transient() && ctx.clock.now() < deadline => {
                    ctx.clock
                        .sleep(super::step::poll_delay(ctx, &mut polls))
                        .await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if !files.iter().any(|f| f.name == "backupmanifest.xml") {
            log(
                ctx,
                t,
                st,
                step,
                format!("{remote}/ is gone: the restore ran before the interruption"),
            );
            return Ok(());
        }
    }
    app.secure_restore(&cred, &format!("{remote}/"), validate)
        .await?;
    if !validate {
        // The appliance is restarting; nothing of it is recorded yet.
        crate::engine::failpoint::hit("after-secure-restore");
    }
    Ok(())
}

/// `dp.wait_ready`: until the appliance answers again, as the backup's device (serial), after
/// its restart; bounded by `timeout`.
pub(super) async fn wait_ready(
    ctx: &RunCtx,
    t: &Task,
    call: &ActionCall,
    st: &mut TaskProgress,
    step: &str,
    attempt: u32,
) -> Result<(), StepError> {
    let app = appliance(ctx, t)?;
    let limit = super::step::duration_arg(t, call, "timeout").unwrap_or(DEFAULT_WAIT);
    let want_serial = st.firmware.as_ref().map(|f| f.serial.clone());
    let start = ctx.clock.now();
    let grace = if repeated(ctx, t, attempt) {
        Duration::ZERO
    } else {
        RESTART_GRACE.min(limit)
    };
    let deadline = start + chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX);
    let mut went_down = false;
    let mut polls = 0;
    let fw = loop {
        let elapsed = (ctx.clock.now() - start).to_std().unwrap_or_default();
        let read = match app.probe().await {
            Ok(()) => app.firmware().await,
            Err(e) => Err(e),
        };
        match read {
            Err(e) if e.is_transient() => went_down = true,
            Err(e) => return Err(e.into()),
            Ok(fw) if went_down || elapsed >= grace => break fw,
            Ok(_) => {}
        }
        if ctx.clock.now() >= deadline {
            return Err(StepError::permanent(format!(
                "{}: did not answer again within {}s of the restore",
                t.device,
                limit.as_secs()
            )));
        }
        ctx.clock
            .sleep(super::step::poll_delay(ctx, &mut polls))
            .await;
    };
    if let Some(serial) = want_serial.filter(|s| !s.is_empty()) {
        if fw.serial != serial {
            return Err(StepError::permanent(format!(
                "{}: answers as serial {}, not {serial}",
                t.device, fw.serial
            )));
        }
    }
    log(
        ctx,
        t,
        st,
        step,
        format!(
            "{} answers again: firmware {}, serial {}{}",
            t.device,
            fw.version,
            fw.serial,
            if went_down { "" } else { " (no restart seen)" }
        ),
    );
    Ok(())
}

/// `dp.remove_upload`: RemoveDir of the uploaded files (gone already: done).
pub(super) async fn remove_upload(ctx: &RunCtx, t: &Task) -> Result<(), StepError> {
    let app = appliance(ctx, t)?;
    let remote = upload_dir(ctx, t);
    match app.remove_directory(&remote).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_transient() => Err(e.into()),
        Err(e) => match app.list_directory(&remote).await {
            Ok(files) if files.is_empty() => Ok(()),
            _ => Err(e.into()),
        },
    }
}
