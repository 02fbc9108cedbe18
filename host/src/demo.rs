//! `wasm-ipam demo`: a pod lifecycle driven through this very binary, spawned
//! as a CNI plugin the way containerd or cnitool would, on a throwaway data
//! directory. It prints every call and its answer, so a reader sees the real
//! protocol, not a simulation of it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::store::{SqliteStore, Store};
use cni::exec::{self, Call, Outcome};

struct Demo {
    plugin: PathBuf,
    step: u32,
}

fn compact(out: &Outcome) -> String {
    if out.stdout.trim().is_empty() {
        return "(no output)".into();
    }
    serde_json::from_str::<Value>(&out.stdout)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| out.stdout.clone())
}

impl Demo {
    /// Runs one call, prints it, and checks that it ended as the story says.
    fn call(&mut self, why: &str, call: Call, conf: &Value, expect_ok: bool) -> Result<Outcome> {
        self.step += 1;
        let vars: Vec<String> = call
            .vars()
            .iter()
            .filter(|(k, _)| k != "CNI_NETNS")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("{:>2}. {why}", self.step);
        println!(
            "    $ {} wasm-ipam < {}.conf",
            vars.join(" "),
            conf["cniVersion"].as_str().unwrap_or("?")
        );
        let out = exec::run(&self.plugin, &call, conf.to_string().as_bytes())
            .with_context(|| format!("spawning {}", self.plugin.display()))?;
        println!(
            "    exit {} in {:.1} ms: {}",
            out.code.map_or("signal".to_string(), |c| c.to_string()),
            out.elapsed.as_secs_f64() * 1000.0,
            compact(&out)
        );
        if out.ok() != expect_ok {
            bail!(
                "step {} should have {}: stdout {} stderr {}",
                self.step,
                if expect_ok { "succeeded" } else { "failed" },
                out.stdout,
                out.stderr
            );
        }
        Ok(out)
    }
}

fn conf(version: &str, data_dir: &Path) -> Value {
    json!({
        "cniVersion": version,
        "name": "demo",
        "type": "bridge",
        "bridge": "cni-demo0",
        "ipam": {
            "type": "wasm-ipam",
            "policy": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": "10.22.0.0/29"}]],
            "routes": [{"dst": "0.0.0.0/0"}]
        }
    })
}

pub fn run(data_dir: Option<PathBuf>) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data_dir = data_dir.unwrap_or_else(|| tmp.path().join("data"));
    let plugin = std::env::current_exe()?;
    let mut demo = Demo { plugin, step: 0 };
    let v1 = conf("1.0.0", &data_dir);
    let v11 = conf("1.1.0", &data_dir);

    println!(
        "wasm-ipam demo: CNI calls through the real binary, as a container runtime makes them"
    );
    println!("  plugin:   {}", demo.plugin.display());
    println!("  data dir: {}", data_dir.display());
    println!(
        "  network:  demo, policy host-local, range 10.22.0.0/29 (gateway .1, five addresses .2-.6)\n"
    );

    demo.call(
        "Which CNI versions does the plugin speak?",
        Call::new("VERSION"),
        &v1,
        true,
    )?;
    let a = demo.call(
        "Pod a starts (the first call puts the policy's code, compiled with the binary, into the cache)",
        Call::attach("ADD", "pod-a"),
        &v1,
        true,
    )?;
    demo.call(
        "Pod b starts: the next address",
        Call::attach("ADD", "pod-b"),
        &v1,
        true,
    )?;
    demo.call(
        "The runtime repeats ADD for pod a: refused, it already has an address",
        Call::attach("ADD", "pod-a"),
        &v1,
        false,
    )?;
    let mut check = v1.clone();
    check["prevResult"] = a.json();
    demo.call(
        "CHECK pod a against its ADD result",
        Call::attach("CHECK", "pod-a"),
        &check,
        true,
    )?;
    demo.call("Pod a stops", Call::attach("DEL", "pod-a"), &v1, true)?;
    demo.call(
        "DEL again is still a success",
        Call::attach("DEL", "pod-a"),
        &v1,
        true,
    )?;
    demo.call(
        "Pod c starts: round robin moves on past a's freed address",
        Call::attach("ADD", "pod-c"),
        &v1,
        true,
    )?;
    demo.call(
        "Pod d asks for 10.22.0.6 through CNI_ARGS, with an old 0.2.0 config",
        Call::attach("ADD", "pod-d").args("IgnoreUnknown=1;K8S_POD_NAME=d;IP=10.22.0.6"),
        &conf("0.2.0", &data_dir),
        true,
    )?;
    demo.call(
        "Pod e starts: the walk wraps round to the address a freed",
        Call::attach("ADD", "pod-e"),
        &v1,
        true,
    )?;
    demo.call(
        "Pod f takes the last free address",
        Call::attach("ADD", "pod-f"),
        &v1,
        true,
    )?;
    demo.call(
        "Pod g finds no address left: code 11, try again later",
        Call::attach("ADD", "pod-g"),
        &v1,
        false,
    )?;
    demo.call(
        "STATUS (CNI 1.1) says the network cannot take pods",
        Call::new("STATUS"),
        &v11,
        false,
    )?;
    let mut gc = v11.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": "pod-c", "ifname": "eth0"},
        {"containerID": "pod-e", "ifname": "eth0"}
    ]);
    demo.call(
        "GC (CNI 1.1): only pods c and e still exist; b, d and f leaked",
        Call::new("GC"),
        &gc,
        true,
    )?;
    demo.call("STATUS: ready again", Call::new("STATUS"), &v11, true)?;
    demo.call("Pod g starts now", Call::attach("ADD", "pod-g"), &v1, true)?;

    println!(
        "\nWhat the store holds now ({}):",
        data_dir.join(crate::store::DB_FILE).display()
    );
    let store = SqliteStore::open(&data_dir)?;
    let mut txn = store.begin("demo")?;
    for (key, value) in txn.scan("lease/", None, 1000)? {
        let lease: Value = serde_json::from_slice(&value)?;
        println!(
            "  {:<12} {}/{}",
            &key["lease/".len()..],
            lease["containerId"].as_str().unwrap_or("?"),
            lease["ifname"].as_str().unwrap_or("?")
        );
    }
    drop(txn);
    side_by_side(&demo.plugin, &data_dir)
}

