//! The host's own record of each DHCP lease it holds, under its reserved
//! prefix in the network's store, written in the transaction of the call
//! that acquired or released it. Policies cannot see these keys; the host
//! never reads a policy's.
//!
//! - `.wasm-ipam/dhcp/lease/<container id>/<ifname>`: a lease held, with
//!   what it was asked with and where, for renewals;
//! - `.wasm-ipam/dhcp/client/<client id, hex>`: the attachment that holds
//!   the lease of a client id now, so a RELEASE left over from an earlier
//!   holder is never sent for the lease a new one holds;
//! - `.wasm-ipam/dhcp/release/<container id>/<ifname>`: a lease given up,
//!   whose DHCPRELEASE is still to be sent (the outbox, `outbox.rs`).
//!
//! Container ids and interface names cannot hold `/` (the host checks), so
//! the keys are unambiguous.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::client::{Lease, Request};
use crate::netrecord::RESERVED_PREFIX;
use crate::store::{StoreError, Txn};

const LEASES: &str = "dhcp/lease/";
const CLIENTS: &str = "dhcp/client/";
const RELEASES: &str = "dhcp/release/";

/// One lease the host holds for an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub container_id: String,
    pub ifname: String,
    /// `CNI_NETNS` of the call that acquired it.
    pub netns: PathBuf,
    /// The node it was acquired on, and that node's boot: only that node,
    /// in that boot, can reach the interface to renew or release it.
    pub node: String,
    #[serde(default)]
    pub boot: Option<String>,
    pub request: Request,
    pub lease: Lease,
    /// Seconds since the epoch, by the host's clock: when the server last
    /// granted or renewed it. Its times count from here.
    pub bound_at: u64,
    /// When the node's renewer last tried to renew it.
    #[serde(default)]
    pub attempted_at: Option<u64>,
    /// Renewals that worked, and failed ones since the last that worked.
    #[serde(default)]
    pub renewals: u64,
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Record {
    pub fn renew_at(&self) -> u64 {
        self.bound_at + u64::from(self.lease.renew_secs)
    }
    pub fn rebind_at(&self) -> u64 {
        self.bound_at + u64::from(self.lease.rebind_secs)
    }
    pub fn expires_at(&self) -> u64 {
        self.bound_at + u64::from(self.lease.lease_secs)
    }
    /// Whether this node, in this boot, holds the interface it is for.
    pub fn is_local(&self, node: &str, boot: Option<&str>) -> bool {
        self.node == node && self.boot.as_deref() == boot
    }
    pub fn attachment(&self) -> super::Attachment {
        super::Attachment {
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
        }
    }
    fn tail(&self) -> String {
        format!("{}/{}", self.container_id, self.ifname)
    }
}

fn key(section: &str, tail: &str) -> String {
    format!("{RESERVED_PREFIX}{section}{tail}")
}

fn client_key(client_id: &[u8]) -> String {
    let hex: String = client_id.iter().map(|b| format!("{b:02x}")).collect();
    key(CLIENTS, &hex)
}

fn decode(value: &[u8]) -> Option<Record> {
    serde_json::from_slice(value).ok()
}

fn encode(record: &Record) -> Vec<u8> {
    serde_json::to_vec(record).expect("a record serializes")
}

/// The lease the host holds for `container_id`/`ifname`.
pub fn read(
    txn: &mut dyn Txn,
    container_id: &str,
    ifname: &str,
) -> Result<Option<Record>, StoreError> {
    Ok(txn
        .get(&key(LEASES, &format!("{container_id}/{ifname}")))?
        .and_then(|v| decode(&v)))
}

/// Records a lease acquired (or renewed), and that its client id is this
/// attachment's now.
pub fn write(txn: &mut dyn Txn, record: &Record) -> Result<(), StoreError> {
    txn.put(&key(LEASES, &record.tail()), &encode(record))?;
    txn.put(
        &client_key(&record.request.client_id),
        record.tail().as_bytes(),
    )
}

/// Gives up the attachment's lease: its record moves to the outbox, for
/// the RELEASE once this transaction commits. `None` if it held none.
pub fn release(
    txn: &mut dyn Txn,
    container_id: &str,
    ifname: &str,
) -> Result<Option<Record>, StoreError> {
    let Some(record) = forget(txn, container_id, ifname)? else {
        return Ok(None);
    };
    txn.put(&key(RELEASES, &record.tail()), &encode(&record))?;
    Ok(Some(record))
}

/// Forgets the attachment's lease without a RELEASE: the server keeps it
/// bound to its client id until it lapses, and nothing renews it. `None`
/// if it held none.
pub fn forget(
    txn: &mut dyn Txn,
    container_id: &str,
    ifname: &str,
) -> Result<Option<Record>, StoreError> {
    let Some(record) = read(txn, container_id, ifname)? else {
        return Ok(None);
    };
    txn.delete(&key(LEASES, &record.tail()))?;
    let client = client_key(&record.request.client_id);
    if txn.get(&client)?.as_deref() == Some(record.tail().as_bytes()) {
        txn.delete(&client)?;
    }
    Ok(Some(record))
}

/// Whether the lease's client id is held again, by any attachment: its
/// RELEASE must then not be sent, or it would end the new holder's lease.
pub fn held_again(txn: &mut dyn Txn, record: &Record) -> Result<bool, StoreError> {
    Ok(txn.get(&client_key(&record.request.client_id))?.is_some())
}

