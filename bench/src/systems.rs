//! The plugins under measurement, their configs on a /16, and how each is
//! filled to a given number of allocated addresses before timing.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub const REFERENCE: &str = "/usr/lib/cni/host-local";
pub const NETWORK: &str = "bench";

#[derive(Clone)]
pub enum System {
    Reference,
    Ours(&'static str),
}

impl System {
    pub fn name(&self) -> String {
        match self {
            System::Reference => "reference host-local".into(),
            System::Ours(p) => format!("wasm-ipam {p}"),
        }
    }

    pub fn binary(&self, ours: &Path) -> PathBuf {
        match self {
            System::Reference => PathBuf::from(REFERENCE),
            System::Ours(_) => ours.to_path_buf(),
        }
    }

    pub fn conf(&self, data_dir: &Path, cache_dir: &Path) -> Value {
        let ipam = match self {
            System::Reference => {
                json!({"type": "host-local", "ranges": [[{"subnet": "10.128.0.0/16"}]]})
            }
            System::Ours("pooled") => {
                json!({"type": "wasm-ipam", "policy": "pooled", "node": "bench-node",
                                             "pools": [{"name": "p", "cidr": "10.128.0.0/16"}]})
            }
            System::Ours(p) => json!({"type": "wasm-ipam", "policy": p, "holdSeconds": 0,
                                      "ranges": [[{"subnet": "10.128.0.0/16"}]]}),
        };
        let mut ipam = ipam;
        ipam["dataDir"] = json!(data_dir);
        if matches!(self, System::Ours(_)) {
            ipam["cacheDir"] = json!(cache_dir);
        }
        json!({"cniVersion": "1.0.0", "name": NETWORK, "type": "bridge", "ipam": ipam})
    }

    /// Allocates `n` addresses. The reference's on-disk layout is written
    /// directly (one file per address and its cursor), as its own ADDs
    /// would leave it; ours go through real ADDs, in this process.
    pub fn prefill(&self, n: usize, conf: &Value, data_dir: &Path) {
        match self {
            System::Reference => {
                let dir = data_dir.join(NETWORK);
                std::fs::create_dir_all(&dir).unwrap();
                let base = u32::from(Ipv4Addr::new(10, 128, 0, 2));
                for i in 0..n as u32 {
                    let ip = Ipv4Addr::from(base + i);
                    std::fs::write(dir.join(ip.to_string()), format!("prefill-{i}\r\neth0"))
                        .unwrap();
                    if i + 1 == n as u32 {
                        std::fs::write(dir.join("last_reserved_ip.0"), ip.to_string()).unwrap();
                    }
                }
            }
            System::Ours(_) => {
                let stdin = conf.to_string();
                for i in 0..n {
                    let id = format!("prefill-{i}");
                    let lookup = |k: &str| -> Option<OsString> {
                        match k {
                            "CNI_COMMAND" => Some("ADD".into()),
                            "CNI_CONTAINERID" => Some(id.clone().into()),
                            "CNI_IFNAME" => Some("eth0".into()),
                            "CNI_NETNS" => Some("/var/run/netns/bench".into()),
                            _ => None,
                        }
                    };
                    if let Err(f) = wasm_ipam::invoke::run(&lookup, stdin.as_bytes()) {
                        panic!("prefill ADD {i} failed: {}", f.error);
                    }
                }
            }
        }
    }
}

pub fn env(command: &str, id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", command.into()),
        ("CNI_CONTAINERID", id.into()),
        ("CNI_IFNAME", "eth0".into()),
        ("CNI_NETNS", "/var/run/netns/bench".into()),
        ("CNI_PATH", "/usr/lib/cni".into()),
    ]
}