/// The policies' networks for the side-by-side run: one per policy, the
/// same pods.
fn policy_confs(data_dir: &Path) -> [(&'static str, Value); 3] {
    let net = |name: &str, mut ipam: Value| {
        ipam["type"] = json!("wasm-ipam");
        ipam["dataDir"] = json!(data_dir);
        json!({"cniVersion": "1.1.0", "name": name, "type": "bridge", "ipam": ipam})
    };
    [
        (
            "host-local",
            net(
                "hl",
                json!({"policy": "host-local", "ranges": [[{"subnet": "10.30.0.0/24"}]]}),
            ),
        ),
        (
            "pooled",
            net(
                "pl",
                json!({"policy": "pooled", "node": "node-a",
                       "pools": [{"name": "pods", "cidr": "10.40.0.0/24", "blockSize": 28}]}),
            ),
        ),
        (
            "sticky",
            net(
                "st",
                json!({"policy": "sticky", "ranges": [[{"subnet": "10.50.0.0/24"}]]}),
            ),
        ),
    ]
}

/// The same StatefulSet-like lifecycle under each built-in policy, as a table.
fn side_by_side(plugin: &Path, data_dir: &Path) -> Result<()> {
    let confs = policy_confs(data_dir);
    let pod = |cmd: &str, id: &str, name: &str| {
        Call::attach(cmd, id).args(&format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME={name}"
        ))
    };
    let steps: Vec<(&str, Call, Option<&str>)> = vec![
        ("ADD web-0 (container c1)", pod("ADD", "c1", "web-0"), None),
        ("ADD web-1 (container c2)", pod("ADD", "c2", "web-1"), None),
        ("DEL web-0 (c1)", pod("DEL", "c1", "web-0"), None),
        ("ADD other (container c3)", pod("ADD", "c3", "other"), None),
        (
            "ADD web-0 again (new container c4)",
            pod("ADD", "c4", "web-0"),
            None,
        ),
        (
            "ADD cache-0 on node-b (container c5)",
            pod("ADD", "c5", "cache-0"),
            Some("node-b"),
        ),
    ];
    println!(
        "\nThe same pods under each built-in policy (one network per policy, real CNI calls):\n"
    );
    println!(
        "  {:<38} {:<12} {:<12} {:<12}",
        "step", "host-local", "pooled", "sticky"
    );
    for (label, call, node) in steps {
        let mut row = Vec::new();
        for (policy, conf) in &confs {
            let mut conf = conf.clone();
            if let (Some(node), "pooled") = (node, *policy) {
                conf["ipam"]["node"] = json!(node);
            }
            let out = exec::run(plugin, &call, conf.to_string().as_bytes())?;
            let cell = match (out.ok(), out.json()["ips"][0]["address"].as_str()) {
                (true, Some(a)) => a.split('/').next().unwrap_or(a).to_string(),
                (true, None) => "released".to_string(),
                (false, _) => format!("error {}", out.error_code().unwrap_or(0)),
            };
            row.push(cell);
        }
        println!(
            "  {:<38} {:<12} {:<12} {:<12}",
            label, row[0], row[1], row[2]
        );
    }
    println!("\n  host-local moves on round robin; pooled hands out the lowest free address of");
    println!("  the node's own block; sticky gives web-0 its old address back, and kept it from");
    println!("  `other` while web-0 was away.");

    println!("\n  pooled's blocks (network pl), each with its node:");
    let store = SqliteStore::open(data_dir)?;
    let mut txn = store.begin("pl")?;
    for (key, value) in txn.scan("block/", None, 1000)? {
        let block: Value = serde_json::from_slice(&value)?;
        let index = u32::from_str_radix(key.rsplit('/').next().unwrap_or("0"), 16)?;
        let first =
            std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 40, 0, 0)) + index * 16);
        println!(
            "    {:<15} {}  {} address(es) in use",
            format!("{first}/28"),
            block["node"].as_str().unwrap_or("?"),
            block["used"]
        );
    }
    Ok(())
}
