//! Running a network configuration list the way libcni runs it, so a whole
//! chain can be judged by the same rules as one plugin (SPEC.md, "Network
//! Configuration Lists"):
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
//! - VERSION answers the versions every plugin claims.
//!
//! A plugin that cannot be found on the CNI path is an error outcome that
//! names it, as libcni reports it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::target::{Target, stdin_bytes, supported_versions};
use cni::exec::{self, Call, Outcome, Spawn};

/// Finds `type` on the target's CNI path.
fn find(target: &Target, plugin_type: &str) -> Option<PathBuf> {
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

fn missing(plugin_type: &str, path: &str) -> Outcome {
    let text = format!("failed to find plugin {plugin_type:?} in path [{path}]");
    let msg = json!({"code": 7, "msg": text});
    Outcome {
        stdout: msg.to_string(),
        stderr: String::new(),
        code: Some(1),
        elapsed: Duration::ZERO,
        timed_out: false,
    }
}

/// Runs `call` on the conflist `list`.
pub fn run(target: &Target, call: &Call, list: &Value, spawn: &Spawn) -> std::io::Result<Outcome> {
    let plugins: Vec<Value> = list["plugins"].as_array().cloned().unwrap_or_default();
    let one = |plugin: &Value, conf: &Value| -> std::io::Result<Outcome> {
        let plugin_type = plugin["type"].as_str().unwrap_or_default();
        match find(target, plugin_type) {
            Some(binary) => exec::run_with(&binary, call, &stdin_bytes(conf), spawn),
            None => Ok(missing(plugin_type, &target.cni_path_var())),
        }
    };
    // A config that is not JSON goes to the first plugin as it is.
    if list.is_string() || plugins.is_empty() {
        let first = target
            .config
            .as_ref()
            .and_then(|c| c["plugins"].get(0))
            .cloned()
            .unwrap_or_default();
        return one(&first, list);
    }
    let mut elapsed = Duration::ZERO;
    let mut last = None;
    match call.command.as_str() {
        "VERSION" => return versions(&plugins, |p| one(p, list)),
        "DEL" | "CHECK" | "STATUS" | "GC" => {
            let prev = list.get("prevResult");
            let ordered: Vec<&Value> = if call.command == "DEL" {
                plugins.iter().rev().collect()
            } else {
                plugins.iter().collect()
            };
            let mut first_error: Option<Outcome> = None;
            for plugin in ordered {
                let out = one(plugin, &plugin_conf(list, plugin, prev))?;
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
            for plugin in &plugins {
                let out = one(plugin, &plugin_conf(list, plugin, prev.as_ref()))?;
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
    Ok(out)
}

/// VERSION of a list: the versions all its plugins claim.
fn versions(
    plugins: &[Value],
    mut one: impl FnMut(&Value) -> std::io::Result<Outcome>,
) -> std::io::Result<Outcome> {
    let mut common: Option<Vec<String>> = None;
    for plugin in plugins {
        let out = one(plugin)?;
        let claimed = match supported_versions(&out) {
            Ok(v) => v,
            Err(_) => return Ok(out),
        };
        common = Some(match common {
            None => claimed,
            Some(c) => c.into_iter().filter(|v| claimed.contains(v)).collect(),
        });
    }
    let common = common.unwrap_or_default();
    let newest = common.last().cloned().unwrap_or_default();
    Ok(Outcome {
        stdout: json!({"cniVersion": newest, "supportedVersions": common}).to_string(),
        stderr: String::new(),
        code: Some(0),
        elapsed: Duration::ZERO,
        timed_out: false,
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
}
