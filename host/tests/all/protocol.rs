//! The CNI envelope: environment, config, versions, error codes and the
//! operations' success rules, through the real binary.

use cni::exec::{Call, run};
use serde_json::json;

use crate::common::{Net, assert_error, plugin};

#[test]
fn version_answers_without_a_valid_config() {
    let out = run(plugin(), &Call::new("VERSION"), b"not json").unwrap();
    assert!(out.ok());
    let v = out.json();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(
        v["supportedVersions"],
        json!([
            "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
        ])
    );
    let out = run(
        plugin(),
        &Call::new("VERSION"),
        br#"{"cniVersion":"0.4.0"}"#,
    )
    .unwrap();
    assert_eq!(out.json()["cniVersion"], "0.4.0");
}

/// Start-up is paid on every call; a position-independent binary spends
/// half a millisecond of it applying relocations (host/build.rs).
#[cfg(target_os = "linux")]
#[test]
fn the_plugin_is_linked_at_a_fixed_address() {
    const ET_EXEC: u16 = 2;
    let elf = std::fs::read(plugin()).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    let e_type = u16::from_le_bytes([elf[16], elf[17]]);
    assert_eq!(
        e_type, ET_EXEC,
        "wasm-ipam is not a fixed-address executable"
    );
}

#[test]
fn environment_errors_are_code_4_and_name_the_variable() {
    let net = Net::host_local("1.0.0", "10.1.0.0/24");
    let cases = [
        (
            Call {
                container_id: None,
                ..Call::attach("ADD", "x")
            },
            "CNI_CONTAINERID",
        ),
        (
            Call {
                ifname: None,
                ..Call::attach("ADD", "x")
            },
            "CNI_IFNAME",
        ),
        (
            Call {
                netns: None,
                ..Call::attach("ADD", "x")
            },
            "CNI_NETNS",
        ),
        (Call::attach("ADD", "bad/id"), "CNI_CONTAINERID"),
        (
            Call::attach("ADD", "x").ifname("a-very-long-ifname"),
            "CNI_IFNAME",
        ),
        (Call::attach("ADD", "x").args("novalue"), "CNI_ARGS"),
        (Call::new("FROB"), "CNI_COMMAND"),
        (Call::new(""), "CNI_COMMAND"),
    ];
    for (call, var) in cases {
        assert_error(&net.run(&call), 4, var);
    }
    assert!(net.store_dump().is_empty(), "nothing was stored");
}

#[test]
fn config_errors_have_their_codes() {
    let net = Net::host_local("1.0.0", "10.1.0.0/24");
    let add = Call::attach("ADD", "c1");
    let raw = |stdin: &[u8]| run(plugin(), &add, stdin).unwrap();
    assert_error(&raw(b"{\"cniVersion\": \"1.0.0\""), 6, "decode");
    assert_error(&raw(b"\xff\xfe\x00"), 6, "decode");
    assert_error(&raw(b"[1, 2]"), 6, "must be a JSON object");

    let mut c = net.conf.clone();
    c["cniVersion"] = json!("9.0.0");
    assert_error(&net.run_conf(&add, &c), 1, "9.0.0");
    let mut c = net.conf.clone();
    c.as_object_mut().unwrap().remove("ipam");
    assert_error(&net.run_conf(&add, &c), 7, "'ipam'");
    let mut c = net.conf.clone();
    c["name"] = json!("bad name!");
    assert_error(&net.run_conf(&add, &c), 7, "network name");
    let mut c = net.conf.clone();
    c["ipam"]["ranges"] = json!([[{"subnet": "10.1.0.0/31"}]]);
    assert_error(&net.run_conf(&add, &c), 7, "too small");
    let mut c = net.conf.clone();
    c["ipam"]["policy"] = json!("no-such-policy");
    assert_error(
        &net.run_conf(&add, &c),
        7,
        "unknown policy \"no-such-policy\"",
    );
    let mut c = net.conf.clone();
    c["ipam"]["resolvConf"] = json!("/nonexistent/resolv.conf");
    assert_error(&net.run_conf(&add, &c), 5, "/nonexistent/resolv.conf");
    assert!(net.leased().is_empty());
}

