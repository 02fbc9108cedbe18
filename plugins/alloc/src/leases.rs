//! The lease layout every built-in policy uses in its store:
//!
//! - `lease/<ip>` holds a [`Lease`] as JSON: who holds the address;
//! - `owner/<container id>/<ifname>/<ip>` is empty: an index, so that DEL and
//!   CHECK find an attachment's addresses without reading every lease.
//!
//! Container ids and interface names cannot contain `/` (the host checks),
//! so the index keys are unambiguous; a long container id is hashed in the
//! index key ([`crate::keys`]), and kept whole in the lease. One layout for all policies lets the
//! host's operator tooling list leases whatever the policy.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;

use crate::args::cni_arg;
use crate::errors::{NOT_ALLOCATED, policy};
use crate::ranges::parse_ip_loose;
use crate::{Allocation, Attachment, Context, Host, IpamError, Released};

pub const LEASE_PREFIX: &str = "lease/";
pub const OWNER_PREFIX: &str = "owner/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub container_id: String,
    pub ifname: String,
    /// When the lease was taken, by the host's clock.
    #[serde(default)]
    pub since: u64,
    /// The policy's own note, such as the pool or the workload key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `namespace/name` of the pod, when the runtime said (Kubernetes
    /// passes `K8S_POD_NAMESPACE` and `K8S_POD_NAME` in `CNI_ARGS`): for
    /// the operator's lease listing, not for decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl Lease {
    pub fn new(ctx: &Context, att: &Attachment, since: u64) -> Lease {
        let pod =
            cni_arg(ctx, "K8S_POD_NAME").map(|name| match cni_arg(ctx, "K8S_POD_NAMESPACE") {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_string(),
            });
        Lease {
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
            since,
            tag: None,
            pod,
        }
    }

    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }

    /// What GC reports for this lease on `ip`.
    pub fn released(&self, ip: IpAddr) -> Released {
        Released {
            attachment: self.attachment(),
            address: ip.to_string(),
        }
    }
}

fn lease_key(ip: IpAddr) -> String {
    format!("{LEASE_PREFIX}{ip}")
}

fn owner_prefix(att: &Attachment) -> String {
    format!(
        "{OWNER_PREFIX}{}/{}/",
        crate::keys::part(&att.container_id),
        att.ifname
    )
}

pub fn get(host: &dyn Host, ip: IpAddr) -> Option<Lease> {
    host.get(&lease_key(ip))
        .and_then(|v| serde_json::from_slice(&v).ok())
}

/// Takes `ip` for the lease's attachment; false if someone holds it.
pub fn reserve(host: &mut dyn Host, ip: IpAddr, lease: &Lease) -> bool {
    if host.get(&lease_key(ip)).is_some() {
        return false;
    }
    let value = serde_json::to_vec(lease).expect("a lease serializes");
    host.put(&lease_key(ip), &value);
    let att = Attachment {
        container_id: lease.container_id.clone(),
        ifname: lease.ifname.clone(),
    };
    host.put(&format!("{}{ip}", owner_prefix(&att)), b"");
    true
}

/// Frees `ip`, whoever holds it.
pub fn release(host: &mut dyn Host, ip: IpAddr) {
    if let Some(lease) = get(host, ip) {
        let att = Attachment {
            container_id: lease.container_id,
            ifname: lease.ifname,
        };
        host.delete(&format!("{}{ip}", owner_prefix(&att)));
    }
    host.delete(&lease_key(ip));
}

/// The addresses the attachment holds, in key order.
pub fn of(host: &dyn Host, att: &Attachment) -> Vec<IpAddr> {
    let prefix = owner_prefix(att);
    host.scan_all(&prefix)
        .into_iter()
        .filter_map(|(k, _)| k[prefix.len()..].parse().ok())
        .collect()
}

/// Frees everything the attachment holds and says what that was.
pub fn release_all(host: &mut dyn Host, att: &Attachment) -> Vec<IpAddr> {
    let ips = of(host, att);
    for ip in &ips {
        release(host, *ip);
    }
    ips
}

/// Every lease, in key order.
pub fn all(host: &dyn Host) -> Vec<(IpAddr, Lease)> {
    host.scan_all(LEASE_PREFIX)
        .into_iter()
        .filter_map(|(k, v)| {
            let ip = k[LEASE_PREFIX.len()..].parse().ok()?;
            Some((ip, serde_json::from_slice(&v).ok()?))
        })
        .collect()
}

