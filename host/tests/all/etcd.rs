//! The etcd backend against a real etcd on loopback: the store contract,
//! conflict detection, three pooled nodes sharing one address space, and
//! faults (etcd stopped mid-run, hosts killed mid-call).
//!
//! Each test starts its own etcd (Debian's etcd-server) on free ports with
//! a temporary data dir, so it can stop and restart it. CI installs
//! etcd-server; elsewhere these tests say they were skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cni::exec::{Call, Outcome};
use serde_json::{Value, json};
use wasm_ipam::cni::config::EtcdConf;
use wasm_ipam::store::{EtcdStore, Store, StoreError, contract};

use crate::common::{Net, assert_error};

/// The pool of the pooled tests, 10.50.0.0/16, as a number.
const BASE: u32 = 10 << 24 | 50 << 16;

pub(crate) fn etcd_available() -> bool {
    crate::common::installed(etcd_cluster::ETCD, "etcd-server")
}

/// One etcd member on loopback, killed when dropped.
struct Etcd {
    cluster: etcd_cluster::Cluster,
}

impl Etcd {
    fn start() -> Etcd {
        Etcd {
            cluster: etcd_cluster::Cluster::start(1),
        }
    }

    fn url(&self) -> String {
        self.cluster.endpoints().remove(0)
    }

    /// Starts again on the same data dir and ports; returns once it serves.
    fn resume(&mut self) {
        self.cluster.spawn(0);
        self.cluster.wait_serving();
    }

    /// Kills it, as a crash or a lost node would.
    fn stop(&mut self) {
        self.cluster.kill(0);
    }

    fn conf(&self, prefix: &str) -> EtcdConf {
        EtcdConf {
            endpoints: vec![self.url()],
            prefix: prefix.into(),
            timeout: Duration::from_millis(1500),
            tls: None,
            auth: None,
        }
    }

    fn store(&self, prefix: &str) -> EtcdStore {
        EtcdStore::connect(&self.conf(prefix), None).unwrap()
    }

    /// The `ipam.store` object for network configs.
    fn ipam_store(&self) -> Value {
        json!({"etcd": {"endpoints": [self.url()], "prefix": "/wasm-ipam", "timeoutMs": 1500}})
    }
}

#[test]
fn the_etcd_backend_keeps_the_store_contract() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start();
    contract::check_backend(&etcd.store("/contract"));
}

/// `key` read in a fresh transaction.
fn read(store: &dyn Store, key: &str) -> Option<Vec<u8>> {
    store.begin("n").unwrap().get(key).unwrap()
}

