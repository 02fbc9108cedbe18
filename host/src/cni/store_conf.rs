//! `ipam.store`: where a network's state lives, and, for a shared etcd, how
//! to reach it as production runs it: over TLS with a client certificate,
//! as an etcd user.
//!
//! Everything here is checked from the config alone, with no file read and
//! no network traffic: a typo is code 7 naming the field, never "try again
//! later" from a client that can never connect. The files the settings
//! name are read when a call connects (`store::etcd::credentials`), once per call,
//! so a certificate rotated on disk is used by the next call.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::config::{invalid, opt_str};
use super::error::CniError;

/// Where the store lives: `ipam.store`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreConf {
    /// The embedded SQLite database in `dataDir` (the default).
    #[default]
    Embedded,
    /// An etcd cluster shared by the nodes: `{"etcd": {...}}`.
    Etcd(Box<EtcdConf>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConf {
    pub endpoints: Vec<String>,
    /// Every key lives under `<prefix>/<network>/`.
    pub prefix: String,
    /// The bound on connecting and on each request.
    pub timeout: Duration,
    /// `tls`: how to trust the members and how to prove who we are; set
    /// exactly when the endpoints are `https://`.
    pub tls: Option<EtcdTls>,
    /// `username` and `passwordFile`: etcd's own users (RBAC).
    pub auth: Option<EtcdAuth>,
}

/// `ipam.store.etcd.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// `caFile`: the CA (PEM) that signed the members' certificates.
    pub ca_file: PathBuf,
    /// `certFile` and `keyFile`: a client certificate and its key (PEM),
    /// for members started with `--client-cert-auth`.
    pub client: Option<(PathBuf, PathBuf)>,
    /// `serverName`: the name the members' certificates must carry, when
    /// the endpoints are addresses and the certificates name a host.
    pub server_name: Option<String>,
}

/// `ipam.store.etcd.username` and `passwordFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    pub username: String,
    /// A file holding the password: never the password itself, in a
    /// config every node's runtime reads.
    pub password_file: PathBuf,
}

impl StoreConf {
    /// As `ipam.store` spells it: `null` for the embedded store.
    pub fn to_json(&self) -> Value {
        match self {
            StoreConf::Embedded => Value::Null,
            StoreConf::Etcd(e) => {
                let mut etcd = serde_json::json!({
                    "endpoints": e.endpoints,
                    "prefix": e.prefix,
                    "timeoutMs": e.timeout.as_millis() as u64,
                });
                if let Some(tls) = &e.tls {
                    let mut t = serde_json::json!({"caFile": tls.ca_file});
                    if let Some((cert, key)) = &tls.client {
                        t["certFile"] = serde_json::json!(cert);
                        t["keyFile"] = serde_json::json!(key);
                    }
                    if let Some(name) = &tls.server_name {
                        t["serverName"] = serde_json::json!(name);
                    }
                    etcd["tls"] = t;
                }
                if let Some(auth) = &e.auth {
                    etcd["username"] = serde_json::json!(auth.username);
                    etcd["passwordFile"] = serde_json::json!(auth.password_file);
                }
                serde_json::json!({ "etcd": etcd })
            }
        }
    }

    /// Reads what [`StoreConf::to_json`] wrote, with the checks of
    /// `ipam.store`.
    pub fn from_json(v: &Value) -> Result<StoreConf, CniError> {
        let mut ipam = Map::new();
        ipam.insert("store".into(), v.clone());
        parse_store(&ipam)
    }
}

/// A string field, when present; code 7 naming `path` for another type or
/// an empty string.
fn text<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, CniError> {
    match opt_str(obj, key, path)? {
        Some("") => Err(invalid(format!("{path} must not be empty"))),
        other => Ok(other),
    }
}

