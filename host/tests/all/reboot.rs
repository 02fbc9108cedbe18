//! Reclaim after reboot, faked with `WASM_IPAM_BOOT_ID`: the first call of
//! a new boot releases, with the network's own policy, every attachment
//! this node made in an earlier boot, once, and never one of the current
//! boot, however many first calls race.

use cni::exec::{Call, Outcome};
use serde_json::json;

use crate::common::{Net, assert_error};

fn in_boot(call: Call, boot: &str) -> Call {
    call.env("WASM_IPAM_BOOT_ID", boot)
}

fn add(net: &Net, id: &str, boot: &str) -> Outcome {
    let out = net.run(&in_boot(Call::attach("ADD", id), boot));
    assert!(out.ok(), "ADD {id}: {} {}", out.stdout, out.stderr);
    out
}

/// The containers holding leases, from the kit's owner index.
fn holders(net: &Net) -> Vec<String> {
    let mut v: Vec<String> = net
        .store_dump()
        .into_iter()
        .filter_map(|(k, _)| {
            k.strip_prefix("owner/")
                .map(|o| o.split('/').next().unwrap().to_string())
        })
        .collect();
    v.sort();
    v
}

fn released(out: &Outcome) -> Vec<String> {
    out.stderr
        .lines()
        .filter_map(|l| l.split("reclaim after reboot: released ").nth(1))
        .map(|rest| rest.split('/').next().unwrap().to_string())
        .collect()
}

#[test]
fn the_first_call_of_a_new_boot_releases_the_earlier_boots_attachments() {
    let net = Net::host_local("1.0.0", "10.140.0.0/24");
    for id in ["c1", "c2", "c3"] {
        add(&net, id, "boot-a");
    }
    assert!(net.run(&in_boot(Call::attach("DEL", "c2"), "boot-a")).ok());
    let first = add(&net, "c4", "boot-b");
    assert_eq!(released(&first), ["c1", "c3"], "{}", first.stderr);
    assert!(first.stderr.contains("(boot boot-a)"), "{}", first.stderr);
    assert_eq!(holders(&net), ["c4"]);
    // The reclaim is done: the next call of the boot releases nothing.
    let second = add(&net, "c5", "boot-b");
    assert!(released(&second).is_empty(), "{}", second.stderr);
    assert_eq!(holders(&net), ["c4", "c5"]);
    // Any command is a first call: a DEL of something unknown too.
    let del = net.run(&in_boot(Call::attach("DEL", "nobody"), "boot-c"));
    assert!(del.ok());
    assert_eq!(released(&del), ["c4", "c5"]);
    assert!(holders(&net).is_empty());
}

#[test]
fn racing_first_calls_reclaim_once_and_never_the_current_boot() {
    let net = Net::host_local("1.0.0", "10.141.0.0/24");
    for i in 0..8 {
        add(&net, &format!("old{i}"), "boot-a");
    }
    let burst = |prefix: &str, boot: &str| -> Vec<Outcome> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (net, id) = (&net, format!("{prefix}{i}"));
                    s.spawn(move || net.run(&in_boot(Call::attach("ADD", &id), boot)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let outs = burst("new", "boot-b");
    assert!(
        outs.iter().all(Outcome::ok),
        "{:?}",
        outs.iter().map(|o| &o.stdout).collect::<Vec<_>>()
    );
    let mut all: Vec<String> = outs.iter().flat_map(released).collect();
    all.sort();
    let old: Vec<String> = (0..8).map(|i| format!("old{i}")).collect();
    assert_eq!(all, old, "each old attachment released exactly once");
    let new: Vec<String> = (0..8).map(|i| format!("new{i}")).collect();
    assert_eq!(holders(&net), new);
    // More first calls of the same boot, racing: nothing of it is touched.
    let again = burst("more", "boot-b");
    assert!(again.iter().all(|o| o.ok() && released(o).is_empty()));
    assert_eq!(holders(&net).len(), 16);
}

#[test]
fn sticky_keeps_its_holds_across_a_reboot() {
    let net = Net::with_ipam(
        "1.0.0",
        json!({"policy": "sticky", "ranges": [[{"subnet": "10.142.0.0/29"}]], "holdSeconds": 600}),
    );
    let pod = |id: &str, name: &str, boot: &str, t: u64| {
        let call = Call::attach("ADD", id)
            .args(&format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME={name}"
            ))
            .env("WASM_IPAM_NOW", &t.to_string());
        net.run(&in_boot(call, boot))
    };
    let addr = |o: &Outcome| o.json()["ips"][0]["address"].as_str().unwrap().to_string();
    assert_eq!(addr(&pod("c1", "pg-0", "boot-a", 1000)), "10.142.0.2/29");
    let other = pod("c2", "other", "boot-b", 1100);
    assert_eq!(released(&other), ["c1"]);
    assert_eq!(addr(&other), "10.142.0.3/29", "pg-0's address is held");
    assert_eq!(
        addr(&pod("c3", "pg-0", "boot-b", 1200)),
        "10.142.0.2/29",
        "pg-0 gets it back"
    );
}

#[test]
fn reclaim_after_reboot_can_be_turned_off() {
    let mut net = Net::host_local("1.0.0", "10.143.0.0/24");
    net.conf["ipam"]["reclaimAfterReboot"] = json!(false);
    add(&net, "c1", "boot-a");
    let out = add(&net, "c2", "boot-b");
    assert!(released(&out).is_empty());
    assert_eq!(holders(&net), ["c1", "c2"]);
    // Turned on again: the records were kept, so it works.
    net.conf["ipam"]["reclaimAfterReboot"] = json!(true);
    let out = add(&net, "c3", "boot-c");
    assert_eq!(released(&out), ["c1", "c2"]);
    net.conf["ipam"]["reclaimAfterReboot"] = json!("yes");
    assert_error(
        &net.run(&Call::attach("ADD", "c4")),
        7,
        "ipam.reclaimAfterReboot must be true or false",
    );
}