#[test]
fn the_etcd_backend_detects_every_kind_of_conflict() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start();
    let store = etcd.store("/conflicts");
    let write = |k: &str, v: Option<&[u8]>| {
        let mut t = store.begin("n").unwrap();
        match v {
            Some(v) => t.put(k, v).unwrap(),
            None => t.delete(k).unwrap(),
        }
        t.commit().unwrap();
    };
    write("lease/a", Some(b"1"));
    write("lease/b", Some(b"1"));

    // A key read, then changed by someone else.
    let mut t = store.begin("n").unwrap();
    assert_eq!(t.get("lease/a").unwrap().as_deref(), Some(&b"1"[..]));
    t.put("out", b"x").unwrap();
    write("lease/a", Some(b"2"));
    assert!(matches!(t.commit(), Err(StoreError::Conflict)));

    // A key read, then deleted.
    let mut t = store.begin("n").unwrap();
    t.get("lease/b").unwrap();
    t.put("out", b"x").unwrap();
    write("lease/b", None);
    assert!(matches!(t.commit(), Err(StoreError::Conflict)));

    // A key read as absent, then created.
    let mut t = store.begin("n").unwrap();
    assert_eq!(t.get("lease/c").unwrap(), None);
    t.put("lease/c", b"mine").unwrap();
    write("lease/c", Some(b"theirs"));
    assert!(matches!(t.commit(), Err(StoreError::Conflict)));
    assert_eq!(read(&store, "lease/c").as_deref(), Some(&b"theirs"[..]));

    // A peek is outside the read set: a record every writer writes the
    // same does not make concurrent calls lose to each other.
    let mut t = store.begin("n").unwrap();
    assert_eq!(t.peek(".wasm-ipam/network").unwrap(), None);
    t.put(".wasm-ipam/network", b"same").unwrap();
    write(".wasm-ipam/network", Some(b"same"));
    t.commit().unwrap();
    let mut t = store.begin("n").unwrap();
    t.put("own", b"x").unwrap();
    assert_eq!(t.peek("own").unwrap().as_deref(), Some(&b"x"[..]));

    // A scanned range that gains a key (a phantom).
    let mut t = store.begin("n").unwrap();
    let seen = t.scan("lease/", None, 100).unwrap();
    t.put("count", seen.len().to_string().as_bytes()).unwrap();
    write("lease/d", Some(b"new"));
    assert!(matches!(t.commit(), Err(StoreError::Conflict)));
    assert_eq!(read(&store, "count"), None, "a lost race writes nothing");

    // Reads are a snapshot, and see the transaction's own writes.
    let mut t = store.begin("n").unwrap();
    write("lease/e", Some(b"later"));
    assert_eq!(
        t.get("lease/e").unwrap(),
        None,
        "written after the snapshot"
    );
    t.put("lease/f", b"own").unwrap();
    t.delete("lease/a").unwrap();
    let keys: Vec<String> = t
        .scan("lease/", None, 100)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["lease/c", "lease/d", "lease/f"]);
    // A page that loses a key to the transaction's own delete is topped up
    // from the next one, so a short page still means the end.
    let page: Vec<String> = t
        .scan("lease/", None, 2)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(page, ["lease/c", "lease/d"]);

    // Writes to keys nobody else touched commit.
    let mut t = store.begin("n").unwrap();
    t.get("lease/c").unwrap();
    t.put("lease/g", b"ok").unwrap();
    write("unrelated", Some(b"x"));
    t.commit().unwrap();
    assert_eq!(read(&store, "lease/g").as_deref(), Some(&b"ok"[..]));
}

fn pooled(etcd: &Etcd, node: &str) -> Net {
    pooled_on(etcd.ipam_store(), node)
}

/// The `cluster` network of `pooled` on the store `store` (an `ipam.store`
/// object), compiled once.
pub(crate) fn pooled_on(store: Value, node: &str) -> Net {
    let mut net = Net::with_ipam(
        "1.0.0",
        json!({"policy": "pooled", "node": node, "store": store,
               "pools": [{"name": "main", "cidr": "10.50.0.0/16", "blockSize": 26}]}),
    );
    net.conf["name"] = json!("cluster");
    // Compiled once here, not by every process of a concurrent burst.
    let cache = net.conf["ipam"]["cacheDir"].as_str().unwrap().to_string();
    let status = Command::new(crate::common::plugin())
        .args(["compile", "pooled", "--cache-dir", &cache])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    net
}

/// Every key of the network, straight from etcd.
fn dump(etcd: &Etcd, network: &str) -> BTreeMap<String, Vec<u8>> {
    dump_store(&etcd.store("/wasm-ipam"), network)
}

