//! The reference host-local range format: `ranges` (a list of range sets,
//! each a list of `{subnet, rangeStart, rangeEnd, gateway}`), the legacy
//! single range directly under `ipam`, and `runtimeConfig.ipRanges`.
//!
//! Defaults, rejections and error texts follow the reference plugin
//! (containernetworking/plugins 1.1.1), so configs that work there work here
//! and configs it rejects are rejected here with the same explanation.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::invalid_config;
use crate::{Host, IpamError, Route};

/// One range as written in a config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConfig {
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub range_start: Option<String>,
    #[serde(default)]
    pub range_end: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// A validated range: every field filled in with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

/// The ranges one address is drawn from; an attachment gets one address per
/// range set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

/// An address as a number, for arithmetic and ordering within a family.
/// The round-robin cursor of range set `set`, the last address handed out
/// from it: the reference host-local's `last_reserved_ip.<set>`. Kept in
/// one key so that policies and `wasm-ipam import-host-local` agree on it.
pub fn cursor_key(set: usize) -> String {
    format!("cursor/{set}")
}

pub fn cursor(host: &dyn Host, set: usize) -> Option<IpAddr> {
    host.get(&cursor_key(set))
        .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
}

pub fn set_cursor(host: &mut dyn Host, set: usize, ip: IpAddr) {
    host.put(&cursor_key(set), ip.to_string().as_bytes());
}

pub fn ip_num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address `n` of the family of `like`. `n` must fit the family.
pub fn ip_from_num(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((n as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(n.into()),
    }
}

pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The address after `ip`, wrapping at the top of the family.
pub fn next_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(u32::from(v4).wrapping_add(1).into()),
        IpAddr::V6(v6) => IpAddr::V6(u128::from(v6).wrapping_add(1).into()),
    }
}

/// Parses an address the way Go's `net.ParseIP` does for our purposes, also
/// accepting a prefix (`10.1.0.9/24`), which the `ips` capability carries.
pub fn parse_ip_loose(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<IpNet>().ok().map(|n| n.addr()))
}

fn parse_ip(field: &str, s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| format!("invalid {field} {s:?}: not an IP address"))
}

impl Range {
    /// Fills in defaults and validates, like the reference's
    /// `Range.Canonicalize`.
    pub fn from_config(c: &RangeConfig) -> Result<Range, String> {
        let subnet_s = c.subnet.as_deref().ok_or("missing subnet")?;
        let subnet: IpNet = subnet_s
            .parse()
            .map_err(|_| format!("invalid CIDR address: {subnet_s}"))?;
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(format!("Network {subnet} too small to allocate from"));
        }
        if subnet.addr() != subnet.network() {
            return Err(format!(
                "Network has host bits set. For a subnet mask of length {} the network address is {}",
                subnet.prefix_len(),
                subnet.network()
            ));
        }
        if let Some(why) = unusable_subnet(&subnet) {
            return Err(format!("subnet {subnet} {why}"));
        }
        let mut r = Range {
            subnet,
            start: next_ip(subnet.network()),
            end: last_ip(&subnet),
            gateway: next_ip(subnet.network()),
        };
        if let Some(g) = &c.gateway {
            r.gateway = parse_ip("gateway", g)?;
            if !same_family(r.gateway, subnet.addr()) {
                return Err(format!(
                    "gateway {} is not of the family of subnet {subnet}",
                    r.gateway
                ));
            }
        }
        if let Some(s) = &c.range_start {
            let ip = parse_ip("rangeStart", s)?;
            if !r.contains_unbounded(ip) {
                return Err(format!("RangeStart {ip} not in network {subnet}"));
            }
            r.start = ip;
        }
        if let Some(s) = &c.range_end {
            let ip = parse_ip("rangeEnd", s)?;
            if !r.contains_unbounded(ip) {
                return Err(format!("RangeEnd {ip} not in network {subnet}"));
            }
            r.end = ip;
        }
        if ip_num(r.start) > ip_num(r.end) {
            return Err(format!(
                "rangeStart {} is after rangeEnd {}: the range would be empty",
                r.start, r.end
            ));
        }
        Ok(r)
    }

    fn contains_unbounded(&self, ip: IpAddr) -> bool {
        same_family(ip, self.subnet.addr()) && self.subnet.contains(&ip)
    }

    /// Whether `ip` is an allocatable address of this range (the gateway
    /// included, as in the reference; the iterator skips it).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_unbounded(ip)
            && ip_num(ip) >= ip_num(self.start)
            && ip_num(ip) <= ip_num(self.end)
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        same_family(self.start, other.start)
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }

    pub fn is_ipv4(&self) -> bool {
        self.subnet.addr().is_ipv4()
    }

    /// How many addresses the iterator can hand out.
    pub fn capacity(&self) -> u128 {
        let n = ip_num(self.end) - ip_num(self.start) + 1;
        if self.contains(self.gateway) {
            n - 1
        } else {
            n
        }
    }

    /// `ip` with this range's prefix length, as results carry it.
    pub fn with_prefix(&self, ip: IpAddr) -> String {
        format!("{ip}/{}", self.subnet.prefix_len())
    }
}

