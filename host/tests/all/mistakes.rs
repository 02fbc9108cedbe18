//! An operator who makes mistakes, a disk that loses a file, and a runtime
//! that goes away: each gets a clear CNI error with the right code, or
//! works, and the store never hands out an address twice.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use cni::exec::{self, Call};
use serde_json::{Value, json};

use crate::common::{Net, assert_error, installed, plugin, run_within, serving_address, spawn_fed};

#[test]
fn a_reversed_range_is_refused_and_nothing_leaves_the_range() {
    let net = Net::with_ipam(
        "1.0.0",
        json!({"ranges": [[{"subnet": "10.40.0.0/24", "rangeStart": "10.40.0.250",
                            "rangeEnd": "10.40.0.100"}]]}),
    );
    for i in 0..3 {
        assert_error(
            &net.add(&format!("c{i}")),
            7,
            "rangeStart 10.40.0.250 is after rangeEnd 10.40.0.100",
        );
    }
    assert!(net.leased().is_empty());
    // A range that ends at the subnet's last host address: the walk stops
    // there, never at the broadcast address or the next subnet.
    let net = Net::with_ipam(
        "1.0.0",
        json!({"ranges": [[{"subnet": "10.40.0.0/24", "rangeStart": "10.40.0.250"}]]}),
    );
    let got: Vec<String> = (0..5).map(|i| net.add_ip(&format!("c{i}"))).collect();
    assert_eq!(
        got,
        [
            "10.40.0.250/24",
            "10.40.0.251/24",
            "10.40.0.252/24",
            "10.40.0.253/24",
            "10.40.0.254/24"
        ]
    );
    assert_error(&net.add("c5"), 11, "no IP addresses available");
}

#[test]
fn configs_that_cannot_be_right_are_code_7_naming_the_field() {
    let ranges = |r: Value| json!({"policy": "host-local", "ranges": [[r]]});
    let pool = |name: Value, cidr: &str| json!({"policy": "pooled", "pools": [{"name": name, "cidr": cidr}]});
    for (ipam, needle) in [
        (
            ranges(json!({"subnet": "10.41.0.0/24", "gateway": "fd00::1"})),
            "gateway fd00::1 is not of the family of subnet 10.41.0.0/24",
        ),
        (
            ranges(json!({"subnet": "224.1.0.0/24"})),
            "224.1.0.0/24 is a multicast network",
        ),
        (
            ranges(json!({"subnet": "127.5.0.0/24"})),
            "127.5.0.0/24 is a loopback network",
        ),
        (ranges(json!({"subnet": "0.0.0.0/24"})), "0.0.0.0/8"),
        (
            ranges(json!({"subnet": "::ffff:10.0.0.0/120"})),
            "IPv4-mapped",
        ),
        (
            pool(json!("p".repeat(600)), "10.41.0.0/24"),
            "must be 1 to 63 letters",
        ),
        (pool(json!("p"), "224.2.0.0/24"), "is a multicast network"),
        (
            json!({"node": "a/b", "ranges": [[{"subnet": "10.41.0.0/24"}]]}),
            "ipam.node \"a/b\"",
        ),
        (
            json!({"dataDir": "", "ranges": [[{"subnet": "10.41.0.0/24"}]]}),
            "ipam.dataDir must not be empty",
        ),
        (
            json!({"cacheDir": "", "ranges": [[{"subnet": "10.41.0.0/24"}]]}),
            "ipam.cacheDir must not be empty",
        ),
        (
            json!({"ranges": [[{"subnet": "10.41.0.0/24"}]],
                   "store": {"etcd": {"endpoints": ["https://10.0.0.11:2379"]}}}),
            "ipam.store.etcd.endpoints are https:// URLs, so ipam.store.etcd.tls must say how to \
             trust the members",
        ),
        (
            json!({"ranges": [[{"subnet": "10.41.0.0/24"}]],
                   "store": {"etcd": {"endpoints": ["http://127.0.0.1:99999"], "timeoutMs": 10000}}}),
            "(invalid port number)",
        ),
        (
            json!({"ranges": [[{"subnet": "10.41.0.0/24"}]],
                   "store": {"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/a\u{0}b"}}}),
            "ipam.store.etcd.prefix \"/a\\0b\" has the control character",
        ),
    ] {
        let mut net = Net::with_ipam("1.0.0", json!({}));
        for (k, v) in ipam.as_object().unwrap() {
            net.conf["ipam"][k] = v.clone();
        }
        assert_error(&net.add("c1"), 7, needle);
        assert!(net.leased().is_empty(), "{needle}");
    }
}

