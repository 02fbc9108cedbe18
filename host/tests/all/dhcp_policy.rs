//! The built-in `dhcp` policy as a runtime uses it: the reference `macvlan`
//! plugin makes the pod's interface and calls wasm-ipam as its IPAM plugin,
//! and the host gets the lease from a real dnsmasq.
//!
//! Each test makes a node namespace, where macvlan runs, whose master `m0`
//! is a veth whose peer `m0p` carries dnsmasq (10.77.0.1, leasing
//! 10.77.0.10-10.77.0.50), and a namespace per pod. Every namespace goes
//! when the test ends, passing or failing, with dnsmasq and every link in
//! them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cni::exec::{self, Call, Outcome, Spawn};
use cni_conformance::netns::Netns;
use serde_json::{Value, json};

use crate::common::{Net, assert_error, installed, plugin};
use crate::dhcp::{Dnsmasq, dhcp_available};

pub(crate) const MACVLAN: &str = "/usr/lib/cni/macvlan";
pub(crate) const NETWORK: &str = "sitenet";

/// Root, dnsmasq and the reference macvlan (which CI must have).
pub(crate) fn available() -> bool {
    dhcp_available() && installed(MACVLAN, "containernetworking-plugins")
}

/// A node with a DHCP server behind its macvlan master.
pub(crate) struct Site {
    // Dropped in this order: the server, then the namespace.
    pub server: Dnsmasq,
    pub net: Net,
    pub node: Netns,
}

/// A pod: its namespace, container id and `CNI_ARGS`.
pub(crate) struct Pod {
    pub ns: Netns,
    pub id: String,
    pub args: Option<String>,
}

impl Pod {
    pub fn call(&self, command: &str) -> Call {
        let mut call = Call::attach(command, &self.id).ifname("net1");
        call.netns = Some(self.ns.path().display().to_string());
        call.args = self.args.clone();
        call
    }
}

impl Site {
    /// dnsmasq leasing for 2 minutes (its shortest), without its ping
    /// check, with `extra` options.
    pub fn new(extra: &[&str]) -> Site {
        Site::serving("10.77.0.10,10.77.0.50,255.255.255.0,2m", extra)
    }

    pub fn serving(range: &str, extra: &[&str]) -> Site {
        let node = Netns::new("dhcpnode").unwrap();
        node.add_host_link("m0").unwrap();
        node.ip(&["addr", "add", "10.77.0.1/24", "dev", "m0p"])
            .unwrap();
        let net = Net::with_ipam(
            "1.0.0",
            json!({"policy": "dhcp", "grant": ["dhcp"], "dhcpTimeoutMs": 5000}),
        );
        let range = format!("--dhcp-range={range}");
        // No ping before an offer: dnsmasq waits 3 s for an answer that
        // never comes here (BENCHMARKS.md measures it).
        let mut args = vec![
            range.as_str(),
            "--dhcp-option=option:router,10.77.0.1",
            "--no-ping",
        ];
        args.extend_from_slice(extra);
        let server = Dnsmasq::start(&node, "m0p", net.dir.path().join("leases"), &args);
        Site { server, net, node }
    }

    /// The network config: macvlan on `m0`, wasm-ipam's dhcp policy with
    /// `ipam` merged in.
    pub fn conf(&self, ipam: Value) -> Value {
        let mut conf = self.net.conf.clone();
        conf["name"] = json!(NETWORK);
        conf["type"] = json!("macvlan");
        conf["master"] = json!("m0");
        conf["mode"] = json!("bridge");
        for (k, v) in ipam.as_object().unwrap() {
            conf["ipam"][k] = v.clone();
        }
        conf
    }

    /// Where `wasm-ipam serve` listens for this site, and the node's list
    /// of DHCP stores lives.
    pub fn socket(&self) -> PathBuf {
        self.net.dir.path().join("run").join("wasm-ipam.sock")
    }

