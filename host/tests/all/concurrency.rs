//! Concurrent CNI processes on one node: the normal case on a busy node.

use std::collections::BTreeSet;

use crate::common::Net;

/// Starts `n` ADDs at once, each in its own process, and waits for all.
fn concurrent_adds(
    net: &Net,
    ids: impl Iterator<Item = String>,
) -> Vec<cni_conformance::exec::Outcome> {
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
