//! A small, correct CNI plugin with one fault switched on, for the suite's
//! tests of itself: every fault must be caught by the rule it breaks, and
//! the plugin without a fault must pass. It is an IPAM plugin (the fault in
//! `ipam.fault`), or with `"mode": "interface"` or `"mode": "meta"` an
//! interface or chained plugin (the fault in `fault`; see [`interface`]).
//!
//! Faults of a bad plugin of any mode, on ADD:
//! - `hang`: never finishes;
//! - `crash`: aborts;
//! - `garbage`: prints something that is not JSON and exits 0;
//! - `leaves-netns`: makes a network namespace of its own and leaves it.
//!
//! IPAM faults:
//! - `race`: no lock around its state, so concurrent ADDs collide;
//! - `del-once`: DEL of something already gone fails;
//! - `stderr-errors`: errors go to stderr only, stdout stays empty;
//! - `wrong-version`: the result's cniVersion is not the config's;
//! - `interfaces`: the IPAM result carries interfaces;
//! - `check-below-040`: CHECK is accepted for configs older than 0.4.0.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cni::env::valid_id;
use cni::version::{VERSIONS, at_least};
use ipnet::Ipv4Net;
use serde_json::{Value, json};

mod interface;

struct Fail(u32, String);

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

type Leases = BTreeMap<String, String>;

fn load(path: &Path) -> Leases {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(path: &Path, leases: &Leases) {
    std::fs::write(path, serde_json::to_vec(leases).unwrap()).unwrap();
}

fn result(version: &str, ip: Ipv4Addr, net: &Ipv4Net, ipam: &Value) -> Value {
    let fault = ipam["fault"].as_str().unwrap_or("");
    let gateway = net.hosts().next().map(|g| g.to_string());
    let routes = ipam.get("routes").cloned();
    let printed = if fault == "wrong-version" {
        if version == "1.0.0" { "0.4.0" } else { "1.0.0" }
    } else {
        version
    };
    let address = format!("{ip}/{}", net.prefix_len());
    if !at_least(version, "0.3.0") {
        let mut ip4 = json!({"ip": address, "gateway": gateway});
        if let Some(r) = routes {
            ip4["routes"] = r;
        }
        return json!({"cniVersion": printed, "ip4": ip4, "dns": {}});
    }
    let mut entry = json!({"address": address, "gateway": gateway});
    if !at_least(version, "1.0.0") {
        entry["version"] = json!("4");
    }
    let mut r = json!({"cniVersion": printed, "ips": [entry], "dns": {}});
    if let Some(routes) = routes {
        r["routes"] = routes;
    }
    if fault == "interfaces" {
        r["interfaces"] = json!([{"name": "eth0", "sandbox": "/var/run/netns/x"}]);
        r["ips"][0]["interface"] = json!(0);
    }
    r
}

fn prev_addresses(conf: &Value) -> Vec<String> {
    let prev = &conf["prevResult"];
    let mut v: Vec<String> = prev["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            e["address"]
                .as_str()
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
        })
        .collect();
    if let Some(a) = prev["ip4"]["ip"].as_str() {
        v.push(a.split('/').next().unwrap_or(a).to_string());
    }
    v
}

/// The environment of an attachment call, and CNI_ARGS; the container id
/// and ifname (empty for GC and STATUS).
fn check_env(cmd: &str) -> Result<(String, String), Fail> {
    let attach = matches!(cmd, "ADD" | "DEL" | "CHECK");
    let ids = if attach {
        let id = env("CNI_CONTAINERID")
            .filter(|i| valid_id(i))
            .ok_or(Fail(4, "bad CNI_CONTAINERID".into()))?;
        let ifname = env("CNI_IFNAME")
            .filter(|i| i.len() <= 15 && !i.contains(['/', ':']))
            .ok_or(Fail(4, "bad CNI_IFNAME".into()))?;
        if cmd != "DEL" && env("CNI_NETNS").is_none() {
            return Err(Fail(4, "CNI_NETNS missing".into()));
        }
        (id, ifname)
    } else {
        Default::default()
    };
    let cni_args = env("CNI_ARGS").unwrap_or_default();
    let pairs: Vec<(&str, &str)> = cni_args
        .split(';')
        .filter_map(|p| p.split_once('='))
        .collect();
    let ignore_unknown = pairs
        .iter()
        .any(|(k, v)| *k == "IgnoreUnknown" && (*v == "1" || *v == "true"));
    if let Some((k, v)) = pairs
        .iter()
        .find(|(k, _)| !ignore_unknown && *k != "IgnoreUnknown")
    {
        return Err(Fail(2, format!("unsupported CNI_ARGS key {k}={v}")));
    }
    Ok(ids)
}

