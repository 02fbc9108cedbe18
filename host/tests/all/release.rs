//! A DEL releases what the store knows whatever `ipam` it is sent: missing,
//! empty, incomplete, invalid or edited since the ADD. It uses the policy
//! and config recorded at ADD, says so on stderr, and fails only for stdin
//! that is not a usable JSON object, or a store it cannot read.

use std::path::Path;

use cni::exec::Call;
use serde_json::{Value, json};

use crate::common::{Net, assert_error};

fn pod(id: &str, name: &str) -> Call {
    Call::attach("ADD", id).args(&format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME={name}"
    ))
}

/// `net`'s config with its `ipam` replaced by `ipam` (in which `dataDir`
/// is `net`'s).
fn with_ipam(net: &Net, mut ipam: Value) -> Value {
    let mut conf = net.conf.clone();
    if let Some(obj) = ipam.as_object_mut() {
        obj.insert("dataDir".into(), json!(net.data_dir()));
    }
    conf["ipam"] = ipam;
    conf
}

/// The unusable `ipam` objects a DEL can meet, each with `net`'s data dir.
fn unusable(net: &Net) -> Vec<(&'static str, Value)> {
    vec![
        ("incomplete", with_ipam(net, json!({"type": "wasm-ipam"}))),
        (
            "invalid",
            with_ipam(net, json!({"ranges": "garbage", "pools": 5})),
        ),
        (
            "a policy that is not there",
            with_ipam(net, json!({"policy": "/nonexistent/policy.wasm"})),
        ),
    ]
}

/// ADDs one container per unusable config, then DELs each with it: every
/// lease is released, and stderr says how.
fn each_unusable_del_releases(net: &Net, policy: &str) {
    let cases = unusable(net);
    for (i, _) in cases.iter().enumerate() {
        let out = net.run(&pod(&format!("c{i}"), &format!("w{i}")));
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    }
    assert_eq!(net.leased().len(), cases.len(), "{policy}");
    for (i, (what, conf)) in cases.iter().enumerate() {
        let out = net.run_conf(&Call::attach("DEL", &format!("c{i}")), conf);
        assert!(
            out.ok() && out.stdout.is_empty(),
            "{policy}, {what}: {} {}",
            out.stdout,
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!(
                "releasing with policy {policy} and the config recorded at ADD"
            )),
            "{policy}, {what}: {}",
            out.stderr
        );
    }
    assert!(net.leased().is_empty(), "{policy}: {:?}", net.leased());
}

#[test]
fn an_unusable_ipam_on_del_releases_with_each_policy() {
    for (policy, ipam) in [
        (
            "host-local",
            json!({"policy": "host-local", "ranges": [[{"subnet": "10.120.0.0/24"}]]}),
        ),
        (
            "pooled",
            json!({"policy": "pooled", "node": "n1",
                   "pools": [{"name": "main", "cidr": "10.121.0.0/24", "blockSize": 28}]}),
        ),
        (
            "sticky",
            json!({"policy": "sticky", "ranges": [[{"subnet": "10.122.0.0/24"}]], "holdSeconds": 0}),
        ),
    ] {
        each_unusable_del_releases(&Net::with_ipam("1.0.0", ipam), policy);
    }
}

#[test]
fn a_sticky_hold_still_starts_when_del_falls_back() {
    let net = Net::with_ipam(
        "1.0.0",
        json!({"policy": "sticky", "ranges": [[{"subnet": "10.123.0.0/29"}]], "holdSeconds": 600}),
    );
    let at = |call: Call, conf: &Value, t: u64| {
        net.run_conf(&call.env("WASM_IPAM_NOW", &t.to_string()), conf)
    };
    let first = at(pod("c1", "pg-0"), &net.conf, 1000);
    assert_eq!(first.json()["ips"][0]["address"], "10.123.0.2/29");
    let empty = with_ipam(&net, json!({}));
    assert!(at(Call::attach("DEL", "c1"), &empty, 1100).ok());
    let other = at(pod("c2", "other"), &net.conf, 1200);
    assert_eq!(
        other.json()["ips"][0]["address"],
        "10.123.0.3/29",
        "pg-0's address is held"
    );
    let back = at(pod("c3", "pg-0"), &net.conf, 1300);
    assert_eq!(
        back.json()["ips"][0]["address"],
        "10.123.0.2/29",
        "pg-0 gets its address back"
    );
}

