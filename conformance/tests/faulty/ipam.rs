//! The faulty plugin as an IPAM plugin: one address per attachment from
//! `ipam.subnet`, kept in `ipam.dataDir` under a lock, with one fault
//! switched on by `ipam.fault`:
//!
//! - `race`: no lock around its state, so concurrent ADDs collide;
//! - `del-once`: DEL of something already gone fails;
//! - `del-needs-netns`: DEL without `CNI_NETNS` fails;
//! - `leak`: DEL succeeds and keeps the address;
//! - `stderr-errors`: errors go to stderr only, stdout stays empty;
//! - `vague-env`: code-4 errors that name no variable;
//! - `vague-args`: a code-2 error that names no key or value;
//! - `rejects-args`: `args` it does not understand fail the call;
//! - `lenient`: a `subnet` of the wrong type falls back to a default;
//! - `wrong-version`: the result's cniVersion is not the config's;
//! - `interfaces`: the IPAM result carries interfaces;
//! - `no-address`: the result carries no address;
//! - `dup-when-full`: a full pool hands out its first address again;
//! - `cni-args-wins`: `CNI_ARGS` `IP` beats `args.cni.ips`;
//! - `check-below-040`: CHECK is accepted for configs older than 0.4.0;
//! - `check-fails`: CHECK always fails;
//! - `check-ignores-prev`: CHECK looks for a reservation, not at prevResult;
//! - `check-remembers`: CHECK passes for addresses the attachment released;
//! - `gc-noop`: GC releases nothing;
//! - `gc-one-key`: GC reads only `cni.dev/valid-attachments`;
//! - `status-fails`: STATUS always fails;
//! - `status-blind`: STATUS passes with the pool exhausted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use cni::version::at_least;
use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::{Fail, cni_args};

/// Address to holder (`container/ifname`); with `check-remembers`, a
/// released address is kept as `released:<holder>`.
type Leases = BTreeMap<String, String>;

const RELEASED: &str = "released:";

