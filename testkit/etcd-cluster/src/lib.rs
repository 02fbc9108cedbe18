//! Real etcd clusters for tests and benchmarks: each member its own
//! `/usr/bin/etcd` process with a temporary data dir, started, SIGKILLed,
//! restarted and partitioned at will.
//!
//! Two shapes:
//! - [`Cluster::start`]: members on loopback. Killing and restarting a
//!   member, or the quorum, is all most tests need.
//! - [`Cluster::start_partitionable`] (root only): each member in its own
//!   network namespace on a bridge, so [`Cluster::partition`] can cut one off
//!   from the others while clients still reach it.
//!
//! The host's failover tests and the bench's fault mode both use it, so the
//! figures in BENCHMARKS.md come from the very faults the tests prove safe.
//! Everything a cluster made (processes, namespaces, links) goes when it is
//! dropped, on a failed assertion too.

use std::net::{IpAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cni_conformance::netns::{self, Netns};

mod tls;
pub use tls::{Issued, Pki, ServerTls, Use};

/// The etcd binary Debian's etcd-server installs.
pub const ETCD: &str = "/usr/bin/etcd";

/// Whether an etcd binary is here to start members with.
pub fn available() -> bool {
    std::path::Path::new(ETCD).exists()
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a loopback port")
        .local_addr()
        .expect("its address")
        .port()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub struct Member {
    pub name: String,
    /// 127.0.0.1, or the member's own address on the cluster's bridge.
    addr: IpAddr,
    client_port: u16,
    peer_port: u16,
    /// The member's own network namespace, in a partitionable cluster.
    ns: Option<Netns>,
    pub child: Option<Child>,
    /// Whether clients reach it over TLS.
    https: bool,
}

impl Member {
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.addr, self.client_port)
    }

    fn peer(&self) -> String {
        format!("http://{}:{}", self.addr, self.peer_port)
    }
}

/// A cluster of etcd members, every member killed when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub members: Vec<Member>,
    /// The bridge that joins the members' namespaces to this one.
    bridge: Option<Bridge>,
    /// How members serve clients over TLS, in a TLS cluster.
    pub tls: Option<ServerTls>,
    /// Further flags every member is started with.
    flags: Vec<String>,
}

impl Cluster {
    /// `n` members on loopback.
    pub fn start(n: usize) -> Cluster {
        Cluster::on_loopback(n, None)
    }

    /// `n` members on loopback, each started with `flags` too (such as
    /// `--auth-token-ttl 1`).
    pub fn start_with(n: usize, flags: &[&str]) -> Cluster {
        let mut cluster = Cluster::on_loopback_with(n, None, false);
        cluster.flags = flags.iter().map(|f| f.to_string()).collect();
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_serving();
        cluster
    }

    /// `n` members on loopback serving clients over TLS only, as `tls`
    /// says, each started with `--client-cert-auth`.
    pub fn start_tls(n: usize, tls: ServerTls) -> Cluster {
        Cluster::on_loopback(n, Some(tls))
    }

