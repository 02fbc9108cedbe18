//! Network namespaces the suite makes, and what it reads from them.
//!
//! Every case of an interface or chained plugin gets two namespaces: a
//! container namespace, passed as `CNI_NETNS`, and a host namespace in which
//! the plugin itself runs (`ip netns exec`, which also mounts that
//! namespace's sysfs). The host namespace is what makes the suite safe and
//! fair: the bridges, veth peers, iptables rules and tc qdiscs a plugin makes
//! on "the host" all land in it, so concurrent cases never see each other's
//! links, a leak check compares the links of one case only, and deleting the
//! two namespaces removes everything the case made, whatever the plugin did.
//!
//! Names start with `cnict-<pid>-`, the pid of the suite. Every namespace is
//! removed when its guard drops, on SIGINT and SIGTERM (the run stops with
//! status 130), and a later run removes those of a suite that was killed
//! outright ([`sweep_stale`]).
//!
//! The suite drives iproute2 (`ip -j` prints JSON) rather than netlink
//! itself: `ip` is on every node, its JSON is stable, and a failure message
//! can show the very command a person would type to look.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use ipnet::IpNet;
use serde_json::Value;

/// The prefix of every namespace the suite makes.
pub const PREFIX: &str = "cnict-";

static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Whether this process may make namespaces and links.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs `ip` with `args`; stdout, or an error naming the command.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace, deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new, empty namespace; `role` ends its name, for people reading
    /// `ip netns list` while a case runs.
    pub fn new(role: &str) -> Result<Netns, String> {
        install_cleanup();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        // Registered first: a signal between the two steps still removes it.
        LIVE.lock().expect("netns registry").insert(name.clone());
        let ns = Netns { name };
        ip(&["netns", "add", &ns.name])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path a runtime passes as `CNI_NETNS`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs `ip -n <this namespace> args`.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Every link, with its addresses.
    pub fn links(&self) -> Result<Vec<Link>, String> {
        let text = self.ip(&["-j", "-d", "addr", "show"])?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("`ip -j addr show` printed no JSON ({e}): {text}"))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(Link::from_json)
            .collect())
    }

    pub fn link(&self, name: &str) -> Result<Option<Link>, String> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// Every route of both families in every table, except the kernel's
    /// local and broadcast ones.
    pub fn routes(&self) -> Result<Vec<Route>, String> {
        let mut out = Vec::new();
        for family in ["-4", "-6"] {
            let text = self.ip(&[family, "-j", "route", "show", "table", "all"])?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| format!("`ip -j route show` printed no JSON ({e}): {text}"))?;
            out.extend(
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| !matches!(r["type"].as_str(), Some("local" | "broadcast")))
                    .filter_map(|r| Route::from_json(r, family == "-4")),
            );
        }
        Ok(out)
    }

    /// Makes a link for a plugin to use, such as the master of a macvlan or
    /// the device of host-device: a veth whose peer `<name>p` stays beside
    /// it, both up. A veth rather than a dummy because every kernel with
    /// namespaces has veth (dummy is a module that may be missing), it
    /// carries macvlans, and unlike a bridge it can be moved into a
    /// container.
    pub fn add_host_link(&self, name: &str) -> Result<(), String> {
        let peer: String = format!("{name}p").chars().take(15).collect();
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer])?;
        self.ip(&["link", "set", &peer, "up"])?;
        self.ip(&["link", "set", name, "up"]).map(drop)
    }

    /// Whether this kernel can make links of `kind` (ipvlan and vlan are
    /// modules some kernels lack), tried on a veth here.
    pub fn supports(&self, kind: &str) -> bool {
        if self.add_host_link("cnictprobe").is_err() {
            return false;
        }
        let mut args = vec![
            "link",
            "add",
            "cnictkind",
            "link",
            "cnictprobe",
            "type",
            kind,
        ];
        if kind == "vlan" {
            args.extend(["id", "7"]);
        }
        let ok = self.ip(&args).is_ok();
        let _ = self.ip(&["link", "del", "cnictkind"]);
        let _ = self.ip(&["link", "del", "cnictprobe"]);
        ok
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // What a plugin left running in it first: a deleted namespace's
        // processes live on, out of anyone's sight.
        for (pid, _) in processes(&self.name) {
            kill(pid);
        }
        remove(&self.name);
    }
}

/// The processes in namespace `name`, each with its command line.
pub fn processes(name: &str) -> Vec<(u32, String)> {
    ip(&["netns", "pids", name])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .map(|pid: u32| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .split('\0')
                        .filter(|a| !a.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            (pid, cmdline)
        })
        .collect()
}

/// The process group of `pid`, from `/proc`.
pub fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(2)?.parse().ok()
}

/// SIGKILL to `pid`.
pub fn kill(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

fn remove(name: &str) {
    // Deleting a namespace destroys its virtual links, and with them their
    // veth peers in other namespaces.
    let _ = ip(&["netns", "del", name]);
    LIVE.lock().expect("netns registry").remove(name);
}

/// A link as `ip -j -d addr show` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub name: String,
    pub index: u64,
    pub mac: Option<String>,
    /// `veth`, `bridge`, `macvlan`, ... (`None` for plain devices).
    pub kind: Option<String>,
    /// For a veth, its peer's index (in the namespace `peer_netns` names).
    pub peer_index: Option<u64>,
    pub addresses: Vec<IpNet>,
}