/// Why no address of `subnet` may be handed to a pod, or `None`: what
/// the kernel or the network reserves (loopback, multicast, "this
/// network" 0.0.0.0/8), and IPv4-mapped IPv6, which names IPv4 hosts and
/// no interface can hold.
pub fn unusable_subnet(subnet: &IpNet) -> Option<&'static str> {
    let within = |outer: &str| {
        let outer: IpNet = outer.parse().expect("a literal network");
        outer.contains(subnet) || subnet.contains(&outer)
    };
    match subnet {
        IpNet::V4(_) if within("0.0.0.0/8") => {
            Some("is in 0.0.0.0/8, which means \"this network\" and is no host's address")
        }
        IpNet::V4(_) if within("127.0.0.0/8") => Some("is a loopback network"),
        IpNet::V4(_) if within("224.0.0.0/4") => Some("is a multicast network"),
        IpNet::V6(_) if within("ff00::/8") => Some("is a multicast network"),
        IpNet::V6(_) if subnet.contains(&"::1".parse::<IpAddr>().expect("an address")) => {
            Some("holds the loopback address ::1")
        }
        IpNet::V6(_) if within("::ffff:0:0/96") => {
            Some("is IPv4-mapped IPv6 (::ffff:0:0/96), which no interface can hold")
        }
        _ => None,
    }
}

/// The last allocatable address: the broadcast address minus one for IPv4,
/// the last address for IPv6.
fn last_ip(subnet: &IpNet) -> IpAddr {
    match subnet.broadcast() {
        IpAddr::V4(b) => IpAddr::V4((u32::from(b) - 1).into()),
        v6 => v6,
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl RangeSet {
    pub fn from_config(configs: &[RangeConfig]) -> Result<RangeSet, String> {
        if configs.is_empty() {
            return Err("empty range set".into());
        }
        let ranges = configs
            .iter()
            .map(Range::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        if ranges.iter().any(|r| r.is_ipv4() != ranges[0].is_ipv4()) {
            return Err("mixed address families".into());
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(format!("subnets {a} and {b} overlap"));
                }
            }
        }
        Ok(RangeSet(ranges))
    }

    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    pub fn is_ipv4(&self) -> bool {
        self.0[0].is_ipv4()
    }

    pub fn capacity(&self) -> u128 {
        self.0.iter().map(Range::capacity).sum()
    }

    /// The reference's round-robin walk: from the address after `last`
    /// (when it is in the set), through every range of the set in turn,
    /// once round, skipping each range's gateway.
    pub fn iter_from(&self, last: Option<IpAddr>) -> RangeIter<'_> {
        let start = last.filter(|ip| self.contains(*ip));
        let idx = start
            .and_then(|ip| self.0.iter().position(|r| r.contains(ip)))
            .unwrap_or(0);
        RangeIter {
            set: self,
            idx,
            cur: start,
            first: None,
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Range::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Yields `(address, range)` candidates in allocation order.
pub struct RangeIter<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<IpAddr>,
    first: Option<IpAddr>,
}

impl<'a> Iterator for RangeIter<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let r = &self.set.0[self.idx];
            let cur = match self.cur {
                None => r.start,
                Some(c) if c == r.end => {
                    self.idx = (self.idx + 1) % self.set.0.len();
                    self.set.0[self.idx].start
                }
                Some(c) => next_ip(c),
            };
            self.cur = Some(cur);
            match self.first {
                None => self.first = Some(cur),
                Some(f) if f == cur => return None,
                Some(_) => {}
            }
            let r = &self.set.0[self.idx];
            // Whatever a range claims, nothing outside it is ever handed
            // out: the walk ends instead.
            if !r.contains(cur) {
                return None;
            }
            if cur != r.gateway {
                return Some((cur, r));
            }
        }
    }
}

