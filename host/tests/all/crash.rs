//! SIGKILL at every point of ADD, DEL and GC: at each store call of the
//! policy, just before the commit and just after it. After each kill the
//! store holds the whole invocation or none of it, no address is handed out
//! twice, and GC can reclaim everything.

use std::collections::BTreeSet;

use cni::exec::{Call, Outcome};
use serde_json::{Value, json};

use crate::common::Net;

const CRASH: &str = wasm_ipam::envvars::TEST_CRASH_AT;

fn killed(out: &Outcome) -> bool {
    out.code.is_none()
}

fn gc_conf(net: &Net, valid: &[&str]) -> Value {
    let mut c = net.conf.clone();
    c["cni.dev/valid-attachments"] = json!(
        valid
            .iter()
            .map(|id| json!({"containerID": id, "ifname": "eth0"}))
            .collect::<Vec<_>>()
    );
    c
}

/// Kills `call` at commit and at every store call until it completes;
/// every kill must leave the store exactly as it was. Returns how many
/// kill points there were.
fn kill_everywhere(net: &Net, call: &Call, conf: &Value, what: &str) -> u32 {
    let policy = net.conf["ipam"]["policy"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = net.store_dump();
    let out = net.run_conf(&call.clone().env(CRASH, "commit"), conf);
    assert!(
        killed(&out),
        "{what}: the commit hook did not fire: {out:?}"
    );
    assert_eq!(
        net.store_dump(),
        before,
        "{what}: a kill before commit changed the store"
    );
    for n in 1.. {
        let out = net.run_conf(&call.clone().env(CRASH, &format!("call:{n}")), conf);
        if !killed(&out) {
            assert!(out.ok(), "{what}: completed with an error: {}", out.stdout);
            // Shown with --nocapture; docs/reliability.md quotes these.
            eprintln!(
                "{policy} {what}: killed at commit and at each of {} store calls",
                n - 1
            );
            return n;
        }
        assert_eq!(
            net.store_dump(),
            before,
            "{what}: killed at store call {n}, the store changed"
        );
    }
    unreachable!()
}

fn crash_lifecycle(ipam: Value) {
    let net = Net::with_ipam("1.1.0", ipam);
    for id in ["a", "b"] {
        assert!(net.add(id).ok());
    }
    let points = kill_everywhere(&net, &Call::attach("ADD", "c"), &net.conf, "ADD");
    assert!(points > 3, "ADD made only {points} store calls");
    kill_everywhere(&net, &Call::attach("DEL", "a"), &net.conf, "DEL");
    kill_everywhere(&net, &Call::new("GC"), &gc_conf(&net, &["b"]), "GC");

    // Killed after the commit: the allocation stands, though the runtime
    // never saw it; its DEL releases it.
    let before: BTreeSet<String> = net.leased().into_iter().collect();
    let out = net.run(&Call::attach("ADD", "d").env(CRASH, "after-commit"));
    assert!(killed(&out));
    let after: BTreeSet<String> = net.leased().into_iter().collect();
    let new: Vec<&String> = after.difference(&before).collect();
    let owned_by_d = net
        .store_dump()
        .iter()
        .filter(|(k, _)| k.starts_with("owner/d/eth0/"))
        .count();
    assert!(
        !new.is_empty() && new.len() == owned_by_d,
        "the committed ADD is whole: {new:?}"
    );
    assert!(net.run(&Call::attach("DEL", "d")).ok());

    // Nothing held is handed out again, and GC reclaims everything.
    let held: BTreeSet<String> = net.leased().into_iter().collect();
    let fresh = net.add("e").json();
    let addr = fresh["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(!held.contains(&addr), "{addr} was handed out while held");
    assert!(net.run_conf(&Call::new("GC"), &gc_conf(&net, &[])).ok());
    assert!(net.leased().is_empty(), "GC left {:?}", net.leased());
}

#[test]
fn host_local_is_all_or_nothing_at_every_kill_point() {
    crash_lifecycle(
        json!({"policy": "host-local", "ranges": [[{"subnet": "10.90.0.0/29"}], [{"subnet": "fd00:90::/120"}]]}),
    );
}

#[test]
fn pooled_is_all_or_nothing_at_every_kill_point() {
    crash_lifecycle(json!({"policy": "pooled", "cooldownSeconds": 0,
                           "pools": [{"name": "p", "cidr": "10.91.0.0/28", "blockSize": 30}]}));
}

#[test]
fn sticky_is_all_or_nothing_at_every_kill_point() {
    crash_lifecycle(
        json!({"policy": "sticky", "holdSeconds": 0, "ranges": [[{"subnet": "10.92.0.0/29"}]]}),
    );
}
