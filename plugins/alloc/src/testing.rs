//! Helpers for policies' unit tests: a context and an attachment with
//! sensible defaults, so each test states only what it is about.

use serde_json::Value;

use crate::{Attachment, Context};

/// A CNI 1.0.0 ADD context for network `net1` on `node-a`, with `config` as
/// the policy's `ipam` object.
pub fn context(config: Value) -> Context {
    Context {
        network: "net1".into(),
        cni_version: "1.0.0".into(),
        config: config.to_string(),
        cni_args: Vec::new(),
        args: None,
        runtime_config: None,
        netns: Some("/var/run/netns/test".into()),
        node: "node-a".into(),
        dns: None,
    }
}

/// Container `id` on `eth0`.
pub fn att(id: &str) -> Attachment {
    Attachment {
        container_id: id.into(),
        ifname: "eth0".into(),
    }
}
