//! The shared store on a real 3-member etcd cluster, each member its own
//! process on loopback with a temporary data dir, while members die,
//! restart and lose the quorum.
//!
//! The bar is the one a node's operator sets: a routine member restart or
//! upgrade must not fail a pod. So in every burst each ADD succeeds within
//! its budget, every address is distinct, the leases in etcd are exactly the
//! successful ADDs, and a DEL of every pod leaves nothing held. Without a
//! quorum a call ends in code 11 naming etcd, and nothing is half-written.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cni::exec::{Call, Outcome};
use serde_json::{Value, json};
use wasm_ipam::cni::config::EtcdConf;
use wasm_ipam::store::EtcdStore;

use cni_conformance::netns::{self, Netns};

use crate::common::{Net, assert_error};
use crate::etcd::{assert_consistent, dump_store, etcd_available, free_port, pooled_on};

/// The budget: a call may take this long to ride out an election.
const TIMEOUT_MS: u64 = 15_000;

struct Member {
    name: String,
    /// 127.0.0.1, or the member's own address on the cluster's bridge.
    addr: IpAddr,
    client_port: u16,
    peer_port: u16,
    /// The member's own network namespace, in a partitionable cluster.
    ns: Option<Netns>,
    child: Option<Child>,
}

impl Member {
    fn url(&self) -> String {
        format!("http://{}:{}", self.addr, self.client_port)
    }

    fn peer(&self) -> String {
        format!("http://{}:{}", self.addr, self.peer_port)
    }
}

/// A cluster of etcd members, every member killed when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    /// The bridge that joins the members' namespaces to this one.
    bridge: Option<Bridge>,
}