#[test]
fn a_long_container_id_is_added_checked_and_deleted_by_every_policy() {
    for (policy, extra) in [
        (
            "host-local",
            json!({"ranges": [[{"subnet": "10.42.0.0/24"}]]}),
        ),
        ("sticky", json!({"ranges": [[{"subnet": "10.42.0.0/24"}]]})),
        (
            "pooled",
            json!({"pools": [{"name": "p", "cidr": "10.42.0.0/24"}]}),
        ),
    ] {
        let mut ipam = extra;
        ipam["policy"] = json!(policy);
        let net = Net::with_ipam("1.0.0", ipam);
        // 600 bytes, then as long as the kernel lets a variable be.
        for id in ["a".repeat(600), format!("b{}", "0123456789".repeat(12_000))] {
            let add = net.add(&id);
            assert!(add.ok(), "{policy} ADD: {}", add.stdout);
            let mut conf = net.conf.clone();
            conf["prevResult"] = add.json();
            for command in ["CHECK", "DEL", "DEL"] {
                let out = net.run_conf(&Call::attach(command, &id), &conf);
                assert!(out.ok(), "{policy} {command}: {}", out.stdout);
            }
            let gone = net.run_conf(&Call::attach("CHECK", &id), &conf);
            assert_error(&gone, 102, "");
        }
        let never = net.run(&Call::attach("DEL", &"c".repeat(5000)));
        assert!(never.ok(), "{policy}: {}", never.stdout);
        assert!(net.leased().is_empty(), "{policy}: {:?}", net.leased());
    }
}

#[test]
fn a_zeroed_database_is_damage_not_a_new_store() {
    let net = Net::host_local("1.0.0", "10.43.0.0/24");
    let held = net.add_ip("c1");
    let db = net.data_dir().join("wasm-ipam.db");
    let saved = std::fs::read(&db).unwrap();
    std::fs::File::create(&db).unwrap();
    for call in [Call::attach("ADD", "c2"), Call::attach("DEL", "c1")] {
        let out = net.run(&call);
        assert_error(&out, 5, &db.display().to_string());
        assert!(
            out.stdout.contains("holds no wasm-ipam store"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("Restore it from a backup"),
            "{}",
            out.stdout
        );
    }
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "left as it was found"
    );
    // Put back, it holds what it held: c2 does not get c1's address.
    std::fs::write(&db, saved).unwrap();
    assert_ne!(net.add_ip("c2"), held);
}

#[test]
fn gc_takes_eighty_thousand_valid_attachments() {
    let net = Net::host_local("1.1.0", "10.44.0.0/24");
    for id in ["keep", "stale"] {
        net.add_ip(id);
    }
    let mut valid: Vec<Value> = (0..80_000)
        .map(|i| json!({"containerID": format!("gone-{i}"), "ifname": "eth0"}))
        .collect();
    valid.push(json!({"containerID": "keep", "ifname": "eth0"}));
    let mut conf = net.conf.clone();
    conf["cni.dev/valid-attachments"] = json!(valid);
    conf["cni.dev/attachments"] = json!(valid);
    // A bound to catch a quadratic GC (80,000 took 13.6 s), far above
    // what a linear one takes.
    let out = run_within(&Call::new("GC"), &conf, Duration::from_secs(60));
    assert!(
        out.ok() && !out.timed_out,
        "{} {}",
        out.status(),
        out.stdout
    );
    assert_eq!(net.leased(), ["10.44.0.2"]);
}

#[test]
fn messages_name_the_value_and_never_a_librarys_debug_layout() {
    let net = Net::host_local("1.0.0", "10.45.0.0/24");
    let mut conf = net.conf.clone();
    conf["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.45.0.2"}]});
    assert_error(
        &net.run_conf(&Call::attach("CHECK", "c1"), &conf),
        7,
        "ips[0].address \"10.45.0.2\" is not an address with its prefix length",
    );
    let mut conf = net.conf.clone();
    conf["ipam"]["store"] =
        json!({"etcd": {"endpoints": ["http://127.0.0.1:1"], "timeoutMs": 300}});
    let out = net.run_conf(&Call::attach("ADD", "c1"), &conf);
    assert_error(&out, 11, "etcd at http://127.0.0.1:1");
    for internal in ["Os {", "kind:", "tonic::", "ConnectError("] {
        assert!(
            !out.stdout.contains(internal),
            "{internal} in {}",
            out.stdout
        );
    }
}

