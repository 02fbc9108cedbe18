//! The faulty plugin as an interface plugin (`"mode": "interface"`) or a
//! chained one (`"mode": "meta"`), with one fault switched on by the
//! config's top-level `fault`:
//!
//! - `no-interface`: ADD creates nothing but reports eth0;
//! - `wrong-name`: the interface is created as eth9;
//! - `truncates-ifname`: a name too long for Linux is cut to 15 characters;
//! - `reuses-interface`: an eth0 already in the container is taken over;
//! - `no-sandbox`: the result's container interface has no `sandbox`;
//! - `wrong-sandbox`: its `sandbox` is not the `CNI_NETNS` path;
//! - `idempotent-add`: a second ADD for an attachment answers the first's
//!   result again;
//! - `wrong-mac`: the result names a MAC address the interface lacks;
//! - `ips-on-host`: `ips[].interface` points at the host-side interface;
//! - `no-addresses`: the addresses are not configured (and CHECK does not
//!   look for them);
//! - `no-routes`: the routes are not set up;
//! - `racy-links`: host links are numbered from a counter without a lock,
//!   so concurrent ADDs collide;
//! - `del-needs-netns`: DEL fails when the namespace is gone;
//! - `del-needs-prev`: DEL of an interface that is there fails without
//!   `prevResult`;
//! - `del-leaves-interface`: DEL leaves the interface behind;
//! - `leaks-host-link`: ADD also makes a host link DEL never removes;
//! - `no-ipam-release`: DEL never calls the IPAM plugin's DEL;
//! - `ipam-failure-leaks`: a failed IPAM ADD leaves a host link that no DEL
//!   removes;
//! - `no-del-on-ipam-failure`: a failed IPAM ADD is not followed by its DEL;
//! - `delegate-env`: the IPAM plugin runs without `CNI_ARGS`;
//! - `delegate-edits-config`: the IPAM plugin gets the config with a field
//!   added;
//! - `swallows-stderr`: the IPAM plugin's stderr is dropped;
//! - `check-trusts`: CHECK looks at nothing in the namespace;
//! - `check-exact`: CHECK fails on any route it did not make;
//! - `check-no-delegate` and `check-hides-ipam-error`: CHECK does not call
//!   the IPAM plugin, or drops its error;
//! - `gc-no-delegate`, `gc-hides-ipam-error`, `status-no-delegate`,
//!   `status-hides-ipam-error`: the same for GC and STATUS;
//! - `drops-prev-result` (meta): ADD returns a result without prevResult's
//!   interfaces and addresses;
//! - `crash-without-interfaces` (meta): ADD indexes `prevResult`'s
//!   interfaces without looking, and panics, as Go does, on a prevResult
//!   that has none (podman's dnsname 1.3.1 does);
//! - `daemon-after-del` (meta): ADD starts a daemon for the attachment that
//!   DEL never stops.
//!
//! It makes its links with `ip`, in the namespace it runs in (the suite's
//! host namespace for the case) and in `CNI_NETNS`.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use cni::exec::{self, Call};

use super::{Fail, at_least, env};

