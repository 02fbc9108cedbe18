//! The manifests in `deploy/` do what they say, against the real binary:
//! the DaemonSet's commands install the plugin and serve the metrics (the
//! node's paths mapped into a temporary folder), and the
//! NetworkAttachmentDefinition's config serves an ADD and a DEL, the DEL
//! also with the emptied `ipam` Multus sends after losing its cache.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cni::exec::{self, Call};
use serde_json::{Value, json};

use crate::common::{http_get, plugin, serving_address, shared_cache};

fn manifest(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each `command:` of a manifest, a JSON array on one line, with the
/// image's binary replaced by ours, the node's `/host/...` and `/run/...`
/// paths moved under `root` (the CRI socket's `unix:///run/...` too), and
/// the metrics port by a free one on loopback.
fn commands(yaml: &str, root: &Path) -> Vec<(PathBuf, Vec<String>)> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("command: "))
        .map(|json| {
            let argv: Vec<String> = serde_json::from_str(json).unwrap();
            assert_eq!(argv[0], "/usr/local/bin/wasm-ipam", "{json}");
            let args = argv[1..]
                .iter()
                .map(
                    |a| match a.strip_prefix("/host/").or(a.strip_prefix("/run/")) {
                        Some(rest) => root.join(rest).display().to_string(),
                        None if a == "0.0.0.0:9942" => "127.0.0.1:0".to_string(),
                        None => match a.strip_prefix("unix:///run/") {
                            Some(rest) => format!("unix://{}", root.join(rest).display()),
                            None => a.clone(),
                        },
                    },
                )
                .collect();
            (plugin().to_path_buf(), args)
        })
        .collect()
}

/// The DaemonSet's commands, by container: the init containers
/// `install` and `credentials`, then `metrics`, `serve` and the
/// `credentials` that keeps the Secret's files in step.
struct DaemonSet {
    install: Vec<String>,
    credentials_once: Vec<String>,
    metrics: Vec<String>,
    serve: Vec<String>,
    credentials: Vec<String>,
}

fn daemonset(root: &Path) -> DaemonSet {
    let cmds: Vec<Vec<String>> = commands(&manifest("daemonset.yaml"), root)
        .into_iter()
        .map(|(_, args)| args)
        .collect();
    let [install, credentials_once, metrics, serve, credentials]: [Vec<String>; 5] =
        cmds.try_into().expect("five containers");
    assert_eq!(install[0], "install");
    assert_eq!(credentials_once[0], "sync-credentials");
    assert_eq!(metrics[0], "metrics");
    assert_eq!(serve[..2], ["serve", "--socket"]);
    assert_eq!(credentials[0], "sync-credentials");
    DaemonSet {
        install,
        credentials_once,
        metrics,
        serve,
        credentials,
    }
}

fn succeeds(args: &[String]) -> String {
    let out = Command::new(plugin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The server container's command, once it says it serves.
fn start_serving(args: &[String]) -> std::process::Child {
    let mut server = Command::new(plugin())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("serving CNI calls on"), "{line}");
    server
}

#[test]
fn the_daemonset_installs_the_plugin_serves_metrics_and_serves_calls() {
    let root = tempfile::tempdir().unwrap();
    let ds = daemonset(root.path());
    succeeds(&ds.install);
    // No Secret: a node whose networks use no etcd.
    let said = succeeds(&ds.credentials_once);
    assert!(said.contains("nothing to copy"), "{said}");
    let installed = root.path().join("opt/cni/bin/wasm-ipam");
    let state = root.path().join("var/lib/cni/wasm-ipam");
    // A pod on the node: the runtime runs the installed plugin with a
    // config that names no dataDir or cacheDir, so the node's defaults,
    // here under root; the policy is already compiled there.
    let conf = json!({"cniVersion": "1.0.0", "name": "pods", "type": "bridge",
                      "ipam": {"type": "wasm-ipam", "dataDir": state, "ranges": [[{"subnet": "10.150.0.0/24"}]]}});
    let added = exec::run(
        &installed,
        &Call::attach("ADD", "c1"),
        conf.to_string().as_bytes(),
    )
    .unwrap();
    assert!(added.ok(), "{} {}", added.stdout, added.stderr);
    let mut child = Command::new(plugin())
        .args(&ds.metrics)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving_address(&mut child);
    let scraped = http_get(&addr, "/metrics");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(scraped.starts_with("HTTP/1.0 200"), "{scraped}");
    assert!(
        scraped.contains("wasm_ipam_network_leases{network=\"pods\",policy=\"host-local\"} 1.0"),
        "{scraped}"
    );

    // The server: the installed plugin forwards the next pod's call to it.
    let serve = &ds.serve;
    let mut server = start_serving(serve);
    let call = Call::attach("ADD", "c2")
        .env(wasm_ipam::envvars::SOCKET, &serve[2])
        .env(wasm_ipam::envvars::DEBUG, "1");
    let added = exec::run(&installed, &call, conf.to_string().as_bytes()).unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(added.ok(), "{} {}", added.stdout, added.stderr);
    assert!(
        added.stderr.contains("served by wasm-ipam serve"),
        "{}",
        added.stderr
    );
    assert_eq!(added.json()["ips"][0]["address"], "10.150.0.3/24");
}

/// The JSON config of the NetworkAttachmentDefinition.
fn nad_config() -> Value {
    let yaml = manifest("network-attachment-definition.yaml");
    let line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("config: '"))
        .expect("a config: '...' line");
    serde_json::from_str(line.strip_suffix('\'').unwrap()).unwrap()
}

