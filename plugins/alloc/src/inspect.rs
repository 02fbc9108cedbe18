//! What a policy reports to the operator tools: the WIT's `inspect`
//! interface. The host reads a policy's state only through it, never
//! through its keys.
//!
//! For a policy on the kit's lease layout and the host-local `ranges`, the
//! defaults of the kit's `Policy` already answer: every lease, and each range
//! with its capacity and use. A policy with other pools, or addresses it
//! keeps back, reports its own with the helpers here.

use std::net::IpAddr;

use crate::leases::{self, Lease};
use crate::ranges::{self, Range};
pub use crate::types::{Figure, LeaseInfo, PoolUsage};
use crate::{Context, Host, IpamError};

/// A count as the contract carries it: at most 2^64 - 1.
pub fn count(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// One lease as the tools show it, from the pool `pool` names.
pub fn lease_info(ip: IpAddr, lease: &Lease, pool: Option<String>) -> LeaseInfo {
    LeaseInfo {
        address: ip.to_string(),
        attachment: lease.attachment(),
        since: lease.since,
        pool,
        pod: lease.pod.clone(),
        note: lease.tag.clone(),
    }
}

/// How a range is named in `usage` and in each lease's `pool`.
pub fn range_name(r: &Range) -> String {
    format!("range {}-{} ({})", r.start, r.end, r.subnet)
}

/// The ranges of the config, or none when it has no `ranges` (or legacy
/// `subnet`) that parse.
fn config_ranges(ctx: &Context) -> Vec<Range> {
    serde_json::from_str(&ctx.config)
        .ok()
        .and_then(|ipam| ranges::parse(&ipam, None, &ctx.cni_version).ok())
        .map(|parsed| parsed.sets.into_iter().flat_map(|set| set.0).collect())
        .unwrap_or_default()
}

/// Every lease of the kit's layout, each with the range of the config that
/// holds it.
pub fn range_leases(host: &dyn Host, ctx: &Context) -> Vec<LeaseInfo> {
    let ranges = config_ranges(ctx);
    leases::all(host)
        .iter()
        .map(|(ip, lease)| {
            let pool = ranges.iter().find(|r| r.contains(*ip)).map(range_name);
            lease_info(*ip, lease, pool)
        })
        .collect()
}

/// Each range of the config: its capacity, its leases, and what is free
/// once `kept_back` (addresses the policy holds for someone) is left out.
pub fn range_usage(
    host: &dyn Host,
    ctx: &Context,
    kept_back: &dyn Fn(&Range) -> u64,
) -> Result<Vec<PoolUsage>, IpamError> {
    let all = leases::all(host);
    Ok(config_ranges(ctx)
        .iter()
        .map(|r| {
            let used = all.iter().filter(|(ip, _)| r.contains(*ip)).count() as u64;
            let capacity = count(r.capacity());
            let held = kept_back(r);
            PoolUsage {
                name: range_name(r),
                capacity,
                used,
                free: capacity.saturating_sub(used).saturating_sub(held),
                figures: if held > 0 {
                    vec![Figure {
                        name: "holds".into(),
                        node: None,
                        value: held,
                    }]
                } else {
                    Vec::new()
                },
            }
        })
        .collect())
}
