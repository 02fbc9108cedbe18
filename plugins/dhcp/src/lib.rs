//! The `dhcp` policy: each attachment's address comes from the site's DHCP
//! server, through the host's `dhcp` capability (`wit/ipam.wit`), for the
//! macvlan and ipvlan networks of bare-metal and telco sites where that
//! server owns the addresses.
//!
//! The reference dhcp plugin's config works as it is (see `config`). Beyond
//! the reference:
//!
//! - a stable client id per workload (sticky's `key`): a StatefulSet pod
//!   re-created under a new container id asks under the same client id, so
//!   the server gives it the same lease;
//! - the pod's name as the DHCP host name, which a server that registers its
//!   clients in DNS (dnsmasq) names the address after;
//! - a named workload's lease is not released at DEL but left to lapse,
//!   still bound to its client id at the server, unrenewed: the re-created
//!   pod gets it back (`"release": "always"` releases every lease, as the
//!   reference does);
//! - the leases kept in the store (the kit's layout, each tagged with its
//!   workload), so `leases`, `metrics`, GC, the reclaim after a reboot and
//!   `release-node` see and release them as any other policy's; the host
//!   keeps its own record of each for renewals.
//!
//! Store layout, beside the kit's leases:
//! - `workload/<key>`: the attachment a workload is attached as now, so
//!   the same pod is never attached twice under one client id.

mod config;
mod routes;

use std::net::IpAddr;

use ipam_kit::dhcp::{Dhcp, DhcpError, DhcpLease, DhcpParams, Ending};
use ipam_kit::errors::{self, ALREADY_ALLOCATED, NOT_ALLOCATED};
use ipam_kit::leases::{self, Lease};
use ipam_kit::{
    Allocation, Attachment, Availability, Context, Dns, Host, IpConfig, IpamError, Level, Policy,
    Released, args,
};
use serde::{Deserialize, Serialize};

pub use config::Config;

pub struct DhcpPolicy;

ipam_kit::export_policy!(DhcpPolicy, dhcp);

/// Who a workload is attached as now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub container_id: String,
    pub ifname: String,
}

fn workload_key(key: &str) -> String {
    format!("workload/{key}")
}

/// The client id (option 61) of a workload: type 0 (not a hardware
/// address) and text. A named workload is `wasm-ipam/<network>/<key>`; an
/// attachment with no workload names is the reference's
/// `<container id>/<network>/<ifname>`. Text past DHCP's 255 bytes is
/// replaced by its hash, which keeps it stable where cutting would not
/// keep it unique.
pub fn client_id(ctx: &Context, att: &Attachment, key: &str) -> Vec<u8> {
    let text = if key.starts_with("container:") {
        format!("{}/{}/{}", att.container_id, ctx.network, att.ifname)
    } else {
        format!("wasm-ipam/{}/{key}", ctx.network)
    };
    let text = if text.len() + 1 > config::MAX_OPTION {
        format!("wasm-ipam/{}", blake3::hash(text.as_bytes()).to_hex())
    } else {
        text
    };
    let mut id = vec![0u8];
    id.extend_from_slice(text.as_bytes());
    id
}

fn the_dhcp(host: &mut dyn Host) -> Result<&mut dyn Dhcp, IpamError> {
    host.dhcp().ok_or_else(|| {
        errors::invalid_config(
            "dhcp: this host offers no DHCP capability; the network must grant it with \"grant\": [\"dhcp\"] under ipam",
        )
    })
}

/// Parses the config, and says once per call that the reference's daemon
/// socket means nothing here.
fn parse(host: &dyn Host, ctx: &Context) -> Result<Config, IpamError> {
    let cfg = config::parse(ctx)?;
    if let Some(path) = &cfg.daemon_socket_path {
        host.log(
            Level::Info,
            &format!(
                "daemonSocketPath {path:?} is ignored: wasm-ipam makes the DHCP exchange itself, with no dhcp daemon"
            ),
        );
    }
    Ok(cfg)
}

/// The message of a failed exchange; the host reports its CNI code.
fn exchange_failed(e: DhcpError) -> IpamError {
    IpamError::TryAgain(format!("dhcp: {}", e.message()))
}

/// The address of a lease, without its prefix.
fn address_of(lease: &DhcpLease) -> Result<IpAddr, IpamError> {
    lease
        .address
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            IpamError::TryAgain(format!(
                "dhcp: the host returned a lease without an address: {:?}",
                lease.address
            ))
        })
}

fn allocation(ctx: &Context, lease: &DhcpLease) -> Allocation {
    let dns = if lease.dns_servers.is_empty() {
        ctx.dns.clone()
    } else {
        Some(Dns {
            nameservers: lease.dns_servers.clone(),
            domain: lease.domain.clone(),
            ..Dns::default()
        })
    };
    Allocation {
        ips: vec![IpConfig {
            address: lease.address.clone(),
            gateway: lease.routers.first().cloned(),
        }],
        routes: routes::of(lease),
        dns,
    }
}

/// Whether a workload key names a workload that can come back: one made
/// of runtime arguments, not of the container id.
fn named(key: &str) -> bool {
    !key.starts_with("container:")
}

