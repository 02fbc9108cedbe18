//! The DHCPv4 exchange itself: DISCOVER, OFFER, REQUEST, ACK to acquire; a
//! unicast REQUEST to renew at T1, a broadcast one to rebind at T2; RELEASE
//! when the attachment goes. Messages are built and parsed by `dhcproto`;
//! the socket, in the container's namespace on its interface, is
//! `socket.rs`'s.
//!
//! Acquiring is idempotent: every message carries the caller's client id,
//! and a server keys its leases by it (RFC 2131 4.2), so asking again gets
//! the same lease, not a second one.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::{Decodable, Decoder, Encodable};
use serde::{Deserialize, Serialize};

use super::socket::{Attachment, ClientSocket};
use crate::cni::CniError;

/// What went wrong in an exchange, each with its CNI code (the `From`
/// below): `NoAnswer` and `Nak` are 11, try again later (no server now, or
/// one that refused now); `Netns` and `Interface` are 4, the runtime's
/// `CNI_NETNS` or `CNI_IFNAME` is not what it said; `Io` is 5;
/// `Unavailable`, a call in which the host makes no exchange, is 7.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DhcpError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Netns(String),
    #[error("{0}")]
    Interface(String),
    #[error("no DHCP server answered the {what} on {ifname} within {ms} ms")]
    NoAnswer {
        what: &'static str,
        ifname: String,
        ms: u128,
    },
    #[error("the DHCP server {server} refused the request (DHCPNAK){}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Nak {
        server: Ipv4Addr,
        reason: Option<String>,
    },
    #[error("{0}")]
    Io(String),
}

impl From<DhcpError> for CniError {
    fn from(e: DhcpError) -> CniError {
        let msg = format!("dhcp: {e}");
        match e {
            DhcpError::NoAnswer { .. } | DhcpError::Nak { .. } => CniError::TryAgain(msg),
            DhcpError::Netns(_) | DhcpError::Interface(_) => CniError::InvalidEnvironment(msg),
            DhcpError::Io(_) => CniError::Io(msg),
            DhcpError::Unavailable(_) => CniError::InvalidConfig(msg),
        }
    }
}

/// What a policy asks for, beside the attachment: kept with the lease, so
/// that renewals ask the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The client identifier (option 61), the key of the lease at the
    /// server: stable per workload, so a re-created pod gets its lease back.
    pub client_id: Vec<u8>,
    /// The hostname to send (option 12); dnsmasq registers it in its DNS.
    pub hostname: Option<String>,
    /// The parameter request list (option 55), sent as it is.
    pub request: Vec<u8>,
    /// Options to send as they are: code and value.
    pub provide: Vec<(u8, Vec<u8>)>,
    /// The whole exchange ends by then.
    #[serde(rename = "timeoutMs", with = "millis")]
    pub timeout: Duration,
}

/// A duration as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A lease the server granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub server: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    /// Seconds, from the ACK: the lease, T1 and T2 (defaults 1/2 and 7/8
    /// of the lease, RFC 2131 4.4.5, when the server sends none).
    pub lease_secs: u32,
    pub renew_secs: u32,
    pub rebind_secs: u32,
    /// Every other option of the ACK, code and value, for the policy.
    pub options: Vec<(u8, Vec<u8>)>,
}

/// Gets a lease for `req.client_id` on the attachment's interface.
pub fn acquire(at: &Attachment, req: &Request) -> Result<Lease, DhcpError> {
    let deadline = Instant::now() + req.timeout;
    let sock = ClientSocket::open(at)?;
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let discover = message(&sock, req, MessageType::Discover, None);
    let offer = exchange(
        &sock,
        at,
        &discover,
        broadcast,
        deadline,
        "DHCPDISCOVER",
        |m| kind(m) == Some(MessageType::Offer),
    )?;
    let server = server_id(&offer);
    let mut request = message(&sock, req, MessageType::Request, None);
    request
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    request
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(server));
    let ack = exchange(
        &sock,
        at,
        &request,
        broadcast,
        deadline,
        "DHCPREQUEST",
        |m| matches!(kind(m), Some(MessageType::Ack | MessageType::Nak)),
    )?;
    lease_of(&ack, server)
}

/// Renews `lease` with the server that granted it (unicast, T1), or, with
/// `rebind`, with any server (broadcast, T2).
pub fn renew(
    at: &Attachment,
    req: &Request,
    lease: &Lease,
    rebind: bool,
) -> Result<Lease, DhcpError> {
    let deadline = Instant::now() + req.timeout;
    let sock = ClientSocket::open(at)?;
    let msg = message(&sock, req, MessageType::Request, Some(lease.address));
    let to = if rebind {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 67)
    } else {
        SocketAddrV4::new(lease.server, 67)
    };
    let what = if rebind {
        "rebinding DHCPREQUEST"
    } else {
        "renewing DHCPREQUEST"
    };
    let ack = exchange(&sock, at, &msg, to, deadline, what, |m| {
        matches!(kind(m), Some(MessageType::Ack | MessageType::Nak))
    })?;
    lease_of(&ack, lease.server)
}

