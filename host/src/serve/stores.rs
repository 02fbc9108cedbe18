//! Open SQLite connections, kept between calls in `wasm-ipam serve`.
//!
//! A one-shot call opens the database, reads its schema and closes it
//! again (0.2 ms of an ADD). A server keeps each connection once its call
//! is over, and hands it to the next call on the same `dataDir`: one
//! connection serves one call at a time, and concurrent calls get their
//! own, so each call is still its own transaction on its own connection,
//! serialized with every other writer by SQLite's lock, as before.
//!
//! Kept connections use WAL: its set-up (the shared-memory index) is paid
//! once, and a commit is one fsync of the log where the rollback journal
//! makes five, so the server's commits cost about half. One-shot calls
//! that run while the server is up join the WAL; once the server is gone,
//! the next one-shot call switches the database back (see
//! `store::sqlite`). `synchronous=FULL` either way: a commit survives a
//! power cut.
//!
//! A kept connection is used again only if it is safe to:
//!
//! - its database file is still the one in `dataDir` (same device and
//!   inode): a connection to a file that was removed or replaced would
//!   write where no other call looks, and the same address could be handed
//!   out twice;
//! - no transaction is left open on it (a failed COMMIT can leave one).
//!
//! The etcd store is not kept: its client and runtime are per call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::store::{DB_FILE, Journal, SqliteStore, Store, StoreError, Txn};
use crate::trust::TrustedDir;

/// Kept connections per data dir, at most: more are closed when returned.
const MAX_IDLE: usize = 8;

/// A database file's identity.
type FileId = (u64, u64);

/// The connections waiting for a call, per data dir.
type Idle = HashMap<PathBuf, Vec<(SqliteStore, FileId)>>;

static IDLE: OnceLock<Mutex<Idle>> = OnceLock::new();

/// Makes this process keep its connections: `wasm-ipam serve` only.
pub fn keep_open() {
    IDLE.get_or_init(Default::default);
}

fn file_id(dir: &TrustedDir) -> Option<FileId> {
    let st = dir.stat(DB_FILE).ok()??;
    Some((st.st_dev, st.st_ino))
}

/// The embedded store in the checked folder `dir`: a kept connection when
/// one is safe to use again, else a new one.
pub fn open(dir: &TrustedDir) -> Result<Box<dyn Store>, StoreError> {
    let Some(idle) = IDLE.get() else {
        return Ok(Box::new(SqliteStore::open_in(dir, Journal::Rollback)?));
    };
    let data_dir = dir.path();
    let now = file_id(dir);
    let kept = idle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(data_dir)
        .and_then(|list| list.pop());
    let (store, id) = match kept {
        Some((store, id)) if Some(id) == now => (store, id),
        // Dropped here: the file it points to is gone or another.
        _ => {
            let store = SqliteStore::open_in(dir, Journal::Wal)?;
            let id = file_id(dir).ok_or_else(|| {
                StoreError::Io(format!("{} vanished as it was opened", data_dir.display()))
            })?;
            (store, id)
        }
    };
    Ok(Box::new(Kept {
        store: Some(store),
        id,
        data_dir: data_dir.to_path_buf(),
    }))
}

/// A connection that goes back to the server's pool when the call is done.
struct Kept {
    store: Option<SqliteStore>,
    id: FileId,
    data_dir: PathBuf,
}

impl Store for Kept {
    fn begin(&self, namespace: &str) -> Result<Box<dyn Txn>, StoreError> {
        self.store
            .as_ref()
            .expect("kept until drop")
            .begin(namespace)
    }

    fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        self.store.as_ref().expect("kept until drop").namespaces()
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let (Some(store), Some(idle)) = (self.store.take(), IDLE.get()) else {
            return;
        };
        if !store.idle() {
            return;
        }
        let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(self.data_dir.clone()).or_default();
        if list.len() < MAX_IDLE {
            list.push((store, self.id));
        }
    }
}