pub(crate) fn dump_store(store: &dyn Store, network: &str) -> BTreeMap<String, Vec<u8>> {
    let mut t = store.begin(network).unwrap();
    let mut out = BTreeMap::new();
    loop {
        let after = out.keys().next_back().cloned();
        let page = t.scan("", after.as_deref(), 1000).unwrap();
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// The leases and the owner index agree one to one, and every block's count
/// matches the leases inside it: nothing was half-applied.
pub(crate) fn assert_consistent(data: &BTreeMap<String, Vec<u8>>) -> BTreeMap<IpAddr, String> {
    let mut leases = BTreeMap::new();
    for (k, v) in data.range("lease/".to_string().."lease0".to_string()) {
        let ip: IpAddr = k["lease/".len()..].parse().unwrap();
        let lease: Value = serde_json::from_slice(v).unwrap();
        let id = lease["containerId"].as_str().unwrap().to_string();
        let owner = format!("owner/{id}/{}/{ip}", lease["ifname"].as_str().unwrap());
        assert!(data.contains_key(&owner), "{k} has no {owner}");
        leases.insert(ip, id);
    }
    let owners = data.keys().filter(|k| k.starts_with("owner/")).count();
    assert_eq!(owners, leases.len(), "an owner entry without its lease");
    let mut used: BTreeMap<u32, u64> = BTreeMap::new();
    for ip in leases.keys() {
        if let IpAddr::V4(v4) = ip {
            *used.entry((u32::from(*v4) - BASE) / 64).or_default() += 1;
        }
    }
    for (k, v) in data.range("block/main/".to_string().."block/main0".to_string()) {
        let idx = u32::from_str_radix(&k["block/main/".len()..], 16).unwrap();
        let block: Value = serde_json::from_slice(v).unwrap();
        assert_eq!(
            block["used"].as_u64().unwrap(),
            used.get(&idx).copied().unwrap_or(0),
            "block {idx}'s count disagrees with its leases"
        );
    }
    leases
}

/// The node whose block holds `ip`.
fn block_node(data: &BTreeMap<String, Vec<u8>>, ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        panic!("v4 only")
    };
    let idx = (u32::from(v4) - BASE) / 64;
    let block: Value = serde_json::from_slice(&data[&format!("block/main/{idx:032x}")]).unwrap();
    block["node"].as_str().unwrap().to_string()
}

fn conflicts_in(out: &Outcome) -> usize {
    out.stderr.matches("store conflict on attempt").count()
}

#[test]
fn three_pooled_nodes_share_one_address_space_through_etcd() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start();
    let nodes: Vec<(String, Net)> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| (n.to_string(), pooled(&etcd, n)))
        .collect();
    // 3 x 64 ADDs, all in flight at once: one thread per call, each a
    // separate process as a runtime would start it.
    let outcomes: Vec<(String, String, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .flat_map(|(node, net)| (0..64).map(move |i| (node, net, i)))
            .map(|(node, net, i)| {
                s.spawn(move || {
                    let id = format!("{node}-{i}");
                    let out = net.add(&id);
                    (node.clone(), id, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut conflicts = 0;
    let mut given: BTreeMap<IpAddr, (String, String)> = BTreeMap::new();
    for (node, id, out) in &outcomes {
        assert!(out.ok(), "{id}: {} {}", out.stdout, out.stderr);
        conflicts += conflicts_in(out);
        let addr = out.json()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string();
        let ip: IpAddr = addr.split('/').next().unwrap().parse().unwrap();
        let before = given.insert(ip, (node.clone(), id.clone()));
        assert!(before.is_none(), "{ip} given to {id} and {before:?}");
    }
    assert_eq!(given.len(), 192, "no duplicate address");
    eprintln!("3 nodes x 64 concurrent ADDs: {conflicts} conflicts retried");

    let data = dump(&etcd, "cluster");
    let leases = assert_consistent(&data);
    assert_eq!(leases.len(), 192);
    // The pool has 1024 blocks, so no node ever had to borrow.
    for (ip, (node, id)) in &given {
        assert_eq!(
            &block_node(&data, *ip),
            node,
            "{id} got {ip} from another node's block"
        );
        assert_eq!(&leases[ip], id);
    }
    // The tools read the shared store like a local one.
    let blocks: BTreeSet<String> = data
        .keys()
        .filter(|k| k.starts_with("block/"))
        .cloned()
        .collect();
    assert!(blocks.len() >= 3, "{blocks:?}");
}

#[test]
fn twenty_four_nodes_starting_at_once_all_get_addresses_without_a_lost_race() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start();
    // One network, one compiled cache; each node its own name and dataDir,
    // as 24 machines sharing one etcd.
    let net = pooled(&etcd, "node-00");
    let dirs: Vec<tempfile::TempDir> = (0..24).map(|_| tempfile::tempdir().unwrap()).collect();
    let confs: Vec<(String, Value)> = dirs
        .iter()
        .enumerate()
        .map(|(n, dir)| {
            let node = format!("node-{n:02}");
            let mut conf = net.conf.clone();
            conf["ipam"]["node"] = json!(node);
            conf["ipam"]["dataDir"] = json!(dir.path());
            (node, conf)
        })
        .collect();
    let outcomes: Vec<(String, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = confs
            .iter()
            .flat_map(|(node, conf)| (0..4).map(move |i| (node, conf, i)))
            .map(|(node, conf, i)| {
                let net = &net;
                s.spawn(move || {
                    (
                        node.clone(),
                        net.run_conf(&Call::attach("ADD", &format!("{node}-{i}")), conf),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut given = BTreeSet::new();
    let data = dump(&etcd, "cluster");
    for (node, out) in &outcomes {
        assert!(out.ok(), "{node}: {} {}", out.stdout, out.stderr);
        // Each node starts from its own block, so no two of them read a
        // key the other writes: nothing is retried. (From the lowest
        // block, nearly every first ADD lost a race.)
        assert_eq!(conflicts_in(out), 0, "{node}: {}", out.stderr);
        let addr = out.json()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string();
        let ip: IpAddr = addr.split('/').next().unwrap().parse().unwrap();
        assert_eq!(
            &block_node(&data, ip),
            node,
            "{ip} is from its node's block"
        );
        assert!(given.insert(ip), "{ip} given twice");
    }
    assert_eq!(given.len(), 96);
    assert_eq!(assert_consistent(&data).len(), 96);
}

#[test]
fn etcd_going_away_is_try_again_and_the_store_stays_consistent() {
    if !etcd_available() {
        return;
    }
    let mut etcd = Etcd::start();
    let net = pooled(&etcd, "node-a");
    let mut held = Vec::new();
    for i in 0..5 {
        held.push(net.add_ip(&format!("before-{i}")));
    }
    // Stopped in the middle of a run of concurrent calls.
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let net = &net;
                s.spawn(move || net.add(&format!("during-{i}")))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(40));
        etcd.stop();
        calls.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in outcomes.iter().filter(|o| !o.ok()) {
        assert_error(out, 11, "etcd at");
    }
    let start = Instant::now();
    let out = net.add("while-down");
    assert_error(&out, 11, "try again later");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "a call against a dead etcd must end at its timeout"
    );

    etcd.resume();
    let data = dump(&etcd, "cluster");
    let leases = assert_consistent(&data);
    for (i, out) in outcomes.iter().enumerate() {
        let id = format!("during-{i}");
        let holds = leases.values().any(|v| *v == id);
        // A call that succeeded holds its address. One that failed may have
        // committed just before the answer was lost: its runtime's DEL
        // releases it; here, it holds one address at most.
        if out.ok() {
            assert!(holds, "{id} succeeded but holds nothing");
        }
    }
    assert_eq!(
        leases.values().filter(|v| v.starts_with("before-")).count(),
        5
    );
    // And it carries on.
    let ip = net.add_ip("after");
    assert!(!held.contains(&ip));
    assert_consistent(&dump(&etcd, "cluster"));
}

#[test]
fn a_host_killed_mid_call_leaves_nothing_half_applied_in_etcd() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start();
    let net = pooled(&etcd, "node-a");
    net.add_ip("first");
    let before = dump(&etcd, "cluster");
    // Killed at every store call of an ADD that claims a fresh block, and
    // just before the commit: nothing of it reaches etcd.
    let mut fresh = net.conf.clone();
    fresh["ipam"]["node"] = json!("node-z");
    for point in ["call:1", "call:3", "call:6", "call:10", "commit"] {
        let mut call = Call::attach("ADD", "victim");
        call.extra = vec![(wasm_ipam::envvars::TEST_CRASH_AT.into(), point.into())];
        let out = net.run_conf(&call, &fresh);
        assert!(!out.ok(), "{point}: the process was not killed");
        assert_eq!(
            dump(&etcd, "cluster"),
            before,
            "{point}: something was written"
        );
    }
    // Killed right after the commit: all of it is there.
    let mut call = Call::attach("ADD", "victim");
    call.extra = vec![(
        wasm_ipam::envvars::TEST_CRASH_AT.into(),
        "after-commit".into(),
    )];
    assert!(!net.run_conf(&call, &fresh).ok());
    let leases = assert_consistent(&dump(&etcd, "cluster"));
    assert!(leases.values().any(|v| v == "victim"));

    // Killed at random moments under load.
    std::thread::scope(|s| {
        for i in 0..24u64 {
            let net = &net;
            s.spawn(move || {
                let call = Call::attach("ADD", &format!("load-{i}"));
                let mut child = Command::new(crate::common::plugin())
                    .env_clear()
                    .envs(call.vars())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let conf = net.conf.to_string();
                let _ =
                    std::io::Write::write_all(&mut child.stdin.take().unwrap(), conf.as_bytes());
                std::thread::sleep(Duration::from_millis(2 + (i * 7) % 40));
                let _ = child.kill();
                let _ = child.wait();
            });
        }
    });
    assert_consistent(&dump(&etcd, "cluster"));
}

/// On a shared store a reboot is one node's: its first call releases its
/// own attachments of the earlier boot and no other node's.
#[test]
fn a_rebooted_node_reclaims_only_its_own_attachments_on_etcd() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start();
    let (a, b) = (pooled(&etcd, "node-a"), pooled(&etcd, "node-b"));
    let add = |net: &Net, id: &str, boot: &str| {
        let out = net.run(&Call::attach("ADD", id).env("WASM_IPAM_BOOT_ID", boot));
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
        out
    };
    add(&a, "a1", "a-boot-1");
    add(&a, "a2", "a-boot-1");
    add(&b, "b1", "b-boot-1");
    let first = add(&a, "a3", "a-boot-2");
    assert!(
        first.stderr.contains("released a1/eth0"),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("released a2/eth0"),
        "{}",
        first.stderr
    );
    assert!(!first.stderr.contains("b1"), "{}", first.stderr);
    // node-b did not reboot: its next call releases nothing.
    let later = add(&b, "b2", "b-boot-1");
    assert!(!later.stderr.contains("reclaim"), "{}", later.stderr);
    let data = dump(&etcd, "cluster");
    let owners: BTreeSet<String> = assert_consistent(&data).into_values().collect();
    let expected: BTreeSet<String> = ["a3", "b1", "b2"].iter().map(|s| s.to_string()).collect();
    let held: BTreeSet<String> = owners
        .iter()
        .map(|o| o.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(held, expected);

    // node-a leaves the cluster: release-node, from node-b's config.
    let config = b.dir.path().join("b.conf");
    std::fs::write(&config, b.conf.to_string()).unwrap();
    let out = Command::new(crate::common::plugin())
        .args(["release-node", "node-a", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("cluster: 1 attachment of node node-a released"),
        "{text}"
    );
    let held: BTreeSet<String> = assert_consistent(&dump(&etcd, "cluster"))
        .into_values()
        .collect();
    let expected: BTreeSet<String> = ["b1", "b2"].iter().map(|s| s.to_string()).collect();
    assert_eq!(held, expected);
    // Its block affinity went too: no key and no block names node-a.
    let named: Vec<String> = dump(&etcd, "cluster")
        .into_iter()
        .filter(|(k, v)| k.contains("node-a") || String::from_utf8_lossy(v).contains("node-a"))
        .map(|(k, _)| k)
        .collect();
    assert!(named.is_empty(), "{named:?}");
}

#[test]
fn a_commit_whose_marker_lease_is_gone_is_run_again_and_then_commits() {
    if !etcd_available() {
        return;
    }
    let etcd = Etcd::start();
    let store = etcd.store("/lease-gone");
    let commit = |v: &[u8]| {
        let mut t = store.begin("n").unwrap();
        t.put("k", v).unwrap();
        t.commit()
    };
    commit(b"1").unwrap();
    // Every lease revoked behind the handle's back, as when etcd is
    // restored from a backup older than the lease: the handle's next commit
    // names a lease etcd no longer has.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let revoked = rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd.url()], None).await?;
        let leases = c.leases().await?;
        for l in leases.leases() {
            c.lease_revoke(l.id()).await?;
        }
        Ok::<_, etcd_client::Error>(leases.leases().len())
    });
    assert_eq!(revoked.unwrap(), 1, "one marker lease per handle");
    assert!(
        matches!(commit(b"2"), Err(StoreError::Conflict)),
        "a commit on a lost lease asks for the policy to run again"
    );
    let mut t = store.begin("n").unwrap();
    assert_eq!(
        t.get("k").unwrap().as_deref(),
        Some(&b"1"[..]),
        "nothing applied"
    );
    drop(t);
    commit(b"3").expect("the run after it grants a new lease and commits");
    let mut t = store.begin("n").unwrap();
    assert_eq!(t.get("k").unwrap().as_deref(), Some(&b"3"[..]));
}
