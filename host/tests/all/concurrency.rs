//! Concurrent CNI processes on one node: the normal case on a busy node.

use std::collections::BTreeSet;

use cni::exec::{Call, Outcome};
use serde_json::{Value, json};

use crate::common::Net;

/// Starts `n` ADDs at once, each in its own process, and waits for all.
fn concurrent_adds(net: &Net, ids: impl Iterator<Item = String>) -> Vec<cni::exec::Outcome> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ids.map(|id| s.spawn(move || net.add(&id))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_adds_never_share_an_address() {
    let net = Net::host_local("1.0.0", "10.3.0.0/24");
    net.add_ip("warm-up");
    let outs = concurrent_adds(&net, (0..32).map(|i| format!("c{i}")));
    let mut seen = BTreeSet::new();
    for out in &outs {
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
        let ip = out.json()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
    }
    assert_eq!(net.leased().len(), 33, "every ADD has its reservation");
}

#[test]
fn concurrent_adds_past_exhaustion_fail_cleanly() {
    let net = Net::host_local("1.0.0", "10.4.0.0/29");
    net.add_ip("warm-up");
    let outs = concurrent_adds(&net, (0..10).map(|i| format!("c{i}")));
    let ok: Vec<_> = outs.iter().filter(|o| o.ok()).collect();
    assert_eq!(ok.len(), 4, "five addresses, one taken before");
    for out in outs.iter().filter(|o| !o.ok()) {
        assert_eq!(out.error_code(), Some(11), "{}", out.stdout);
    }
    let addrs: BTreeSet<_> = ok
        .iter()
        .map(|o| o.json()["ips"][0]["address"].to_string())
        .collect();
    assert_eq!(addrs.len(), 4);
    assert_eq!(net.leased().len(), 5);
}

#[test]
fn the_first_pods_on_a_fresh_node_create_the_store_together() {
    // No warm-up: every process finds no database and sets it up at once.
    for round in 0..3 {
        let net = Net::host_local("1.0.0", "10.5.0.0/24");
        let outs = concurrent_adds(&net, (0..24).map(|i| format!("c{i}")));
        for out in &outs {
            assert!(out.ok(), "round {round}: {} {}", out.stdout, out.stderr);
        }
        assert_eq!(net.leased().len(), 24);
    }
}

#[test]
fn the_first_pods_after_an_upgrade_switch_a_wal_store_together() {
    // An older version left the store in WAL mode; leaving it needs the
    // only connection, and the first pods after the upgrade all open it.
    let net = Net::host_local("1.0.0", "10.6.0.0/24");
    net.add_ip("before");
    let db = net.data_dir().join("wasm-ipam.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "journal_mode", "WAL")
        .unwrap();
    let outs = concurrent_adds(&net, (0..24).map(|i| format!("c{i}")));
    for out in &outs {
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    }
    assert_eq!(net.leased().len(), 25, "the old lease and every new one");
    // Calls that found others on the WAL joined it; the first call alone
    // switches it, if none of the burst did.
    net.add_ip("after");
    let mode: String = rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "no longer WAL");
}

/// Runs every (conf, call) at once, each in its own process; the answers
/// come back in the order of the calls.
fn concurrently(net: &Net, calls: Vec<(Value, Call)>) -> Vec<(Call, Outcome)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = calls
            .into_iter()
            .map(|(conf, call)| s.spawn(move || (call.clone(), net.run_conf(&call, &conf))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Checks a round of concurrent ADDs: each succeeded or asked to try again
/// (code 11), no address went to two containers, and each success has its
/// reservation in the store.
fn check_adds(net: &Net, outs: &[(Call, Outcome)], network: &str) -> usize {
    let dump = net.store_dump_of(network);
    let mut seen = BTreeSet::new();
    let mut ok = 0;
    for (call, out) in outs {
        if !out.ok() {
            assert_eq!(out.error_code(), Some(11), "{}", out.stdout);
            continue;
        }
        ok += 1;
        let id = call.container_id.as_deref().unwrap();
        for ip in out.json()["ips"].as_array().unwrap() {
            let addr = ip["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string();
            assert!(seen.insert(addr.clone()), "{addr} handed out twice");
            let lease = dump
                .iter()
                .find(|(k, _)| *k == format!("lease/{addr}"))
                .expect("a reservation");
            let lease: Value = serde_json::from_slice(&lease.1).unwrap();
            assert_eq!(lease["containerId"], id);
        }
    }
    ok
}

fn load_round_trip(ipam: Value) {
    let net = Net::with_ipam("1.0.0", ipam);
    for round in 0..2 {
        let adds = (0..64)
            .map(|i| {
                (
                    net.conf.clone(),
                    Call::attach("ADD", &format!("r{round}-c{i}")),
                )
            })
            .collect();
        let outs = concurrently(&net, adds);
        assert_eq!(
            check_adds(&net, &outs, "testnet"),
            64,
            "a /24 has room for all 64"
        );
        let dels = (0..64)
            .map(|i| {
                (
                    net.conf.clone(),
                    Call::attach("DEL", &format!("r{round}-c{i}")),
                )
            })
            .collect();
        for (_, out) in concurrently(&net, dels) {
            assert!(out.ok(), "{}", out.stdout);
        }
        let left: Vec<String> = net
            .store_dump()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("lease/") || k.starts_with("owner/"))
            .collect();
        assert!(left.is_empty(), "round {round}: DEL left {left:?}");
    }
}

#[test]
fn sixty_four_processes_host_local() {
    load_round_trip(json!({"policy": "host-local", "ranges": [[{"subnet": "10.93.0.0/24"}]]}));
}

#[test]
fn sixty_four_processes_pooled() {
    load_round_trip(
        json!({"policy": "pooled", "pools": [{"name": "p", "cidr": "10.94.0.0/24", "blockSize": 28}]}),
    );
}

#[test]
fn sixty_four_processes_sticky() {
    load_round_trip(
        json!({"policy": "sticky", "holdSeconds": 0, "ranges": [[{"subnet": "10.95.0.0/24"}]]}),
    );
}

#[test]
fn two_networks_and_two_nodes_share_one_store() {
    let net = Net::with_ipam(
        "1.0.0",
        json!({"policy": "pooled", "pools": [{"name": "p", "cidr": "10.96.0.0/24", "blockSize": 28}]}),
    );
    let networks = ["net-a", "net-b"];
    let calls = |command: &str, round: u32| {
        let mut calls = Vec::new();
        for network in networks {
            for node in ["node-a", "node-b"] {
                let mut conf = net.conf.clone();
                conf["name"] = json!(network);
                conf["ipam"]["node"] = json!(node);
                for i in 0..16 {
                    calls.push((
                        conf.clone(),
                        Call::attach(command, &format!("r{round}-{node}-{i}")),
                    ));
                }
            }
        }
        calls
    };
    for round in 0..2 {
        let outs = concurrently(&net, calls("ADD", round));
        // The calls were made network by network, 32 each.
        for (network, outs) in networks.iter().zip(outs.chunks(32)) {
            assert_eq!(check_adds(&net, outs, network), 32, "{network}");
        }
        for (_, out) in concurrently(&net, calls("DEL", round)) {
            assert!(out.ok(), "{}", out.stdout);
        }
        let left: Vec<String> = net
            .store_dump()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("lease/"))
            .collect();
        assert!(left.is_empty(), "round {round}: DEL left {left:?}");
    }
}