    /// A pod named `name` (in namespace `shop`), or none.
    pub fn pod(&self, id: &str, name: Option<&str>) -> Pod {
        Pod {
            ns: Netns::new("dhcppod").unwrap(),
            id: id.into(),
            args: name.map(|n| format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME={n}")),
        }
    }

    /// Runs macvlan in the node namespace, as the runtime there would.
    pub fn run(&self, call: Call, conf: &Value) -> Outcome {
        let cni_path = format!("{}:/usr/lib/cni", plugin().parent().unwrap().display());
        let call = call
            .env("CNI_PATH", &cni_path)
            .env("WASM_IPAM_SOCKET", &self.socket().display().to_string())
            // The tests read what a successful call logs.
            .env("WASM_IPAM_LOG", "1");
        let spawn = Spawn {
            timeout: Some(Duration::from_secs(60)),
            netns: Some(self.node.name()),
        };
        exec::run_with(
            Path::new(MACVLAN),
            &call,
            conf.to_string().as_bytes(),
            &spawn,
        )
        .unwrap()
    }

    /// A successful ADD's result.
    pub fn add(&self, pod: &Pod, conf: &Value) -> Value {
        let out = self.run(pod.call("ADD"), conf);
        assert!(out.ok(), "ADD {}: {} {}", pod.id, out.stdout, out.stderr);
        out.json()
    }

    pub fn del(&self, pod: &Pod, conf: &Value) -> Outcome {
        self.run(pod.call("DEL"), conf)
    }

    /// Runs an operator tool of the binary on the site's store (`args`,
    /// then `--data-dir`), in `boot` when given; what it printed, once it
    /// succeeded.
    pub fn tool(&self, args: &[&str], boot: Option<&str>) -> String {
        let mut cmd = std::process::Command::new(plugin());
        cmd.args(args)
            .arg("--data-dir")
            .arg(self.net.data_dir())
            .env(wasm_ipam::envvars::SOCKET, "");
        if let Some(boot) = boot {
            cmd.env(wasm_ipam::envvars::BOOT_ID, boot);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The host's own keys for DHCP: its lease records, its client index
    /// and its outbox of RELEASEs.
    pub fn host_keys(&self, section: &str) -> Vec<String> {
        host_keys(&self.net.data_dir(), section)
    }
}

/// The host's keys under `.wasm-ipam/dhcp/<section>/` in a data dir.
pub(crate) fn host_keys(data_dir: &Path, section: &str) -> Vec<String> {
    let db = data_dir.join("wasm-ipam.db");
    let Ok(conn) = rusqlite::Connection::open(db) else {
        return Vec::new();
    };
    let prefix = format!(".wasm-ipam/dhcp/{section}/");
    let mut stmt = conn.prepare("SELECT key FROM kv ORDER BY key").unwrap();
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|k| String::from_utf8_lossy(&k.unwrap()).into_owned())
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// The address of an ADD result, without its prefix.
pub(crate) fn address(result: &Value) -> String {
    let a = result["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().to_string()
}

/// A DHCP client id as dnsmasq's lease file writes it: hex bytes with `:`.
fn hex(id: &[u8]) -> String {
    id.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn add_check_and_del_through_macvlan_against_dnsmasq() {
    if !available() {
        return;
    }
    let site = Site::new(&[]);
    // The reference's daemon socket: there is no daemon, and the log says so.
    let conf = site.conf(json!({"release": "always", "daemonSocketPath": "/run/cni/dhcp.sock"}));
    let pod = site.pod("c1", Some("web-0"));
    let added = site.run(pod.call("ADD"), &conf);
    assert!(added.ok(), "ADD: {} {}", added.stdout, added.stderr);
    assert!(
        added
            .stderr
            .contains("daemonSocketPath \"/run/cni/dhcp.sock\" is ignored"),
        "{}",
        added.stderr
    );
    let result = added.json();
    let ip = address(&result);
    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        ip.starts_with("10.77.0.") && (10..=50).contains(&last),
        "{result}"
    );
    assert_eq!(result["ips"][0]["address"], format!("{ip}/24"));
    assert_eq!(result["ips"][0]["gateway"], "10.77.0.1");
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}])
    );
    // macvlan put the address on the pod's interface.
    let link = pod.ns.link("net1").unwrap().expect("net1 in the pod");
    assert!(
        link.addresses
            .iter()
            .any(|a| a.to_string() == format!("{ip}/24")),
        "{link:?}"
    );
    // dnsmasq's own record: the pod's name, and its workload's client id.
    let line = site.server.line(&ip).expect("dnsmasq leased it");
    assert_eq!(line[3], "web-0", "{line:?}");
    assert_eq!(
        line[4],
        hex(b"\0wasm-ipam/sitenet/shop/web-0/net1"),
        "{line:?}"
    );
    // The store holds it, and the host its record for renewals.
    assert_eq!(site.net.leased(), std::slice::from_ref(&ip));
    assert_eq!(site.host_keys("lease"), ["c1/net1"]);
    // CHECK, with the result the runtime kept.
    let mut check = conf.clone();
    check["prevResult"] = result.clone();
    let out = site.run(pod.call("CHECK"), &check);
    assert!(out.ok(), "CHECK: {} {}", out.stdout, out.stderr);
    // The operator sees it.
    let listed = site.tool(&["leases"], None);
    assert!(
        listed.contains(&ip) && listed.contains("shop/web-0"),
        "{listed}"
    );
    // DEL: released in the store, and at the server.
    let out = site.del(&pod, &conf);
    assert!(out.ok(), "DEL: {} {}", out.stdout, out.stderr);
    assert!(site.net.leased().is_empty());
    assert!(site.host_keys("lease").is_empty());
    assert!(site.host_keys("release").is_empty(), "the RELEASE went out");
    assert!(
        site.server.settles(&ip, true, 5),
        "dnsmasq still leases {ip}"
    );
    // CHECK after DEL fails: the attachment holds nothing.
    let out = site.run(pod.call("CHECK"), &check);
    assert_error(&out, 102, "Failed to find address");
}

