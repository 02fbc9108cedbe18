//! A store shared by every node: etcd, with optimistic transactions.
//!
//! A transaction reads a snapshot: every read is at the revision etcd had
//! when it began. Writes are buffered (and read back by later reads of the
//! same transaction). At commit, one etcd transaction checks that nothing
//! the policy read has changed since that revision and applies every write,
//! or does nothing:
//!
//! - each key read (or returned by a scan) must have the same `mod_revision`
//!   as when it was read; an absent key must still be absent (revision 0),
//!   which also catches a key deleted since;
//! - each range scanned must hold no key modified after the snapshot, which
//!   catches a key created inside it (a phantom).
//!
//! A failed check is [`StoreError::Conflict`]: the host runs the policy again
//! from scratch, which is safe because it has no other side effects. The
//! loss of a member or an election is ridden out within `timeoutMs`
//! ([`failover`]); an etcd that stays unreachable past it is
//! [`StoreError::Unreachable`], CNI code 11, and nothing is half-written:
//! the one commit request either applies everything or nothing.
//!
//! Calls on one node take turns: a transaction holds an flock on
//! `<dataDir>/etcd-<network>.lock` from begin to commit, as Calico's IPAM
//! holds a host-wide lock. Concurrent calls of one node would otherwise all
//! update the same block and lose to each other; so optimistic retries only
//! arbitrate between nodes, which rarely touch the same keys.
//!
//! etcd caps the operations in one transaction (`--max-txn-ops`, 128 by
//! default). A call that reads or writes more keys than that, such as a GC
//! releasing hundreds of leases, needs a higher cap on the etcd servers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, ConnectOptions, GetOptions, TxnOp};

use super::{Entry, Store, StoreError, Txn, prefix_end};
use crate::cni::config::EtcdConf;
use crate::trust::TrustedDir;

mod credentials;
mod failover;
mod handshake;

struct Shared {
    rt: tokio::runtime::Runtime,
    clients: failover::Endpoints,
    prefix: String,
    timeout: Duration,
    endpoints: String,
    lease: failover::MarkerLease,
    /// Over TLS: what tells a member's refusal of our certificate from a
    /// closed connection.
    handshake: Option<handshake::Handshake>,
}

impl Shared {
    /// A read of `key` with `opts`, tried again as [`Shared::call`] does.
    fn get(
        &self,
        what: &str,
        key: impl Into<Vec<u8>>,
        opts: GetOptions,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        let key = key.into();
        self.call(what, |mut c| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { c.get(key, Some(opts)).await }
        })
    }

    fn error(&self, what: &str, endpoint: &str, e: etcd_client::Error) -> StoreError {
        if let Some(why) = credentials::refusal(&e, &self.prefix) {
            return StoreError::Config(format!("etcd at {endpoint} refused {what}: {why}"));
        }
        let text = failover::describe(&e);
        if text.contains("compacted") {
            // The snapshot is gone; a fresh attempt reads a newer one.
            return StoreError::Conflict;
        }
        if text.contains("too many operations in txn request") {
            return StoreError::Io(format!(
                "etcd at {} refused {what}: {text}; raise --max-txn-ops on the etcd servers",
                self.endpoints
            ));
        }
        StoreError::Unreachable(format!("etcd at {} failed {what}: {text}", self.endpoints))
    }

    fn ns_prefix(&self, namespace: &str) -> String {
        format!("{}/{namespace}/", self.prefix)
    }
}

pub struct EtcdStore {
    shared: Arc<Shared>,
    lock_dir: Option<TrustedDir>,
}

/// Holds the node's turn for one network until dropped: the flock goes with
/// the file.
struct NodeTurn {
    _lock: Option<std::fs::File>,
}

impl NodeTurn {
    fn take(dir: Option<&TrustedDir>, namespace: &str) -> Result<NodeTurn, StoreError> {
        let Some(dir) = dir else {
            return Ok(NodeTurn { _lock: None });
        };
        let io = |e: std::io::Error| {
            StoreError::Io(format!(
                "{}: cannot take the node's lock: {e}",
                dir.path().display()
            ))
        };
        let file = dir
            .lock_file(&format!("etcd-{namespace}.lock"))
            .map_err(io)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(e.into()))?;
        Ok(NodeTurn { _lock: Some(file) })
    }
}

