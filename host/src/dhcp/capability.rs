//! The `dhcp` import as one call gives it to its policy: what the sandbox's
//! bindings call (`sandbox/dhcp.rs`), with the call's transaction.
//!
//! A [`Capability`] lives for one CNI call, across the attempts a store
//! conflict causes, which is what makes acquiring idempotent without
//! asking the server twice: an attempt run again gets the lease the first
//! attempt got for the same client id, from [`Capability`]'s memory, and
//! records it again in its own transaction.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::client::{self, DhcpError, Lease, Request};
use super::record::{self, Record};
use super::socket::Attachment;
use crate::store::{StoreError, Txn};

/// The longest exchange a policy may ask for, and the shortest.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The container interface a call is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub container_id: String,
    pub ifname: String,
    pub netns: PathBuf,
}

/// Whether a call may make exchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchanges {
    /// A runtime's call for this container interface.
    Live(Target),
    /// No exchange: why not (GC, STATUS, the tools, `simulate`).
    None(String),
}

/// One call's DHCP capability.
#[derive(Debug)]
pub struct Capability {
    pub exchanges: Exchanges,
    /// This node, and its boot: recorded with each lease.
    pub node: String,
    pub boot: Option<String>,
    /// Leases this call got, by client id, for attempts run again.
    acquired: Mutex<HashMap<Vec<u8>, Lease>>,
    /// Whether an attempt gave up a lease: once one commits, the outbox
    /// has RELEASEs to send.
    released: AtomicBool,
    /// Whether an attempt acquired a lease: once one commits, the node's
    /// renewer must learn of its store.
    gained: AtomicBool,
}

impl Capability {
    pub fn new(exchanges: Exchanges, node: String, boot: Option<String>) -> Capability {
        Capability {
            exchanges,
            node,
            boot,
            acquired: Mutex::default(),
            released: AtomicBool::new(false),
            gained: AtomicBool::new(false),
        }
    }

    pub fn released(&self) -> bool {
        self.released.load(Ordering::Relaxed)
    }

    pub fn gained(&self) -> bool {
        self.gained.load(Ordering::Relaxed)
    }

    /// Acquires a lease for the call's interface, records it in `txn`, and
    /// returns the record. A store failure is the outer error (the call
    /// traps); an exchange's is the inner.
    pub fn acquire(
        &self,
        txn: &mut dyn Txn,
        mut request: Request,
        now: u64,
    ) -> Result<Result<Record, DhcpError>, StoreError> {
        let target = match &self.exchanges {
            Exchanges::Live(t) => t,
            Exchanges::None(why) => return Ok(Err(DhcpError::Unavailable(why.clone()))),
        };
        // A client id in `provide` is the one sent: it is the one the
        // server keys the lease by.
        if let Some((_, id)) = request.provide.iter().rev().find(|(c, _)| *c == 61) {
            request.client_id = id.clone();
        }
        request.timeout = request.timeout.clamp(MIN_TIMEOUT, MAX_TIMEOUT);
        let known = self
            .acquired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&request.client_id)
            .cloned();
        let lease = match known {
            Some(lease) => lease,
            None => {
                let at = Attachment {
                    netns: target.netns.clone(),
                    ifname: target.ifname.clone(),
                };
                match client::acquire(&at, &request) {
                    Ok(lease) => lease,
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        self.acquired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.client_id.clone(), lease.clone());
        let record = Record {
            container_id: target.container_id.clone(),
            ifname: target.ifname.clone(),
            netns: target.netns.clone(),
            node: self.node.clone(),
            boot: self.boot.clone(),
            request,
            lease,
            bound_at: now,
            attempted_at: None,
            renewals: 0,
            failures: 0,
            last_error: None,
        };
        record::write(txn, &record)?;
        self.gained.store(true, Ordering::Relaxed);
        log::info!(
            "dhcp: {}/{} holds {}/{} from server {}, for {} s",
            record.container_id,
            record.ifname,
            record.lease.address,
            record.lease.prefix_len,
            record.lease.server,
            record.lease.lease_secs
        );
        Ok(Ok(record))
    }

    /// The lease the host holds for an attachment.
    pub fn held(
        &self,
        txn: &mut dyn Txn,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Record>, StoreError> {
        record::read(txn, container_id, ifname)
    }

    /// Gives an attachment's lease up in `txn`: with `tell_server`, its
    /// RELEASE is sent after the commit (`outbox`); without, the server's
    /// lease lapses by itself.
    pub fn release(
        &self,
        txn: &mut dyn Txn,
        container_id: &str,
        ifname: &str,
        tell_server: bool,
    ) -> Result<bool, StoreError> {
        if !tell_server {
            return Ok(record::forget(txn, container_id, ifname)?.is_some());
        }
        let released = record::release(txn, container_id, ifname)?.is_some();
        if released {
            self.released.store(true, Ordering::Relaxed);
        }
        Ok(released)
    }
}
