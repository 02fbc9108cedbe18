//! `--dhcp`: the dhcp policy against the reference dhcp plugin with its
//! daemon, both as the reference macvlan's IPAM plugin, against one real
//! dnsmasq; then what each loses when its daemon, or the DHCP server,
//! restarts.
//!
//! The site is a node namespace (macvlan runs there, on the master `m0`)
//! whose `m0p`, the master's veth peer, carries dnsmasq; each system has a
//! pod namespace of its own, reused from one pair to the next (a DEL takes
//! the interface away). ADD and DEL are timed through macvlan, pair `i` of
//! every system before pair `i + 1` of any, as `measure.rs` does and for
//! the same reason. The server runs twice: as dnsmasq does by default,
//! pinging each address before it offers it (which holds every new lease
//! back about 3 s), and with `--no-ping`, where the plugins' own costs
//! show.
//!
//! The restart scenarios are observed, not assumed: each is run, and what
//! happened is read back from dnsmasq's lease file and the calls' answers.
//! Leases are renewed every 2 s there (options 58 and 59), so a renewal
//! shows within seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cni::exec::{self, Call, Outcome, Spawn};
use serde_json::{Value, json};

use crate::stats::summarise;

const MACVLAN: &str = "/usr/lib/cni/macvlan";
const DHCP: &str = "/usr/lib/cni/dhcp";
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Runs `ip` with `args`.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A network namespace of the bench's, removed when dropped.
struct Ns(String);

impl Ns {
    fn new(role: &str) -> Result<Ns> {
        let name = format!("wibench-{}-{role}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Ns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// A child process killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The node, its DHCP server and the daemons the systems use.
struct Site {
    dir: tempfile::TempDir,
    node: Ns,
    server: Option<Daemon>,
    ping: bool,
    reference_daemon: Option<Daemon>,
    serve: Option<Daemon>,
    ours: PathBuf,
}

/// Which plugin a call goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sys {
    Reference,
    /// wasm-ipam, each call in its own process.
    Ours,
    /// wasm-ipam, its calls forwarded to `wasm-ipam serve`.
    Served,
}

impl Sys {
    fn name(self) -> &'static str {
        match self {
            Sys::Reference => "reference dhcp + daemon",
            Sys::Ours => "wasm-ipam dhcp",
            Sys::Served => "wasm-ipam dhcp, served",
        }
    }
}

impl Site {
    fn new(ours: &Path, ping: bool) -> Result<Site> {
        let node = Ns::new("node")?;
        let n = node.0.clone();
        ip(&[
            "-n", &n, "link", "add", "m0", "type", "veth", "peer", "name", "m0p",
        ])?;
        for l in ["m0", "m0p"] {
            ip(&["-n", &n, "link", "set", l, "up"])?;
        }
        ip(&["-n", &n, "addr", "add", "10.79.0.1/24", "dev", "m0p"])?;
        let mut site = Site {
            dir: tempfile::tempdir()?,
            node,
            server: None,
            ping,
            reference_daemon: None,
            serve: None,
            ours: ours.to_path_buf(),
        };
        site.start_server()?;
        site.start_reference_daemon()?;
        Ok(site)
    }

    fn leases(&self) -> PathBuf {
        self.dir.path().join("leases")
    }

