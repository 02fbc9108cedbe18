//! The CNI protocol, as the spec (1.1.0) and the reference plugins define it.
//! Nothing here knows about policies or WebAssembly.

pub mod config;
pub mod env;
pub mod error;
pub mod resolv;
pub mod result;
pub mod version;

pub use error::CniError;
