//! Running a target: one plugin binary, or a network configuration list
//! the way libcni runs it (SPEC.md, "Network Configuration Lists"), so a
//! whole chain is judged by the same rules as one plugin:
//!
//! - each plugin's config is its own object with the list's `name` and
//!   `cniVersion`, and a top-level `runtimeConfig` reduced to the keys its
//!   `capabilities` declare;
//! - ADD runs the plugins in order, each after the first getting the
//!   previous result as `prevResult`, and stops at the first error;
//! - DEL runs them in reverse and CHECK in order, each with the final ADD
//!   result (the list's `prevResult`), stopping at the first error;
//! - GC runs every plugin and reports the first error after all have run;
//!   STATUS stops at the first;
//! - VERSION answers the versions every plugin claims ([`versions`] says
//!   which plugin narrowed them).
//!
//! A failure names the plugin that failed and its place in the chain
//! (`Outcome::origin`); a plugin that cannot be found on the CNI path is an
//! error outcome that names it, as libcni reports it.
//!
//! Every call is bounded (`cni::exec`): killed past its time limit or its
//! output limit. And a plugin that has run past its time limit on
//! [`MAX_HANGS`] calls is run no more: each later call fails at once,
//! naming why, so that a plugin that never exits costs a run minutes, not
//! one time limit per rule.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::target::{Target, stdin_bytes, supported_versions};
use cni::exec::{self, Call, Outcome, Spawn};

/// Calls killed at the time limit after which the run stops calling.
pub const MAX_HANGS: usize = 3;

/// Runs `call` on `target` with `host` as the plugin's host namespace
/// (`ip netns exec`), and `CNI_PATH` set unless the call sets it.
pub fn run(
    target: &Target,
    call: &Call,
    conf: &Value,
    host: Option<&str>,
) -> std::io::Result<Outcome> {
    let mut call = call.clone();
    if !call.extra.iter().any(|(k, _)| k == "CNI_PATH") {
        call.extra.push(("CNI_PATH".into(), target.cni_path_var()));
    }
    for (k, v) in &target.env {
        if !call.extra.iter().any(|(set, _)| set == k) {
            call.extra.push((k.clone(), v.clone()));
        }
    }
    let spawn = Spawn {
        timeout: target.timeout,
        netns: host,
    };
    match target.binary() {
        Some(binary) => one(target, binary, &call, &stdin_bytes(conf), &spawn),
        None => run_list(target, &call, conf, &spawn),
    }
}

/// One plugin process, unless the target has hung too often already.
fn one(
    target: &Target,
    binary: &std::path::Path,
    call: &Call,
    stdin: &[u8],
    spawn: &Spawn,
) -> std::io::Result<Outcome> {
    {
        let hung = target.hung.lock().expect("hung calls");
        if hung.len() >= MAX_HANGS {
            return Ok(Outcome::not_run(format!(
                "the plugin ran past the time limit on {} calls already ({}), so the suite \
                 calls it no more",
                hung.len(),
                hung.join("; ")
            )));
        }
    }
    let out = exec::run_with(binary, call, stdin, spawn)?;
    if out.timed_out {
        let name = binary.file_name().unwrap_or_default().to_string_lossy();
        target
            .hung
            .lock()
            .expect("hung calls")
            .push(format!("{name} {}", call.command));
    }
    Ok(out)
}

/// Finds `type` on the target's CNI path.
pub fn find(target: &Target, plugin_type: &str) -> Option<PathBuf> {
    exec::find(target.cni_path_var().as_ref(), plugin_type)
}

/// One plugin's config within the list.
fn plugin_conf(list: &Value, plugin: &Value, prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    if let Some(rc) = list["runtimeConfig"].as_object() {
        let caps = &plugin["capabilities"];
        let wanted: serde_json::Map<String, Value> = rc
            .iter()
            .filter(|(k, _)| caps[k.as_str()].as_bool() == Some(true))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !wanted.is_empty() {
            conf["runtimeConfig"] = Value::Object(wanted);
        }
    }
    for key in ["args", "cni.dev/valid-attachments", "cni.dev/attachments"] {
        if let Some(v) = list.get(key) {
            conf[key] = v.clone();
        }
    }
    if let Some(p) = prev.filter(|p| !p.is_null()) {
        conf["prevResult"] = p.clone();
    }
    conf
}

