//! The real [`Dhcp`]: the component's optional `dhcp` import, and
//! [`WitDhcpHost`], the host a DHCP policy runs on.
//!
//! Kept apart from [`crate::WitHost`] on purpose: a component imports only
//! what its code calls, so a policy exported with plain `export_policy!`
//! never references these functions and never imports `cni:ipam/dhcp`,
//! and a network need not grant it anything.

use ipam_alloc::dhcp::{Dhcp, DhcpError, DhcpLease, DhcpParams, Ending};
use ipam_alloc::{Attachment, Host, Level};

use crate::WitHost;
use crate::bindings::cni::ipam::dhcp as wit;

impl From<&DhcpParams> for wit::Params {
    fn from(p: &DhcpParams) -> Self {
        wit::Params {
            client_id: p.client_id.clone(),
            hostname: p.hostname.clone(),
            request: p.request.clone(),
            provide: p.provide.clone(),
            timeout_ms: p.timeout_ms,
        }
    }
}

impl From<wit::Lease> for DhcpLease {
    fn from(l: wit::Lease) -> Self {
        DhcpLease {
            address: l.address,
            server: l.server,
            routers: l.routers,
            dns_servers: l.dns_servers,
            domain: l.domain,
            client_id: l.client_id,
            bound_at: l.bound_at,
            renew_at: l.renew_at,
            rebind_at: l.rebind_at,
            expires_at: l.expires_at,
            options: l.options,
        }
    }
}

impl From<wit::DhcpError> for DhcpError {
    fn from(e: wit::DhcpError) -> Self {
        match e {
            wit::DhcpError::Unavailable(m) => DhcpError::Unavailable(m),
            wit::DhcpError::NoAnswer(m) => DhcpError::NoAnswer(m),
            wit::DhcpError::Refused(m) => DhcpError::Refused(m),
            wit::DhcpError::Interface(m) => DhcpError::Interface(m),
            wit::DhcpError::Io(m) => DhcpError::Io(m),
        }
    }
}

/// The `dhcp` import.
#[derive(Default)]
pub struct WitDhcp;

impl Dhcp for WitDhcp {
    fn acquire(&mut self, params: &DhcpParams) -> Result<DhcpLease, DhcpError> {
        wit::acquire(&params.into())
            .map(Into::into)
            .map_err(Into::into)
    }
    fn held(&self, att: &Attachment) -> Option<DhcpLease> {
        wit::held(&att.clone().into()).map(Into::into)
    }
    fn release(&mut self, att: &Attachment, ending: Ending) -> bool {
        let ending = match ending {
            Ending::Release => wit::Ending::Release,
            Ending::Lapse => wit::Ending::Lapse,
        };
        wit::release(&att.clone().into(), ending)
    }
}

/// [`WitHost`] with the `dhcp` import: what `export_policy!(P, dhcp)` runs
/// a policy on.
#[derive(Default)]
pub struct WitDhcpHost {
    dhcp: WitDhcp,
}

impl Host for WitDhcpHost {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        WitHost.get(key)
    }
    fn put(&mut self, key: &str, value: &[u8]) {
        WitHost.put(key, value)
    }
    fn delete(&mut self, key: &str) {
        WitHost.delete(key)
    }
    fn scan(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)> {
        WitHost.scan(prefix, start_after, limit)
    }
    fn now(&self) -> u64 {
        WitHost.now()
    }
    fn log(&self, level: Level, message: &str) {
        WitHost.log(level, message)
    }
    fn dhcp(&mut self) -> Option<&mut dyn Dhcp> {
        Some(&mut self.dhcp)
    }
}