#[test]
fn errors_go_to_stdout_as_json_and_stderr_is_for_logs() {
    let net = Net::host_local("1.0.0", "10.1.0.0/24");
    let mut c = net.conf.clone();
    c["ipam"]["policy"] = json!("no-such-policy");
    let out = net.run_conf(&Call::attach("ADD", "c1"), &c);
    assert_eq!(out.code, Some(1));
    let v = out.json();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert!(v["msg"].is_string());
}

#[test]
fn operations_are_gated_by_version() {
    let net = Net::host_local("0.3.1", "10.1.0.0/24");
    assert!(net.add("c1").ok());
    assert_error(&net.run(&Call::attach("CHECK", "c1")), 1, "CHECK");
    let v1 = Net::host_local("1.0.0", "10.1.0.0/24");
    assert_error(&v1.run(&Call::new("STATUS")), 1, "STATUS");
    assert_error(&v1.run(&Call::new("GC")), 1, "GC");
}

#[test]
fn del_succeeds_for_unknown_repeated_and_netns_less_calls() {
    let net = Net::host_local("1.0.0", "10.1.0.0/24");
    let del = |id: &str| Call {
        netns: None,
        ..Call::attach("DEL", id)
    };
    assert!(net.run(&del("never-added")).ok());
    net.add_ip("c1");
    let out = net.run(&del("c1"));
    assert!(out.ok() && out.stdout.is_empty(), "{out:?}");
    assert!(net.run(&del("c1")).ok());
    assert!(net.leased().is_empty());
}

#[test]
fn check_follows_the_reservation_and_prev_result() {
    let net = Net::host_local("1.0.0", "10.1.0.0/24");
    let added = net.add("c1").json();
    let mut c = net.conf.clone();
    c["prevResult"] = added.clone();
    let check = Call::attach("CHECK", "c1");
    let out = net.run_conf(&check, &c);
    assert!(out.ok() && out.stdout.is_empty(), "{out:?}");
    let mut foreign = c.clone();
    foreign["prevResult"]["ips"][0]["address"] = json!("10.1.0.77/24");
    assert_error(&net.run_conf(&check, &foreign), 102, "10.1.0.77");
    assert!(net.run(&Call::attach("DEL", "c1")).ok());
    assert_error(&net.run_conf(&check, &c), 102, "Failed to find address");
}

#[test]
fn gc_releases_unlisted_attachments_and_needs_the_list() {
    let net = Net::host_local("1.1.0", "10.1.0.0/24");
    for id in ["a", "b", "c"] {
        net.add_ip(id);
    }
    let mut gc = net.conf.clone();
    assert_error(
        &net.run_conf(&Call::new("GC"), &gc),
        7,
        "cni.dev/valid-attachments",
    );
    assert_eq!(
        net.leased().len(),
        3,
        "a GC without its list released nothing"
    );
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "b", "ifname": "eth0"}]);
    gc["cni.dev/attachments"] = json!([{"containerID": "c", "ifname": "eth0"}]);
    let out = net.run_conf(&Call::new("GC"), &gc);
    assert!(out.ok() && out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("GC released 10.1.0.2 from a/eth0"),
        "{}",
        out.stderr
    );
    assert_eq!(net.leased(), ["10.1.0.3", "10.1.0.4"]);
}

#[test]
fn status_reports_exhaustion_with_code_50() {
    let net = Net::host_local("1.1.0", "10.1.0.0/29");
    assert!(net.run(&Call::new("STATUS")).ok());
    for i in 0..5 {
        net.add_ip(&format!("c{i}"));
    }
    assert_error(&net.add("c5"), 11, "no IP addresses available");
    assert_error(
        &net.run(&Call::new("STATUS")),
        50,
        "no IP addresses available",
    );
}

