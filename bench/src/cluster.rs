//! Cluster scale on etcd: N simulated nodes, each with its own `ipam.node`
//! and data dir, start P pods at once against one real etcd, as after a mass
//! reschedule or a cluster restart. Every ADD is its own process, as a
//! runtime starts it.
//!
//! A run is written `NODESxPODS[:cold|:churn]`:
//! - warm (the default): one cache, compiled before the burst, as the
//!   `install` step leaves it;
//! - `cold`: every node starts with an empty cache, so its first pods race
//!   to compile the policy;
//! - `churn`: half of each node's pods exist before the burst; in the burst
//!   each of them is deleted and re-added under a new id (a reschedule)
//!   while the node's other pods are added.
//!
//! Reported: the time until every pod has an address, ADD p50 and p99,
//! conflicts per ADD (the host logs each lost race), failures by CNI code,
//! and whether the addresses handed out are distinct.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::etcd::Etcd;
use crate::spawn;
use crate::stats::summarise;
use crate::systems::env;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Warm,
    Cold,
    Churn,
}

#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub nodes: usize,
    pub pods: usize,
    pub mode: Mode,
}

impl std::str::FromStr for Spec {
    type Err = String;

    fn from_str(s: &str) -> Result<Spec, String> {
        let bad =
            || format!("{s:?} is not a cluster run: write NODESxPODS[:cold|:churn], e.g. 100x5");
        let (size, mode) = s.split_once(':').unwrap_or((s, "warm"));
        let (nodes, pods) = size.split_once('x').ok_or_else(bad)?;
        let mode = match mode {
            "warm" => Mode::Warm,
            "cold" => Mode::Cold,
            "churn" => Mode::Churn,
            _ => return Err(bad()),
        };
        let (nodes, pods) = (
            nodes.parse().map_err(|_| bad())?,
            pods.parse().map_err(|_| bad())?,
        );
        if nodes == 0 || pods == 0 {
            return Err(bad());
        }
        Ok(Spec { nodes, pods, mode })
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Warm => "warm",
            Mode::Cold => "cold",
            Mode::Churn => "churn",
        };
        write!(f, "{}x{} {mode}", self.nodes, self.pods)
    }
}

/// The runs of the issue: 100 x 5 warm and cold, 20 x 50, and churn.
pub const DEFAULT_RUNS: &str = "100x5,100x5:cold,20x50,100x5:churn";

/// CI's smoke run: one small burst of each kind.
pub const SMOKE_RUNS: &str = "6x3,4x2:cold,4x4:churn";

/// Fails unless every run gave every pod a distinct address.
pub fn require_every_pod_addressed(runs: &Value) -> Result<()> {
    for run in runs.as_array().into_iter().flatten() {
        let (adds, distinct) = (&run["adds"], &run["distinct_addresses"]);
        if run["failed"] != 0 || adds != distinct {
            bail!(
                "cluster run {}: {distinct} distinct addresses for {adds} ADDs, failures {}",
                run["run"],
                run["failures_by_code"]
            );
        }
    }
    Ok(())
}

/// One call of the burst.
struct Call {
    node: usize,
    command: &'static str,
    id: String,
}

/// What one ADD of the burst gave.
pub struct Added {
    pub wall: Duration,
    pub conflicts: usize,
    /// The address, or the CNI error code and message.
    pub answer: Result<String, (i64, String)>,
}

fn node_conf(spec: &Spec, node: usize, dir: &Path, shared_cache: &Path, store: &Value) -> String {
    let name = format!("node-{node:03}");
    let cache = match spec.mode {
        Mode::Cold => dir.join(&name).join("cache"),
        _ => shared_cache.to_path_buf(),
    };
    json!({"cniVersion": "1.0.0", "name": "cluster", "type": "bridge", "ipam": {
        "type": "wasm-ipam", "policy": "pooled", "node": name,
        "pools": [{"name": "p", "cidr": "10.128.0.0/16", "blockSize": 28}],
        "dataDir": dir.join(&name), "cacheDir": cache, "store": store}})
    .to_string()
}