/// Gives `lease` back. A server sends no answer to a RELEASE (RFC 2131
/// 4.4.6), so this only fails when it cannot be sent. It goes to the
/// server that granted the lease, from the leased address; when the
/// interface does not carry that address (the runtime never put it there,
/// as after an ADD that failed once it was committed), a unicast could not
/// even resolve the server's hardware address, and it is broadcast on the
/// link instead, where its server identifier names the server it is for.
pub fn release(at: &Attachment, req: &Request, lease: &Lease) -> Result<(), DhcpError> {
    let sock = ClientSocket::open(at)?;
    let mut msg = message(&sock, req, MessageType::Release, Some(lease.address));
    msg.opts_mut()
        .insert(DhcpOption::ServerIdentifier(lease.server));
    let to = if sock.addresses.contains(&lease.address) {
        lease.server
    } else {
        Ipv4Addr::BROADCAST
    };
    send(&sock, at, &msg, SocketAddrV4::new(to, 67))
}

fn message(
    sock: &ClientSocket,
    req: &Request,
    kind: MessageType,
    ciaddr: Option<Ipv4Addr>,
) -> Message {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new(ciaddr.unwrap_or(zero), zero, zero, zero, &sock.mac);
    m.set_opcode(Opcode::BootRequest);
    if ciaddr.is_none() {
        // No address yet: the answer must come to the broadcast address.
        m.set_flags(Flags::default().set_broadcast());
    }
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ClientIdentifier(req.client_id.clone()));
    if kind == MessageType::Release {
        return m;
    }
    if let Some(h) = &req.hostname {
        opts.insert(DhcpOption::Hostname(h.clone()));
    }
    let mut wanted = Vec::new();
    for code in req.request.iter().map(|c| OptionCode::from(*c)) {
        if !wanted.contains(&code) {
            wanted.push(code);
        }
    }
    if !wanted.is_empty() {
        opts.insert(DhcpOption::ParameterRequestList(wanted));
    }
    for (code, value) in &req.provide {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(*code),
            value.clone(),
        )));
    }
    m
}

fn send(
    sock: &ClientSocket,
    at: &Attachment,
    msg: &Message,
    to: SocketAddrV4,
) -> Result<(), DhcpError> {
    let bytes = msg
        .to_vec()
        .map_err(|e| DhcpError::Io(format!("cannot encode a DHCP message: {e}")))?;
    sock.socket
        .send_to(&bytes, to)
        .map(drop)
        .map_err(|e| DhcpError::Io(format!("cannot send to {to} on {}: {e}", at.ifname)))
}

/// Sends `msg` until an answer to it that `wanted` accepts arrives, or
/// `deadline`: retransmitted after 1, 2, 4 s, as RFC 2131 4.1 backs off
/// (shortened, since a CNI call has seconds, not minutes).
fn exchange(
    sock: &ClientSocket,
    at: &Attachment,
    msg: &Message,
    to: SocketAddrV4,
    deadline: Instant,
    what: &'static str,
    wanted: impl Fn(&Message) -> bool,
) -> Result<Message, DhcpError> {
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    let mut buf = vec![0u8; 1500];
    loop {
        send(sock, at, msg, to)?;
        let resend = (Instant::now() + wait).min(deadline);
        loop {
            let left = resend.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = sock.socket.set_read_timeout(Some(left));
            let n = match sock.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                // A signal to this process (a child's SIGCHLD, serve's
                // SIGTERM handler) interrupts recv; the wait goes on.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DhcpError::Io(format!("receiving on {}: {e}", at.ifname))),
            };
            // Anything else on port 68 (another client's answer, noise) is
            // not ours: the transaction id and our hardware address say so.
            let Ok(answer) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                continue;
            };
            if answer.opcode() == Opcode::BootReply
                && answer.xid() == msg.xid()
                && answer.chaddr().get(..6) == Some(&sock.mac[..])
                && wanted(&answer)
            {
                return Ok(answer);
            }
        }
        if Instant::now() >= deadline {
            return Err(DhcpError::NoAnswer {
                what,
                ifname: at.ifname.clone(),
                ms: started.elapsed().as_millis(),
            });
        }
        wait = (wait * 2).min(Duration::from_secs(4));
    }
}

fn kind(m: &Message) -> Option<MessageType> {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

fn server_id(m: &Message) -> Ipv4Addr {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => *ip,
        _ => m.siaddr(),
    }
}

