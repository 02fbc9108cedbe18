//! The shared store on a real 3-member etcd cluster (`etcd-cluster`), each
//! member its own process with a temporary data dir, while members die,
//! restart, are partitioned away and lose the quorum.
//!
//! The bar is the one a node's operator sets: a routine member restart or
//! upgrade must not fail a pod. So in every burst each ADD succeeds within
//! its budget, every address is distinct, the leases in etcd are exactly the
//! successful ADDs, and a DEL of every pod leaves nothing held. Without a
//! quorum a call ends in code 11 naming etcd, and nothing is half-written.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cni::exec::{Call, Outcome};
use serde_json::{Value, json};
use wasm_ipam::cni::config::{EtcdConf, StoreConf};
use wasm_ipam::store::EtcdStore;

use crate::common::{Net, assert_error};
use crate::etcd::{assert_consistent, dump_store, etcd_available, pooled_on};
use etcd_cluster::Cluster;

/// The budget: a call may take this long to ride out an election.
const TIMEOUT_MS: u64 = 15_000;

/// The cluster as the host's store config names it: over TLS with the
/// probes' client certificate, in a TLS cluster.
pub(crate) fn conf(cluster: &Cluster) -> EtcdConf {
    let json = ipam_store(cluster, TIMEOUT_MS);
    match StoreConf::from_json(&json).unwrap() {
        StoreConf::Etcd(conf) => *conf,
        StoreConf::Embedded => unreachable!("an etcd store"),
    }
}

/// The `ipam.store` object that reaches `cluster`.
pub(crate) fn ipam_store(cluster: &Cluster, timeout_ms: u64) -> Value {
    let mut etcd = json!({"endpoints": cluster.endpoints(), "prefix": "/wasm-ipam",
                          "timeoutMs": timeout_ms});
    if let Some(tls) = &cluster.tls {
        etcd["tls"] = json!({"caFile": tls.ca_file, "certFile": tls.client.cert,
                             "keyFile": tls.client.key});
        if let Some(name) = &tls.server_name {
            etcd["tls"]["serverName"] = json!(name);
        }
    }
    json!({ "etcd": etcd })
}

