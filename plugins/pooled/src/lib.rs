//! The `pooled` policy: pools cut into blocks with node affinity, after
//! Calico IPAM, against address exhaustion on large clusters.
//!
//! A node hands out the lowest free address of the blocks it owns, claims a
//! free block of the pool when those are full, and only then borrows from
//! another node's block (unless `strictAffinity` or `maxBlocksPerNode` says
//! no). Several nodes can share one store: every change is made inside the
//! host's transaction, so two nodes never take the same address or block.

mod blocks;
mod config;

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipam_kit::errors::{self, ADDRESS_UNAVAILABLE, ALREADY_ALLOCATED};
use ipam_kit::leases::{self, Lease};
use ipam_kit::{
    Allocation, Attachment, Availability, Context, Host, IpConfig, IpamError, Policy, Released,
    Route, args,
};

pub use blocks::{Block, Source};
pub use config::{Config, Pool};

pub struct Pooled;

ipam_kit::export_policy!(Pooled);

/// Pool names the pod asked for: `args.cni.pool` (a name or a list) or
/// `CNI_ARGS` `IPAM_POOL=a,b`.
fn requested_pools(ctx: &Context) -> Result<Vec<String>, IpamError> {
    let args = args::raw_json("args", ctx.args.as_deref())?;
    if let Some(v) = args
        .as_ref()
        .and_then(|a| a.get("cni"))
        .and_then(|c| c.get("pool"))
    {
        return match v {
            serde_json::Value::String(s) => Ok(vec![s.clone()]),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    errors::invalid_config("args.cni.pool must be a pool name or a list of names")
                }),
            _ => Err(errors::invalid_config(
                "args.cni.pool must be a pool name or a list of names",
            )),
        };
    }
    Ok(args::cni_arg(ctx, "IPAM_POOL")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

/// The pools this pod may draw from, in priority order: the ones it asked
/// for, else those serving its namespace, else those serving every namespace.
pub fn select_pools<'a>(ctx: &Context, cfg: &'a Config) -> Result<Vec<&'a Pool>, IpamError> {
    let asked = requested_pools(ctx)?;
    if !asked.is_empty() {
        return asked
            .iter()
            .map(|name| {
                cfg.pools.iter().find(|p| &p.name == name).ok_or_else(|| {
                    let known: Vec<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
                    errors::invalid_config(format!(
                        "unknown pool {name:?}; the pools are {}",
                        known.join(", ")
                    ))
                })
            })
            .collect();
    }
    if let Some(ns) = args::cni_arg(ctx, "K8S_POD_NAMESPACE") {
        let serving: Vec<&Pool> = cfg
            .pools
            .iter()
            .filter(|p| p.namespaces.iter().any(|n| n == ns))
            .collect();
        if !serving.is_empty() {
            return Ok(serving);
        }
    }
    let open: Vec<&Pool> = cfg
        .pools
        .iter()
        .filter(|p| p.namespaces.is_empty())
        .collect();
    if open.is_empty() {
        let ns = args::cni_arg(ctx, "K8S_POD_NAMESPACE").unwrap_or("(none)");
        return Err(errors::invalid_config(format!(
            "no pool serves namespace {ns:?}, and every pool is limited to listed namespaces"
        )));
    }
    Ok(open)
}

fn ip_config(pool: &Pool, ip: IpAddr) -> IpConfig {
    IpConfig {
        address: pool.with_prefix(ip),
        gateway: pool.gateway.map(|g| g.to_string()),
    }
}

fn add_routes(routes: &mut Vec<Route>, pool: &Pool) {
    for r in &pool.routes {
        if !routes.contains(r) {
            routes.push(r.clone());
        }
    }
}

/// Releases everything the attachment holds.
fn release_attachment(
    host: &mut dyn Host,
    cfg: &Config,
    att: &Attachment,
    now: u64,
) -> Vec<IpAddr> {
    let ips = leases::of(host, att);
    for ip in &ips {
        if let Some(lease) = leases::get(host, *ip) {
            blocks::release(host, cfg, *ip, &lease, now);
        }
    }
    ips
}

