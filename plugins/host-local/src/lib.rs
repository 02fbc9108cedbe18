//! The `host-local` policy: a faithful port of the reference host-local IPAM
//! plugin (containernetworking/plugins 1.1.1) onto the wasm-ipam store.
//!
//! Same config, same defaults, same round-robin order, same rejections. What
//! differs is deliberate:
//!
//! - every call is one transaction, so a failed ADD leaves no trace: the
//!   reference releases the addresses it took but leaves its cursor moved on,
//!   which makes the next address skip one;
//! - DEL and CHECK read an index instead of scanning every reservation, so
//!   their cost does not grow with the pool;
//! - CHECK also compares `prevResult` with the reservation, as the spec asks;
//! - GC and STATUS (CNI 1.1) are implemented.

use std::net::IpAddr;

use ipam_kit::errors::{self, ADDRESS_UNAVAILABLE, ALREADY_ALLOCATED};
use ipam_kit::leases::{self, Lease};
use ipam_kit::ranges::{self, RangeSet, RangesConfig};
use ipam_kit::{
    Allocation, Attachment, Availability, Context, Host, IpConfig, IpamError, Policy, Released,
    args,
};

pub struct HostLocal;

ipam_kit::export_policy!(HostLocal);

/// Parses the policy's config: the `ipam` object plus `runtimeConfig`.
fn config(ctx: &Context) -> Result<RangesConfig, IpamError> {
    let ipam: serde_json::Value = serde_json::from_str(&ctx.config)
        .map_err(|e| errors::invalid_config(format!("invalid ipam config: {e}")))?;
    let rc = args::raw_json("runtimeConfig", ctx.runtime_config.as_deref())?;
    ranges::parse(&ipam, rc.as_ref(), &ctx.cni_version)
}

/// One address from range set `idx`, like the reference's `IPAllocator.Get`.
fn allocate_from(
    host: &mut dyn Host,
    ctx: &Context,
    att: &Attachment,
    idx: usize,
    set: &RangeSet,
    requested: Option<IpAddr>,
) -> Result<IpConfig, IpamError> {
    let lease = Lease::new(ctx, att, host.now());
    let (ip, range) = match requested {
        Some(ip) => {
            let range = set.range_for(ip).ok_or_else(|| {
                errors::policy(ADDRESS_UNAVAILABLE, format!("{ip} not in range set {set}"))
            })?;
            if ip == range.gateway {
                return Err(errors::policy(
                    ADDRESS_UNAVAILABLE,
                    format!("requested ip {ip} is subnet's gateway"),
                ));
            }
            if !leases::reserve(host, ip, &lease) {
                return Err(errors::policy(
                    ADDRESS_UNAVAILABLE,
                    format!("requested IP address {ip} is not available in range set {set}"),
                ));
            }
            (ip, range)
        }
        None => {
            if let Some(held) = leases::of(host, att)
                .into_iter()
                .find(|ip| set.contains(*ip))
            {
                return Err(errors::policy(
                    ALREADY_ALLOCATED,
                    format!(
                        "{held} has been allocated to {}, duplicate allocation is not allowed",
                        att.container_id
                    ),
                ));
            }
            let last = ranges::cursor(host, idx);
            let mut found = None;
            for (ip, range) in set.iter_from(last) {
                if leases::reserve(host, ip, &lease) {
                    found = Some((ip, range));
                    break;
                }
            }
            found.ok_or_else(|| {
                errors::exhausted(format!("no IP addresses available in range set: {set}"))
            })?
        }
    };
    ranges::set_cursor(host, idx, ip);
    Ok(IpConfig {
        address: range.with_prefix(ip),
        gateway: Some(range.gateway.to_string()),
    })
}

impl Policy for HostLocal {
    fn add(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<Allocation, IpamError> {
        args::reject_unknown_cni_args(ctx, &["IP"])?;
        let cfg = config(ctx)?;
        let mut requested = args::requested_ips(ctx)?;
        let mut ips = Vec::new();
        for (idx, set) in cfg.sets.iter().enumerate() {
            let wanted = requested
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| requested.remove(i));
            let ip = allocate_from(host, ctx, att, idx, set, wanted)
                .map_err(|e| errors::context(e, &format!("failed to allocate for range {idx}")))?;
            ips.push(ip);
        }
        if !requested.is_empty() {
            let list: Vec<String> = requested.iter().map(IpAddr::to_string).collect();
            return Err(errors::policy(
                ADDRESS_UNAVAILABLE,
                format!("failed to allocate all requested IPs: {}", list.join(" ")),
            ));
        }
        Ok(Allocation {
            ips,
            routes: cfg.routes,
            dns: ctx.dns.clone(),
        })
    }

    fn del(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<(), IpamError> {
        // Validate like the reference does, but release by attachment only:
        // the ranges may have changed since the ADD.
        config(ctx)?;
        leases::release_all(host, att);
        Ok(())
    }

    fn check(
        host: &mut dyn Host,
        ctx: &Context,
        att: &Attachment,
        prev: Option<&Allocation>,
    ) -> Result<(), IpamError> {
        config(ctx)?;
        leases::check(host, att, prev, "host-local")
    }

    fn gc(
        host: &mut dyn Host,
        ctx: &Context,
        valid: &[Attachment],
    ) -> Result<Vec<Released>, IpamError> {
        config(ctx)?;
        Ok(leases::release_stale(host, valid))
    }

    fn status(host: &mut dyn Host, ctx: &Context) -> Result<Availability, IpamError> {
        let cfg = config(ctx)?;
        let held: Vec<IpAddr> = leases::all(host).into_iter().map(|(ip, _)| ip).collect();
        for set in &cfg.sets {
            let used = held.iter().filter(|ip| set.contains(**ip)).count() as u128;
            if used >= set.capacity() {
                return Ok(Availability::Unavailable(format!(
                    "no IP addresses available in range set: {set}"
                )));
            }
        }
        Ok(Availability::Available)
    }
}

#[cfg(test)]
mod tests;
