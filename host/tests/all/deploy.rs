//! The manifests in `deploy/` do what they say, against the real binary:
//! the DaemonSet's commands install the plugin and serve the metrics (the
//! node's paths mapped into a temporary folder), and the
//! NetworkAttachmentDefinition's config serves an ADD and a DEL, the DEL
//! also with the emptied `ipam` Multus sends after losing its cache.

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
/// paths moved under `root`, and the metrics port by a free one on
/// loopback.
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
                        None => a.clone(),
                    },
                )
                .collect();
            (plugin().to_path_buf(), args)
        })
        .collect()
}

#[test]
fn the_daemonset_installs_the_plugin_serves_metrics_and_serves_calls() {
    let root = tempfile::tempdir().unwrap();
    let cmds = commands(&manifest("daemonset.yaml"), root.path());
    assert_eq!(
        cmds.len(),
        3,
        "the init container, the metrics container and the server"
    );
    let (bin, install) = &cmds[0];
    assert_eq!(install[0], "install");
    let out = Command::new(bin).args(install).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let (bin, metrics) = &cmds[1];
    assert_eq!(metrics[0], "metrics");
    let mut child = Command::new(bin)
        .args(metrics)
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
    let (bin, serve) = &cmds[2];
    assert_eq!(serve[..2], ["serve", "--socket"]);
    let mut server = Command::new(bin)
        .args(serve)
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