/// What a runtime says of a plugin it cannot find, with where to look.
pub fn missing_message(plugin_type: &str, path: &str) -> String {
    format!(
        "failed to find plugin {plugin_type:?} in path [{path}]: give the folder that holds it \
         with --cni-path (Debian installs the reference plugins in /usr/lib/cni)"
    )
}

fn missing(plugin_type: &str, path: &str) -> Outcome {
    let msg = json!({"code": 7, "msg": missing_message(plugin_type, path)});
    Outcome {
        stdout: msg.to_string(),
        code: Some(1),
        ..Outcome::default()
    }
}

/// "plugin 2 of 3 (firewall)".
fn place(i: usize, n: usize, plugin: &Value) -> String {
    format!(
        "plugin {} of {n} ({})",
        i + 1,
        plugin["type"].as_str().unwrap_or("?")
    )
}

/// Runs `call` on plugin `i` of `plugins` with `conf`, found on the
/// target's CNI path; the outcome names the plugin and its place.
fn run_plugin(
    target: &Target,
    plugins: &[Value],
    i: usize,
    call: &Call,
    conf: &Value,
    spawn: &Spawn,
) -> std::io::Result<Outcome> {
    let plugin = &plugins[i];
    let plugin_type = plugin["type"].as_str().unwrap_or_default();
    let mut out = match find(target, plugin_type) {
        Some(binary) => one(target, &binary, call, &stdin_bytes(conf), spawn)?,
        None => missing(plugin_type, &target.cni_path_var()),
    };
    out.origin = Some(place(i, plugins.len(), plugin));
    Ok(out)
}

/// Runs `call` on the conflist `list`: its own plugins (each pointed at
/// the case's `dataDir`), or, for a VERSION or a config that is not JSON,
/// the target's.
fn run_list(target: &Target, call: &Call, list: &Value, spawn: &Spawn) -> std::io::Result<Outcome> {
    let plugins = match list["plugins"].as_array() {
        Some(own) if !own.is_empty() => own.clone(),
        _ => target.plugins(),
    };
    let n = plugins.len();
    let run_one = |i: usize, conf: &Value| run_plugin(target, &plugins, i, call, conf, spawn);
    if n == 0 {
        return Ok(Outcome::not_run("the conflist has no plugins"));
    }
    if call.command == "VERSION" {
        return Ok(versions_outcome(&plugins, |i| run_one(i, list))?.0);
    }
    // A config that is not JSON goes to the first plugin as it is.
    if list.is_string() {
        return run_one(0, list);
    }
    let mut elapsed = Duration::ZERO;
    let mut last = None;
    match call.command.as_str() {
        "DEL" | "CHECK" | "STATUS" | "GC" => {
            let prev = list.get("prevResult");
            let order: Vec<usize> = if call.command == "DEL" {
                (0..n).rev().collect()
            } else {
                (0..n).collect()
            };
            let mut first_error: Option<Outcome> = None;
            for i in order {
                let out = run_one(i, &plugin_conf(list, &plugins[i], prev))?;
                elapsed += out.elapsed;
                if !out.ok() {
                    if call.command != "GC" {
                        return Ok(Outcome { elapsed, ..out });
                    }
                    first_error.get_or_insert(out);
                } else {
                    last = Some(out);
                }
            }
            if let Some(out) = first_error {
                return Ok(Outcome { elapsed, ..out });
            }
        }
        _ => {
            // ADD, and any other command, in order with the results chained.
            let mut prev = list.get("prevResult").cloned();
            for (i, plugin) in plugins.iter().enumerate() {
                let out = run_one(i, &plugin_conf(list, plugin, prev.as_ref()))?;
                elapsed += out.elapsed;
                if !out.ok() {
                    return Ok(Outcome { elapsed, ..out });
                }
                prev = out.parsed().ok();
                last = Some(out);
            }
        }
    }
    let mut out = last.unwrap_or_else(|| Outcome::not_run("the conflist has no plugins"));
    out.elapsed = elapsed;
    out.origin = None;
    Ok(out)
}

/// The versions a target claims, and, for a chain, which plugin narrowed
/// them and why.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    pub claimed: Vec<String>,
    /// For a chain whose plugins claim different versions: which plugins
    /// left versions out, and what they claim.
    pub narrowed: Option<String>,
}

