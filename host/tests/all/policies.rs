//! The pooled and sticky policies through the real binary: whole
//! lifecycles, several nodes on one store, and switching a network's policy
//! by changing only its config.

use std::collections::{BTreeMap, BTreeSet};

use cni::exec::{Call, Outcome};
use serde_json::{Value, json};

use crate::common::{Net, assert_error};

fn pod(id: &str, ns: &str, name: &str) -> Call {
    Call::attach("ADD", id).args(&format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}"
    ))
}

fn addr(out: &Outcome) -> String {
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    out.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

fn pooled(node: &str) -> Value {
    json!({"policy": "pooled", "node": node,
           "pools": [{"name": "main", "cidr": "10.44.0.0/24", "blockSize": 28, "gateway": "10.44.0.254"},
                     {"name": "v6", "cidr": "fd00:44::/64"}]})
}

#[test]
fn pooled_lifecycle_dual_stack_blocks_and_status() {
    let net = Net::with_ipam("1.1.0", pooled("node-a"));
    let out = net.run(&pod("c1", "default", "web-0"));
    let v = out.json();
    // node-a claims from a point of each pool that depends on its name:
    // block 3 of the 16 IPv4 blocks, and one of the 2^58 IPv6 ones.
    assert_eq!(
        v["ips"][0],
        json!({"address": "10.44.0.48/24", "gateway": "10.44.0.254"})
    );
    assert_eq!(
        v["ips"][1],
        json!({"address": "fd00:44::a5c7:3088:1e32:d4c0/64"})
    );
    assert_eq!(
        addr(&net.run(&pod("c2", "default", "web-1"))),
        "10.44.0.49/24"
    );
    assert!(net.run(&Call::attach("DEL", "c1")).ok());
    assert_eq!(
        addr(&net.run(&pod("c3", "default", "web-0"))),
        "10.44.0.48/24",
        "lowest free of the block again"
    );
    let blocks: Vec<String> = net
        .store_dump()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("block/"))
        .collect();
    assert_eq!(blocks.len(), 2, "one IPv4 and one IPv6 block: {blocks:?}");
    assert!(net.run(&Call::new("STATUS")).ok());
    let mut c = net.conf.clone();
    c["args"] = json!({"cni": {"pool": "missing"}});
    assert_error(
        &net.run_conf(&Call::attach("ADD", "c9"), &c),
        7,
        "unknown pool \"missing\"",
    );
}

#[test]
fn two_nodes_on_one_store_never_collide_and_keep_to_their_blocks() {
    let a = Net::with_ipam("1.0.0", pooled("node-a"));
    let mut b_conf = a.conf.clone();
    b_conf["ipam"]["node"] = json!("node-b");
    let outs: Vec<(String, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let (node, conf) = if i % 2 == 0 {
                    ("node-a", &a.conf)
                } else {
                    ("node-b", &b_conf)
                };
                let a = &a;
                s.spawn(move || {
                    (
                        node.to_string(),
                        a.run_conf(&Call::attach("ADD", &format!("{node}-c{i}")), conf),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = BTreeSet::new();
    let mut blocks_of: BTreeMap<String, BTreeSet<u8>> = BTreeMap::new();
    for (node, out) in &outs {
        let ip = addr(out);
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
        let last: u8 = ip
            .split('/')
            .next()
            .unwrap()
            .rsplit('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        blocks_of.entry(node.clone()).or_default().insert(last / 16);
    }
    let (ba, bb) = (&blocks_of["node-a"], &blocks_of["node-b"]);
    assert!(
        ba.is_disjoint(bb),
        "each node allocates from its own blocks: {ba:?} {bb:?}"
    );
    // The store agrees: every block is owned by the node that used it.
    for (k, v) in a
        .store_dump()
        .into_iter()
        .filter(|(k, _)| k.starts_with("block/main/"))
    {
        let block: Value = serde_json::from_slice(&v).unwrap();
        let index = u8::from_str_radix(k.rsplit('/').next().unwrap(), 16).unwrap();
        let owner = block["node"].as_str().unwrap();
        assert!(blocks_of[owner].contains(&index), "{k} owned by {owner}");
    }
}

fn sticky() -> Value {
    json!({"policy": "sticky", "ranges": [[{"subnet": "10.66.0.0/29"}]], "holdSeconds": 600})
}

#[test]
fn sticky_keeps_a_workloads_address_across_containers_for_its_hold() {
    let net = Net::with_ipam("1.0.0", sticky());
    let at = |call: Call, t: u64| net.run(&call.env("WASM_IPAM_NOW", &t.to_string()));
    assert_eq!(addr(&at(pod("c1", "db", "pg-0"), 1000)), "10.66.0.2/29");
    assert_eq!(addr(&at(pod("c2", "db", "pg-1"), 1000)), "10.66.0.3/29");
    assert_error(
        &at(pod("c1b", "db", "pg-0"), 1000),
        100,
        "already attached as container c1",
    );
    assert!(at(Call::attach("DEL", "c1"), 1100).ok());
    assert_eq!(
        addr(&at(pod("c3", "db", "other"), 1200)),
        "10.66.0.4/29",
        "pg-0's address is held"
    );
    assert_eq!(
        addr(&at(pod("c4", "db", "pg-0"), 1300)),
        "10.66.0.2/29",
        "pg-0 is back, new container"
    );
}

#[test]
fn switching_a_network_from_host_local_to_sticky_needs_only_the_config() {
    let net = Net::with_ipam(
        "1.0.0",
        json!({"policy": "host-local", "ranges": [[{"subnet": "10.67.0.0/29"}]]}),
    );
    assert_eq!(addr(&net.run(&pod("c1", "ns", "a"))), "10.67.0.2/29");
    assert_eq!(addr(&net.run(&pod("c2", "ns", "b"))), "10.67.0.3/29");
    let mut conf = net.conf.clone();
    conf["ipam"]["policy"] = json!("sticky");
    // Sticky sees host-local's leases: nothing is handed out twice.
    assert_eq!(
        addr(&net.run_conf(&pod("c3", "ns", "c"), &conf)),
        "10.67.0.4/29"
    );
    assert!(
        net.run_conf(&Call::attach("DEL", "c1"), &conf).ok(),
        "sticky releases host-local's lease"
    );
    assert!(net.run_conf(&Call::attach("DEL", "c3"), &conf).ok());
    // A new workload goes on round robin from sticky's cursor (.4).
    assert_eq!(
        addr(&net.run_conf(&pod("c4", "ns", "d"), &conf)),
        "10.67.0.5/29"
    );
    assert_eq!(
        addr(&net.run_conf(&pod("c5", "ns", "c"), &conf)),
        "10.67.0.4/29",
        "c's address was held"
    );
}
