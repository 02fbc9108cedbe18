//! The DHCP client's socket, made inside the container's network namespace
//! and bound to the attachment's interface, as the reference dhcp daemon
//! does its exchange.
//!
//! A socket belongs to the namespace it was made in, whatever thread uses
//! it later. So one short-lived thread enters the namespace (`setns` moves
//! only the calling thread), makes the socket, reads the interface's
//! hardware address there, and ends; the host's own threads never leave its
//! namespace.
//!
//! The socket is UDP on 0.0.0.0:68 with `SO_BINDTODEVICE`: before the
//! interface has an address the client sends from 0.0.0.0 to the limited
//! broadcast address, and asks the server to broadcast its answers (the
//! BOOTP broadcast flag), which a socket bound to the device receives.
//! No raw socket and no hand-made IP or UDP header is needed.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};

use nix::sys::socket::{setsockopt, sockopt};

use super::DhcpError;

/// The interface a lease is for: the container's namespace and the name of
/// the interface the main plugin made in it (`CNI_NETNS`, `CNI_IFNAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub netns: PathBuf,
    pub ifname: String,
}

/// A client socket on the attachment's interface, and that interface's
/// hardware address (the `chaddr` of every message).
pub struct ClientSocket {
    pub socket: UdpSocket,
    pub mac: [u8; 6],
}

impl ClientSocket {
    pub fn open(at: &Attachment) -> Result<ClientSocket, DhcpError> {
        let at = at.clone();
        std::thread::spawn(move || open_in(&at))
            .join()
            .map_err(|_| DhcpError::Netns("the thread entering the namespace panicked".into()))?
    }
}

fn open_in(at: &Attachment) -> Result<ClientSocket, DhcpError> {
    enter(&at.netns)?;
    let mac = hardware_address(&at.ifname)?;
    let io = |what: &str, e: std::io::Error| {
        DhcpError::Io(format!(
            "{what} on {} in {}: {e}",
            at.ifname,
            at.netns.display()
        ))
    };
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
        .map_err(|e| io("cannot bind UDP port 68", e))?;
    setsockopt(&socket, sockopt::BindToDevice, &OsString::from(&at.ifname))
        .map_err(|e| io("cannot bind the socket to the interface", e.into()))?;
    socket
        .set_broadcast(true)
        .map_err(|e| io("cannot allow broadcast", e))?;
    Ok(ClientSocket { socket, mac })
}

/// Moves this thread into the namespace at `path`.
fn enter(path: &Path) -> Result<(), DhcpError> {
    let ns = std::fs::File::open(path).map_err(|e| {
        DhcpError::Netns(format!(
            "cannot open the network namespace {}: {e}",
            path.display()
        ))
    })?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        DhcpError::Netns(format!(
            "cannot enter the network namespace {}: {e}",
            path.display()
        ))
    })
}

/// The hardware address of `ifname` in this thread's namespace.
fn hardware_address(ifname: &str) -> Result<[u8; 6], DhcpError> {
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| DhcpError::Io(format!("cannot list the interfaces: {e}")))?;
    for a in addrs.filter(|a| a.interface_name == ifname) {
        if let Some(mac) = a
            .address
            .as_ref()
            .and_then(|s| s.as_link_addr())
            .and_then(|l| l.addr())
        {
            return Ok(mac);
        }
    }
    Err(DhcpError::Interface(format!(
        "there is no interface {ifname:?} with a hardware address in the container's namespace"
    )))
}
