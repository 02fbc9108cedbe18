//! The host's `dhcp` capability (`wit/ipam.wit`): DHCPv4 leases from the
//! site's server, which a policy asks for and the host obtains, in the
//! container's network namespace on the attachment's interface.
//!
//! - [`client`]: the exchange itself (acquire, renew, rebind, release),
//!   with `dhcproto`; [`socket`] makes its socket in the namespace;
//! - [`record`]: the host's record of each lease it holds, in the
//!   network's store under the host's keys;
//! - [`capability`]: the import as one call gives it to its policy, with
//!   idempotent acquiring across a call's attempts;
//! - [`outbox`]: the RELEASEs, sent only after the transaction that gave
//!   the lease up committed;
//! - [`registry`]: the stores `wasm-ipam serve` renews leases from (the
//!   renewals themselves are `serve::renewals`).
//!
//! docs/reliability.md gives the order of the side effects around a
//! call's transaction, and what a crash at each step leaves.

pub mod capability;
pub mod client;
pub mod outbox;
pub mod record;
pub mod registry;
mod socket;

pub use capability::{Capability, Exchanges, Target};
pub use client::{DhcpError, Lease, Request, acquire, release, renew};
pub use socket::Attachment;