impl Cluster {
    /// `n` members on loopback.
    fn start(n: usize) -> Cluster {
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                addr: IpAddr::from([127, 0, 0, 1]),
                client_port: free_port(),
                peer_port: free_port(),
                ns: None,
                child: None,
            })
            .collect();
        Cluster::launch(members, None)
    }

    /// `n` members, each in its own network namespace with its own address
    /// on a bridge here, so that one member can be cut off from the others
    /// while this namespace still reaches it. On loopback that cannot be
    /// done: members dial each other's peer port from ephemeral ports on
    /// the same address, so no rule tells a peer stream from a client's.
    /// `None` where this process may not make namespaces (not root).
    fn start_partitionable(n: usize) -> Option<Cluster> {
        if !netns::is_root() {
            return None;
        }
        let bridge = Bridge::new().expect("a bridge for the cluster");
        let members = (0..n)
            .map(|i| {
                let ns = Netns::new(&format!("etcd{i}")).expect("a namespace for a member");
                let addr = bridge.attach(&ns, i).expect("a member on the bridge");
                Member {
                    name: format!("m{i}"),
                    addr,
                    client_port: 2379,
                    peer_port: 2380,
                    ns: Some(ns),
                    child: None,
                }
            })
            .collect();
        Some(Cluster::launch(members, Some(bridge)))
    }

    fn launch(members: Vec<Member>, bridge: Option<Bridge>) -> Cluster {
        let mut cluster = Cluster {
            dir: tempfile::Builder::new()
                .prefix("wict-etcd")
                .tempdir()
                .unwrap(),
            members,
            bridge,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i);
        }
        cluster.wait_serving();
        cluster
    }

    /// Cuts member `i` off from every other member (a blackhole route to
    /// each in its namespace, so neither side's packets arrive), while
    /// clients here still reach it: the minority side of a partition.
    fn partition(&self, i: usize) {
        let ns = self.members[i]
            .ns
            .as_ref()
            .expect("a partitionable cluster");
        for (j, m) in self.members.iter().enumerate() {
            if j != i {
                ns.ip(&["route", "add", "blackhole", &format!("{}/32", m.addr)])
                    .unwrap();
            }
        }
    }

    /// Undoes [`Cluster::partition`].
    fn heal(&self, i: usize) {
        let ns = self.members[i]
            .ns
            .as_ref()
            .expect("a partitionable cluster");
        for (j, m) in self.members.iter().enumerate() {
            if j != i {
                ns.ip(&["route", "del", "blackhole", &format!("{}/32", m.addr)])
                    .unwrap();
            }
        }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i` (again, on its data dir and ports).
    fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let data = self.dir.path().join(&self.members[i].name);
        let m = &mut self.members[i];
        let mut etcd = match &m.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(), "/usr/bin/etcd"]);
                c
            }
            None => Command::new("/usr/bin/etcd"),
        };
        let child = etcd
            .args(["--name", &m.name, "--data-dir"])
            .arg(data)
            .args(["--listen-client-urls", &m.url()])
            .args(["--advertise-client-urls", &m.url()])
            .args(["--listen-peer-urls", &m.peer()])
            .args(["--initial-advertise-peer-urls", &m.peer()])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--max-txn-ops", "10000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        m.child = Some(child);
    }

    /// SIGKILLs member `i`, as a crash or a lost machine would.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::url).collect()
    }

    fn conf(&self) -> EtcdConf {
        EtcdConf {
            endpoints: self.endpoints(),
            prefix: "/wasm-ipam".into(),
            timeout: Duration::from_millis(TIMEOUT_MS),
        }
    }

    fn ipam_store(&self, timeout_ms: u64) -> Value {
        json!({"etcd": {"endpoints": self.endpoints(), "prefix": "/wasm-ipam",
                        "timeoutMs": timeout_ms}})
    }

    /// Returns once a transaction commits through the cluster.
    fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = EtcdStore::connect(&self.conf(), None).is_ok_and(|s| {
                use wasm_ipam::store::Store;
                s.begin("probe")
                    .is_ok_and(|mut t| t.put("probe", b"1").is_ok() && t.commit().is_ok())
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the etcd cluster did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the member that leads now.
    fn leader(&self) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ids = Vec::new();
            let mut leader = 0;
            for m in &self.members {
                let status = rt.block_on(async {
                    let mut c = etcd_client::Client::connect([m.url()], None).await?;
                    c.status().await
                });
                match status {
                    Ok(s) => {
                        ids.push(s.header().map_or(0, |h| h.member_id()));
                        leader = s.leader();
                    }
                    Err(_) => ids.push(0),
                }
            }
            if let Some(i) = ids.iter().position(|id| *id != 0 && *id == leader) {
                return i;
            }
            assert!(Instant::now() < deadline, "the cluster has no leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        // The namespaces go with the members, then the bridge.
        self.members.clear();
        self.bridge.take();
    }
}

/// A bridge in this namespace, `wict<pid>`, with 10.251.<pid % 250>.254/24;
/// deleted when dropped. Member `i` is 10.251.<pid % 250>.<i + 1> in its own
/// namespace, on a veth whose other end is a port of the bridge (deleting
/// the member's namespace deletes both ends).
struct Bridge {
    name: String,
    net: [u8; 3],
    ports: std::sync::Mutex<Vec<String>>,
}

impl Bridge {
    fn new() -> Result<Bridge, String> {
        let pid = std::process::id();
        let bridge = Bridge {
            name: format!("wict{pid}"),
            net: [10, 251, (pid % 250) as u8],
            ports: Default::default(),
        };
        netns::ip(&["link", "add", &bridge.name, "type", "bridge"])?;
        let [a, b, c] = bridge.net;
        netns::ip(&[
            "addr",
            "add",
            &format!("{a}.{b}.{c}.254/24"),
            "dev",
            &bridge.name,
        ])?;
        netns::ip(&["link", "set", &bridge.name, "up"])?;
        Ok(bridge)
    }

    fn attach(&self, ns: &Netns, i: usize) -> Result<IpAddr, String> {
        let port = format!("{}-{i}", self.name);
        let peer = format!("{port}p");
        netns::ip(&["link", "add", &port, "type", "veth", "peer", "name", &peer])?;
        self.ports.lock().unwrap().push(port.clone());
        netns::ip(&["link", "set", &peer, "netns", ns.name()])?;
        ns.ip(&["link", "set", &peer, "name", "eth0"])?;
        netns::ip(&["link", "set", &port, "master", &self.name, "up"])?;
        let [a, b, c] = self.net;
        let addr = IpAddr::from([a, b, c, i as u8 + 1]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        Ok(addr)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // A namespace's links go only when the kernel frees it, seconds
        // later; a veth deleted from this end goes with its peer at once.
        for port in self.ports.lock().unwrap().iter() {
            let _ = netns::ip(&["link", "del", port]);
        }
        let _ = netns::ip(&["link", "del", &self.name]);
    }
}

/// `nodes` nodes start `pods` pods each, all at once; `fault` runs on its
/// own thread once `after` ADDs have answered.
fn burst(
    net: &Net,
    nodes: usize,
    pods: usize,
    after: usize,
    fault: impl FnOnce() + Send,
) -> Vec<(String, Outcome)> {
    let dirs: Vec<tempfile::TempDir> = (0..nodes).map(|_| tempfile::tempdir().unwrap()).collect();
    let confs: Vec<(String, Value)> = dirs
        .iter()
        .enumerate()
        .map(|(n, dir)| {
            let mut conf = net.conf.clone();
            conf["ipam"]["node"] = json!(format!("node-{n:02}"));
            conf["ipam"]["dataDir"] = json!(dir.path());
            (format!("node-{n:02}"), conf)
        })
        .collect();
    let answered = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let answered = &answered;
        s.spawn(move || {
            while answered.load(Ordering::SeqCst) < after {
                std::thread::sleep(Duration::from_millis(5));
            }
            fault();
        });
        let handles: Vec<_> = confs
            .iter()
            .flat_map(|(node, conf)| (0..pods).map(move |i| (node, conf, i)))
            .map(|(node, conf, i)| {
                s.spawn(move || {
                    let id = format!("{node}-{i}");
                    let out = net.run_conf(&Call::attach("ADD", &id), conf);
                    answered.fetch_add(1, Ordering::SeqCst);
                    (id, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The bar for a burst: every ADD succeeded, with distinct addresses, and
/// etcd holds exactly those leases; then a DEL of every pod leaves nothing.
fn assert_burst_held(cluster: &Cluster, net: &Net, outcomes: &[(String, Outcome)]) {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| !o.ok())
        .map(|(id, o)| format!("{id}: {}", o.stdout.trim()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} ADDs failed:\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
    let mut given = BTreeSet::new();
    for (id, out) in outcomes {
        let addr = out.json()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string();
        let ip: IpAddr = addr.split('/').next().unwrap().parse().unwrap();
        assert!(given.insert(ip), "{ip} given twice ({id})");
    }
    let store = EtcdStore::connect(&cluster.conf(), None).unwrap();
    let leases = assert_consistent(&dump_store(&store, "cluster"));
    let held: BTreeSet<&String> = leases.values().collect();
    let added: BTreeSet<&String> = outcomes.iter().map(|(id, _)| id).collect();
    assert_eq!(held, added, "the leases in etcd are the successful ADDs");
    assert_eq!(leases.keys().copied().collect::<BTreeSet<_>>(), given);
    // Each pod's DEL, from its node.
    for (id, _) in outcomes {
        let node = id.rsplit_once('-').unwrap().0;
        let mut conf = net.conf.clone();
        conf["ipam"]["node"] = json!(node);
        let out = net.run_conf(&Call::attach("DEL", id), &conf);
        assert!(out.ok(), "DEL {id}: {} {}", out.stdout, out.stderr);
    }
    let left = assert_consistent(&dump_store(&store, "cluster"));
    assert!(left.is_empty(), "a DEL of every pod left {left:?}");
}

fn cluster_net(cluster: &Cluster) -> Net {
    pooled_on(cluster.ipam_store(TIMEOUT_MS), "node-00")
}

#[test]
fn the_leader_killed_mid_burst_fails_no_pod() {
    if !etcd_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let net = cluster_net(&cluster);
    let leader = cluster.leader();
    let members = std::sync::Mutex::new(&mut cluster);
    // 20 nodes x 10 pods. Before failover the issue measured 8 of 200
    // ADDs succeeding; this test, with each transient error ending the
    // call, saw 37 of 200.
    let outcomes = burst(&net, 20, 10, 30, || members.lock().unwrap().kill(leader));
    let cluster = members.into_inner().unwrap();
    assert!(
        cluster.members[leader].child.is_none(),
        "the leader was killed"
    );
    assert_burst_held(cluster, &net, &outcomes);
}

#[test]
fn a_follower_killed_or_restarted_mid_burst_fails_no_pod() {
    if !etcd_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let net = cluster_net(&cluster);
    let follower = (cluster.leader() + 1) % 3;
    let members = std::sync::Mutex::new(&mut cluster);
    let outcomes = burst(&net, 10, 10, 20, || members.lock().unwrap().kill(follower));
    let cluster = members.into_inner().unwrap();
    assert_burst_held(cluster, &net, &outcomes);
    // The member comes back, as after an upgrade, while another burst runs.
    let members = std::sync::Mutex::new(&mut *cluster);
    let outcomes = burst(&net, 10, 10, 20, || members.lock().unwrap().spawn(follower));
    let cluster = members.into_inner().unwrap();
    assert_burst_held(cluster, &net, &outcomes);
}

#[test]
fn without_a_quorum_a_call_is_try_again_naming_etcd_and_nothing_is_half_written() {
    if !etcd_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let net = pooled_on(cluster.ipam_store(2000), "node-00");
    assert!(net.add("before").ok());
    let leader = cluster.leader();
    cluster.kill(leader);
    cluster.kill((leader + 1) % 3);
    let started = Instant::now();
    let out = net.add("no-quorum");
    assert_error(&out, 11, "etcd at");
    // A generous bound on the budget, to show the call ends (it would hang
    // otherwise), not how fast.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a call without a quorum must end near its timeout"
    );
    cluster.spawn(leader);
    cluster.spawn((leader + 1) % 3);
    cluster.wait_serving();
    let store = EtcdStore::connect(&cluster.conf(), None).unwrap();
    let leases = assert_consistent(&dump_store(&store, "cluster"));
    let held: Vec<&String> = leases.values().collect();
    assert_eq!(held, ["before"], "the failed call holds nothing");
    assert!(net.add("after").ok(), "the cluster serves again");
}

#[test]
fn the_leader_partitioned_away_mid_burst_fails_no_pod() {
    if !etcd_available() {
        return;
    }
    let Some(cluster) = Cluster::start_partitionable(3) else {
        eprintln!("skipped: making namespaces needs root");
        return;
    };
    let net = cluster_net(&cluster);
    let leader = cluster.leader();
    // The old leader keeps serving clients until it sees it lost the
    // quorum; a call that reaches it must fail over to the majority.
    let outcomes = burst(&net, 10, 10, 20, || cluster.partition(leader));
    assert_burst_held(&cluster, &net, &outcomes);
    cluster.heal(leader);
    cluster.wait_serving();
    assert!(net.add("healed").ok(), "the healed cluster serves");
}
