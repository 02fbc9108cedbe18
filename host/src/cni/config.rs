//! The network config on stdin: the envelope the runtime builds, and the
//! host's own fields under `ipam`. The policy's fields stay raw JSON: the
//! policy validates those itself.
//!
//! Fields are read one by one from the parsed JSON rather than through a
//! derived struct, so a wrong type is reported with the field's full name.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::env::valid_id;
use super::error::CniError;
use super::store_conf::parse_store;
pub use super::store_conf::{EtcdAuth, EtcdConf, EtcdTls, StoreConf};
use super::version::CniVersion;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/wasm-ipam";
/// `<DEFAULT_DATA_DIR>/cache`, spelled out for clap's defaults.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni/wasm-ipam/cache";
pub const DEFAULT_POLICY: &str = "host-local";

/// Sandbox limits for one policy call, from `ipam.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub fuel: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(2),
            fuel: 2_000_000_000,
        }
    }
}

/// Kubernetes' rule for a node's name (a DNS-1123 subdomain): at most 253
/// characters, lowercase letters, digits, `-` and `.`, starting and ending
/// with a letter or digit. Node names are parts of store keys, where a `/`
/// would let one node's records pass for another's.
pub fn valid_node_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
}

/// The host's settings, from the `ipam` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConf {
    /// A built-in policy name or a path to a `.wasm` component.
    pub policy: String,
    pub data_dir: PathBuf,
    /// Where compiled policies are kept; `<dataDir>/cache` by default.
    pub cache_dir: PathBuf,
    pub node: Option<String>,
    pub resolv_conf: Option<PathBuf>,
    pub limits: Limits,
    pub store: StoreConf,
    /// Release the attachments of an earlier boot on the first call after
    /// a reboot (`reclaimAfterReboot`, on by default).
    pub reclaim_after_reboot: bool,
    /// The capabilities the network gives its policy beyond the contract's
    /// imports (`grant`).
    pub grant: Grants,
}

/// What `ipam.grant` lists: capabilities a policy may import only where a
/// network grants them, since each reaches beyond the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants {
    /// `"dhcp"`: DHCP exchanges on the attachment's interface.
    pub dhcp: bool,
}

/// The capabilities `grant` may list.
pub const GRANTABLE: [&str; 1] = ["dhcp"];

fn parse_grant(ipam: &Map<String, Value>) -> Result<Grants, CniError> {
    let mut grants = Grants::default();
    let list = match ipam.get("grant") {
        None | Some(Value::Null) => return Ok(grants),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(invalid(format!(
                "ipam.grant must be a list of capabilities such as [\"dhcp\"], not {other}"
            )));
        }
    };
    for (i, item) in list.iter().enumerate() {
        match item.as_str() {
            Some("dhcp") => grants.dhcp = true,
            _ => {
                return Err(invalid(format!(
                    "ipam.grant[{i}] is {item}: the capabilities a network can grant are {}",
                    GRANTABLE.map(|g| format!("\"{g}\"")).join(", ")
                )));
            }
        }
    }
    Ok(grants)
}

