//! Replaying recorded runtime traffic (JSON Lines, one invocation a line:
//! `plugin`, `env`, `stdin`, `stdout`, `stderr`, `exit`) against a target.
//!
//! Only the invocations of the replayed plugin are sent (a recording of
//! bridge with host-local holds both); each gets the target's `ipam.type`,
//! the `--set` fields, a fresh `dataDir` per recording, and the target's
//! folder as `CNI_PATH`. Where the runtime sent a `prevResult`, the replay
//! sends what the target itself answered to that attachment's ADD, as a
//! runtime would.
//!
//! Two modes:
//! - exact: each exit status matches, and each success prints what was
//!   recorded, after normalisation (key order, absent versus null or empty
//!   fields, an error's `cniVersion`). A failure must be an error object; its
//!   code must match too unless the recording was made with another plugin.
//! - spec: each exit status matches, each output is valid for its version,
//!   and no address is held by two attachments at once.
//!
//! An interface or chained plugin replays in namespaces made to match: one
//! host namespace for the session and one container namespace for each
//! `CNI_NETNS` the recording names. What differs from one machine to the
//! next does not count in exact mode: MAC addresses, the names of host
//! links the config does not name (generated veth names), and namespace
//! paths, which are mapped back to the recorded ones.
//!
//! A chained plugin's ADD was recorded with the `prevResult` of the plugins
//! before it, which the replay does not run: the links that result names
//! are made first (`Spaces::links_of`), as they stood on the recording
//! machine: the first host-side interface, when there are several, as a
//! bridge holding the gateways, every other host-side one as a veth whose
//! peer is the container interface beside it in the list, with the
//! result's addresses and default route, so the plugin finds what it
//! found then.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::chain;
use crate::host::Host;
use crate::netns::Netns;
use crate::schema;
use crate::target::{PluginKind, Target};
use cni::exec::{Call, Outcome};

#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub plugin: String,
    pub env: BTreeMap<String, String>,
    pub stdin: Value,
    #[serde(default)]
    pub stdout: Value,
    #[serde(default)]
    pub stderr: String,
    pub exit: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exact,
    Spec,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Exact => "exact",
            Mode::Spec => "spec",
        }
    }
}

/// Every `.jsonl` file in `dirs` (or the files themselves), sorted.
pub fn files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Ok(entries) = std::fs::read_dir(p) {
                out.extend(
                    entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|f| f.extension().is_some_and(|x| x == "jsonl")),
                );
            }
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out
}

pub fn load(path: &Path) -> Result<Vec<Record>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn call_from(env: &BTreeMap<String, String>) -> Call {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    Call {
        command: get("CNI_COMMAND").unwrap_or_default(),
        container_id: get("CNI_CONTAINERID"),
        ifname: get("CNI_IFNAME"),
        netns: get("CNI_NETNS"),
        args: get("CNI_ARGS"),
        extra: Vec::new(),
    }
}

