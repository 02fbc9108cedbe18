//! Where this node's DHCP leases are: the stores `wasm-ipam serve` renews
//! them from.
//!
//! The truth of what is leased is in each network's store (`record`); this
//! is only the list of stores to look in, since a network names its store
//! in a config the runtime keeps to itself. A call that acquired a lease
//! adds its store after it committed, if it is not listed yet. The list is
//! a file in the serve folder (beside the socket, `/run/wasm-ipam` by
//! default), which is emptied at a reboot, as are the leases with their
//! namespaces. With no serve socket (`WASM_IPAM_SOCKET` empty), no list is
//! kept: nothing would renew.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cni::config::StoreConf;

const FILE: &str = "dhcp-stores.json";

/// The renewer's wake-up, when this process runs one (`wasm-ipam serve`).
/// It lives here, beside the list, so a call that took a lease wakes the
/// renewer without reaching up into `serve`.
static WAKE: OnceLock<Mutex<Sender<()>>> = OnceLock::new();

/// Wakes the renewer of this process, if it runs one: a lease was taken.
pub fn poke() {
    if let Some(tx) = WAKE.get() {
        let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(());
    }
}

/// The receiving end of [`poke`], for the one renewer of this process:
/// `None` when a renewer already has it.
pub fn wake_channel() -> Option<Receiver<()>> {
    let (tx, rx) = mpsc::channel();
    WAKE.set(Mutex::new(tx)).ok().map(|()| rx)
}

/// A store, and the node whose leases it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Place {
    /// `ipam.store` (`null`: the embedded store in `dataDir`).
    pub store: Value,
    pub data_dir: PathBuf,
    pub node: String,
}

impl Place {
    pub fn new(store: &StoreConf, data_dir: &Path, node: &str) -> Place {
        Place {
            store: store.to_json(),
            data_dir: data_dir.to_path_buf(),
            node: node.to_string(),
        }
    }

    pub fn store_conf(&self) -> Option<StoreConf> {
        StoreConf::from_json(&self.store).ok()
    }
}

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Makes this process keep its list in `dir`: `wasm-ipam serve`, in its
/// socket's folder.
pub fn use_dir(dir: &Path) {
    let _ = DIR.set(dir.to_path_buf());
}

fn file() -> Option<PathBuf> {
    let dir = match DIR.get() {
        Some(d) => d.clone(),
        None => crate::envvars::socket()?.parent()?.to_path_buf(),
    };
    Some(dir.join(FILE))
}

/// The stores listed.
pub fn places() -> Vec<Place> {
    let Some(path) = file() else {
        return Vec::new();
    };
    read(&path)
}

fn read(path: &Path) -> Vec<Place> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Lists `place`, unless it is listed. A failure is logged: the lease is
/// kept either way, and only renewals depend on the list.
pub fn remember(place: &Place) {
    let Some(path) = file() else {
        return;
    };
    if read(&path).contains(place) {
        return;
    }
    if let Err(e) = add(&path, place) {
        log::warn!(
            "dhcp: cannot list the store in {} for renewals: {e}; wasm-ipam serve will not renew its leases",
            path.display()
        );
    }
}

/// Adds under an exclusive lock on the folder's lock file, through a
/// temporary file renamed into place, so concurrent calls lose no entry
/// and a reader never sees half a list.
fn add(path: &Path, place: &Place) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // A list root reads back to renew from: the folder must be root's.
    let dir = crate::trust::TrustedDir::open(dir, true).map_err(std::io::Error::other)?;
    let lock = dir.lock_file(&format!("{FILE}.lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let mut list = read(path);
    if list.contains(place) {
        return Ok(());
    }
    list.push(place.clone());
    let mut tmp = tempfile::NamedTempFile::new_in(dir.path())?;
    tmp.write_all(&serde_json::to_vec_pretty(&list).expect("a list serializes"))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_place_is_listed_once_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join(FILE);
        let a = Place::new(&StoreConf::Embedded, Path::new("/var/lib/x"), "node-a");
        let etcd = StoreConf::from_json(&serde_json::json!({"etcd": {
            "endpoints": ["http://10.0.0.1:2379"], "prefix": "/p", "timeoutMs": 900}}))
        .unwrap();
        let b = Place::new(&etcd, Path::new("/var/lib/y"), "node-a");
        add(&path, &a).unwrap();
        add(&path, &b).unwrap();
        add(&path, &a).unwrap();
        assert_eq!(read(&path), [a.clone(), b.clone()]);
        assert_eq!(b.store_conf(), Some(etcd));
        assert_eq!(a.store_conf(), Some(StoreConf::Embedded));
    }
}
