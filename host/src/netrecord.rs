//! What the host remembers of each network, next to the policy's own keys:
//! the policy and its config, as of the last ADD.
//!
//! The runtime hands the config to every call and keeps it nowhere a person
//! can find on the node, but the operator tools need it: `leases` to know
//! the pools it measures, `gc` to run the policy with the config it runs
//! with. The record is written in the ADD's own transaction, and only when
//! it changed, so a warm ADD pays one read for it.
//!
//! Its key is reserved: policies can neither read, write nor scan it (see
//! the sandbox's store), so it cannot leak into or break an allocation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cni::config::NetConf;
use crate::store::{StoreError, Txn};

/// Keys under this prefix belong to the host.
pub const RESERVED_PREFIX: &str = ".wasm-ipam/";
const RECORD_KEY: &str = ".wasm-ipam/network";

/// `ipam` fields that belong to one node, left out so that nodes sharing a
/// store (etcd) do not rewrite each other's record on every ADD.
const NODE_FIELDS: [&str; 3] = ["dataDir", "cacheDir", "node"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRecord {
    pub policy: String,
    pub cni_version: String,
    /// The `ipam` object, without the node-local fields.
    pub ipam: Value,
}

impl NetworkRecord {
    pub fn of(conf: &NetConf) -> NetworkRecord {
        let mut ipam: Value = serde_json::from_str(&conf.ipam_raw).unwrap_or(Value::Null);
        if let Some(obj) = ipam.as_object_mut() {
            for f in NODE_FIELDS {
                obj.remove(f);
            }
        }
        NetworkRecord {
            policy: conf.ipam.policy.clone(),
            cni_version: conf.cni_version.text.clone(),
            ipam,
        }
    }

    pub fn read(txn: &mut dyn Txn) -> Result<Option<NetworkRecord>, StoreError> {
        Ok(txn
            .get(RECORD_KEY)?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Stores the record unless the same one is there already. The check
    /// is a `peek`: nodes that add at once write the same record, and need
    /// not lose a race to each other over it.
    pub fn remember(&self, txn: &mut dyn Txn) -> Result<(), StoreError> {
        let value = serde_json::to_vec(self).expect("a record serializes");
        if txn.peek(RECORD_KEY)?.as_deref() != Some(value.as_slice()) {
            txn.put(RECORD_KEY, &value)?;
        }
        Ok(())
    }

    /// A network config that runs this network's policy with its config,
    /// with `extra` top-level fields (such as the valid attachments of GC).
    pub fn netconf(
        &self,
        name: &str,
        data_dir: &std::path::Path,
        extra: serde_json::Map<String, Value>,
    ) -> Value {
        let mut ipam = self.ipam.clone();
        if let Some(obj) = ipam.as_object_mut() {
            obj.insert("dataDir".into(), data_dir.display().to_string().into());
        }
        let mut conf = serde_json::json!({
            "cniVersion": self.cni_version,
            "name": name,
            "ipam": ipam,
        });
        conf.as_object_mut().expect("an object").extend(extra);
        conf
    }

    /// This network's policy and config as recorded, run on the node the
    /// `live` config is for: its node-local fields (`dataDir`, `cacheDir`,
    /// `node`) come from `live`, as does its store. What the reconciler
    /// runs a network's GC with.
    pub fn on_node(
        &self,
        live: &NetConf,
        extra: serde_json::Map<String, Value>,
    ) -> Result<NetConf, crate::cni::CniError> {
        let mut conf = self.netconf(&live.name, &live.ipam.data_dir, extra);
        let local: Value = serde_json::from_str(&live.ipam_raw).unwrap_or(Value::Null);
        if let (Some(ipam), Some(local)) = (conf["ipam"].as_object_mut(), local.as_object()) {
            for f in NODE_FIELDS.into_iter().chain(["store"]) {
                if let Some(v) = local.get(f) {
                    ipam.insert(f.into(), v.clone());
                }
            }
        }
        NetConf::parse(conf.to_string().as_bytes())
    }
}