/// Fails with code 7 on a key of `obj` that is not one of `known`.
fn only(obj: &Map<String, Value>, known: &[&str], path: &str) -> Result<(), CniError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(format!(
            "{path}.{unknown} is not a setting: the settings are {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

pub(super) fn parse_store(ipam: &Map<String, Value>) -> Result<StoreConf, CniError> {
    let Some(v) = ipam.get("store").filter(|v| !v.is_null()) else {
        return Ok(StoreConf::Embedded);
    };
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("ipam.store must be an object, not {v}")))?;
    let kinds: Vec<&String> = obj.keys().collect();
    let Some(etcd) = obj.get("etcd").filter(|_| kinds.len() == 1) else {
        return Err(invalid(format!(
            "ipam.store must name one backend, {{\"etcd\": {{...}}}}, not {v}; without ipam.store the embedded database in dataDir is used"
        )));
    };
    let etcd = etcd
        .as_object()
        .ok_or_else(|| invalid(format!("ipam.store.etcd must be an object, not {etcd}")))?;
    only(
        etcd,
        &[
            "endpoints",
            "prefix",
            "timeoutMs",
            "tls",
            "username",
            "passwordFile",
        ],
        "ipam.store.etcd",
    )?;
    let endpoints: Vec<(String, bool)> = match etcd.get("endpoints") {
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, e)| endpoint(i, e))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(invalid(format!(
                "ipam.store.etcd.endpoints must be a non-empty list of URLs, not {}",
                other.map_or("nothing".to_string(), Value::to_string)
            )));
        }
    };
    let https = endpoints.iter().filter(|(_, s)| *s).count();
    if https != 0 && https != endpoints.len() {
        return Err(invalid(
            "ipam.store.etcd.endpoints mixes http:// and https://: the members of one cluster \
             are reached one way"
                .into(),
        ));
    }
    let tls = parse_tls(etcd)?;
    match (https > 0, &tls) {
        (true, None) => {
            return Err(invalid(
                "ipam.store.etcd.endpoints are https:// URLs, so ipam.store.etcd.tls must say how \
                 to trust the members: {\"caFile\": \"/path/to/ca.pem\"}, and, for members \
                 started with --client-cert-auth, \"certFile\" and \"keyFile\""
                    .into(),
            ));
        }
        (false, Some(_)) => {
            return Err(invalid(
                "ipam.store.etcd.tls is set but the endpoints are http:// URLs: TLS needs \
                 https:// endpoints"
                    .into(),
            ));
        }
        _ => {}
    }
    let auth = match (
        text(etcd, "username", "ipam.store.etcd.username")?,
        text(etcd, "passwordFile", "ipam.store.etcd.passwordFile")?,
    ) {
        (Some(username), Some(file)) => Some(EtcdAuth {
            username: username.to_string(),
            password_file: PathBuf::from(file),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "ipam.store.etcd.username needs ipam.store.etcd.passwordFile, a file holding the \
                 password (never the password itself in a config every node reads)"
                    .into(),
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "ipam.store.etcd.passwordFile needs ipam.store.etcd.username".into(),
            ));
        }
    };
    let prefix = match etcd.get("prefix") {
        None | Some(Value::Null) => "/wasm-ipam",
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(invalid(format!(
                "ipam.store.etcd.prefix must be a string, not {other}"
            )));
        }
    };
    if let Some(c) = prefix.chars().find(|c| c.is_control()) {
        return Err(invalid(format!(
            "ipam.store.etcd.prefix {prefix:?} has the control character {c:?}: a prefix is a \
             plain path such as \"/wasm-ipam\""
        )));
    }
    let prefix = prefix.trim_end_matches('/').to_string();
    let timeout_ms = match etcd.get("timeoutMs") {
        None | Some(Value::Null) => 2000,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=60_000).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "ipam.store.etcd.timeoutMs must be a whole number from 1 to 60000, not {v}"
                ))
            })?,
    };
    Ok(StoreConf::Etcd(Box::new(EtcdConf {
        endpoints: endpoints.into_iter().map(|(e, _)| e).collect(),
        prefix,
        timeout: Duration::from_millis(timeout_ms),
        tls,
        auth,
    })))
}

fn parse_tls(etcd: &Map<String, Value>) -> Result<Option<EtcdTls>, CniError> {
    let Some(v) = etcd.get("tls").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let path = "ipam.store.etcd.tls";
    let tls = v
        .as_object()
        .ok_or_else(|| invalid(format!("{path} must be an object, not {v}")))?;
    only(tls, &["caFile", "certFile", "keyFile", "serverName"], path)?;
    let ca_file = text(tls, "caFile", "ipam.store.etcd.tls.caFile")?.ok_or_else(|| {
        invalid(format!(
            "{path}.caFile is missing: the CA (PEM) that signed the etcd members' certificates"
        ))
    })?;
    let client = match (
        text(tls, "certFile", "ipam.store.etcd.tls.certFile")?,
        text(tls, "keyFile", "ipam.store.etcd.tls.keyFile")?,
    ) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(format!(
                "{path}.certFile needs {path}.keyFile, the certificate's private key"
            )));
        }
        (None, Some(_)) => {
            return Err(invalid(format!(
                "{path}.keyFile needs {path}.certFile, the certificate it belongs to"
            )));
        }
    };
    let server_name = text(tls, "serverName", "ipam.store.etcd.tls.serverName")?;
    if let Some(name) = server_name
        && !name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(invalid(format!(
            "{path}.serverName {name:?} is not a host name such as \"etcd.example.com\""
        )));
    }
    Ok(Some(EtcdTls {
        ca_file: PathBuf::from(ca_file),
        client,
        server_name: server_name.map(str::to_string),
    }))
}

