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
//! No raw socket and no hand-made IP or UDP header is needed. The device is
//! bound before the port (see `open_in`), so port 68 is per interface.
//!
//! A main plugin may call its IPAM plugin before it sets the interface up
//! (macvlan and ipvlan do: the link comes up with its address, after the
//! IPAM result), and a down interface sends nothing. So a down interface is
//! set up first, as the reference dhcp daemon does ("Link down. Attempting
//! to set up").

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};

use std::os::fd::AsRawFd;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, setsockopt, sockopt};

use super::DhcpError;

/// The interface a lease is for: the container's namespace and the name of
/// the interface the main plugin made in it (`CNI_NETNS`, `CNI_IFNAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub netns: PathBuf,
    pub ifname: String,
}

/// A client socket on the attachment's interface, that interface's
/// hardware address (the `chaddr` of every message), and its IPv4
/// addresses (a unicast from one needs it on the interface).
pub struct ClientSocket {
    pub socket: UdpSocket,
    pub mac: [u8; 6],
    pub addresses: Vec<Ipv4Addr>,
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
    let (mac, addresses) = addresses_of(&at.ifname)?;
    set_up(&at.ifname).map_err(|e| {
        DhcpError::Interface(format!(
            "cannot set {} up in {}: {e}",
            at.ifname,
            at.netns.display()
        ))
    })?;
    let io = |what: &str, e: std::io::Error| {
        DhcpError::Io(format!(
            "{what} on {} in {}: {e}",
            at.ifname,
            at.netns.display()
        ))
    };
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io("cannot make a UDP socket", e.into()))?;
    // Bound to the device before the port, and with SO_REUSEADDR: then
    // port 68 is this interface's alone, so exchanges on two interfaces of
    // one pod (a renewal on net1 while net2 is added) do not collide, and
    // neither does one right after another whose socket a forked child
    // briefly holds a copy of.
    setsockopt(&fd, sockopt::BindToDevice, &OsString::from(&at.ifname))
        .map_err(|e| io("cannot bind the socket to the interface", e.into()))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)
        .map_err(|e| io("cannot share UDP port 68", e.into()))?;
    setsockopt(&fd, sockopt::Broadcast, &true)
        .map_err(|e| io("cannot allow broadcast", e.into()))?;
    socket::bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)),
    )
    .map_err(|e| io("cannot bind UDP port 68", e.into()))?;
    let socket = UdpSocket::from(fd);
    Ok(ClientSocket {
        socket,
        mac,
        addresses,
    })
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

/// Sets `ifname` up, if it is down, in this thread's namespace: the
/// `SIOCGIFFLAGS` and `SIOCSIFFLAGS` requests, on any socket of the
/// namespace.
fn set_up(ifname: &str) -> std::io::Result<()> {
    let probe = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    // SAFETY: an all-zero ifreq is a valid value of the C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= req.ifr_name.len() {
        return Err(std::io::Error::other("the interface name is too long"));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    let fd = probe.as_raw_fd();
    // SAFETY: `req` is a valid ifreq naming the interface, as both
    // requests expect; the kernel writes only into `req`.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The hardware address and IPv4 addresses of `ifname` in this thread's
/// namespace.
fn addresses_of(ifname: &str) -> Result<([u8; 6], Vec<Ipv4Addr>), DhcpError> {
    let addrs: Vec<_> = nix::ifaddrs::getifaddrs()
        .map_err(|e| DhcpError::Io(format!("cannot list the interfaces: {e}")))?
        .filter(|a| a.interface_name == ifname)
        .collect();
    let mac = addrs.iter().find_map(|a| {
        a.address
            .as_ref()
            .and_then(|s| s.as_link_addr())
            .and_then(|l| l.addr())
    });
    let Some(mac) = mac else {
        return Err(DhcpError::Interface(format!(
            "there is no interface {ifname:?} with a hardware address in the container's namespace"
        )));
    };
    let v4 = addrs
        .iter()
        .filter_map(|a| a.address.as_ref()?.as_sockaddr_in().map(|s| s.ip()))
        .collect();
    Ok((mac, v4))
}
