//! The cluster bench's fault mode: the burst of issue 24 (20 nodes starting
//! 10 pods each, at once) on a 3-member etcd cluster this bench starts
//! itself, while a member dies, restarts or is partitioned away.
//!
//! The faults are the ones `host/tests/all/etcd_cluster.rs` proves safe,
//! done by the same `etcd-cluster` crate:
//! - `none`: the baseline, and what the failover machinery costs when
//!   nothing fails (each committing process also grants its marker lease);
//! - `leader-kill`: the leader SIGKILLed after 30 ADDs answered;
//! - `follower-kill`: a follower SIGKILLed likewise;
//! - `member-restart`: a follower down before the burst, started again
//!   after 30 ADDs, as in a rolling upgrade;
//! - `leader-partition` (root only: members in their own network
//!   namespaces): the leader cut off from the others, clients still
//!   reaching it.
//!
//! Reported per run: ADDs that succeeded, ADD p50, p99 and the longest,
//! the time until every pod had an address, and the time to recover: from
//! the fault until a write commits through the cluster again (for a
//! restart, through the restarted member).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::etcd::Etcd;
use anyhow::{Result, bail};
use etcd_cluster::Cluster;
use serde_json::{Value, json};

use crate::cluster::{Added, Fault, Mode, Spec, run_on};
use crate::stats::summarise;

/// The store's budget, as in the failover tests.
const TIMEOUT_MS: u64 = 15_000;

/// ADDs answered before the fault: 30 of the 200 of the burst, and
/// as large a share of a smaller one.
fn after(spec: &Spec) -> usize {
    (spec.nodes * spec.pods * 3 / 20).clamp(1, 30)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    LeaderKill,
    FollowerKill,
    MemberRestart,
    LeaderPartition,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::LeaderKill => "leader-kill",
            Kind::FollowerKill => "follower-kill",
            Kind::MemberRestart => "member-restart",
            Kind::LeaderPartition => "leader-partition",
        }
    }
}

/// Polls until a write commits (through member `on`, if given); the time
/// since `from`.
fn until_commits(cluster: &Cluster, on: Option<usize>, from: Instant) -> Duration {
    let bound = Duration::from_millis(250);
    let deadline = from + Duration::from_secs(60);
    while Instant::now() < deadline {
        let ok = match on {
            Some(i) => cluster.commits_on(i, bound),
            None => cluster.commits(bound),
        };
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    from.elapsed()
}

/// One run of `kind` on a cluster of its own.
fn run(ours: &Path, kind: Kind, spec: &Spec) -> Result<Option<Value>> {
    let cluster = if kind == Kind::LeaderPartition {
        match Cluster::start_partitionable(3) {
            Some(c) => c,
            None => {
                println!(
                    "{:<17} skipped: partitioning members needs root",
                    kind.name()
                );
                return Ok(None);
            }
        }
    } else {
        Cluster::start(3)
    };
    let endpoints = cluster.endpoints();
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let cluster = Mutex::new(cluster);
    if kind == Kind::MemberRestart {
        cluster.lock().unwrap().kill(follower);
    }
    let c = &cluster;
    let act: Box<dyn FnOnce() -> Duration + Send + '_> = match kind {
        Kind::None => Box::new(|| Duration::ZERO),
        Kind::LeaderKill | Kind::FollowerKill => Box::new(move || {
            let victim = if kind == Kind::LeaderKill {
                leader
            } else {
                follower
            };
            let at = Instant::now();
            c.lock().unwrap().kill(victim);
            until_commits(&c.lock().unwrap(), None, at)
        }),
        Kind::MemberRestart => Box::new(move || {
            let at = Instant::now();
            c.lock().unwrap().spawn(follower);
            until_commits(&c.lock().unwrap(), Some(follower), at)
        }),
        Kind::LeaderPartition => Box::new(move || {
            let at = Instant::now();
            let cluster = c.lock().unwrap();
            cluster.partition(leader);
            until_commits(&cluster, None, at)
        }),
    };
    let fault = Fault {
        after: after(spec),
        act,
    };
    let (wall, adds, recovered) = run_on(
        ours,
        &Etcd::plain(endpoints),
        Some(TIMEOUT_MS),
        spec,
        Some(fault),
    )?;
    Ok(Some(report(kind, wall, &adds, recovered)))
}

fn report(kind: Kind, wall: Duration, adds: &[Added], recovered: Option<Duration>) -> Value {
    let walls: Vec<Duration> = adds.iter().map(|a| a.wall).collect();
    let s = summarise(&walls);
    let longest = walls.iter().max().copied().unwrap_or_default();
    let given: Vec<&str> = adds
        .iter()
        .filter_map(|a| a.answer.as_deref().ok())
        .collect();
    let distinct = given
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let first_failure = adds.iter().find_map(|a| a.answer.as_ref().err());
    let recovered_s = recovered.map(|d| d.as_secs_f64());
    println!(
        "{:<17} | {:>4} of {:<4} | {:>7.1} {:>7.1} {:>7.1} | {:>8.1} | {:>9} | {:>8}{}",
        kind.name(),
        given.len(),
        adds.len(),
        s.median_ms,
        s.p99_ms,
        longest.as_secs_f64() * 1000.0,
        wall.as_secs_f64(),
        recovered_s.map_or("-".into(), |r| format!("{r:.2}")),
        distinct,
        first_failure.map_or(String::new(), |(code, msg)| format!(
            " | first failure: code {code} {msg:?}"
        )),
    );
    json!({"fault": kind.name(), "adds": adds.len(), "succeeded": given.len(),
        "distinct_addresses": distinct, "add_p50_ms": s.median_ms, "add_p99_ms": s.p99_ms,
        "add_longest_ms": longest.as_secs_f64() * 1000.0,
        "seconds_until_every_pod_has_an_address": wall.as_secs_f64(),
        "seconds_to_recover": recovered_s})
}

/// Every fault, on `nodes` x `pods`; fails when a run lost or duplicated
/// an address, so CI's smoke run is a check, not only figures.
pub fn run_all(ours: &Path, nodes: usize, pods: usize) -> Result<Value> {
    if !etcd_cluster::available() {
        bail!("the fault mode starts its own etcd members: install etcd-server");
    }
    let spec = Spec {
        nodes,
        pods,
        mode: Mode::Warm,
    };
    println!(
        "\nFaults on a 3-member etcd cluster: {spec}, pooled, timeoutMs {TIMEOUT_MS}, the fault \
         after {} ADDs:\n",
        after(&spec)
    );
    println!(
        "{:<17} | {:>12} | {:>7} {:>7} {:>7} | {:>8} | {:>9} | {:>8}",
        "fault", "succeeded", "p50 ms", "p99 ms", "max ms", "until s", "recover s", "distinct"
    );
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    for kind in [
        Kind::None,
        Kind::LeaderKill,
        Kind::FollowerKill,
        Kind::MemberRestart,
        Kind::LeaderPartition,
    ] {
        if let Some(run) = run(ours, kind, &spec)? {
            if run["succeeded"] != run["adds"] || run["distinct_addresses"] != run["adds"] {
                bad.push(kind.name());
            }
            out.push(run);
        }
    }
    if !bad.is_empty() {
        bail!(
            "under {}, an ADD failed or an address was given twice",
            bad.join(", ")
        );
    }
    Ok(Value::Array(out))
}
