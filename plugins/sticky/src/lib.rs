//! The `sticky` policy: the same workload keeps its address, after
//! Spiderpool's and Kube-OVN's StatefulSet IPs.
//!
//! A workload is named by `CNI_ARGS` values (by default the pod's namespace
//! and name) plus the interface, so a re-created pod, under a new container
//! id, gets its old address back. After DEL the address is held for
//! `holdSeconds`; only when nothing else is free may a new workload take an
//! address whose hold has run out, the longest-expired first.
//!
//! Store layout, beside the kit's leases (tagged with the workload key):
//! - `workload/<key>`: the workload's addresses, and who has it now;
//! - `hold/<ip>`: an address held for a workload that went away.

mod config;

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipam_kit::errors::{self, ADDRESS_UNAVAILABLE, ALREADY_ALLOCATED};
use ipam_kit::leases::{self, Lease};
use ipam_kit::ranges::{self, RangeSet};
use ipam_kit::{
    Allocation, Attachment, Availability, Context, Host, IpConfig, IpamError, Policy, Released,
    args,
};
use serde::{Deserialize, Serialize};

pub use config::Config;

pub struct Sticky;

ipam_kit::export_policy!(Sticky);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub ips: Vec<IpAddr>,
    #[serde(default)]
    pub active: Option<Active>,
    #[serde(default)]
    pub released_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Active {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub key: String,
    pub released_at: u64,
}

fn workload_key(key: &str) -> String {
    format!("workload/{key}")
}

fn hold_key(ip: IpAddr) -> String {
    format!("hold/{ip}")
}

fn get_json<T: for<'de> Deserialize<'de>>(host: &dyn Host, key: &str) -> Option<T> {
    host.get(key).and_then(|v| serde_json::from_slice(&v).ok())
}

fn put_json<T: Serialize>(host: &mut dyn Host, key: &str, value: &T) {
    host.put(key, &serde_json::to_vec(value).expect("serializes"));
}

pub fn get_hold(host: &dyn Host, ip: IpAddr) -> Option<Hold> {
    get_json(host, &hold_key(ip))
}

/// Free for anyone: not leased and not held.
fn is_free(host: &dyn Host, ip: IpAddr) -> bool {
    leases::get(host, ip).is_none() && host.get(&hold_key(ip)).is_none()
}

/// Free for the workload `key`: free, or held for `key` itself.
fn is_free_for(host: &dyn Host, ip: IpAddr, key: &str) -> bool {
    leases::get(host, ip).is_none() && get_hold(host, ip).is_none_or(|h| h.key == key)
}

/// Every held address of `set`, with its hold.
fn holds_in(host: &dyn Host, set: &RangeSet) -> Vec<(IpAddr, Hold)> {
    host.scan_all("hold/")
        .into_iter()
        .filter_map(|(k, v)| {
            let ip = k["hold/".len()..].parse::<IpAddr>().ok()?;
            let hold = serde_json::from_slice::<Hold>(&v).ok()?;
            set.contains(ip).then_some((ip, hold))
        })
        .collect()
}

fn hold_end(cfg: &Config, hold: &Hold) -> u64 {
    hold.released_at.saturating_add(cfg.hold_seconds)
}

/// The address whose hold ran out longest ago, in `set`.
fn oldest_expired(
    host: &dyn Host,
    cfg: &Config,
    set: &RangeSet,
    now: u64,
) -> Option<(IpAddr, Hold)> {
    holds_in(host, set)
        .into_iter()
        .filter(|(_, h)| hold_end(cfg, h) <= now)
        .min_by_key(|(_, h)| h.released_at)
}

/// Takes `ip` from whoever held it: the old workload forgets it.
fn reclaim(host: &mut dyn Host, ip: IpAddr, hold: &Hold) {
    host.delete(&hold_key(ip));
    if let Some(mut old) = get_json::<Workload>(host, &workload_key(&hold.key)) {
        old.ips.retain(|i| *i != ip);
        if old.ips.is_empty() && old.active.is_none() {
            host.delete(&workload_key(&hold.key));
        } else {
            put_json(host, &workload_key(&hold.key), &old);
        }
    }
}

fn soonest_hold_end(host: &dyn Host, cfg: &Config, set: &RangeSet) -> Option<u64> {
    holds_in(host, set)
        .iter()
        .map(|(_, h)| hold_end(cfg, h))
        .min()
}

