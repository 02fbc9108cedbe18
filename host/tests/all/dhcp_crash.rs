//! The dhcp policy's calls killed at each step, through macvlan against a
//! real dnsmasq: the store and the server stay in step, and the runtime's
//! next call (its DEL after a failed ADD, its retry of a failed DEL) puts
//! everything right. The order the host keeps (`wit/ipam.wit`, `dhcp`):
//!
//! - ADD: the exchange, then the commit. Killed before the commit, the
//!   store holds nothing and the server a lease no one renews; the retried
//!   ADD, under the same client id, gets that very lease. Killed after,
//!   the store holds it all, and the runtime's DEL releases it.
//! - DEL: the commit (the lease into the outbox), then the RELEASE, then
//!   the outbox emptied. Killed before the commit, nothing changed; after
//!   it, the retried DEL sends the RELEASE; after the RELEASE, the retry
//!   sends it again, which a server ignores. A RELEASE left over is never
//!   sent once the same client id is held again.

use serde_json::json;
use wasm_ipam::envvars::TEST_CRASH_AT;

use crate::dhcp_policy::{Pod, Site, address, available};

/// dnsmasq's lease-file client id for an unnamed attachment: the
/// reference's `<container id>/<network>/<ifname>`, type 0 first.
fn client_id(container_id: &str) -> String {
    format!("\0{container_id}/sitenet/net1")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The address dnsmasq leases to `container_id`'s client id, if any.
fn leased_to(site: &Site, container_id: &str) -> Option<String> {
    let text = std::fs::read_to_string(&site.server.leases).unwrap();
    let id = client_id(container_id);
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(4) == Some(&id.as_str()))
        .map(|f| f[2].to_string())
}

fn killed_at(site: &Site, pod: &Pod, command: &str, point: &str, conf: &serde_json::Value) {
    let out = site.run(pod.call(command).env(TEST_CRASH_AT, point), conf);
    assert!(
        !out.ok(),
        "{command} killed at {point} succeeded: {}",
        out.stdout
    );
}

#[test]
fn an_add_killed_before_or_after_its_commit_keeps_the_store_and_the_server_in_step() {
    if !available() {
        return;
    }
    let site = Site::new(&[]);
    let conf = site.conf(json!({}));
    // Killed between the exchange and the commit.
    let a = site.pod("c1", None);
    killed_at(&site, &a, "ADD", "commit", &conf);
    assert!(site.net.leased().is_empty());
    assert!(site.host_keys("lease").is_empty());
    let orphan = leased_to(&site, "c1").expect("the server leased it");
    // The runtime's DEL after the failed ADD, then its retry of the ADD:
    // the same client id, the same lease.
    assert!(site.del(&a, &conf).ok());
    assert_eq!(address(&site.add(&a, &conf)), orphan);
    assert_eq!(site.net.leased(), std::slice::from_ref(&orphan));
    // Killed just after the commit: all of it is there, and the runtime's
    // DEL releases it, in the store and at the server (broadcast: the
    // failed ADD's interface never got the address).
    let b = site.pod("c2", None);
    killed_at(&site, &b, "ADD", "after-commit", &conf);
    let ip = leased_to(&site, "c2").expect("the server leased it");
    assert!(site.net.leased().contains(&ip));
    assert!(site.host_keys("lease").contains(&"c2/net1".to_string()));
    assert!(site.del(&b, &conf).ok());
    assert_eq!(site.net.leased(), [orphan]);
    assert!(
        site.server.settles(&ip, true, 5),
        "dnsmasq still leases {ip}"
    );
}

#[test]
fn a_del_killed_at_each_step_releases_once_the_runtime_retries_it() {
    if !available() {
        return;
    }
    let site = Site::new(&[]);
    let conf = site.conf(json!({}));
    // Before the commit: nothing changed, at the server or in the store.
    let a = site.pod("c1", None);
    let ip = address(&site.add(&a, &conf));
    killed_at(&site, &a, "DEL", "commit", &conf);
    assert!(site.net.leased().contains(&ip));
    assert!(site.server.line(&ip).is_some());
    assert!(site.del(&a, &conf).ok());
    assert!(
        site.server.settles(&ip, true, 5),
        "dnsmasq still leases {ip}"
    );
    // After the commit, before the RELEASE: the store let it go, and the
    // RELEASE waits in the outbox for the runtime's retry.
    let b = site.pod("c2", None);
    let ip = address(&site.add(&b, &conf));
    killed_at(&site, &b, "DEL", "after-commit", &conf);
    assert!(!site.net.leased().contains(&ip));
    assert_eq!(site.host_keys("release"), ["c2/net1"]);
    assert!(site.server.settles(&ip, false, 1), "released too early");
    assert!(site.del(&b, &conf).ok());
    assert!(site.host_keys("release").is_empty());
    assert!(
        site.server.settles(&ip, true, 5),
        "dnsmasq still leases {ip}"
    );
    // After the RELEASE, before the outbox was emptied: the retry sends it
    // once more, and empties it.
    let c = site.pod("c3", None);
    let ip = address(&site.add(&c, &conf));
    killed_at(&site, &c, "DEL", "after-release", &conf);
    assert!(
        site.server.settles(&ip, true, 5),
        "dnsmasq still leases {ip}"
    );
    assert_eq!(site.host_keys("release"), ["c3/net1"]);
    assert!(site.del(&c, &conf).ok());
    assert!(site.host_keys("release").is_empty());
}

#[test]
fn a_release_left_by_a_crash_never_ends_the_lease_of_the_pod_that_came_back() {
    if !available() {
        return;
    }
    let site = Site::new(&[]);
    let conf = site.conf(json!({"release": "always"}));
    let old = site.pod("c1", Some("web-0"));
    let ip = address(&site.add(&old, &conf));
    killed_at(&site, &old, "DEL", "after-commit", &conf);
    assert_eq!(site.host_keys("release"), ["c1/net1"]);
    // The pod is re-created before the runtime retries the old DEL: the
    // server still leases its client id, so it gets the same address.
    let new = site.pod("c2", Some("web-0"));
    assert_eq!(address(&site.add(&new, &conf)), ip);
    // The old DEL's retry empties the outbox without the RELEASE, which
    // would end the new pod's lease.
    let out = site.del(&old, &conf);
    assert!(out.ok(), "{}", out.stderr);
    assert!(site.host_keys("release").is_empty());
    assert!(
        out.stderr.contains("its client id is held again"),
        "{}",
        out.stderr
    );
    assert!(
        site.server.settles(&ip, false, 2),
        "the new pod's lease ended"
    );
    assert_eq!(site.net.leased(), [ip]);
}
