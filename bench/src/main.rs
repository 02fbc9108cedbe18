//! `wasm-ipam-bench`: wasm-ipam against the reference host-local, one real
//! process per CNI call as a runtime spawns them. It reports the median,
//! p95 and p99 wall time per operation and the peak RSS, side by side with
//! the ratio, as a table and as JSON.
//!
//! Measurements: ADD and DEL with 0, 1,000 and 10,000 addresses allocated on
//! a /16, for each policy; the cold first call into an empty cache, for
//! each built-in policy (whose artifact the binary carries) and for a
//! policy file (which Cranelift compiles);
//! throughput with 2 and 16 concurrent callers; and a warm ADD split into
//! its stages (from the host's `WASM_IPAM_TIMINGS`). With `--etcd`, pooled
//! on a shared etcd against the embedded store, and the conflict rate of
//! three nodes adding at once. With `--etcd` and `--cluster`, only the
//! cluster bursts of `cluster.rs`: N nodes starting P pods at once. With
//! `--faults`, only the bursts of `faults.rs` on a 3-member etcd cluster
//! the bench starts itself, while a member dies, restarts or is partitioned
//! away. With `--dhcp`, only `dhcp.rs`: the dhcp policy against the
//! reference dhcp plugin and its daemon, through macvlan, against dnsmasq.
//! With `--containerd`, only `runtime.rs`: pods through containerd, with
//! wasm-ipam against the reference host-local.

mod cluster;
mod dhcp;
mod etcd;
mod faults;
mod measure;
mod plot;
mod runtime;
mod shared;
mod spawn;
mod stats;
mod systems;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use serde_json::json;

use stats::{Summary, median, summarise};
use systems::{Server, System, env, env_to};

#[derive(Parser)]
#[command(
    name = "wasm-ipam-bench",
    about = "Benchmark wasm-ipam against the reference host-local"
)]
struct Cli {
    /// The wasm-ipam binary; by default the one beside this program.
    #[arg(long)]
    wasm_ipam: Option<PathBuf>,
    /// Timed ADD/DEL pairs per measurement.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Pool sizes (allocated addresses) to measure at.
    #[arg(long, value_delimiter = ',', default_value = "0,1000,10000")]
    sizes: Vec<usize>,
    /// A tiny run that only checks the benchmark works (CI).
    #[arg(long)]
    smoke: bool,
    /// An etcd endpoint (http://127.0.0.1:2379): also measure pooled on etcd
    /// against the embedded store, and the conflict rate of three nodes.
    #[arg(long, value_name = "URL")]
    etcd: Option<String>,
    #[command(flatten)]
    access: etcd::Access,
    /// Only the cluster bursts on the `--etcd` endpoint: runs written
    /// NODESxPODS[:cold|:churn], comma-separated; without a value, the
    /// standard set.
    #[arg(long, value_name = "RUNS", value_delimiter = ',', num_args = 0..=1,
          default_missing_value = cluster::DEFAULT_RUNS)]
    cluster: Option<Vec<cluster::Spec>>,
    /// Only the fault runs: NODESxPODS at once (by default 20x10) on a
    /// 3-member etcd cluster that the bench starts (needs /usr/bin/etcd;
    /// the partition run needs root), once per fault.
    #[arg(long, value_name = "NODESxPODS", num_args = 0..=1, default_missing_value = "20x10")]
    faults: Option<cluster::Spec>,
    /// Only the dhcp comparison: ADD and DEL through macvlan, the dhcp
    /// policy against the reference dhcp and its daemon, against a dnsmasq
    /// the bench starts; then what each keeps through restarts (needs
    /// root, dnsmasq and the reference plugins).
    #[arg(long)]
    dhcp: bool,
    /// Only pods through containerd: RunPodSandbox and its removal, this
    /// many pods with wasm-ipam against as many with the reference
    /// host-local, interleaved, on two containerd instances the bench
    /// starts (needs root, containerd, runc, busybox-static and the
    /// reference plugins).
    #[arg(long, value_name = "PODS", num_args = 0..=1, default_missing_value = "30")]
    containerd: Option<usize>,
    /// Also draw the plots into this directory, as SVG: `add-latency.svg`,
    /// and with `--cluster`, `cluster.svg`.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Internal: make N ADDs in this process with the network config on
    /// stdin, and exit (see `System::prefill`).
    #[arg(long, hide = true, value_name = "N")]
    prefill_stdin: Option<usize>,
}

