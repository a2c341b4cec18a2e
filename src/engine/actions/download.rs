//! The actions that write into the store: a secure backup's files, a domain's exports, and
//! the undo that discards them. Each file is complete (renamed into place) or absent.

#[allow(unused_imports)]
use super::step::{appliance, io, poll_until, string_arg, StepError};
use crate::appliance::RemoteFile;
use crate::backups::{Layout, Manifest, ManifestFile, ManifestFirmware};
use crate::check::ActionCall;
use crate::compile::Target;
use crate::engine::context::*;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use std::path::Path;

/// How many files of one secure backup download at once. Each request waits out the
/// appliance's own latency, so the nine files of a secure backup take three round trips
/// instead of nine (four at once would take three as well); a small number keeps the load
/// on the appliance, and the connections to it, low.
pub(crate) const FILES_AT_ONCE: usize = 3;

/// How many listed bytes of one backup may download at once: a file this large (or listed
/// without a size) downloads alone, smaller ones share the budget. A task's memory in flight
/// thus stays about what one download of a large file holds (the client's pipeline of 2 MiB
/// of batches), as when files downloaded one at a time.
pub(crate) const BYTES_AT_ONCE: u64 = 2 * 1024 * 1024;

/// What a listed file counts against [`BYTES_AT_ONCE`].
fn weight(f: &RemoteFile) -> u64 {
    if f.size == 0 {
        BYTES_AT_ONCE
    } else {
        f.size.min(BYTES_AT_ONCE)
    }
}

/// Runs a download until it ends or the run is interrupted: an interrupt stops it (its
/// partial files are removed as the downloads are dropped), the step is left for `resume` to
/// redo, and the task's `always` steps (the unquiesce) still run.
pub(super) async fn until_interrupted<T, E: Into<StepError>>(
    ctx: &RunCtx,
    download: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, StepError> {
    let interrupted = async {
        while !ctx.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        r = download => r.map_err(Into::into),
        () = interrupted => Err(StepError::interrupted("the download was stopped by an interrupt")),
    }
}

/// Runs file work that waits on the disk (writes, renames, fsyncs) on tokio's blocking
/// threads: on a busy disk one fsync takes milliseconds, and a worker thread held by it
/// stalls every other task of the run (requests, answers, timers) as long. The work runs to
/// its end even if the step is dropped meanwhile, as it did when it ran in place; a panic in
/// it goes on to the task's runner.
async fn on_disk<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StepError::permanent(format!("writing to the store: {e}"))),
    }
}

/// Downloads a secure backup's listed files into `tmp_dir`, up to [`FILES_AT_ONCE`] (and
/// [`BYTES_AT_ONCE`]) at a time, started in listing order; returns them in listing order.
/// Each file is streamed to disk, hashed and fsynced by the client, and held to the size the
/// appliance listed. The first failure ends it: the downloads still running are dropped,
/// which removes their partial files, and nothing more is started.
async fn download_files(
    t: &Task,
    app: &dyn Appliance,
    listing: &[RemoteFile],
    tmp_dir: &Path,
) -> Result<Vec<ManifestFile>, StepError> {
    let one = |i: usize| {
        let f = &listing[i];
        let name = output::sanitize(&f.name);
        let dest = tmp_dir.join(&name);
        async move {
            // Held to the size the appliance listed: a file that runs past it is not it.
            let d = if f.size > 0 {
                app.download_at_most(&f.path, &dest, f.size).await?
            } else {
                app.download(&f.path, &dest).await?
            };
            if f.size > 0 && d.size != f.size {
                // The client wrote it whole: it is removed with the temporary directory.
                return Err(StepError::transient(format!(
                    "{}: {} is {} bytes, the appliance listed {}",
                    t.device, f.name, d.size, f.size
                )));
            }
            Ok((
                i,
                ManifestFile {
                    path: name,
                    size: d.size,
                    sha256: d.sha256,
                },
            ))
        }
    };
    let mut files: Vec<Option<ManifestFile>> = vec![None; listing.len()];
    let mut running = FuturesUnordered::new();
    let (mut next, mut bytes) = (0, 0u64);
    loop {
        while next < listing.len() && running.len() < FILES_AT_ONCE {
            let w = weight(&listing[next]);
            if !running.is_empty() && bytes + w > BYTES_AT_ONCE {
                break;
            }
            bytes += w;
            running.push(one(next));
            next += 1;
        }
        let Some(done) = running.next().await else {
            break;
        };
        // On an error, returning drops the downloads still running: each removes its file.
        let (i, file) = done?;
        bytes -= weight(&listing[i]);
        files[i] = Some(file);
        crate::engine::failpoint::hit("mid-download");
    }
    Ok(files.into_iter().flatten().collect())
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
    let mut files = Vec::new();
    let downloaded = async {
        let tmp = tmp_dir.clone();
        on_disk(move || {
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp)
                    .map_err(|e| io("remove a stale temporary directory", e))?;
            }
            output::create_dirs(&tmp).map_err(|e| io("create the backup directory", e))
        })
        .await?;
        files = until_interrupted(ctx, download_files(t, app.as_ref(), &listing, &tmp_dir)).await?;
        let m = manifest(ctx, t, st, started, files.clone());
        serde_json::to_vec_pretty(&m).map_err(|e| StepError::permanent(e.to_string()))
    }
    .await;
    let result = match downloaded {
        Ok(json) => {
            let (tmp, dest) = (tmp_dir.clone(), final_dir.clone());
            let commit = on_disk(move || {
                output::write_atomic(&tmp.join("manifest.json"), &json)
                    .map_err(|e| io("write the manifest", e))?;
                if dest.exists() {
                    std::fs::remove_dir_all(&dest)
                        .map_err(|e| io("replace an earlier attempt", e))?;
                }
                crate::engine::failpoint::hit("before-rename");
                output::commit_rename(&tmp, &dest)
                    .map_err(|e| io("move the backup into place", e))?;
                crate::engine::failpoint::hit("after-rename");
                Ok(())
            });
            // Everything is downloaded: the appliance's directory goes while the backup is
            // moved into place.
            let (committed, _) = tokio::join!(commit, app.remove_directory(&remote));
            committed
        }
        Err(e) => {
            let _ = app.remove_directory(&remote).await;
            Err(e)
        }
    };
    if let Err(e) = result {
        let tmp = tmp_dir.clone();
        let _ = on_disk(move || {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        })
        .await;
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
    let created = abs_dir.clone();
    on_disk(move || {
        output::create_dirs(&created).map_err(|e| io("create the export directory", e))
    })
    .await?;
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
        let (from, to) = (tmp.clone(), dest.clone());
        on_disk(move || {
            crate::engine::failpoint::hit("before-rename");
            output::commit_rename(&from, &to).map_err(|e| io("move the export into place", e))
        })
        .await?;
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
    let written = mpath.clone();
    on_disk(move || output::write_atomic(&written, &json).map_err(|e| io("write the manifest", e)))
        .await?;
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
