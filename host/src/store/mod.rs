//! The transactional key-value store that policies run against.
//!
//! Every invocation runs the policy inside one transaction. It commits only
//! when the policy succeeds; an error or a trap rolls it back. Backends sit
//! behind [`Store`] so that a distributed one (etcd, with optimistic
//! transactions) fits without touching policies: a backend reports a lost
//! race as [`StoreError::Conflict`], and the host re-runs the policy from
//! scratch, which is safe because the sandbox has no other side effects.

mod etcd;
mod memory;
mod sqlite;

pub use etcd::EtcdStore;
pub use memory::MemoryStore;
pub use sqlite::{DB_FILE, Journal, SqliteStore};

use crate::cni::CniError;

/// One entry of a scan.
pub type Entry = (String, Vec<u8>);

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another transaction changed what this one read; run it again.
    #[error("the store changed under this transaction")]
    Conflict,
    /// The store is locked by others for longer than we wait.
    #[error("the store is busy: {0}")]
    Busy(String),
    /// A remote store did not answer in time or refused the connection.
    #[error("{0}")]
    Unreachable(String),
    /// The store cannot be read or written (permissions, a full disk, a
    /// damaged file).
    #[error("{0}")]
    Io(String),
    /// The store's settings cannot work: a file they name, or credentials
    /// the store refuses. Trying again would meet the same.
    #[error("{0}")]
    Config(String),
}

impl From<StoreError> for CniError {
    fn from(e: StoreError) -> CniError {
        match e {
            StoreError::Conflict | StoreError::Busy(_) => {
                CniError::TryAgain(format!("store: {e}; try again"))
            }
            StoreError::Unreachable(m) => {
                CniError::TryAgain(format!("store: {m}; try again later"))
            }
            StoreError::Io(m) => CniError::Io(format!("store: {m}")),
            StoreError::Config(m) => CniError::InvalidConfig(format!("store: {m}")),
        }
    }
}

/// A backend: hands out transactions scoped to one network.
pub trait Store {
    /// Starts a transaction over the keys of `namespace` (the network name).
    /// Keys of other namespaces are invisible to it.
    fn begin(&self, namespace: &str) -> Result<Box<dyn Txn>, StoreError>;
    /// Every namespace that holds at least one key, sorted: the networks
    /// this store knows, for operator tooling. Never on the CNI path.
    fn namespaces(&self) -> Result<Vec<String>, StoreError>;
}

/// One serializable transaction. Dropping it without `commit` rolls it back.
pub trait Txn: Send {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// A read that does not join the transaction's read set, so a change to
    /// the key by another transaction does not make this one lose. Only for
    /// the host's own records that every writer writes whole and the same
    /// (the network record): whoever writes last, the value is right. A
    /// store whose transactions never run at once reads as `get` does.
    fn peek(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(key)
    }
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn delete(&mut self, key: &str) -> Result<(), StoreError>;
    /// Up to `limit` entries with keys starting `prefix`, after `start_after`,
    /// in bytewise key order.
    fn scan(
        &mut self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError>;
    /// Every entry under `prefix`, read page by page: for the host's own
    /// records, which it reads whole.
    fn scan_all(&mut self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        const PAGE: u32 = 256;
        let mut out: Vec<Entry> = Vec::new();
        loop {
            let after = out.last().map(|(k, _)| k.clone());
            let page = self.scan(prefix, after.as_deref(), PAGE)?;
            let full = page.len() == PAGE as usize;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Exponential backoff with jitter from the clock's low bits, for retrying
/// after losing a race: enough to de-synchronise processes that collided,
/// with no RNG to seed.
pub(crate) fn backoff(attempt: u32) -> std::time::Duration {
    let base = 2u64 << attempt.min(8);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) % base)
        .unwrap_or(0);
    std::time::Duration::from_millis(base + jitter)
}

/// The smallest key greater than every key starting with `prefix`, or `None`
/// when there is none (an empty prefix, or one of only 0xff bytes).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The behaviour every backend must have; public so the integration tests
/// hold the etcd backend to it against a real etcd.
#[doc(hidden)]
pub mod contract;
