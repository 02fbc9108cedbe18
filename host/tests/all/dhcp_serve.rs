//! `wasm-ipam serve` renewing the dhcp policy's leases against a real
//! dnsmasq, which tells its clients to renew every 2 s and rebind after 4
//! (options 58 and 59), so that renewals show in seconds: in dnsmasq's own
//! lease file, in `wasm-ipam metrics`, and in the server's log.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::dhcp_policy::{NETWORK, Site, address, available};
use crate::serve::Server;

/// dnsmasq's options for leases renewed every 2 s and rebound after 4.
const QUICK: [&str; 2] = ["--dhcp-option=option:T1,2", "--dhcp-option=option:T2,4"];

/// The expiry dnsmasq records for `ip`, seconds since the epoch.
fn expiry(site: &Site, ip: &str) -> u64 {
    site.server.line(ip).expect("dnsmasq leases it")[0]
        .parse()
        .unwrap()
}

/// Waits up to `secs` for `done`, polling.
fn within(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// What `wasm-ipam metrics` prints for the site's store.
fn metrics(site: &Site) -> String {
    site.tool(&["metrics"], None)
}

/// One figure of `wasm-ipam metrics` for the site's network.
fn metric(site: &Site, name: &str) -> Option<f64> {
    let text = metrics(site);
    let prefix = format!("wasm_ipam_{name}{{network=\"{NETWORK}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

/// `wasm-ipam serve` on the site's socket, logging to a file there.
fn serve(site: &Site) -> (Server, std::path::PathBuf) {
    let log = site
        .net
        .dir
        .path()
        .join(format!("serve-{}.log", Instant::now().elapsed().as_nanos()));
    let file = std::fs::File::create(&log).unwrap();
    (Server::start_at(&site.socket(), Stdio::from(file)), log)
}

#[test]
fn serve_renews_at_t1_and_keeps_renewing_after_its_own_restart() {
    if !available() {
        return;
    }
    let site = Site::new(&QUICK);
    let conf = site.conf(json!({}));
    let (server, _log) = serve(&site);
    let pod = site.pod("c1", Some("web-0"));
    let ip = address(&site.add(&pod, &conf));
    let first = expiry(&site, &ip);
    assert!(
        within(15, || expiry(&site, &ip) > first),
        "no renewal reached dnsmasq"
    );
    assert!(metric(&site, "dhcp_renewals").unwrap() >= 1.0);
    assert_eq!(metric(&site, "dhcp_leases"), Some(1.0));
    // Killed outright, then started again: it finds the lease in the store
    // the node listed, and renews it.
    server.signal("-KILL");
    drop(server);
    std::thread::sleep(Duration::from_secs(3));
    let before = expiry(&site, &ip);
    let renewals = metric(&site, "dhcp_renewals").unwrap();
    let (_again, log) = serve(&site);
    assert!(
        within(15, || expiry(&site, &ip) > before),
        "the restarted server did not renew"
    );
    assert!(metric(&site, "dhcp_renewals").unwrap() > renewals);
    // Past T2 by then: rebound (broadcast) rather than renewed.
    let text = std::fs::read_to_string(log).unwrap();
    let done = format!("the lease of {ip} for c1/net1 in network {NETWORK}: held until");
    assert!(text.contains(&done), "{text}");
    // A DEL ends the renewals: nothing is left to renew.
    assert!(site.del(&pod, &conf).ok());
    assert_eq!(metric(&site, "dhcp_leases"), None);
}

#[test]
fn renewals_that_fail_while_the_dhcp_server_is_down_are_reported_and_resume_after() {
    if !available() {
        return;
    }
    let mut site = Site::new(&QUICK);
    let conf = site.conf(json!({}));
    let (_server, log) = serve(&site);
    let pod = site.pod("c1", None);
    let ip = address(&site.add(&pod, &conf));
    site.server.stop();
    assert!(
        within(15, || metric(&site, "dhcp_leases_failing") == Some(1.0)),
        "no failed renewal was reported"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!(
            "the lease of {ip} for c1/net1 in network {NETWORK} failed"
        )),
        "{text}"
    );
    assert!(text.contains("no DHCP server answered"), "{text}");
    let before = expiry(&site, &ip);
    site.server.restart();
    assert!(
        within(15, || metric(&site, "dhcp_leases_failing") == Some(0.0)),
        "renewals did not resume"
    );
    assert!(expiry(&site, &ip) > before, "dnsmasq saw no renewal");
    // The exposition stays valid for Prometheus with the DHCP figures in.
    let text = metrics(&site);
    assert!(
        text.contains("# HELP wasm_ipam_dhcp_leases_lapsed"),
        "{text}"
    );
    crate::tools::promtool_accepts(&text);
}

#[test]
fn without_serve_an_add_works_and_check_says_when_the_lease_lapsed() {
    if !available() {
        return;
    }
    let site = Site::new(&[]);
    let conf = site.conf(json!({}));
    let pod = site.pod("c1", None);
    let result = site.add(&pod, &conf);
    let mut check = conf.clone();
    check["prevResult"] = result;
    assert!(site.run(pod.call("CHECK"), &check).ok());
    // Three minutes on, a 2-minute lease no one renewed has lapsed.
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 180;
    let call = pod.call("CHECK").env("WASM_IPAM_NOW", &later.to_string());
    let out = site.run(call, &check);
    crate::common::assert_error(&out, 102, "lapsed");
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap()
            .contains("wasm-ipam serve renews leases")
    );
}
