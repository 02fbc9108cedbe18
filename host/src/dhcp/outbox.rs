//! Sending the DHCPRELEASEs of leases that a committed call gave up.
//!
//! `release` only moves a lease's record to the outbox, in the call's own
//! transaction; the RELEASE goes out here, after that transaction
//! committed, so a call that is rolled back never ends a lease the store
//! still holds. [`flush`] runs right after such a commit, and `wasm-ipam
//! serve` runs it on its rounds, which is how a RELEASE a crash left
//! unsent still goes out:
//!
//! - it takes this node's entries of this boot, in a transaction of its
//!   own, and for each sends the RELEASE and drops the entry;
//! - unless the client id is held again (a re-created pod acquired it in
//!   between): then the RELEASE would end the new holder's lease, and the
//!   entry is dropped unsent;
//! - an entry of this node's earlier boot is dropped unsent: its
//!   namespace is gone, and the server's lease lapses by itself; so is
//!   every entry of a node released for good (`release-node`, which runs
//!   without that node's boot);
//! - other nodes' entries are theirs to send.
//!
//! A RELEASE that cannot be sent (the namespace is gone already) is logged
//! and dropped: a server answers no RELEASE anyway (RFC 2131 4.4.6), and an
//! unreleased lease lapses at its expiry.

use super::client;
use super::record::{self, Record};
use crate::store::{Store, StoreError};

/// Attempts at the outbox's transaction before leaving it for later.
const ATTEMPTS: u32 = 5;

/// What a flush did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub sent: usize,
    /// Dropped unsent: held again, or of an earlier boot.
    pub dropped: usize,
}

/// Sends this node's pending RELEASEs of `network`. Failures are logged:
/// what is left is sent by a later flush.
pub fn flush(store: &dyn Store, network: &str, node: &str, boot: Option<&str>) -> Flushed {
    for _ in 0..ATTEMPTS {
        match try_flush(store, network, node, boot) {
            Ok(done) => return done,
            Err(StoreError::Conflict) => continue,
            Err(e) => {
                log::warn!("dhcp: the RELEASEs of network {network} are left for later: {e}");
                return Flushed::default();
            }
        }
    }
    log::warn!("dhcp: the RELEASEs of network {network} are left for later: the store was busy");
    Flushed::default()
}

fn try_flush(
    store: &dyn Store,
    network: &str,
    node: &str,
    boot: Option<&str>,
) -> Result<Flushed, StoreError> {
    let mut txn = store.begin(network)?;
    let mut done = Flushed::default();
    for entry in record::pending(&mut *txn)? {
        if entry.node != node {
            continue;
        }
        // Only the boot that made the namespace can reach it; without a
        // boot id (no /proc), none can be told apart, and none is sent.
        let reachable = boot.is_some() && entry.boot.as_deref() == boot;
        if !reachable || record::held_again(&mut *txn, &entry)? {
            log::info!(
                "dhcp: not releasing {} of {}/{}: {}",
                entry.lease.address,
                entry.container_id,
                entry.ifname,
                if reachable {
                    "its client id is held again"
                } else {
                    "its interface is out of this call's reach (another boot, or another node), and its lease lapses by itself"
                }
            );
            done.dropped += 1;
        } else {
            send(&entry);
            crate::crash::at(crate::crash::Point::AfterRelease);
            done.sent += 1;
        }
        record::unqueue(&mut *txn, &entry)?;
    }
    if done != Flushed::default() {
        txn.commit()?;
    }
    Ok(done)
}

fn send(entry: &Record) {
    match client::release(&entry.attachment(), &entry.request, &entry.lease) {
        Ok(()) => log::info!(
            "dhcp: released {} of {}/{} to server {}",
            entry.lease.address,
            entry.container_id,
            entry.ifname,
            entry.lease.server
        ),
        Err(e) => log::warn!(
            "dhcp: could not release {} of {}/{} (the server's lease lapses in {} s at most): {e}",
            entry.lease.address,
            entry.container_id,
            entry.ifname,
            entry.lease.lease_secs
        ),
    }
}