/// What one ADD knows about the workload it serves.
struct Want<'a> {
    cfg: &'a Config,
    key: &'a str,
    previous: &'a [IpAddr],
    ordinal: Option<u64>,
    now: u64,
}

/// Picks the workload's address in range set `idx`, in order: its own
/// address from before, a requested one, its ordinal address, the next free
/// one after the cursor, and last an address whose hold has run out.
fn pick(
    host: &mut dyn Host,
    want: &Want,
    idx: usize,
    set: &RangeSet,
    requested: &mut Vec<IpAddr>,
) -> Result<IpAddr, IpamError> {
    let Want {
        cfg,
        key,
        previous,
        ordinal,
        now,
    } = *want;
    if let Some(ip) = previous
        .iter()
        .copied()
        .find(|ip| set.contains(*ip) && is_free_for(host, *ip, key))
    {
        return Ok(ip);
    }
    if let Some(pos) = requested.iter().position(|ip| set.contains(*ip)) {
        let ip = requested.remove(pos);
        if set.range_for(ip).is_some_and(|r| r.gateway == ip) || !is_free_for(host, ip, key) {
            return Err(errors::policy(
                ADDRESS_UNAVAILABLE,
                format!(
                    "requested address {ip} is the gateway, taken or held for another workload"
                ),
            ));
        }
        return Ok(ip);
    }
    if let Some(n) = ordinal
        && let Some((ip, _)) = set.iter_from(None).nth(n as usize)
        && is_free(host, ip)
    {
        return Ok(ip);
    }
    // New workloads search from the last address handed out, round robin,
    // so an ADD costs the same in a full range as in an empty one.
    if let Some((ip, _)) = set
        .iter_from(ranges::cursor(host, idx))
        .find(|(ip, _)| is_free(host, *ip))
    {
        return Ok(ip);
    }
    if let Some((ip, hold)) = oldest_expired(host, cfg, set, now) {
        reclaim(host, ip, &hold);
        return Ok(ip);
    }
    let why = match soonest_hold_end(host, cfg, set) {
        Some(end) => format!(
            "; the remaining addresses are held for workloads that may come back, the first hold ends in {} s",
            end.saturating_sub(now)
        ),
        None => String::new(),
    };
    Err(errors::exhausted(format!(
        "no free address in range set {set}{why}"
    )))
}

/// Ends the attachment's use of its addresses; they stay held for its
/// workload for `holdSeconds`.
fn detach(host: &mut dyn Host, cfg: &Config, att: &Attachment, now: u64) -> Vec<IpAddr> {
    let ips = leases::of(host, att);
    let mut keys = BTreeSet::new();
    for ip in &ips {
        let Some(lease) = leases::get(host, *ip) else {
            continue;
        };
        leases::release(host, *ip);
        if let Some(key) = lease.tag {
            if cfg.hold_seconds > 0 {
                put_json(
                    host,
                    &hold_key(*ip),
                    &Hold {
                        key: key.clone(),
                        released_at: now,
                    },
                );
            }
            keys.insert(key);
        }
    }
    for key in keys {
        let wk = workload_key(&key);
        match get_json::<Workload>(host, &wk) {
            Some(_) if cfg.hold_seconds == 0 => host.delete(&wk),
            Some(mut wl) => {
                wl.active = None;
                wl.released_at = Some(now);
                put_json(host, &wk, &wl);
            }
            None => {}
        }
    }
    ips
}

