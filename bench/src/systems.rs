//! The plugins under measurement, their configs on a /16, and how each is
//! filled to a given number of allocated addresses before timing.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cni::exec::Call;
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
    /// would leave it; ours go through real ADDs, run in a helper process
    /// (this program with `--prefill-stdin`) rather than in this one. A
    /// spawned child's peak RSS starts at its parent's (the kernel records
    /// the pre-exec memory as the child's), so a benchmark process that had
    /// run the engine itself would report ~39 MiB for every plugin.
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
            System::Ours(_) if n == 0 => {}
            System::Ours(_) => {
                let me = std::env::current_exe().expect("the benchmark's own path");
                let mut helper = Command::new(me)
                    .arg(format!("--prefill-stdin={n}"))
                    .stdin(Stdio::piped())
                    .spawn()
                    .expect("spawning the prefill helper");
                helper
                    .stdin
                    .take()
                    .expect("piped")
                    .write_all(conf.to_string().as_bytes())
                    .expect("writing the config");
                let status = helper.wait().expect("waiting for the prefill helper");
                assert!(status.success(), "prefill helper failed: {status}");
            }
        }
    }
}

/// The helper's side of [`System::prefill`]: `n` ADDs through the host
/// library, in this process, against the config on stdin.
pub fn prefill_in_process(n: usize) {
    let mut stdin = String::new();
    std::io::stdin()
        .read_to_string(&mut stdin)
        .expect("reading the config");
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

pub fn env(command: &str, id: &str) -> Call {
    Call {
        netns: Some("/var/run/netns/bench".into()),
        ..Call::attach(command, id)
    }
    .env("CNI_PATH", "/usr/lib/cni")
}
