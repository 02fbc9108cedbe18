//! The host's side of CNI. The protocol itself (versions, the `CNI_*`
//! environment, results in each version's layout, error objects) is the
//! shared `cni-protocol` crate, re-exported here; what is the host's own is
//! the network config of an IPAM plugin and the `resolvConf` it reads.
//! Nothing here knows about policies or WebAssembly.

pub mod config;
pub mod resolv;
pub mod store_conf;

pub use ::cni::{CniError, env, error, result, version};