/// CNI CHECK over the lease layout: the attachment holds an address, and
/// every address of `prev` (the runtime's copy of the ADD result) is one it
/// holds. `who` names the policy in the messages.
pub fn check(
    host: &dyn Host,
    att: &Attachment,
    prev: Option<&Allocation>,
    who: &str,
) -> Result<(), IpamError> {
    let held: BTreeSet<IpAddr> = of(host, att).into_iter().collect();
    if held.is_empty() {
        return Err(policy(
            NOT_ALLOCATED,
            format!(
                "{who}: Failed to find address added by container {}",
                att.container_id
            ),
        ));
    }
    for ip in prev.map(|p| p.ips.as_slice()).unwrap_or_default() {
        if !parse_ip_loose(&ip.address).is_some_and(|a| held.contains(&a)) {
            return Err(policy(
                NOT_ALLOCATED,
                format!(
                    "{who}: address {} in prevResult is not allocated to container {} ifname {}",
                    ip.address, att.container_id, att.ifname
                ),
            ));
        }
    }
    Ok(())
}

/// The leases whose attachment is not in `valid`: what CNI GC releases.
pub fn stale(host: &dyn Host, valid: &[Attachment]) -> Vec<(IpAddr, Lease)> {
    let keep: BTreeSet<(&str, &str)> = valid
        .iter()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    all(host)
        .into_iter()
        .filter(|(_, l)| !keep.contains(&(l.container_id.as_str(), l.ifname.as_str())))
        .collect()
}

/// The attachments holding the leases [`stale`] finds, each once, in
/// order: for a policy that releases whole attachments (keeping what its
/// DEL keeps). A set, so a GC stays linear in the leases and the list.
pub fn stale_attachments(host: &dyn Host, valid: &[Attachment]) -> Vec<Attachment> {
    let held: BTreeSet<(String, String)> = stale(host, valid)
        .into_iter()
        .map(|(_, l)| (l.container_id, l.ifname))
        .collect();
    held.into_iter()
        .map(|(container_id, ifname)| Attachment {
            container_id,
            ifname,
        })
        .collect()
}

/// CNI GC for a policy whose leases are all there is to release: frees
/// every lease not held by a `valid` attachment and says what it freed.
pub fn release_stale(host: &mut dyn Host, valid: &[Attachment]) -> Vec<Released> {
    let stale = stale(host, valid);
    for (ip, _) in &stale {
        release(host, *ip);
    }
    stale.iter().map(|(ip, l)| l.released(*ip)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemHost;
    use crate::testing::context;

    fn ctx() -> Context {
        context(serde_json::json!({}))
    }

    #[test]
    fn a_lease_names_the_pod_when_the_runtime_does() {
        let mut c = ctx();
        c.cni_args = vec![
            ("K8S_POD_NAMESPACE".into(), "shop".into()),
            ("K8S_POD_NAME".into(), "web-0".into()),
        ];
        let lease = Lease::new(&c, &att("c1", "eth0"), 7);
        assert_eq!(lease.pod.as_deref(), Some("shop/web-0"));
        assert_eq!(Lease::new(&ctx(), &att("c1", "eth0"), 7).pod, None);
        let json = serde_json::to_string(&lease).unwrap();
        assert_eq!(serde_json::from_str::<Lease>(&json).unwrap(), lease);
    }

    fn att(id: &str, ifname: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn reserve_is_exclusive_and_indexed_by_attachment() {
        let mut h = MemHost::default();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let a = att("c1", "eth0");
        assert!(reserve(&mut h, ip, &Lease::new(&ctx(), &a, 5)));
        assert!(!reserve(
            &mut h,
            ip,
            &Lease::new(&ctx(), &att("c2", "eth0"), 6)
        ));
        assert_eq!(of(&h, &a), vec![ip]);
        assert!(of(&h, &att("c1", "net1")).is_empty());
        assert_eq!(get(&h, ip).unwrap().since, 5);
    }

    #[test]
    fn release_all_removes_leases_and_index() {
        let mut h = MemHost::default();
        let a = att("c1", "eth0");
        for ip in ["10.0.0.2", "fd00::2"] {
            reserve(&mut h, ip.parse().unwrap(), &Lease::new(&ctx(), &a, 0));
        }
        reserve(
            &mut h,
            "10.0.0.3".parse().unwrap(),
            &Lease::new(&ctx(), &att("c2", "eth0"), 0),
        );
        assert_eq!(release_all(&mut h, &a).len(), 2);
        assert!(of(&h, &a).is_empty());
        assert_eq!(all(&h).len(), 1);
        assert_eq!(h.data.len(), 2, "only c2's lease and index entry remain");
    }
}
