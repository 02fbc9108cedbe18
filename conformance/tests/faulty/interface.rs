//! The faulty plugin as an interface plugin (`"mode": "interface"`) or a
//! chained one (`"mode": "meta"`), with one fault switched on by the
//! config's top-level `fault`:
//!
//! - `no-interface`: ADD creates nothing but reports eth0;
//! - `wrong-name`: the interface is created as eth9;
//! - `no-sandbox`: the result's container interface has no `sandbox`;
//! - `wrong-mac`: the result names a MAC address the interface lacks;
//! - `no-addresses`: the addresses are not configured;
//! - `del-needs-netns`: DEL fails when the namespace is gone;
//! - `del-leaves-interface`: DEL leaves the interface behind;
//! - `leaks-host-link`: ADD also makes a host link DEL never removes;
//! - `no-ipam-release`: DEL never calls the IPAM plugin's DEL;
//! - `ipam-failure-leaks`: a failed IPAM ADD leaves a host link that no DEL
//!   removes;
//! - `drops-prev-result` (meta): ADD returns a result without prevResult's
//!   interfaces and addresses.
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

/// Runs the delegated IPAM plugin with this call's environment.
fn ipam(conf: &Value, command: &str, stdin: &[u8]) -> Result<Value, Fail> {
    let plugin_type = conf["ipam"]["type"]
        .as_str()
        .ok_or(Fail(7, "no ipam.type".into()))?;
    let path = env("CNI_PATH").unwrap_or_default();
    let binary = exec::find(path.as_ref(), plugin_type)
        .ok_or_else(|| Fail(7, format!("no IPAM plugin {plugin_type} in {path}")))?;
    let call = Call {
        command: command.into(),
        container_id: env("CNI_CONTAINERID"),
        ifname: env("CNI_IFNAME"),
        netns: env("CNI_NETNS"),
        args: env("CNI_ARGS"),
        extra: vec![("CNI_PATH".into(), path.clone())],
    };
    let out = exec::run(&binary, &call, stdin).map_err(|e| Fail(5, e.to_string()))?;
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

pub fn run(cmd: &str, conf: &Value, version: &str, stdin: &[u8]) -> Result<Option<Value>, Fail> {
    let fault = conf["fault"].as_str().unwrap_or("");
    let id = env("CNI_CONTAINERID").ok_or(Fail(4, "CNI_CONTAINERID missing".into()))?;
    let ifname = env("CNI_IFNAME").ok_or(Fail(4, "CNI_IFNAME missing".into()))?;
    let netns = env("CNI_NETNS");
    if conf["mode"] == "meta" {
        return meta(cmd, conf, version, fault);
    }
    let host = host_name("fv", &id, &ifname);
    match cmd {
        "ADD" => {
            let netns = netns.ok_or(Fail(4, "CNI_NETNS missing".into()))?;
            let name = if fault == "wrong-name" {
                "eth9"
            } else {
                ifname.as_str()
            };
            if fault != "no-interface" {
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
                let host_mac = if fault == "no-interface" {
                    String::new()
                } else {
                    mac(None, &host)?
                };
                let mut container = json!({"name": ifname, "mac": container_mac, "sandbox": netns});
                if fault == "no-sandbox" {
                    container.as_object_mut().expect("object").remove("sandbox");
                }
                result["interfaces"] = json!([{"name": host, "mac": host_mac}, container]);
                for ip in result["ips"].as_array_mut().into_iter().flatten() {
                    ip["interface"] = json!(1);
                }
            }
            Ok(Some(result))
        }
        "DEL" => {
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
            let shown = ip_in(&netns, &["-j", "addr", "show", "dev", &ifname])
                .map_err(|_| Fail(100, format!("{ifname} is missing")))?;
            for address in prev["ips"].as_array().into_iter().flatten() {
                let a = address["address"].as_str().unwrap_or_default();
                let bare = a.split('/').next().unwrap_or(a);
                if !shown.contains(&format!("\"{bare}\"")) {
                    return Err(Fail(100, format!("{a} is missing from {ifname}")));
                }
            }
            if conf["ipam"].is_object() {
                ipam(conf, "CHECK", stdin)?;
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
    let mut result = if fault == "drops-prev-result" {
        json!({"dns": {}})
    } else {
        prev.clone()
    };
    result["cniVersion"] = json!(version);
    Ok(Some(result))
}
