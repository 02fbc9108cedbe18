//! Between the generated bindings and the plain types of `ipam-alloc`, at
//! the component's boundary. Each conversion names every field, so a field
//! added to the WIT and not to `ipam_alloc::types` fails to compile here.

use ipam_alloc::types as plain;

use crate::bindings::cni::ipam::{log, types as wit};
use crate::bindings::exports::cni::ipam::inspect as wit_inspect;

/// `From` both ways between a WIT record and its plain mirror, field by
/// field; `Into` on each field is the identity for the types both sides
/// share.
macro_rules! mirror {
    ($($ty:ident { $($field:ident),+ $(,)? })+) => {$(
        impl From<wit::$ty> for plain::$ty {
            fn from(v: wit::$ty) -> Self {
                plain::$ty { $($field: v.$field.into()),+ }
            }
        }

        impl From<plain::$ty> for wit::$ty {
            fn from(v: plain::$ty) -> Self {
                wit::$ty { $($field: v.$field.into()),+ }
            }
        }
    )+};
}

mirror! {
    Attachment { container_id, ifname }
    Dns { nameservers, domain, search, options }
    IpConfig { address, gateway }
    Route { dst, gw, mtu, advmss, priority, table, scope }
    Released { attachment, address }
}

impl From<wit::Context> for plain::Context {
    fn from(c: wit::Context) -> Self {
        plain::Context {
            network: c.network,
            cni_version: c.cni_version,
            config: c.config,
            cni_args: c.cni_args,
            args: c.args,
            runtime_config: c.runtime_config,
            netns: c.netns,
            node: c.node,
            dns: c.dns.map(Into::into),
        }
    }
}

impl From<wit::Allocation> for plain::Allocation {
    fn from(a: wit::Allocation) -> Self {
        plain::Allocation {
            ips: a.ips.into_iter().map(Into::into).collect(),
            routes: a.routes.into_iter().map(Into::into).collect(),
            dns: a.dns.map(Into::into),
        }
    }
}

impl From<plain::Allocation> for wit::Allocation {
    fn from(a: plain::Allocation) -> Self {
        wit::Allocation {
            ips: a.ips.into_iter().map(Into::into).collect(),
            routes: a.routes.into_iter().map(Into::into).collect(),
            dns: a.dns.map(Into::into),
        }
    }
}

impl From<plain::Availability> for wit::Availability {
    fn from(a: plain::Availability) -> Self {
        match a {
            plain::Availability::Available => wit::Availability::Available,
            plain::Availability::Unavailable(m) => wit::Availability::Unavailable(m),
            plain::Availability::Degraded(m) => wit::Availability::Degraded(m),
        }
    }
}

impl From<plain::IpamError> for wit::IpamError {
    fn from(e: plain::IpamError) -> Self {
        match e {
            plain::IpamError::InvalidConfig(m) => wit::IpamError::InvalidConfig(m),
            plain::IpamError::UnsupportedField(m) => wit::IpamError::UnsupportedField(m),
            plain::IpamError::Exhausted(m) => wit::IpamError::Exhausted(m),
            plain::IpamError::TryAgain(m) => wit::IpamError::TryAgain(m),
            plain::IpamError::Policy(p) => wit::IpamError::Policy(wit::PolicyError {
                code: p.code,
                msg: p.msg,
                details: p.details,
            }),
        }
    }
}

impl From<plain::Level> for log::Level {
    fn from(l: plain::Level) -> Self {
        match l {
            plain::Level::Debug => log::Level::Debug,
            plain::Level::Info => log::Level::Info,
            plain::Level::Warn => log::Level::Warn,
            plain::Level::Error => log::Level::Error,
        }
    }
}

impl From<plain::LeaseInfo> for wit_inspect::Lease {
    fn from(l: plain::LeaseInfo) -> Self {
        wit_inspect::Lease {
            address: l.address,
            attachment: l.attachment.into(),
            since: l.since,
            pool: l.pool,
            pod: l.pod,
            note: l.note,
        }
    }
}

impl From<plain::Figure> for wit_inspect::Figure {
    fn from(f: plain::Figure) -> Self {
        wit_inspect::Figure {
            name: f.name,
            node: f.node,
            value: f.value,
        }
    }
}

impl From<plain::PoolUsage> for wit_inspect::PoolUsage {
    fn from(p: plain::PoolUsage) -> Self {
        wit_inspect::PoolUsage {
            name: p.name,
            capacity: p.capacity,
            used: p.used,
            free: p.free,
            figures: p.figures.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field distinct, so a conversion that swaps two fields of one
    /// type (`search` and `options`, `mtu` and `table`) shows.
    fn allocation() -> wit::Allocation {
        wit::Allocation {
            ips: vec![wit::IpConfig {
                address: "10.0.0.2/24".into(),
                gateway: Some("10.0.0.1".into()),
            }],
            routes: vec![wit::Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("10.0.0.254".into()),
                mtu: Some(1),
                advmss: Some(2),
                priority: Some(3),
                table: Some(4),
                scope: Some(5),
            }],
            dns: Some(wit::Dns {
                nameservers: vec!["10.0.0.53".into()],
                domain: Some("cluster.local".into()),
                search: vec!["svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
        }
    }

    #[test]
    fn an_allocation_crosses_the_boundary_both_ways_unchanged() {
        let plain: plain::Allocation = allocation().into();
        assert_eq!(plain.routes[0].mtu, Some(1));
        assert_eq!(plain.routes[0].table, Some(4));
        assert_eq!(plain.dns.as_ref().unwrap().search, ["svc.cluster.local"]);
        assert_eq!(plain.dns.as_ref().unwrap().options, ["ndots:5"]);
        let back: wit::Allocation = plain.into();
        assert_eq!(format!("{back:?}"), format!("{:?}", allocation()));
    }

    #[test]
    fn a_context_arrives_whole() {
        let ctx = wit::Context {
            network: "n".into(),
            cni_version: "1.1.0".into(),
            config: "{}".into(),
            cni_args: vec![("IP".into(), "10.0.0.9".into())],
            args: Some("{\"a\":1}".into()),
            runtime_config: Some("{\"r\":2}".into()),
            netns: Some("/ns".into()),
            node: "node-a".into(),
            dns: None,
        };
        let plain: plain::Context = ctx.into();
        assert_eq!(
            (plain.args.as_deref(), plain.runtime_config.as_deref()),
            (Some("{\"a\":1}"), Some("{\"r\":2}"))
        );
        assert_eq!(plain.cni_args, [("IP".to_string(), "10.0.0.9".to_string())]);
        assert_eq!(
            (plain.network.as_str(), plain.node.as_str()),
            ("n", "node-a")
        );
    }

    #[test]
    fn errors_keep_their_kind_and_code() {
        let e: wit::IpamError = plain::IpamError::Policy(plain::PolicyError {
            code: 101,
            msg: "taken".into(),
            details: "by c1".into(),
        })
        .into();
        assert_eq!(
            format!("{e:?}"),
            format!(
                "{:?}",
                wit::IpamError::Policy(wit::PolicyError {
                    code: 101,
                    msg: "taken".into(),
                    details: "by c1".into()
                })
            )
        );
        let e: wit::IpamError = plain::IpamError::Exhausted("full".into()).into();
        assert!(matches!(e, wit::IpamError::Exhausted(m) if m == "full"));
    }
}
