//! The address pools of a network, read from its recorded config, so that
//! `leases` can say how full each one is.
//!
//! Two config shapes are understood: the host-local `ranges` (and the
//! legacy single `subnet`), which the host-local and sticky policies use,
//! and `pools` with a `cidr` each, which the pooled policy uses. A
//! third-party policy with another shape still has its leases listed, with
//! no utilisation.

use std::net::IpAddr;

use ipam_kit::ranges::{self, ip_num};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::netrecord::NetworkRecord;

/// One pool or range, and how many addresses it can hand out.
pub struct Pool {
    pub label: String,
    pub capacity: u128,
    contains: Box<dyn Fn(IpAddr) -> bool>,
}

impl Pool {
    pub fn contains(&self, ip: IpAddr) -> bool {
        (self.contains)(ip)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PooledPool {
    name: String,
    cidr: IpNet,
    #[serde(default)]
    exclude: Vec<IpNet>,
    #[serde(default)]
    gateway: Option<IpAddr>,
}

fn size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

fn pooled(pools: &Value) -> Option<Vec<Pool>> {
    let pools: Vec<PooledPool> = serde_json::from_value(pools.clone()).ok()?;
    Some(
        pools
            .into_iter()
            .map(|p| {
                // What the pooled policy never hands out: the network
                // address, the IPv4 broadcast, the gateway, the exclusions.
                let mut reserved = 1 + u128::from(p.cidr.addr().is_ipv4());
                reserved += u128::from(p.gateway.is_some_and(|g| p.cidr.contains(&g)));
                reserved += p.exclude.iter().map(size).sum::<u128>();
                let net = p.cidr;
                Pool {
                    label: format!("pool {} {}", p.name, p.cidr),
                    capacity: size(&p.cidr).saturating_sub(reserved),
                    contains: Box::new(move |ip| net.contains(&ip)),
                }
            })
            .collect(),
    )
}

fn host_local(record: &NetworkRecord) -> Option<Vec<Pool>> {
    let parsed = ranges::parse(&record.ipam, None, &record.cni_version).ok()?;
    Some(
        parsed
            .sets
            .into_iter()
            .flat_map(|set| set.0)
            .map(|r| {
                let (start, end) = (ip_num(r.start), ip_num(r.end));
                let v4 = r.is_ipv4();
                Pool {
                    label: format!("range {}-{} ({})", r.start, r.end, r.subnet),
                    capacity: r.capacity(),
                    contains: Box::new(move |ip| {
                        ip.is_ipv4() == v4 && (start..=end).contains(&ip_num(ip))
                    }),
                }
            })
            .collect(),
    )
}

/// The pools of the recorded config; empty when its shape is unknown.
pub fn of(record: &NetworkRecord) -> Vec<Pool> {
    match record.ipam.get("pools") {
        Some(pools) => pooled(pools),
        None => host_local(record),
    }
    .unwrap_or_default()
}
