//! A spy IPAM plugin, for the delegation rules: a shell script a case writes
//! into its own folder and names as the config's `ipam.type`, found on the
//! `CNI_PATH` the case passes. It logs every call (command, environment,
//! stdin), writes a marker on stderr, answers ADD with one address in the
//! layout of the case's version, and fails the commands it is told to. A
//! script rather than a program of ours because it must be found on the
//! plugin's CNI path and run by it, whatever binary the suite itself is.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::Case;
use cni::exec::Call;
use cni::version::{VERSIONS, at_least};

/// The spy's file name: what `ipam.type` says.
pub const NAME: &str = "cni-conformance-spy-ipam";
/// What the spy writes on stderr at every call.
pub const MARKER: &str = "cni-conformance-spy-ipam: stderr marker";
/// The address it hands out.
pub const ADDRESS: &str = "10.250.0.2/24";

pub struct Spy {
    dir: PathBuf,
    log: PathBuf,
}

/// One call the spy saw.
#[derive(Debug, Clone)]
pub struct SpyCall {
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub stdin: String,
}

impl SpyCall {
    /// Its stdin as JSON, if it was.
    pub fn config(&self) -> Option<Value> {
        serde_json::from_str(&self.stdin).ok()
    }
}

/// The spy's ADD result for `version`: one IPv4 address with its gateway.
fn result(version: &str) -> Value {
    let gateway = "10.250.0.1";
    if !at_least(version, "0.3.0") {
        return json!({"cniVersion": version, "ip4": {"ip": ADDRESS, "gateway": gateway},
                      "dns": {}});
    }
    let mut ip = json!({"address": ADDRESS, "gateway": gateway});
    if !at_least(version, "1.0.0") {
        ip["version"] = json!("4");
    }
    json!({"cniVersion": version, "ips": [ip], "routes": [], "dns": {}})
}

fn quoted(v: &Value) -> String {
    // The JSON goes between single quotes in sh; it holds none itself.
    format!("'{}'", v.to_string().replace('\'', ""))
}

impl Spy {
    /// Writes the spy for `case`, failing `fails` (STATUS with code 50,
    /// anything else with 11).
    pub fn new(case: &Case, fails: &[&str]) -> Result<Spy, String> {
        let dir = case.scratch("spy-bin")?;
        let log = case.scratch("spy-log")?;
        let versions = json!({"cniVersion": "1.1.0", "supportedVersions": VERSIONS});
        let failure = |code: u32| {
            json!({"cniVersion": case.version, "code": code,
                   "msg": "cni-conformance spy: this IPAM plugin fails this command on purpose"})
        };
        let script = format!(
            "#!/bin/sh\n\
             n=\"{log}/$(date +%s%N)-$$\"\n\
             env -0 > \"$n.env\"\n\
             cat > \"$n.stdin\"\n\
             echo \"{MARKER} ($CNI_COMMAND)\" >&2\n\
             case \" {fails} \" in *\" $CNI_COMMAND \"*)\n\
               if [ \"$CNI_COMMAND\" = STATUS ]; then printf '%s' {status}; \
               else printf '%s' {other}; fi\n\
               exit 1;;\n\
             esac\n\
             case \"$CNI_COMMAND\" in\n\
             ADD) printf '%s' {add};;\n\
             VERSION) printf '%s' {versions};;\n\
             esac\n\
             exit 0\n",
            log = log.display(),
            fails = fails.join(" "),
            status = quoted(&failure(50)),
            other = quoted(&failure(11)),
            add = quoted(&result(case.version)),
            versions = quoted(&versions),
        );
        let path = dir.join(NAME);
        std::fs::write(&path, script).map_err(|e| format!("cannot write the spy: {e}"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot make the spy executable: {e}"))?;
        Ok(Spy { dir, log })
    }

    /// `conf` with its `ipam.type` naming the spy.
    pub fn conf(&self, conf: &Value) -> Value {
        let mut c = conf.clone();
        c["ipam"]["type"] = json!(NAME);
        c
    }

    /// `call` with the spy's folder first on its `CNI_PATH`.
    pub fn call(&self, call: Call, case: &Case) -> Call {
        let path = format!("{}:{}", self.dir.display(), case.target.cni_path_var());
        call.env("CNI_PATH", &path)
    }

    /// Every call so far, in the order they came.
    pub fn calls(&self) -> Vec<SpyCall> {
        let mut stems: Vec<String> = std::fs::read_dir(&self.log)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".env").map(str::to_string)
            })
            .collect();
        // `date +%s%N` names: as long as each other until 2286.
        stems.sort();
        stems
            .into_iter()
            .map(|stem| {
                let read = |ext: &str| {
                    std::fs::read_to_string(self.log.join(format!("{stem}.{ext}")))
                        .unwrap_or_default()
                };
                let env: BTreeMap<String, String> = read("env")
                    .split('\0')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                SpyCall {
                    command: env.get("CNI_COMMAND").cloned().unwrap_or_default(),
                    env,
                    stdin: read("stdin"),
                }
            })
            .collect()
    }

    /// The calls of one command.
    pub fn of(&self, command: &str) -> Vec<SpyCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.command == command)
            .collect()
    }
}
