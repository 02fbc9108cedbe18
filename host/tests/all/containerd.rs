//! The containerd kit (`testkit/containerd`) as these tests use it: this
//! build's binary as the IPAM plugin, and no serve socket, so each call
//! the runtime makes runs in its own process unless a test says otherwise.

use serde_json::Value;

pub use containerd_kit::{Containerd, chain};

/// Whether the kit can run here; CI must be able to.
pub fn available() -> bool {
    match containerd_kit::missing() {
        None => true,
        Some(why) => {
            assert!(std::env::var_os("CI").is_none(), "in CI: {why}");
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// containerd with `conflist` as the node's network.
pub fn start(conflist: &Value, bridge: &str) -> Containerd {
    Containerd::start(&containerd_kit::Node {
        wasm_ipam: crate::common::plugin(),
        conflist,
        bridge,
        env: &[(wasm_ipam::envvars::SOCKET, "")],
    })
}