impl Policy for Sticky {
    fn add(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<Allocation, IpamError> {
        let cfg = config::parse(ctx)?;
        let mut known: Vec<&str> = vec!["IP", "K8S_POD_NAME"];
        known.extend(cfg.key.iter().map(String::as_str));
        args::reject_unknown_cni_args(ctx, &known)?;
        if let Some(held) = leases::of(host, att).first() {
            return Err(errors::policy(
                ALREADY_ALLOCATED,
                format!(
                    "{held} has been allocated to {}, duplicate allocation is not allowed",
                    att.container_id
                ),
            ));
        }
        let key = cfg.workload(ctx, att);
        let now = host.now();
        let previous = get_json::<Workload>(host, &workload_key(&key));
        if let Some(Workload {
            active: Some(a), ..
        }) = &previous
        {
            return Err(errors::policy(
                ALREADY_ALLOCATED,
                format!(
                    "workload {key} is already attached as container {} ({}); the same pod cannot be attached twice",
                    a.container_id, a.ifname
                ),
            ));
        }
        let previous_ips = previous.map(|w| w.ips).unwrap_or_default();
        let mut requested = args::requested_ips(ctx)?;
        let ordinal = cfg.ordinal_of(ctx);
        let mut lease = Lease::new(ctx, att, now);
        lease.tag = Some(key.clone());
        let want = Want {
            cfg: &cfg,
            key: &key,
            previous: &previous_ips,
            ordinal,
            now,
        };
        let mut ips = Vec::new();
        let mut taken = Vec::new();
        for (idx, set) in cfg.ranges.sets.iter().enumerate() {
            let ip = pick(host, &want, idx, set, &mut requested)
                .map_err(|e| errors::context(e, &format!("failed to allocate for range {idx}")))?;
            host.delete(&hold_key(ip));
            leases::reserve(host, ip, &lease);
            ranges::set_cursor(host, idx, ip);
            let range = set.range_for(ip).expect("picked inside the set");
            ips.push(IpConfig {
                address: range.with_prefix(ip),
                gateway: Some(range.gateway.to_string()),
            });
            taken.push(ip);
        }
        if !requested.is_empty() {
            let list: Vec<String> = requested.iter().map(IpAddr::to_string).collect();
            return Err(errors::policy(
                ADDRESS_UNAVAILABLE,
                format!("failed to allocate all requested IPs: {}", list.join(" ")),
            ));
        }
        // Addresses of the old allocation that were not reused stay held.
        let mut all = taken.clone();
        all.extend(previous_ips.iter().filter(|ip| {
            !taken.contains(ip) && get_hold(host, **ip).is_some_and(|h| h.key == key)
        }));
        put_json(
            host,
            &workload_key(&key),
            &Workload {
                ips: all,
                active: Some(Active {
                    container_id: att.container_id.clone(),
                    ifname: att.ifname.clone(),
                }),
                released_at: None,
            },
        );
        Ok(Allocation {
            ips,
            routes: cfg.ranges.routes.clone(),
            dns: ctx.dns.clone(),
        })
    }

    fn del(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<(), IpamError> {
        let cfg = config::parse(ctx)?;
        let now = host.now();
        detach(host, &cfg, att, now);
        Ok(())
    }

    fn check(
        host: &mut dyn Host,
        ctx: &Context,
        att: &Attachment,
        prev: Option<&Allocation>,
    ) -> Result<(), IpamError> {
        config::parse(ctx)?;
        leases::check(host, att, prev, "sticky")
    }

    fn gc(
        host: &mut dyn Host,
        ctx: &Context,
        valid: &[Attachment],
    ) -> Result<Vec<Released>, IpamError> {
        let cfg = config::parse(ctx)?;
        let now = host.now();
        // Detach whole attachments, so each keeps its hold as on DEL.
        let mut released = Vec::new();
        for att in leases::stale_attachments(host, valid) {
            for ip in detach(host, &cfg, &att, now) {
                released.push(Released {
                    attachment: att.clone(),
                    address: ip.to_string(),
                });
            }
        }
        Ok(released)
    }

    /// Each range, with the addresses on hold counted as not free.
    fn usage(
        host: &mut dyn Host,
        ctx: &Context,
    ) -> Result<Vec<ipam_kit::inspect::PoolUsage>, IpamError> {
        config::parse(ctx)?;
        let held: Vec<IpAddr> = host
            .scan_all("hold/")
            .into_iter()
            .filter_map(|(k, _)| k["hold/".len()..].parse().ok())
            .collect();
        ipam_kit::inspect::range_usage(host, ctx, &|r| {
            held.iter().filter(|ip| r.contains(**ip)).count() as u64
        })
    }

    fn status(host: &mut dyn Host, ctx: &Context) -> Result<Availability, IpamError> {
        let cfg = config::parse(ctx)?;
        let now = host.now();
        for set in &cfg.ranges.sets {
            let free = set.iter_from(None).any(|(ip, _)| is_free(host, ip));
            if !free && oldest_expired(host, &cfg, set, now).is_none() {
                return Ok(Availability::Unavailable(format!(
                    "no free address in range set {set}: every address is in use or held"
                )));
            }
        }
        Ok(Availability::Available)
    }
}

#[cfg(test)]
mod tests;
