//! The host's DHCP client (`wasm_ipam::dhcp`) against a real dnsmasq.
//!
//! Each test makes two namespaces: a server namespace where dnsmasq serves
//! 10.77.0.10-10.77.0.50 on `srv0`, and a container namespace whose `eth0`
//! is `srv0`'s veth peer, as the container's interface a main plugin made.
//! Both go when the test ends, passing or failing, and dnsmasq with them.
//! [`Dnsmasq`] serves `dhcp_policy.rs` too.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cni_conformance::netns::{self, Netns};
use wasm_ipam::dhcp::{self, Attachment, DhcpError, Lease, Request};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Whether this machine can run the tests: root, and dnsmasq installed
/// (which CI must have).
pub(crate) fn dhcp_available() -> bool {
    if !netns::is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run as root");
        eprintln!("skipped: needs root, to make network namespaces");
        return false;
    }
    crate::common::installed(DNSMASQ, "dnsmasq")
}

/// dnsmasq serving DHCP on one interface of a namespace, with its lease
/// file in a folder of its own; killed when dropped.
pub(crate) struct Dnsmasq {
    child: Option<Child>,
    /// The namespace it serves in; `None`: the host's own.
    ns: Option<String>,
    iface: String,
    args: Vec<String>,
    pub leases: PathBuf,
}

impl Dnsmasq {
    /// Serves on `iface` of `ns`, with `args` (the range and options).
    pub fn start(ns: &Netns, iface: &str, leases: PathBuf, args: &[&str]) -> Dnsmasq {
        Dnsmasq::serve(Some(ns.name()), iface, leases, args)
    }

    /// Serves on `iface` of the host's own namespace, such as a bridge
    /// the runtime's pods are on.
    pub fn on_host(iface: &str, leases: PathBuf, args: &[&str]) -> Dnsmasq {
        Dnsmasq::serve(None, iface, leases, args)
    }

    fn serve(ns: Option<&str>, iface: &str, leases: PathBuf, args: &[&str]) -> Dnsmasq {
        let mut d = Dnsmasq {
            child: None,
            ns: ns.map(str::to_string),
            iface: iface.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            leases,
        };
        d.restart();
        d
    }

