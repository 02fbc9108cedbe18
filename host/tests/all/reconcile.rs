//! Pods through a real containerd, driven through CRI as kubelet drives it
//! (the kit in `containerd`), with bridge + wasm-ipam + portmap; and the
//! reconciler reclaiming the leaks that runtime leaves, since it sends no
//! CNI GC.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{plugin, shared_cache};
use crate::containerd::{self, Containerd};

/// The ipam section of a kit's network, on `data_dir`.
fn ipam(policy: Value, data_dir: &Path) -> Value {
    let mut ipam = policy;
    ipam["type"] = json!("wasm-ipam");
    ipam["dataDir"] = json!(data_dir);
    ipam["cacheDir"] = json!(shared_cache());
    ipam["node"] = json!("node-a");
    ipam
}

/// The addresses the network's leases hold, as `leases --json` lists them.
pub(crate) fn leased(data_dir: &Path) -> BTreeSet<String> {
    leases_json(&["--data-dir", data_dir.to_str().unwrap()])["networks"][0]["leases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| l["address"].as_str().unwrap().to_string())
        .collect()
}

fn leases_json(args: &[&str]) -> Value {
    let out = Command::new(plugin())
        .arg("leases")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "leases: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `wasm-ipam reconcile` against the kit at `now`: its stdout, or
/// its stderr on failure.
fn reconcile(kit: &Containerd, grace: &str, now: u64, extra: &[&str]) -> Result<String, String> {
    reconcile_at(&kit.endpoint(), &kit.conf_dir(), grace, now, extra)
}

fn reconcile_at(
    endpoint: &str,
    conf_dir: &Path,
    grace: &str,
    now: u64,
    extra: &[&str],
) -> Result<String, String> {
    let out = Command::new(plugin())
        .args([
            "reconcile",
            "--cri",
            endpoint,
            "--grace",
            grace,
            "--conf-dir",
        ])
        .arg(conf_dir)
        .args(extra)
        .env("WASM_IPAM_NOW", now.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn lifecycle(policy: Value, bridge: &str) {
    let data = tempfile::tempdir().unwrap();
    let conf = containerd::chain(bridge, ipam(policy, data.path()));
    let kit = containerd::start(&conf, bridge);
    pods_come_and_go(&kit, data.path(), 4);
}

/// `n` pods started then removed through `kit`: their addresses distinct,
/// equal to the leases in `data` and on each pod's eth0, and all released
/// at the end. The addresses they had.
fn pods_come_and_go(kit: &Containerd, data: &Path, n: usize) -> BTreeSet<String> {
    let pods: Vec<String> = (0..n)
        .map(|i| {
            kit.run_pod("default", &format!("pod-{i}"))
                .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", kit.log_tail()))
        })
        .collect();
    let ips: BTreeSet<String> = pods.iter().map(|id| kit.pod_ip(id)).collect();
    assert_eq!(ips.len(), pods.len(), "addresses are distinct: {ips:?}");
    assert_eq!(leased(data), ips, "the leases are the pods' addresses");
    for id in &pods {
        assert_eq!(
            kit.eth0_addresses(id),
            vec![kit.pod_ip(id)],
            "eth0 carries it"
        );
    }
    for id in &pods {
        kit.remove_pod(id).unwrap();
    }
    assert!(leased(data).is_empty(), "all released on removal");
    ips
}

#[test]
fn pods_through_containerd_get_distinct_addresses_with_host_local() {
    if !containerd::available() {
        return;
    }
    lifecycle(
        json!({"policy": "host-local", "ranges": [[{"subnet": "10.231.1.0/24"}]]}),
        "wict1",
    );
}

#[test]
fn pods_through_containerd_get_distinct_addresses_with_pooled() {
    if !containerd::available() {
        return;
    }
    lifecycle(
        json!({"policy": "pooled", "cooldownSeconds": 0,
               "pools": [{"name": "p", "cidr": "10.231.2.0/24", "blockSize": 28}]}),
        "wict2",
    );
}

#[test]
fn pods_through_containerd_get_distinct_addresses_with_sticky_and_keep_them() {
    if !containerd::available() {
        return;
    }
    let policy = json!({"policy": "sticky", "holdSeconds": 600,
                        "ranges": [[{"subnet": "10.231.3.0/24"}]]});
    lifecycle(policy.clone(), "wict3");
    // A pod re-created under the same name gets its address back.
    let data = tempfile::tempdir().unwrap();
    let conf = containerd::chain("wict3", ipam(policy, data.path()));
    let kit = containerd::start(&conf, "wict3");
    let first = kit.run_pod("default", "web-0").unwrap();
    let other = kit.run_pod("default", "web-1").unwrap();
    let ip = kit.pod_ip(&first);
    kit.remove_pod(&first).unwrap();
    let third = kit.run_pod("default", "db-0").unwrap();
    assert_ne!(kit.pod_ip(&third), ip, "a held address goes to no one else");
    let again = kit.run_pod("default", "web-0").unwrap();
    assert_ne!(again, first, "a new sandbox");
    assert_eq!(kit.pod_ip(&again), ip, "web-0 keeps its address");
    for id in [other, third, again] {
        kit.remove_pod(&id).unwrap();
    }
}

#[test]
fn pods_through_containerd_get_dhcp_leases_with_the_dhcp_policy() {
    if !containerd::available() || !crate::dhcp::dhcp_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let policy = json!({"policy": "dhcp", "grant": ["dhcp"], "dhcpTimeoutMs": 8000});
    let mut chain = containerd::chain("wict10", ipam(policy, data.path()));
    // The bridge is the DHCP server's network: made here, with the
    // server's address, and not a gateway the plugin sets up.
    chain["plugins"][0]["isGateway"] = json!(false);
    let kit = containerd::start(&chain, "wict10");
    for args in [
        vec!["link", "add", "wict10", "type", "bridge"],
        vec!["addr", "add", "10.231.10.1/24", "dev", "wict10"],
        vec!["link", "set", "wict10", "up"],
    ] {
        assert!(
            Command::new("ip").args(&args).status().unwrap().success(),
            "ip {args:?}"
        );
    }
    let server_dir = tempfile::tempdir().unwrap();
    let _server = crate::dhcp::Dnsmasq::on_host(
        "wict10",
        server_dir.path().join("leases"),
        &[
            "--dhcp-range=10.231.10.50,10.231.10.150,255.255.255.0,1h",
            "--no-ping",
        ],
    );
    let ips = pods_come_and_go(&kit, data.path(), 2);
    assert!(
        ips.iter().all(|ip| ip.starts_with("10.231.10.")),
        "from the server's range: {ips:?}"
    );
}

/// A kit on host-local with pods `live` kept and `lost` removed behind
/// the runtime's back after a DEL that failed: the store refused (its
/// folder made writable by others), so StopPodSandbox failed, and the
/// sandbox was then removed without it.
struct Leaky {
    data: tempfile::TempDir,
    kit: Containerd,
    live: Vec<String>,
    /// The addresses of the pods lost.
    leaked: BTreeSet<String>,
}

fn leaky(bridge: &str, subnet: &str) -> Leaky {
    let data = tempfile::tempdir().unwrap();
    let conf = containerd::chain(
        bridge,
        ipam(
            json!({"policy": "host-local", "ranges": [[{"subnet": subnet}]]}),
            data.path(),
        ),
    );
    let mut kit = containerd::start(&conf, bridge);
    let run = |name: &str| kit.run_pod("default", name).unwrap();
    let live = vec![run("live-0"), run("live-1")];
    let lost = vec![run("lost-0"), run("lost-1")];
    let leaked: BTreeSet<String> = lost.iter().map(|id| kit.pod_ip(id)).collect();
    let store_dir = data.path();
    set_mode(store_dir, 0o777);
    for id in &lost {
        let e = kit.stop_pod(id).unwrap_err();
        assert!(
            e.contains("ipam.dataDir"),
            "the DEL failed on the store: {e}"
        );
    }
    set_mode(store_dir, 0o755);
    for id in &lost {
        kit.forget_sandbox(id);
    }
    let known: BTreeSet<String> = kit.sandboxes().unwrap().into_iter().collect();
    assert_eq!(
        known,
        live.iter().cloned().collect(),
        "the runtime lost the sandboxes"
    );
    assert_eq!(leased(data.path()).len(), 4, "and their addresses leaked");
    Leaky {
        data,
        kit,
        live,
        leaked,
    }
}

/// Rewrites which runtime earlier passes on node-a asked, in `pods`.
fn set_runtime(data: &Path, runtime: &str) {
    use wasm_ipam::reconcile::marks;
    use wasm_ipam::store::Store;
    let store = wasm_ipam::store::SqliteStore::open(data).unwrap();
    let mut txn = store.begin("pods").unwrap();
    let mut counters = marks::counters(&mut *txn, "node-a").unwrap();
    counters.runtime = runtime.into();
    marks::set_counters(&mut *txn, "node-a", &counters).unwrap();
    txn.commit().unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn reconcile_releases_exactly_the_leaked_and_only_after_the_grace_period() {
    if !containerd::available() {
        return;
    }
    let mut l = leaky("wict4", "10.231.4.0/24");
    let data = l.data.path().to_path_buf();
    let live_ips: BTreeSet<String> = l.live.iter().map(|id| l.kit.pod_ip(id)).collect();
    let t0 = now();

    let dry = reconcile(&l.kit, "10m", t0, &["--dry-run"]).unwrap();
    assert!(dry.contains("2 without a sandbox"), "{dry}");
    assert!(dry.contains("(dry run: nothing changed)"), "{dry}");
    assert!(
        leases_json(&["--data-dir", data.to_str().unwrap()])
            .to_string()
            .find("orphanedSince")
            .is_none(),
        "a dry run marks nothing"
    );

    // The first pass that sees them only marks them.
    let first = reconcile(&l.kit, "10m", t0, &[]).unwrap();
    assert!(first.contains("0 attachment(s) released"), "{first}");
    for ip in &l.leaked {
        assert!(first.contains(&format!("kept {ip} of ")), "{first}");
    }
    assert!(first.contains("first seen now"), "{first}");
    let listed = leases_json(&["--data-dir", data.to_str().unwrap()]);
    for lease in listed["networks"][0]["leases"].as_array().unwrap() {
        let lost = l.leaked.contains(lease["address"].as_str().unwrap());
        assert_eq!(
            lease.get("orphanedSince").is_some(),
            lost,
            "leases marks the orphans: {lease}"
        );
    }
    let table = Command::new(plugin())
        .args(["leases", "--data-dir", data.to_str().unwrap()])
        .env("WASM_IPAM_NOW", (t0 + 120).to_string())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("no sandbox in the runtime for 2m"),
        "{table}"
    );

    let early = reconcile(&l.kit, "10m", t0 + 599, &[]).unwrap();
    assert!(early.contains("0 attachment(s) released"), "{early}");
    assert_eq!(leased(&data).len(), 4);

    // Passes remember the runtime they asked: another one answering (as
    // if given CRI-O's socket on this containerd node) is no judge of these
    // pods, and neither is one that does not answer.
    set_runtime(&data, "cri-o");
    let other = reconcile(&l.kit, "10m", t0 + 700, &[]).unwrap_err();
    assert!(
        other.contains("asked cri-o, but containerd answers") && other.contains("--new-runtime"),
        "{other}"
    );
    assert_eq!(leased(&data).len(), 4);
    l.kit.stop();
    let down = reconcile(&l.kit, "10m", t0 + 700, &[]).unwrap_err();
    assert!(
        down.contains("cannot be reached") && down.contains("nothing was released"),
        "{down}"
    );
    assert_eq!(leased(&data).len(), 4);
    l.kit.restart();

    let done = reconcile(&l.kit, "10m", t0 + 700, &["--new-runtime"]).unwrap();
    for ip in &l.leaked {
        assert!(done.contains(&format!("released {ip} of ")), "{done}");
    }
    assert!(done.contains("2 attachment(s) released"), "{done}");
    assert_eq!(
        leased(&data),
        live_ips,
        "exactly the leaked went; the live pods keep theirs"
    );
    for id in &l.live {
        assert_eq!(l.kit.eth0_addresses(id), vec![l.kit.pod_ip(id)]);
    }
    let again = reconcile(&l.kit, "10m", t0 + 800, &[]).unwrap();
    assert!(again.contains("0 without a sandbox"), "{again}");

    let metrics = Command::new(plugin())
        .args(["metrics", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for line in [
        "wasm_ipam_reconcile_released_addresses{network=\"pods\",node=\"node-a\"} 2",
        "wasm_ipam_reconcile_orphans_seen{network=\"pods\",node=\"node-a\"} 2",
        "wasm_ipam_reconcile_passes{network=\"pods\",node=\"node-a\"} 4",
        &format!(
            "wasm_ipam_reconcile_last_good_pass_timestamp_seconds{{network=\"pods\",node=\"node-a\"}} {}",
            t0 + 800
        ),
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[test]
fn after_the_runtime_lost_its_state_the_new_pods_are_kept_and_the_old_released() {
    if !containerd::available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let conf = containerd::chain(
        "wict5",
        ipam(
            json!({"policy": "sticky", "holdSeconds": 0,
                    "ranges": [[{"subnet": "10.231.5.0/24"}]]}),
            data.path(),
        ),
    );
    let mut kit = containerd::start(&conf, "wict5");
    let old: BTreeSet<String> = ["a", "b", "c"]
        .iter()
        .map(|n| kit.pod_ip(&kit.run_pod("default", n).unwrap()))
        .collect();
    kit.wipe();
    assert!(
        kit.sandboxes().unwrap().is_empty(),
        "containerd starts empty"
    );
    let new = kit.run_pod("default", "d").unwrap();
    let new_ip = kit.pod_ip(&new);
    assert!(!old.contains(&new_ip));
    assert_eq!(leased(data.path()).len(), 4);
    let out = reconcile(&kit, "0", now(), &[]).unwrap();
    assert!(out.contains("3 attachment(s) released"), "{out}");
    assert_eq!(leased(data.path()), BTreeSet::from([new_ip]));
}

#[test]
fn on_a_shared_etcd_only_this_nodes_leaks_are_released() {
    if !containerd::available() || !crate::etcd::etcd_available() {
        return;
    }
    let etcd = etcd_cluster::Cluster::start(1);
    let store =
        json!({"etcd": {"endpoints": etcd.endpoints(), "prefix": "/wasm-ipam", "timeoutMs": 1500}});
    let pooled = |node: &str| {
        json!({"policy": "pooled", "node": node, "store": store, "cooldownSeconds": 0,
               "pools": [{"name": "main", "cidr": "10.231.6.0/24", "blockSize": 28}]})
    };
    let data = tempfile::tempdir().unwrap();
    let conf = containerd::chain("wict6", ipam(pooled("node-a"), data.path()));
    let mut kit = containerd::start(&conf, "wict6");
    // Node b's pods, whose sandboxes this runtime has never heard of.
    let mut node_b = crate::common::Net::with_ipam("1.0.0", pooled("node-b"));
    node_b.conf["name"] = json!("pods");
    let b_ips: BTreeSet<String> = ["b-0", "b-1"]
        .iter()
        .map(|id| node_b.add_ip(id).split('/').next().unwrap().to_string())
        .collect();
    let live = kit.run_pod("default", "live").unwrap();
    let lost = kit.run_pod("default", "lost").unwrap();
    let (live_ip, lost_ip) = (kit.pod_ip(&live), kit.pod_ip(&lost));
    kit.forget_sandbox(&lost);

    let conflist = kit.conf_dir().join("10-pods.conflist");
    let held = || -> BTreeSet<String> {
        leases_json(&["--config", conflist.to_str().unwrap()])["networks"][0]["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["address"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(held().len(), 4);
    let out = reconcile(&kit, "0", now(), &[]).unwrap();
    assert!(
        out.contains("2 attachments, 1 without a sandbox"),
        "node a holds two: {out}"
    );
    assert!(
        out.contains(&format!("released {lost_ip} of {lost}/eth0")),
        "{out}"
    );
    let mut expected = b_ips.clone();
    expected.insert(live_ip);
    assert_eq!(
        held(),
        expected,
        "node b's attachments are not this node's to judge"
    );
}

#[test]
fn serve_with_the_reconciler_on_reclaims_a_leak_by_itself() {
    if !containerd::available() {
        return;
    }
    let l = leaky("wict7", "10.231.7.0/24");
    let live_ips: BTreeSet<String> = l.live.iter().map(|id| l.kit.pod_ip(id)).collect();
    let run = tempfile::tempdir().unwrap();
    let mut serve = Command::new(plugin())
        .args(["serve", "--socket"])
        .arg(run.path().join("wasm-ipam.sock"))
        .args([
            "--reconcile-cri",
            &l.kit.endpoint(),
            "--reconcile-every",
            "1s",
            "--grace",
            "2s",
            "--conf-dir",
        ])
        .arg(l.kit.conf_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while leased(l.data.path()) != live_ips
        && started.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let _ = serve.kill();
    let out = serve.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        leased(l.data.path()),
        live_ips,
        "the leak was reclaimed; log:\n{log}"
    );
    for ip in &l.leaked {
        assert!(
            log.contains(&format!("reconcile: released {ip} of ")),
            "{log}"
        );
    }
}

/// A child killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_socket_that_is_no_runtime_or_none_at_all_releases_nothing() {
    if !crate::etcd::etcd_available() {
        return;
    }
    // A node whose one pod's sandbox no runtime here knows.
    let data = tempfile::tempdir().unwrap();
    let conf_dir = tempfile::tempdir().unwrap();
    let mut net = crate::common::Net::with_ipam(
        "1.0.0",
        json!({"policy": "host-local", "node": "node-a", "dataDir": data.path(),
               "ranges": [[{"subnet": "10.231.9.0/24"}]]}),
    );
    net.conf["ipam"]["dataDir"] = json!(data.path());
    net.conf["name"] = json!("pods");
    net.add_ip("gone");
    std::fs::write(conf_dir.path().join("10-pods.conf"), net.conf.to_string()).unwrap();
    // etcd answers gRPC on a unix socket, but not CRI: etcd makes the
    // socket `etcd:1` in its working folder.
    let run = tempfile::tempdir().unwrap();
    let _etcd = Killed(
        Command::new(etcd_cluster::ETCD)
            .current_dir(run.path())
            .args(["--data-dir", "d", "--listen-client-urls", "unix://etcd:1"])
            .args(["--advertise-client-urls", "unix://etcd:1"])
            .args(["--listen-peer-urls", "unix://peer:1"])
            .args(["--initial-advertise-peer-urls", "unix://peer:1"])
            .args(["--initial-cluster", "default=unix://peer:1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = run.path().join("etcd:1");
    let started = std::time::Instant::now();
    while !socket.exists() && started.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let later = now() + 3600;
    let not_cri =
        reconcile_at(socket.to_str().unwrap(), conf_dir.path(), "0", later, &[]).unwrap_err();
    assert!(
        not_cri.contains("does not speak CRI v1") && not_cri.contains("nothing was released"),
        "{not_cri}"
    );
    let missing = run.path().join("no.sock");
    let none =
        reconcile_at(missing.to_str().unwrap(), conf_dir.path(), "0", later, &[]).unwrap_err();
    assert!(
        none.contains("cannot be reached") && none.contains("no.sock"),
        "{none}"
    );
    assert_eq!(leased(data.path()).len(), 1, "the lease stays");
    let listed = leases_json(&["--data-dir", data.path().to_str().unwrap()]);
    assert!(
        listed["networks"][0]["leases"][0]
            .get("orphanedSince")
            .is_none(),
        "and no pass marked it: {listed}"
    );
}

/// The pass itself, with a runtime's list the test chooses: a pod whose ADD
/// committed before its sandbox was listed (an ADD in flight) is marked,
/// and its mark goes once the runtime lists it, so the grace starts again.
#[test]
fn an_add_in_flight_is_marked_then_forgiven_when_its_sandbox_appears() {
    use wasm_ipam::reconcile::pass::{self, Pass};
    use wasm_ipam::runner::{self, Mode};
    let data = tempfile::tempdir().unwrap();
    let mut net = crate::common::Net::with_ipam(
        "1.1.0",
        json!({"policy": "host-local", "node": "node-a", "ranges": [[{"subnet": "10.231.11.0/24"}]]}),
    );
    net.conf["ipam"]["dataDir"] = json!(data.path());
    net.conf["name"] = json!("pods");
    let ip = net.add_ip("early");
    let conf = wasm_ipam::cni::config::NetConf::parse(net.conf.to_string().as_bytes()).unwrap();
    let store = runner::open_store(&conf).unwrap();
    let sandbox = runner::load_policy(&conf).unwrap();
    let t0 = now();
    let run = |listed: &[&str], at: u64| {
        let ids: BTreeSet<String> = listed.iter().map(|s| s.to_string()).collect();
        let p = Pass {
            conf: &conf,
            node: "node-a",
            sandboxes: &ids,
            runtime: "containerd",
            new_runtime: false,
            grace: 600,
            now: at,
            mode: Mode::Commit,
        };
        pass::run(&p, &*store, &sandbox).unwrap()
    };
    let first = run(&[], t0);
    assert_eq!(first.orphans.len(), 1);
    assert!(!first.orphans[0].released && first.orphans[0].since == t0);
    // The runtime lists the sandbox once its network is up.
    let listed = run(&["early"], t0 + 700);
    assert!(listed.orphans.is_empty() && listed.released.is_empty());
    // Gone again later: the grace starts again, from now.
    let again = run(&[], t0 + 800);
    assert_eq!(again.orphans[0].since, t0 + 800, "{again:?}");
    assert!(again.released.is_empty());
    let done = run(&[], t0 + 1400);
    assert_eq!(done.released.len(), 1);
    assert_eq!(done.released[0].address, ip.split('/').next().unwrap());
    assert!(leased(data.path()).is_empty());
}

/// A policy that does not export `inspect` cannot have its attachments
/// listed: the pass says so and changes nothing, not even its marks.
#[test]
fn a_policy_without_inspect_is_named_and_nothing_is_changed() {
    use wasm_ipam::reconcile::pass::{self, Pass, PassError};
    use wasm_ipam::runner::{self, Mode};
    let mut net = crate::common::Net::with_ipam(
        "1.1.0",
        json!({"policy": crate::common::test_policy("policy_bare"), "node": "node-a"}),
    );
    net.conf["name"] = json!("pods");
    assert!(net.add("gone").ok());
    let before = net.store_dump();
    let conf = wasm_ipam::cni::config::NetConf::parse(net.conf.to_string().as_bytes()).unwrap();
    let store = runner::open_store(&conf).unwrap();
    let sandbox = runner::load_policy(&conf).unwrap();
    let none = BTreeSet::new();
    let p = Pass {
        conf: &conf,
        node: "node-a",
        sandboxes: &none,
        runtime: "containerd",
        new_runtime: false,
        grace: 0,
        now: now(),
        mode: Mode::Commit,
    };
    let e = pass::run(&p, &*store, &sandbox).unwrap_err();
    assert!(matches!(e, PassError::NotInspectable(_)), "{e:?}");
    assert!(e.to_string().contains("does not export inspect"), "{e}");
    drop(store);
    assert_eq!(net.store_dump(), before, "nothing written");
}
