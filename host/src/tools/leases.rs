//! `wasm-ipam leases`: who holds which address, and how full each pool is.

use std::io::Write;
use std::path::Path;

use anyhow::bail;
use serde::Serialize;

use super::inspect::{self, Seen};
use crate::store::Store;

/// From this share of a pool up, the listing warns that it is running out.
const NEARLY_FULL: f64 = 90.0;
const BAR_WIDTH: usize = 20;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkReport {
    pub name: String,
    /// `None` until the network's first ADD through wasm-ipam (such as right
    /// after `import-host-local`).
    pub policy: Option<String>,
    /// Whether the policy reports its leases and pools (exports `inspect`).
    pub reported: bool,
    pub pools: Vec<PoolReport>,
    pub leases: Vec<LeaseRow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolReport {
    pub pool: String,
    pub used: u128,
    pub free: u128,
    pub capacity: u128,
    pub percent: f64,
    /// The policy's own figures: blocks per node, addresses on hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<FigureRow>,
}

#[derive(Debug, Serialize)]
pub struct FigureRow {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub value: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRow {
    pub address: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub pod: Option<String>,
    pub policy: Option<String>,
    /// When the lease was taken, in seconds since the epoch.
    pub since: u64,
    pub age_seconds: u64,
    /// The policy's note: the workload key for sticky.
    pub tag: Option<String>,
    /// The pool it came from, as the policy names it.
    pub pool: Option<String>,
    /// When the reconciler first found no sandbox for the attachment in
    /// the runtime, in seconds since the epoch: it is released once that is
    /// the grace period ago. Absent while the runtime has it (or no
    /// reconciler runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orphaned_since: Option<u64>,
}

/// Reads the leases of `network`, or of every network in the store, each
/// from its own policy (see `inspect`); `data_dir` is the node's, whose
/// cache the policies are compiled into.
pub fn collect(
    store: &dyn Store,
    data_dir: &Path,
    network: Option<&str>,
    now: u64,
) -> anyhow::Result<Vec<NetworkReport>> {
    let known = store.namespaces()?;
    let names: Vec<String> = match network {
        Some(n) if known.iter().any(|k| k == n) => vec![n.to_string()],
        Some(n) => bail!(
            "no network {n:?} in this store; it holds {}",
            if known.is_empty() {
                "none yet".to_string()
            } else {
                known.join(", ")
            }
        ),
        None => known,
    };
    names
        .into_iter()
        .map(|name| network_report(store, data_dir, name, now))
        .collect()
}

fn network_report(
    store: &dyn Store,
    data_dir: &Path,
    name: String,
    now: u64,
) -> anyhow::Result<NetworkReport> {
    let (policy, leases, pools) = match inspect::network(store, data_dir, &name, now)? {
        Seen::Unrecorded => (None, None, Vec::new()),
        Seen::NotReported { policy } => (Some(policy), None, Vec::new()),
        Seen::Reported {
            policy,
            leases,
            pools,
        } => (Some(policy), Some(leases), pools),
    };
    let reported = leases.is_some();
    let orphaned = crate::reconcile::marks::seen_on_any_node(&mut *store.begin(&name)?)?;
    let pools = pools
        .into_iter()
        .map(|p| PoolReport {
            percent: if p.capacity == 0 {
                100.0
            } else {
                (p.used as f64 * 1000.0 / p.capacity as f64).round() / 10.0
            },
            pool: p.name,
            used: p.used.into(),
            free: p.free.into(),
            capacity: p.capacity.into(),
            figures: p
                .figures
                .into_iter()
                .map(|f| FigureRow {
                    name: f.name,
                    node: f.node,
                    value: f.value,
                })
                .collect(),
        })
        .collect();
    let leases = leases
        .unwrap_or_default()
        .into_iter()
        .map(|l| LeaseRow {
            orphaned_since: orphaned
                .get(&(
                    l.attachment.container_id.clone(),
                    l.attachment.ifname.clone(),
                ))
                .copied(),
            address: l.address,
            container_id: l.attachment.container_id,
            ifname: l.attachment.ifname,
            pod: l.pod,
            policy: policy.clone(),
            since: l.since,
            age_seconds: now.saturating_sub(l.since),
            tag: l.note,
            pool: l.pool,
        })
        .collect();
    Ok(NetworkReport {
        name,
        policy,
        reported,
        pools,
        leases,
    })
}

/// `95s`, `12m`, `5h`, `3d`: enough to tell a fresh lease from a stale one.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn bar(percent: f64) -> String {
    let filled = ((percent / 100.0 * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    // A pool with any lease shows at least one mark.
    let filled = if percent > 0.0 { filled.max(1) } else { 0 };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(BAR_WIDTH - filled))
}

/// Rows as aligned columns under a header.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}", padded.join("  ").trim_end())
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A lease's NOTE: the policy's, and whether the runtime still has it.
fn note(l: &LeaseRow, now: u64) -> String {
    let gone = l.orphaned_since.map(|at| {
        format!(
            "no sandbox in the runtime for {}",
            age(now.saturating_sub(at))
        )
    });
    [l.tag.clone(), gone]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn render_text(
    out: &mut dyn Write,
    reports: &[NetworkReport],
    now: u64,
) -> std::io::Result<()> {
    if reports.is_empty() {
        writeln!(out, "no networks in this store yet")?;
    }
    for (i, n) in reports.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(
            out,
            "network {}  policy {}  {} lease{}",
            n.name,
            n.policy.as_deref().unwrap_or("(not yet used by wasm-ipam)"),
            n.leases.len(),
            if n.leases.len() == 1 { "" } else { "s" }
        )?;
        let pools: Vec<Vec<String>> = n
            .pools
            .iter()
            .map(|p| {
                vec![
                    p.pool.clone(),
                    bar(p.percent),
                    format!("{:.1}%", p.percent),
                    p.used.to_string(),
                    p.free.to_string(),
                    if p.percent >= NEARLY_FULL {
                        "nearly full".to_string()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        if n.policy.is_none() {
            writeln!(
                out,
                "  (leases and utilisation unknown until the network's first ADD through wasm-ipam records its config)"
            )?;
        } else if !n.reported {
            writeln!(
                out,
                "  (policy {} does not report leases: it does not export {})",
                n.policy.as_deref().unwrap_or_default(),
                crate::sandbox::INSPECT_INTERFACE
            )?;
        } else if pools.is_empty() {
            writeln!(
                out,
                "  (utilisation unknown: the config has neither ranges nor pools)"
            )?;
        } else {
            table(out, &["POOL", "USAGE", "", "USED", "FREE", ""], &pools)?;
        }
        if !n.leases.is_empty() {
            writeln!(out)?;
            let rows: Vec<Vec<String>> = n
                .leases
                .iter()
                .map(|l| {
                    vec![
                        l.address.clone(),
                        l.container_id.clone(),
                        l.ifname.clone(),
                        l.pod.clone().unwrap_or_else(|| "-".into()),
                        age(l.age_seconds),
                        note(l, now),
                    ]
                })
                .collect();
            table(
                out,
                &["ADDRESS", "CONTAINER", "IFNAME", "POD", "AGE", "NOTE"],
                &rows,
            )?;
        }
    }
    Ok(())
}

pub fn run(
    store: &dyn Store,
    data_dir: &Path,
    network: Option<&str>,
    json: bool,
    now: u64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let reports = collect(store, data_dir, network, now)?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "networks": reports }))?;
        writeln!(out)?;
    } else {
        render_text(out, &reports, now)?;
    }
    Ok(())
}
