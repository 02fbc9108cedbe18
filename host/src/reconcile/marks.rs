//! What the reconciler remembers between passes, in each network's own
//! store under the host's reserved prefix (out of every policy's reach, as
//! the reboot records are):
//!
//! - `.wasm-ipam/orphan/<node>/<container id>/<ifname>`: when a pass first
//!   saw that attachment of `node` with no sandbox in the runtime. An
//!   attachment is released only once a pass sees it orphaned a grace
//!   period after that; a pass that sees its sandbox again removes the
//!   mark. Kept in the store, not in memory, so one-shot `reconcile` runs
//!   and a restarted `serve` count the grace the same way, and `leases`
//!   can show which attachments the runtime no longer has.
//! - `.wasm-ipam/reconcile/<node>`: the node's counters, for `metrics`:
//!   passes, orphans seen, addresses released, and the last good pass;
//!   and the runtime those passes asked.
//!
//! Both are written in the pass's own transaction, so they are exactly as
//! durable as what the pass released.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::netrecord::RESERVED_PREFIX;
use crate::store::{StoreError, Txn};

/// An attachment, as `(container id, ifname)`.
pub type Key = (String, String);

fn orphans(node: &str) -> String {
    format!("{RESERVED_PREFIX}orphan/{node}/")
}

fn orphan_key(node: &str, (id, ifname): &Key) -> String {
    format!("{}{id}/{ifname}", orphans(node))
}

fn counters_key(node: &str) -> String {
    format!("{RESERVED_PREFIX}reconcile/{node}")
}

/// Every orphan mark of `node`: when each attachment was first seen
/// orphaned, in seconds since the epoch.
pub fn seen(txn: &mut dyn Txn, node: &str) -> Result<BTreeMap<Key, u64>, StoreError> {
    read(txn, &orphans(node))
}

/// Every orphan mark of every node: what `leases` shows.
pub fn seen_on_any_node(txn: &mut dyn Txn) -> Result<BTreeMap<Key, u64>, StoreError> {
    // Read as `(<node>, <id>/<ifname>)`: a node name has no '/', an id
    // neither.
    Ok(read(txn, &format!("{RESERVED_PREFIX}orphan/"))?
        .into_iter()
        .filter_map(|((_, attachment), at)| {
            let (id, ifname) = attachment.split_once('/')?;
            Some(((id.to_string(), ifname.to_string()), at))
        })
        .collect())
}

/// The marks under `prefix`, each key's rest split at its first '/'.
fn read(txn: &mut dyn Txn, prefix: &str) -> Result<BTreeMap<Key, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for (key, value) in txn.scan_all(prefix)? {
        if let Some((id, ifname)) = key[prefix.len()..].split_once('/')
            && let Some(at) = parse_time(&value)
        {
            out.insert((id.to_string(), ifname.to_string()), at);
        }
    }
    Ok(out)
}

fn parse_time(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Marks `a` of `node` as first seen orphaned at `at`.
pub fn mark(txn: &mut dyn Txn, node: &str, a: &Key, at: u64) -> Result<(), StoreError> {
    txn.put(&orphan_key(node, a), at.to_string().as_bytes())
}

/// Removes `a`'s mark: its sandbox is back, or it was released.
pub fn unmark(txn: &mut dyn Txn, node: &str, a: &Key) -> Result<(), StoreError> {
    txn.delete(&orphan_key(node, a))
}

/// A node's reconciler counters in one network, as `metrics` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Passes that asked the runtime and ran through this network.
    pub passes: u64,
    /// Attachments first seen orphaned (each counted once).
    pub orphans_seen: u64,
    /// Addresses released.
    pub released: u64,
    /// When the last such pass ended, in seconds since the epoch.
    pub last_good_pass: u64,
    /// The runtime those passes asked, by name: a pass that finds another
    /// one answering releases nothing (see `pass`).
    #[serde(default)]
    pub runtime: String,
}

/// `node`'s counters in this network (zero before its first pass).
pub fn counters(txn: &mut dyn Txn, node: &str) -> Result<Counters, StoreError> {
    Ok(txn
        .get(&counters_key(node))?
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default())
}

/// Every node's counters in this network.
pub fn every_nodes_counters(txn: &mut dyn Txn) -> Result<Vec<(String, Counters)>, StoreError> {
    let prefix = format!("{RESERVED_PREFIX}reconcile/");
    Ok(txn
        .scan_all(&prefix)?
        .into_iter()
        .filter_map(|(key, value)| {
            let counters = serde_json::from_slice(&value).ok()?;
            Some((key[prefix.len()..].to_string(), counters))
        })
        .collect())
}

/// Writes `node`'s counters.
pub fn set_counters(txn: &mut dyn Txn, node: &str, c: &Counters) -> Result<(), StoreError> {
    let text = serde_json::to_vec(c).expect("counters serialize");
    txn.put(&counters_key(node), &text)
}