/// VERSION of every plugin of a list: an outcome listing the versions all
/// of them claim, and the note of which narrowed the set.
fn versions_outcome(
    plugins: &[Value],
    mut version_of: impl FnMut(usize) -> std::io::Result<Outcome>,
) -> std::io::Result<(Outcome, Option<String>)> {
    let mut each: Vec<Vec<String>> = Vec::new();
    for i in 0..plugins.len() {
        let out = version_of(i)?;
        match supported_versions(&out) {
            Ok(v) => each.push(v),
            Err(_) => return Ok((out, None)),
        }
    }
    let common: Vec<String> = each[0]
        .iter()
        .filter(|v| each.iter().all(|claimed| claimed.contains(v)))
        .cloned()
        .collect();
    let any: Vec<&String> = each.iter().flatten().collect();
    let narrowers: Vec<String> = each
        .iter()
        .enumerate()
        .filter(|(_, claimed)| any.iter().any(|v| !claimed.contains(v)))
        .map(|(i, claimed)| {
            format!(
                "{} claims {}",
                place(i, plugins.len(), &plugins[i]),
                claimed.join(", ")
            )
        })
        .collect();
    let note = (!narrowers.is_empty()).then(|| {
        format!(
            "the chain is judged at the versions every plugin claims ({}): {}",
            if common.is_empty() {
                "none".to_string()
            } else {
                common.join(", ")
            },
            narrowers.join("; ")
        )
    });
    let newest = common.last().cloned().unwrap_or_default();
    let out = Outcome {
        stdout: json!({"cniVersion": newest, "supportedVersions": common}).to_string(),
        code: Some(0),
        ..Outcome::default()
    };
    Ok((out, note))
}

/// The versions `target` claims in its VERSION output: for a conflist,
/// those every plugin of it claims, and which plugin narrowed them.
pub fn versions(target: &Target) -> Result<Versions, String> {
    let ask = json!({"cniVersion": "1.1.0"});
    let failed = |out: &Outcome| {
        format!(
            "VERSION of {}{} did not answer: {}, stdout {:?}, stderr {:?}",
            target.describe(),
            out.origin
                .as_ref()
                .map(|o| format!(" ({o})"))
                .unwrap_or_default(),
            out.status(),
            out.stdout,
            out.stderr_tail()
        )
    };
    if target.binary().is_none() {
        let plugins = target.plugins();
        let spawn = Spawn {
            timeout: target.timeout,
            netns: None,
        };
        let version = Call::new("VERSION");
        let (out, narrowed) = versions_outcome(&plugins, |i| {
            run_plugin(target, &plugins, i, &version, &ask, &spawn)
        })
        .map_err(|e| format!("cannot run {}: {e}", target.describe()))?;
        let claimed = supported_versions(&out).map_err(|_| failed(&out))?;
        return Ok(Versions { claimed, narrowed });
    }
    let out = run(target, &Call::new("VERSION"), &ask, None)
        .map_err(|e| format!("cannot run {}: {e}", target.describe()))?;
    let claimed = supported_versions(&out).map_err(|_| failed(&out))?;
    Ok(Versions {
        claimed,
        narrowed: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_gets_the_list_fields_and_only_its_capabilities() {
        let list = json!({"cniVersion": "1.0.0", "name": "n",
                          "runtimeConfig": {"portMappings": [1], "ips": ["10.0.0.2/24"]}});
        let plugin = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let conf = plugin_conf(&list, &plugin, Some(&json!({"ips": []})));
        assert_eq!(conf["name"], "n");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(conf["runtimeConfig"], json!({"portMappings": [1]}));
        assert_eq!(conf["prevResult"], json!({"ips": []}));
        let bare = plugin_conf(&list, &json!({"type": "tuning"}), None);
        assert!(bare.get("runtimeConfig").is_none() && bare.get("prevResult").is_none());
    }

    #[test]
    fn a_chains_versions_are_those_every_plugin_claims_and_the_narrower_is_named() {
        let plugins = [json!({"type": "bridge"}), json!({"type": "firewall"})];
        let claims = [
            json!({"cniVersion": "1.0.0", "supportedVersions":
                   ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]}),
            json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}),
        ];
        let (out, note) = versions_outcome(&plugins, |i| {
            Ok(Outcome {
                stdout: claims[i].to_string(),
                code: Some(0),
                ..Outcome::default()
            })
        })
        .unwrap();
        assert_eq!(supported_versions(&out).unwrap(), ["0.4.0", "1.0.0"]);
        let note = note.unwrap();
        assert!(
            note.contains("(0.4.0, 1.0.0)")
                && note.contains("plugin 2 of 2 (firewall) claims 0.4.0, 1.0.0"),
            "{note}"
        );
        assert!(
            !note.contains("plugin 1 of 2"),
            "bridge narrowed nothing: {note}"
        );
    }
}
