//! The host functions of the optional `dhcp` import, over the call's
//! [`Capability`] (see `crate::dhcp`). Linked only into a policy that
//! imports `cni:ipam/dhcp`, and loaded only where the network grants it.
//!
//! Each function's time, like the store's, is not charged to the policy's
//! deadline: an exchange waits for a server for up to its own timeout. A
//! failed exchange is remembered, so that the call's error is reported
//! with the code the host gives it, whatever the policy made of it.
//!
//! A policy that asks for what DHCP cannot carry (a client id, host name or
//! option value past 255 bytes) traps: that is the policy's bug, not the
//! server's.

use std::time::{Duration, Instant};

use wasmtime::Result;

use super::bindings::Attachment;
use super::bindings::optional::cni::ipam::dhcp as wit;
use super::state::{HostState, LimitError};
use crate::dhcp::record::Record;
use crate::dhcp::{DhcpError, Request};
use crate::store::StoreError;

/// The most a DHCP option holds.
const MAX_OPTION: usize = 255;

fn lease(record: &Record) -> wit::Lease {
    let l = &record.lease;
    wit::Lease {
        address: format!("{}/{}", l.address, l.prefix_len),
        server: l.server.to_string(),
        routers: l.routers.iter().map(ToString::to_string).collect(),
        dns_servers: l.dns.iter().map(ToString::to_string).collect(),
        domain: l.domain.clone(),
        client_id: record.request.client_id.clone(),
        bound_at: record.bound_at,
        renew_at: record.renew_at(),
        rebind_at: record.rebind_at(),
        expires_at: record.expires_at(),
        options: l.options.clone(),
    }
}

fn error(e: &DhcpError) -> wit::DhcpError {
    let text = e.to_string();
    match e {
        DhcpError::Unavailable(_) => wit::DhcpError::Unavailable(text),
        DhcpError::NoAnswer { .. } => wit::DhcpError::NoAnswer(text),
        DhcpError::Nak { .. } => wit::DhcpError::Refused(text),
        DhcpError::Netns(_) | DhcpError::Interface(_) => wit::DhcpError::Interface(text),
        DhcpError::Io(_) => wit::DhcpError::Io(text),
    }
}

/// What a policy asks for, within what DHCP can carry.
fn request(p: wit::Params) -> Result<Request> {
    let too_long = |what: &str, n: usize| -> wasmtime::Error {
        LimitError::Dhcp(format!(
            "asked for a DHCP {what} of {n} bytes; an option holds at most {MAX_OPTION}"
        ))
        .into()
    };
    if p.client_id.is_empty() || p.client_id.len() > MAX_OPTION {
        return Err(too_long("client id", p.client_id.len()));
    }
    if let Some(h) = &p.hostname
        && h.len() > MAX_OPTION
    {
        return Err(too_long("host name", h.len()));
    }
    if let Some((code, v)) = p.provide.iter().find(|(_, v)| v.len() > MAX_OPTION) {
        return Err(too_long(&format!("option {code}"), v.len()));
    }
    Ok(Request {
        client_id: p.client_id,
        hostname: p.hostname,
        request: p.request,
        provide: p.provide,
        timeout: Duration::from_millis(u64::from(p.timeout_ms)),
    })
}

/// An attachment a policy names; one with a `/` names no attachment the
/// host records (the host never lets one in).
fn named(a: &Attachment) -> Option<(&str, &str)> {
    (!a.container_id.contains('/') && !a.ifname.contains('/'))
        .then_some((a.container_id.as_str(), a.ifname.as_str()))
}

impl HostState {
    /// Runs `op` on the capability and the transaction, charging its time
    /// to the host.
    fn in_dhcp<R>(
        &mut self,
        op: impl FnOnce(&crate::dhcp::Capability, &mut dyn crate::store::Txn) -> R,
    ) -> Option<R> {
        let cap = self.dhcp.clone()?;
        let start = Instant::now();
        let out = op(&cap, &mut *self.txn);
        self.host_time += start.elapsed();
        Some(out)
    }
}

fn store_err(e: StoreError) -> wasmtime::Error {
    wasmtime::Error::new(e)
}

impl wit::Host for HostState {
    fn acquire(&mut self, params: wit::Params) -> Result<Result<wit::Lease, wit::DhcpError>> {
        let req = request(params)?;
        let now = self.now;
        let out = self
            .in_dhcp(|cap, txn| cap.acquire(txn, req, now))
            .unwrap_or_else(|| {
                Ok(Err(DhcpError::Unavailable(
                    "this call has no DHCP capability".into(),
                )))
            })
            .map_err(store_err)?;
        Ok(match out {
            Ok(record) => Ok(lease(&record)),
            Err(e) => {
                let wit = error(&e);
                self.dhcp_failure = Some(e);
                Err(wit)
            }
        })
    }

    fn held(&mut self, attachment: Attachment) -> Result<Option<wit::Lease>> {
        let Some((id, ifname)) = named(&attachment) else {
            return Ok(None);
        };
        let found = self.in_dhcp(|cap, txn| cap.held(txn, id, ifname));
        Ok(found
            .transpose()
            .map_err(store_err)?
            .flatten()
            .map(|r| lease(&r)))
    }

    fn release(&mut self, attachment: Attachment, ending: wit::Ending) -> Result<bool> {
        let Some((id, ifname)) = named(&attachment) else {
            return Ok(false);
        };
        let tell = ending == wit::Ending::Release;
        let released = self.in_dhcp(|cap, txn| cap.release(txn, id, ifname, tell));
        Ok(released.transpose().map_err(store_err)?.unwrap_or(false))
    }
}
