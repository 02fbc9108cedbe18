//! The networks a node's runtime delegates to wasm-ipam, found as the
//! runtime finds them: every `.conf`, `.conflist` and `.json` in its CNI
//! config folder (libcni's extensions), and in each, every plugin whose
//! `ipam.type` is `wasm-ipam`. Multus' secondary networks are configs of
//! the same kind, so a folder that holds them is read the same way.
//!
//! A file that is not a usable config, or that someone other than root
//! could have written, is reported and skipped: it says nothing about any
//! other network.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cni::config::NetConf;

/// The IPAM `type` that names this plugin.
pub const TYPE: &str = "wasm-ipam";

/// One network found, with the file that names it.
#[derive(Debug)]
pub struct Found {
    pub file: PathBuf,
    pub conf: NetConf,
}

/// What a config folder holds for wasm-ipam.
#[derive(Debug, Default)]
pub struct Networks {
    pub found: Vec<Found>,
    /// Files that could not be read as configs, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Reads `dir` in name order, as libcni does.
pub fn read(dir: &Path) -> std::io::Result<Networks> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conf" | "conflist" | "json")
                )
        })
        .collect();
    files.sort();
    let mut out = Networks::default();
    for file in files {
        match in_file(&file) {
            Ok(confs) => out.found.extend(confs.into_iter().map(|conf| Found {
                file: file.clone(),
                conf,
            })),
            Err(why) => out.skipped.push((file, why)),
        }
    }
    // One network, one pass: two files naming the same network and store
    // (a .conf beside its .conflist) are one, the first in name order.
    let mut kept: Vec<Found> = Vec::new();
    for f in out.found {
        let same = |k: &Found| {
            k.conf.name == f.conf.name
                && k.conf.ipam.store == f.conf.ipam.store
                && k.conf.ipam.data_dir == f.conf.ipam.data_dir
        };
        if !kept.iter().any(same) {
            kept.push(f);
        }
    }
    out.found = kept;
    Ok(out)
}

/// The wasm-ipam networks of one file: none when no plugin delegates to
/// wasm-ipam.
fn in_file(file: &Path) -> Result<Vec<NetConf>, String> {
    // A config decides which policy root runs on which store: read only
    // if no one but root could have written it, as the runtime's own
    // folder is.
    let text = crate::trust::read_trusted(file, 1 << 20).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))?;
    let plugins: Vec<&Value> = match v.get("plugins") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(_) => return Err("\"plugins\" is not a list".into()),
        None => vec![&v],
    };
    let mut out = Vec::new();
    for plugin in plugins {
        if plugin.pointer("/ipam/type").and_then(Value::as_str) != Some(TYPE) {
            continue;
        }
        let mut conf = plugin.clone();
        for key in ["cniVersion", "name"] {
            if let Some(x) = v.get(key) {
                conf[key] = x.clone();
            }
        }
        let parsed = NetConf::parse(conf.to_string().as_bytes()).map_err(|e| e.to_string())?;
        out.push(parsed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_delegating_plugin_and_skips_what_is_not_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let w = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        w(
            "10-pods.conflist",
            format!(
                r#"{{"cniVersion":"1.0.0","name":"pods","plugins":[
                  {{"type":"bridge","ipam":{{"type":"wasm-ipam","policy":"host-local","dataDir":"{}",
                    "ranges":[[{{"subnet":"10.7.0.0/24"}}]]}}}},
                  {{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
                data.display()
            ),
        );
        w(
            "20-other.conf",
            r#"{"cniVersion":"1.0.0","name":"other","type":"bridge","ipam":{"type":"host-local"}}"#
                .into(),
        );
        w("30-broken.conflist", "{not json".into());
        // Another network between, then pods again: still one pass each.
        let one = |name: &str| {
            format!(
                r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge","ipam":{{"type":"wasm-ipam",
                    "dataDir":"{}","ranges":[[{{"subnet":"10.7.0.0/24"}}]]}}}}"#,
                data.display()
            )
        };
        w("25-second.conf", one("second"));
        w("40-pods-again.conf", one("pods"));
        w("README.md", "not a config".into());
        let found = read(dir.path()).unwrap();
        let names: Vec<&str> = found.found.iter().map(|f| f.conf.name.as_str()).collect();
        assert_eq!(names, ["pods", "second"], "{found:?}");
        assert!(
            found.found[0].file.ends_with("10-pods.conflist"),
            "the first file wins"
        );
        assert_eq!(found.found[0].conf.ipam.data_dir, data);
        assert_eq!(found.skipped.len(), 1);
        assert!(found.skipped[0].0.ends_with("30-broken.conflist"));
        assert!(
            found.skipped[0].1.contains("not JSON"),
            "{:?}",
            found.skipped
        );
    }
}