    /// Like [`Cluster::start_tls`], for members whose certificate the
    /// probes would refuse (an expired one): returns once each member's
    /// client port takes connections, without a write through it.
    pub fn start_tls_unprobed(n: usize, tls: ServerTls) -> Cluster {
        let mut cluster = Cluster::on_loopback_with(n, Some(tls), false);
        for i in 0..n {
            cluster.spawn(i);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for m in &cluster.members {
            while std::net::TcpStream::connect((m.addr, m.client_port)).is_err() {
                assert!(Instant::now() < deadline, "the etcd member did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    fn on_loopback(n: usize, tls: Option<ServerTls>) -> Cluster {
        Cluster::on_loopback_with(n, tls, true)
    }

    fn on_loopback_with(n: usize, tls: Option<ServerTls>, start: bool) -> Cluster {
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                addr: IpAddr::from([127, 0, 0, 1]),
                client_port: free_port(),
                peer_port: free_port(),
                ns: None,
                child: None,
                https: tls.is_some(),
            })
            .collect();
        Cluster::launch(members, None, tls, start)
    }

    /// `n` members, each in its own network namespace with its own address
    /// on a bridge here, so that one member can be cut off from the others
    /// while this namespace still reaches it. On loopback that cannot be
    /// done: members dial each other's peer port from ephemeral ports on
    /// the same address, so no rule tells a peer stream from a client's.
    /// `None` where this process may not make namespaces (not root).
    pub fn start_partitionable(n: usize) -> Option<Cluster> {
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
                    https: false,
                }
            })
            .collect();
        Some(Cluster::launch(members, Some(bridge), None, true))
    }

    fn launch(
        members: Vec<Member>,
        bridge: Option<Bridge>,
        tls: Option<ServerTls>,
        // Whether to start the members and wait for a write to commit;
        // otherwise the caller does.
        start: bool,
    ) -> Cluster {
        let mut cluster = Cluster {
            dir: tempfile::Builder::new()
                .prefix("wict-etcd")
                .tempdir()
                .unwrap(),
            members,
            bridge,
            tls,
            flags: Vec::new(),
        };
        if start {
            for i in 0..cluster.members.len() {
                cluster.spawn(i);
            }
            cluster.wait_serving();
        }
        cluster
    }

    /// Cuts member `i` off from every other member (a blackhole route to
    /// each in its namespace, so neither side's packets arrive), while
    /// clients here still reach it: the minority side of a partition.
    pub fn partition(&self, i: usize) {
        self.blackholes(i, "add");
    }

    /// Undoes [`Cluster::partition`].
    pub fn heal(&self, i: usize) {
        self.blackholes(i, "del");
    }

    /// `ip route add|del blackhole` to every other member, in member `i`'s
    /// namespace.
    fn blackholes(&self, i: usize, op: &str) {
        let ns = self.members[i]
            .ns
            .as_ref()
            .expect("a partitionable cluster");
        for (j, m) in self.members.iter().enumerate() {
            if j != i {
                ns.ip(&["route", op, "blackhole", &format!("{}/32", m.addr)])
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
    pub fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let data = self.dir.path().join(&self.members[i].name);
        let tls: Vec<std::ffi::OsString> = match &self.tls {
            Some(t) => vec![
                "--cert-file".into(),
                t.server.cert.clone().into(),
                "--key-file".into(),
                t.server.key.clone().into(),
                "--trusted-ca-file".into(),
                t.ca_file.clone().into(),
                "--client-cert-auth".into(),
            ],
            None => Vec::new(),
        };
        let m = &mut self.members[i];
        let mut etcd = match &m.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(), ETCD]);
                c
            }
            None => Command::new(ETCD),
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
            .args(tls)
            .args(&self.flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        m.child = Some(child);
    }

    /// SIGKILLs member `i`, as a crash or a lost machine would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// How a client of the testkit's connects: over TLS, with the
    /// client certificate, in a TLS cluster.
    pub fn options(&self) -> etcd_client::ConnectOptions {
        self.tls
            .as_ref()
            .map_or_else(etcd_client::ConnectOptions::new, ServerTls::options)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::url).collect()
    }

    /// Returns once a write commits through the cluster, within 30 s.
    pub fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.commits(Duration::from_millis(500)) {
            assert!(Instant::now() < deadline, "the etcd cluster did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether a write through the cluster commits within `bound`, on any
    /// live member.
    pub fn commits(&self, bound: Duration) -> bool {
        (0..self.members.len()).any(|i| self.commits_on(i, bound))
    }

    /// Whether a write sent to member `i` commits within `bound`.
    pub fn commits_on(&self, i: usize, bound: Duration) -> bool {
        let m = &self.members[i];
        if m.child.is_none() {
            return false;
        }
        runtime().block_on(async {
            let options = self.options().with_require_leader(true);
            let put = async {
                let mut c = etcd_client::Client::connect([m.url()], Some(options)).await?;
                c.put("etcd-cluster-probe", "1", None).await
            };
            matches!(tokio::time::timeout(bound, put).await, Ok(Ok(_)))
        })
    }

    /// The index of the member that leads now.
    pub fn leader(&self) -> usize {
        let rt = runtime();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ids = Vec::new();
            let mut leader = 0;
            for m in &self.members {
                let status = rt.block_on(async {
                    let mut c =
                        etcd_client::Client::connect([m.url()], Some(self.options())).await?;
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
