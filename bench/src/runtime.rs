//! `--containerd`: what a pod's start and removal cost through kubelet's
//! runtime, wasm-ipam against the reference host-local. Two containerd
//! instances of the kit (`testkit/containerd`) run side by side, each with
//! bridge + IPAM + portmap, and pod `i` of one is started (RunPodSandbox,
//! timed) right after pod `i` of the other, then both removed
//! (StopPodSandbox and RemovePodSandbox, timed): interleaved, so both see
//! the same machine. Each is one CRI call that runs the whole chain, so
//! this is the IPAM's share as a pod sees it, among runc's and the
//! network plugins'.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use containerd_kit::{Containerd, Node, chain};
use serde_json::{Value, json};

use crate::stats::summarise;

struct Side {
    name: &'static str,
    kit: Containerd,
    start: Vec<Duration>,
    remove: Vec<Duration>,
    _data: tempfile::TempDir,
}

fn side(name: &'static str, ours: &Path, ipam: Value, bridge: &str) -> Side {
    let data = tempfile::tempdir().unwrap();
    let mut ipam = ipam;
    ipam["dataDir"] = json!(data.path());
    let conflist = chain(bridge, ipam);
    let kit = Containerd::start(&Node {
        wasm_ipam: ours,
        conflist: &conflist,
        bridge,
        env: &[(wasm_ipam::envvars::SOCKET, "")],
    });
    Side {
        name,
        kit,
        start: Vec::new(),
        remove: Vec::new(),
        _data: data,
    }
}

/// `pods` pods through each runtime, interleaved.
pub fn run(ours: &Path, pods: usize) -> Result<Value> {
    if let Some(why) = containerd_kit::missing() {
        anyhow::bail!("--containerd: {why}");
    }
    let cache = tempfile::tempdir()?;
    let mut sides = [
        side(
            "wasm-ipam host-local",
            ours,
            json!({"type": "wasm-ipam", "policy": "host-local", "cacheDir": cache.path(),
                   "ranges": [[{"subnet": "10.232.1.0/24"}]]}),
            "wibench1",
        ),
        side(
            "reference host-local",
            ours,
            json!({"type": "host-local", "ranges": [[{"subnet": "10.232.2.0/24"}]]}),
            "wibench2",
        ),
    ];
    // One pod each first, untimed: the first call compiles nothing (the
    // cache is warmed by it) and containerd loads its config.
    for s in &mut sides {
        let id = s
            .kit
            .run_pod("bench", "warm")
            .map_err(|e| anyhow!("{}: {e}", s.name))?;
        s.kit
            .remove_pod(&id)
            .map_err(|e| anyhow!("{}: {e}", s.name))?;
    }
    for i in 0..pods {
        let mut ids = Vec::new();
        for s in &mut sides {
            let t = Instant::now();
            let id = s
                .kit
                .run_pod("bench", &format!("pod-{i}"))
                .map_err(|e| anyhow!("{}: RunPodSandbox: {e}", s.name))?;
            s.start.push(t.elapsed());
            ids.push(id);
        }
        for (s, id) in sides.iter_mut().zip(&ids) {
            let t = Instant::now();
            s.kit
                .remove_pod(id)
                .map_err(|e| anyhow!("{}: removing: {e}", s.name))?;
            s.remove.push(t.elapsed());
        }
    }
    println!(
        "\nPods through containerd 1.6 (CRI), bridge + IPAM + portmap, {pods} each, interleaved, milliseconds:"
    );
    println!("| IPAM | RunPodSandbox p50 | p95 | Stop+Remove p50 | p95 |");
    println!("|---|---|---|---|---|");
    let mut out = serde_json::Map::new();
    for s in &sides {
        let (start, remove) = (summarise(&s.start), summarise(&s.remove));
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.name, start.median_ms, start.p95_ms, remove.median_ms, remove.p95_ms
        );
        out.insert(
            s.name.into(),
            json!({"run_pod_p50_ms": start.median_ms, "run_pod_p95_ms": start.p95_ms,
                   "remove_p50_ms": remove.median_ms, "remove_p95_ms": remove.p95_ms,
                   "pods": pods}),
        );
    }
    Ok(Value::Object(out))
}
