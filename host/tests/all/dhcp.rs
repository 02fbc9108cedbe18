//! The host's DHCP client (`wasm_ipam::dhcp`) against a real dnsmasq.
//!
//! Each test makes two namespaces: a server namespace where dnsmasq serves
//! 10.77.0.10-10.77.0.50 on `srv0`, and a container namespace whose `eth0`
//! is `srv0`'s veth peer, as the container's interface a main plugin made.
//! Both go when the test ends, passing or failing, and dnsmasq with them.

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

/// A DHCP server and a container namespace wired to it.
pub(crate) struct DhcpSite {
    // Dropped in this order: the server first, then the namespaces.
    server: Option<Child>,
    pub dir: tempfile::TempDir,
    pub container: Netns,
    pub site: Netns,
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
        let mut s = DhcpSite {
            server: None,
            dir: tempfile::tempdir().unwrap(),
            container,
            site,
        };
        s.start_server();
        s
    }

    pub fn leases_file(&self) -> PathBuf {
        self.dir.path().join("leases")
    }

    /// Starts dnsmasq (again, on the same lease file).
    pub fn start_server(&mut self) {
        let child = Command::new("ip")
            .args(["netns", "exec", self.site.name(), DNSMASQ])
            .args([
                "--keep-in-foreground",
                "--port=0",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--conf-file=/dev/null",
                "--interface=srv0",
                "--bind-interfaces",
            ])
            .arg("--dhcp-range=10.77.0.10,10.77.0.50,255.255.255.0,1h")
            .arg("--dhcp-option=option:router,10.77.0.1")
            .arg(format!("--dhcp-leasefile={}", self.leases_file().display()))
            .arg("--pid-file=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        // dnsmasq writes its lease file once it serves.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.leases_file().exists() {
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
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

    /// The lease file's lines for `ip`: `expiry mac ip hostname client-id`.
    pub fn lease_line(&self, ip: Ipv4Addr) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(self.leases_file()).unwrap_or_default();
        text.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|f| f.get(2).map(String::as_str) == Some(&ip.to_string()))
    }
}

impl Drop for DhcpSite {
    fn drop(&mut self) {
        self.stop_server();
    }
}

fn request(client_id: &[u8], hostname: &str) -> Request {
    Request {
        client_id: client_id.to_vec(),
        hostname: Some(hostname.into()),
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
    let deadline = Instant::now() + Duration::from_secs(5);
    while site.lease_line(lease.address).is_some() {
        assert!(
            Instant::now() < deadline,
            "dnsmasq still holds the released lease"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
    site.stop_server();
    site.start_server();
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
    site.stop_server();
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
