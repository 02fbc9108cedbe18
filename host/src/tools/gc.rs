//! `wasm-ipam gc`: the CNI GC of one network, run by hand from a list of
//! the attachments still in use, with the policy and config the network
//! last ran with.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value};

use crate::cni::env::{Command, Env, Given};
use crate::invoke;
use crate::netrecord::NetworkRecord;
use crate::runner::{self, Answered, Mode};
use crate::store::Store;

/// The valid attachments: a JSON array of `{"containerID", "ifname"}`, as
/// CNI's `cni.dev/valid-attachments`, or a whole object holding that key.
pub fn parse_valid(text: &[u8]) -> anyhow::Result<Value> {
    let v: Value = serde_json::from_slice(text).context("the valid list is not JSON")?;
    let list = match v {
        Value::Array(_) => v,
        Value::Object(mut o) => o
            .remove("cni.dev/valid-attachments")
            .context("the valid list is an object without cni.dev/valid-attachments")?,
        other => bail!(
            "the valid list must be a JSON array of {{\"containerID\", \"ifname\"}}, not {other}"
        ),
    };
    for (i, a) in list.as_array().into_iter().flatten().enumerate() {
        for field in ["containerID", "ifname"] {
            if !a.get(field).is_some_and(Value::is_string) {
                bail!("valid attachment {i} has no string {field:?}: {a}");
            }
        }
    }
    Ok(list)
}

pub struct Outcome {
    pub released: Vec<(String, String, String)>,
}

/// Runs GC on `network`; with `dry_run`, reports and changes nothing.
pub fn run(
    store: &dyn Store,
    data_dir: &Path,
    network: &str,
    valid: Value,
    dry_run: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    if !store.namespaces()?.iter().any(|n| n == network) {
        bail!(
            "no network {network:?} in the store in {}",
            data_dir.display()
        );
    }
    let record = {
        let mut txn = store.begin(network)?;
        NetworkRecord::read(&mut *txn)?
    };
    let Some(record) = record else {
        bail!(
            "network {network:?} has no recorded config: wasm-ipam learns a network's policy and config at its first ADD"
        );
    };
    let mut extra = Map::new();
    extra.insert("cni.dev/valid-attachments".into(), valid);
    // GC exists from CNI 1.1.0; the network may have been added with less.
    extra.insert("cniVersion".into(), "1.1.0".into());
    let conf = super::recorded_conf(&record, network, data_dir, extra)?;
    let sandbox = runner::load_policy(&conf).map_err(|e| anyhow::anyhow!("{e}"))?;
    let request = invoke::Request {
        env: Env::new(Command::Gc, Given::default()).map_err(|e| anyhow::anyhow!("{e}"))?,
        now: runner::now(&|k| std::env::var_os(k)).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let mode = if dry_run { Mode::DryRun } else { Mode::Commit };
    let answered = invoke::run_with(&request, &conf, store, &sandbox, mode)
        .map_err(|e| anyhow::anyhow!("GC of {network:?} failed: {e}"))?;
    let released: Vec<_> = match answered {
        Answered::Released(r) => r
            .into_iter()
            .map(|r| (r.address, r.attachment.container_id, r.attachment.ifname))
            .collect(),
        _ => Vec::new(),
    };
    let verb = if dry_run { "would release" } else { "released" };
    for (addr, id, ifname) in &released {
        writeln!(out, "{verb} {addr} from {id}/{ifname}")?;
    }
    writeln!(
        out,
        "{network}: {} address{} {}",
        released.len(),
        if released.len() == 1 { "" } else { "es" },
        if dry_run {
            "would be released (dry run: nothing changed)"
        } else {
            "released"
        }
    )?;
    Ok(Outcome { released })
}
