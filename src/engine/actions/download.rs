//! The actions that write into the store: a secure backup's files, a domain's exports, and
//! the undo that discards them. Each file is complete (renamed into place) or absent.

#[allow(unused_imports)]
use super::step::{appliance, io, poll_until, string_arg, StepError};
use crate::appliance::ApplianceError;
use crate::backups::{Layout, Manifest, ManifestFile, ManifestFirmware};
use crate::check::ActionCall;
use crate::compile::Target;
use crate::engine::context::*;

/// Runs a download until it ends or the run is interrupted: an interrupt stops it (its
/// partial file is removed as the download is dropped), the step is left for `resume` to
/// redo, and the task's `always` steps (the unquiesce) still run.
pub(super) async fn until_interrupted<T>(
    ctx: &RunCtx,
    download: impl std::future::Future<Output = Result<T, ApplianceError>>,
) -> Result<T, StepError> {
    let interrupted = async {
        while !ctx.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        r = download => r.map_err(StepError::from),
        () = interrupted => Err(StepError::interrupted("the download was stopped by an interrupt")),
    }
}

pub(super) fn store_dir(ctx: &RunCtx) -> Result<PathBuf, StepError> {
    crate::engine::store_root(&ctx.program)
        .ok_or_else(|| StepError::permanent("the program declares no store"))
}

pub(super) fn manifest(
    ctx: &RunCtx,
    t: &Task,
    st: &TaskProgress,
    started: DateTime<Utc>,
    files: Vec<ManifestFile>,
) -> Manifest {
    let fw = st.firmware.clone().unwrap_or_default();
    Manifest {
        run: ctx.run,
        task: t.id,
        device: t.device.clone(),
        domain: t.target.domain_label().to_string(),
        action: t.action.clone(),
        firmware: ManifestFirmware {
            version: fw.version,
            build: fw.build,
            machine_type: fw.machine_type,
            model: fw.model_type,
            serial: fw.serial,
        },
        started,
        finished: ctx.clock.now(),
        files,
    }
}

pub(super) async fn secure_backup(
    ctx: &RunCtx,
    t: &Task,
    call: &ActionCall,
    st: &mut TaskProgress,
) -> Result<(), StepError> {
    let app = appliance(ctx, t)?;
    let cert = string_arg(t, call, "cert").unwrap_or_default();
    let started = ctx.clock.now();
    let remote = format!("temporary:///dpplan-{}-{}/", ctx.run, t.id);
    // A directory left by an earlier attempt would mix two backups.
    if !app.list_directory(&remote).await?.is_empty() {
        app.remove_directory(&remote).await?;
    }
    app.secure_backup(&cert, &remote).await?;
    let (lister, dir) = (app.as_ref(), remote.as_str());
    let listing = poll_until(ctx, ctx.options.backup_timeout, || async move {
        let l = lister.list_directory(dir).await?;
        Ok(l.iter()
            .any(|f| f.name == "backupmanifest.xml")
            .then_some(l))
    })
    .await
    .and_then(|l| {
        l.ok_or_else(|| {
            StepError::transient(format!(
                "{}: the secure backup did not complete within {}s",
                t.device,
                ctx.options.backup_timeout.as_secs()
            ))
        })
    });
    // From here on the appliance holds the backup in its small temporary: it is removed
    // whatever becomes of the download, or backups pile up there.
    let listing = match listing {
        Ok(l) => l,
        Err(e) => {
            let _ = app.remove_directory(&remote).await;
            return Err(e);
        }
    };
    let root = store_dir(ctx)?;
    let ts = output::timestamp(ctx.started);
    let layout = Layout::secure_backup(&t.device, &ts);
    let Layout::SecureBackup { dir } = &layout else {
        return Err(StepError::permanent("layout"));
    };
    let final_dir = root.join(dir);
    let tmp_dir = output::secure_backup_tmp(&final_dir, &ts, t.id);
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir)
            .map_err(|e| io("remove a stale temporary directory", e))?;
    }
    output::create_dirs(&tmp_dir).map_err(|e| io("create the backup directory", e))?;
    let mut files = Vec::new();
    let result = async {
        for f in &listing {
            let name = output::sanitize(&f.name);
            let dest = tmp_dir.join(&name);
            // Held to the size the appliance listed: a file that runs past it is not it.
            let d = if f.size > 0 {
                until_interrupted(ctx, app.download_at_most(&f.path, &dest, f.size)).await?
            } else {
                until_interrupted(ctx, app.download(&f.path, &dest)).await?
            };
            if f.size > 0 && d.size != f.size {
                return Err(StepError::transient(format!(
                    "{}: {} is {} bytes, the appliance listed {}",
                    t.device, f.name, d.size, f.size
                )));
            }
            files.push(ManifestFile {
                path: name,
                size: d.size,
                sha256: d.sha256,
            });
            crate::engine::failpoint::hit("mid-download");
        }
        let m = manifest(ctx, t, st, started, files.clone());
        let json =
            serde_json::to_vec_pretty(&m).map_err(|e| StepError::permanent(e.to_string()))?;
        output::write_atomic(&tmp_dir.join("manifest.json"), &json)
            .map_err(|e| io("write the manifest", e))?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| io("replace an earlier attempt", e))?;
        }
        crate::engine::failpoint::hit("before-rename");
        output::commit_rename(&tmp_dir, &final_dir)
            .map_err(|e| io("move the backup into place", e))?;
        crate::engine::failpoint::hit("after-rename");
        Ok::<(), StepError>(())
    }
    .await;
    let _ = app.remove_directory(&remote).await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp_dir);
        return Err(e);
    }
    let mut records = Vec::new();
    for f in &files {
        let rel = dir.join(&f.path);
        let rec = FileRecord {
            path: rel.display().to_string(),
            size: f.size,
            sha256: f.sha256.clone(),
        };
        st.files.push((final_dir.join(&f.path), rec.clone()));
        records.push(Record::File {
            task: t.id,
            file: rec,
        });
    }
    st.manifests.push(final_dir.join("manifest.json"));
    st.pending.extend(records);
    Ok(())
}

