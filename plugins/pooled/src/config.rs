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

impl Pool {
    fn from_raw(raw: RawPool) -> Result<Pool, String> {
        if raw.name.is_empty() || raw.name.contains('/') {
            return Err(format!(
                "pool name {:?} must be non-empty and have no '/'",
                raw.name
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

    /// Whether `ip` may ever be handed out: inside the pool, not its network
    /// or (IPv4) broadcast address, not the gateway, not excluded.
    pub fn usable(&self, ip: IpAddr) -> bool {
        self.contains(ip)
            && ip != self.net.network()
            && !(self.is_ipv4() && ip == self.net.broadcast())
            && Some(ip) != self.gateway
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
        let mut reserved = 1 + u128::from(self.is_ipv4());
        reserved += u128::from(self.gateway.is_some_and(|g| self.net.contains(&g)));
        reserved += self.exclude.iter().map(size).sum::<u128>();
        size(&self.net).saturating_sub(reserved)
    }

    /// The result's form of `ip`: with the pool's prefix length.
    pub fn with_prefix(&self, ip: IpAddr) -> String {
        format!("{ip}/{}", self.net.prefix_len())
    }
}

pub fn parse(ctx: &Context) -> Result<Config, IpamError> {
    let raw: RawConfig = serde_json::from_str(&ctx.config)
        .map_err(|e| invalid_config(format!("invalid pooled config: {e}")))?;
    if raw.pools.is_empty() {
        return Err(invalid_config(
            "pooled: no pools configured (ipam.pools is empty)",
        ));
    }
    let pools = raw
        .pools
        .into_iter()
        .map(Pool::from_raw)
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid_config)?;
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
        node,
        strict_affinity: raw.strict_affinity,
        max_blocks_per_node: raw.max_blocks_per_node,
        cooldown_seconds: raw.cooldown_seconds,
    })
}
