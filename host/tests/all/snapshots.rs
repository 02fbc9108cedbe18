//! The ADD result in every CNI version's layout, exactly as printed.

use serde_json::json;
use wasm_ipam::cni::version::VERSIONS;

use crate::common::Net;

#[test]
fn add_results_for_every_version() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../testdata/snapshots/host");
    settings.set_prepend_module_to_snapshot(false);
    let _guard = settings.bind_to_scope();
    for version in VERSIONS {
        let net = Net::with_ipam(
            version,
            json!({"policy": "host-local",
                   "ranges": [[{"subnet": "10.70.0.0/24"}], [{"subnet": "fd00:70::/64"}]],
                   "routes": [{"dst": "0.0.0.0/0"}, {"dst": "fd00:1::/64", "gw": "fd00:70::1"}]}),
        );
        let resolv = net.dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 10.96.0.10\ndomain cluster.local\n").unwrap();
        let mut conf = net.conf.clone();
        conf["ipam"]["resolvConf"] = json!(resolv);
        let out = net.run_conf(&cni::exec::Call::attach("ADD", "snap"), &conf);
        assert!(out.ok(), "{version}: {}", out.stdout);
        insta::assert_snapshot!(format!("add_{}", version.replace('.', "_")), out.stdout);
    }
}

#[test]
fn add_results_of_each_built_in_policy() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../testdata/snapshots/host");
    settings.set_prepend_module_to_snapshot(false);
    let _guard = settings.bind_to_scope();
    let policies = [
        (
            "host-local",
            json!({"ranges": [[{"subnet": "10.71.0.0/24"}], [{"subnet": "fd00:71::/64"}]]}),
        ),
        (
            "pooled",
            json!({"node": "node-a",
                   "pools": [{"name": "v4", "cidr": "10.72.0.0/16", "gateway": "10.72.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                             {"name": "v6", "cidr": "fd00:72::/64"}]}),
        ),
        (
            "sticky",
            json!({"ranges": [[{"subnet": "10.73.0.0/24"}], [{"subnet": "fd00:73::/64"}]]}),
        ),
    ];
    for (policy, mut ipam) in policies {
        ipam["policy"] = json!(policy);
        for version in ["0.4.0", "1.1.0"] {
            let net = Net::with_ipam(version, ipam.clone());
            let call = cni::exec::Call::attach("ADD", "snap")
                .args("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0");
            let out = net.run(&call);
            assert!(out.ok(), "{policy} {version}: {}", out.stdout);
            insta::assert_snapshot!(
                format!("{policy}_add_{}", version.replace('.', "_")),
                out.stdout
            );
        }
    }
}
