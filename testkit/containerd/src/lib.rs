//! A test kit that runs Debian's containerd as kubelet's runtime: its own
//! process with its own root, state, socket, runc root and CNI folders,
//! driven through CRI from Rust as kubelet drives it.
//!
//! No registry is reachable, so the pause image is built here ([`image`]):
//! an OCI archive of a static busybox that sleeps, imported with
//! `ctr images import`. runc on this kind of machine needs
//! `restrict_oom_score_adj` (containerd runs in a container whose
//! oom_score_adj it may not lower).
//!
//! Everything the kit makes is removed when it is dropped, pass or fail:
//! sandboxes through CRI while containerd answers, then every container
//! left in its runc root, its shims, the mounts under its folder (the
//! pods' network namespaces live in its state folder), the bridge, and the
//! folder itself.

mod image;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ListPodSandboxRequest, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatusRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// The reference plugins the chains use.
const REFERENCE: &str = "/usr/lib/cni";

/// What the kit needs, by path, with the Debian package of each.
pub const NEEDS: [(&str, &str); 5] = [
    ("/usr/bin/containerd", "containerd"),
    ("/usr/bin/ctr", "containerd"),
    ("/usr/sbin/runc", "runc"),
    ("/usr/bin/busybox", "busybox-static"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
];

/// Why this machine cannot run the kit (not root, or a package missing),
/// or `None` when it can.
pub fn missing() -> Option<String> {
    if !is_root() {
        return Some("containerd needs root".into());
    }
    NEEDS
        .iter()
        .find(|(path, _)| !Path::new(path).exists())
        .map(|(path, package)| format!("{path} is missing (apt-get install {package})"))
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Where and how a kit's containerd runs its pods.
pub struct Node<'a> {
    /// The wasm-ipam binary the runtime runs as the IPAM plugin.
    pub wasm_ipam: &'a Path,
    /// The network config list, the node's only one.
    pub conflist: &'a Value,
    /// The chain's bridge, removed at the end.
    pub bridge: &'a str,
    /// Variables for the plugins containerd runs.
    pub env: &'a [(&'a str, &'a str)],
}

/// The network config list a kit's containerd uses: bridge with
/// wasm-ipam, then portmap, as a node's would be.
pub fn chain(bridge: &str, ipam: Value) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipam": ipam},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
}

/// A containerd of the test's own.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    env: Vec<(String, String)>,
    bridge: String,
    rt: tokio::runtime::Runtime,
    client: Option<RuntimeServiceClient<Channel>>,
}

impl Containerd {
    /// Starts containerd with the node's network config list, its plugins
    /// from the reference set and `wasm-ipam` the node's binary.
    pub fn start(node: &Node) -> Containerd {
        let Node {
            wasm_ipam,
            conflist,
            bridge,
            env,
        } = *node;
        let dir = tempfile::Builder::new().prefix("wict-").tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for plugin in ["bridge", "portmap", "loopback", "host-local"] {
            std::os::unix::fs::symlink(Path::new(REFERENCE).join(plugin), bin.join(plugin))
                .unwrap();
        }
        std::os::unix::fs::symlink(wasm_ipam, bin.join("wasm-ipam")).unwrap();
        let conf_dir = dir.path().join("net.d");
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::write(
            conf_dir.join("10-pods.conflist"),
            serde_json::to_string_pretty(conflist).unwrap(),
        )
        .unwrap();
        let mut kit = Containerd {
            dir,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bridge: bridge.to_string(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: None,
        };
        std::fs::write(kit.path("config.toml"), kit.config()).unwrap();
        kit.launch();
        kit
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CNI config folder, as the reconciler is given it.
    pub fn conf_dir(&self) -> PathBuf {
        self.path("net.d")
    }

    /// containerd's socket.
    pub fn socket(&self) -> PathBuf {
        self.path("containerd.sock")
    }

    /// The CRI endpoint: `unix://<socket>`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path("containerd.sock").display())
    }

    fn config(&self) -> String {
        let d = self.dir.path().display();
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/bin"
    conf_dir = "{d}/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = "{d}/runc"
"#,
            image = image::NAME
        )
    }