#[test]
fn the_network_attachment_definition_serves_add_and_del() {
    let data = tempfile::tempdir().unwrap();
    let mut conf = nad_config();
    conf["ipam"]["dataDir"] = json!(data.path());
    conf["ipam"]["cacheDir"] = json!(shared_cache());
    let pod =
        Call::attach("ADD", "c1").args("IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=pg-0");
    let added = exec::run(plugin(), &pod, conf.to_string().as_bytes()).unwrap();
    assert!(added.ok(), "{} {}", added.stdout, added.stderr);
    let r = added.json();
    assert_eq!(
        r["ips"][0],
        json!({"address": "192.168.50.10/24", "gateway": "192.168.50.1"})
    );
    // Multus, having lost its cache, sends DEL with an emptied ipam.
    let mut emptied = conf.clone();
    emptied["ipam"] = json!({"dataDir": data.path(), "cacheDir": shared_cache()});
    let del = exec::run(
        plugin(),
        &Call::attach("DEL", "c1").env("WASM_IPAM_LOG", "1"),
        emptied.to_string().as_bytes(),
    )
    .unwrap();
    assert!(
        del.ok() && del.stdout.is_empty(),
        "{} {}",
        del.stdout,
        del.stderr
    );
    assert!(
        del.stderr.contains("releasing with policy sticky"),
        "{}",
        del.stderr
    );
    // The address was released, and sticky holds it for pg-0.
    let other =
        Call::attach("ADD", "c2").args("IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=web");
    let out = exec::run(plugin(), &other, conf.to_string().as_bytes()).unwrap();
    assert_eq!(out.json()["ips"][0]["address"], "192.168.50.11/24");
    let back =
        Call::attach("ADD", "c3").args("IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=pg-0");
    let out = exec::run(plugin(), &back, conf.to_string().as_bytes()).unwrap();
    assert_eq!(out.json()["ips"][0]["address"], "192.168.50.10/24");
}

/// A Secret's files as kubelet mounts them: each key a link through
/// `..data` to a timestamped folder, which an update replaces at once by
/// swapping `..data`.
struct SecretMount {
    dir: PathBuf,
    version: usize,
}

impl SecretMount {
    fn new(dir: PathBuf) -> SecretMount {
        std::fs::create_dir_all(&dir).unwrap();
        SecretMount { dir, version: 0 }
    }

    /// Publishes `files` (key, content) as kubelet does.
    fn publish(&mut self, files: &[(&str, Vec<u8>)]) {
        self.version += 1;
        let stamp = format!("..2026_12_07_00_00_0{}", self.version);
        std::fs::create_dir(self.dir.join(&stamp)).unwrap();
        for (key, bytes) in files {
            std::fs::write(self.dir.join(&stamp).join(key), bytes).unwrap();
            let link = self.dir.join(key);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(format!("..data/{key}"), link).unwrap();
            }
        }
        let next = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &next).unwrap();
        std::fs::rename(&next, self.dir.join("..data")).unwrap();
    }
}

