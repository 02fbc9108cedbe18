//! A minimal wasm-ipam policy, meant to be copied: every attachment gets
//! the lowest free address of one subnet.
//!
//! ```json
//! "ipam": {
//!   "type": "wasm-ipam",
//!   "policy": "/opt/cni/policies/policy_template.wasm",
//!   "subnet": "10.1.0.0/24",
//!   "gateway": "10.1.0.1"
//! }
//! ```
//!
//! What a policy is (see `wit/ipam.wit` and `docs/writing-a-policy.md`):
//!
//! - Five functions, one per CNI operation: add, del, check, gc, status.
//!   The host has already checked the environment and the CNI envelope;
//!   the policy gets the `ipam` object as text and validates its own fields.
//! - Its only state is the host's key-value store, inside one transaction
//!   per call. An error (or a trap) rolls back everything the call wrote, so
//!   a policy never cleans up after itself on failure.
//! - It may be run again from scratch when its transaction loses a race, so
//!   it must not keep state anywhere else (it cannot: the sandbox has no
//!   files, sockets or environment).
//!
//! The kit's `leases` module keeps the one lease layout every built-in
//! policy uses, which is what `wasm-ipam leases` and `gc` read: use it and
//! the operator tools work with your policy for free.

use std::net::IpAddr;

use ipam_kit::args;
use ipam_kit::errors::{self, ADDRESS_UNAVAILABLE, ALREADY_ALLOCATED, invalid_config};
use ipam_kit::leases::{self, Lease};
use ipam_kit::ranges::{ip_from_num, ip_num};
use ipam_kit::{
    Allocation, Attachment, Availability, Context, Host, IpConfig, IpamError, Policy, Released,
};
use ipnet::IpNet;
use serde::Deserialize;

/// The policy's own fields of the `ipam` object. Unknown fields are
/// allowed: the object also holds the host's (`type`, `policy`, `dataDir`).
#[derive(Deserialize)]
struct Config {
    subnet: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
}

impl Config {
    /// Parse errors become `invalid-config`, which the host reports as CNI
    /// error code 7 with this message.
    fn parse(ctx: &Context) -> Result<Config, IpamError> {
        let cfg: Config = serde_json::from_str(&ctx.config)
            .map_err(|e| invalid_config(format!("template: invalid ipam config: {e}")))?;
        if cfg.subnet != cfg.subnet.trunc() {
            return Err(invalid_config(format!(
                "template: subnet {} has host bits set",
                cfg.subnet
            )));
        }
        if cfg.subnet.max_prefix_len() - cfg.subnet.prefix_len() < 2 {
            return Err(invalid_config("template: subnet is too small"));
        }
        Ok(cfg)
    }

    fn gateway(&self) -> IpAddr {
        self.gateway
            .unwrap_or_else(|| ip_from_num(self.subnet.addr(), ip_num(self.subnet.network()) + 1))
    }

    /// The addresses that may be handed out, lowest first: the subnet's
    /// hosts without the gateway.
    fn candidates(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let gateway = self.gateway();
        self.subnet.hosts().filter(move |ip| *ip != gateway)
    }
}

pub struct Template;

impl Policy for Template {
    fn add(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<Allocation, IpamError> {
        // CNI_ARGS keys we do not know are refused unless the runtime set
        // IgnoreUnknown=1 (Kubernetes does), as the reference plugins do.
        args::reject_unknown_cni_args(ctx, &["IP"])?;
        let cfg = Config::parse(ctx)?;
        // A second ADD for the same attachment is an error in CNI.
        if let Some(held) = leases::of(host, att).first() {
            return Err(errors::policy(
                ALREADY_ALLOCATED,
                format!("template: {} already holds {held}", att.container_id),
            ));
        }
        let lease = Lease::new(ctx, att, host.now());
        // The runtime may ask for an address (CNI_ARGS IP=, args.cni.ips or
        // the ips capability). cni-conformance checks that a policy honours
        // such a request or refuses it, never silently hands out another.
        let ip = match args::requested_ips(ctx)?.as_slice() {
            [] => cfg
                .candidates()
                // The first candidate nobody holds. This reads one key per
                // taken address: fine for a /24, a reason to keep an index
                // for a /16.
                .find(|ip| leases::reserve(host, *ip, &lease))
                // `exhausted` is CNI code 11: the runtime may try again.
                .ok_or_else(|| errors::exhausted(format!("template: {} is full", cfg.subnet)))?,
            [ip] if cfg.candidates().any(|c| c == *ip) => {
                if !leases::reserve(host, *ip, &lease) {
                    return Err(errors::policy(
                        ADDRESS_UNAVAILABLE,
                        format!("template: requested {ip} is taken"),
                    ));
                }
                *ip
            }
            other => {
                return Err(errors::policy(
                    ADDRESS_UNAVAILABLE,
                    format!(
                        "template: cannot give {other:?}: one address of {} only",
                        cfg.subnet
                    ),
                ));
            }
        };
        Ok(Allocation {
            ips: vec![IpConfig {
                address: format!("{ip}/{}", cfg.subnet.prefix_len()),
                gateway: Some(cfg.gateway().to_string()),
            }],
            routes: Vec::new(),
            dns: ctx.dns.clone(),
        })
    }

    fn del(host: &mut dyn Host, _ctx: &Context, att: &Attachment) -> Result<(), IpamError> {
        // DEL must succeed when there is nothing to delete, and should not
        // fail on a config that changed since the ADD: release by owner.
        leases::release_all(host, att);
        Ok(())
    }

    fn check(
        host: &mut dyn Host,
        ctx: &Context,
        att: &Attachment,
        prev: Option<&Allocation>,
    ) -> Result<(), IpamError> {
        Config::parse(ctx)?;
        leases::check(host, att, prev, "template")
    }

    fn gc(
        host: &mut dyn Host,
        _ctx: &Context,
        valid: &[Attachment],
    ) -> Result<Vec<Released>, IpamError> {
        Ok(leases::release_stale(host, valid))
    }

    fn status(host: &mut dyn Host, ctx: &Context) -> Result<Availability, IpamError> {
        let cfg = Config::parse(ctx)?;
        Ok(
            match cfg.candidates().find(|ip| leases::get(host, *ip).is_none()) {
                Some(_) => Availability::Available,
                None => Availability::Unavailable(format!("template: {} is full", cfg.subnet)),
            },
        )
    }
}

// Generates the component's exports from the `Policy` implementation.
ipam_kit::export_policy!(Template);

#[cfg(test)]
mod tests;
