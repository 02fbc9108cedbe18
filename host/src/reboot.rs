//! Reclaim after a reboot: a node's network namespaces do not survive one,
//! so every attachment it made in an earlier boot is gone, and its
//! addresses with it, whether or not the runtime ever sends a DEL or a GC
//! (containerd does not send GC yet; k3s#5885).
//!
//! The host writes, in each ADD's transaction, the boot it happened in
//! (`/proc/sys/kernel/random/boot_id`, or `WASM_IPAM_BOOT_ID` for tests)
//! under a key of its own, `.wasm-ipam/attachment/<node>/<id>/<ifname>`,
//! and removes it in the DEL's or GC's. Each call reads one more key in its
//! own transaction: this node's marker, `.wasm-ipam/boot/<node>`, the boot
//! of its last reclaim. When the marker names another boot and this node
//! recorded attachments in it, the call rolls back and the host first runs
//! the reclaim in a transaction of its own:
//! the network's own policy's DEL for every attachment this node recorded
//! in another boot, then the marker set to this boot. Then the call runs
//! again.
//!
//! - The policy's DEL, not its GC: a GC releases everything outside a list
//!   of valid attachments, and the host cannot name them all (leases made
//!   before an upgrade have no record, and other nodes share an etcd
//!   store), so a GC would release live addresses. A DEL releases exactly
//!   one dead attachment, and does for each policy what its DEL does:
//!   sticky starts its hold, so a workload that comes back after the
//!   reboot gets its address again.
//! - Its own transaction, committed before the call's: a call that fails
//!   (an ADD on a full pool) must not roll back a reclaim, which is what
//!   would empty that pool.
//! - Serializable: concurrent first calls after a reboot all see the old
//!   marker, one commits, the others conflict or wait, run again and find
//!   the marker set. An attachment of the current boot is never released:
//!   only records that name another boot are.
//! - A reclaim the policy fails is rolled back and logged; the call goes
//!   on, and the next one tries again.
//! - `"reclaimAfterReboot": false` in `ipam` turns the reclaim off; the
//!   records are still kept, so turning it on later works.

use std::ffi::OsString;

use crate::cni::CniError;
use crate::cni::config::NetConf;
use crate::dhcp::Exchanges;
use crate::netrecord::RESERVED_PREFIX;
use crate::runner::Mode;
use crate::sandbox::{Attachment, Context, Invocation, Op, Sandbox};
use crate::store::{Store, StoreError, Txn};

const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's id, or `None` when the kernel does not say (no /proc).
pub fn boot_id(lookup: &dyn Fn(&str) -> Option<OsString>) -> Option<String> {
    let id = match crate::envvars::boot_id(lookup) {
        Some(id) => id,
        None => std::fs::read_to_string(BOOT_ID_FILE).ok()?,
    };
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

fn records(node: &str) -> String {
    format!("{RESERVED_PREFIX}attachment/{node}/")
}

fn record_key(node: &str, a: &Attachment) -> String {
    format!("{}{}/{}", records(node), a.container_id, a.ifname)
}

fn marker_key(node: &str) -> String {
    format!("{RESERVED_PREFIX}boot/{node}")
}

/// In an ADD's transaction: `a` was made in `boot`.
pub fn remember(
    txn: &mut dyn Txn,
    node: &str,
    a: &Attachment,
    boot: &str,
) -> Result<(), StoreError> {
    txn.put(&record_key(node, a), boot.as_bytes())
}

/// In a DEL's or GC's transaction: `a` is gone.
pub fn forget(txn: &mut dyn Txn, node: &str, a: &Attachment) -> Result<(), StoreError> {
    txn.delete(&record_key(node, a))
}

/// Whether this node's last reclaim was in another boot than `boot`.
fn due(txn: &mut dyn Txn, node: &str, boot: &str) -> Result<bool, StoreError> {
    Ok(txn.get(&marker_key(node))?.as_deref() != Some(boot.as_bytes()))
}

/// In a call's transaction: whether a reclaim must run first. When the
/// marker names another boot but nothing of this node is stale (its first
/// call ever, or one after a reboot with no attachments), the marker is
/// set right here, all or nothing with the call.
pub fn needs_reclaim(txn: &mut dyn Txn, node: &str, boot: &str) -> Result<bool, StoreError> {
    if !due(txn, node, boot)? {
        return Ok(false);
    }
    if !recorded(txn, node, Gone::OtherBoots(boot))?.is_empty() {
        return Ok(true);
    }
    txn.put(&marker_key(node), boot.as_bytes())?;
    Ok(false)
}

/// Which of a node's recorded attachments are gone.
#[derive(Debug, Clone, Copy)]
pub enum Gone<'a> {
    /// Those of every boot but this one: after a reboot.
    OtherBoots(&'a str),
    /// All of them: the node has left the cluster (`release-node`).
    All,
}

impl Gone<'_> {
    fn covers(&self, was: &str) -> bool {
        match self {
            Gone::OtherBoots(boot) => was != *boot,
            Gone::All => true,
        }
    }
}

/// This node's records that `gone` covers, with the boot each names.
fn recorded(
    txn: &mut dyn Txn,
    node: &str,
    gone: Gone,
) -> Result<Vec<(Attachment, String)>, StoreError> {
    let prefix = records(node);
    let mut out = Vec::new();
    for (key, value) in txn.scan_all(&prefix)? {
        let Some((id, ifname)) = key[prefix.len()..].split_once('/') else {
            continue;
        };
        let was = String::from_utf8_lossy(&value).into_owned();
        if gone.covers(&was) {
            let a = Attachment {
                container_id: id.to_string(),
                ifname: ifname.to_string(),
            };
            out.push((a, was));
        }
    }
    Ok(out)
}

