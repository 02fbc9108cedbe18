//! `wasm-ipam simulate`: a sequence of ADD, DEL, CHECK, GC and STATUS
//! events run against a policy in a throwaway in-memory store, through the
//! same checks and transactions as real calls, to try a policy or a config
//! before a node depends on it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cni::config::NetConf;
use crate::cni::env::{Env, Given, parse_command};
use crate::invoke;
use crate::runner::{self, Answered, Mode};
use crate::store::MemoryStore;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    op: String,
    #[serde(rename = "containerID", default)]
    container_id: Option<String>,
    #[serde(default)]
    ifname: Option<String>,
    /// `CNI_ARGS`, as the runtime would pass them: `K=V;K2=V2`.
    #[serde(default)]
    args: Option<String>,
    /// The node the call runs on (the pooled policy's affinity).
    #[serde(default)]
    node: Option<String>,
    /// The clock for this event and the ones after it, in seconds since
    /// the epoch.
    #[serde(default)]
    at: Option<u64>,
    /// GC: the attachments still in use.
    #[serde(default)]
    valid: Option<Value>,
}

fn event_conf(base: &Value, ev: &Event) -> Value {
    let mut conf = base.clone();
    if let Some(node) = &ev.node {
        conf["ipam"]["node"] = node.clone().into();
    }
    if let Some(valid) = &ev.valid {
        conf["cni.dev/valid-attachments"] = valid.clone();
    }
    conf
}

/// One line of output: the event, and the addresses or the error.
fn describe(n: usize, ev: &Event, who: &str, outcome: &Result<Answered, String>) -> String {
    let what = match outcome {
        Ok(Answered::Result(r)) => r
            .ips
            .iter()
            .map(|ip| ip.address.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        Ok(Answered::Released(rel)) if rel.is_empty() => "nothing to release".into(),
        Ok(Answered::Released(rel)) => format!(
            "released {}",
            rel.iter()
                .map(|r| format!(
                    "{} ({}/{})",
                    r.address, r.attachment.container_id, r.attachment.ifname
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ok(Answered::Nothing) => "ok".into(),
        Err(e) => format!("error {e}"),
    };
    let op = ev.op.to_ascii_uppercase();
    if who.is_empty() {
        format!("line {n}: {op} -> {what}")
    } else {
        format!("line {n}: {op} {who} -> {what}")
    }
}

pub fn run(
    config: &[u8],
    events: &[u8],
    json_out: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let base = super::read_config(config)?;
    let base_conf = NetConf::parse(base.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("invalid network config: {e}"))?;
    let events: Vec<(usize, Event)> = std::str::from_utf8(events)
        .context("the events are not UTF-8")?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|e| (i + 1, e))
                .with_context(|| format!("events line {}: not an event: {l}", i + 1))
        })
        .collect::<anyhow::Result<_>>()?;
    if events.is_empty() {
        bail!(
            "no events: give one JSON object per line, such as {{\"op\":\"ADD\",\"containerID\":\"c1\"}}"
        );
    }
    // A private cache: a simulation must not write where a node's runtime
    // reads. It costs one compile per run.
    // The lease listing at the end asks the policy through `inspect`, with
    // this dir as the data dir: the policy is found compiled in its cache.
    let sim_dir = tempfile::tempdir()?;
    let mut conf_for_load = base_conf.clone();
    conf_for_load.ipam.cache_dir = sim_dir.path().join("cache");
    let sandbox = runner::load_policy(&conf_for_load).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = MemoryStore::new();
    let mut clock = runner::now(&|k| std::env::var_os(k)).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (line, ev) in &events {
        let op = ev.op.to_ascii_uppercase();
        if !["ADD", "DEL", "CHECK", "GC", "STATUS"].contains(&op.as_str()) {
            bail!(
                "events line {line}: op must be ADD, DEL, CHECK, GC or STATUS, not {:?}",
                ev.op
            );
        }
        clock = ev.at.unwrap_or(clock);
        let id = ev.container_id.clone().unwrap_or_default();
        let ifname = ev.ifname.clone().unwrap_or_else(|| "eth0".into());
        let given = Given {
            container_id: Some(id.clone()),
            ifname: Some(ifname.clone()),
            netns: Some(format!("/var/run/netns/sim-{id}")),
            args: ev.args.clone(),
        };
        let conf_json = event_conf(&base, ev);
        // As on the CNI path: the config is read before the environment.
        let outcome = NetConf::parse(conf_json.to_string().as_bytes()).and_then(|conf| {
            let env = Env::new(parse_command(&op)?, given)?;
            let request = invoke::Request { env, now: clock };
            invoke::run_with(&request, &conf, &store, &sandbox, Mode::Commit)
        });
        let who = if matches!(op.as_str(), "GC" | "STATUS") {
            String::new()
        } else {
            format!("{id}/{ifname}")
        };
        if json_out {
            let body = match &outcome {
                Ok(Answered::Result(r)) => json!({"result": serde_json::from_str::<Value>(
                    &r.to_json(&base_conf.cni_version).map_err(|e| anyhow::anyhow!("{e}"))?)?}),
                Ok(Answered::Released(rel)) => json!({"released": rel.iter().map(|r| json!({
                    "address": r.address, "containerID": r.attachment.container_id,
                    "ifname": r.attachment.ifname})).collect::<Vec<_>>()}),
                Ok(Answered::Nothing) => json!({}),
                Err(e) => json!({"error": {"code": e.code(), "msg": e.to_string()}}),
            };
            let mut line_json = json!({"line": line, "op": op});
            line_json
                .as_object_mut()
                .expect("an object")
                .extend(body.as_object().expect("an object").clone());
            writeln!(out, "{line_json}")?;
        } else {
            let text = outcome.map_err(|e| format!("{}: {e}", e.code()));
            writeln!(out, "{}", describe(*line, ev, &who, &text))?;
        }
    }
    let reports = super::leases::collect(&store, sim_dir.path(), None, clock)?;
    if json_out {
        writeln!(out, "{}", json!({ "networks": reports }))?;
    } else {
        writeln!(out)?;
        super::leases::render_text(out, &reports, clock)?;
    }
    Ok(())
}

/// Reads the config and events files (`-` for stdin) and runs them.
pub fn run_files(
    config: &Path,
    events: &Path,
    json_out: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let config = super::read_input(config)?;
    let events = super::read_input(events)?;
    run(&config, &events, json_out, out)
}