fn ip(args: &[&str]) -> Result<String, Fail> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Fail(5, format!("ip: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Fail(
            100,
            format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

/// `ip -n <netns name>`: the suite's namespaces live in /var/run/netns.
fn ip_in(netns: &str, args: &[&str]) -> Result<String, Fail> {
    let name = Path::new(netns)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut all = vec!["-n", name.as_str()];
    all.extend_from_slice(args);
    ip(&all)
}

fn mac(netns: Option<&str>, link: &str) -> Result<String, Fail> {
    let text = match netns {
        Some(ns) => ip_in(ns, &["-j", "link", "show", link])?,
        None => ip(&["-j", "link", "show", link])?,
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| Fail(5, e.to_string()))?;
    Ok(v[0]["address"].as_str().unwrap_or_default().to_string())
}

/// Runs the delegated IPAM plugin with this call's environment and config,
/// and passes its stderr on.
fn ipam(conf: &Value, command: &str, stdin: &[u8]) -> Result<Value, Fail> {
    let fault = conf["fault"].as_str().unwrap_or("");
    let plugin_type = conf["ipam"]["type"]
        .as_str()
        .ok_or(Fail(7, "no ipam.type".into()))?;
    let path = env("CNI_PATH").unwrap_or_default();
    let binary = exec::find(path.as_ref(), plugin_type)
        .ok_or_else(|| Fail(7, format!("no IPAM plugin {plugin_type} in {path}")))?;
    let call = Call {
        command: command.into(),
        container_id: env("CNI_CONTAINERID"),
        ifname: env("CNI_IFNAME").map(|mut n| {
            if fault == "truncates-ifname" {
                n.truncate(15);
            }
            n
        }),
        netns: env("CNI_NETNS"),
        args: if fault == "delegate-env" {
            None
        } else {
            env("CNI_ARGS")
        },
        extra: vec![("CNI_PATH".into(), path.clone())],
    };
    let edited;
    let stdin = if fault == "delegate-edits-config" {
        let mut c = conf.clone();
        c["faultyAdded"] = json!(true);
        edited = c.to_string();
        edited.as_bytes()
    } else {
        stdin
    };
    let out = exec::run(&binary, &call, stdin).map_err(|e| Fail(5, e.to_string()))?;
    if fault != "swallows-stderr" {
        eprint!("{}", out.stderr);
    }
    let v = out.parsed().unwrap_or(Value::Null);
    if out.ok() {
        Ok(v)
    } else {
        Err(Fail(
            v["code"].as_u64().unwrap_or(999) as u32,
            format!("IPAM: {}", v["msg"].as_str().unwrap_or("failed")),
        ))
    }
}

/// A host-side name for the attachment, unique per container and ifname.
fn host_name(prefix: &str, id: &str, ifname: &str) -> String {
    let hash = format!("{id}/{ifname}")
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
    format!("{prefix}{:08x}", hash as u32)
}

/// A host link (a veth pair) that no DEL removes.
fn leak_link(prefix: &str, id: &str, ifname: &str) -> Result<(), Fail> {
    let leak = host_name(prefix, id, ifname);
    let peer = format!("{leak}p");
    ip(&["link", "add", &leak, "type", "veth", "peer", "name", &peer]).map(drop)
}

/// A host-side name numbered from a counter in the IPAM plugin's data
/// folder, read and written without a lock (the `racy-links` fault).
fn racy_name(conf: &Value) -> Result<String, Fail> {
    let dir = conf["ipam"]["dataDir"].as_str().unwrap_or("/tmp");
    std::fs::create_dir_all(dir).map_err(|e| Fail(5, e.to_string()))?;
    let counter = Path::new(dir).join("racy-counter");
    let n: u32 = std::fs::read_to_string(&counter)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::write(&counter, (n + 1).to_string()).map_err(|e| Fail(5, e.to_string()))?;
    Ok(format!("fr{n}"))
}

/// The routes in `netns` that no result of the plugin made: any route that
/// is not a connected one (`proto kernel`) and not in `prev`.
fn foreign_routes(netns: &str, prev: &Value) -> Result<Vec<String>, Fail> {
    let text = ip_in(netns, &["-j", "route", "show"])?;
    let routes: Value = serde_json::from_str(&text).map_err(|e| Fail(5, e.to_string()))?;
    let listed: Vec<&str> = prev["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["dst"].as_str())
        .collect();
    Ok(routes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["protocol"] != "kernel")
        .filter_map(|r| r["dst"].as_str().map(str::to_string))
        .map(|d| {
            if d == "default" {
                "0.0.0.0/0".to_string()
            } else {
                d
            }
        })
        .filter(|d| !listed.contains(&d.as_str()))
        .collect())
}

/// The delegated call of a network-wide command (GC, STATUS), with its
/// error passed on unless the fault hides it.
fn delegate_network_call(conf: &Value, cmd: &str, stdin: &[u8]) -> Result<Option<Value>, Fail> {
    let fault = conf["fault"].as_str().unwrap_or("");
    let lower = cmd.to_ascii_lowercase();
    if !conf["ipam"].is_object() || fault == format!("{lower}-no-delegate") {
        return Ok(None);
    }
    match ipam(conf, cmd, stdin) {
        Err(_) if fault == format!("{lower}-hides-ipam-error") => Ok(None),
        Err(e) => Err(e),
        Ok(_) => Ok(None),
    }
}

pub fn run(
    cmd: &str,
    conf: &Value,
    version: &str,
    stdin: &[u8],
    (id, ifname): (String, String),
) -> Result<Option<Value>, Fail> {
    let fault = conf["fault"].as_str().unwrap_or("");
    let netns = env("CNI_NETNS");
    if conf["mode"] == "meta" {
        return meta(cmd, conf, version, fault);
    }
    if matches!(cmd, "GC" | "STATUS") {
        return delegate_network_call(conf, cmd, stdin);
    }
    let host = if fault == "racy-links" && cmd == "ADD" {
        racy_name(conf)?
    } else {
        host_name("fv", &id, &ifname)
    };
    match cmd {
        "ADD" => {
            let netns = netns.ok_or(Fail(4, "CNI_NETNS missing".into()))?;
            let name = if fault == "wrong-name" {
                "eth9"
            } else {
                ifname.as_str()
            };
            let exists = ip_in(&netns, &["link", "show", name]).is_ok();
            let answered = Path::new(conf["ipam"]["dataDir"].as_str().unwrap_or("/tmp"))
                .join(format!("result-{id}-{ifname}.json"));
            if fault == "idempotent-add"
                && exists
                && let Some(first) = std::fs::read(&answered)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            {
                return Ok(Some(first));
            }
            let taken_over = fault == "reuses-interface" && exists;
            if taken_over {
                ip_in(&netns, &["link", "set", name, "up"])?;
            } else if fault != "no-interface" {
                ip(&[
                    "link", "add", &host, "type", "veth", "peer", "name", name, "netns", &netns,
                ])?;
                ip(&["link", "set", &host, "up"])?;
                ip_in(&netns, &["link", "set", name, "up"])?;
            }
            if fault == "leaks-host-link" {
                leak_link("fl", &id, &ifname)?;
            }
            let mut result = match ipam(conf, "ADD", stdin) {
                Ok(r) => r,
                Err(e) => {
                    if fault != "no-del-on-ipam-failure" {
                        let _ = ipam(conf, "DEL", stdin);
                    }
                    let _ = ip(&["link", "del", &host]);
                    if fault == "ipam-failure-leaks" {
                        leak_link("fi", &id, &ifname)?;
                    }
                    return Err(e);
                }
            };
            let addresses: Vec<(String, Option<String>)> = if at_least(version, "0.3.0") {
                result["ips"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        (
                            i["address"].as_str().unwrap_or_default().to_string(),
                            i["gateway"].as_str().map(str::to_string),
                        )
                    })
                    .collect()
            } else {
                vec![(
                    result["ip4"]["ip"].as_str().unwrap_or_default().to_string(),
                    result["ip4"]["gateway"].as_str().map(str::to_string),
                )]
            };
            if fault != "no-addresses" && fault != "no-interface" {
                for (address, _) in &addresses {
                    ip_in(&netns, &["addr", "add", address, "dev", name])?;
                }
                let gateway = addresses.iter().find_map(|(_, g)| g.clone());
                let routes = if at_least(version, "0.3.0") {
                    &result["routes"]
                } else {
                    &result["ip4"]["routes"]
                };
                for route in routes.as_array().into_iter().flatten() {
                    if fault == "no-routes" {
                        break;
                    }
                    let dst = route["dst"].as_str().unwrap_or_default();
                    match route["gw"].as_str().map(str::to_string).or(gateway.clone()) {
                        Some(gw) => ip_in(&netns, &["route", "add", dst, "via", &gw, "dev", name])?,
                        None => ip_in(&netns, &["route", "add", dst, "dev", name])?,
                    };
                }
            }
            if at_least(version, "0.3.0") {
                let container_mac = if fault == "wrong-mac" {
                    "02:00:00:00:00:01".to_string()
                } else if fault == "no-interface" {
                    "02:00:00:00:00:02".to_string()
                } else {
                    mac(Some(&netns), name)?
                };
                let host_mac = if fault == "no-interface" || taken_over {
                    String::new()
                } else {
                    mac(None, &host)?
                };
                let mut container = json!({"name": ifname, "mac": container_mac, "sandbox": netns});
                if fault == "no-sandbox" {
                    container.as_object_mut().expect("object").remove("sandbox");
                }
                if fault == "wrong-sandbox" {
                    container["sandbox"] = json!("/var/run/netns/somewhere-else");
                }
                result["interfaces"] = json!([{"name": host, "mac": host_mac}, container]);
                let index = if fault == "ips-on-host" { 0 } else { 1 };
                for ip in result["ips"].as_array_mut().into_iter().flatten() {
                    ip["interface"] = json!(index);
                }
            }
            if fault == "idempotent-add" {
                let _ = std::fs::create_dir_all(answered.parent().expect("a folder"));
                let _ = std::fs::write(&answered, result.to_string());
            }
            Ok(Some(result))
        }
        "DEL" => {
            let there = netns.as_deref().is_some_and(|n| {
                Path::new(n).exists() && ip_in(n, &["link", "show", &ifname]).is_ok()
            });
            if fault == "del-needs-prev" && there && !conf["prevResult"].is_object() {
                return Err(Fail(100, "DEL needs prevResult".into()));
            }
            if fault != "no-ipam-release" && conf["ipam"].is_object() {
                ipam(conf, "DEL", stdin)?;
            }
            let alive = netns.as_deref().is_some_and(|n| Path::new(n).exists());
            if !alive && fault == "del-needs-netns" {
                return Err(Fail(100, "cannot open the container's namespace".into()));
            }
            if alive && fault != "del-leaves-interface" {
                let _ = ip_in(
                    netns.as_deref().unwrap_or_default(),
                    &["link", "del", &ifname],
                );
            }
            Ok(None)
        }
        "CHECK" => {
            let netns = netns.ok_or(Fail(4, "CNI_NETNS missing".into()))?;
            let prev = &conf["prevResult"];
            if fault != "check-trusts" && fault != "no-addresses" {
                let shown = ip_in(&netns, &["-j", "addr", "show", "dev", &ifname])
                    .map_err(|_| Fail(100, format!("{ifname} is missing")))?;
                for address in prev["ips"].as_array().into_iter().flatten() {
                    let a = address["address"].as_str().unwrap_or_default();
                    let bare = a.split('/').next().unwrap_or(a);
                    if !shown.contains(&format!("\"{bare}\"")) {
                        return Err(Fail(100, format!("{a} is missing from {ifname}")));
                    }
                }
            }
            if fault == "check-exact" {
                let foreign = foreign_routes(&netns, prev)?;
                if !foreign.is_empty() {
                    return Err(Fail(100, format!("routes it did not make: {foreign:?}")));
                }
            }
            if conf["ipam"].is_object() && fault != "check-no-delegate" {
                match ipam(conf, "CHECK", stdin) {
                    Err(_) if fault == "check-hides-ipam-error" => {}
                    other => {
                        other?;
                    }
                }
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

fn meta(cmd: &str, conf: &Value, version: &str, fault: &str) -> Result<Option<Value>, Fail> {
    if cmd != "ADD" {
        return Ok(None);
    }
    let prev = conf
        .get("prevResult")
        .filter(|p| p.is_object())
        .ok_or(Fail(7, "must be called as a chained plugin".into()))?;
    if fault == "crash-without-interfaces"
        && prev["interfaces"].as_array().is_none_or(|l| l.is_empty())
    {
        eprintln!(
            "panic: runtime error: index out of range [0] with length 0\n\ngoroutine 1 [running]:"
        );
        std::process::exit(2);
    }
    if fault == "daemon-after-del" {
        // In a session of its own, as a daemon is: no group kill reaches it.
        let _ = std::process::Command::new("setsid")
            .args(["sleep", "600"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let mut result = if fault == "drops-prev-result" {
        json!({"dns": {}})
    } else {
        prev.clone()
    };
    result["cniVersion"] = json!(version);
    Ok(Some(result))
}
