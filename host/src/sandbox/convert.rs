//! Conversions at the WIT boundary: the policy's answers into the host's CNI
//! types, checked on the way in, and the runtime's `prevResult` out to the
//! policy.

use std::net::IpAddr;

use ipnet::IpNet;

use super::bindings::{Allocation, Dns as WitDns, IpConfig as WitIp, IpamError, Route as WitRoute};
use crate::cni::CniError;
use crate::cni::result::{Dns, IpConfig, IpamResult, Route};

/// A policy's error as the CNI error the runtime sees.
pub fn ipam_error(e: IpamError) -> CniError {
    match e {
        IpamError::InvalidConfig(m) => CniError::InvalidConfig(m),
        IpamError::UnsupportedField(m) => CniError::UnsupportedField(m),
        IpamError::Exhausted(m) | IpamError::TryAgain(m) => CniError::TryAgain(m),
        IpamError::Policy(p) if p.code >= 100 => CniError::Plugin {
            code: p.code,
            msg: p.msg,
            details: p.details,
        },
        IpamError::Policy(p) => CniError::internal(format!(
            "{} (the policy used reserved code {}; policy codes start at 100)",
            p.msg, p.code
        )),
    }
}

fn bad(what: String) -> CniError {
    CniError::internal(format!("the policy returned an invalid allocation: {what}"))
}

fn ip(field: &str, s: &str) -> Result<IpAddr, CniError> {
    s.parse()
        .map_err(|_| bad(format!("{field} {s:?} is not an IP address")))
}

/// Parses and checks everything the policy returned before it is printed.
pub fn result_from_allocation(a: Allocation) -> Result<IpamResult, CniError> {
    let ips = a
        .ips
        .into_iter()
        .map(|i| {
            let address: IpNet = i.address.parse().map_err(|_| {
                bad(format!(
                    "address {:?} is not an address with a prefix length",
                    i.address
                ))
            })?;
            let gateway = i.gateway.as_deref().map(|g| ip("gateway", g)).transpose()?;
            Ok(IpConfig { address, gateway })
        })
        .collect::<Result<Vec<_>, CniError>>()?;
    let routes = a
        .routes
        .into_iter()
        .map(|r| {
            Ok(Route {
                dst: r
                    .dst
                    .parse()
                    .map_err(|_| bad(format!("route dst {:?} is not a CIDR", r.dst)))?,
                gw: r.gw.as_deref().map(|g| ip("route gw", g)).transpose()?,
                mtu: r.mtu,
                advmss: r.advmss,
                priority: r.priority,
                table: r.table,
                scope: r.scope,
            })
        })
        .collect::<Result<Vec<_>, CniError>>()?;
    let dns = a.dns.map(dns_from_wit).unwrap_or_default();
    let result = IpamResult { ips, routes, dns };
    result.validate().map_err(bad)?;
    Ok(result)
}

pub fn dns_from_wit(d: WitDns) -> Dns {
    Dns {
        nameservers: d.nameservers,
        domain: d.domain,
        search: d.search,
        options: d.options,
    }
}

pub fn dns_to_wit(d: &Dns) -> WitDns {
    WitDns {
        nameservers: d.nameservers.clone(),
        domain: d.domain.clone(),
        search: d.search.clone(),
        options: d.options.clone(),
    }
}

/// A `prevResult`, for CHECK.
pub fn allocation_from_result(r: &IpamResult) -> Allocation {
    Allocation {
        ips: r
            .ips
            .iter()
            .map(|i| WitIp {
                address: i.address.to_string(),
                gateway: i.gateway.map(|g| g.to_string()),
            })
            .collect(),
        routes: r
            .routes
            .iter()
            .map(|rt| WitRoute {
                dst: rt.dst.to_string(),
                gw: rt.gw.map(|g| g.to_string()),
                mtu: rt.mtu,
                advmss: rt.advmss,
                priority: rt.priority,
                table: rt.table,
                scope: rt.scope,
            })
            .collect(),
        dns: Some(dns_to_wit(&r.dns)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::bindings::cni::ipam::types::PolicyError;

    fn alloc(addrs: &[&str]) -> Allocation {
        Allocation {
            ips: addrs
                .iter()
                .map(|a| WitIp {
                    address: a.to_string(),
                    gateway: None,
                })
                .collect(),
            routes: vec![],
            dns: None,
        }
    }

    #[test]
    fn policy_errors_map_to_cni_codes() {
        let p = |code| {
            IpamError::Policy(PolicyError {
                code,
                msg: "m".into(),
                details: "d".into(),
            })
        };
        assert_eq!(ipam_error(IpamError::InvalidConfig("x".into())).code(), 7);
        assert_eq!(
            ipam_error(IpamError::UnsupportedField("x".into())).code(),
            2
        );
        assert_eq!(ipam_error(IpamError::Exhausted("x".into())).code(), 11);
        assert_eq!(ipam_error(IpamError::TryAgain("x".into())).code(), 11);
        assert_eq!(ipam_error(p(100)).code(), 100);
        assert_eq!(
            ipam_error(p(7)).code(),
            999,
            "reserved codes are not the policy's"
        );
    }

    #[test]
    fn invalid_allocations_are_refused() {
        assert!(result_from_allocation(alloc(&["10.0.0.2/24", "fd00::2/64"])).is_ok());
        for bad in [
            &["10.0.0.2"][..],
            &["not-an-ip/24"],
            &["10.0.0.2/24", "10.0.0.2/24"],
            &["10.0.0.2/33"],
        ] {
            let err = result_from_allocation(alloc(bad)).unwrap_err();
            assert_eq!(err.code(), 999, "{bad:?}");
            assert!(err.to_string().contains("invalid allocation"), "{err}");
        }
        let mut a = alloc(&["10.0.0.2/24"]);
        a.ips[0].gateway = Some("fd00::1".into());
        assert!(
            result_from_allocation(a)
                .unwrap_err()
                .to_string()
                .contains("family")
        );
    }
}