/// Drops a RELEASE from the outbox, sent or not.
pub fn unqueue(txn: &mut dyn Txn, record: &Record) -> Result<(), StoreError> {
    txn.delete(&key(RELEASES, &record.tail()))
}

fn scan(txn: &mut dyn Txn, section: &str) -> Result<Vec<Record>, StoreError> {
    Ok(txn
        .scan_all(&key(section, ""))?
        .iter()
        .filter_map(|(_, v)| decode(v))
        .collect())
}

/// Every lease the host holds in the network, on every node.
pub fn all(txn: &mut dyn Txn) -> Result<Vec<Record>, StoreError> {
    scan(txn, LEASES)
}

/// Every RELEASE still to be sent, on every node.
pub fn pending(txn: &mut dyn Txn) -> Result<Vec<Record>, StoreError> {
    scan(txn, RELEASES)
}

/// The host's DHCP leases of a network at `now`, as `wasm-ipam metrics`
/// shows them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub leases: u64,
    /// Whose last renewal failed.
    pub failing: u64,
    /// Past their expiry, unrenewed.
    pub lapsed: u64,
    /// Renewals that worked, over the leases held now.
    pub renewals: u64,
    /// RELEASEs still to be sent.
    pub pending_releases: u64,
}

pub fn summary(txn: &mut dyn Txn, now: u64) -> Result<Summary, StoreError> {
    let mut s = Summary::default();
    for r in all(txn)? {
        s.leases += 1;
        s.failing += u64::from(r.failures > 0);
        s.lapsed += u64::from(r.expires_at() <= now);
        s.renewals += r.renewals;
    }
    s.pending_releases = pending(txn)?.len() as u64;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::store::{MemoryStore, Store};

    pub fn record(id: &str, client: &[u8]) -> Record {
        Record {
            container_id: id.into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/x".into(),
            node: "node-a".into(),
            boot: Some("boot-1".into()),
            request: Request {
                client_id: client.to_vec(),
                timeout: Duration::from_secs(5),
                ..Request::default()
            },
            lease: Lease {
                address: Ipv4Addr::new(10, 9, 0, 20),
                prefix_len: 24,
                server: Ipv4Addr::new(10, 9, 0, 1),
                routers: vec![],
                dns: vec![],
                domain: None,
                lease_secs: 600,
                renew_secs: 300,
                rebind_secs: 525,
                options: vec![],
            },
            bound_at: 1000,
            attempted_at: None,
            renewals: 0,
            failures: 0,
            last_error: None,
        }
    }

    #[test]
    fn a_release_moves_the_lease_to_the_outbox_and_frees_its_client_id() {
        let store = MemoryStore::new();
        let mut txn = store.begin("n").unwrap();
        let r = record("c1", b"\0pod");
        write(&mut *txn, &r).unwrap();
        assert_eq!(read(&mut *txn, "c1", "eth0").unwrap(), Some(r.clone()));
        assert_eq!(
            (r.renew_at(), r.rebind_at(), r.expires_at()),
            (1300, 1525, 1600)
        );
        assert!(held_again(&mut *txn, &r).unwrap());
        assert_eq!(release(&mut *txn, "c1", "eth0").unwrap(), Some(r.clone()));
        assert_eq!(release(&mut *txn, "c1", "eth0").unwrap(), None);
        assert!(all(&mut *txn).unwrap().is_empty());
        assert_eq!(pending(&mut *txn).unwrap(), std::slice::from_ref(&r));
        assert!(!held_again(&mut *txn, &r).unwrap());
        // The same client id acquired again by a re-created pod: the old
        // RELEASE must not be sent.
        write(&mut *txn, &record("c2", b"\0pod")).unwrap();
        assert!(held_again(&mut *txn, &r).unwrap());
        unqueue(&mut *txn, &r).unwrap();
        assert!(pending(&mut *txn).unwrap().is_empty());
        // Releasing the old holder again does not free the new one's id.
        write(&mut *txn, &r).unwrap();
        write(&mut *txn, &record("c2", b"\0pod")).unwrap();
        release(&mut *txn, "c1", "eth0").unwrap();
        assert!(held_again(&mut *txn, &r).unwrap());
    }

    #[test]
    fn a_lease_left_to_lapse_leaves_no_release_behind() {
        let store = MemoryStore::new();
        let mut txn = store.begin("n").unwrap();
        let r = record("c1", b"\0pod");
        write(&mut *txn, &r).unwrap();
        assert_eq!(forget(&mut *txn, "c1", "eth0").unwrap(), Some(r.clone()));
        assert_eq!(forget(&mut *txn, "c1", "eth0").unwrap(), None);
        assert!(all(&mut *txn).unwrap().is_empty());
        assert!(pending(&mut *txn).unwrap().is_empty());
        assert!(!held_again(&mut *txn, &r).unwrap());
    }

    #[test]
    fn a_record_is_local_to_its_node_and_boot() {
        let r = record("c1", b"\0pod");
        assert!(r.is_local("node-a", Some("boot-1")));
        assert!(!r.is_local("node-a", Some("boot-2")));
        assert!(!r.is_local("node-b", Some("boot-1")));
    }
}