pub(super) async fn export(ctx: &RunCtx, t: &Task, st: &mut TaskProgress) -> Result<(), StepError> {
    let app = appliance(ctx, t)?;
    let started = ctx.clock.now();
    let root = store_dir(ctx)?;
    let ts = output::timestamp(ctx.started);
    let domain = t.target.domain_label().to_string();
    let layout = Layout::export(&t.device, &domain, &ts);
    let Layout::Export { dir, stem } = &layout else {
        return Err(StepError::permanent("layout"));
    };
    let abs_dir = root.join(dir);
    output::create_dirs(&abs_dir).map_err(|e| io("create the export directory", e))?;
    let comment = format!("dpplan run {} task {}", ctx.run, t.id);
    let mut kinds = vec![true];
    if st.save_needed && matches!(t.target, Target::Domain(_)) {
        kinds.push(false);
    }
    let mut files = Vec::new();
    for persisted in kinds {
        let name = output::export_file(stem, persisted);
        let dest = abs_dir.join(&name);
        let tmp = output::tmp_name(&dest);
        let d = match &t.target {
            Target::Domain(dname) => {
                until_interrupted(ctx, app.export_domain(dname, persisted, &comment, &tmp)).await
            }
            _ => until_interrupted(ctx, app.export_all(&comment, &tmp)).await,
        };
        let d = match d {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        crate::engine::failpoint::hit("before-rename");
        output::commit_rename(&tmp, &dest).map_err(|e| io("move the export into place", e))?;
        let rec = FileRecord {
            path: dir.join(&name).display().to_string(),
            size: d.size,
            sha256: d.sha256.clone(),
        };
        st.files.push((dest, rec.clone()));
        files.push(ManifestFile {
            path: name,
            size: d.size,
            sha256: d.sha256,
        });
        st.pending.push(Record::File {
            task: t.id,
            file: rec,
        });
    }
    let m = manifest(ctx, t, st, started, files);
    let json = serde_json::to_vec_pretty(&m).map_err(|e| StepError::permanent(e.to_string()))?;
    let mpath = root.join(layout.manifest());
    output::write_atomic(&mpath, &json).map_err(|e| io("write the manifest", e))?;
    st.manifests.push(mpath);
    Ok(())
}

pub(super) async fn discard(
    ctx: &RunCtx,
    t: &Task,
    st: &mut TaskProgress,
) -> Result<(), StepError> {
    let mut dirs = Vec::new();
    for (p, _) in st.files.drain(..) {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove a backup file", e)),
        }
        if let Some(d) = p.parent() {
            dirs.push(d.to_path_buf());
        }
    }
    for m in st.manifests.drain(..) {
        let _ = std::fs::remove_file(&m);
        if let Some(d) = m.parent() {
            dirs.push(d.to_path_buf());
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        // A secure backup's own directory goes too, once empty.
        if t.target == Target::Device {
            let _ = std::fs::remove_dir(&d);
        }
        if let Some(parent) = d.parent() {
            let _ = output::sync_dir(parent);
        }
        let _ = output::sync_dir(&d);
    }
    ctx.log(
        Some(t.id),
        None,
        "discarded the task's files from the store".into(),
    )
    .await
    .map_err(|e| StepError::permanent(e.to_string()))
}
