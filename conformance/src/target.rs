//! The plugin under test: a native CNI plugin binary, or a wasm-ipam policy
//! run through the `wasm-ipam` host. Either way it is spawned as a runtime
//! would spawn it; the suite never links to it.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::exec::{self, Call, Outcome};

#[derive(Debug, Clone)]
pub enum Kind {
    /// Any CNI plugin binary.
    Native(PathBuf),
    /// A wasm-ipam policy (a built-in name or a `.wasm` path) run by `host`.
    Wasm { host: PathBuf, policy: String },
}

#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    /// Fields added to the `ipam` object of every config, after retargeting
    /// (for example `policy`, or a shared `cacheDir`).
    pub set: Map<String, Value>,
    /// The `ipam` object the spec scenarios use.
    pub ipam: Option<Value>,
    /// A variant with a pool of a few addresses, for the exhaustion rules.
    pub small_ipam: Option<Value>,
}

impl Target {
    pub fn native(path: impl Into<PathBuf>) -> Target {
        Target {
            kind: Kind::Native(path.into()),
            set: Map::new(),
            ipam: None,
            small_ipam: None,
        }
    }

    pub fn wasm(host: impl Into<PathBuf>, policy: &str) -> Target {
        let mut set = Map::new();
        set.insert("policy".into(), json!(policy));
        Target {
            kind: Kind::Wasm {
                host: host.into(),
                policy: policy.to_string(),
            },
            set,
            ipam: None,
            small_ipam: None,
        }
    }

    pub fn binary(&self) -> &Path {
        match &self.kind {
            Kind::Native(p) => p,
            Kind::Wasm { host, .. } => host,
        }
    }

    /// What `ipam.type` must say for the runtime to find this binary.
    pub fn ipam_type(&self) -> String {
        self.binary()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// A short name for reports.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Native(p) => p.display().to_string(),
            Kind::Wasm { host, policy } => format!("{} policy {policy}", host.display()),
        }
    }

    /// Working `ipam` objects for plugins whose config the suite knows: the
    /// reference host-local, and wasm-ipam's built-in policies.
    pub fn default_ipam(&self) -> Option<(Value, Value)> {
        let ranges = |subnet: &str| json!({"ranges": [[{"subnet": subnet}]]});
        let kind = match &self.kind {
            Kind::Wasm { policy, .. } => policy.as_str(),
            Kind::Native(_) => match self.ipam_type().as_str() {
                "host-local" => "host-local",
                _ => return None,
            },
        };
        match kind {
            "host-local" => Some((ranges("10.201.0.0/24"), ranges("10.202.0.0/29"))),
            // Without a hold, sticky is a plain allocator, which is what the
            // generic rules (reuse after release) describe.
            "sticky" => {
                let with_no_hold = |mut v: Value| {
                    v["holdSeconds"] = json!(0);
                    v
                };
                Some((
                    with_no_hold(ranges("10.201.0.0/24")),
                    with_no_hold(ranges("10.202.0.0/29")),
                ))
            }
            "pooled" => Some((
                json!({"pools": [{"name": "main", "cidr": "10.201.0.0/24", "blockSize": 28}]}),
                json!({"pools": [{"name": "small", "cidr": "10.202.0.0/29", "blockSize": 29}]}),
            )),
            _ => None,
        }
    }

    /// Fills in `ipam` and `small_ipam` from the defaults where not given.
    pub fn with_defaults(mut self) -> Target {
        if self.ipam.is_none()
            && let Some((ipam, small)) = self.default_ipam()
        {
            self.ipam = Some(ipam);
            self.small_ipam.get_or_insert(small);
        }
        self
    }

    fn finish_ipam(&self, ipam: &mut Value, data_dir: &Path) {
        ipam["type"] = json!(self.ipam_type());
        ipam["dataDir"] = json!(data_dir);
        for (k, v) in &self.set {
            ipam[k] = v.clone();
        }
    }

    /// A network config for the spec scenarios.
    pub fn netconf(&self, version: &str, ipam: &Value, data_dir: &Path) -> Value {
        let mut ipam = ipam.clone();
        self.finish_ipam(&mut ipam, data_dir);
        json!({"cniVersion": version, "name": "conformance", "type": "ipam-under-test", "ipam": ipam})
    }

    /// A recorded config pointed at this target: its `ipam.type`, a fresh
    /// `dataDir`, and the `--set` fields.
    pub fn retarget(&self, recorded: &Value, data_dir: &Path) -> Value {
        let mut conf = recorded.clone();
        if let Some(ipam) = conf.get_mut("ipam").filter(|i| i.is_object()) {
            self.finish_ipam(ipam, data_dir);
        }
        conf
    }

    /// Runs one invocation, with `CNI_PATH` at the binary's folder.
    pub fn run(&self, call: &Call, conf: &Value) -> std::io::Result<Outcome> {
        let dir = self
            .binary()
            .parent()
            .unwrap_or(Path::new("/"))
            .display()
            .to_string();
        let mut call = call.clone();
        if !call.extra.iter().any(|(k, _)| k == "CNI_PATH") {
            call.extra.push(("CNI_PATH".into(), dir));
        }
        let stdin = match conf {
            Value::String(raw) => raw.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        exec::run(self.binary(), &call, &stdin)
    }

    /// The versions the plugin claims in its VERSION output.
    pub fn versions(&self) -> Result<Vec<String>, String> {
        let out = self
            .run(&Call::new("VERSION"), &json!({"cniVersion": "1.1.0"}))
            .map_err(|e| format!("cannot run {}: {e}", self.binary().display()))?;
        let v = out.parsed()?;
        v["supportedVersions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .filter(|a: &Vec<String>| !a.is_empty())
            .ok_or_else(|| format!("VERSION printed no supportedVersions: {}", out.stdout))
    }
}