#[test]
fn a_call_that_succeeds_says_nothing_on_stderr() {
    // Each call gets a fresh cache, so that each installs the precompiled
    // policy: the line every node's first pod used to print.
    let with_fresh_cache = |mut conf: Value| {
        let cache = tempfile::tempdir().unwrap();
        conf["ipam"]["cacheDir"] = json!(cache.path());
        (cache, conf)
    };
    let net = Net::host_local("1.0.0", "10.46.0.0/24");
    let run =
        |call: Call, conf: &Value| exec::run(plugin(), &call, conf.to_string().as_bytes()).unwrap();
    let (_cache, conf) = with_fresh_cache(net.conf.clone());
    let out = run(Call::attach("ADD", "c1"), &conf);
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(out.stderr, "", "a successful call is quiet");
    // A failed call tells what it knows.
    let mut broken = net.conf.clone();
    broken["ipam"]["ranges"] = json!([[{"subnet": "10.46.0.0/33"}]]);
    let (_cache, broken) = with_fresh_cache(broken);
    let out = run(Call::attach("ADD", "c2"), &broken);
    assert!(!out.ok());
    assert!(
        out.stderr
            .contains("installed the precompiled policy host-local"),
        "{}",
        out.stderr
    );
    // With logging on, a successful call's lines show.
    let (_cache, conf) = with_fresh_cache(net.conf.clone());
    let out = run(Call::attach("ADD", "c3").env("WASM_IPAM_LOG", "1"), &conf);
    assert!(out.ok(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("installed the precompiled policy host-local"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_closed_stdout_ends_the_call_without_a_panic() {
    let net = Net::host_local("1.0.0", "10.47.0.0/24");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = spawn_fed(
        Command::new(plugin())
            .env_clear()
            .envs([
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/x"),
            ])
            .stdout(writer)
            .stderr(Stdio::piped()),
        net.conf.to_string().as_bytes(),
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(net.leased(), ["10.47.0.2"], "the ADD was done");
}

#[test]
fn bridge_with_a_closed_stderr_gets_its_address_and_pooled_leaves_it_the_gateway() {
    use cni_conformance::netns::{self, Netns};
    if !installed("/usr/lib/cni/bridge", "containernetworking-plugins") {
        return;
    }
    if !netns::is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let host = Netns::new("quiet-host").unwrap();
    let ctr = Netns::new("quiet-ctr").unwrap();
    let data = tempfile::tempdir().unwrap();
    // A fresh cache: the first call installs the precompiled policy, the
    // line bridge used to copy to its closed stderr and die of.
    let cache = tempfile::tempdir().unwrap();
    let conf = json!({"cniVersion": "1.0.0", "name": "quiet", "type": "bridge",
        "bridge": "cnictqb0", "isGateway": true,
        "ipam": {"type": "wasm-ipam", "policy": "pooled", "dataDir": data.path(),
                 "cacheDir": cache.path(), "node": "quiet-node",
                 "pools": [{"name": "p", "cidr": "10.48.0.0/24", "blockSize": 24}]}});
    let cni_path = format!("{}:/usr/lib/cni", plugin().parent().unwrap().display());
    let run = |command: &str| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let child = spawn_fed(
            Command::new("ip")
                .args(["netns", "exec", host.name(), "/usr/lib/cni/bridge"])
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs([
                    ("CNI_COMMAND", command),
                    ("CNI_CONTAINERID", "quiet-c1"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", &ctr.path().display().to_string()),
                    ("CNI_PATH", &cni_path),
                ])
                .stdout(Stdio::piped())
                .stderr(writer),
            conf.to_string().as_bytes(),
        );
        child.wait_with_output().unwrap()
    };
    let added = run("ADD");
    assert!(
        added.status.success(),
        "{:?}: {}",
        added.status,
        String::from_utf8_lossy(&added.stdout)
    );
    let result: Value = serde_json::from_slice(&added.stdout).unwrap();
    let ours = result["ips"][0]["address"].as_str().unwrap();
    assert_eq!(
        ours, "10.48.0.2/24",
        "the first host address is the bridge's"
    );
    let v4 = |ns: &Netns, link: &str| -> Vec<String> {
        let link = ns.link(link).unwrap().unwrap();
        link.addresses
            .iter()
            .filter(|a| a.addr().is_ipv4())
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(v4(&host, "cnictqb0"), ["10.48.0.1/24"]);
    assert_eq!(v4(&ctr, "eth0"), [ours]);
    assert!(run("DEL").status.success());
}

#[test]
fn metrics_over_http_holds_few_threads_and_little_memory_whatever_clients_do() {
    let net = Net::host_local("1.0.0", "10.49.0.0/24");
    net.add_ip("c1");
    let mut child = Command::new(plugin())
        .args(["metrics", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(net.data_dir())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving_address(&mut child);
    let status = |field: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    // A 50 MB header: refused after 16 KiB, without holding it.
    let mut big = std::net::TcpStream::connect(&addr).unwrap();
    big.write_all(b"GET /metrics HTTP/1.0\r\nX-Big: ").unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..50 {
        if big.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    // Refused, or cut off: the server closed on a client still sending.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.0 400 Bad Request"),
        "{answer}"
    );
    assert!(
        status("VmRSS:") < 64 << 10,
        "{} KiB resident",
        status("VmRSS:")
    );
    // 300 idle connections: a fixed number of threads.
    let idle: Vec<_> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(status("Threads:") <= 8, "{} threads", status("Threads:"));
    drop(idle);
    child.kill().unwrap();
    child.wait().unwrap();
}