fn load(path: &Path) -> Leases {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(path: &Path, leases: &Leases) {
    std::fs::write(path, serde_json::to_vec(leases).unwrap()).unwrap();
}

fn held(leases: &Leases, ip: &Ipv4Addr) -> bool {
    leases
        .get(&ip.to_string())
        .is_some_and(|o| !o.starts_with(RELEASED))
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
    if fault == "no-address" {
        r["ips"] = json!([]);
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

fn parse_ip(s: &str) -> Result<Ipv4Addr, Fail> {
    s.split('/')
        .next()
        .unwrap_or(s)
        .parse()
        .map_err(|_| Fail(7, format!("bad ip {s}")))
}

/// The address asked for: `args.cni.ips` beats `CNI_ARGS` `IP`, as
/// CONVENTIONS.md has it (unless the fault turns that round), and either
/// beats the `ips` capability.
fn requested(conf: &Value, fault: &str) -> Result<Option<Ipv4Addr>, Fail> {
    let from_args = conf["args"]["cni"]["ips"][0].as_str();
    let from_cni_args = cni_args()
        .into_iter()
        .find(|(k, _)| k == "IP")
        .map(|(_, v)| v);
    let from_capability = conf["runtimeConfig"]["ips"][0].as_str();
    let chosen = if fault == "cni-args-wins" {
        from_cni_args.as_deref().or(from_args)
    } else {
        from_args.or(from_cni_args.as_deref())
    };
    chosen.or(from_capability).map(parse_ip).transpose()
}

/// The attachments a GC call keeps: the list under either key (libcni
/// sends both, the spec-v1.1.0 text names `cni.dev/attachments`), or
/// `None` when neither is there.
fn valid_attachments(conf: &Value, fault: &str) -> Option<Vec<String>> {
    let keys: &[&str] = if fault == "gc-one-key" {
        &["cni.dev/valid-attachments"]
    } else {
        &["cni.dev/valid-attachments", "cni.dev/attachments"]
    };
    let lists: Vec<&Vec<Value>> = keys.iter().filter_map(|k| conf[*k].as_array()).collect();
    if lists.is_empty() {
        return None;
    }
    Some(
        lists
            .into_iter()
            .flatten()
            .map(|a| {
                format!(
                    "{}/{}",
                    a["containerID"].as_str().unwrap_or(""),
                    a["ifname"].as_str().unwrap_or("")
                )
            })
            .collect(),
    )
}

pub fn run(
    cmd: &str,
    conf: &Value,
    version: &str,
    fault: &str,
    (id, ifname): (String, String),
) -> Result<Option<Value>, Fail> {
    let ipam = conf
        .get("ipam")
        .filter(|i| i.is_object())
        .ok_or(Fail(7, "no ipam".into()))?;
    if fault == "rejects-args"
        && let Some(args) = conf["args"].as_object()
        && args.keys().any(|k| k != "cni")
    {
        return Err(Fail(2, format!("unknown args {}", conf["args"])));
    }
    let net: Ipv4Net = match ipam["subnet"].as_str() {
        Some(s) => s.parse().map_err(|_| Fail(7, format!("bad subnet {s}")))?,
        None if fault == "lenient" => "10.250.0.0/24".parse().expect("a subnet"),
        None => {
            return Err(Fail(
                7,
                format!("ipam.subnet must be a string, not {}", ipam["subnet"]),
            ));
        }
    };
    let dir = PathBuf::from(
        ipam["dataDir"]
            .as_str()
            .ok_or(Fail(7, "no dataDir".into()))?,
    );
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
    let full = hosts.iter().all(|h| held(&leases, h));
    match cmd {
        "ADD" => {
            if leases.values().any(|o| *o == owner) {
                return Err(Fail(100, format!("{owner} already has an address")));
            }
            let ip = match requested(conf, fault)? {
                Some(ip) if hosts.contains(&ip) && !held(&leases, &ip) => ip,
                Some(ip) => return Err(Fail(101, format!("{ip} is not available"))),
                None => match hosts.iter().find(|h| !held(&leases, h)) {
                    Some(h) => *h,
                    None if fault == "dup-when-full" => hosts[0],
                    None => return Err(Fail(11, "no address left".into())),
                },
            };
            if fault == "race" {
                std::thread::sleep(std::time::Duration::from_millis(50));
                leases = load(&state);
            }
            leases.insert(ip.to_string(), owner);
            save(&state, &leases);
            Ok(Some(result(version, ip, &net, ipam)))
        }
        "DEL" => {
            if fault == "del-needs-netns" && super::env("CNI_NETNS").is_none() {
                return Err(Fail(4, "DEL needs CNI_NETNS".into()));
            }
            let before = leases.values().filter(|o| **o == owner).count();
            if before == 0 && fault == "del-once" {
                return Err(Fail(3, format!("{owner} is unknown")));
            }
            match fault {
                "leak" => {}
                "check-remembers" => {
                    for o in leases.values_mut().filter(|o| **o == owner) {
                        *o = format!("{RELEASED}{owner}");
                    }
                }
                _ => leases.retain(|_, o| *o != owner),
            }
            save(&state, &leases);
            Ok(None)
        }
        "CHECK" => {
            if fault == "check-fails" {
                return Err(Fail(102, "CHECK fails on purpose".into()));
            }
            let released = format!("{RELEASED}{owner}");
            let mine: Vec<&String> = leases
                .iter()
                .filter(|(_, o)| **o == owner || (fault == "check-remembers" && **o == released))
                .map(|(ip, _)| ip)
                .collect();
            let foreign = fault != "check-ignores-prev"
                && prev_addresses(conf).iter().any(|a| !mine.contains(&a));
            if mine.is_empty() || foreign {
                return Err(Fail(
                    102,
                    format!("{owner} does not hold what prevResult says"),
                ));
            }
            Ok(None)
        }
        "GC" => {
            if fault != "gc-noop"
                && let Some(valid) = valid_attachments(conf, fault)
            {
                leases.retain(|_, o| valid.contains(o));
                save(&state, &leases);
            }
            Ok(None)
        }
        _ => {
            if match fault {
                "status-fails" => true,
                "status-blind" => false,
                _ => full,
            } {
                return Err(Fail(50, "no address left".into()));
            }
            Ok(None)
        }
    }
}
