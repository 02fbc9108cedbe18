//! IPAM results: the host's typed form, its output in each CNI version's
//! layout, and `prevResult` read back from any of them.
//!
//! Output matches the reference Go plugins byte for byte: their field order,
//! `omitempty` rules, `"dns": {}` when there is none, four-space indentation
//! and no trailing newline.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CniError;
use crate::version::{CniVersion, ResultFormat};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// What an IPAM plugin hands out: no interfaces, by the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamResult {
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// Serializes the way Go's `json.MarshalIndent(v, "", "    ")` does.
pub fn to_go_json<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser).expect("results serialize");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn version_of(ip: &IpNet) -> &'static str {
    if ip.addr().is_ipv4() { "4" } else { "6" }
}

#[derive(Serialize)]
struct IpV04<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    address: &'a IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: &'a Option<IpAddr>,
}

#[derive(Serialize)]
struct ResultV04<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpV04<'a>>,
    #[serde(skip_serializing_if = "<[Route]>::is_empty")]
    routes: &'a [Route],
    dns: &'a Dns,
}

#[derive(Serialize)]
struct RouteV02<'a> {
    dst: &'a IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gw: &'a Option<IpAddr>,
}

#[derive(Serialize)]
struct IpV02<'a> {
    ip: &'a IpNet,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: &'a Option<IpAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteV02<'a>>,
}

#[derive(Serialize)]
struct ResultV02<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip4: Option<IpV02<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip6: Option<IpV02<'a>>,
    dns: &'a Dns,
}

/// Why `net`'s address cannot be a host's on its own subnet, or `None`:
/// the network or broadcast address of an IPv4 subnet that has both (up to
/// /30), an address of 0.0.0.0/8 ("this network"), or IPv4-mapped IPv6.
/// A policy that hands one out has a broken range, and a pod given one
/// would not be reachable.
fn not_a_host_address(net: &IpNet) -> Option<&'static str> {
    match net {
        IpNet::V4(v4) => {
            let a = v4.addr();
            if a.octets()[0] == 0 {
                Some("is in 0.0.0.0/8, which is no host's")
            } else if v4.prefix_len() <= 30 && a == v4.network() {
                Some("is the network address of its subnet")
            } else if v4.prefix_len() <= 30 && a == v4.broadcast() {
                Some("is the broadcast address of its subnet")
            } else {
                None
            }
        }
        IpNet::V6(v6) => v6
            .addr()
            .to_ipv4_mapped()
            .map(|_| "is IPv4-mapped IPv6, which no interface holds"),
    }
}

impl IpamResult {
    /// Checks what no CNI version allows: the same address twice, or a
    /// gateway of the other family.
    pub fn validate(&self) -> Result<(), String> {
        for (i, ip) in self.ips.iter().enumerate() {
            let addr = ip.address.addr();
            let never_a_pod = addr.is_unspecified()
                || addr.is_loopback()
                || addr.is_multicast()
                || addr == IpAddr::from([255, 255, 255, 255]);
            if never_a_pod {
                return Err(format!(
                    "address {addr} can never be a pod's (unspecified, loopback, multicast or broadcast)"
                ));
            }
            if let Some(why) = not_a_host_address(&ip.address) {
                return Err(format!("address {} {why}", ip.address));
            }
            if self.ips[..i]
                .iter()
                .any(|o| o.address.addr() == ip.address.addr())
            {
                return Err(format!("address {} appears twice", ip.address.addr()));
            }
            if let Some(gw) = ip.gateway
                && gw.is_ipv4() != ip.address.addr().is_ipv4()
            {
                return Err(format!(
                    "gateway {gw} is not of the family of address {}",
                    ip.address
                ));
            }
        }
        Ok(())
    }

    /// The result in the layout of `version`.
    pub fn to_json(&self, version: &CniVersion) -> Result<String, CniError> {
        match version.result_format() {
            ResultFormat::V1 | ResultFormat::V04 => {
                let with_version = version.result_format() == ResultFormat::V04;
                let ips = self
                    .ips
                    .iter()
                    .map(|ip| IpV04 {
                        version: with_version.then(|| version_of(&ip.address)),
                        address: &ip.address,
                        gateway: &ip.gateway,
                    })
                    .collect();
                Ok(to_go_json(&ResultV04 {
                    cni_version: &version.text,
                    ips,
                    routes: &self.routes,
                    dns: &self.dns,
                }))
            }
            ResultFormat::V02 => self.to_json_v02(version),
        }
    }

