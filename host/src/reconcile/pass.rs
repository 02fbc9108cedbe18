//! One network's part of a pass: which of this node's attachments the
//! runtime no longer has, and releasing those orphaned longer than the
//! grace period through the policy's own `gc`, all in one transaction.
//!
//! The transaction reads the policy's leases (`inspect.leases`), decides,
//! and runs `gc` with every other attachment as valid. Because both run
//! in the same serializable transaction, an ADD that commits meanwhile
//! makes the pass conflict and run again; it can never be released for
//! having been missing from a list read a moment before (the race
//! Whereabouts' reconciler had, whereabouts#176).
//!
//! Which attachments are this node's: on the embedded store, all (the
//! store is the node's own); on a shared store, those the host recorded
//! for this node at ADD (`reboot`'s records). Another node's attachments,
//! and any lease the host has no record of, are passed to `gc` as valid:
//! never released on doubt. A `gc` that releases anything else than what
//! the pass decided (a policy whose `inspect` does not list all it holds)
//! is rolled back. A pass remembers the runtime it asked; a later one that
//! finds another runtime answering (a CRI-O socket given on a node whose
//! pods containerd made) releases nothing, unless told the node's runtime
//! was replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::cni::CniError;
use crate::cni::config::{NetConf, StoreConf};
use crate::dhcp::Exchanges;
use crate::reboot;
use crate::runner::{self, Mode};
use crate::sandbox::{self, Answer, Attachment, Invocation, Op, Sandbox};
use crate::store::{Store, StoreError, Txn};

use super::marks::{self, Key};

/// What a pass is told.
pub struct Pass<'a> {
    pub conf: &'a NetConf,
    pub node: &'a str,
    /// The runtime's sandboxes: the container ids that are not orphans.
    pub sandboxes: &'a BTreeSet<String>,
    /// The runtime's name, as it gave it.
    pub runtime: &'a str,
    /// Take `runtime` as the node's runtime even if earlier passes asked
    /// another (the node's runtime was replaced).
    pub new_runtime: bool,
    /// Seconds an attachment must have been seen orphaned.
    pub grace: u64,
    pub now: u64,
    pub mode: Mode,
}

/// An attachment of this node that the runtime does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub container_id: String,
    pub ifname: String,
    /// Its addresses, as the policy listed them.
    pub addresses: Vec<String>,
    /// When a pass first saw it orphaned (this one, if it is new).
    pub since: u64,
    /// Released by this pass (or would be, in a dry run).
    pub released: bool,
}

/// What one network's pass found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// This node's attachments in the network.
    pub held: usize,
    pub orphans: Vec<Orphan>,
    /// The addresses the policy's `gc` released.
    pub released: Vec<sandbox::Released>,
}

/// Why a network's pass did nothing.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("policy {0} does not export inspect, so its attachments cannot be listed")]
    NotInspectable(String),
    #[error(
        "earlier passes on node {node} asked {before}, but {now} answers here: the pods were \
         made by a runtime that was not asked, so nothing is released (if the node runs {now} \
         for good now, run wasm-ipam reconcile with --new-runtime once)"
    )]
    OtherRuntime {
        node: String,
        before: String,
        now: String,
    },
    #[error("policy {policy}'s gc released {what}, which the pass did not decide; rolled back")]
    Unexpected { policy: String, what: String },
    #[error(transparent)]
    Cni(#[from] CniError),
}

impl From<StoreError> for PassError {
    fn from(e: StoreError) -> Self {
        PassError::Cni(e.into())
    }
}

/// Runs `pass` on `store` with `sandbox`, the network's recorded policy.
pub fn run(pass: &Pass, store: &dyn Store, sandbox: &Sandbox) -> Result<Outcome, PassError> {
    let conf = pass.conf;
    let no_exchange =
        || Exchanges::None("a release by the reconciler makes no DHCP exchange".into());
    let dhcp = runner::dhcp_capability(sandbox, conf, no_exchange, pass.node, None)?;
    let mut retries = crate::retry::Retries::new(conf);
    loop {
        let txn = retries.begin(store, &conf.name)?;
        let (outcome, txn) = decide_and_release(pass, sandbox, &dhcp, txn)?;
        if pass.mode == Mode::DryRun {
            return Ok(outcome);
        }
        if retries.commit(txn)? {
            if let Some(dhcp) = &dhcp {
                runner::after_commit(store, conf, dhcp, false);
            }
            return Ok(outcome);
        }
    }
}

type Dhcp = Option<Arc<crate::dhcp::Capability>>;