fn added(run: &spawn::Run) -> Added {
    let out: Value = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    let answer = match out["ips"][0]["address"].as_str() {
        Some(a) if run.ok => Ok(a.to_string()),
        _ => Err((
            out["code"].as_i64().unwrap_or(-1),
            out["msg"].as_str().unwrap_or(run.stderr.trim()).to_string(),
        )),
    };
    Added {
        wall: run.wall,
        conflicts: run.stderr.matches("store conflict on attempt").count(),
        answer,
    }
}

/// Something done to the store during a burst, once `after` ADDs have
/// answered, on a thread of its own; it returns how long the store took to
/// recover from it.
pub struct Fault<'a> {
    pub after: usize,
    pub act: Box<dyn FnOnce() -> Duration + Send + 'a>,
}

/// Runs each list of calls in its own thread, all starting together; the
/// time from the first call's start to the last one's end, the ADDs'
/// answers, and what `fault` returned. Each thread keeps its own clock: on 2
/// cores busy compiling, the main thread can get the CPU seconds after the
/// start line.
fn burst(
    ours: &Path,
    confs: &[String],
    lists: Vec<Vec<Call>>,
    fault: Option<Fault<'_>>,
) -> (Duration, Vec<Added>, Option<Duration>) {
    let start_line = Barrier::new(lists.len());
    let answered = AtomicUsize::new(0);
    let mut recovered = None;
    let results: Vec<(Instant, Instant, Vec<Added>)> = std::thread::scope(|s| {
        let answered = &answered;
        let faulted = fault.map(|fault| {
            s.spawn(move || {
                while answered.load(Ordering::SeqCst) < fault.after {
                    std::thread::sleep(Duration::from_millis(5));
                }
                (fault.act)()
            })
        });
        let handles: Vec<_> = lists
            .into_iter()
            .map(|list| {
                let start_line = &start_line;
                s.spawn(move || {
                    start_line.wait();
                    let began = Instant::now();
                    let mut out = Vec::new();
                    for call in list {
                        let conf = confs[call.node].as_bytes();
                        let run = spawn::run_capturing(ours, &env(call.command, &call.id), conf);
                        if call.command == "ADD" {
                            out.push(added(&run));
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    (began, Instant::now(), out)
                })
            })
            .collect();
        let out = handles
            .into_iter()
            .map(|h| h.join().expect("a caller"))
            .collect();
        // A fault still waiting (the burst had fewer ADDs than `after`)
        // acts now, after the burst, so its thread ends.
        answered.store(usize::MAX, Ordering::SeqCst);
        recovered = faulted.map(|h| h.join().expect("the fault"));
        out
    });
    let first = results.iter().map(|r| r.0).min();
    let last = results.iter().map(|r| r.1).max();
    let wall = first.zip(last).map_or(Duration::ZERO, |(f, l)| l - f);
    (
        wall,
        results.into_iter().flat_map(|r| r.2).collect(),
        recovered,
    )
}

/// One run on a fresh prefix of `etcd`.
pub fn run(ours: &Path, etcd: &Etcd, spec: &Spec) -> Result<Value> {
    let (wall, adds, _) = run_on(ours, etcd, None, spec, None)?;
    Ok(report(spec, wall, &adds))
}

/// One run on a fresh prefix of `etcd`, with
/// `fault` done to it partway: the time until every pod had an address,
/// the ADDs, and the time the store took to recover from the fault.
pub fn run_on(
    ours: &Path,
    etcd: &Etcd,
    timeout_ms: Option<u64>,
    spec: &Spec,
    fault: Option<Fault<'_>>,
) -> Result<(Duration, Vec<Added>, Option<Duration>)> {
    let tmp = tempfile::tempdir()?;
    let prefix = format!(
        "/wasm-ipam-bench/cluster-{}-{}",
        std::process::id(),
        spec.to_string().replace(' ', "-")
    );
    let store = etcd.store(&prefix, timeout_ms);
    let shared_cache = tmp.path().join("cache");
    if spec.mode != Mode::Cold {
        let status = Command::new(ours)
            .args(["compile", "pooled", "--cache-dir"])
            .arg(&shared_cache)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running wasm-ipam compile")?;
        if !status.success() {
            bail!("wasm-ipam compile pooled failed");
        }
    }
    let confs: Vec<String> = (0..spec.nodes)
        .map(|n| node_conf(spec, n, tmp.path(), &shared_cache, &store))
        .collect();
    let id = |n: usize, what: &str, i: usize| format!("node-{n:03}-{what}-{i}");
    // Churn: half of each node's pods exist before the burst.
    let existing = if spec.mode == Mode::Churn {
        spec.pods / 2
    } else {
        0
    };
    if existing > 0 {
        let setup = (0..spec.nodes)
            .map(|n| {
                (0..existing)
                    .map(|i| Call {
                        node: n,
                        command: "ADD",
                        id: id(n, "old", i),
                    })
                    .collect()
            })
            .collect();
        let (_, made, _) = burst(ours, &confs, setup, None);
        if let Some(failed) = made.iter().find(|a| a.answer.is_err()) {
            bail!(
                "setting up the churn run: an ADD failed with {:?}",
                failed.answer
            );
        }
    }
    // The burst: one caller per pod. A rescheduled pod is a DEL of its old
    // id, then an ADD under a new one, in that order.
    let mut lists = Vec::new();
    for n in 0..spec.nodes {
        for i in 0..spec.pods {
            let mut list = Vec::new();
            if i < existing {
                list.push(Call {
                    node: n,
                    command: "DEL",
                    id: id(n, "old", i),
                });
            }
            list.push(Call {
                node: n,
                command: "ADD",
                id: id(n, "pod", i),
            });
            lists.push(list);
        }
    }
    Ok(burst(ours, &confs, lists, fault))
}

fn report(spec: &Spec, wall: Duration, adds: &[Added]) -> Value {
    let walls: Vec<Duration> = adds.iter().map(|a| a.wall).collect();
    let s = summarise(&walls);
    let conflicts: usize = adds.iter().map(|a| a.conflicts).sum();
    let per_add = conflicts as f64 / adds.len().max(1) as f64;
    // Per code: how many, and the first message.
    let mut failures: BTreeMap<i64, (usize, &str)> = BTreeMap::new();
    for a in adds {
        if let Err((code, msg)) = &a.answer {
            failures.entry(*code).or_insert((0, msg)).0 += 1;
        }
    }
    let given: Vec<&str> = adds
        .iter()
        .filter_map(|a| a.answer.as_deref().ok())
        .collect();
    let distinct = given.iter().collect::<BTreeSet<_>>().len();
    let failed: usize = failures.values().map(|(n, _)| n).sum();
    let codes = if failures.is_empty() {
        "none".to_string()
    } else {
        failures
            .iter()
            .map(|(code, (n, msg))| format!("{n} with code {code} (\"{msg}\")"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{:<16} {:>5} | {:>8.1} | {:>7.1} {:>7.1} | {:>9.2} | {:>7} of {:<5} | {codes}",
        spec.to_string(),
        adds.len(),
        wall.as_secs_f64(),
        s.median_ms,
        s.p99_ms,
        per_add,
        distinct,
        given.len(),
    );
    json!({"run": spec.to_string(), "nodes": spec.nodes, "pods_per_node": spec.pods,
        "adds": adds.len(), "seconds_until_every_pod_has_an_address": wall.as_secs_f64(),
        "add_p50_ms": s.median_ms, "add_p99_ms": s.p99_ms, "conflicts_per_add": per_add,
        "failed": failed, "failures_by_code": failures.iter().map(|(c, (n, msg))| (c.to_string(), json!({"count": n, "first_message": msg}))).collect::<serde_json::Map<_, _>>(),
        "addresses_given": given.len(), "distinct_addresses": distinct})
}

/// Every run of `specs`, as a table and as JSON.
pub fn run_all(ours: &Path, etcd: &Etcd, specs: &[Spec]) -> Result<Value> {
    println!(
        "\nCluster bursts on etcd ({etcd}): pooled, a /16 in /28 blocks, every ADD at once:\n"
    );
    println!(
        "{:<16} {:>5} | {:>8} | {:>7} {:>7} | {:>9} | {:>16} | failures",
        "run", "ADDs", "until s", "p50 ms", "p99 ms", "conf/ADD", "distinct"
    );
    let mut out = Vec::new();
    for spec in specs {
        out.push(run(ours, etcd, spec)?);
    }
    Ok(Value::Array(out))
}