/// One of `ipam.store.etcd.endpoints`, the `i`th: an `http://` or
/// `https://` URL of a host and a port, and whether it is `https://`.
fn endpoint(i: usize, e: &Value) -> Result<(String, bool), CniError> {
    let field = format!("ipam.store.etcd.endpoints[{i}]");
    let text = e.as_str().ok_or_else(|| {
        invalid(format!(
            "{field} must be a URL such as \"http://127.0.0.1:2379\", not {e}"
        ))
    })?;
    let bad = |why: String| invalid(format!("{field} {text:?} {why}"));
    let url = url::Url::parse(text).map_err(|err| {
        bad(format!(
            "is not a URL such as \"http://127.0.0.1:2379\" ({err})"
        ))
    })?;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(bad(format!(
                "has the scheme {other:?}; etcd is reached over http:// or https://"
            )));
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "carries a user name or password: give username and passwordFile instead".into(),
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "has a path, query or fragment; an endpoint is a scheme, a host and a port".into(),
        ));
    }
    Ok((text.to_string(), https))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(store: Value) -> Result<StoreConf, CniError> {
        StoreConf::from_json(&store)
    }

    #[test]
    fn tls_and_users_read_back_and_round_trip() {
        let store = json!({"etcd": {
            "endpoints": ["https://10.0.0.11:2379", "https://10.0.0.12:2379"],
            "tls": {"caFile": "/etc/etcd/ca.pem", "certFile": "/etc/etcd/node.pem",
                    "keyFile": "/etc/etcd/node-key.pem", "serverName": "etcd.example.com"},
            "username": "cni", "passwordFile": "/etc/etcd/cni-password"}});
        let conf = parse(store).unwrap();
        let StoreConf::Etcd(e) = &conf else {
            panic!("etcd")
        };
        let tls = e.tls.as_ref().unwrap();
        assert_eq!(tls.ca_file, PathBuf::from("/etc/etcd/ca.pem"));
        assert_eq!(tls.server_name.as_deref(), Some("etcd.example.com"));
        assert_eq!(e.auth.as_ref().unwrap().username, "cni");
        assert_eq!(StoreConf::from_json(&conf.to_json()).unwrap(), conf);
    }

    #[test]
    fn tls_settings_that_cannot_work_are_code_7_naming_the_field() {
        for (etcd, needle) in [
            (
                json!({"endpoints": ["https://10.0.0.11:2379"]}),
                "so ipam.store.etcd.tls must say how to trust the members",
            ),
            (
                json!({"endpoints": ["http://10.0.0.11:2379"], "tls": {"caFile": "/ca.pem"}}),
                "TLS needs https:// endpoints",
            ),
            (
                json!({"endpoints": ["http://a:1", "https://b:1"], "tls": {"caFile": "/ca.pem"}}),
                "mixes http:// and https://",
            ),
            (
                json!({"endpoints": ["https://a:1"], "tls": {}}),
                "ipam.store.etcd.tls.caFile is missing",
            ),
            (
                json!({"endpoints": ["https://a:1"], "tls": {"caFile": "/ca.pem", "certFile": "/c.pem"}}),
                "ipam.store.etcd.tls.certFile needs ipam.store.etcd.tls.keyFile",
            ),
            (
                json!({"endpoints": ["https://a:1"], "tls": {"caFile": "/ca.pem", "ca": "/x"}}),
                "ipam.store.etcd.tls.ca is not a setting",
            ),
            (
                json!({"endpoints": ["https://a:1"], "tls": {"caFile": "/ca.pem", "serverName": "a b"}}),
                "serverName \"a b\" is not a host name",
            ),
            (
                json!({"endpoints": ["http://a:1"], "username": "cni"}),
                "username needs ipam.store.etcd.passwordFile",
            ),
            (
                json!({"endpoints": ["http://a:1"], "password": "hunter2"}),
                "ipam.store.etcd.password is not a setting",
            ),
            (
                json!({"endpoints": ["http://cni:pw@a:1"]}),
                "carries a user name or password",
            ),
        ] {
            let err = parse(json!({"etcd": etcd})).unwrap_err();
            assert_eq!(err.code(), 7, "{err}");
            assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
        }
    }
}
