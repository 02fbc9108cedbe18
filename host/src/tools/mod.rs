//! The operator's subcommands: `leases`, `metrics`, `gc`, `release-node`,
//! `reconcile`,
//! `compile`, `install`, `sync-credentials`, `import-host-local` and
//! `simulate`.
//!
//! They run as a person at a node's shell, never on the CNI path, so they
//! may take their time and use anyhow for messages. What they change goes
//! through the same store transactions and the same policy calls as the
//! runtime's invocations; none of them writes keys of its own invention.
//! They read the store through the kit's lease layout, which every built-in
//! policy uses, so listing works whatever the policy.

pub mod compile;
pub mod credentials;
pub mod gc;
mod http;
pub mod import;
pub mod inspect;
pub mod install;
pub mod leases;
pub mod metrics;
pub mod reconcile;
pub mod release_node;
pub mod simulate;

use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::store::{DB_FILE, SqliteStore};

/// Opens the store in `data_dir`, which must already be one: a tool that
/// reads must not create an empty store where a typo pointed it.
pub fn open_existing(data_dir: &Path) -> anyhow::Result<SqliteStore> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        bail!(
            "no wasm-ipam store in {}: {} does not exist (is --data-dir the ipam.dataDir of the network config?)",
            data_dir.display(),
            db.display()
        );
    }
    SqliteStore::open(data_dir)
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))
}

/// Reads a file, or stdin when `path` is `-`.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("cannot read stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// The network config: a `.conf`, or a `.conflist` whose first plugin with
/// an `ipam` section is used.
pub fn read_config(text: &[u8]) -> anyhow::Result<Value> {
    let v: Value = serde_json::from_slice(text).context("the config is not JSON")?;
    let Some(plugins) = v.get("plugins").and_then(Value::as_array) else {
        return Ok(v);
    };
    let plugin = plugins
        .iter()
        .find(|p| p.get("ipam").is_some())
        .context("the config list has no plugin with an ipam section")?;
    let mut conf = plugin.clone();
    for key in ["cniVersion", "name"] {
        if let Some(x) = v.get(key) {
            conf[key] = x.clone();
        }
    }
    Ok(conf)
}

/// The config that runs network `name`'s policy as the host recorded it at
/// ADD, with `data_dir` as its data dir and `extra` top-level fields: what
/// the tools that call a policy outside a CNI call (`gc`, `release-node`,
/// `leases`) run it with.
pub fn recorded_conf(
    record: &crate::netrecord::NetworkRecord,
    name: &str,
    data_dir: &Path,
    extra: serde_json::Map<String, Value>,
) -> anyhow::Result<crate::cni::config::NetConf> {
    crate::cni::config::NetConf::parse(record.netconf(name, data_dir, extra).to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("the recorded config of {name:?} no longer parses: {e}"))
}
