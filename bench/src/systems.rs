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
    /// Ours, each call forwarded to a `wasm-ipam serve` on the node.
    Served(&'static str),
}

impl System {
    pub fn name(&self) -> String {
        match self {
            System::Reference => "reference host-local".into(),
            System::Ours(p) => format!("wasm-ipam {p}"),
            System::Served(p) => format!("wasm-ipam {p}, served"),
        }
    }

    pub fn binary(&self, ours: &Path) -> PathBuf {
        match self {
            System::Reference => PathBuf::from(REFERENCE),
            System::Ours(_) | System::Served(_) => ours.to_path_buf(),
        }
    }

    /// The `WASM_IPAM_SOCKET` its calls get: `server`'s socket when served,
    /// else none, so that a server running on this machine never answers
    /// the one-shot cells.
    pub fn socket(&self, server: Option<&Server>) -> String {
        match (self, server) {
            (System::Served(_), Some(server)) => server.socket.display().to_string(),
            _ => String::new(),
        }
    }

    pub fn conf(&self, data_dir: &Path, cache_dir: &Path) -> Value {
        let ipam = match self {
            System::Reference => {
                json!({"type": "host-local", "ranges": [[{"subnet": "10.128.0.0/16"}]]})
            }
            System::Ours("pooled") | System::Served("pooled") => {
                json!({"type": "wasm-ipam", "policy": "pooled", "node": "bench-node",
                                             "pools": [{"name": "p", "cidr": "10.128.0.0/16"}]})
            }
            System::Ours(p) | System::Served(p) => {
                json!({"type": "wasm-ipam", "policy": p, "holdSeconds": 0,
                                      "ranges": [[{"subnet": "10.128.0.0/16"}]]})
            }
        };
        let mut ipam = ipam;
        ipam["dataDir"] = json!(data_dir);
        if !matches!(self, System::Reference) {
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
            System::Ours(_) | System::Served(_) if n == 0 => {}
            System::Ours(_) | System::Served(_) => {
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

/// A call's environment, with no server to forward to: see [`env_to`].
pub fn env(command: &str, id: &str) -> Call {
    env_to(command, id, "")
}

/// A call's environment, forwarded to the server on `socket` (empty:
/// none).
pub fn env_to(command: &str, id: &str, socket: &str) -> Call {
    Call {
        netns: Some("/var/run/netns/bench".into()),
        ..Call::attach(command, id)
    }
    .env("CNI_PATH", "/usr/lib/cni")
    .env(wasm_ipam::envvars::SOCKET, socket)
}

/// A `wasm-ipam serve` for the served cells, on a socket of its own;
/// stopped (SIGTERM, as a node would) when dropped.
pub struct Server {
    pub socket: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(ours: &Path) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("serve").join("wasm-ipam.sock");
        let mut child = Command::new(ours)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::piped())
            .spawn()?;
        // It prints one line once it listens.
        let mut line = [0u8; 1];
        child
            .stdout
            .as_mut()
            .expect("piped")
            .read_exact(&mut line)?;
        Ok(Server {
            socket,
            child,
            _dir: dir,
        })
    }

    /// The server's peak RSS so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
