//! The etcd the bench measures on, as `--etcd` and its TLS and user flags
//! give it: every run's `ipam.store` is built here, so a bench over TLS
//! with a client certificate measures what a production node pays for it.
//!
//! The settings are checked by the host's own parser before anything
//! runs: a bench with an `https://` endpoint and no CA fails at once with
//! the host's message, not with 200 failed ADDs.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use serde_json::{Map, Value, json};
use wasm_ipam::cni::config::StoreConf;

/// `--etcd-*`: how to reach the `--etcd` endpoint, as `ipam.store.etcd`
/// says it.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Access {
    /// The CA (PEM) that signed the etcd members' certificates: the
    /// store's tls.caFile, needed with an https:// endpoint.
    #[arg(long, value_name = "FILE", requires = "etcd")]
    pub etcd_ca: Option<PathBuf>,
    /// A client certificate (PEM) for members started with
    /// --client-cert-auth: tls.certFile.
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's key (PEM): tls.keyFile.
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// The name the members' certificates carry, when the endpoint is an
    /// address: tls.serverName.
    #[arg(long, value_name = "NAME", requires = "etcd_ca")]
    pub etcd_server_name: Option<String>,
    /// An etcd user: username.
    #[arg(long, value_name = "NAME", requires = "etcd_password_file")]
    pub etcd_user: Option<String>,
    /// The file holding that user's password: passwordFile.
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
}

/// The etcd of a run: its endpoints, and how to reach them.
#[derive(Debug, Clone)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    /// `tls`, `username` and `passwordFile`, as the store object spells
    /// them.
    access: Map<String, Value>,
}

impl Etcd {
    /// Endpoints reached over plain HTTP with no user, as the fault mode's
    /// own cluster is.
    pub fn plain(endpoints: Vec<String>) -> Etcd {
        Etcd {
            endpoints,
            access: Map::new(),
        }
    }

    /// `--etcd URL` with its `--etcd-*` flags, checked as the host checks
    /// `ipam.store`.
    pub fn from_cli(url: &str, access: &Access) -> Result<Etcd> {
        let mut settings = Map::new();
        if let Some(ca) = &access.etcd_ca {
            let mut tls = json!({"caFile": ca});
            if let (Some(cert), Some(key)) = (&access.etcd_cert, &access.etcd_key) {
                tls["certFile"] = json!(cert);
                tls["keyFile"] = json!(key);
            }
            if let Some(name) = &access.etcd_server_name {
                tls["serverName"] = json!(name);
            }
            settings.insert("tls".into(), tls);
        } else if access.etcd_cert.is_some() {
            return Err(anyhow!("--etcd-cert needs --etcd-ca"));
        }
        if let (Some(user), Some(file)) = (&access.etcd_user, &access.etcd_password_file) {
            settings.insert("username".into(), json!(user));
            settings.insert("passwordFile".into(), json!(file));
        }
        let etcd = Etcd {
            endpoints: vec![url.to_string()],
            access: settings,
        };
        StoreConf::from_json(&etcd.store("/wasm-ipam-bench", None))
            .map_err(|e| anyhow!("--etcd {url}: {e}"))?;
        Ok(etcd)
    }

    /// The `ipam.store` object for a run under `prefix`.
    pub fn store(&self, prefix: &str, timeout_ms: Option<u64>) -> Value {
        let mut etcd = self.access.clone();
        etcd.insert("endpoints".into(), json!(self.endpoints));
        etcd.insert("prefix".into(), json!(prefix));
        if let Some(ms) = timeout_ms {
            etcd.insert("timeoutMs".into(), json!(ms));
        }
        json!({ "etcd": etcd })
    }
}

impl std::fmt::Display for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.endpoints.join(","))?;
        if let Some(tls) = self.access.get("tls") {
            let client = if tls.get("certFile").is_some() {
                " with a client certificate"
            } else {
                ""
            };
            write!(f, " over TLS{client}")?;
        }
        if let Some(user) = self.access.get("username").and_then(Value::as_str) {
            write!(f, " as {user}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_become_the_store_settings_and_are_checked_as_the_host_checks_them() {
        let access = Access {
            etcd_ca: Some("/etc/etcd/ca.pem".into()),
            etcd_cert: Some("/etc/etcd/node.pem".into()),
            etcd_key: Some("/etc/etcd/node-key.pem".into()),
            etcd_server_name: Some("etcd.test".into()),
            ..Access::default()
        };
        let etcd = Etcd::from_cli("https://127.0.0.1:2379", &access).unwrap();
        assert_eq!(
            etcd.store("/p", Some(500)),
            json!({"etcd": {"endpoints": ["https://127.0.0.1:2379"], "prefix": "/p",
                            "timeoutMs": 500,
                            "tls": {"caFile": "/etc/etcd/ca.pem", "certFile": "/etc/etcd/node.pem",
                                    "keyFile": "/etc/etcd/node-key.pem",
                                    "serverName": "etcd.test"}}})
        );
        assert_eq!(
            etcd.to_string(),
            "https://127.0.0.1:2379 over TLS with a client certificate"
        );
        let e = Etcd::from_cli("https://127.0.0.1:2379", &Access::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("ipam.store.etcd.tls must say how to trust"),
            "{e}"
        );
        let e = Etcd::from_cli("http://127.0.0.1:2379", &access).unwrap_err();
        assert!(
            e.to_string().contains("TLS needs https:// endpoints"),
            "{e}"
        );
    }
}
