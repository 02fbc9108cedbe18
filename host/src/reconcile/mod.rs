//! Reclaiming leaked addresses by asking the runtime which pods exist.
//!
//! CNI 1.1's GC is the spec's answer to leaks, but kubelet's runtimes do
//! not send it: containerd 1.6 and 2.x never (their go-cni has no GC yet,
//! containerd/go-cni#131), CRI-O only at start-up. So a lease outlives its
//! pod whenever the runtime's DEL did not reach wasm-ipam: a DEL that
//! failed and was given up, a runtime whose state was lost, a sandbox
//! removed while the store was unreachable.
//!
//! A pass asks the runtime, through CRI as kubelet does ([`cri`]), for
//! every sandbox it knows, then for each network of the node's CNI config
//! folder that delegates to wasm-ipam ([`networks`]) runs the network's
//! recorded policy over its store ([`pass`]): the attachments of this node
//! whose container id is no sandbox are orphans; those seen orphaned for
//! the grace period ([`marks`]) are released by the policy's own `gc`, as
//! a CNI GC would, so every policy works, third-party ones included, and
//! each decides what ending an attachment releases (sticky starts its
//! hold).
//!
//! Never on doubt: a runtime that does not answer, answers an error, or is
//! not a CRI runtime stops the pass before any store is touched; another
//! runtime than earlier passes asked releases nothing in the networks they
//! ran through (`pass`); the grace
//! period (10 minutes by default, as Calico's `leakGracePeriod`) covers an
//! ADD in flight, whose sandbox the runtime lists only once its network is
//! up, and a runtime restarting; a shared store's other nodes are never
//! touched.

pub mod cri;
pub mod marks;
pub mod networks;
pub mod pass;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netrecord::NetworkRecord;
use crate::runner::{self, Mode};

pub use pass::{Orphan, Outcome, PassError};

/// The default grace period: Calico's `leakGracePeriod`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);

/// How long the runtime has to answer.
pub const CRI_TIMEOUT: Duration = Duration::from_secs(10);

/// What a pass is given.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The runtime's CRI socket: `unix:///run/containerd/containerd.sock`.
    pub cri: String,
    /// The node's CNI config folder.
    pub conf_dir: PathBuf,
    pub grace: Duration,
    pub mode: Mode,
    /// The node's runtime was replaced: take the one answering now (see
    /// [`pass`]).
    pub new_runtime: bool,
}

/// One network's part of a pass.
#[derive(Debug)]
pub struct NetworkReport {
    pub network: String,
    pub file: PathBuf,
    pub node: String,
    /// The policy the network's leases were made with.
    pub policy: Option<String>,
    pub outcome: Result<Outcome, String>,
}

/// What a whole pass found and did.
#[derive(Debug)]
pub struct Report {
    /// The runtime, as it named itself.
    pub runtime: String,
    /// How many sandboxes it knows.
    pub sandboxes: usize,
    pub networks: Vec<NetworkReport>,
    /// Config files that were skipped, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Why a pass released nothing at all.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Not a `source`: the message already says it, once.
    #[error("{0}; nothing was released")]
    Runtime(cri::CriError),
    #[error("cannot read the CNI config folder {}", .dir.display())]
    ConfDir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl From<cri::CriError> for ReconcileError {
    fn from(e: cri::CriError) -> Self {
        ReconcileError::Runtime(e)
    }
}

/// One pass, at `now` (seconds since the epoch).
pub fn run(settings: &Settings, now: u64) -> Result<Report, ReconcileError> {
    let found = networks::read(&settings.conf_dir).map_err(|source| ReconcileError::ConfDir {
        dir: settings.conf_dir.clone(),
        source,
    })?;
    // Asked after the configs are read and before any store is touched:
    // an error here releases nothing anywhere.
    let sandboxes = cri::sandboxes(&settings.cri, CRI_TIMEOUT)?;
    let networks = found
        .found
        .iter()
        .map(|f| network(settings, &f.conf, &f.file, &sandboxes, now))
        .collect();
    let report = Report {
        runtime: sandboxes.runtime,
        sandboxes: sandboxes.ids.len(),
        networks,
        skipped: found.skipped,
    };
    if settings.mode == Mode::Commit {
        log_report(&report);
    }
    Ok(report)
}

fn network(
    settings: &Settings,
    live: &crate::cni::config::NetConf,
    file: &Path,
    sandboxes: &cri::Sandboxes,
    now: u64,
) -> NetworkReport {
    let node = runner::node_name(live);
    let mut report = NetworkReport {
        network: live.name.clone(),
        file: file.to_path_buf(),
        node: node.as_deref().unwrap_or("?").to_string(),
        policy: None,
        outcome: Ok(Outcome::default()),
    };
    report.outcome = node.map_err(|e| e.to_string()).and_then(|node| {
        reconcile_network(settings, live, &node, sandboxes, now, &mut report.policy)
    });
    report
}

/// One network's pass, with the policy it recorded noted in `policy`.
fn reconcile_network(
    settings: &Settings,
    live: &crate::cni::config::NetConf,
    node: &str,
    sandboxes: &cri::Sandboxes,
    now: u64,
    policy: &mut Option<String>,
) -> Result<Outcome, String> {
    if crate::release::nothing_stored(&live.ipam.store, &live.ipam.data_dir) {
        return Ok(Outcome::default());
    }
    let store = runner::open_store(live).map_err(|e| e.to_string())?;
    let record = NetworkRecord::read(&mut *store.begin(&live.name).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let Some(record) = record else {
        // No ADD through wasm-ipam yet: nothing held.
        return Ok(Outcome::default());
    };
    *policy = Some(record.policy.clone());
    let mut extra = serde_json::Map::new();
    extra.insert("cniVersion".into(), "1.1.0".into());
    let conf = record.on_node(live, extra).map_err(|e| {
        format!(
            "the recorded config of {:?} no longer parses: {e}",
            live.name
        )
    })?;
    let sandbox = runner::load_policy(&conf).map_err(|e| e.to_string())?;
    let pass = pass::Pass {
        conf: &conf,
        node,
        sandboxes: &sandboxes.ids,
        runtime: &sandboxes.name,
        new_runtime: settings.new_runtime,
        grace: settings.grace.as_secs(),
        now,
        mode: settings.mode,
    };
    pass::run(&pass, &*store, &sandbox).map_err(|e| e.to_string())
}

/// Each release, with why, and each network or file that could not be
/// reconciled, on stderr (and so in the node's log under `serve`).
fn log_report(report: &Report) {
    for (file, why) in &report.skipped {
        log::warn!("reconcile: skipped {}: {why}", file.display());
    }
    for n in &report.networks {
        match &n.outcome {
            Err(e) => log::warn!(
                "reconcile: network {} ({}): {e}",
                n.network,
                n.file.display()
            ),
            Ok(o) => {
                for orphan in &o.orphans {
                    let addresses = orphan.addresses.join(", ");
                    if orphan.released {
                        log::info!(
                            "reconcile: released {addresses} of {}/{} in network {}: {} has no sandbox {} (orphaned since {})",
                            orphan.container_id,
                            orphan.ifname,
                            n.network,
                            report.runtime,
                            orphan.container_id,
                            orphan.since
                        );
                    }
                }
            }
        }
    }
}