#[test]
fn a_re_created_pod_gets_its_lease_back_and_an_unnamed_one_is_released() {
    if !available() {
        return;
    }
    let site = Site::new(&[]);
    let conf = site.conf(json!({}));
    let web0 = site.pod("c1", Some("web-0"));
    let first = address(&site.add(&web0, &conf));
    let web1 = site.pod("c2", Some("web-1"));
    let other = address(&site.add(&web1, &conf));
    assert_ne!(first, other);
    // The pod goes: the store lets it go, the server keeps it for web-0.
    assert!(site.del(&web0, &conf).ok());
    assert!(!site.net.leased().contains(&first));
    assert!(site.host_keys("lease").iter().all(|k| k != "c1/net1"));
    assert!(
        site.server.line(&first).is_some(),
        "left to lapse, not released"
    );
    drop(web0);
    // Re-created, as a StatefulSet does: new container, new namespace, new
    // macvlan (another MAC), same name.
    let again = site.pod("c3", Some("web-0"));
    assert_eq!(address(&site.add(&again, &conf)), first);
    // While it is attached, the same pod cannot be attached twice.
    let twin = site.pod("c4", Some("web-0"));
    let out = site.run(twin.call("ADD"), &conf);
    assert_error(&out, 100, "already attached as container c3");
    // A pod without names is released at its DEL: its client id, which
    // holds its container id, never comes back.
    let loose = site.pod("c5", None);
    let ip = address(&site.add(&loose, &conf));
    assert!(site.del(&loose, &conf).ok());
    assert!(
        site.server.settles(&ip, true, 5),
        "dnsmasq still leases {ip}"
    );
}

#[test]
fn del_succeeds_and_releases_the_store_when_the_server_or_the_namespace_is_gone() {
    if !available() {
        return;
    }
    let mut site = Site::new(&[]);
    let conf = site.conf(json!({}));
    let a = site.pod("c1", None);
    let b = site.pod("c2", None);
    site.add(&a, &conf);
    site.add(&b, &conf);
    site.server.stop();
    let out = site.del(&a, &conf);
    assert!(
        out.ok(),
        "DEL with no server: {} {}",
        out.stdout,
        out.stderr
    );
    // The namespace went before the DEL came (a node restarting pods).
    let Pod { ns, id, args } = b;
    let gone = ns.path().display().to_string();
    drop(ns);
    let mut call = Call::attach("DEL", &id).ifname("net1");
    call.netns = Some(gone);
    call.args = args;
    let out = site.run(call, &conf);
    assert!(
        out.ok(),
        "DEL with no namespace: {} {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stderr.contains("could not release"), "{}", out.stderr);
    assert!(site.net.leased().is_empty());
    for section in ["lease", "client", "release"] {
        assert!(site.host_keys(section).is_empty(), "{section}");
    }
}

#[test]
fn a_server_that_offers_nothing_is_code_11_within_the_deadline_and_nothing_is_held() {
    if !available() {
        return;
    }
    // dnsmasq runs, but has no range for the pods' subnet: it offers none.
    let site = Site::serving("10.88.0.10,10.88.0.20,255.255.255.0,2m", &[]);
    let conf = site.conf(json!({"dhcpTimeoutMs": 1500}));
    let pod = site.pod("c1", Some("web-0"));
    let started = Instant::now();
    let out = site.run(pod.call("ADD"), &conf);
    assert_error(&out, 11, "no DHCP server answered the DHCPDISCOVER on net1");
    // Generous: it ends at its deadline, not minutes later.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(site.net.leased().is_empty());
    assert!(site.host_keys("lease").is_empty());
    // What the runtime does next: DEL, which succeeds, and removes the
    // interface macvlan 1.1.1 leaves behind after a failed IPAM ADD.
    let out = site.del(&pod, &conf);
    assert!(out.ok(), "DEL: {} {}", out.stdout, out.stderr);
    let links = pod.ns.links().unwrap();
    assert!(links.iter().all(|l| l.name == "lo"), "{links:?}");
}

#[test]
fn bad_config_is_code_7_naming_the_field_before_any_exchange() {
    if !available() {
        return;
    }
    let site = Site::new(&[]);
    let pod = site.pod("c1", None);
    for (ipam, needle) in [
        (
            json!({"provide": [{"option": "hostname", "value": "x"}]}),
            "ipam.provide[0].option",
        ),
        (
            json!({"request": [{"option": "routers"}, {"option": 300}]}),
            "ipam.request[1].option",
        ),
        (json!({"dhcpTimeoutMs": 0}), "ipam.dhcpTimeoutMs"),
        (json!({"release": "later"}), "ipam.release"),
        (json!({"grant": ["dhcpd"]}), "ipam.grant[0]"),
        (json!({"grant": null}), "\"grant\": [\"dhcp\"]"),
    ] {
        let conf = site.conf(ipam.clone());
        let out = site.run(pod.call("ADD"), &conf);
        assert_error(&out, 7, needle);
        // The runtime's DEL after the failed ADD succeeds, whatever the
        // config: nothing was stored.
        let out = site.del(&pod, &conf);
        assert!(out.ok(), "DEL after {ipam}: {} {}", out.stdout, out.stderr);
    }
    let asked = std::fs::read_to_string(&site.server.leases).unwrap();
    assert!(asked.is_empty(), "nothing reached the server: {asked}");
    assert!(site.net.leased().is_empty());
}