fn cold_starts(ours: &Path, policy: &'static str, n: usize) -> Summary {
    let walls: Vec<Duration> = (0..n)
        .map(|_| {
            let tmp = tempfile::tempdir().unwrap();
            let sys = System::Ours(policy);
            let conf = sys.conf(&tmp.path().join("data"), &tmp.path().join("cache"));
            spawn::run(ours, &env("ADD", "cold"), conf.to_string().as_bytes()).wall
        })
        .collect();
    summarise(&walls)
}

/// The component of a built-in policy as `host/build.rs` leaves it beside
/// the binary (`<target>/wasm-policies/...`): used as a policy file, it is
/// the same code without the artifact built in.
fn policy_file(ours: &Path, policy: &str) -> Option<String> {
    let stem = format!("policy_{}.wasm", policy.replace('-', "_"));
    let file = ours
        .parent()?
        .parent()?
        .join("wasm-policies/wasm32-wasip2/policy")
        .join(stem);
    file.is_file().then(|| file.display().to_string())
}

/// ADDs per second with `callers` processes at a time, `total` in all.
fn throughput(sys: &System, ours: &Path, callers: usize, total: usize, server: &Server) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let conf = sys
        .conf(&tmp.path().join("data"), &tmp.path().join("cache"))
        .to_string();
    let bin = sys.binary(ours);
    let socket = sys.socket(Some(server));
    spawn::run(&bin, &env_to("ADD", "warm-up", &socket), conf.as_bytes());
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..callers {
            let (conf, bin, socket) = (&conf, &bin, &socket);
            s.spawn(move || {
                for i in (c..total).step_by(callers) {
                    let call = env_to("ADD", &format!("t{i}"), socket);
                    let r = spawn::run(bin, &call, conf.as_bytes());
                    assert!(r.ok, "{}", r.stderr);
                }
            });
        }
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// A warm ADD split into stages, in milliseconds (medians), run by the
/// server on `socket` (empty: in its own process).
fn breakdown(ours: &Path, n: usize, cache: &Path, socket: &str) -> Vec<(String, f64)> {
    let tmp = tempfile::tempdir().unwrap();
    let sys = System::Ours("host-local");
    let conf = sys.conf(&tmp.path().join("data"), cache).to_string();
    let mut stages: Vec<(String, Vec<f64>)> = Vec::new();
    for i in 0..n {
        let e = env_to("ADD", &format!("b{i}"), socket).env(wasm_ipam::envvars::TIMINGS, "1");
        let r = spawn::run(ours, &e, conf.as_bytes());
        let Some(line) = r
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("wasm-ipam: timings "))
        else {
            continue;
        };
        let marks: Vec<(String, f64)> = serde_json::from_str(line).unwrap();
        let mut prev = 0.0;
        let mut row = Vec::new();
        for (stage, us) in marks {
            let at = us / 1000.0;
            row.push((stage, at - prev));
            prev = at;
        }
        let total_in_process = prev;
        row.insert(
            0,
            (
                "process start and exit".into(),
                r.wall.as_secs_f64() * 1000.0 - total_in_process,
            ),
        );
        for (k, v) in row {
            match stages.iter_mut().find(|(s, _)| *s == k) {
                Some((_, vals)) => vals.push(v),
                None => stages.push((k, vec![v])),
            }
        }
    }
    stages
        .into_iter()
        .map(|(k, mut v)| (k, median(&mut v)))
        .collect()
}