#[test]
fn the_daemonset_puts_the_etcd_secret_on_the_node_and_keeps_it_in_step() {
    use etcd_cluster::{Cluster, Pki, Use};
    use std::os::unix::fs::PermissionsExt;
    if !crate::etcd::etcd_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let ds = daemonset(root.path());
    let pki = Pki::new("etcd-ca");
    let tls = pki.server_tls(&["127.0.0.1"]);
    let cluster = Cluster::start_tls(1, tls.clone());
    let read = |p: &Path| std::fs::read(p).unwrap();
    let mut secret = SecretMount::new(root.path().join("secrets/wasm-ipam-etcd"));
    secret.publish(&[
        ("ca.crt", read(&tls.ca_file)),
        ("tls.crt", read(&tls.client.cert)),
        ("tls.key", read(&tls.client.key)),
    ]);

    // The init container: the files are on the node, root's alone.
    succeeds(&ds.credentials_once);
    let node_dir = root.path().join("etc/cni/wasm-ipam/etcd");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&node_dir), 0o700);
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        assert_eq!(mode(&node_dir.join(key)), 0o600, "{key}");
    }
    assert_eq!(read(&node_dir.join("tls.crt")), read(&tls.client.cert));

    // A pod's call, through the server, with the config the manifest's
    // comment shows.
    let data = tempfile::tempdir().unwrap();
    let conf = json!({"cniVersion": "1.0.0", "name": "pods", "type": "bridge",
        "ipam": {"type": "wasm-ipam", "policy": "pooled", "node": "node-1",
                 "dataDir": data.path(), "cacheDir": shared_cache(),
                 "pools": [{"name": "main", "cidr": "10.60.0.0/16"}],
                 "store": {"etcd": {"endpoints": cluster.endpoints(), "tls": {
                     "caFile": node_dir.join("ca.crt"), "certFile": node_dir.join("tls.crt"),
                     "keyFile": node_dir.join("tls.key")}}}}});
    let mut server = start_serving(&ds.serve);
    let add = |id: &str| {
        let call = Call::attach("ADD", id)
            .env(wasm_ipam::envvars::SOCKET, &ds.serve[2])
            .env(wasm_ipam::envvars::DEBUG, "1");
        exec::run(plugin(), &call, conf.to_string().as_bytes()).unwrap()
    };
    let added = add("c1");
    assert!(added.ok(), "{} {}", added.stdout, added.stderr);
    assert!(
        added.stderr.contains("served by wasm-ipam serve"),
        "{}",
        added.stderr
    );

    // The Secret rotates; the container beside the server (its minute
    // shortened to a second here) brings the new certificate to the node.
    let mut every = ds.credentials.clone();
    let at = every.iter().position(|a| a == "--every").unwrap();
    every[at + 1] = "1".into();
    let mut keeper = Command::new(plugin())
        .args(&every)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let renewed = pki.issue("renewed", &["node"], Use::Client, false);
    secret.publish(&[
        ("ca.crt", read(&tls.ca_file)),
        ("tls.crt", read(&renewed.cert)),
        ("tls.key", read(&renewed.key)),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while read(&node_dir.join("tls.key")) != read(&renewed.key) {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed key never reached the node"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    keeper.kill().unwrap();
    keeper.wait().unwrap();
    assert_eq!(read(&node_dir.join("tls.crt")), read(&renewed.cert));
    let added = add("c2");
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(added.ok(), "{} {}", added.stdout, added.stderr);
}

#[test]
fn the_daemonsets_server_reconciles_against_the_nodes_containerd() {
    use crate::containerd;
    if !containerd::available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let ds = daemonset(root.path());
    assert!(
        ds.serve.contains(&"--reconcile-cri".to_string()),
        "{:?}",
        ds.serve
    );
    let data = tempfile::tempdir().unwrap();
    let ipam = json!({"type": "wasm-ipam", "policy": "host-local", "dataDir": data.path(),
                      "cacheDir": shared_cache(), "ranges": [[{"subnet": "10.231.8.0/24"}]]});
    let mut kit = containerd::start(&containerd::chain("wict8", ipam), "wict8");
    let live = kit.run_pod("default", "live").unwrap();
    let lost = kit.run_pod("default", "lost").unwrap();
    let (live_ip, lost_ip) = (kit.pod_ip(&live), kit.pod_ip(&lost));
    kit.forget_sandbox(&lost);
    // The node's socket and config folder, where the DaemonSet mounts them.
    std::fs::create_dir_all(root.path().join("containerd")).unwrap();
    std::os::unix::fs::symlink(kit.socket(), root.path().join("containerd/containerd.sock"))
        .unwrap();
    std::fs::create_dir_all(root.path().join("etc/cni")).unwrap();
    std::os::unix::fs::symlink(kit.conf_dir(), root.path().join("etc/cni/net.d")).unwrap();
    // An earlier pass found the lost pod's sandbox gone eleven minutes ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = Command::new(plugin())
        .args(["reconcile", "--cri", &kit.endpoint(), "--conf-dir"])
        .arg(kit.conf_dir())
        .env("WASM_IPAM_NOW", (now - 660).to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leased = || crate::reconcile::leased(data.path());
    assert!(leased().contains(&lost_ip));
    let mut server = start_serving(&ds.serve);
    let started = std::time::Instant::now();
    while leased() != BTreeSet::from([live_ip.clone()])
        && started.elapsed() < std::time::Duration::from_secs(30)
    {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        leased(),
        BTreeSet::from([live_ip]),
        "the server's first pass released the lost pod's address"
    );
}
