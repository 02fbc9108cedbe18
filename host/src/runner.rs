//! What every path that runs a policy shares, below [`crate::invoke`]
//! (one CNI call) and beside the paths that release without one: the
//! reclaim after a reboot ([`crate::reboot`]), the DEL that falls back on
//! the recorded config ([`crate::release`]), the DHCP renewer
//! ([`crate::serve::renewals`]), the reconciler ([`crate::reconcile`]) and
//! the operator tools. It opens a network's policy and store, gives the
//! clock and the node a call runs for, and grants the `dhcp` capability.
//!
//! Nothing here reaches up: this module imports neither `invoke` nor any
//! of the paths above, so each of them can use it without a cycle.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cni::CniError;
use crate::cni::config::{NetConf, StoreConf};
use crate::cni::result::IpamResult;
use crate::dhcp::{Capability, Exchanges};
use crate::envvars;
use crate::sandbox::{self, Sandbox};
use crate::store::{EtcdStore, Store};
use crate::trust::{TrustError, TrustedDir};

/// The clock policies see: `WASM_IPAM_NOW` when set, else the real time.
pub fn now(lookup: &dyn Fn(&str) -> Option<OsString>) -> Result<u64, CniError> {
    Ok(envvars::now(lookup)?.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
    }))
}

/// The node a call runs for: `ipam.node`, else this machine's host name,
/// which must then be a plain name too (it becomes part of store keys):
/// code 7 saying to set `ipam.node` otherwise.
pub fn node_name(conf: &NetConf) -> Result<String, CniError> {
    if let Some(node) = &conf.ipam.node {
        return Ok(node.clone());
    }
    let name = hostname();
    // Host names are case-insensitive, and some are set in capitals.
    if crate::cni::config::valid_node_name(&name.to_ascii_lowercase()) {
        Ok(name)
    } else {
        Err(CniError::InvalidConfig(format!(
            "this machine's host name {name:?} is not a plain node name (letters, digits, '-' \
             and '.'): set ipam.node"
        )))
    }
}

fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The policy the config names, compiled or from the cache; in
/// `wasm-ipam serve`, kept loaded between calls (see `serve::policies`).
pub fn load_policy(conf: &NetConf) -> Result<Arc<Sandbox>, CniError> {
    let source = sandbox::PolicySource::resolve(&conf.ipam.policy)?;
    crate::serve::policies::load(&source, &conf.ipam.cache_dir)
}

/// The store the config names.
pub fn open_store(conf: &NetConf) -> Result<Box<dyn Store>, CniError> {
    open_store_at(&conf.ipam.store, &conf.ipam.data_dir)
}

/// The store `store` names, with `data_dir` its node-local folder.
pub fn open_store_at(store: &StoreConf, data_dir: &Path) -> Result<Box<dyn Store>, CniError> {
    let dir = data_folder(data_dir)?;
    Ok(match store {
        StoreConf::Embedded => crate::serve::stores::open(&dir)?,
        StoreConf::Etcd(etcd) => Box::new(EtcdStore::connect(etcd, Some(dir))?),
    })
}

/// `ipam.dataDir`, made if missing and checked: code 7 when someone other
/// than root and this user could change it or a folder above it, code 5
/// when it cannot be made.
pub fn data_folder(data_dir: &Path) -> Result<TrustedDir, CniError> {
    TrustedDir::open(data_dir, true).map_err(|e| match e {
        TrustError::Unsafe { .. } => CniError::InvalidConfig(format!(
            "ipam.dataDir {} is refused: {e}; the store decides which addresses are free, so no \
             one else may be able to change that folder or any above it",
            data_dir.display()
        )),
        TrustError::Io { .. } => CniError::Io(format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        )),
    })
}

/// The `dhcp` capability of a call with `sandbox`'s policy: none for a
/// policy that does not import it (`exchanges` is not even asked); code 7
/// for one that does, on a network that does not grant it.
pub fn dhcp_capability(
    sandbox: &Sandbox,
    conf: &NetConf,
    exchanges: impl FnOnce() -> Exchanges,
    node: &str,
    boot: Option<&str>,
) -> Result<Option<Arc<Capability>>, CniError> {
    if !sandbox.imports_dhcp() {
        return Ok(None);
    }
    if !conf.ipam.grant.dhcp {
        return Err(CniError::InvalidConfig(format!(
            "policy {} imports {}, which this network does not grant: add \"grant\": [\"dhcp\"] under ipam to let it make DHCP exchanges",
            sandbox.name(),
            sandbox::DHCP_INTERFACE
        )));
    }
    Ok(Some(Arc::new(Capability::new(
        exchanges(),
        node.to_string(),
        boot.map(str::to_string),
    ))))
}

/// What follows a commit of a call with the `dhcp` capability: the RELEASEs
/// of the leases it gave up, and, when it acquired one, its store on the
/// list the node's renewer reads. A DEL sends what is pending even when it
/// gave nothing up itself: a runtime retries a DEL that was killed after
/// its commit, and the retry finds nothing left to release but the RELEASE
/// that crash left unsent.
pub fn after_commit(store: &dyn Store, conf: &NetConf, dhcp: &Capability, deleting: bool) {
    if dhcp.released() || deleting {
        crate::dhcp::outbox::flush(store, &conf.name, &dhcp.node, dhcp.boot.as_deref());
    }
    if dhcp.gained() {
        crate::dhcp::registry::remember(&crate::dhcp::registry::Place::new(
            &conf.ipam.store,
            &conf.ipam.data_dir,
            &dhcp.node,
        ));
        crate::dhcp::registry::poke();
    }
}

/// Whether a successful call is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Commit,
    /// Run the policy and answer, then roll everything back.
    DryRun,
}

/// What the policy answered, once checked by the host.
#[derive(Debug)]
pub enum Answered {
    Result(IpamResult),
    /// GC: what was (or, in a dry run, would be) released.
    Released(Vec<sandbox::Released>),
    Nothing,
}
