//! The CNI protocol (spec 1.1.0 and the versions before it), in one place,
//! as the CNI project's `pkg/skel` and `pkg/types` are for Go plugins.
//!
//! Everything that speaks CNI uses this crate: the `wasm-ipam` host parses
//! its environment and prints its results and errors with it,
//! `cni-conformance` and the benchmark spawn plugins with [`exec`], the
//! suite's faulty test plugin speaks the envelope with it, and the policy
//! kit reads versions with it. Before it existed the envelope was parsed
//! in four places, with three behaviours for bad input.
//!
//! Nothing here knows about policies, WebAssembly or stores. What a plugin
//! is judged against lives in `cni-conformance`, which checks results
//! against the spec's text rather than against these types, so a bug here
//! cannot hide itself.

pub mod env;
pub mod error;
#[cfg(feature = "exec")]
pub mod exec;
pub mod result;
pub mod version;

pub use error::CniError;