    fn start_server(&mut self) -> Result<()> {
        self.server = None;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.node.0, DNSMASQ])
            .args([
                "--keep-in-foreground",
                "--port=0",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--conf-file=/dev/null",
                "--interface=m0p",
                "--bind-interfaces",
            ])
            .args([
                "--pid-file=",
                "--dhcp-range=10.79.0.10,10.79.0.250,255.255.255.0,2m",
            ])
            .args(["--dhcp-option=option:router,10.79.0.1"])
            .args(["--dhcp-option=option:T1,2", "--dhcp-option=option:T2,4"])
            .arg(format!("--dhcp-leasefile={}", self.leases().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !self.ping {
            cmd.arg("--no-ping");
        }
        let existed = self.leases().exists();
        self.server = Some(Daemon(cmd.spawn()?));
        wait_for(&self.leases())?;
        if existed {
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    }

    fn reference_socket(&self) -> PathBuf {
        self.dir.path().join("dhcp.sock")
    }

    fn start_reference_daemon(&mut self) -> Result<()> {
        self.reference_daemon = None;
        let socket = self.reference_socket();
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(DHCP)
            .args(["daemon", "-socketpath"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.reference_daemon = Some(Daemon(child));
        wait_for(&socket)
    }

    fn serve_socket(&self) -> PathBuf {
        self.dir.path().join("run").join("wasm-ipam.sock")
    }

    fn start_serve(&mut self) -> Result<()> {
        self.serve = None;
        let socket = self.serve_socket();
        let child = Command::new(&self.ours)
            .args(["serve", "--socket"])
            .arg(&socket)
            .env(wasm_ipam::envvars::SOCKET, &socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.serve = Some(Daemon(child));
        wait_for(&socket)
    }

    fn conf(&self, sys: Sys) -> Value {
        let ipam = match sys {
            Sys::Reference => json!({
                "type": "dhcp",
                "daemonSocketPath": self.reference_socket(),
            }),
            Sys::Ours | Sys::Served => json!({
                "type": "wasm-ipam", "policy": "dhcp", "grant": ["dhcp"],
                "dataDir": self.dir.path().join("data"),
                "cacheDir": self.dir.path().join("cache"),
            }),
        };
        json!({"cniVersion": "1.0.0", "name": "benchdhcp", "type": "macvlan",
               "master": "m0", "mode": "bridge", "ipam": ipam})
    }

    /// One call through macvlan, in the node namespace.
    fn call(&self, sys: Sys, command: &str, id: &str, pod: &Ns) -> Outcome {
        let mut call = Call::attach(command, id).ifname("net1");
        call.netns = Some(pod.path());
        let cni_path = format!(
            "{}:/usr/lib/cni",
            self.ours.parent().unwrap_or(Path::new(".")).display()
        );
        let socket = match sys {
            Sys::Served => self.serve_socket().display().to_string(),
            Sys::Ours | Sys::Reference => String::new(),
        };
        let call = call
            .env("CNI_PATH", &cni_path)
            .env(wasm_ipam::envvars::SOCKET, &socket);
        let spawn = Spawn {
            timeout: Some(Duration::from_secs(120)),
            netns: Some(&self.node.0),
        };
        let conf = self.conf(sys).to_string();
        exec::run_with(Path::new(MACVLAN), &call, conf.as_bytes(), &spawn)
            .unwrap_or_else(Outcome::not_run)
    }

    /// dnsmasq's expiry for `ip`, if it leases it.
    fn expiry(&self, ip: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.leases()).unwrap_or_default();
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(2) == Some(&ip))
            .and_then(|f| f[0].parse().ok())
    }
}

fn wait_for(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} did not appear", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn address(out: &Outcome) -> Result<String> {
    let v: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("not a result: {} {}", out.stdout, out.stderr))?;
    let a = v["ips"][0]["address"].as_str().context("no address")?;
    Ok(a.split('/').next().unwrap_or(a).to_string())
}

/// Whether the check says yes, `secs` from now at the latest.
fn within(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the machine can run it: root, and the plugins and dnsmasq.
pub fn available() -> Result<()> {
    if !is_root() {
        bail!("--dhcp needs root, to make network namespaces");
    }
    for path in [MACVLAN, DHCP, DNSMASQ] {
        if !Path::new(path).exists() {
            bail!("--dhcp needs {path} (apt-get install containernetworking-plugins dnsmasq)");
        }
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Timed ADD/DEL pairs through macvlan, interleaved; milliseconds.
fn timed(site: &Site, pairs: usize) -> Result<Value> {
    let systems = [Sys::Reference, Sys::Ours, Sys::Served];
    let pods: Vec<Ns> = systems
        .iter()
        .map(|s| Ns::new(&format!("{s:?}").to_lowercase()))
        .collect::<Result<_>>()?;
    let mut samples = vec![(Vec::new(), Vec::new()); systems.len()];
    for i in 0..pairs {
        // Each round in turn starts with another system.
        for k in 0..systems.len() {
            let s = (i + k) % systems.len();
            // Each system its own container ids: the reference's client id
            // is made of the container id, as an unnamed pod's is here, and
            // a shared one would share leases and dnsmasq's ping results.
            let id = format!("b{s}-{i}");
            let add = site.call(systems[s], "ADD", &id, &pods[s]);
            if !add.ok() {
                bail!(
                    "{}: ADD failed: {} {}",
                    systems[s].name(),
                    add.stdout,
                    add.stderr
                );
            }
            let del = site.call(systems[s], "DEL", &id, &pods[s]);
            if !del.ok() {
                bail!(
                    "{}: DEL failed: {} {}",
                    systems[s].name(),
                    del.stdout,
                    del.stderr
                );
            }
            samples[s].0.push(add.elapsed);
            samples[s].1.push(del.elapsed);
        }
    }
    let mut rows = Vec::new();
    for (sys, (adds, dels)) in systems.iter().zip(samples) {
        let (add, del) = (summarise(&adds), summarise(&dels));
        println!(
            "  {:<26} ADD p50 {:>8.1}  p95 {:>8.1} | DEL p50 {:>6.1}  p95 {:>6.1}",
            sys.name(),
            add.median_ms,
            add.p95_ms,
            del.median_ms,
            del.p95_ms
        );
        rows.push(json!({"plugin": sys.name(),
            "add": {"median_ms": add.median_ms, "p95_ms": add.p95_ms},
            "del": {"median_ms": del.median_ms, "p95_ms": del.p95_ms}}));
    }
    Ok(json!(rows))
}

/// Restarts the system's daemon: the reference's dhcp daemon, or serve.
fn restart_daemon(site: &mut Site, sys: Sys) -> Result<()> {
    match sys {
        Sys::Reference => site.start_reference_daemon(),
        _ => site.start_serve(),
    }
}

/// A lease taken for `id`, and whether the server then saw it renewed.
fn leased(site: &Site, sys: Sys, id: &str, pod: &Ns) -> Result<(String, bool)> {
    let ip = address(&site.call(sys, "ADD", id, pod))?;
    let first = site.expiry(&ip).context("dnsmasq leases it")?;
    let renews = within(8, || site.expiry(&ip).is_some_and(|e| e > first));
    Ok((ip, renews))
}

/// Whether the server sees `ip` renewed within 10 s.
fn renewed(site: &Site, ip: &str) -> bool {
    let before = site.expiry(ip).unwrap_or(0);
    within(10, || site.expiry(ip).is_some_and(|e| e > before))
}

/// What one system keeps through each restart, each from a lease that is
/// renewing: of the DHCP server; of its own daemon (the reference's dhcp
/// daemon, wasm-ipam's serve); and while that daemon is down.
fn restarts(site: &mut Site, sys: Sys) -> Result<Value> {
    let pod = Ns::new("restart")?;
    // The DHCP server restarts, on its lease file.
    let (ip, renews) = leased(site, sys, "s1", &pod)?;
    site.start_server()?;
    let renews_after_server = renewed(site, &ip);
    site.call(sys, "DEL", "s1", &pod);
    // The daemon restarts: are the leases it held still renewed, and does
    // a DEL still release them?
    let (ip, _) = leased(site, sys, "d1", &pod)?;
    restart_daemon(site, sys)?;
    std::thread::sleep(Duration::from_secs(1));
    let renews_after_daemon = renewed(site, &ip);
    let del = site.call(sys, "DEL", "d1", &pod);
    let del_after_restart = del.ok() && within(3, || site.expiry(&ip).is_none());
    // The daemon is down: can a pod start, and can one stop?
    let (ip, _) = leased(site, sys, "x1", &pod)?;
    match sys {
        Sys::Reference => site.reference_daemon = None,
        _ => site.serve = None,
    }
    let other = Ns::new("restart2")?;
    let add_down = site.call(sys, "ADD", "x2", &other);
    if add_down.ok() {
        site.call(sys, "DEL", "x2", &other);
    }
    let del_down = site.call(sys, "DEL", "x1", &pod);
    let released_down = del_down.ok() && within(3, || site.expiry(&ip).is_none());
    restart_daemon(site, sys)?;
    if !del_down.ok() {
        site.call(sys, "DEL", "x1", &pod);
    }
    Ok(json!({
        "plugin": sys.name(),
        "renews": renews,
        "renews_after_server_restart": renews_after_server,
        "renews_after_daemon_restart": renews_after_daemon,
        "del_after_daemon_restart_releases": del_after_restart,
        "add_with_daemon_down": add_down.ok(),
        "del_with_daemon_down": del_down.ok(),
        "del_with_daemon_down_releases": released_down,
    }))
}

pub fn run(ours: &Path, smoke: bool) -> Result<Value> {
    available()?;
    let mut out = json!({});
    for ping in [false, true] {
        let pairs = match (smoke, ping) {
            (true, _) => 2,
            (false, false) => 100,
            (false, true) => 8,
        };
        let mut site = Site::new(ours, ping)?;
        site.start_serve()?;
        println!(
            "\nADD and DEL through macvlan against dnsmasq{}, {pairs} pairs each, milliseconds:\n",
            if ping {
                " (its default ping check before each offer)"
            } else {
                " --no-ping"
            }
        );
        out[if ping { "ping" } else { "no_ping" }] = timed(&site, pairs)?;
    }
    let yes = |v: &Value| {
        if v.as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    println!("\nWhat a restart loses (leases renewed every 2 s):\n");
    let mut rows = Vec::new();
    for sys in [Sys::Reference, Sys::Served] {
        let mut site = Site::new(ours, false)?;
        site.start_serve()?;
        let row = restarts(&mut site, sys)?;
        rows.push(row);
    }
    let lines = [
        ("renews its lease", "renews"),
        (
            "DHCP server restarted: still renews",
            "renews_after_server_restart",
        ),
        (
            "daemon restarted: still renews",
            "renews_after_daemon_restart",
        ),
        (
            "... and a DEL releases the lease",
            "del_after_daemon_restart_releases",
        ),
        ("daemon down: ADD works", "add_with_daemon_down"),
        ("... DEL works", "del_with_daemon_down"),
        (
            "... and releases the lease",
            "del_with_daemon_down_releases",
        ),
    ];
    println!(
        "  {:<36} {:>24} {:>24}",
        "",
        rows[0]["plugin"].as_str().unwrap_or_default(),
        rows[1]["plugin"].as_str().unwrap_or_default()
    );
    for (label, key) in lines {
        println!(
            "  {label:<36} {:>24} {:>24}",
            yes(&rows[0][key]),
            yes(&rows[1][key])
        );
    }
    out["restarts"] = json!(rows);
    Ok(out)
}
