//! Who writes the state file: the sidecar `<state file>.owner` beside it.
//!
//! The process that opens the state file for writing (redb's single writer) holds an exclusive
//! `flock` on the sidecar for as long as it has the file open, and keeps in it, as JSON, who
//! it is and which runs it writes. So any other process can tell, without writing anything:
//! - whether a writer is alive: the lock is held (the kernel drops it when the process dies,
//!   however it dies, so a stale file never names a live writer);
//! - who it is, for "waiting for the state file: run 12 of plan ..." messages;
//! - whether a run that the file says is RUNNING still has its process: its writer is alive
//!   and names it (a run whose process is gone shows INTERRUPTED).
//!
//! The file is rewritten in place, padded with spaces and never shortened while its writer
//! lives, so a reader sees the old text or the new, never a shorter mix; a reader that cannot
//! parse what it read tries again. Its format is in docs/checkpoint-format.md.

use std::fs::File;
use std::io::{ErrorKind, Read as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use rustix::fs::{flock, FlockOperation};

use super::types::{RunId, StoreError};

/// The longest command line kept (the rest is cut).
const MAX_COMMAND: usize = 1000;

/// How many runs the sidecar lists at most (a `prune` appends to many old runs).
const MAX_RUNS: usize = 64;

pub use super::types::{OwnedRun, Owner};

impl Owner {
    /// Whether this process writes run `id` (created it, or continues it).
    pub fn writes(&self, id: RunId) -> bool {
        id >= self.first_new_run || self.runs.iter().any(|r| r.id == id)
    }

    /// This process, opening a state file whose next run will be `first_new_run`.
    fn this_process(first_new_run: RunId) -> Owner {
        let mut command = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if command.len() > MAX_COMMAND {
            let mut cut = MAX_COMMAND;
            while !command.is_char_boundary(cut) {
                cut -= 1;
            }
            command.truncate(cut);
            command.push_str("...");
        }
        Owner {
            pid: std::process::id(),
            user: user(),
            host: host(),
            command,
            started: Utc::now(),
            first_new_run,
            runs: Vec::new(),
            serve: None,
        }
    }
}

/// Who holds a state file for writing, as another process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: no process of this dpplan has it open for writing.
    Nobody,
    /// A live process whose sidecar cannot be read (yet): it may write any run.
    Unknown,
    /// A live process, as it describes itself.
    Known(Box<Owner>),
}

impl Holder {
    /// Whether a live process writes run `id` (when unsure: yes).
    pub fn writes(&self, id: RunId) -> bool {
        match self {
            Holder::Nobody => false,
            Holder::Unknown => true,
            Holder::Known(owner) => owner.writes(id),
        }
    }

    /// The owner, when known.
    pub fn owner(&self) -> Option<&Owner> {
        match self {
            Holder::Known(owner) => Some(owner),
            _ => None,
        }
    }
}

/// The sidecar of the state file at `state`.
pub fn sidecar(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

/// Who holds the state file at `state` for writing. Takes a shared lock on the sidecar for
/// an instant to find out; writes nothing.
pub fn holder(state: &Path) -> Holder {
    let mut file = match File::open(sidecar(state)) {
        Ok(f) => f,
        // Every writer of this dpplan creates the sidecar before it writes the file.
        Err(e) if e.kind() == ErrorKind::NotFound => return Holder::Nobody,
        Err(_) => return Holder::Unknown,
    };
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = flock(&file, FlockOperation::Unlock);
            return Holder::Nobody;
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {}
        Err(_) => return Holder::Unknown,
    }
    // Held: read what the writer says of itself. A rewrite under way may show a mix for an
    // instant; read again.
    for _ in 0..5 {
        let mut text = String::new();
        if file
            .read_to_string(&mut text)
            .and_then(|_| std::io::Seek::rewind(&mut file))
            .is_err()
        {
            return Holder::Unknown;
        }
        if let Ok(owner) = serde_json::from_str::<Owner>(&text) {
            return Holder::Known(Box::new(owner));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Holder::Unknown
}

/// The writer's hold on the sidecar: locked while it lives, emptied when dropped.
#[derive(Debug)]
pub(super) struct Claim {
    file: File,
    path: PathBuf,
    state: Mutex<Written>,
}

#[derive(Debug)]
struct Written {
    owner: Owner,
    /// The sidecar's length: what has been written is padded to at least this.
    len: usize,
}

impl Claim {
    /// Locks the sidecar of `state` (creating it) and records this process in it. Called
    /// once the state file is open for writing, so the only contenders are readers, each
    /// holding a shared lock for an instant: this waits them out.
    pub fn take(state: &Path, first_new_run: RunId) -> Result<Claim, StoreError> {
        let path = sidecar(state);
        let fail = |source: std::io::Error| StoreError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| fail(e.into()))?;
        // What a writer killed before it emptied the file left: shorten it now, while no
        // reader can look (they only read while the lock is held, and it is ours).
        file.set_len(0).map_err(fail)?;
        let claim = Claim {
            file,
            path: path.clone(),
            state: Mutex::new(Written {
                owner: Owner::this_process(first_new_run),
                len: 0,
            }),
        };
        claim.update(|_| true)?;
        Ok(claim)
    }

    /// Whether the sidecar already names run `id` as this process's.
    pub fn writes(&self, id: RunId) -> bool {
        self.state.lock().is_ok_and(|s| s.owner.writes(id))
    }

    /// Records that this process writes run `id` of plan `plan` (a no-op when it says so
    /// already, by number and plan).
    pub fn add_run(&self, id: RunId, plan: &str) -> Result<(), StoreError> {
        self.update(|owner| {
            if owner.runs.iter().any(|r| r.id == id) {
                return false;
            }
            owner.runs.push(OwnedRun {
                id,
                plan: plan.to_string(),
            });
            if owner.runs.len() > MAX_RUNS {
                owner.runs.remove(0);
            }
            true
        })
    }

    /// Records that this process is `dpplan serve` with its API at `url`.
    pub fn set_serve(&self, url: &str) -> Result<(), StoreError> {
        self.update(|owner| {
            owner.serve = Some(url.to_string());
            true
        })
    }

    /// Applies `change` to the record; rewrites the sidecar when it returns true.
    fn update(&self, change: impl FnOnce(&mut Owner) -> bool) -> Result<(), StoreError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| StoreError::Batch("the owner record's lock is poisoned".into()))?;
        if !change(&mut state.owner) {
            return Ok(());
        }
        let mut text =
            serde_json::to_string(&state.owner).map_err(|source| StoreError::Encode {
                what: "the owner record",
                source,
            })?;
        text.push('\n');
        // Never shorter than before: trailing spaces are JSON whitespace.
        while text.len() < state.len {
            text.push(' ');
        }
        self.file
            .write_all_at(text.as_bytes(), 0)
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })?;
        state.len = text.len();
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Empty, then unlocked as the file closes: nobody is named once nobody writes. The
        // file stays, since a process waiting on its lock may hold it open already.
        let _ = self.file.set_len(0);
    }
}

fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown host".into())
}