#[test]
fn an_edited_config_still_releases_the_old_lease() {
    for ipam in [
        json!({"policy": "host-local", "ranges": [[{"subnet": "10.124.0.0/24"}]]}),
        json!({"policy": "pooled", "node": "n1",
               "pools": [{"name": "main", "cidr": "10.124.0.0/24", "blockSize": 28}]}),
        json!({"policy": "sticky", "ranges": [[{"subnet": "10.124.0.0/24"}]], "holdSeconds": 0}),
    ] {
        let net = Net::with_ipam("1.0.0", ipam.clone());
        assert!(net.run(&pod("c1", "w")).ok());
        let mut edited = net.conf.clone();
        edited["ipam"]["ranges"] = json!([[{"subnet": "10.125.0.0/24"}]]);
        edited["ipam"]["pools"] = json!([{"name": "moved", "cidr": "10.125.0.0/24"}]);
        let out = net.run_conf(&Call::attach("DEL", "c1"), &edited);
        assert!(out.ok(), "{ipam}: {} {}", out.stdout, out.stderr);
        assert!(net.leased().is_empty(), "{ipam}: {:?}", net.leased());
    }
}

#[test]
fn a_del_the_store_knows_nothing_of_succeeds_quietly() {
    let net = Net::host_local("1.0.0", "10.126.0.0/24");
    // No store at all yet: nothing is created to find nothing.
    let out = net.run_conf(&Call::attach("DEL", "c1"), &with_ipam(&net, json!({})));
    assert!(out.ok() && out.stdout.is_empty(), "{}", out.stderr);
    assert!(!net.data_dir().join("wasm-ipam.db").exists());
    // A store that holds another network only.
    assert!(net.add("c1").ok());
    let mut other = with_ipam(&net, json!({}));
    other["name"] = json!("othernet");
    let out = net.run_conf(&Call::attach("DEL", "c1"), &other);
    assert!(out.ok() && out.stdout.is_empty(), "{}", out.stderr);
    assert!(
        out.stderr.contains("holds nothing of the network"),
        "{}",
        out.stderr
    );
    assert_eq!(net.leased().len(), 1, "testnet's lease is not touched");
}

#[test]
fn a_del_without_ipam_or_data_dir_looks_in_the_default_store() {
    let default_db = Path::new(wasm_ipam::cni::config::DEFAULT_DATA_DIR).join("wasm-ipam.db");
    if default_db.exists() {
        eprintln!("skipped: this machine has a real store in the default data dir");
        return;
    }
    let net = Net::host_local("1.0.0", "10.127.0.0/24");
    let mut conf = net.conf.clone();
    conf.as_object_mut().unwrap().remove("ipam");
    let out = net.run_conf(&Call::attach("DEL", "c1"), &conf);
    assert!(out.ok() && out.stdout.is_empty(), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(wasm_ipam::cni::config::DEFAULT_DATA_DIR)
    );
    assert!(!default_db.exists(), "nothing was created");
}

#[test]
fn del_still_fails_for_malformed_stdin_and_an_unreadable_store() {
    let net = Net::host_local("1.0.0", "10.128.0.0/24");
    assert!(net.add("c1").ok());
    let out = cni::exec::run(
        crate::common::plugin(),
        &Call::attach("DEL", "c1"),
        b"{\"cniVersion\": \"1.0.0\", \"name\": ",
    )
    .unwrap();
    assert_error(&out, 6, "cannot decode");
    let mut nameless = with_ipam(&net, json!({}));
    nameless.as_object_mut().unwrap().remove("name");
    assert_error(
        &net.run_conf(&Call::attach("DEL", "c1"), &nameless),
        7,
        "no name",
    );
    assert_eq!(net.leased().len(), 1, "nothing was released");
    // A store that is not a database.
    let broken = Net::host_local("1.0.0", "10.129.0.0/24");
    std::fs::create_dir_all(broken.data_dir()).unwrap();
    std::fs::write(broken.data_dir().join("wasm-ipam.db"), b"not a database").unwrap();
    let out = broken.run_conf(&Call::attach("DEL", "c1"), &with_ipam(&broken, json!({})));
    assert!(!out.ok(), "{}", out.stderr);
    assert!(out.json()["code"].as_u64().is_some(), "{}", out.stdout);
}