impl Policy for Pooled {
    fn add(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<Allocation, IpamError> {
        args::reject_unknown_cni_args(ctx, &["IP", "IPAM_POOL", "K8S_POD_NAMESPACE"])?;
        let cfg = config::parse(ctx)?;
        if !cfg.unknown.is_empty() {
            host.log(
                ipam_kit::Level::Warn,
                &format!(
                    "pooled does not read ipam.{}: a typo, or a field of another policy",
                    cfg.unknown.join(", ipam.")
                ),
            );
        }
        if let Some(held) = leases::of(host, att).first() {
            return Err(errors::policy(
                ALREADY_ALLOCATED,
                format!(
                    "{held} has been allocated to {} {}, duplicate allocation is not allowed",
                    att.container_id, att.ifname
                ),
            ));
        }
        let candidates = select_pools(ctx, &cfg)?;
        let now = host.now();
        let lease = Lease::new(ctx, att, now);
        let mut ips = Vec::new();
        let mut routes = Vec::new();
        let mut families = BTreeSet::new();
        for ip in args::requested_ips(ctx)? {
            let pool = cfg.pools.iter().find(|p| p.contains(ip)).ok_or_else(|| {
                errors::policy(
                    ADDRESS_UNAVAILABLE,
                    format!("requested address {ip} is not in any pool"),
                )
            })?;
            if !blocks::is_free(host, pool, ip, now, cfg.cooldown_seconds) {
                return Err(errors::policy(
                    ADDRESS_UNAVAILABLE,
                    format!(
                        "requested address {ip} in pool {} is taken, excluded or cooling down",
                        pool.name
                    ),
                ));
            }
            blocks::take(host, pool, pool.block_of(ip), ip, &cfg.node, lease.clone());
            ips.push(ip_config(pool, ip));
            add_routes(&mut routes, pool);
            families.insert(ip.is_ipv4());
        }
        for v4 in [true, false] {
            let of_family: Vec<&Pool> = candidates
                .iter()
                .copied()
                .filter(|p| p.is_ipv4() == v4)
                .collect();
            if of_family.is_empty() || families.contains(&v4) {
                continue;
            }
            let found = of_family
                .iter()
                .find_map(|pool| blocks::find(host, &cfg, pool, now).map(|f| (*pool, f)));
            let Some((pool, (ip, index, _source))) = found else {
                let names: Vec<&str> = of_family.iter().map(|p| p.name.as_str()).collect();
                return Err(errors::exhausted(format!(
                    "no IPv{} address available for node {} in pool {}",
                    if v4 { 4 } else { 6 },
                    cfg.node,
                    names.join(", ")
                )));
            };
            blocks::take(host, pool, index, ip, &cfg.node, lease.clone());
            ips.push(ip_config(pool, ip));
            add_routes(&mut routes, pool);
        }
        Ok(Allocation {
            ips,
            routes,
            dns: ctx.dns.clone(),
        })
    }

    fn del(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<(), IpamError> {
        let cfg = config::parse(ctx)?;
        let now = host.now();
        release_attachment(host, &cfg, att, now);
        Ok(())
    }

    fn check(
        host: &mut dyn Host,
        ctx: &Context,
        att: &Attachment,
        prev: Option<&Allocation>,
    ) -> Result<(), IpamError> {
        config::parse(ctx)?;
        leases::check(host, att, prev, "pooled")
    }

    fn gc(
        host: &mut dyn Host,
        ctx: &Context,
        valid: &[Attachment],
    ) -> Result<Vec<Released>, IpamError> {
        let cfg = config::parse(ctx)?;
        let now = host.now();
        let stale = leases::stale(host, valid);
        for (ip, lease) in &stale {
            blocks::release(host, &cfg, *ip, lease, now);
        }
        Ok(stale
            .iter()
            .map(|(ip, lease)| lease.released(*ip))
            .collect())
    }

    /// Gives up the departed node's block affinities (see
    /// `blocks::release_node`). Its attachments' leases were released by
    /// the host's DELs; the addresses left in its blocks may be other
    /// nodes' borrowed ones, so they stay.
    fn release_node(host: &mut dyn Host, ctx: &Context) -> Result<Vec<Released>, IpamError> {
        let cfg = config::parse(ctx)?;
        for pool in &cfg.pools {
            let (freed, orphaned) = blocks::release_node(host, &cfg.node, pool);
            if freed + orphaned > 0 {
                host.log(
                    ipam_kit::Level::Info,
                    &format!(
                        "node {}: pool {}: {freed} empty blocks given back, {orphaned} left without an owner until their addresses are released",
                        cfg.node, pool.name
                    ),
                );
            }
        }
        Ok(Vec::new())
    }

    /// Every lease, with the pool its block tag names.
    fn leases(
        host: &mut dyn Host,
        ctx: &Context,
    ) -> Result<Vec<ipam_kit::inspect::LeaseInfo>, IpamError> {
        let cfg = config::parse(ctx)?;
        Ok(leases::all(host)
            .iter()
            .map(|(ip, lease)| {
                let pool = cfg.pools.iter().find(|p| p.contains(*ip)).map(Pool::label);
                ipam_kit::inspect::lease_info(*ip, lease, pool)
            })
            .collect())
    }

    /// Each pool: what it can hand out, its leases, and the blocks each
    /// node holds in it.
    fn usage(
        host: &mut dyn Host,
        ctx: &Context,
    ) -> Result<Vec<ipam_kit::inspect::PoolUsage>, IpamError> {
        let cfg = config::parse(ctx)?;
        let all = leases::all(host);
        Ok(cfg
            .pools
            .iter()
            .map(|pool| blocks::usage(host, pool, &all))
            .collect())
    }

    fn status(host: &mut dyn Host, ctx: &Context) -> Result<Availability, IpamError> {
        let cfg = config::parse(ctx)?;
        let now = host.now();
        let exhausted: Vec<&str> = cfg
            .pools
            .iter()
            .filter(|p| blocks::find(host, &cfg, p, now).is_none())
            .map(|p| p.name.as_str())
            .collect();
        if exhausted.len() == cfg.pools.len() {
            Ok(Availability::Unavailable(format!(
                "every pool is exhausted for node {}: {}",
                cfg.node,
                exhausted.join(", ")
            )))
        } else {
            Ok(Availability::Available)
        }
    }
}

#[cfg(test)]
mod tests;