/// The host-local style `ipam` fields this module reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangesFields {
    #[serde(default)]
    ranges: Option<Vec<Vec<RangeConfig>>>,
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    range_start: Option<String>,
    #[serde(default)]
    range_end: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Option<Vec<RouteConfig>>,
}

/// A route as written in a config.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteConfig {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    advmss: Option<u32>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    table: Option<u32>,
    #[serde(default)]
    scope: Option<u32>,
}

/// The range sets and routes of a host-local style config.
#[derive(Debug, Clone)]
pub struct RangesConfig {
    pub sets: Vec<RangeSet>,
    pub routes: Vec<Route>,
}

/// Reads `ranges` (and the legacy single range) from the `ipam` object and
/// `ipRanges` from `runtimeConfig`, in the reference's order: runtime ranges
/// first, then the legacy range, then `ranges`.
pub fn parse(
    ipam: &Value,
    runtime_config: Option<&Value>,
    cni_version: &str,
) -> Result<RangesConfig, IpamError> {
    let fields: RangesFields = serde_json::from_value(ipam.clone())
        .map_err(|e| invalid_config(format!("invalid ipam config: {e}")))?;
    let mut configs: Vec<Vec<RangeConfig>> = Vec::new();
    if let Some(rc) = runtime_config.and_then(|rc| rc.get("ipRanges")) {
        let runtime: Vec<Vec<RangeConfig>> = serde_json::from_value(rc.clone())
            .map_err(|e| invalid_config(format!("invalid runtimeConfig.ipRanges: {e}")))?;
        configs.extend(runtime);
    }
    if let Some(subnet) = &fields.subnet {
        configs.push(vec![RangeConfig {
            subnet: Some(subnet.clone()),
            range_start: fields.range_start.clone(),
            range_end: fields.range_end.clone(),
            gateway: fields.gateway.clone(),
        }]);
    }
    configs.extend(fields.ranges.unwrap_or_default());
    if configs.is_empty() {
        return Err(invalid_config("no IP ranges specified"));
    }
    let sets = configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            RangeSet::from_config(c)
                .map_err(|e| invalid_config(format!("invalid range set {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let v4 = sets.iter().filter(|s| s.is_ipv4()).count();
    if (v4 > 1 || sets.len() - v4 > 1) && !cni::version::at_least(cni_version, "0.3.0") {
        return Err(invalid_config(format!(
            "CNI version {cni_version} does not support more than 1 address per family"
        )));
    }
    for (i, a) in sets.iter().enumerate() {
        for (j, b) in sets.iter().enumerate().skip(i + 1) {
            if a.overlaps(b) {
                return Err(invalid_config(format!("range set {i} overlaps with {j}")));
            }
        }
    }
    let routes = fields
        .routes
        .unwrap_or_default()
        .into_iter()
        .map(route_from_config)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RangesConfig { sets, routes })
}

/// Validates a configured route into the result's form.
pub fn route_from_config(r: RouteConfig) -> Result<Route, IpamError> {
    let dst: IpNet = r
        .dst
        .parse()
        .map_err(|_| invalid_config(format!("invalid route dst {:?}: not a CIDR", r.dst)))?;
    let gw = match r.gw {
        Some(g) => Some(
            g.parse::<IpAddr>()
                .map_err(|_| invalid_config(format!("invalid route gw {g:?}: not an IP address")))?
                .to_string(),
        ),
        None => None,
    };
    Ok(Route {
        dst: dst.to_string(),
        gw,
        mtu: r.mtu,
        advmss: r.advmss,
        priority: r.priority,
        table: r.table,
        scope: r.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: Value) -> Result<RangeSet, String> {
        let c: Vec<RangeConfig> = serde_json::from_value(v).unwrap();
        RangeSet::from_config(&c)
    }

    #[test]
    fn defaults_follow_the_reference() {
        let s = set(json!([{"subnet": "10.1.0.0/24"}])).unwrap();
        let r = &s.0[0];
        assert_eq!(r.start.to_string(), "10.1.0.1");
        assert_eq!(r.end.to_string(), "10.1.0.254");
        assert_eq!(r.gateway.to_string(), "10.1.0.1");
        let s6 = set(json!([{"subnet": "fd00::/120"}])).unwrap();
        assert_eq!(s6.0[0].end.to_string(), "fd00::ff");
        assert_eq!(s.to_string(), "10.1.0.1-10.1.0.254");
    }

    #[test]
    fn rejects_what_the_reference_rejects() {
        for (cfg, want) in [
            (json!([{"subnet": "10.1.0.0/31"}]), "too small"),
            (json!([{"subnet": "10.1.0.0/32"}]), "too small"),
            (json!([{"subnet": "10.1.0.5/24"}]), "host bits set"),
            (
                json!([{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}]),
                "RangeStart 10.2.0.1 not in network",
            ),
            (
                json!([{"subnet": "10.1.0.0/24", "rangeEnd": "10.2.0.1"}]),
                "RangeEnd 10.2.0.1 not in network",
            ),
            (json!([{"subnet": "nope"}]), "invalid CIDR address: nope"),
            (
                json!([{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]),
                "overlap",
            ),
            (
                json!([{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]),
                "mixed address families",
            ),
            (json!([]), "empty range set"),
            (
                json!([{"subnet": "10.40.0.0/24", "rangeStart": "10.40.0.250", "rangeEnd": "10.40.0.100"}]),
                "rangeStart 10.40.0.250 is after rangeEnd 10.40.0.100",
            ),
            (
                json!([{"subnet": "10.1.0.0/24", "gateway": "fd00::1"}]),
                "gateway fd00::1 is not of the family of subnet 10.1.0.0/24",
            ),
            (
                json!([{"subnet": "224.1.0.0/24"}]),
                "is a multicast network",
            ),
            (json!([{"subnet": "127.5.0.0/24"}]), "is a loopback network"),
            (json!([{"subnet": "0.0.0.0/24"}]), "0.0.0.0/8"),
            (json!([{"subnet": "::ffff:10.0.0.0/120"}]), "IPv4-mapped"),
            (json!([{"subnet": "ff02::/64"}]), "is a multicast network"),
            (json!([{"subnet": "::/64"}]), "loopback address ::1"),
        ] {
            let err = set(cfg.clone()).unwrap_err();
            assert!(err.contains(want), "{cfg}: {err}");
        }
    }

    #[test]
    fn iterator_skips_the_gateway_and_wraps_once() {
        let s = set(json!([{"subnet": "10.1.0.0/29"}])).unwrap();
        let all: Vec<String> = s.iter_from(None).map(|(ip, _)| ip.to_string()).collect();
        assert_eq!(
            all,
            ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
        );
        let from: Vec<String> = s
            .iter_from(Some("10.1.0.4".parse().unwrap()))
            .map(|(ip, _)| ip.to_string())
            .collect();
        assert_eq!(
            from,
            ["10.1.0.5", "10.1.0.6", "10.1.0.2", "10.1.0.3", "10.1.0.4"]
        );
    }

    #[test]
    fn iterator_crosses_ranges_of_a_set() {
        let s = set(json!([
            {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.11"},
            {"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.5", "rangeEnd": "10.2.0.6"}
        ]))
        .unwrap();
        let from: Vec<String> = s
            .iter_from(Some("10.1.0.11".parse().unwrap()))
            .map(|(ip, _)| ip.to_string())
            .collect();
        assert_eq!(from, ["10.2.0.5", "10.2.0.6", "10.1.0.10", "10.1.0.11"]);
        assert_eq!(s.capacity(), 4);
    }

    #[test]
    fn parse_orders_runtime_legacy_then_ranges() {
        let ipam = json!({"subnet": "10.2.0.0/24", "ranges": [[{"subnet": "10.3.0.0/24"}]],
                          "routes": [{"dst": "0.0.0.0/0", "gw": "10.2.0.1"}]});
        let rc = json!({"ipRanges": [[{"subnet": "10.1.0.0/24"}]]});
        let cfg = parse(&ipam, Some(&rc), "1.0.0").unwrap();
        let subnets: Vec<String> = cfg.sets.iter().map(|s| s.0[0].subnet.to_string()).collect();
        assert_eq!(subnets, ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"]);
        assert_eq!(cfg.routes[0].gw.as_deref(), Some("10.2.0.1"));
    }

    #[test]
    fn parse_rejects_two_v4_sets_before_0_3_0_and_overlapping_sets() {
        let ipam = json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]});
        assert!(parse(&ipam, None, "0.2.0").is_err());
        assert!(parse(&ipam, None, "0.3.0").is_ok());
        let overlap = json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/16"}]]});
        let err = parse(&overlap, None, "1.0.0").unwrap_err();
        assert_eq!(err, invalid_config("range set 0 overlaps with 1"));
        assert_eq!(
            parse(&json!({}), None, "1.0.0").unwrap_err(),
            invalid_config("no IP ranges specified")
        );
    }
}