impl EtcdStore {
    /// Connects to the cluster. `lock_dir` (the node's data dir, checked)
    /// is where calls of this node take turns; `None` lets transactions of
    /// this process race, as tests of the conflict checks want.
    pub fn connect(conf: &EtcdConf, lock_dir: Option<TrustedDir>) -> Result<EtcdStore, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("cannot start the etcd client: {e}")))?;
        let endpoints = conf.endpoints.join(",");
        let credentials::Credentials { options, handshake } = credentials::apply(
            conf,
            ConnectOptions::new()
                .with_connect_timeout(conf.timeout)
                .with_timeout(conf.timeout),
        )?;
        let connect = failover::Endpoints::new(&conf.endpoints, options);
        let clients = match rt.block_on(async { tokio::time::timeout(conf.timeout, connect).await })
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if let Some(why) = credentials::refusal(&e, &conf.prefix) {
                    return Err(StoreError::Config(format!(
                        "etcd at {endpoints} refused the connection: {why}"
                    )));
                }
                // Logging in (with a user) is a request: a member that
                // refuses our certificate closes it.
                let refused = handshake.as_ref().and_then(|h| {
                    conf.endpoints
                        .iter()
                        .find_map(|url| Some((url, h.refusal(url, conf.timeout)?)))
                });
                if let Some((url, why)) = refused {
                    return Err(StoreError::Config(format!(
                        "etcd at {url} refused the connection: {why}"
                    )));
                }
                return Err(StoreError::Unreachable(format!(
                    "cannot reach etcd at {endpoints}: {}",
                    failover::describe(&e)
                )));
            }
            Err(_) => {
                return Err(StoreError::Unreachable(format!(
                    "cannot reach etcd at {endpoints} within {} ms",
                    conf.timeout.as_millis()
                )));
            }
        };
        Ok(EtcdStore {
            shared: Arc::new(Shared {
                rt,
                clients,
                prefix: conf.prefix.clone(),
                timeout: conf.timeout,
                endpoints,
                lease: Default::default(),
                handshake,
            }),
            lock_dir,
        })
    }
}

impl Store for EtcdStore {
    fn begin(&self, namespace: &str) -> Result<Box<dyn Txn>, StoreError> {
        let turn = NodeTurn::take(self.lock_dir.as_ref(), namespace)?;
        let s = &self.shared;
        let ns_prefix = s.ns_prefix(namespace);
        let opts = GetOptions::new().with_prefix().with_count_only();
        let resp = s.get("a read", ns_prefix.clone(), opts)?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok(Box::new(EtcdTxn {
            _turn: turn,
            shared: self.shared.clone(),
            ns_prefix,
            revision,
            reads: BTreeMap::new(),
            ranges: Vec::new(),
            writes: BTreeMap::new(),
        }))
    }

    fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let s = &self.shared;
        let root = format!("{}/", s.prefix);
        let opts = GetOptions::new().with_prefix().with_keys_only();
        let resp = s.get("a listing", root.clone(), opts)?;
        let mut names: Vec<String> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let rest = kv.key().strip_prefix(root.as_bytes())?;
                let end = rest.iter().position(|b| *b == b'/')?;
                String::from_utf8(rest[..end].to_vec()).ok()
            })
            .collect();
        names.dedup();
        Ok(names)
    }
}

/// A key as the policy names it, the key in etcd, and its value.
type Fetched = (String, Vec<u8>, Vec<u8>);

struct EtcdTxn {
    _turn: NodeTurn,
    shared: Arc<Shared>,
    /// `<prefix>/<namespace>/`: every key of this transaction is under it.
    ns_prefix: String,
    /// The snapshot every read is at.
    revision: i64,
    /// Full key -> `mod_revision` seen (0: absent).
    reads: BTreeMap<Vec<u8>, i64>,
    /// Full-key ranges `[start, end)` scanned.
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Policy key -> new value (`None`: deleted).
    writes: BTreeMap<String, Option<Vec<u8>>>,
}