impl Link {
    fn from_json(v: &Value) -> Link {
        Link {
            name: v["ifname"].as_str().unwrap_or_default().to_string(),
            index: v["ifindex"].as_u64().unwrap_or_default(),
            mac: v["address"].as_str().map(str::to_ascii_lowercase),
            kind: v["linkinfo"]["info_kind"].as_str().map(str::to_string),
            peer_index: v["link_index"].as_u64(),
            addresses: v["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| {
                    let ip: IpAddr = a["local"].as_str()?.parse().ok()?;
                    IpNet::new(ip, a["prefixlen"].as_u64()? as u8).ok()
                })
                .collect(),
        }
    }
}

/// A route as `ip -j route show` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
}

impl Route {
    fn from_json(v: &Value, v4: bool) -> Option<Route> {
        let dst = match v["dst"].as_str()? {
            "default" if v4 => "0.0.0.0/0".parse().ok()?,
            "default" => "::/0".parse().ok()?,
            s if s.contains('/') => s.parse().ok()?,
            s => IpNet::from(s.parse::<IpAddr>().ok()?),
        };
        Some(Route {
            dst,
            gateway: v["gateway"].as_str().and_then(|g| g.parse().ok()),
        })
    }
}

/// Removes every namespace this process made and still holds.
pub fn remove_all() {
    let names: Vec<String> = LIVE
        .lock()
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default();
    for name in names {
        remove(&name);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: kill the calls still running, remove every
/// namespace, then exit 130.
fn install_cleanup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // A second handler (an embedding program's) keeps its own; the
        // guards still clean up on every normal path.
        let _ = ctrlc::set_handler(|| {
            cni::exec::kill_running();
            remove_all();
            eprintln!("cni-conformance: interrupted; removed the namespaces it made");
            std::process::exit(130);
        });
    });
}

/// Where plugins keep per-network state on a node (dnsname under
/// /run/containers/cni/dnsname, host-local under /var/lib/cni/networks):
/// searched, a few levels deep, for what carries one of this run's
/// network names.
const STATE_ROOTS: &[&str] = &["/run", "/var/lib/cni", "/var/lib/containers"];
const STATE_DEPTH: usize = 5;

/// The folders under `STATE_ROOTS` before a run, so that the folders a
/// plugin made for the run's networks and left empty can go too.
pub struct StateBefore(BTreeSet<PathBuf>);

/// Every folder under the state roots, [`STATE_DEPTH`] levels deep.
fn state_folders() -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut pending: Vec<(PathBuf, usize)> =
        STATE_ROOTS.iter().map(|r| (PathBuf::from(r), 0)).collect();
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.starts_with("/run/netns") || path.starts_with("/run/user") {
                continue;
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            out.push((path.clone(), is_dir));
            if is_dir && depth + 1 < STATE_DEPTH {
                pending.push((path, depth + 1));
            }
        }
    }
    out
}

impl StateBefore {
    pub fn take() -> StateBefore {
        StateBefore(
            state_folders()
                .into_iter()
                .filter(|(_, dir)| *dir)
                .map(|(p, _)| p)
                .collect(),
        )
    }

    /// Removes what a plugin left on the node under one of this run's
    /// network names (`target::run_prefix`), which can only be the run's,
    /// and then the folders it made that are left empty: the paths named
    /// after the run's networks that it removed.
    pub fn remove_left(&self) -> Vec<PathBuf> {
        let prefix = crate::target::run_prefix();
        let mut found = Vec::new();
        for (path, is_dir) in state_folders() {
            let named = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
            if !named || !path.exists() {
                continue;
            }
            let removed = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if removed.is_ok() {
                found.push(path);
            }
        }
        // Deepest first, so a parent empties once its children are gone.
        let mut made: Vec<PathBuf> = state_folders()
            .into_iter()
            .filter(|(p, dir)| *dir && !self.0.contains(p))
            .map(|(p, _)| p)
            .collect();
        made.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for dir in made {
            // Fails, as it should, for a folder that is not empty.
            let _ = std::fs::remove_dir(&dir);
        }
        found.sort();
        found
    }
}

/// Removes the namespaces of suites that died without cleaning up (killed
/// with SIGKILL): those named after a pid that no longer runs. Returns
/// their names.
pub fn sweep_stale() -> Vec<String> {
    let Ok(list) = ip(&["netns", "list"]) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = rustix::process::Pid::from_raw(pid)
            .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
        if !alive {
            let _ = ip(&["netns", "del", name]);
            removed.push(name.to_string());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_links_and_routes() {
        let link = Link::from_json(&serde_json::json!({
            "ifindex": 2, "link_index": 7, "ifname": "eth0", "address": "E6:1A:B0:20:45:39",
            "linkinfo": {"info_kind": "veth"},
            "addr_info": [{"family": "inet", "local": "10.230.0.2", "prefixlen": 24}]
        }));
        assert_eq!(link.mac.as_deref(), Some("e6:1a:b0:20:45:39"));
        assert_eq!(link.peer_index, Some(7));
        assert_eq!(link.addresses, ["10.230.0.2/24".parse::<IpNet>().unwrap()]);
        let r = Route::from_json(
            &serde_json::json!({"dst": "default", "gateway": "10.230.0.1", "dev": "eth0"}),
            true,
        )
        .unwrap();
        assert_eq!(r.dst, "0.0.0.0/0".parse::<IpNet>().unwrap());
        let host = Route::from_json(&serde_json::json!({"dst": "10.1.2.3"}), true).unwrap();
        assert_eq!(host.dst, "10.1.2.3/32".parse::<IpNet>().unwrap());
    }
}