/// Replays the invocations of `plugin` in `records`; the first mismatch is
/// the error. Returns how many invocations were checked.
pub fn replay(
    target: &Target,
    records: &[Record],
    plugin: &str,
    mode: Mode,
) -> Result<usize, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data_dir = dir.path().join("data");
    let mut spaces = match target.plugin_kind {
        PluginKind::Ipam => None,
        _ => Some(Spaces::new(target, dir.path())?),
    };
    let mut results: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut holders: BTreeMap<IpAddr, (String, String)> = BTreeMap::new();
    let mut checked = 0;
    for (n, rec) in records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.plugin == plugin)
    {
        let mut call = call_from(&rec.env);
        if let (Some(spaces), Some(path)) = (spaces.as_mut(), call.netns.clone()) {
            call.netns = Some(spaces.sandbox(&path)?);
        }
        let att = (
            call.container_id.clone().unwrap_or_default(),
            call.ifname.clone().unwrap_or_default(),
        );
        let mut stdin = target.retarget(&rec.stdin, &data_dir);
        if stdin.get("prevResult").is_some()
            && let Some(ours) = results.get(&att)
        {
            stdin["prevResult"] = ours.clone();
        } else if let (Some(recorded), Some(ours)) = (rec.env.get("CNI_NETNS"), &call.netns) {
            // An upstream plugin's result, as recorded: its sandbox paths
            // are the recording machine's.
            for i in stdin["prevResult"]["interfaces"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if i["sandbox"].as_str() == Some(recorded.as_str()) {
                    i["sandbox"] = Value::String(ours.clone());
                }
            }
        }
        let recorded_type = match target.plugin_kind {
            PluginKind::Ipam => &rec.stdin["ipam"]["type"],
            _ => &rec.stdin["type"],
        };
        let retargeted = recorded_type.as_str() != Some(target.ipam_type().as_str());
        if let (Some(spaces), Some(prev)) = (spaces.as_mut(), stdin.get("prevResult")) {
            spaces.links_of(prev, call.netns.as_deref())?;
        }
        let out = chain::run(
            target,
            &call,
            &stdin,
            spaces.as_ref().map(|s| s.host.name()),
        )
        .unwrap_or_else(Outcome::not_run);
        let at = format!(
            "invocation {} ({} {} {})",
            n + 1,
            call.command,
            att.0,
            att.1
        );
        let shown = || {
            format!(
                "stdin: {stdin}\nrecorded: exit {} stdout {}\ngot: {} stdout {:?} stderr {:?}",
                rec.exit,
                rec.stdout,
                out.status(),
                out.stdout,
                out.stderr_tail()
            )
        };
        if out.ok() != (rec.exit == 0) {
            return Err(format!("{at}: the exit status differs\n{}", shown()));
        }
        let ours = out
            .parsed()
            .map_err(|e| format!("{at}: {e}\n{}", shown()))?;
        let version = rec.stdin["cniVersion"].as_str().unwrap_or("0.1.0");
        if !out.ok() {
            let problems = schema::error_problems(&ours);
            if !problems.is_empty() {
                return Err(format!("{at}: {}\n{}", problems.join("; "), shown()));
            }
            if mode == Mode::Exact && !retargeted && ours["code"] != rec.stdout["code"] {
                return Err(format!("{at}: the error code differs\n{}", shown()));
            }
        } else if call.command == "ADD" {
            let problems = schema::result_problems(&ours, version);
            if !problems.is_empty() {
                return Err(format!("{at}: {}\n{}", problems.join("; "), shown()));
            }
            let comparable = match &spaces {
                Some(sp) => sp.machine_free(&ours, &rec.stdin),
                None => ours.clone(),
            };
            let recorded = match &spaces {
                Some(sp) => sp.machine_free(&rec.stdout, &rec.stdin),
                None => rec.stdout.clone(),
            };
            if mode == Mode::Exact && schema::normalise(&comparable) != schema::normalise(&recorded)
            {
                return Err(format!(
                    "{at}: the result differs from the recording\n{}",
                    shown()
                ));
            }
            for ip in schema::addresses(&ours) {
                if let Some(other) = holders.get(&ip).filter(|h| **h != att) {
                    return Err(format!(
                        "{at}: {ip} is already held by {} {}\n{}",
                        other.0,
                        other.1,
                        shown()
                    ));
                }
                holders.insert(ip, att.clone());
            }
            results.insert(att.clone(), ours);
        } else if !out.stdout.trim().is_empty() {
            return Err(format!(
                "{at}: {} must print nothing on success\n{}",
                call.command,
                shown()
            ));
        } else if call.command == "DEL" {
            results.remove(&att);
            holders.retain(|_, h| *h != att);
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(format!("the recording has no invocation of {plugin}"));
    }
    Ok(checked)
}

/// The namespaces of a replayed session: one host, and one container
/// namespace for each recorded `CNI_NETNS`.
struct Spaces {
    host: Host,
    /// Recorded path to ours.
    sandboxes: BTreeMap<String, Netns>,
}

impl Spaces {
    fn new(target: &Target, scratch: &Path) -> Result<Spaces, String> {
        let host = Host::new(target, "replay-host", scratch)?;
        Ok(Spaces {
            host,
            sandboxes: BTreeMap::new(),
        })
    }