fn call(
    pass: &Pass,
    sandbox: &Sandbox,
    dhcp: &Dhcp,
    txn: Box<dyn Txn>,
    op: &Op,
) -> Result<(Answer, Box<dyn Txn>), PassError> {
    let ctx = reboot::bare_context(pass.conf, pass.node);
    let invocation = Invocation::new(&ctx, op, &pass.conf.ipam.limits, pass.now).with_dhcp(dhcp);
    let (result, txn) = sandbox.call(txn, &invocation);
    let answer = result?.map_err(sandbox::ipam_error)?;
    Ok((answer, txn))
}

fn decide_and_release(
    pass: &Pass,
    sandbox: &Sandbox,
    dhcp: &Dhcp,
    txn: Box<dyn Txn>,
) -> Result<(Outcome, Box<dyn Txn>), PassError> {
    let (answer, mut txn) = call(pass, sandbox, dhcp, txn, &Op::Leases)?;
    let Answer::Leases(leases) = answer else {
        return Err(PassError::NotInspectable(sandbox.name().to_string()));
    };
    // Every attachment the policy holds, with its addresses.
    let mut held: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for l in leases {
        let a = l.attachment;
        held.entry((a.container_id, a.ifname))
            .or_default()
            .push(l.address);
    }
    let ours: BTreeSet<Key> = if pass.conf.ipam.store == StoreConf::Embedded {
        held.keys().cloned().collect()
    } else {
        reboot::recorded_attachments(&mut *txn, pass.node)?
            .into_iter()
            .filter(|k| held.contains_key(k))
            .collect()
    };
    let seen = marks::seen(&mut *txn, pass.node)?;
    let mut counters = marks::counters(&mut *txn, pass.node)?;
    // Another runtime answering than the one that made the node's pods
    // lists none of them: nothing it says is about them.
    if !counters.runtime.is_empty() && counters.runtime != pass.runtime && !pass.new_runtime {
        return Err(PassError::OtherRuntime {
            node: pass.node.to_string(),
            before: counters.runtime,
            now: pass.runtime.to_string(),
        });
    }
    counters.runtime = pass.runtime.to_string();
    let mut outcome = Outcome {
        held: ours.len(),
        ..Outcome::default()
    };
    let mut due: BTreeSet<Key> = BTreeSet::new();
    for key in &ours {
        if pass.sandboxes.contains(&key.0) {
            continue;
        }
        let since = match seen.get(key) {
            Some(at) => *at,
            None => {
                marks::mark(&mut *txn, pass.node, key, pass.now)?;
                counters.orphans_seen += 1;
                pass.now
            }
        };
        let released = pass.now.saturating_sub(since) >= pass.grace;
        if released {
            due.insert(key.clone());
        }
        outcome.orphans.push(Orphan {
            container_id: key.0.clone(),
            ifname: key.1.clone(),
            addresses: held.get(key).cloned().unwrap_or_default(),
            since,
            released,
        });
    }
    // A mark whose attachment has its sandbox again, or is gone, goes.
    for key in seen.keys() {
        let still = ours.contains(key) && !pass.sandboxes.contains(&key.0);
        if !still {
            marks::unmark(&mut *txn, pass.node, key)?;
        }
    }
    if !due.is_empty() {
        let valid: Vec<Attachment> = held
            .keys()
            .filter(|k| !due.contains(*k))
            .map(|(id, ifname)| Attachment {
                container_id: id.clone(),
                ifname: ifname.clone(),
            })
            .collect();
        let (answer, back) = call(pass, sandbox, dhcp, txn, &Op::Gc(valid))?;
        txn = back;
        let released = match answer {
            Answer::Released(r) => r,
            _ => Vec::new(),
        };
        let unexpected: Vec<String> = released
            .iter()
            .filter(|r| {
                !due.contains(&(
                    r.attachment.container_id.clone(),
                    r.attachment.ifname.clone(),
                ))
            })
            .map(|r| {
                format!(
                    "{} of {}/{}",
                    r.address, r.attachment.container_id, r.attachment.ifname
                )
            })
            .collect();
        if !unexpected.is_empty() {
            return Err(PassError::Unexpected {
                policy: sandbox.name().to_string(),
                what: unexpected.join(", "),
            });
        }
        for key in &due {
            marks::unmark(&mut *txn, pass.node, key)?;
            reboot::forget(
                &mut *txn,
                pass.node,
                &Attachment {
                    container_id: key.0.clone(),
                    ifname: key.1.clone(),
                },
            )?;
        }
        counters.released += released.len() as u64;
        outcome.released = released;
    }
    counters.passes += 1;
    counters.last_good_pass = pass.now;
    marks::set_counters(&mut *txn, pass.node, &counters)?;
    Ok((outcome, txn))
}