/// `nodes` nodes start `pods` pods each, all at once; `fault` runs on its
/// own thread once `after` ADDs have answered.
pub(crate) fn burst(
    net: &Net,
    nodes: usize,
    pods: usize,
    after: usize,
    fault: impl FnOnce() + Send,
) -> Vec<(String, Outcome)> {
    let dirs: Vec<tempfile::TempDir> = (0..nodes).map(|_| tempfile::tempdir().unwrap()).collect();
    let confs: Vec<(String, Value)> = dirs
        .iter()
        .enumerate()
        .map(|(n, dir)| {
            let mut conf = net.conf.clone();
            conf["ipam"]["node"] = json!(format!("node-{n:02}"));
            conf["ipam"]["dataDir"] = json!(dir.path());
            (format!("node-{n:02}"), conf)
        })
        .collect();
    let answered = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let answered = &answered;
        s.spawn(move || {
            while answered.load(Ordering::SeqCst) < after {
                std::thread::sleep(Duration::from_millis(5));
            }
            fault();
        });
        let handles: Vec<_> = confs
            .iter()
            .flat_map(|(node, conf)| (0..pods).map(move |i| (node, conf, i)))
            .map(|(node, conf, i)| {
                s.spawn(move || {
                    let id = format!("{node}-{i}");
                    let out = net.run_conf(&Call::attach("ADD", &id), conf);
                    answered.fetch_add(1, Ordering::SeqCst);
                    (id, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The bar for a burst: every ADD succeeded, with distinct addresses, and
/// etcd holds exactly those leases; then a DEL of every pod leaves nothing.
pub(crate) fn assert_burst_held(cluster: &Cluster, net: &Net, outcomes: &[(String, Outcome)]) {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| !o.ok())
        .map(|(id, o)| format!("{id}: {}", o.stdout.trim()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} ADDs failed:\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
    let mut given = BTreeSet::new();
    for (id, out) in outcomes {
        let addr = out.json()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string();
        let ip: IpAddr = addr.split('/').next().unwrap().parse().unwrap();
        assert!(given.insert(ip), "{ip} given twice ({id})");
    }
    let store = EtcdStore::connect(&conf(cluster), None).unwrap();
    let leases = assert_consistent(&dump_store(&store, "cluster"));
    let held: BTreeSet<&String> = leases.values().collect();
    let added: BTreeSet<&String> = outcomes.iter().map(|(id, _)| id).collect();
    assert_eq!(held, added, "the leases in etcd are the successful ADDs");
    assert_eq!(leases.keys().copied().collect::<BTreeSet<_>>(), given);
    // Each pod's DEL, from its node.
    for (id, _) in outcomes {
        let node = id.rsplit_once('-').unwrap().0;
        let mut conf = net.conf.clone();
        conf["ipam"]["node"] = json!(node);
        let out = net.run_conf(&Call::attach("DEL", id), &conf);
        assert!(out.ok(), "DEL {id}: {} {}", out.stdout, out.stderr);
    }
    let left = assert_consistent(&dump_store(&store, "cluster"));
    assert!(left.is_empty(), "a DEL of every pod left {left:?}");
}

pub(crate) fn cluster_net(cluster: &Cluster) -> Net {
    pooled_on(ipam_store(cluster, TIMEOUT_MS), "node-00")
}

#[test]
fn the_leader_killed_mid_burst_fails_no_pod() {
    if !etcd_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let net = cluster_net(&cluster);
    let leader = cluster.leader();
    let members = std::sync::Mutex::new(&mut cluster);
    // 20 nodes x 10 pods. Before failover the issue measured 8 of 200
    // ADDs succeeding; this test, with each transient error ending the
    // call, saw 37 of 200.
    let outcomes = burst(&net, 20, 10, 30, || members.lock().unwrap().kill(leader));
    let cluster = members.into_inner().unwrap();
    assert!(
        cluster.members[leader].child.is_none(),
        "the leader was killed"
    );
    assert_burst_held(cluster, &net, &outcomes);
}

#[test]
fn a_follower_killed_or_restarted_mid_burst_fails_no_pod() {
    if !etcd_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let net = cluster_net(&cluster);
    let follower = (cluster.leader() + 1) % 3;
    let members = std::sync::Mutex::new(&mut cluster);
    let outcomes = burst(&net, 10, 10, 20, || members.lock().unwrap().kill(follower));
    let cluster = members.into_inner().unwrap();
    assert_burst_held(cluster, &net, &outcomes);
    // The member comes back, as after an upgrade, while another burst runs.
    let members = std::sync::Mutex::new(&mut *cluster);
    let outcomes = burst(&net, 10, 10, 20, || members.lock().unwrap().spawn(follower));
    let cluster = members.into_inner().unwrap();
    assert_burst_held(cluster, &net, &outcomes);
}

#[test]
fn without_a_quorum_a_call_is_try_again_naming_etcd_and_nothing_is_half_written() {
    if !etcd_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let net = pooled_on(ipam_store(&cluster, 2000), "node-00");
    assert!(net.add("before").ok());
    let leader = cluster.leader();
    cluster.kill(leader);
    cluster.kill((leader + 1) % 3);
    let started = Instant::now();
    let out = net.add("no-quorum");
    assert_error(&out, 11, "etcd at");
    // A generous bound on the budget, to show the call ends (it would hang
    // otherwise), not how fast.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a call without a quorum must end near its timeout"
    );
    cluster.spawn(leader);
    cluster.spawn((leader + 1) % 3);
    cluster.wait_serving();
    let store = EtcdStore::connect(&conf(&cluster), None).unwrap();
    let leases = assert_consistent(&dump_store(&store, "cluster"));
    let held: Vec<&String> = leases.values().collect();
    assert_eq!(held, ["before"], "the failed call holds nothing");
    assert!(net.add("after").ok(), "the cluster serves again");
}

#[test]
fn the_leader_partitioned_away_mid_burst_fails_no_pod() {
    if !etcd_available() {
        return;
    }
    let Some(cluster) = Cluster::start_partitionable(3) else {
        eprintln!("skipped: making namespaces needs root");
        return;
    };
    let net = cluster_net(&cluster);
    let leader = cluster.leader();
    // The old leader keeps serving clients until it sees it lost the
    // quorum; a call that reaches it must fail over to the majority.
    let outcomes = burst(&net, 10, 10, 20, || cluster.partition(leader));
    assert_burst_held(&cluster, &net, &outcomes);
    cluster.heal(leader);
    cluster.wait_serving();
    assert!(net.add("healed").ok(), "the healed cluster serves");
}