/// Every attachment `node` recorded at ADD and has not released, as
/// `(container id, ifname)`: which attachments of a shared store are this
/// node's.
pub fn recorded_attachments(
    txn: &mut dyn Txn,
    node: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(recorded(txn, node, Gone::All)?
        .into_iter()
        .map(|(a, _)| (a.container_id, a.ifname))
        .collect())
}

/// What the policy sees for a call no runtime made (a DEL of an attachment
/// that is long gone, or the operator tools' `inspect`): the network, its
/// config and `node`; no namespace, arguments or result.
pub fn bare_context(conf: &NetConf, node: &str) -> Context {
    Context {
        network: conf.name.clone(),
        cni_version: conf.cni_version.text.clone(),
        config: conf.ipam_raw.clone(),
        cni_args: Vec::new(),
        args: None,
        runtime_config: None,
        netns: None,
        node: node.to_string(),
        dns: None,
    }
}

/// After a reboot: the reclaim, committed, and its marker set.
pub fn reclaim(
    store: &dyn Store,
    sandbox: &Sandbox,
    conf: &NetConf,
    node: &str,
    boot: &str,
    now: u64,
) -> Result<(), CniError> {
    release(
        store,
        sandbox,
        conf,
        node,
        Gone::OtherBoots(boot),
        now,
        Mode::Commit,
    )
    .map(drop)
}

/// What [`release`] released.
#[derive(Debug, Default)]
pub struct Released {
    /// The attachments released through the policy's DEL, with the boot
    /// each was made in.
    pub attachments: Vec<(Attachment, String)>,
    /// For a departed node ([`Gone::All`]): what the policy's
    /// `nodes.release-node` released, or `None` when the policy does not
    /// export it (then only the DELs ran).
    pub by_policy: Option<Vec<crate::sandbox::Released>>,
}

/// Releases, in one transaction, every attachment `node` recorded that
/// `gone` covers, with the policy's DEL. A reboot's reclaim sets the node's
/// marker; releasing a departed node removes it, and then also asks the
/// policy to release the node's own state (`nodes.release-node`, such as
/// pooled's block affinities). With [`Mode::DryRun`] nothing is kept.
pub fn release(
    store: &dyn Store,
    sandbox: &Sandbox,
    conf: &NetConf,
    node: &str,
    gone: Gone,
    now: u64,
    mode: Mode,
) -> Result<Released, CniError> {
    let ctx = bare_context(conf, node);
    // A DEL gives up a DHCP lease; its RELEASE goes once this commits.
    let no_exchange = || Exchanges::None("a release by the host makes no DHCP exchange".into());
    let boot = match gone {
        Gone::OtherBoots(boot) => Some(boot),
        Gone::All => None,
    };
    let dhcp = crate::runner::dhcp_capability(sandbox, conf, no_exchange, node, boot)?;
    let mut retries = crate::retry::Retries::new(conf);
    loop {
        let mut txn = retries.begin(store, &conf.name)?;
        if let Gone::OtherBoots(boot) = gone
            && !due(&mut *txn, node, boot)?
        {
            return Ok(Released::default());
        }
        let released = recorded(&mut *txn, node, gone)?;
        for (a, was) in &released {
            let del = Op::Del(a.clone());
            let call = Invocation::new(&ctx, &del, &conf.ipam.limits, now).with_dhcp(&dhcp);
            let (result, back) = sandbox.call(txn, &call);
            txn = back;
            if let Err(e) = result?.map_err(crate::sandbox::ipam_error) {
                return Err(CniError::internal(format!(
                    "the policy's DEL of {}/{} of node {node} failed: {e}",
                    a.container_id, a.ifname
                )));
            }
            forget(&mut *txn, node, a)?;
            if let (Gone::OtherBoots(_), Mode::Commit) = (gone, mode) {
                log::info!(
                    "reclaim after reboot: released {}/{} of network {} on node {node} (boot {was})",
                    a.container_id,
                    a.ifname,
                    conf.name
                );
            }
        }
        let mut by_policy = None;
        match gone {
            Gone::OtherBoots(boot) => txn.put(&marker_key(node), boot.as_bytes())?,
            Gone::All => {
                txn.delete(&marker_key(node))?;
                let op = Op::ReleaseNode;
                let call = Invocation::new(&ctx, &op, &conf.ipam.limits, now).with_dhcp(&dhcp);
                let (result, back) = sandbox.call(txn, &call);
                txn = back;
                by_policy = match result?.map_err(crate::sandbox::ipam_error) {
                    Ok(crate::sandbox::Answer::Released(r)) => Some(r),
                    Ok(_) => None,
                    Err(e) => {
                        return Err(CniError::internal(format!(
                            "the policy's release of node {node} failed: {e}"
                        )));
                    }
                };
            }
        }
        let released = Released {
            attachments: released,
            by_policy,
        };
        if mode == Mode::DryRun {
            return Ok(released);
        }
        if retries.commit(txn)? {
            if let Some(dhcp) = &dhcp {
                crate::runner::after_commit(store, conf, dhcp, false);
            }
            return Ok(released);
        }
    }
}