    /// Starts the daemon, waits for its socket, imports the pause image
    /// (a no-op when it is there) and connects.
    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("containerd.log"))
            .unwrap();
        let mut cmd = Command::new("/usr/bin/containerd");
        cmd.arg("--config")
            .arg(self.path("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
        let socket = self.path("containerd.sock");
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "containerd did not start: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = Command::new("/usr/bin/ctr")
            .arg("-a")
            .arg(&socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(image::archive())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctr images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let endpoint = self.endpoint();
        let channel = self
            .rt
            .block_on(wasm_ipam::reconcile::cri::channel(&endpoint))
            .unwrap();
        self.client = Some(RuntimeServiceClient::new(channel));
    }

    /// The end of containerd's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.path("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        self.client.clone().expect("containerd runs")
    }

    fn block<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, String> {
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), f).await })
            .map_err(|_| "no answer within 60 s".to_string())?
            .map_err(|s| s.message().to_string())
    }

    /// RunPodSandbox for pod `namespace/name`, as kubelet sends it: the
    /// sandbox id, or the runtime's error (a failed CNI ADD among them).
    pub fn run_pod(&self, namespace: &str, name: &str) -> Result<String, String> {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{namespace}-{name}"),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.path("logs").display().to_string(),
            linux: Some(k8s_cri::v1::LinuxPodSandboxConfig {
                security_context: Some(k8s_cri::v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption::default()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut client = self.client();
        self.block(async move {
            client
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
                .map(|r| r.into_inner().pod_sandbox_id)
        })
    }

    /// The pod's IPv4 address, as the runtime reports it.
    pub fn pod_ip(&self, id: &str) -> String {
        self.status(id).0.expect("a ready sandbox has an address")
    }

    /// The sandbox's address and its pause process.
    fn status(&self, id: &str) -> (Option<String>, Option<u32>) {
        let mut client = self.client();
        let id = id.to_string();
        let r = self
            .block(async move {
                client
                    .pod_sandbox_status(PodSandboxStatusRequest {
                        pod_sandbox_id: id,
                        verbose: true,
                    })
                    .await
                    .map(|r| r.into_inner())
            })
            .unwrap();
        let ip = r
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty());
        let pid = r
            .info
            .get("info")
            .and_then(|i| serde_json::from_str::<Value>(i).ok())
            .and_then(|v| v["pid"].as_u64())
            .map(|p| p as u32);
        (ip, pid)
    }

    /// The IPv4 addresses on eth0 inside the sandbox, read in its network
    /// namespace.
    pub fn eth0_addresses(&self, id: &str) -> Vec<String> {
        let pid = self.status(id).1.expect("a running sandbox has a pid");
        let out = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "ip",
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet")?;
                words
                    .next()
                    .map(|cidr| cidr.split('/').next().unwrap().to_string())
            })
            .collect()
    }

    /// StopPodSandbox: the runtime's CNI DEL.
    pub fn stop_pod(&self, id: &str) -> Result<(), String> {
        let mut client = self.client();
        let id = id.to_string();
        self.block(async move {
            client
                .stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id })
                .await
                .map(drop)
        })
    }

    /// StopPodSandbox then RemovePodSandbox, as kubelet removes a pod.
    pub fn remove_pod(&self, id: &str) -> Result<(), String> {
        self.stop_pod(id)?;
        let mut client = self.client();
        let id = id.to_string();
        self.block(async move {
            client
                .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
                .map(drop)
        })
    }

    /// Every sandbox the runtime lists.
    pub fn sandboxes(&self) -> Result<Vec<String>, String> {
        let mut client = self.client();
        self.block(async move {
            client
                .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                .await
                .map(|r| r.into_inner().items.into_iter().map(|s| s.id).collect())
        })
    }

    /// Stops containerd (SIGTERM, then SIGKILL after 10 s); its pods keep
    /// running, as they do when a runtime restarts.
    pub fn stop(&mut self) {
        self.client = None;
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts containerd again after [`Containerd::stop`].
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The runtime loses all its state, as a node whose containerd folder
    /// was wiped: containerd stopped, every container killed, every mount
    /// and file of its gone, then started empty. No CNI DEL runs.
    pub fn wipe(&mut self) {
        self.halt();
        for d in ["root", "state", "runc"] {
            let _ = std::fs::remove_dir_all(self.path(d));
        }
        self.launch();
    }

    /// Removes sandbox `id` behind CRI's back, with its network never torn
    /// down: its container killed and deleted through containerd's own
    /// API, then containerd restarted, which forgets a sandbox whose
    /// container is gone. What a failed DEL that was given up leaves.
    pub fn forget_sandbox(&mut self, id: &str) {
        let ctr = |args: &[&str]| {
            Command::new("/usr/bin/ctr")
                .arg("-a")
                .arg(self.path("containerd.sock"))
                .args(["-n", "k8s.io"])
                .args(args)
                .output()
                .unwrap()
        };
        let _ = ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
        let started = Instant::now();
        loop {
            let out = ctr(&["tasks", "rm", "-f", id]);
            if out.status.success() || started.elapsed() > Duration::from_secs(10) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = ctr(&["containers", "rm", id]);
        assert!(
            out.status.success(),
            "ctr containers rm {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.restart();
    }

    /// containerd stopped, and everything it left running or mounted gone.
    fn halt(&mut self) {
        self.stop();
        self.kill_containers();
        self.unmount_all();
    }

    /// Kills and deletes every container in the kit's runc root.
    fn kill_containers(&self) {
        let root = self.path("runc");
        let Ok(namespaces) = std::fs::read_dir(&root) else {
            return;
        };
        for ns in namespaces.flatten() {
            let Ok(containers) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for c in containers.flatten() {
                let id = c.file_name().to_string_lossy().into_owned();
                for args in [vec!["kill", &id, "KILL"], vec!["delete", "-f", &id]] {
                    let _ = Command::new("/usr/sbin/runc")
                        .arg("--root")
                        .arg(ns.path())
                        .args(&args)
                        .output();
                }
            }
        }
        // The shims of this containerd name its socket on their command line.
        let marker = self.dir.path().display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.starts_with("/usr/bin/containerd-shim") && cmdline.contains(&marker) {
                let _ = Command::new("kill")
                    .arg("-9")
                    .arg(entry.file_name())
                    .status();
            }
        }
    }

    /// Unmounts everything under the kit's folder, deepest first.
    fn unmount_all(&self) {
        let marker = self.dir.path().display().to_string();
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|p| p.starts_with(&marker))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).status();
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.client.is_some()
            && let Ok(ids) = self.sandboxes()
        {
            for id in ids {
                let _ = self.remove_pod(&id);
            }
        }
        self.halt();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}
