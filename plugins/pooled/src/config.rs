//! The pooled policy's config, and the geometry of a pool: its blocks and
//! which of its addresses may be handed out.

use std::net::IpAddr;

use ipam_kit::errors::invalid_config;
use ipam_kit::ranges::{RouteConfig, ip_from_num, ip_num, route_from_config, same_family};
use ipam_kit::{Context, IpamError, Route};
use ipnet::IpNet;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPool {
    name: String,
    cidr: String,
    #[serde(default)]
    block_size: Option<u8>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    pools: Vec<RawPool>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    strict_affinity: bool,
    #[serde(default)]
    max_blocks_per_node: u32,
    #[serde(default)]
    cooldown_seconds: u64,
    /// Routes for every pool's addresses, as host-local's `routes`, so a
    /// network moved from host-local keeps its routes.
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub net: IpNet,
    /// The prefix length of its blocks.
    pub block_prefix: u8,
    pub namespaces: Vec<String>,
    pub exclude: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub pools: Vec<Pool>,
    /// Fields of `ipam` no one reads, for a warning.
    pub unknown: Vec<String>,
    pub node: String,
    pub strict_affinity: bool,
    /// 0: unlimited.
    pub max_blocks_per_node: u32,
    pub cooldown_seconds: u64,
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The longest pool name: a DNS label's, which keeps the keys a pool's
/// blocks live under short.
const MAX_POOL_NAME: usize = 63;

/// A pool name goes into store keys: letters, digits, `_`, `.` and `-`,
/// starting with a letter or digit, at most [`MAX_POOL_NAME`] bytes.
fn valid_pool_name(name: &str) -> bool {
    name.len() <= MAX_POOL_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The fields of `ipam` pooled reads, besides the host's.
const FIELDS: &[&str] = &[
    "pools",
    "strictAffinity",
    "maxBlocksPerNode",
    "cooldownSeconds",
    "routes",
];

impl Pool {
    fn from_raw(raw: RawPool) -> Result<Pool, String> {
        if !valid_pool_name(&raw.name) {
            let shown: String = raw.name.chars().take(MAX_POOL_NAME + 1).collect();
            return Err(format!(
                "pool name {shown:?}{} must be 1 to {MAX_POOL_NAME} letters, digits, '_', '.' \
                 and '-', starting with a letter or digit",
                if shown.len() < raw.name.len() {
                    "..."
                } else {
                    ""
                }
            ));
        }
        let net: IpNet = raw
            .cidr
            .parse()
            .map_err(|_| format!("pool {}: cidr {:?} is not a CIDR", raw.name, raw.cidr))?;
        if net.addr() != net.network() {
            return Err(format!(
                "pool {}: cidr {} has host bits set; the network is {}/{}",
                raw.name,
                net,
                net.network(),
                net.prefix_len()
            ));
        }
        if let Some(why) = ipam_kit::ranges::unusable_subnet(&net) {
            return Err(format!("pool {}: cidr {net} {why}", raw.name));
        }
        let default_block = if net.addr().is_ipv4() { 26 } else { 122 };
        let block_prefix = raw
            .block_size
            .unwrap_or(default_block.max(net.prefix_len()));
        if block_prefix < net.prefix_len() || block_prefix > net.max_prefix_len() {
            return Err(format!(
                "pool {}: blockSize {block_prefix} must be between the pool's prefix {} and {}",
                raw.name,
                net.prefix_len(),
                net.max_prefix_len()
            ));
        }
        if net.max_prefix_len() - block_prefix > 16 {
            return Err(format!(
                "pool {}: blockSize {block_prefix} makes blocks of more than 65536 addresses; use /{} or longer",
                raw.name,
                net.max_prefix_len() - 16
            ));
        }
        let exclude = raw
            .exclude
            .iter()
            .map(|e| match parse_net(e) {
                Some(n) if same_family(n.addr(), net.addr()) && net.contains(&n.network()) => Ok(n),
                Some(_) => Err(format!(
                    "pool {}: exclude {e} is not inside {net}",
                    raw.name
                )),
                None => Err(format!(
                    "pool {}: exclude {e:?} is not an address or CIDR",
                    raw.name
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let gateway = match &raw.gateway {
            Some(g) => match g.parse::<IpAddr>() {
                Ok(ip) if net.contains(&ip) => Some(ip),
                _ => {
                    return Err(format!(
                        "pool {}: gateway {g} is not an address inside {net}",
                        raw.name
                    ));
                }
            },
            None => None,
        };
        let routes = raw
            .routes
            .into_iter()
            .map(route_from_config)
            .collect::<Result<Vec<_>, IpamError>>()
            .map_err(|e| format!("pool {}: {}", raw.name, ipam_kit::errors::message(&e)))?;
        Ok(Pool {
            name: raw.name,
            net,
            block_prefix,
            namespaces: raw.namespaces,
            exclude,
            gateway,
            routes,
        })
    }

    pub fn is_ipv4(&self) -> bool {
        self.net.addr().is_ipv4()
    }

    /// Addresses per block.
    pub fn block_len(&self) -> u128 {
        1u128 << (self.net.max_prefix_len() - self.block_prefix).min(127)
    }

    /// How many blocks the pool has (saturating for huge IPv6 pools).
    pub fn block_count(&self) -> u128 {
        1u128
            .checked_shl(u32::from(self.block_prefix - self.net.prefix_len()))
            .unwrap_or(u128::MAX)
    }

    pub fn block_net(&self, index: u128) -> IpNet {
        let base = ip_num(self.net.network()) + index * self.block_len();
        IpNet::new(ip_from_num(self.net.addr(), base), self.block_prefix).expect("prefix fits")
    }

    pub fn block_of(&self, ip: IpAddr) -> u128 {
        (ip_num(ip) - ip_num(self.net.network())) / self.block_len()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        same_family(ip, self.net.addr()) && self.net.contains(&ip)
    }

    /// The address kept for a gateway: the configured one, else the pool's
    /// first host address. A bridge with `isGateway` and no gateway in the
    /// result takes that address for itself, as the reference bridge does,
    /// so a pod given it would clash with its own bridge.
    pub fn reserved_gateway(&self) -> IpAddr {
        self.gateway
            .unwrap_or_else(|| ip_from_num(self.net.addr(), ip_num(self.net.network()) + 1))
    }

    /// Whether `ip` may ever be handed out: inside the pool, not its network
    /// or (IPv4) broadcast address, not the gateway (or the address a
    /// bridge would take as one), not excluded.
    pub fn usable(&self, ip: IpAddr) -> bool {
        self.contains(ip)
            && ip != self.net.network()
            && !(self.is_ipv4() && ip == self.net.broadcast())
            && ip != self.reserved_gateway()
            && !self.exclude.iter().any(|e| e.contains(&ip))
    }

    /// How the operator tools name the pool.
    pub fn label(&self) -> String {
        format!("pool {} {}", self.name, self.net)
    }

    /// How many addresses the pool can ever hand out: all of it but the
    /// network address, the IPv4 broadcast, the gateway and the exclusions
    /// (saturating for huge IPv6 pools).
    pub fn capacity(&self) -> u128 {
        let size = |net: &IpNet| {
            1u128
                .checked_shl(u32::from(net.max_prefix_len() - net.prefix_len()))
                .unwrap_or(u128::MAX)
        };
        // The network address, the IPv4 broadcast, and the gateway (or the
        // address kept for one), which is always inside the pool.
        let mut reserved = 2 + u128::from(self.is_ipv4());
        reserved += self.exclude.iter().map(size).sum::<u128>();
        size(&self.net).saturating_sub(reserved)
    }

    /// The result's form of `ip`: with the pool's prefix length.
    pub fn with_prefix(&self, ip: IpAddr) -> String {
        format!("{ip}/{}", self.net.prefix_len())
    }
}

pub fn parse(ctx: &Context) -> Result<Config, IpamError> {
    let value: serde_json::Value = serde_json::from_str(&ctx.config)
        .map_err(|e| invalid_config(format!("invalid pooled config: {e}")))?;
    let unknown = ipam_kit::fields::unknown(&value, FIELDS);
    let raw: RawConfig = serde_json::from_value(value)
        .map_err(|e| invalid_config(format!("invalid pooled config: {e}")))?;
    if raw.pools.is_empty() {
        return Err(invalid_config(
            "pooled: no pools configured (ipam.pools is empty)",
        ));
    }
    let mut pools = raw
        .pools
        .into_iter()
        .map(Pool::from_raw)
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid_config)?;
    // The network's routes go with every pool's addresses, after the
    // pool's own.
    let network_routes = raw
        .routes
        .into_iter()
        .map(route_from_config)
        .collect::<Result<Vec<_>, IpamError>>()
        .map_err(|e| invalid_config(format!("routes: {}", ipam_kit::errors::message(&e))))?;
    for pool in &mut pools {
        for route in &network_routes {
            if !pool.routes.contains(route) {
                pool.routes.push(route.clone());
            }
        }
    }
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            if a.name == b.name {
                return Err(invalid_config(format!(
                    "pool name {} is used twice",
                    a.name
                )));
            }
            if a.net.contains(&b.net.network()) || b.net.contains(&a.net.network()) {
                return Err(invalid_config(format!(
                    "pools {} and {} overlap",
                    a.name, b.name
                )));
            }
        }
    }
    let node = raw.node.unwrap_or_else(|| ctx.node.clone());
    if node.is_empty() || node.contains('/') {
        return Err(invalid_config(format!(
            "node name {node:?} must be non-empty and have no '/'"
        )));
    }
    Ok(Config {
        pools,
        unknown,
        node,
        strict_affinity: raw.strict_affinity,
        max_blocks_per_node: raw.max_blocks_per_node,
        cooldown_seconds: raw.cooldown_seconds,
    })
}
