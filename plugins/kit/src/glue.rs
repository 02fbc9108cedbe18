//! One function per export, for [`crate::export_policy!`]: each converts
//! the call's arguments to the plain types, runs the [`Policy`] on the real
//! host `H` (the kit's `WitHost`, or `WitDhcpHost` for a policy that asks
//! for DHCP), and converts its answer back. Generic functions rather than macro
//! text, so the compiler checks them once, here.

use crate::{Host, Policy};

/// The bindings' values, under one name for the macro.
pub mod wit {
    pub use crate::bindings::cni::ipam::types::{
        Allocation, Attachment, Availability, Context, IpamError, Released,
    };
    pub use crate::bindings::exports::cni::ipam::inspect::{Lease, PoolUsage};
}

/// What an export returns.
pub type Out<T> = Result<T, wit::IpamError>;

fn out<T, U: From<T>>(r: Result<T, crate::IpamError>) -> Out<U> {
    r.map(Into::into).map_err(Into::into)
}

fn list<T, U: From<T>>(r: Result<Vec<T>, crate::IpamError>) -> Out<Vec<U>> {
    out(r).map(|v: Vec<T>| v.into_iter().map(Into::into).collect())
}

pub fn add<P: Policy, H: Host + Default>(
    ctx: wit::Context,
    att: wit::Attachment,
) -> Out<wit::Allocation> {
    out(P::add(&mut H::default(), &ctx.into(), &att.into()))
}

pub fn del<P: Policy, H: Host + Default>(ctx: wit::Context, att: wit::Attachment) -> Out<()> {
    out(P::del(&mut H::default(), &ctx.into(), &att.into()))
}

pub fn check<P: Policy, H: Host + Default>(
    ctx: wit::Context,
    att: wit::Attachment,
    prev: Option<wit::Allocation>,
) -> Out<()> {
    let prev = prev.map(crate::Allocation::from);
    out(P::check(
        &mut H::default(),
        &ctx.into(),
        &att.into(),
        prev.as_ref(),
    ))
}

pub fn gc<P: Policy, H: Host + Default>(
    ctx: wit::Context,
    valid: Vec<wit::Attachment>,
) -> Out<Vec<wit::Released>> {
    let valid: Vec<crate::Attachment> = valid.into_iter().map(Into::into).collect();
    list(P::gc(&mut H::default(), &ctx.into(), &valid))
}

pub fn status<P: Policy, H: Host + Default>(ctx: wit::Context) -> Out<wit::Availability> {
    out(P::status(&mut H::default(), &ctx.into()))
}

pub fn release_node<P: Policy, H: Host + Default>(ctx: wit::Context) -> Out<Vec<wit::Released>> {
    list(P::release_node(&mut H::default(), &ctx.into()))
}

pub fn leases<P: Policy, H: Host + Default>(ctx: wit::Context) -> Out<Vec<wit::Lease>> {
    list(P::leases(&mut H::default(), &ctx.into()))
}

pub fn usage<P: Policy, H: Host + Default>(ctx: wit::Context) -> Out<Vec<wit::PoolUsage>> {
    list(P::usage(&mut H::default(), &ctx.into()))
}
