//! The shared store: pooled on etcd against pooled on the embedded
//! database, and how often three nodes adding at once lose a race.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};

use crate::etcd::Etcd;
use crate::measure::{self, Cell};
use crate::spawn;
use crate::systems::{NETWORK, env};

fn conf(node: &str, data: &Path, cache: &Path, store: Option<&Value>) -> Value {
    let mut ipam = json!({"type": "wasm-ipam", "policy": "pooled", "node": node,
        "pools": [{"name": "p", "cidr": "10.128.0.0/16"}],
        "dataDir": data, "cacheDir": cache});
    if let Some(store) = store {
        ipam["store"] = store.clone();
    }
    json!({"cniVersion": "1.0.0", "name": NETWORK, "type": "bridge", "ipam": ipam})
}

pub fn run(
    ours: &Path,
    etcd: &Etcd,
    iterations: usize,
    callers: usize,
    cache: &Path,
) -> Result<Value> {
    let tmp = tempfile::tempdir()?;
    // A fresh prefix per run, so runs do not see each other's leases.
    let prefix = format!("/wasm-ipam-bench/{}", std::process::id());
    let store = etcd.store(&prefix, Some(5000));
    println!(
        "\nPooled on a shared etcd ({etcd}) against the embedded store, ADD and DEL, milliseconds:\n"
    );
    let mut out = json!({"latency": [], "conflicts": {}});
    let names = ["embedded", "etcd"];
    let cells: Vec<Cell> = [None, Some(&store)]
        .into_iter()
        .zip(names)
        .map(|(store, name)| Cell {
            bin: ours.to_path_buf(),
            stdin: conf("node-a", &tmp.path().join(name), cache, store).to_string(),
            label: format!("pooled on {name}"),
            socket: String::new(),
        })
        .collect();
    for (name, op) in names.iter().zip(measure::interleaved(&cells, iterations)?) {
        println!(
            "{:<24} ADD p50 {:>6.2} p95 {:>6.2} p99 {:>6.2} | DEL p50 {:>6.2}",
            format!("pooled, {name}"),
            op.add.median_ms,
            op.add.p95_ms,
            op.add.p99_ms,
            op.del.median_ms
        );
        out["latency"].as_array_mut().expect("a list").push(json!({
            "store": name,
            "add": {"median_ms": op.add.median_ms, "p95_ms": op.add.p95_ms, "p99_ms": op.add.p99_ms},
            "del": {"median_ms": op.del.median_ms},
        }));
    }

    // Three nodes, `callers` ADDs each, all at once.
    let confs: Vec<String> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| conf(n, &tmp.path().join(n), cache, Some(&store)).to_string())
        .collect();
    let start = Instant::now();
    let runs: Vec<spawn::Run> = std::thread::scope(|s| {
        let handles: Vec<_> = confs
            .iter()
            .enumerate()
            .flat_map(|(n, c)| (0..callers).map(move |i| (n, c, i)))
            .map(|(n, c, i)| {
                s.spawn(move || spawn::run(ours, &env("ADD", &format!("n{n}-{i}")), c.as_bytes()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a caller"))
            .collect()
    });
    let wall = start.elapsed();
    let adds = runs.len();
    let failed = runs.iter().filter(|r| !r.ok).count();
    let conflicts: usize = runs
        .iter()
        .map(|r| r.stderr.matches("store conflict on attempt").count())
        .sum();
    let rate = conflicts as f64 / adds as f64;
    println!(
        "\n3 nodes x {callers} concurrent ADDs on etcd: {adds} in {:.0} ms, {conflicts} conflicts retried ({rate:.2} per ADD), {failed} failed",
        wall.as_secs_f64() * 1000.0
    );
    out["conflicts"] = json!({"nodes": 3, "callers_per_node": callers, "adds": adds,
        "retries": conflicts, "retries_per_add": rate, "failed": failed,
        "wall_ms": wall.as_secs_f64() * 1000.0});
    Ok(out)
}
