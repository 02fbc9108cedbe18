//! The allocation logic of wasm-ipam's Rust policies, as plain Rust: no
//! bindings, no component toolchain, nothing that runs only inside the
//! sandbox. Everything here is a function of its inputs and a [`Host`] (the
//! store, the clock and the log behind a trait), so it runs natively in
//! unit tests against [`MemHost`].
//!
//! - [`types`]: the contract's values (`wit/ipam.wit`) as Rust types;
//! - [`ranges`]: the reference host-local range format, shared by every
//!   policy that accepts `ranges`;
//! - [`args`]: `CNI_ARGS`, `args` and `runtimeConfig` requests;
//! - [`leases`]: the lease layout the built-in policies share, so a
//!   network can switch between them;
//! - [`inspect`]: what a policy reports to the operator tools;
//! - [`errors`]: the error constructors and the built-in policy codes;
//! - [`fields`]: which `ipam` fields no one reads;
//! - [`keys`]: store keys of unbounded runtime input (container ids);
//! - [`workload`]: who a workload is across re-creations (the `key` field);
//! - [`dhcp`]: the optional `dhcp` import's values and trait, and a DHCP
//!   server in memory for tests.
//!
//! The guest SDK, `ipam-kit`, adds the bindings, the real [`Host`] and the
//! export macro, and re-exports all of this: a policy depends on the kit.

pub mod args;
pub mod dhcp;
pub mod errors;
pub mod fields;
pub mod host;
pub mod inspect;
pub mod keys;
pub mod leases;
pub mod ranges;
pub mod testing;
pub mod types;
pub mod workload;

pub use host::{Host, MemHost};
pub use types::*;