/// The faults of a plugin that misbehaves outright.
fn bad_plugin(fault: &str) -> Result<(), Fail> {
    match fault {
        "hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        "crash" => std::process::abort(),
        "garbage" => {
            print!("this is not JSON");
            std::process::exit(0);
        }
        "leaves-netns" => {
            let name = format!("faulty-left-{}", std::process::id());
            std::process::Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .map_err(|e| Fail(5, e.to_string()))?;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn run(stdin: &[u8]) -> Result<Option<Value>, Fail> {
    let cmd = env("CNI_COMMAND").ok_or(Fail(4, "CNI_COMMAND missing".into()))?;
    if cmd == "VERSION" {
        return Ok(Some(
            json!({"cniVersion": "1.1.0", "supportedVersions": VERSIONS}),
        ));
    }
    if !["ADD", "DEL", "CHECK", "GC", "STATUS"].contains(&cmd.as_str()) {
        return Err(Fail(4, format!("unknown CNI_COMMAND {cmd}")));
    }
    let conf: Value = serde_json::from_slice(stdin).map_err(|e| Fail(6, e.to_string()))?;
    let version = conf["cniVersion"].as_str().unwrap_or("0.1.0").to_string();
    if !VERSIONS.contains(&version.as_str()) {
        return Err(Fail(1, format!("unsupported version {version}")));
    }
    // Called as `faulty-ipam` (a link to this binary), it is the IPAM
    // plugin of an interface-mode faulty plugin, whatever the config says.
    let as_ipam = std::env::args_os().next().is_some_and(|a| {
        Path::new(&a)
            .file_name()
            .is_some_and(|n| n == "faulty-ipam")
    });
    let mode = if as_ipam {
        "ipam"
    } else {
        conf["mode"].as_str().unwrap_or("ipam")
    };
    let fault = match mode {
        "ipam" => conf["ipam"]["fault"].as_str(),
        _ => conf["fault"].as_str(),
    }
    .unwrap_or("");
    if cmd == "ADD" {
        bad_plugin(fault)?;
    }
    if cmd == "CHECK" && !at_least(&version, "0.4.0") && fault != "check-below-040" {
        return Err(Fail(1, "CHECK needs 0.4.0".into()));
    }
    if matches!(cmd.as_str(), "GC" | "STATUS") && !at_least(&version, "1.1.0") {
        return Err(Fail(1, format!("{cmd} needs 1.1.0")));
    }
    if mode != "ipam" {
        check_env(&cmd)?;
        return interface::run(&cmd, &conf, &version, stdin);
    }
    let ipam = conf
        .get("ipam")
        .filter(|i| i.is_object())
        .ok_or(Fail(7, "no ipam".into()))?;
    let net: Ipv4Net = ipam["subnet"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or(Fail(7, "bad subnet".into()))?;
    let dir = PathBuf::from(
        ipam["dataDir"]
            .as_str()
            .ok_or(Fail(7, "no dataDir".into()))?,
    );
    let (id, ifname) = check_env(&cmd)?;
    std::fs::create_dir_all(&dir).map_err(|e| Fail(5, e.to_string()))?;
    let lock = std::fs::File::create(dir.join("lock")).map_err(|e| Fail(5, e.to_string()))?;
    if fault != "race" {
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Fail(5, e.to_string()))?;
    }
    let state = dir.join("leases.json");
    let mut leases = load(&state);
    let owner = format!("{id}/{ifname}");
    let hosts: Vec<Ipv4Addr> = net.hosts().skip(1).collect();
    match cmd.as_str() {
        "ADD" => {
            if leases.values().any(|o| *o == owner) {
                return Err(Fail(100, format!("{owner} already has an address")));
            }
            let requested = conf["runtimeConfig"]["ips"][0]
                .as_str()
                .map(|s| {
                    s.split('/')
                        .next()
                        .unwrap_or(s)
                        .parse::<Ipv4Addr>()
                        .map_err(|_| Fail(7, format!("bad ip {s}")))
                })
                .transpose()?;
            let ip = match requested {
                Some(ip) if hosts.contains(&ip) && !leases.contains_key(&ip.to_string()) => ip,
                Some(ip) => return Err(Fail(101, format!("{ip} is not available"))),
                None => *hosts
                    .iter()
                    .find(|h| !leases.contains_key(&h.to_string()))
                    .ok_or(Fail(11, "no address left".into()))?,
            };
            if fault == "race" {
                std::thread::sleep(std::time::Duration::from_millis(50));
                leases = load(&state);
            }
            leases.insert(ip.to_string(), owner);
            save(&state, &leases);
            Ok(Some(result(&version, ip, &net, ipam)))
        }
        "DEL" => {
            let before = leases.len();
            leases.retain(|_, o| *o != owner);
            if before == leases.len() && fault == "del-once" {
                return Err(Fail(3, format!("{owner} is unknown")));
            }
            save(&state, &leases);
            Ok(None)
        }
        "CHECK" => {
            let mine: Vec<&String> = leases
                .iter()
                .filter(|(_, o)| **o == owner)
                .map(|(ip, _)| ip)
                .collect();
            if mine.is_empty() || prev_addresses(&conf).iter().any(|a| !mine.contains(&a)) {
                return Err(Fail(
                    102,
                    format!("{owner} does not hold what prevResult says"),
                ));
            }
            Ok(None)
        }
        "GC" => {
            let valid: Vec<String> = conf["cni.dev/valid-attachments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{}/{}",
                        a["containerID"].as_str().unwrap_or(""),
                        a["ifname"].as_str().unwrap_or("")
                    )
                })
                .collect();
            leases.retain(|_, o| valid.contains(o));
            save(&state, &leases);
            Ok(None)
        }
        _ => {
            if hosts.iter().all(|h| leases.contains_key(&h.to_string())) {
                return Err(Fail(50, "no address left".into()));
            }
            Ok(None)
        }
    }
}

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    // Read the fault before anything can fail, so that it covers every error.
    let stderr_errors = serde_json::from_slice::<Value>(&stdin)
        .is_ok_and(|c| c["ipam"]["fault"] == "stderr-errors");
    match run(&stdin) {
        Ok(Some(v)) => {
            print!("{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            if stderr_errors {
                eprintln!("error {code}: {msg}");
            } else {
                print!(
                    "{}",
                    json!({"cniVersion": "1.1.0", "code": code, "msg": msg})
                );
            }
            ExitCode::FAILURE
        }
    }
}