/// An attachment the runtime says is still in use (GC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAttachment {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: CniVersion,
    pub name: String,
    pub ipam: IpamConf,
    /// The whole `ipam` object, for the policy.
    pub ipam_raw: String,
    pub args: Option<String>,
    pub runtime_config: Option<String>,
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` and `cni.dev/attachments`, merged; `None`
    /// when neither was sent.
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

pub(super) fn invalid(msg: String) -> CniError {
    CniError::InvalidConfig(msg)
}

pub(super) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(format!("{path} must be a string, not {other}"))),
    }
}

fn opt_u64(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    range: (u64, u64),
) -> Result<Option<u64>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= range.0 && n <= range.1 => Ok(Some(n)),
            _ => Err(invalid(format!(
                "{path} must be a whole number from {} to {}, not {v}",
                range.0, range.1
            ))),
        },
    }
}

fn opt_object(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.to_string())),
        Some(other) => Err(invalid(format!("{key} must be an object, not {other}"))),
    }
}

/// Reads just `cniVersion`, for VERSION, which must answer whatever else is
/// wrong with the config.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

fn parse_limits(ipam: &Map<String, Value>) -> Result<Limits, CniError> {
    let mut limits = Limits::default();
    let Some(v) = ipam.get("limits") else {
        return Ok(limits);
    };
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("ipam.limits must be an object, not {v}")))?;
    if let Some(mib) = opt_u64(obj, "memoryMiB", "ipam.limits.memoryMiB", (1, 4096))? {
        limits.memory_bytes = (mib as usize) << 20;
    }
    if let Some(ms) = opt_u64(obj, "timeoutMs", "ipam.limits.timeoutMs", (1, 60_000))? {
        limits.timeout = Duration::from_millis(ms);
    }
    if let Some(fuel) = opt_u64(obj, "fuel", "ipam.limits.fuel", (1, u64::MAX))? {
        limits.fuel = fuel;
    }
    Ok(limits)
}

fn parse_ipam(ipam: &Map<String, Value>) -> Result<IpamConf, CniError> {
    let policy = opt_str(ipam, "policy", "ipam.policy")?.unwrap_or(DEFAULT_POLICY);
    if policy.is_empty() {
        return Err(invalid("ipam.policy must not be empty".into()));
    }
    let folder = |key: &str| -> Result<Option<PathBuf>, CniError> {
        match opt_str(ipam, key, &format!("ipam.{key}"))? {
            Some("") => Err(invalid(format!(
                "ipam.{key} must not be empty: leave it out for the default"
            ))),
            other => Ok(other.map(PathBuf::from)),
        }
    };
    let data_dir = folder("dataDir")?.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let cache_dir = folder("cacheDir")?.unwrap_or_else(|| data_dir.join("cache"));
    let node = opt_str(ipam, "node", "ipam.node")?.map(str::to_string);
    if let Some(node) = &node
        && !valid_node_name(node)
    {
        return Err(invalid(format!(
            "ipam.node {node:?} is not a node name: at most 253 lowercase letters, digits, '-' \
             and '.', starting and ending with a letter or digit (Kubernetes' rule)"
        )));
    }
    Ok(IpamConf {
        policy: policy.to_string(),
        data_dir,
        cache_dir,
        node,
        resolv_conf: opt_str(ipam, "resolvConf", "ipam.resolvConf")?.map(PathBuf::from),
        limits: parse_limits(ipam)?,
        store: parse_store(ipam)?,
        reclaim_after_reboot: match ipam.get("reclaimAfterReboot") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid(format!(
                    "ipam.reclaimAfterReboot must be true or false, not {other}"
                )));
            }
        },
        grant: parse_grant(ipam)?,
    })
}

fn parse_attachments(v: &Value, key: &str) -> Result<Vec<ValidAttachment>, CniError> {
    let list = v
        .as_array()
        .ok_or_else(|| invalid(format!("{key} must be a list, not {v}")))?;
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("{key}[{i}].{name} must be a string")))
            };
            Ok(ValidAttachment {
                container_id: field("containerID")?,
                ifname: field("ifname")?,
            })
        })
        .collect()
}

/// stdin as a JSON object: code 6 when it is not one.
fn decode(stdin: &[u8]) -> Result<Map<String, Value>, CniError> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::Decoding(format!("cannot decode the network config on stdin: {e}"))
    })?;
    match value {
        Value::Object(obj) => Ok(obj),
        other => Err(CniError::Decoding(format!(
            "the network config on stdin must be a JSON object, not {}",
            kind(&other)
        ))),
    }
}

/// The network's name, which must be valid: code 7 otherwise.
fn network_name(obj: &Map<String, Value>) -> Result<&str, CniError> {
    let name = opt_str(obj, "name", "name")?
        .ok_or_else(|| invalid("the network config has no name".into()))?;
    if !valid_id(name) {
        return Err(invalid(format!(
            "network name {name:?} is invalid: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"
        )));
    }
    Ok(name)
}

/// Where a network's state lives, read from a config whose `ipam` may be
/// missing, empty or invalid: what a DEL needs to release what the store
/// knows (see `release`). Each setting that cannot be read is its
/// default.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub name: String,
    pub data_dir: PathBuf,
    pub store: StoreConf,
    /// The node-local `ipam` fields that do parse (`cacheDir`, `node`),
    /// to run the recorded config with.
    pub local: Map<String, Value>,
}

impl Location {
    pub fn read(stdin: &[u8]) -> Result<Location, CniError> {
        let obj = decode(stdin)?;
        let name = network_name(&obj)?.to_string();
        let empty = Map::new();
        let ipam = obj.get("ipam").and_then(Value::as_object).unwrap_or(&empty);
        let text = |key: &str| {
            opt_str(ipam, key, key)
                .ok()
                .flatten()
                .filter(|s| !s.is_empty())
        };
        let local = ["cacheDir", "node"]
            .into_iter()
            .filter_map(|k| text(k).map(|v| (k.to_string(), Value::from(v))))
            .collect();
        Ok(Location {
            name,
            data_dir: PathBuf::from(text("dataDir").unwrap_or(DEFAULT_DATA_DIR)),
            store: parse_store(ipam).unwrap_or(StoreConf::Embedded),
            local,
        })
    }
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let obj = decode(stdin)?;
        // libcni treats a config without cniVersion as 0.1.0.
        let version_text = opt_str(&obj, "cniVersion", "cniVersion")?.unwrap_or("0.1.0");
        let cni_version = CniVersion::parse(version_text)?;
        let name = network_name(&obj)?;
        let ipam_value = obj
            .get("ipam")
            .ok_or_else(|| invalid("IPAM config missing 'ipam' key".into()))?;
        let ipam_obj = ipam_value
            .as_object()
            .ok_or_else(|| invalid(format!("ipam must be an object, not {ipam_value}")))?;
        let mut valid_attachments: Option<Vec<ValidAttachment>> = None;
        // libcni sends both keys with the same list: merged through a set,
        // so that a GC of n attachments costs n, not n squared.
        let mut seen = std::collections::HashSet::new();
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            if let Some(v) = obj.get(key) {
                // An empty list is a list: nothing is valid any more.
                let list = valid_attachments.get_or_insert_with(Vec::new);
                for a in parse_attachments(v, key)? {
                    if seen.insert((a.container_id.clone(), a.ifname.clone())) {
                        list.push(a);
                    }
                }
            }
        }
        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(other) => {
                return Err(invalid(format!(
                    "prevResult must be an object, not {other}"
                )));
            }
        };
        Ok(NetConf {
            cni_version,
            name: name.to_string(),
            ipam: parse_ipam(ipam_obj)?,
            ipam_raw: ipam_value.to_string(),
            args: opt_object(&obj, "args")?,
            runtime_config: opt_object(&obj, "runtimeConfig")?,
            prev_result,
            valid_attachments,
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    fn base() -> Value {
        json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge",
               "ipam": {"type": "wasm-ipam", "policy": "host-local", "dataDir": "/tmp/d",
                        "ranges": [[{"subnet": "10.1.0.0/24"}]]}})
    }

    fn err(v: Value) -> (u32, String) {
        let e = parse(v).unwrap_err();
        (e.code(), e.to_string())
    }

    #[test]
    fn reads_the_envelope_and_host_fields() {
        let mut v = base();
        v["args"] = json!({"cni": {"ips": ["10.1.0.9"]}});
        v["ipam"]["limits"] = json!({"memoryMiB": 16, "timeoutMs": 500});
        let c = parse(v).unwrap();
        assert_eq!(c.name, "net1");
        assert_eq!(c.ipam.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(c.ipam.cache_dir, PathBuf::from("/tmp/d/cache"));
        assert_eq!(c.ipam.limits.memory_bytes, 16 << 20);
        assert_eq!(c.ipam.limits.timeout, Duration::from_millis(500));
        assert!(c.args.unwrap().contains("10.1.0.9"));
        let raw: Value = serde_json::from_str(&c.ipam_raw).unwrap();
        assert_eq!(raw["ranges"][0][0]["subnet"], "10.1.0.0/24");
    }

    #[test]
    fn defaults_policy_and_data_dir() {
        let c = parse(json!({"cniVersion": "0.4.0", "name": "n", "ipam": {}})).unwrap();
        assert_eq!(c.ipam.policy, "host-local");
        assert_eq!(c.ipam.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.ipam.cache_dir, PathBuf::from(DEFAULT_CACHE_DIR));
    }

    #[test]
    fn reads_the_etcd_store_and_names_what_is_wrong_with_it() {
        assert_eq!(parse(base()).unwrap().ipam.store, StoreConf::Embedded);
        let mut v = base();
        v["ipam"]["store"] = json!({"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/x/", "timeoutMs": 300}});
        assert_eq!(
            parse(v).unwrap().ipam.store,
            StoreConf::Etcd(Box::new(EtcdConf {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                prefix: "/x".into(),
                timeout: Duration::from_millis(300),
                tls: None,
                auth: None,
            }))
        );
        for (store, needle) in [
            (json!("etcd"), "ipam.store must be an object"),
            (json!({"redis": {}}), "ipam.store must name one backend"),
            (
                json!({"etcd": {}}),
                "ipam.store.etcd.endpoints must be a non-empty list",
            ),
            (
                json!({"etcd": {"endpoints": ["127.0.0.1:2379"]}}),
                "endpoints[0] \"127.0.0.1:2379\" is not a URL",
            ),
            (
                json!({"etcd": {"endpoints": ["http://127.0.0.1:2379", "https://10.0.0.11:2379"]}}),
                "ipam.store.etcd.endpoints mixes http:// and https://",
            ),
            (
                json!({"etcd": {"endpoints": ["http://127.0.0.1:99999"]}}),
                "\"http://127.0.0.1:99999\" is not a URL such as \"http://127.0.0.1:2379\" (invalid port number)",
            ),
            (
                json!({"etcd": {"endpoints": ["http://127.0.0.1:2379/v3"]}}),
                "has a path",
            ),
            (
                json!({"etcd": {"endpoints": ["http://a:1"], "prefix": "/x\u{0}y"}}),
                "has the control character '\\0'",
            ),
            (
                json!({"etcd": {"endpoints": ["http://a:1"], "timeout": 5}}),
                "ipam.store.etcd.timeout is not a setting",
            ),
            (
                json!({"etcd": {"endpoints": ["http://a:1"], "timeoutMs": 0}}),
                "timeoutMs must be a whole number from 1",
            ),
        ] {
            let mut v = base();
            v["ipam"]["store"] = store;
            let (code, msg) = err(v);
            assert_eq!(code, 7, "{msg}");
            assert!(msg.contains(needle), "{needle:?} not in {msg}");
        }
    }

    #[test]
    fn malformed_json_is_a_decoding_error() {
        for bad in [&b"{\"cniVersion\": "[..], b"\xff\xfe", b"[]", b""] {
            assert_eq!(NetConf::parse(bad).unwrap_err().code(), 6, "{bad:?}");
        }
    }

    #[test]
    fn envelope_problems_have_their_codes_and_name_the_field() {
        let mut v = base();
        v["cniVersion"] = json!("0.9.9");
        assert_eq!(err(v).0, 1);
        let mut v = base();
        v.as_object_mut().unwrap().remove("ipam");
        assert_eq!(err(v), (7, "IPAM config missing 'ipam' key".into()));
        for (path, value, want) in [
            ("name", json!("bad name"), "network name"),
            ("name", json!(5), "name must be a string"),
            ("ipam", json!("x"), "ipam must be an object"),
            ("cniVersion", json!(1), "cniVersion must be a string"),
            ("args", json!([1]), "args must be an object"),
            ("prevResult", json!("x"), "prevResult must be an object"),
        ] {
            let mut v = base();
            v[path] = value;
            let (code, msg) = err(v);
            assert_eq!(code, 7, "{path}");
            assert!(msg.contains(want), "{msg}");
        }
        for (key, value, want) in [
            ("dataDir", json!(1), "ipam.dataDir must be a string"),
            ("policy", json!(""), "ipam.policy must not be empty"),
            ("limits", json!({"memoryMiB": 0}), "ipam.limits.memoryMiB"),
            (
                "limits",
                json!({"timeoutMs": "fast"}),
                "ipam.limits.timeoutMs",
            ),
            ("grant", json!("dhcp"), "ipam.grant must be a list"),
            ("grant", json!(["dhcp", "net"]), "ipam.grant[1] is \"net\""),
            ("dataDir", json!(""), "ipam.dataDir must not be empty"),
            ("cacheDir", json!(""), "ipam.cacheDir must not be empty"),
            ("node", json!("a/b"), "ipam.node \"a/b\" is not a node name"),
            (
                "node",
                json!("Node_1"),
                "ipam.node \"Node_1\" is not a node name",
            ),
            ("node", json!(""), "is not a node name"),
        ] {
            let mut v = base();
            v["ipam"][key] = value;
            let (code, msg) = err(v);
            assert_eq!(code, 7, "{key}");
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn a_grant_lists_capabilities() {
        assert_eq!(parse(base()).unwrap().ipam.grant, Grants::default());
        let mut v = base();
        v["ipam"]["grant"] = json!(["dhcp"]);
        assert!(parse(v).unwrap().ipam.grant.dhcp);
    }

    #[test]
    fn merges_both_attachment_lists() {
        let mut v = base();
        v["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
        v["cni.dev/attachments"] =
            json!([{"containerID": "a", "ifname": "eth0"}, {"containerID": "b", "ifname": "eth0"}]);
        assert_eq!(parse(v).unwrap().valid_attachments.unwrap().len(), 2);
        let mut v = base();
        v["cni.dev/valid-attachments"] = json!([{"containerID": 1}]);
        assert!(
            err(v)
                .1
                .contains("cni.dev/valid-attachments[0].containerID")
        );
        assert_eq!(parse(base()).unwrap().valid_attachments, None);
        let mut v = base();
        v["cni.dev/valid-attachments"] = json!([]);
        assert_eq!(
            parse(v).unwrap().valid_attachments,
            Some(vec![]),
            "an empty list releases everything"
        );
    }
}
