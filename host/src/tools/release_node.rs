//! `wasm-ipam release-node`: release everything a node that has left the
//! cluster still holds, in every network of a store (on etcd, the store the
//! whole cluster shares), as Calico's controllers do for a deleted node.
//!
//! It releases what the host recorded of the node at each ADD (see
//! `reboot`), with each network's own policy's DEL, one transaction per
//! network: the policy frees the addresses and does what its DEL does
//! (sticky starts its holds). Then, in the same transaction, the policy's
//! `nodes.release-node` gives up what the node itself holds: pooled gives
//! its empty blocks back to the pool, its last one included, and leaves a
//! block that still holds addresses without an owner until they are
//! released. A policy without that export keeps no per-node state.

use std::io::Write;
use std::path::Path;

use anyhow::bail;

use crate::netrecord::NetworkRecord;
use crate::reboot::{self, Gone};
use crate::runner::{self, Mode};
use crate::store::Store;

/// Releases `node`'s attachments in `network` (every network by default);
/// the count released.
pub fn run(
    store: &dyn Store,
    data_dir: &Path,
    node: &str,
    network: Option<&str>,
    dry_run: bool,
    now: u64,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    if !crate::cni::config::valid_node_name(node) {
        // A name with a `/` would reach into other nodes' records.
        bail!(
            "{node:?} is not a node name: at most 253 lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit"
        );
    }
    let known = store.namespaces()?;
    let networks: Vec<String> = match network {
        Some(n) if known.iter().any(|k| k == n) => vec![n.to_string()],
        Some(n) => bail!("no network {n:?} in the store in {}", data_dir.display()),
        None => known,
    };
    let mode = if dry_run { Mode::DryRun } else { Mode::Commit };
    let verb = if dry_run { "would release" } else { "released" };
    let mut total = 0;
    for name in &networks {
        let record = NetworkRecord::read(&mut *store.begin(name)?)?;
        let Some(record) = record else {
            writeln!(out, "{name}: no recorded config, skipped")?;
            continue;
        };
        let conf = super::recorded_conf(&record, name, data_dir, Default::default())?;
        let sandbox = runner::load_policy(&conf).map_err(|e| anyhow::anyhow!("{e}"))?;
        let released = reboot::release(store, &sandbox, &conf, node, Gone::All, now, mode)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        for (a, _) in &released.attachments {
            writeln!(out, "{name}: {verb} {}/{}", a.container_id, a.ifname)?;
        }
        match &released.by_policy {
            Some(leases) => {
                for r in leases {
                    writeln!(
                        out,
                        "{name}: {verb} {} of {}/{} (no record of it)",
                        r.address, r.attachment.container_id, r.attachment.ifname
                    )?;
                }
                writeln!(
                    out,
                    "{name}: policy {} {verb} the node's own state (such as block affinities)",
                    conf.ipam.policy
                )?;
            }
            None => writeln!(
                out,
                "{name}: policy {} keeps no per-node state to release (it does not export {})",
                conf.ipam.policy,
                crate::sandbox::NODES_INTERFACE
            )?,
        }
        let count = released.attachments.len();
        writeln!(
            out,
            "{name}: {count} attachment{} of node {node} {verb}{}",
            if count == 1 { "" } else { "s" },
            if dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        )?;
        total += count;
    }
    Ok(total)
}
