//! The dhcp policy's leases go the ways every policy's do: CNI GC and
//! `wasm-ipam gc`, the reclaim after a reboot, and `wasm-ipam
//! release-node`, against a real dnsmasq. The store lets each lease go; the server is told only where
//! this node, in this boot, can still reach the interface, and otherwise
//! its lease lapses by itself.

use cni::exec::{self, Call};
use serde_json::json;
use wasm_ipam::envvars::{BOOT_ID, SOCKET};

use crate::common::plugin;
use crate::dhcp_policy::{Site, address, available};

#[test]
fn gc_the_reclaim_after_a_reboot_and_release_node_let_dhcp_leases_go() {
    if !available() {
        return;
    }
    let site = Site::new(&[]);
    let conf = site.conf(json!({}));
    let socket = site.socket().display().to_string();
    let in_boot = |call: Call, boot: &str| call.env(BOOT_ID, boot);
    let add = |pod: &crate::dhcp_policy::Pod, boot: &str, conf: &serde_json::Value| {
        let out = site.run(in_boot(pod.call("ADD"), boot), conf);
        assert!(out.ok(), "ADD {}: {} {}", pod.id, out.stdout, out.stderr);
        address(&out.json())
    };
    let (p1, p2, p5) = (
        site.pod("c1", None),
        site.pod("c2", None),
        site.pod("c5", None),
    );
    let (ip1, ip2) = (add(&p1, "boot-1", &conf), add(&p2, "boot-1", &conf));
    let ip5 = add(&p5, "boot-1", &conf);

    // GC, straight to the IPAM plugin (macvlan 1.1.1 has no GC): c1 is not
    // in use any more. Its namespace is still there, so it is released at
    // the server too.
    let mut gc = conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "c2", "ifname": "net1"},
        {"containerID": "c5", "ifname": "net1"},
    ]);
    let call = Call::new("GC").env(BOOT_ID, "boot-1").env(SOCKET, &socket);
    let out = exec::run(plugin(), &call, gc.to_string().as_bytes()).unwrap();
    assert!(out.ok(), "GC: {} {}", out.stdout, out.stderr);
    assert!(!site.net.leased().contains(&ip1));
    assert!(
        site.server.settles(&ip1, true, 5),
        "dnsmasq still leases {ip1}"
    );
    // The operator's `wasm-ipam gc`, on the node, in the same boot: c5 goes,
    // at the server too.
    let valid = site.net.dir.path().join("valid.json");
    std::fs::write(
        &valid,
        json!([{"containerID": "c2", "ifname": "net1"}]).to_string(),
    )
    .unwrap();
    let valid = valid.to_str().unwrap();
    site.tool(
        &[
            "gc",
            "--network",
            crate::dhcp_policy::NETWORK,
            "--valid",
            valid,
        ],
        Some("boot-1"),
    );
    assert_eq!(site.net.leased(), std::slice::from_ref(&ip2));
    assert!(
        site.server.settles(&ip5, true, 5),
        "dnsmasq still leases {ip5}"
    );

    // The node reboots: its first call releases c2, made in the earlier
    // boot. That namespace is gone with the boot, so the server is not
    // told; its lease lapses by itself.
    let p3 = site.pod("c3", None);
    let ip3 = add(&p3, "boot-2", &conf);
    assert_eq!(site.net.leased(), std::slice::from_ref(&ip3));
    assert!(site.host_keys("release").is_empty());
    assert!(site.server.line(&ip2).is_some(), "told to release {ip2}");

    // A node that left the cluster: its leases go from the store, and its
    // interfaces are not this node's to release from.
    let mut elsewhere = conf.clone();
    elsewhere["ipam"]["node"] = json!("node-gone");
    let p4 = site.pod("c4", None);
    let ip4 = add(&p4, "boot-2", &elsewhere);
    site.tool(&["release-node", "node-gone"], Some("boot-2"));
    assert_eq!(site.net.leased(), [ip3]);
    for section in ["lease", "release"] {
        let keys = site.host_keys(section);
        assert!(
            keys.iter().all(|k| !k.starts_with("c4/")),
            "{section}: {keys:?}"
        );
    }
    assert!(
        site.server.line(&ip4).is_some(),
        "released from another node"
    );
}