fn lease_of(ack: &Message, server: Ipv4Addr) -> Result<Lease, DhcpError> {
    if kind(ack) == Some(MessageType::Nak) {
        let reason = match ack.opts().get(OptionCode::Message) {
            Some(DhcpOption::Message(m)) => Some(m.clone()),
            _ => None,
        };
        return Err(DhcpError::Nak { server, reason });
    }
    let opts = ack.opts();
    // Without a subnet mask, the address's class says, as it did before
    // masks were sent (RFC 2132 3.3 makes the option optional).
    let prefix_len = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) => u32::from(*m).leading_ones() as u8,
        _ => match ack.yiaddr().octets()[0] {
            0..=127 => 8,
            128..=191 => 16,
            _ => 24,
        },
    };
    let secs = |code| match opts.get(code) {
        Some(
            DhcpOption::AddressLeaseTime(s) | DhcpOption::Renewal(s) | DhcpOption::Rebinding(s),
        ) => Some(*s),
        _ => None,
    };
    let lease_secs = secs(OptionCode::AddressLeaseTime).unwrap_or(3600);
    let mut options = Vec::new();
    for (code, opt) in opts.iter() {
        let known = matches!(
            code,
            OptionCode::MessageType
                | OptionCode::ServerIdentifier
                | OptionCode::SubnetMask
                | OptionCode::Router
                | OptionCode::DomainNameServer
                | OptionCode::DomainName
                | OptionCode::AddressLeaseTime
                | OptionCode::Renewal
                | OptionCode::Rebinding
                | OptionCode::End
        );
        if known {
            continue;
        }
        // Encoded, an option is its code, its length and its value.
        if let Ok(bytes) = opt.to_vec()
            && bytes.len() >= 2
        {
            options.push((u8::from(*code), bytes[2..].to_vec()));
        }
    }
    Ok(Lease {
        address: ack.yiaddr(),
        prefix_len,
        server,
        routers: match opts.get(OptionCode::Router) {
            Some(DhcpOption::Router(r)) => r.clone(),
            _ => Vec::new(),
        },
        dns: match opts.get(OptionCode::DomainNameServer) {
            Some(DhcpOption::DomainNameServer(d)) => d.clone(),
            _ => Vec::new(),
        },
        domain: match opts.get(OptionCode::DomainName) {
            Some(DhcpOption::DomainName(d)) => Some(d.clone()),
            _ => None,
        },
        lease_secs,
        renew_secs: secs(OptionCode::Renewal).unwrap_or(lease_secs / 2),
        rebind_secs: secs(OptionCode::Rebinding).unwrap_or(lease_secs / 8 * 7),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_cni_code_and_names_dhcp() {
        let no_answer = DhcpError::NoAnswer {
            what: "DHCPDISCOVER",
            ifname: "net1".into(),
            ms: 5000,
        };
        for (e, code) in [
            (no_answer, 11),
            (
                DhcpError::Nak {
                    server: Ipv4Addr::new(10, 0, 0, 1),
                    reason: Some("wrong network".into()),
                },
                11,
            ),
            (DhcpError::Netns("cannot open /var/run/netns/x".into()), 4),
            (
                DhcpError::Interface("there is no interface \"net1\"".into()),
                4,
            ),
            (DhcpError::Io("cannot bind UDP port 68".into()), 5),
            (DhcpError::Unavailable("GC makes no exchange".into()), 7),
        ] {
            let text = e.to_string();
            let cni = CniError::from(e);
            assert_eq!(cni.code(), code, "{text}");
            assert_eq!(cni.to_string(), format!("dhcp: {text}"));
        }
        let nak = DhcpError::Nak {
            server: Ipv4Addr::new(10, 0, 0, 1),
            reason: Some("wrong network".into()),
        };
        assert_eq!(
            nak.to_string(),
            "the DHCP server 10.0.0.1 refused the request (DHCPNAK): wrong network"
        );
    }

    #[test]
    fn a_lease_reads_its_times_and_mask_from_the_ack() {
        let zero = Ipv4Addr::UNSPECIFIED;
        let mut ack = Message::new(zero, Ipv4Addr::new(10, 9, 0, 7), zero, zero, &[2; 6]);
        ack.set_opcode(Opcode::BootReply);
        let o = ack.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Ack));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 240, 0)));
        o.insert(DhcpOption::AddressLeaseTime(600));
        o.insert(DhcpOption::DomainName("pods.example".into()));
        o.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(224),
            vec![1, 2, 3],
        )));
        let lease = lease_of(&ack, Ipv4Addr::new(10, 9, 0, 1)).unwrap();
        assert_eq!(lease.address, Ipv4Addr::new(10, 9, 0, 7));
        assert_eq!(lease.prefix_len, 20);
        // No T1 or T2 in the ACK: RFC 2131's 1/2 and 7/8 of the lease.
        assert_eq!(
            (lease.lease_secs, lease.renew_secs, lease.rebind_secs),
            (600, 300, 525)
        );
        assert_eq!(lease.domain.as_deref(), Some("pods.example"));
        assert_eq!(lease.options, [(224, vec![1, 2, 3])]);
    }
}
