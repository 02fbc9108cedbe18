//! `wasm-ipam release-node`: release everything a node that has left the
//! cluster still holds, in every network of a store (on etcd, the store the
//! whole cluster shares), as Calico's controllers do for a deleted node.
//!
//! It releases what the host recorded of the node at each ADD (see
//! `reboot`), with each network's own policy's DEL, one transaction per
//! network: the policy frees the addresses and does what its DEL does:
//! pooled gives back the blocks left empty except the node's last, which it
//! keeps as Calico keeps an affinity (giving that up needs an operation the
//! contract does not have yet), and sticky starts its holds.

use std::io::Write;
use std::path::Path;

use anyhow::bail;

use crate::cni::config::NetConf;
use crate::invoke::{self, Mode};
use crate::netrecord::NetworkRecord;
use crate::reboot::{self, Gone};
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
    if node.is_empty() {
        bail!("the node name must not be empty");
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
        let conf = NetConf::parse(
            record
                .netconf(name, data_dir, Default::default())
                .to_string()
                .as_bytes(),
        )
        .map_err(|e| anyhow::anyhow!("the recorded config of {name:?} no longer parses: {e}"))?;
        let sandbox = invoke::load_policy(&conf).map_err(|e| anyhow::anyhow!("{e}"))?;
        let released = reboot::release(store, &sandbox, &conf, node, Gone::All, now, mode)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        for (a, _) in &released {
            writeln!(out, "{name}: {verb} {}/{}", a.container_id, a.ifname)?;
        }
        writeln!(
            out,
            "{name}: {} attachment{} of node {node} {verb}{}",
            released.len(),
            if released.len() == 1 { "" } else { "s" },
            if dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        )?;
        total += released.len();
    }
    Ok(total)
}