    /// Makes the links a recorded `prevResult` names that the replay's
    /// namespaces lack (see the module docs); `netns` is our namespace for
    /// the call. A link that exists already is left as it is.
    fn links_of(&mut self, prev: &Value, netns: Option<&str>) -> Result<(), String> {
        let interfaces = prev["interfaces"].as_array().cloned().unwrap_or_default();
        let Some(ctr) = netns.and_then(|p| {
            self.sandboxes
                .values()
                .find(|ns| ns.path().display().to_string() == p)
        }) else {
            return Ok(());
        };
        let name = |i: &Value| i["name"].as_str().unwrap_or_default().to_string();
        let host_side: Vec<String> = interfaces
            .iter()
            .filter(|i| i["sandbox"].is_null())
            .map(name)
            .filter(|n| !n.is_empty())
            .collect();
        let inside: Vec<(usize, String)> = interfaces
            .iter()
            .enumerate()
            .filter(|(_, i)| i["sandbox"].is_string())
            .map(|(n, i)| (n, name(i)))
            .collect();
        let exists = |ns: &Netns, link: &str| ns.link(link).map(|l| l.is_some());
        let (bridge, peers) = match host_side.split_first() {
            Some((first, rest)) if !rest.is_empty() => (Some(first.clone()), rest.to_vec()),
            _ => (None, host_side.clone()),
        };
        if let Some(bridge) = &bridge
            && !exists(&self.host, bridge)?
        {
            self.host.ip(&["link", "add", bridge, "type", "bridge"])?;
            self.host.ip(&["link", "set", bridge, "up"])?;
            for ip in prev["ips"].as_array().into_iter().flatten() {
                let (Some(address), Some(gateway)) =
                    (ip["address"].as_str(), ip["gateway"].as_str())
                else {
                    continue;
                };
                let prefix = address.rsplit_once('/').map_or("32", |(_, p)| p);
                let _ =
                    self.host
                        .ip(&["addr", "add", &format!("{gateway}/{prefix}"), "dev", bridge]);
            }
        }
        for (k, (index, inner)) in inside.iter().enumerate() {
            if exists(ctr, inner)? {
                continue;
            }
            let outer = peers
                .get(k)
                .cloned()
                .unwrap_or_else(|| format!("cnictr{index}"));
            self.host.ip(&[
                "link",
                "add",
                &outer,
                "type",
                "veth",
                "peer",
                "name",
                inner,
                "netns",
                ctr.name(),
            ])?;
            self.host.ip(&["link", "set", &outer, "up"])?;
            if let Some(bridge) = &bridge {
                self.host.ip(&["link", "set", &outer, "master", bridge])?;
            }
            ctr.ip(&["link", "set", inner, "up"])?;
            for ip in prev["ips"].as_array().into_iter().flatten() {
                let on_it = ip["interface"].as_u64() == Some(*index as u64)
                    || (ip["interface"].is_null() && k == 0);
                if let Some(address) = ip["address"].as_str().filter(|_| on_it) {
                    ctr.ip(&["addr", "add", address, "dev", inner])?;
                    if let Some(gateway) = ip["gateway"].as_str() {
                        let _ = ctr.ip(&["route", "add", "default", "via", gateway, "dev", inner]);
                    }
                }
            }
        }
        Ok(())
    }

    /// Our namespace's path for a recorded one.
    fn sandbox(&mut self, recorded: &str) -> Result<String, String> {
        if !self.sandboxes.contains_key(recorded) {
            self.sandboxes
                .insert(recorded.to_string(), Netns::new("replay-ctr")?);
        }
        Ok(self.sandboxes[recorded].path().display().to_string())
    }

    /// `result` without what differs between machines: MACs, the names of
    /// host links `config` does not name, and our namespace paths (mapped
    /// back to the recorded ones).
    fn machine_free(&self, result: &Value, config: &Value) -> Value {
        let mut r = result.clone();
        let named: Vec<&str> = strings(config);
        for entry in r["interfaces"].as_array_mut().into_iter().flatten() {
            if entry.get("mac").is_some() {
                entry["mac"] = Value::from("<mac>");
            }
            match entry["sandbox"].as_str().map(str::to_string) {
                Some(ours) => {
                    if let Some((recorded, _)) = self
                        .sandboxes
                        .iter()
                        .find(|(_, ns)| ns.path().display().to_string() == ours)
                    {
                        entry["sandbox"] = Value::from(recorded.as_str());
                    }
                }
                None => {
                    if !named.contains(&entry["name"].as_str().unwrap_or_default()) {
                        entry["name"] = Value::from("<generated>");
                    }
                }
            }
        }
        r
    }
}

/// Every string in a JSON value.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn machine_free_drops_macs_generated_names_and_our_paths() {
        if !crate::netns::is_root() {
            return;
        }
        let mut spaces = Spaces::new(&Target::native("/bin/true"), Path::new("/tmp")).unwrap();
        let ours = spaces.sandbox("/var/run/netns/rec-c1").unwrap();
        let config = json!({"bridge": "recbr1"});
        let result = json!({"interfaces": [
            {"name": "recbr1", "mac": "02:00:00:00:00:01"},
            {"name": "veth1234abcd", "mac": "02:00:00:00:00:02"},
            {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": ours}]});
        assert_eq!(
            spaces.machine_free(&result, &config),
            json!({"interfaces": [
                {"name": "recbr1", "mac": "<mac>"},
                {"name": "<generated>", "mac": "<mac>"},
                {"name": "eth0", "mac": "<mac>", "sandbox": "/var/run/netns/rec-c1"}]})
        );
    }
}
