//! The contract's optional `dhcp` import (`wit/ipam.wit`) as plain Rust: its
//! records, its error, and the [`Dhcp`] trait a policy calls through
//! [`crate::Host::dhcp`].
//!
//! The host runs the exchange; a policy only says what to ask for and
//! decides what to do with the lease. [`FakeDhcp`] is a DHCP server in
//! memory, so a DHCP policy's rules are unit-tested natively like the
//! others, with failures on demand.

use std::collections::BTreeMap;

use crate::Attachment;

/// `params`: what to ask the server for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpParams {
    pub client_id: Vec<u8>,
    pub hostname: Option<String>,
    pub request: Vec<u8>,
    pub provide: Vec<(u8, Vec<u8>)>,
    pub timeout_ms: u32,
}

/// `lease`: what the server granted, with its times by the host's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpLease {
    /// With its prefix: `10.1.0.12/24`.
    pub address: String,
    pub server: String,
    pub routers: Vec<String>,
    pub dns_servers: Vec<String>,
    pub domain: Option<String>,
    pub client_id: Vec<u8>,
    pub bound_at: u64,
    pub renew_at: u64,
    pub rebind_at: u64,
    pub expires_at: u64,
    pub options: Vec<(u8, Vec<u8>)>,
}

impl DhcpLease {
    /// The raw value of option `code` of the server's answer.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }
}

/// `dhcp-error`. The host reports the CNI code of each itself (see the
/// WIT); a policy passes the message on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpError {
    Unavailable(String),
    NoAnswer(String),
    Refused(String),
    Interface(String),
    Io(String),
}

impl DhcpError {
    pub fn message(&self) -> &str {
        match self {
            DhcpError::Unavailable(m)
            | DhcpError::NoAnswer(m)
            | DhcpError::Refused(m)
            | DhcpError::Interface(m)
            | DhcpError::Io(m) => m,
        }
    }
}

/// `ending`: whether the server is told that a lease is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A DHCPRELEASE, once the call commits.
    Release,
    /// None: the server keeps the lease for its client id until it lapses.
    Lapse,
}

/// The `dhcp` import's three functions.
pub trait Dhcp {
    /// A lease for the call's attachment.
    fn acquire(&mut self, params: &DhcpParams) -> Result<DhcpLease, DhcpError>;
    /// The lease held for `att`, as last renewed.
    fn held(&self, att: &Attachment) -> Option<DhcpLease>;
    /// Gives `att`'s lease up once the call commits, ending it as
    /// `ending` says; true if it had one.
    fn release(&mut self, att: &Attachment, ending: Ending) -> bool;
}

/// A DHCP server in memory, with the host's record of who holds what:
/// hands out the lowest free address from `10.9.0.10` up in `10.9.0.0/24`,
/// one lease per client id, for a lease time of an hour from `now`.
#[derive(Debug, Clone, Default)]
pub struct FakeDhcp {
    /// The call's attachment: what `acquire` acquires for. `None` is a call
    /// without a container interface.
    pub attachment: Option<Attachment>,
    pub now: u64,
    /// When set, every `acquire` fails with it.
    pub fail: Option<DhcpError>,
    /// The server's leases, by client id.
    pub server: BTreeMap<Vec<u8>, DhcpLease>,
    /// The host's records, by attachment.
    pub held: BTreeMap<(String, String), DhcpLease>,
    /// Every `acquire` that reached the server, with its params.
    pub asked: Vec<DhcpParams>,
    /// The attachments whose leases were given up, and how.
    pub released: Vec<(Attachment, Ending)>,
}

impl FakeDhcp {
    /// A server whose call is for `att`.
    pub fn for_attachment(att: &Attachment) -> FakeDhcp {
        FakeDhcp {
            attachment: Some(att.clone()),
            ..FakeDhcp::default()
        }
    }
}

fn key(att: &Attachment) -> (String, String) {
    (att.container_id.clone(), att.ifname.clone())
}

impl Dhcp for FakeDhcp {
    fn acquire(&mut self, params: &DhcpParams) -> Result<DhcpLease, DhcpError> {
        let Some(att) = self.attachment.clone() else {
            return Err(DhcpError::Unavailable(
                "this call has no container interface".into(),
            ));
        };
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        self.asked.push(params.clone());
        let taken: Vec<&str> = self.server.values().map(|l| l.address.as_str()).collect();
        let next = (10..)
            .find(|n| !taken.contains(&format!("10.9.0.{n}/24").as_str()))
            .expect("an address");
        let now = self.now;
        let lease = self
            .server
            .entry(params.client_id.clone())
            .or_insert_with(|| DhcpLease {
                address: format!("10.9.0.{next}/24"),
                server: "10.9.0.1".into(),
                routers: vec!["10.9.0.1".into()],
                client_id: params.client_id.clone(),
                ..DhcpLease::default()
            });
        lease.bound_at = now;
        lease.renew_at = now + 1800;
        lease.rebind_at = now + 3150;
        lease.expires_at = now + 3600;
        let lease = lease.clone();
        self.held.insert(key(&att), lease.clone());
        Ok(lease)
    }

    fn held(&self, att: &Attachment) -> Option<DhcpLease> {
        self.held.get(&key(att)).cloned()
    }

    /// A released lease is forgotten by the server, as dnsmasq does; a
    /// lapsing one stays bound to its client id.
    fn release(&mut self, att: &Attachment, ending: Ending) -> bool {
        let Some(lease) = self.held.remove(&key(att)) else {
            return false;
        };
        if ending == Ending::Release {
            self.server.remove(&lease.client_id);
        }
        self.released.push((att.clone(), ending));
        true
    }
}