    fn to_json_v02(&self, version: &CniVersion) -> Result<String, CniError> {
        let family = |v4: bool| -> Result<Option<IpV02<'_>>, CniError> {
            let mut of_family = self
                .ips
                .iter()
                .filter(|ip| ip.address.addr().is_ipv4() == v4);
            let Some(first) = of_family.next() else {
                return Ok(None);
            };
            if of_family.next().is_some() {
                return Err(CniError::IncompatibleVersion(format!(
                    "the policy allocated more than one IPv{} address, which CNI version {} cannot express; use 0.3.0 or later",
                    if v4 { 4 } else { 6 },
                    version.text
                )));
            }
            let routes = self
                .routes
                .iter()
                .filter(|r| r.dst.addr().is_ipv4() == v4)
                .map(|r| RouteV02 {
                    dst: &r.dst,
                    gw: &r.gw,
                })
                .collect();
            Ok(Some(IpV02 {
                ip: &first.address,
                gateway: &first.gateway,
                routes,
            }))
        };
        Ok(to_go_json(&ResultV02 {
            cni_version: &version.text,
            ip4: family(true)?,
            ip6: family(false)?,
            dns: &self.dns,
        }))
    }

    /// Reads a `prevResult` in any version's layout. Interfaces are ignored:
    /// an IPAM plugin only checks addresses.
    pub fn from_prev_result(v: &Value) -> Result<IpamResult, CniError> {
        #[derive(Deserialize)]
        struct AnyIp {
            #[serde(alias = "ip")]
            address: IpNet,
            #[serde(default)]
            gateway: Option<IpAddr>,
            #[serde(default)]
            routes: Vec<Route>,
        }
        #[derive(Deserialize)]
        struct AnyResult {
            #[serde(default)]
            ips: Vec<AnyIp>,
            #[serde(default)]
            ip4: Option<AnyIp>,
            #[serde(default)]
            ip6: Option<AnyIp>,
            #[serde(default)]
            routes: Vec<Route>,
            #[serde(default)]
            dns: Option<Dns>,
        }
        // Addresses first, so that a bad one is named with its value (serde
        // says only "invalid IP address syntax").
        let listed = v["ips"].as_array().into_iter().flatten().enumerate();
        let listed = listed.map(|(i, ip)| (format!("ips[{i}].address"), &ip["address"]));
        let old = ["ip4", "ip6"].map(|f| (format!("{f}.ip"), &v[f]["ip"]));
        for (field, address) in listed.chain(old) {
            if let Some(text) = address.as_str()
                && text.parse::<IpNet>().is_err()
            {
                return Err(CniError::InvalidConfig(format!(
                    "invalid prevResult: {field} {text:?} is not an address with its prefix \
                     length, such as \"10.1.0.5/24\""
                )));
            }
        }
        let any: AnyResult = serde_json::from_value(v.clone())
            .map_err(|e| CniError::InvalidConfig(format!("invalid prevResult: {e}")))?;
        let mut routes = any.routes;
        let mut ips = Vec::new();
        for ip in any.ips.into_iter().chain(any.ip4).chain(any.ip6) {
            routes.extend(ip.routes);
            ips.push(IpConfig {
                address: ip.address,
                gateway: ip.gateway,
            });
        }
        Ok(IpamResult {
            ips,
            routes,
            dns: any.dns.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> IpamResult {
        IpamResult {
            ips: vec![
                IpConfig {
                    address: "10.1.0.2/24".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                },
                IpConfig {
                    address: "fd00::2/64".parse().unwrap(),
                    gateway: None,
                },
            ],
            routes: vec![
                Route {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    ..Route::default()
                },
                Route {
                    dst: "::/0".parse().unwrap(),
                    gw: Some("fd00::1".parse().unwrap()),
                    ..Route::default()
                },
            ],
            dns: Dns::default(),
        }
    }

    fn v(s: &str) -> CniVersion {
        CniVersion::parse(s).unwrap()
    }

    #[test]
    fn matches_the_reference_layout_byte_for_byte() {
        let r = IpamResult {
            ips: vec![sample().ips[0].clone()],
            routes: vec![sample().routes[0].clone()],
            dns: Dns::default(),
        };
        // Printed by Debian's host-local 1.1.1 for the same allocation.
        let reference = "{\n    \"cniVersion\": \"1.0.0\",\n    \"ips\": [\n        {\n            \"address\": \"10.1.0.2/24\",\n            \"gateway\": \"10.1.0.1\"\n        }\n    ],\n    \"routes\": [\n        {\n            \"dst\": \"0.0.0.0/0\"\n        }\n    ],\n    \"dns\": {}\n}";
        assert_eq!(r.to_json(&v("1.0.0")).unwrap(), reference);
    }

    #[test]
    fn v04_adds_version_and_v02_splits_families() {
        let r = sample();
        let j: Value = serde_json::from_str(&r.to_json(&v("0.4.0")).unwrap()).unwrap();
        assert_eq!(
            j["ips"][1],
            json!({"version": "6", "address": "fd00::2/64"})
        );
        let j: Value = serde_json::from_str(&r.to_json(&v("0.2.0")).unwrap()).unwrap();
        assert_eq!(
            j,
            json!({"cniVersion": "0.2.0",
                   "ip4": {"ip": "10.1.0.2/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                   "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
                   "dns": {}})
        );
    }

    #[test]
    fn v02_refuses_two_addresses_of_one_family() {
        let mut r = sample();
        r.ips.push(IpConfig {
            address: "10.1.0.3/24".parse().unwrap(),
            gateway: None,
        });
        assert_eq!(r.to_json(&v("0.1.0")).unwrap_err().code(), 1);
        assert!(r.to_json(&v("0.3.0")).is_ok());
    }

    #[test]
    fn prev_results_of_every_layout_read_back() {
        let r = sample();
        for ver in ["0.2.0", "0.4.0", "1.1.0"] {
            let json: Value = serde_json::from_str(&r.to_json(&v(ver)).unwrap()).unwrap();
            let back = IpamResult::from_prev_result(&json).unwrap();
            assert_eq!(back.ips, r.ips, "{ver}");
            assert_eq!(back.routes.len(), 2, "{ver}");
        }
        let bridge = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
                            "ips": [{"address": "10.1.0.2/24", "interface": 0}]});
        assert_eq!(IpamResult::from_prev_result(&bridge).unwrap().ips.len(), 1);
        let bad = json!({"ips": [{"address": "not-a-cidr"}]});
        assert_eq!(IpamResult::from_prev_result(&bad).unwrap_err().code(), 7);
    }

    #[test]
    fn validate_rejects_addresses_no_pod_can_have() {
        for bad in [
            "0.0.0.0/0",
            "127.0.0.5/8",
            "224.0.0.1/4",
            "255.255.255.255/32",
            "::1/128",
            "ff02::1/16",
            "::/0",
        ] {
            let r = IpamResult {
                ips: vec![IpConfig {
                    address: bad.parse().unwrap(),
                    gateway: None,
                }],
                ..IpamResult::default()
            };
            assert!(
                r.validate().unwrap_err().contains("can never be a pod's"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_prev_result_address_without_a_prefix_is_named_with_its_value() {
        for (v, field) in [
            (
                json!({"ips": [{"address": "10.1.0.2/24"}, {"address": "10.40.0.5"}]}),
                "ips[1].address",
            ),
            (json!({"ip4": {"ip": "10.40.0.5"}}), "ip4.ip"),
        ] {
            let err = IpamResult::from_prev_result(&v).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{field} \"10.40.0.5\" is not an address")),
                "{err}"
            );
        }
    }

    #[test]
    fn validate_rejects_network_broadcast_and_mapped_addresses() {
        for (bad, why) in [
            ("10.40.0.255/24", "broadcast address"),
            ("10.40.1.0/24", "network address"),
            ("0.0.0.2/24", "0.0.0.0/8"),
            ("::ffff:10.0.0.5/120", "IPv4-mapped"),
        ] {
            let r = IpamResult {
                ips: vec![IpConfig {
                    address: bad.parse().unwrap(),
                    gateway: None,
                }],
                ..IpamResult::default()
            };
            let err = r.validate().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        // Point-to-point and host routes have no network or broadcast.
        for good in ["10.40.0.0/31", "10.40.0.1/31", "10.40.0.0/32"] {
            let r = IpamResult {
                ips: vec![IpConfig {
                    address: good.parse().unwrap(),
                    gateway: None,
                }],
                ..IpamResult::default()
            };
            assert!(r.validate().is_ok(), "{good}");
        }
    }

    #[test]
    fn validate_rejects_duplicates_and_mixed_gateways() {
        let mut r = sample();
        assert!(r.validate().is_ok());
        r.ips[1].gateway = Some("10.1.0.1".parse().unwrap());
        assert!(r.validate().unwrap_err().contains("family"));
        let mut r = sample();
        r.ips.push(IpConfig {
            address: "10.1.0.2/16".parse().unwrap(),
            gateway: None,
        });
        assert!(r.validate().unwrap_err().contains("twice"));
    }
}