#[test]
fn requested_ips_and_kubernetes_args() {
    let net = Net::host_local("1.0.0", "10.1.0.0/24");
    let k8s = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=u";
    let out = net.run(&Call::attach("ADD", "c1").args(&format!("{k8s};IP=10.1.0.50")));
    assert_eq!(out.json()["ips"][0]["address"], "10.1.0.50/24");
    assert_error(
        &net.run(&Call::attach("ADD", "c2").args("IP=10.1.0.50")),
        101,
        "10.1.0.50",
    );
    let mut c = net.conf.clone();
    c["args"] = json!({"cni": {"ips": ["10.1.0.60"]}});
    assert_eq!(
        net.run_conf(&Call::attach("ADD", "c3"), &c).json()["ips"][0]["address"],
        "10.1.0.60/24"
    );
    assert_error(
        &net.run(&Call::attach("ADD", "c4").args("K8S_POD_NAME=x")),
        2,
        "K8S_POD_NAME",
    );
}

#[test]
fn resolv_conf_becomes_dns() {
    let net = Net::host_local("1.0.0", "10.1.0.0/24");
    let resolv = net.dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n",
    )
    .unwrap();
    let mut c = net.conf.clone();
    c["ipam"]["resolvConf"] = json!(resolv);
    let out = net.run_conf(&Call::attach("ADD", "c1"), &c);
    assert_eq!(
        out.json()["dns"],
        json!({"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"], "options": ["ndots:5"]})
    );
}

#[test]
fn networks_are_isolated_in_one_store() {
    let net = Net::host_local("1.0.0", "10.1.0.0/24");
    let mut other = net.conf.clone();
    other["name"] = json!("othernet");
    assert_eq!(net.add_ip("c1"), "10.1.0.2/24");
    let out = net.run_conf(&Call::attach("ADD", "c1"), &other);
    assert_eq!(
        out.json()["ips"][0]["address"],
        "10.1.0.2/24",
        "same range, other network"
    );
    assert!(net.run_conf(&Call::attach("DEL", "c1"), &other).ok());
    assert_eq!(
        net.leased(),
        ["10.1.0.2"],
        "DEL on othernet left testnet alone"
    );
}

/// The journal mode a fresh connection finds: only WAL is recorded in the
/// database file, so anything else reads back as SQLite's default.
fn journal_mode(db: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap()
}

#[test]
fn the_store_leaves_no_log_behind_across_calls() {
    // One transaction per process: a log that outlives the process is
    // either a cost the next call pays (WAL's index rebuilt from the log,
    // which an older version let grow without bound) or a hot journal.
    let net = Net::host_local("1.0.0", "10.24.0.0/24");
    for i in 0..60 {
        net.add_ip(&format!("c{i}"));
        assert!(net.run(&Call::attach("DEL", &format!("c{i}"))).ok());
    }
    let dir = net.data_dir();
    for gone in ["wasm-ipam.db-wal", "wasm-ipam.db-shm"] {
        assert!(!dir.join(gone).exists(), "{gone} exists");
    }
    let journal = std::fs::metadata(dir.join("wasm-ipam.db-journal")).map_or(0, |m| m.len());
    assert_eq!(journal, 0, "the rollback journal is emptied at commit");
    assert_eq!(journal_mode(&dir.join("wasm-ipam.db")), "delete");
}

#[test]
fn a_store_an_older_version_left_in_wal_mode_is_switched_and_kept() {
    let net = Net::host_local("1.0.0", "10.25.0.0/24");
    net.add_ip("c1");
    let db = net.data_dir().join("wasm-ipam.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
    assert_eq!(journal_mode(&db), "wal", "WAL is recorded in the file");
    net.add_ip("c2");
    assert_eq!(net.leased(), ["10.25.0.2", "10.25.0.3"]);
    assert_eq!(journal_mode(&db), "delete");
    assert!(!net.data_dir().join("wasm-ipam.db-wal").exists());
}