fn main() -> Result<()> {
    let mut cli = Cli::parse();
    if let Some(n) = cli.prefill_stdin {
        systems::prefill_in_process(n);
        return Ok(());
    }
    if cli.smoke {
        cli.iterations = 3;
        cli.sizes = vec![0, 20];
    }
    let etcd = cli
        .etcd
        .as_deref()
        .map(|url| etcd::Etcd::from_cli(url, &cli.access))
        .transpose()?;
    let ours = match &cli.wasm_ipam {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("wasm-ipam"),
    };
    if !ours.exists() {
        bail!(
            "{} does not exist: build it (cargo build -p wasm-ipam) or give --wasm-ipam",
            ours.display()
        );
    }
    if let Some(pods) = cli.containerd {
        let results = json!({"containerd": runtime::run(&ours, if cli.smoke { 2 } else { pods })?});
        std::fs::write(&cli.json, serde_json::to_string_pretty(&results)?)?;
        println!("\nJSON: {}", cli.json.display());
        return Ok(());
    }
    if cli.dhcp {
        let results = json!({"dhcp": dhcp::run(&ours, cli.smoke)?});
        std::fs::write(&cli.json, serde_json::to_string_pretty(&results)?)?;
        println!("\nJSON: {}", cli.json.display());
        return Ok(());
    }
    if let Some(spec) = &cli.faults {
        let results = json!({"faults": faults::run_all(&ours, spec.nodes, spec.pods)?});
        std::fs::write(&cli.json, serde_json::to_string_pretty(&results)?)?;
        println!("\nJSON: {}", cli.json.display());
        return Ok(());
    }
    if let Some(specs) = &cli.cluster {
        let Some(etcd) = &etcd else {
            bail!("--cluster needs an etcd: give --etcd http://127.0.0.1:2379");
        };
        let results = json!({"cluster": cluster::run_all(&ours, etcd, specs)?});
        if let Some(dir) = &cli.plots {
            std::fs::create_dir_all(dir)?;
            plot::cluster(&results["cluster"], &dir.join("cluster.svg"))?;
        }
        std::fs::write(&cli.json, serde_json::to_string_pretty(&results)?)?;
        println!("\nJSON: {}", cli.json.display());
        return Ok(());
    }
    let reference = Path::new(systems::REFERENCE).exists();
    if !reference {
        eprintln!(
            "note: {} is not installed; measuring wasm-ipam alone",
            systems::REFERENCE
        );
    }
    let cache = tempfile::tempdir()?;
    let mut systems = Vec::new();
    if reference {
        systems.push(System::Reference);
    }
    systems.extend([
        System::Ours("host-local"),
        System::Ours("pooled"),
        System::Ours("sticky"),
        System::Served("host-local"),
        System::Served("pooled"),
        System::Served("sticky"),
    ]);
    let server = Server::start(&ours)?;

    let mut results = json!({"iterations": cli.iterations, "ops": [], "cold": {}, "throughput": [],
                             "breakdown": {}, "breakdown_served": {}});
    println!(
        "ADD and DEL, one process per call ({} pairs each), milliseconds:\n",
        cli.iterations
    );
    println!(
        "{:<28} {:>7} | {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} | {:>8} | {:>9}",
        "plugin", "pool", "ADD p50", "p95", "p99", "DEL p50", "p95", "p99", "RSS MiB", "ADD ratio"
    );
    // Every cell is set up before any is timed, so the timed pairs can be
    // interleaved (measure.rs); the temporary dirs live until the end.
    let (mut which, mut cells, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
    for &size in &cli.sizes {
        for sys in &systems {
            let tmp = tempfile::tempdir()?;
            let data = tmp.path().join("data");
            let conf = sys.conf(&data, cache.path());
            sys.prefill(size, &conf, &data);
            which.push((sys, size));
            cells.push(measure::Cell {
                bin: sys.binary(&ours),
                stdin: conf.to_string(),
                label: format!("{} at {size}", sys.name()),
                socket: sys.socket(Some(&server)),
            });
            dirs.push(tmp);
        }
    }
    let ops = measure::interleaved(&cells, cli.iterations)?;
    let mut reference_add = None;
    for ((sys, size), op) in which.into_iter().zip(ops) {
        if matches!(sys, System::Reference) {
            reference_add = Some(op.add.median_ms);
        }
        let ratio = reference_add.map_or("-".into(), |r| format!("{:.2}x", op.add.median_ms / r));
        println!(
            "{:<28} {:>7} | {:>7.2} {:>7.2} {:>7.2} | {:>7.2} {:>7.2} {:>7.2} | {:>8.1} | {:>9}",
            sys.name(),
            size,
            op.add.median_ms,
            op.add.p95_ms,
            op.add.p99_ms,
            op.del.median_ms,
            op.del.p95_ms,
            op.del.p99_ms,
            op.rss_kib as f64 / 1024.0,
            ratio
        );
        results["ops"].as_array_mut().unwrap().push(json!({
            "plugin": sys.name(), "pool": size,
            "add": {"median_ms": op.add.median_ms, "p95_ms": op.add.p95_ms, "p99_ms": op.add.p99_ms},
            "del": {"median_ms": op.del.median_ms, "p95_ms": op.del.p95_ms, "p99_ms": op.del.p99_ms},
            "max_rss_kib": op.rss_kib, "add_ratio_to_reference": reference_add.map(|r| op.add.median_ms / r),
        }));
    }
    drop(dirs);
    let server_rss = server.peak_rss_kib();
    println!(
        "\nThe server's own peak RSS, with every policy loaded: {:.1} MiB",
        server_rss as f64 / 1024.0
    );
    results["server_max_rss_kib"] = json!(server_rss);
    if let Some(dir) = &cli.plots {
        std::fs::create_dir_all(dir)?;
        plot::add_latency(&results["ops"], &dir.join("add-latency.svg"))?;
    }

    let cold_n = if cli.smoke { 1 } else { 10 };
    println!(
        "\nCold first call into an empty cache, milliseconds (a built-in policy installs the artifact compiled with the binary; a policy file is compiled):\n"
    );
    let file = policy_file(&ours, "host-local");
    let file_row = file.as_ref().map(|f| ("host-local as a file", f.as_str()));
    for (label, policy) in [
        ("host-local", "host-local"),
        ("pooled", "pooled"),
        ("sticky", "sticky"),
    ]
    .into_iter()
    .chain(file_row)
    {
        let policy: &'static str = Box::leak(policy.to_string().into_boxed_str());
        let c = cold_starts(&ours, policy, cold_n);
        println!(
            "{:<34} p50 {:>7.1}  p95 {:>7.1}",
            format!("wasm-ipam {label}"),
            c.median_ms,
            c.p95_ms
        );
        results["cold"][label] = json!({"median_ms": c.median_ms, "p95_ms": c.p95_ms});
    }
    if file.is_none() {
        println!(
            "(no policy file beside {}: that row is skipped)",
            ours.display()
        );
    }

    let total = if cli.smoke { 4 } else { 128 };
    println!("\nThroughput, {total} ADDs, pool empty:\n");
    for callers in [2, 16] {
        let served = System::Served("host-local");
        for sys in systems.iter().take(2).chain([&served]) {
            let ops = throughput(sys, &ours, callers, total, &server);
            println!("{:<28} {callers:>2} callers: {ops:>7.0} ADD/s", sys.name());
            results["throughput"]
                .as_array_mut()
                .unwrap()
                .push(json!({"plugin": sys.name(), "callers": callers, "adds_per_second": ops}));
        }
    }

    let bn = if cli.smoke { 2 } else { 100 };
    println!(
        "\nWhere a warm ADD's time goes (wasm-ipam host-local, medians of {bn}), milliseconds:\n"
    );
    for (stage, ms) in breakdown(&ours, bn, cache.path(), "") {
        println!("  {stage:<24} {ms:>7.3}");
        results["breakdown"][stage] = json!(ms);
    }
    println!("\nThe same, served (the first stage is the CNI process and the socket):\n");
    let socket = server.socket.display().to_string();
    for (stage, ms) in breakdown(&ours, bn, cache.path(), &socket) {
        println!("  {stage:<24} {ms:>7.3}");
        results["breakdown_served"][stage] = json!(ms);
    }
    drop(server);

    if let Some(etcd) = &etcd {
        let callers = if cli.smoke { 2 } else { 16 };
        results["shared"] = shared::run(&ours, etcd, cli.iterations, callers, cache.path())?;
        if cli.smoke {
            // A small burst of each kind, which must give every pod its own
            // address.
            let specs: Vec<cluster::Spec> = cluster::SMOKE_RUNS
                .split(',')
                .map(|r| r.parse().map_err(anyhow::Error::msg))
                .collect::<Result<_>>()?;
            let runs = cluster::run_all(&ours, etcd, &specs)?;
            cluster::require_every_pod_addressed(&runs)?;
            results["cluster"] = runs;
            // Every fault once, on a small burst; fails on a lost pod.
            results["faults"] = faults::run_all(&ours, 4, 5)?;
        }
    }

    std::fs::write(&cli.json, serde_json::to_string_pretty(&results)?)?;
    println!("\nJSON: {}", cli.json.display());
    Ok(())
}
