//! The plugin under test: a native CNI plugin binary, a wasm-ipam policy run
//! through the `wasm-ipam` host, or a whole conflist run the way libcni runs
//! it, and the configs the suite sends it. Either way it is spawned as a
//! runtime would spawn it ([`crate::chain`] runs it); the suite never links
//! to it.
//!
//! The layers run one way: what a target is (here), below how a chain runs
//! it (`chain`), below how its kind is probed (`kind`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PluginKind {
    /// Allocates addresses; called by another plugin with the whole config.
    Ipam,
    /// Creates or configures `CNI_IFNAME` in the container's namespace.
    Interface,
    /// Acts on a previous plugin's result in a chain (tuning, portmap...).
    Meta,
}

impl PluginKind {
    pub fn word(self) -> &'static str {
        match self {
            PluginKind::Ipam => "ipam",
            PluginKind::Interface => "interface",
            PluginKind::Meta => "meta",
        }
    }

    pub fn parse(s: &str) -> Option<PluginKind> {
        [PluginKind::Ipam, PluginKind::Interface, PluginKind::Meta]
            .into_iter()
            .find(|k| k.word() == s)
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A network name of its own for each case whose config names none, so
/// that what a plugin keeps per network (dnsname's dnsmasq and hosts
/// files) is never shared by cases running at once, and what it leaves
/// can be found by name ([`run_prefix`]).
pub fn network_name() -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    format!("{}{}", run_prefix(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// What every network name, namespace and scratch name of this run starts
/// with: `cnict-<pid>-`.
pub fn run_prefix() -> String {
    format!("cnict-{}-", std::process::id())
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// Any CNI plugin binary.
    Native(PathBuf),
    /// A wasm-ipam policy (a built-in name or a `.wasm` path) run by `host`.
    Wasm { host: PathBuf, policy: String },
    /// A network configuration list (its JSON is the target's `config`);
    /// each plugin is found on the CNI path.
    Conflist,
}

/// Whether cases give the plugin a `dataDir`, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    pub given: bool,
    /// What was found, for the report, when it is left out.
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    /// Which rules apply: worked out from the plugin's behaviour unless given.
    pub plugin_kind: PluginKind,
    /// Fields added to the `ipam` object of every config, after retargeting
    /// (for example `policy`, or a shared `cacheDir`).
    pub set: Map<String, Value>,
    /// The `ipam` object the IPAM rules use.
    pub ipam: Option<Value>,
    /// A variant with a pool of a few addresses, for the exhaustion rules.
    pub small_ipam: Option<Value>,
    /// An interface or chained plugin's network config (`type`, its own
    /// fields, its `ipam`), or the conflist for [`Kind::Conflist`].
    pub config: Option<Value>,
    /// The same with a delegated pool of a few addresses, for the leak rules.
    pub small_config: Option<Value>,
    /// Where delegated plugins are found (`CNI_PATH`); empty means the
    /// plugin's own folder.
    pub cni_path: Vec<PathBuf>,
    /// One call's limit.
    pub timeout: Option<Duration>,
    /// Links to make in each case's host namespace, such as the master of
    /// a macvlan or the device of host-device (see
    /// [`crate::netns::Netns::add_host_link`]).
    pub host_links: Vec<String>,
    /// Commands to start in each case's host namespace, such as a DHCP
    /// server (see [`crate::host::Host`]).
    pub host_daemons: Vec<String>,
    /// Whether each case's `ipam` gets a `dataDir` of its own. A plugin
    /// may refuse fields it does not know (a MAY of the spec), so this can
    /// be turned off (`--no-data-dir`), or is settled by a probe when the
    /// first case needs a config (`kind::settle_data_dir`); until then it
    /// is on.
    pub data_dir: Arc<OnceLock<DataDir>>,
    /// Variables every call gets beside the `CNI_*` ones, as a runtime
    /// passes its own environment on (`--env`).
    pub env: Vec<(String, String)>,
    /// The calls that ran past the time limit, shared by the target's
    /// clones: past `chain::MAX_HANGS` the plugin is called no more.
    pub hung: Arc<Mutex<Vec<String>>>,
}

impl Target {
    fn with_kind(kind: Kind) -> Target {
        Target {
            kind,
            plugin_kind: PluginKind::Ipam,
            set: Map::new(),
            ipam: None,
            small_ipam: None,
            config: None,
            small_config: None,
            cni_path: Vec::new(),
            timeout: None,
            host_links: Vec::new(),
            host_daemons: Vec::new(),
            data_dir: Arc::new(OnceLock::new()),
            env: Vec::new(),
            hung: Arc::default(),
        }
    }

    pub fn native(path: impl Into<PathBuf>) -> Target {
        Target::with_kind(Kind::Native(path.into()))
    }

    pub fn wasm(host: impl Into<PathBuf>, policy: &str) -> Target {
        let mut t = Target::with_kind(Kind::Wasm {
            host: host.into(),
            policy: policy.to_string(),
        });
        t.set.insert("policy".into(), json!(policy));
        t
    }

    /// A conflist, its plugins found on `cni_path`.
    pub fn conflist(conflist: Value, cni_path: Vec<PathBuf>) -> Target {
        let mut t = Target::with_kind(Kind::Conflist);
        t.config = Some(conflist);
        t.cni_path = cni_path;
        t
    }

    /// The binary spawned for a single plugin; `None` for a conflist.
    pub fn binary(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Native(p) => Some(p),
            Kind::Wasm { host, .. } => Some(host),
            Kind::Conflist => None,
        }
    }

    /// The plugin's file name: what `type` (or `ipam.type`) must say for a
    /// runtime to find it.
    pub fn ipam_type(&self) -> String {
        match self.binary() {
            Some(b) => b
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            None => "conflist".into(),
        }
    }

    /// A short name for reports.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Native(p) => p.display().to_string(),
            Kind::Wasm { host, policy } => format!("{} policy {policy}", host.display()),
            Kind::Conflist => {
                let plugins = self.plugins();
                let types: Vec<&str> = plugins.iter().filter_map(|p| p["type"].as_str()).collect();
                format!("conflist [{}]", types.join(", "))
            }
        }
    }

    /// The plugins of a conflist target (empty for a single plugin).
    pub fn plugins(&self) -> Vec<Value> {
        match (&self.kind, &self.config) {
            (Kind::Conflist, Some(c)) => c["plugins"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
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
            Kind::Conflist => return None,
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
                json!({"node": "conformance",
                       "pools": [{"name": "main", "cidr": "10.201.0.0/24", "blockSize": 28}]}),
                json!({"node": "conformance",
                       "pools": [{"name": "small", "cidr": "10.202.0.0/29", "blockSize": 29}]}),
            )),
            _ => None,
        }
    }

    /// Fills in `ipam` and `small_ipam` from the defaults where not given.
    pub fn with_defaults(mut self) -> Target {
        if self.ipam.is_none()
            && self.config.is_none()
            && let Some((ipam, small)) = self.default_ipam()
        {
            self.ipam = Some(ipam);
            self.small_ipam.get_or_insert(small);
        }
        self
    }

    /// Whether configs get a `dataDir` of the suite's.
    pub fn uses_data_dir(&self) -> bool {
        self.data_dir.get().is_none_or(|d| d.given)
    }

    /// Points an `ipam` object at a fresh `dataDir` and adds the `--set`
    /// fields; for an IPAM target also its own `type`.
    fn finish_ipam(&self, ipam: &mut Value, data_dir: &Path) {
        if self.plugin_kind == PluginKind::Ipam {
            ipam["type"] = json!(self.ipam_type());
        }
        if self.uses_data_dir() {
            ipam["dataDir"] = json!(data_dir);
        }
        for (k, v) in &self.set {
            ipam[k] = v.clone();
        }
    }

    /// A network config named `network` for the IPAM rules.
    pub fn netconf(&self, version: &str, ipam: &Value, data_dir: &Path, network: &str) -> Value {
        let mut ipam = ipam.clone();
        self.finish_ipam(&mut ipam, data_dir);
        json!({"cniVersion": version, "name": network, "type": "ipam-under-test",
               "ipam": ipam})
    }

    /// The config a case sends: for an IPAM plugin its `ipam` (or the small
    /// one) in a network config; otherwise the plugin's config or conflist
    /// with this `cniVersion`, `network` as its `name` if it has none, and
    /// every `ipam` pointed at `data_dir`.
    pub fn case_conf(&self, version: &str, small: bool, data_dir: &Path, network: &str) -> Value {
        if self.plugin_kind == PluginKind::Ipam && self.config.is_none() {
            let ipam = if small { &self.small_ipam } else { &self.ipam };
            return self.netconf(
                version,
                ipam.as_ref().unwrap_or(&json!({})),
                data_dir,
                network,
            );
        }
        let base = if small {
            &self.small_config
        } else {
            &self.config
        };
        let mut conf = base.clone().unwrap_or_else(|| json!({}));
        conf["cniVersion"] = json!(version);
        if !conf["name"].is_string() {
            conf["name"] = json!(network);
        }
        let plugins: Vec<&mut Value> = match conf.get_mut("plugins").and_then(Value::as_array_mut) {
            Some(list) => list.iter_mut().collect(),
            None => vec![&mut conf],
        };
        for plugin in plugins {
            if let Some(ipam) = plugin.get_mut("ipam").filter(|i| i.is_object()) {
                self.finish_ipam(ipam, data_dir);
            }
        }
        conf
    }

    /// A recorded config pointed at this target: a fresh `dataDir`, the
    /// `--set` fields and, for an IPAM target, its `ipam.type`.
    pub fn retarget(&self, recorded: &Value, data_dir: &Path) -> Value {
        let mut conf = recorded.clone();
        if let Some(ipam) = conf.get_mut("ipam").filter(|i| i.is_object()) {
            self.finish_ipam(ipam, data_dir);
        }
        conf
    }

    /// `CNI_PATH`: the given folders, else the plugin's own.
    pub fn cni_path_var(&self) -> String {
        let dirs: Vec<PathBuf> = if self.cni_path.is_empty() {
            self.binary()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .into_iter()
                .collect()
        } else {
            self.cni_path.clone()
        };
        let joined = std::env::join_paths(dirs).unwrap_or_default();
        joined.to_string_lossy().into_owned()
    }
}

/// The `supportedVersions` of a VERSION outcome.
pub fn supported_versions(out: &cni::exec::Outcome) -> Result<Vec<String>, String> {
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

/// What goes on stdin: a JSON string as its raw text (for malformed
/// configs), anything else as JSON.
pub fn stdin_bytes(conf: &Value) -> Vec<u8> {
    match conf {
        Value::String(raw) => raw.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}
