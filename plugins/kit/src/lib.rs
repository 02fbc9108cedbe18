//! The guest SDK for wasm-ipam policies written in Rust: what turns
//! allocation logic into a component of the `cni:ipam` contract.
//!
//! A policy is a pure function of its inputs and a transactional key-value
//! store (see `wit/ipam.wit`). The logic itself (ranges, leases, args, the
//! inspect helpers, the contract's values as Rust types) is the
//! `ipam-alloc` crate, which has no bindings; this crate adds what runs only
//! in the component, and re-exports `ipam-alloc` so a policy depends on
//! this crate alone:
//!
//! - [`bindings`]: the `cni:ipam` bindings (world `ipam-dhcp-policy`, the
//!   widest), generated once; a component imports only what its code
//!   calls, so a policy that never asks for DHCP does not import it;
//! - [`WitHost`]: the real [`Host`], over the component's imports, and
//!   [`WitDhcpHost`], the same with the optional `dhcp` import;
//! - [`Policy`] and [`export_policy!`]: implement the trait, export it, done;
//!   [`glue`] converts between the bindings and the plain types at the
//!   boundary.

pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "ipam-dhcp-policy",
        pub_export_macro: true,
        export_macro_name: "__export_ipam_policy",
        default_bindings_module: "ipam_kit::bindings",
    });
}

mod convert;
pub mod glue;
mod wit_dhcp;
mod wit_host;

pub use ipam_alloc::{
    Allocation, Attachment, Availability, Context, Dns, Host, IpConfig, IpamError, Level, MemHost,
    PolicyError, Released, Route,
};
pub use ipam_alloc::{
    args, dhcp, errors, fields, host, inspect, keys, leases, ranges, testing, types, workload,
};
pub use wit_dhcp::{WitDhcp, WitDhcpHost};
pub use wit_host::WitHost;

/// An allocation policy. Each method is one CNI operation; see
/// `wit/ipam.wit` for the contract each must keep.
pub trait Policy {
    fn add(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<Allocation, IpamError>;
    fn del(host: &mut dyn Host, ctx: &Context, att: &Attachment) -> Result<(), IpamError>;
    fn check(
        host: &mut dyn Host,
        ctx: &Context,
        att: &Attachment,
        prev: Option<&Allocation>,
    ) -> Result<(), IpamError>;
    fn gc(
        host: &mut dyn Host,
        ctx: &Context,
        valid: &[Attachment],
    ) -> Result<Vec<Released>, IpamError>;
    fn status(host: &mut dyn Host, ctx: &Context) -> Result<Availability, IpamError>;
    /// `ctx.node` has left the cluster: release its per-node state (see
    /// `nodes` in `wit/ipam.wit`). By default there is none: every lease
    /// belongs to an attachment, which the host has already released
    /// through DEL.
    fn release_node(host: &mut dyn Host, ctx: &Context) -> Result<Vec<Released>, IpamError> {
        let _ = (host, ctx);
        Ok(Vec::new())
    }
    /// Every lease, for the operator tools (`inspect` in `wit/ipam.wit`).
    /// By default the kit's lease layout, each lease with its range.
    fn leases(host: &mut dyn Host, ctx: &Context) -> Result<Vec<inspect::LeaseInfo>, IpamError> {
        Ok(inspect::range_leases(host, ctx))
    }
    /// How full each pool is, for the operator tools. By default each
    /// range of a host-local `ranges` config (none for another shape).
    fn usage(host: &mut dyn Host, ctx: &Context) -> Result<Vec<inspect::PoolUsage>, IpamError> {
        inspect::range_usage(host, ctx, &|_| 0)
    }
}

/// Exports a [`Policy`] implementation as the component's `policy`,
/// `inspect` and `nodes` interfaces (world `ipam-policy-tools`).
/// `export_policy!(P, dhcp)` runs it on [`WitDhcpHost`] instead, whose
/// [`Host::dhcp`] is the `dhcp` import (world `ipam-dhcp-policy`): the
/// component then imports it, and runs only where a network grants it.
/// Only in the wasm build: a native build (`cargo test`) has no component to
/// export from, and its linker refuses the component's symbol names.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        $crate::export_policy!(@on $policy, $crate::WitHost);
    };
    ($policy:ty, dhcp) => {
        $crate::export_policy!(@on $policy, $crate::WitDhcpHost);
    };
    (@on $policy:ty, $host:ty) => {
        #[cfg(target_arch = "wasm32")]
        mod __ipam_policy_export {
            use super::*;
            use $crate::glue::{self, wit};

            struct Glue;
            type H = $host;

            impl $crate::bindings::exports::cni::ipam::policy::Guest for Glue {
                fn add(ctx: wit::Context, att: wit::Attachment) -> glue::Out<wit::Allocation> {
                    glue::add::<$policy, H>(ctx, att)
                }
                fn del(ctx: wit::Context, att: wit::Attachment) -> glue::Out<()> {
                    glue::del::<$policy, H>(ctx, att)
                }
                fn check(
                    ctx: wit::Context,
                    att: wit::Attachment,
                    prev: Option<wit::Allocation>,
                ) -> glue::Out<()> {
                    glue::check::<$policy, H>(ctx, att, prev)
                }
                fn gc(
                    ctx: wit::Context,
                    valid: Vec<wit::Attachment>,
                ) -> glue::Out<Vec<wit::Released>> {
                    glue::gc::<$policy, H>(ctx, valid)
                }
                fn status(ctx: wit::Context) -> glue::Out<wit::Availability> {
                    glue::status::<$policy, H>(ctx)
                }
            }

            impl $crate::bindings::exports::cni::ipam::nodes::Guest for Glue {
                fn release_node(ctx: wit::Context) -> glue::Out<Vec<wit::Released>> {
                    glue::release_node::<$policy, H>(ctx)
                }
            }

            impl $crate::bindings::exports::cni::ipam::inspect::Guest for Glue {
                fn leases(ctx: wit::Context) -> glue::Out<Vec<wit::Lease>> {
                    glue::leases::<$policy, H>(ctx)
                }
                fn usage(ctx: wit::Context) -> glue::Out<Vec<wit::PoolUsage>> {
                    glue::usage::<$policy, H>(ctx)
                }
            }

            $crate::bindings::__export_ipam_policy!(Glue with_types_in $crate::bindings);
        }
    };
}