impl EtcdTxn {
    fn full(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.ns_prefix).into_bytes()
    }

    /// One page of the snapshot in `[start, end)`, recorded as read.
    fn fetch(
        &mut self,
        start: Vec<u8>,
        end: &[u8],
        limit: u32,
    ) -> Result<Vec<Fetched>, StoreError> {
        let opts = GetOptions::new()
            .with_range(end.to_vec())
            .with_revision(self.revision)
            .with_limit(i64::from(limit));
        let resp = self.shared.get("a scan", start, opts)?;
        let mut out = Vec::new();
        for kv in resp.kvs() {
            self.reads.insert(kv.key().to_vec(), kv.mod_revision());
            let Some(key) = kv.key().strip_prefix(self.ns_prefix.as_bytes()) else {
                continue;
            };
            out.push((
                String::from_utf8_lossy(key).into_owned(),
                kv.key().to_vec(),
                kv.value().to_vec(),
            ));
        }
        Ok(out)
    }
}

impl EtcdTxn {
    /// A read at the snapshot, with the key's `mod_revision` (0 if absent).
    fn read(&mut self, key: &str) -> Result<(Option<Vec<u8>>, i64), StoreError> {
        let full = self.full(key);
        let opts = GetOptions::new().with_revision(self.revision);
        let resp = self.shared.get("a read", full, opts)?;
        let kv = resp.kvs().first();
        Ok((
            kv.map(|kv| kv.value().to_vec()),
            kv.map_or(0, |kv| kv.mod_revision()),
        ))
    }
}

impl Txn for EtcdTxn {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        let (value, revision) = self.read(key)?;
        self.reads.insert(self.full(key), revision);
        Ok(value)
    }

    /// Every node's first ADD of a network writes the same network record;
    /// read inside the read set, 99 of 100 nodes starting at once lost that
    /// race (the bench's cluster burst).
    fn peek(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        Ok(self.read(key)?.0)
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.writes.insert(key.to_string(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.writes.insert(key.to_string(), None);
        Ok(())
    }

    fn scan(
        &mut self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        let first = match start_after {
            Some(a) if a >= prefix => format!("{a}\0"),
            _ => prefix.to_string(),
        };
        let start = self.full(&first);
        let end = prefix_end(&self.full(prefix)).expect("a namespace prefix ends in '/'");
        // The snapshot read so far, with the transaction's own writes over
        // it; each page adds what lies between the last page and its end.
        let mut merged: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut cursor = start.clone();
        loop {
            let page = self.fetch(cursor.clone(), &end, limit.max(1))?;
            let full = page.len() >= limit.max(1) as usize;
            // How far the snapshot has been read: to the last key of a full
            // page, else to the end of the prefix.
            let upto = match (full, page.last()) {
                (true, Some((_, k, _))) => {
                    let mut next = k.clone();
                    next.push(0);
                    next
                }
                _ => end.clone(),
            };
            merged.extend(page.into_iter().map(|(k, _, v)| (k, v)));
            for (k, w) in self.writes.range(first.clone()..) {
                let key = self.full(k);
                if key >= upto {
                    break;
                }
                if key < cursor || !k.starts_with(prefix) {
                    continue;
                }
                match w {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
            if !full || merged.len() >= limit as usize {
                self.ranges.push((start, upto));
                return Ok(merged.into_iter().take(limit as usize).collect());
            }
            cursor = upto;
        }
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            // A read-only transaction saw one consistent snapshot.
            return Ok(());
        }
        let mut compares: Vec<Compare> = self
            .reads
            .iter()
            .map(|(k, rev)| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev))
            .collect();
        compares.extend(self.ranges.iter().map(|(start, end)| {
            Compare::mod_revision(start.clone(), CompareOp::Less, self.revision + 1)
                .with_range(end.clone())
        }));
        let ops: Vec<TxnOp> = self
            .writes
            .iter()
            .map(|(k, w)| match w {
                Some(v) => TxnOp::put(self.full(k), v.clone(), None),
                None => TxnOp::delete(self.full(k), None),
            })
            .collect();
        self.shared.commit(compares, ops)
    }
}