/// Ends an attachment: its leases in the store, its workload's holder, and
/// its DHCP lease, which the host releases once this call commits, or, for
/// a named workload (unless `release` is `"always"`), leaves to lapse at
/// the server for the workload to get back. Returns the addresses it held
/// in the store.
fn detach(host: &mut dyn Host, cfg: &Config, att: &Attachment) -> Vec<IpAddr> {
    let ips = leases::of(host, att);
    let mut ending = Ending::Release;
    for ip in &ips {
        if let Some(Lease { tag: Some(key), .. }) = leases::get(host, *ip) {
            if named(&key) && !cfg.release_always {
                ending = Ending::Lapse;
            }
            let holder = host
                .get(&workload_key(&key))
                .and_then(|v| serde_json::from_slice::<Holder>(&v).ok());
            if holder.is_some_and(|h| h.container_id == att.container_id && h.ifname == att.ifname)
            {
                host.delete(&workload_key(&key));
            }
        }
        leases::release(host, *ip);
    }
    if let Some(dhcp) = host.dhcp() {
        dhcp.release(att, ending);
    }
    ips
}

impl Policy for DhcpPolicy {
    fn add(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<Allocation, IpamError> {
        let cfg = parse(host, ctx)?;
        let mut known = vec!["K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_UID"];
        known.extend(cfg.arg_names());
        args::reject_unknown_cni_args(ctx, &known)?;
        let requested = args::requested_ips(ctx)?;
        if !requested.is_empty() {
            let list: Vec<String> = requested.iter().map(IpAddr::to_string).collect();
            return Err(errors::unsupported(format!(
                "dhcp: the DHCP server chooses the address; a requested address ({}) cannot be honoured",
                list.join(", ")
            )));
        }
        if let Some(held) = leases::of(host, att).first() {
            return Err(errors::policy(
                ALREADY_ALLOCATED,
                format!(
                    "{held} has been allocated to {}, duplicate allocation is not allowed",
                    att.container_id
                ),
            ));
        }
        let key = ipam_kit::workload::workload(&cfg.key, ctx, att);
        if let Some(h) = host
            .get(&workload_key(&key))
            .and_then(|v| serde_json::from_slice::<Holder>(&v).ok())
        {
            return Err(errors::policy(
                ALREADY_ALLOCATED,
                format!(
                    "workload {key} is already attached as container {} ({}); the same pod cannot hold its DHCP lease twice",
                    h.container_id, h.ifname
                ),
            ));
        }
        let provide = cfg.provided(ctx)?;
        let params = DhcpParams {
            // A client id or host name in `provide` wins, as in the
            // reference.
            client_id: provide
                .iter()
                .find(|(code, _)| *code == 61)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| client_id(ctx, att, &key)),
            hostname: args::cni_arg(ctx, "K8S_POD_NAME")
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            request: cfg.request.clone(),
            provide,
            timeout_ms: cfg.timeout_ms,
        };
        let lease = the_dhcp(host)?.acquire(&params).map_err(exchange_failed)?;
        let ip = address_of(&lease)?;
        if let Some(other) = leases::get(host, ip) {
            return Err(IpamError::TryAgain(format!(
                "dhcp: the DHCP server {} leased {ip}, which the store records as held by container {} ({}); the server and the store disagree (did the server lose its leases?)",
                lease.server, other.container_id, other.ifname
            )));
        }
        let mut record = Lease::new(ctx, att, host.now());
        record.tag = Some(key.clone());
        leases::reserve(host, ip, &record);
        let holder = Holder {
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
        };
        host.put(
            &workload_key(&key),
            &serde_json::to_vec(&holder).expect("serializes"),
        );
        Ok(allocation(ctx, &lease))
    }

    fn del(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<(), IpamError> {
        let cfg = parse(host, ctx)?;
        detach(host, &cfg, att);
        Ok(())
    }

    fn check(
        host: &mut dyn Host,
        ctx: &Context,
        att: &Attachment,
        prev: Option<&Allocation>,
    ) -> Result<(), IpamError> {
        parse(host, ctx)?;
        leases::check(host, att, prev, "dhcp")?;
        let now = host.now();
        let lease = the_dhcp(host)?.held(att).ok_or_else(|| {
            errors::policy(
                NOT_ALLOCATED,
                format!(
                    "dhcp: no DHCP lease is held for container {} ifname {}",
                    att.container_id, att.ifname
                ),
            )
        })?;
        let ip = address_of(&lease)?;
        if !leases::of(host, att).contains(&ip) {
            return Err(errors::policy(
                NOT_ALLOCATED,
                format!(
                    "dhcp: the DHCP lease of container {} is for {ip}, which the store does not record for it",
                    att.container_id
                ),
            ));
        }
        if lease.expires_at <= now {
            return Err(errors::policy(
                NOT_ALLOCATED,
                format!(
                    "dhcp: the DHCP lease of {ip} from {} lapsed {} s ago: nothing renewed it (wasm-ipam serve renews leases)",
                    lease.server,
                    now - lease.expires_at
                ),
            ));
        }
        Ok(())
    }

    fn gc(
        host: &mut dyn Host,
        ctx: &Context,
        valid: &[Attachment],
    ) -> Result<Vec<Released>, IpamError> {
        let cfg = parse(host, ctx)?;
        let mut released = Vec::new();
        for att in leases::stale_attachments(host, valid) {
            for ip in detach(host, &cfg, &att) {
                released.push(Released {
                    attachment: att.clone(),
                    address: ip.to_string(),
                });
            }
        }
        Ok(released)
    }

    fn status(host: &mut dyn Host, ctx: &Context) -> Result<Availability, IpamError> {
        // Whether the server has an address left is its own to say: an ADD
        // asks it.
        parse(host, ctx)?;
        Ok(Availability::Available)
    }

    /// The DHCP server's pools are its own: no capacity to report, only
    /// the leases (`leases` shows them, each noted with its workload).
    fn usage(
        host: &mut dyn Host,
        ctx: &Context,
    ) -> Result<Vec<ipam_kit::inspect::PoolUsage>, IpamError> {
        config::parse(ctx)?;
        let _ = host;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests;