    /// Starts it (again, on the same lease file).
    pub fn restart(&mut self) {
        self.stop();
        let again = self.leases.exists();
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut ip = Command::new("ip");
                ip.args(["netns", "exec", ns, DNSMASQ]);
                ip
            }
            None => Command::new(DNSMASQ),
        };
        let child = cmd
            .args([
                "--keep-in-foreground",
                "--port=0",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--bind-interfaces",
                "--pid-file=",
            ])
            .arg(format!("--interface={}", self.iface))
            .arg(format!("--dhcp-leasefile={}", self.leases.display()))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // dnsmasq writes its lease file once it serves; started again on
        // one, it is given a moment to read it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.leases.exists() {
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        if again {
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The lease file's line for `ip`: `expiry mac ip hostname client-id`.
    pub fn line(&self, ip: &str) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(&self.leases).unwrap_or_default();
        text.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|f| f.get(2).map(String::as_str) == Some(ip))
    }

    /// Waits up to `secs` for `ip`'s line to be gone (a RELEASE reached the
    /// server), or to stay (`gone` false), and says whether it came out so.
    pub fn settles(&self, ip: &str, gone: bool, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.line(ip).is_none() == gone {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A DHCP server and a container namespace wired to it.
pub(crate) struct DhcpSite {
    // Dropped in this order: the server first, then its lease file's
    // folder, then the namespaces.
    pub server: Dnsmasq,
    _dir: tempfile::TempDir,
    pub container: Netns,
    _site: Netns,
}

impl DhcpSite {
    pub fn new() -> DhcpSite {
        let site = Netns::new("dhcpsrv").unwrap();
        let container = Netns::new("dhcpc").unwrap();
        site.ip(&[
            "link",
            "add",
            "srv0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            container.name(),
        ])
        .unwrap();
        site.ip(&["addr", "add", "10.77.0.1/24", "dev", "srv0"])
            .unwrap();
        site.ip(&["link", "set", "srv0", "up"]).unwrap();
        container.ip(&["link", "set", "eth0", "up"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let server = Dnsmasq::start(
            &site,
            "srv0",
            dir.path().join("leases"),
            &[
                "--dhcp-range=10.77.0.10,10.77.0.50,255.255.255.0,1h",
                "--dhcp-option=option:router,10.77.0.1",
            ],
        );
        DhcpSite {
            server,
            _dir: dir,
            container,
            _site: site,
        }
    }

    pub fn attachment(&self) -> Attachment {
        Attachment {
            netns: self.container.path(),
            ifname: "eth0".into(),
        }
    }

    /// Puts the lease's address on the container's interface, as the main
    /// plugin does with the ADD result; renewing unicasts from it.
    pub fn configure(&self, lease: &Lease) {
        let addr = format!("{}/{}", lease.address, lease.prefix_len);
        self.container
            .ip(&["addr", "add", &addr, "dev", "eth0"])
            .unwrap();
    }

    /// The lease file's line for `ip`.
    pub fn lease_line(&self, ip: Ipv4Addr) -> Option<Vec<String>> {
        self.server.line(&ip.to_string())
    }
}

/// What the dhcp policy asks for by default: the subnet mask, routers, DNS
/// servers and domain (the host sends the request list as it is given).
fn request(client_id: &[u8], hostname: &str) -> Request {
    Request {
        client_id: client_id.to_vec(),
        hostname: Some(hostname.into()),
        request: vec![1, 3, 6, 15],
        timeout: Duration::from_secs(5),
        ..Request::default()
    }
}

fn in_pool(lease: &Lease) -> bool {
    let o = lease.address.octets();
    o[..3] == [10, 77, 0] && (10..=50).contains(&o[3])
}

#[test]
fn a_lease_is_acquired_in_the_namespace_and_the_same_client_id_gets_it_again() {
    if !dhcp_available() {
        return;
    }
    let site = DhcpSite::new();
    let at = site.attachment();
    let lease = dhcp::acquire(&at, &request(b"\x00pod-a", "pod-a")).unwrap();
    assert!(in_pool(&lease), "{lease:?}");
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.server, Ipv4Addr::new(10, 77, 0, 1));
    assert_eq!(lease.routers, [Ipv4Addr::new(10, 77, 0, 1)]);
    assert_eq!(lease.lease_secs, 3600);
    assert_eq!((lease.renew_secs, lease.rebind_secs), (1800, 3150));
    let line = site.lease_line(lease.address).expect("dnsmasq records it");
    assert_eq!(line[3], "pod-a", "the hostname sent: {line:?}");
    assert_eq!(line[4], "00:70:6f:64:2d:61", "the client id sent: {line:?}");
    // A policy call run again after a store conflict asks again: the same.
    let again = dhcp::acquire(&at, &request(b"\x00pod-a", "pod-a")).unwrap();
    assert_eq!(again.address, lease.address);
    // Another workload on the same interface is another lease.
    let other = dhcp::acquire(&at, &request(b"\x00pod-b", "pod-b")).unwrap();
    assert_ne!(other.address, lease.address);
}

#[test]
fn a_renewal_extends_the_lease_and_a_release_ends_it() {
    if !dhcp_available() {
        return;
    }
    let site = DhcpSite::new();
    let at = site.attachment();
    let req = request(b"\x00pod-r", "pod-r");
    let lease = dhcp::acquire(&at, &req).unwrap();
    site.configure(&lease);
    let expiry = |s: &DhcpSite| -> u64 { s.lease_line(lease.address).unwrap()[0].parse().unwrap() };
    let before = expiry(&site);
    std::thread::sleep(Duration::from_millis(1100));
    let renewed = dhcp::renew(&at, &req, &lease, false).unwrap();
    assert_eq!(renewed.address, lease.address);
    assert!(
        expiry(&site) > before,
        "dnsmasq's lease file shows the renewal"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let rebound = dhcp::renew(&at, &req, &lease, true).unwrap();
    assert_eq!(rebound.address, lease.address);
    dhcp::release(&at, &req, &lease).unwrap();
    assert!(
        site.server.settles(&lease.address.to_string(), true, 5),
        "dnsmasq still holds the released lease"
    );
}

#[test]
fn a_restarted_server_keeps_renewing_the_lease() {
    if !dhcp_available() {
        return;
    }
    let mut site = DhcpSite::new();
    let at = site.attachment();
    let req = request(b"\x00pod-s", "pod-s");
    let lease = dhcp::acquire(&at, &req).unwrap();
    site.configure(&lease);
    site.server.restart();
    let renewed = dhcp::renew(&at, &req, &lease, false).unwrap();
    assert_eq!(
        renewed.address, lease.address,
        "dnsmasq read its lease file back"
    );
}

#[test]
fn without_a_server_acquiring_ends_at_its_deadline_naming_the_interface() {
    if !dhcp_available() {
        return;
    }
    let mut site = DhcpSite::new();
    site.server.stop();
    let mut req = request(b"\x00pod-n", "pod-n");
    req.timeout = Duration::from_millis(1500);
    let started = Instant::now();
    let err = dhcp::acquire(&site.attachment(), &req).unwrap_err();
    assert!(
        matches!(&err, DhcpError::NoAnswer { what: "DHCPDISCOVER", ifname, .. } if ifname == "eth0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no DHCP server answered"), "{err}");
    // Generous: shows that it ends, not how fast.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_missing_namespace_or_interface_is_named() {
    if !dhcp_available() {
        return;
    }
    let site = DhcpSite::new();
    let req = request(b"\x00x", "x");
    let gone = Attachment {
        netns: "/var/run/netns/wict-no-such-namespace".into(),
        ifname: "eth0".into(),
    };
    let err = dhcp::acquire(&gone, &req).unwrap_err();
    assert!(matches!(err, DhcpError::Netns(_)), "{err:?}");
    assert!(err.to_string().contains("wict-no-such-namespace"), "{err}");
    let mut wrong = site.attachment();
    wrong.ifname = "net9".into();
    let err = dhcp::acquire(&wrong, &req).unwrap_err();
    assert!(matches!(err, DhcpError::Interface(_)), "{err:?}");
    assert!(err.to_string().contains("\"net9\""), "{err}");
}

#[test]
fn two_interfaces_of_one_namespace_exchange_at_once() {
    if !dhcp_available() {
        return;
    }
    let site = DhcpSite::new();
    // A second interface in the pod, on a link no server answers.
    site.container
        .ip(&[
            "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
        ])
        .unwrap();
    for link in ["eth1", "eth1p"] {
        site.container.ip(&["link", "set", link, "up"]).unwrap();
    }
    let mut quiet = site.attachment();
    quiet.ifname = "eth1".into();
    let mut req = request(b"\x00pod-q", "pod-q");
    req.timeout = Duration::from_secs(3);
    // eth1's exchange holds its port 68 for its whole 3 s...
    let waiting = std::thread::spawn(move || dhcp::acquire(&quiet, &req));
    std::thread::sleep(Duration::from_millis(300));
    // ...while eth0's goes through on its own.
    let lease = dhcp::acquire(&site.attachment(), &request(b"\x00pod-e", "pod-e")).unwrap();
    assert!(in_pool(&lease), "{lease:?}");
    let err = waiting.join().unwrap().unwrap_err();
    assert!(matches!(err, DhcpError::NoAnswer { .. }), "{err:?}");
}
