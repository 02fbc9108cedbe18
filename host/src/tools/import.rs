//! `wasm-ipam import-host-local`: take over the reservations of the
//! reference host-local plugin, so a node moves to wasm-ipam without losing
//! an address or handing one out twice.
//!
//! The reference keeps, in `<dataDir>/<network>/`, one file per address
//! holding `<container id>\r\n<ifname>`, a `last_reserved_ip.<n>` cursor per
//! range set, and a `lock` file it flocks for every operation. The import
//! takes the same lock, so no reference call runs halfway through it.
//!
//! It writes nothing itself: it asks the new network's own policy, through
//! the contract, as a runtime would. In one transaction it reads who holds
//! what (`inspect.leases`), then runs an ADD for each reservation's holder
//! with the addresses requested (`CNI_ARGS` `IP=`), at the reservation's
//! time, and records the network as an ADD does; all of it is committed or
//! none. A holder of the reference's cursor address goes last in its range
//! set, so the policy's round-robin carries on where the reference's would.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context as _, bail};
use rustix::fs::{FlockOperation, flock};

use crate::cni::config::NetConf;
use crate::cni::env::{ifname_problem, valid_id};
use crate::netrecord::NetworkRecord;
use crate::reboot;
use crate::runner;
use crate::sandbox::{Answer, Attachment, Invocation, Op};
use crate::store::Store;

pub struct Summary {
    pub imported: usize,
    pub already: usize,
    pub cursors: usize,
}

/// One reservation file: the holder, from `<id>\r\n<ifname>` (or an old
/// plugin's bare `<id>`, which gets `default_ifname`).
fn holder(text: &str, default_ifname: &str) -> Option<(String, String)> {
    let mut lines = text.lines().map(str::trim);
    let id = lines.next().filter(|id| valid_id(id))?;
    let ifname = match lines.next() {
        Some(i) if !i.is_empty() => i,
        _ => default_ifname,
    };
    ifname_problem(ifname)
        .is_none()
        .then(|| (id.to_string(), ifname.to_string()))
}

/// A holder, `(container id, ifname)`.
type Holder = (String, String);
/// A holder's addresses, with its oldest reservation's time.
type Held = (Vec<IpAddr>, u64);

/// What the reference's directory holds.
struct Found {
    holders: BTreeMap<Holder, Held>,
    /// `last_reserved_ip.<set>`.
    cursors: Vec<(usize, IpAddr)>,
}

fn read_dir(
    from: &Path,
    default_ifname: &str,
    now: u64,
    out: &mut dyn Write,
) -> anyhow::Result<Found> {
    let dir = std::fs::read_dir(from)
        .with_context(|| format!("cannot read the host-local directory {}", from.display()))?;
    let mut found = Found {
        holders: BTreeMap::new(),
        cursors: Vec::new(),
    };
    for entry in dir {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(n) = name.strip_prefix("last_reserved_ip.") {
            let text = std::fs::read_to_string(&path)?;
            let ip: IpAddr = text
                .trim()
                .parse()
                .with_context(|| format!("{} does not hold an IP address", path.display()))?;
            let Ok(set) = n.parse::<usize>() else {
                bail!("{} is not a range set's cursor", path.display());
            };
            found.cursors.push((set, ip));
        } else if let Ok(ip) = name.parse::<IpAddr>() {
            let text = std::fs::read_to_string(&path)?;
            let holder = holder(&text, default_ifname).with_context(|| {
                format!(
                    "{} does not name a container and interface: {text:?}",
                    path.display()
                )
            })?;
            let since = entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(now, |d| d.as_secs());
            let (ips, first) = found.holders.entry(holder).or_insert((Vec::new(), since));
            ips.push(ip);
            *first = (*first).min(since);
        } else if name != "lock" {
            writeln!(
                out,
                "skipped {}: not a reservation or a cursor",
                path.display()
            )?;
        }
    }
    for (ips, _) in found.holders.values_mut() {
        ips.sort();
    }
    Ok(found)
}

/// Imports the reservations in `from` into the network `conf` describes.
pub fn run(
    from: &Path,
    conf: &NetConf,
    store: &dyn Store,
    default_ifname: &str,
    now: u64,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let network = conf.name.as_str();
    // Hold the reference's own lock for the whole import.
    let lock_path = from.join("lock");
    if !from.is_dir() {
        bail!(
            "cannot read the host-local directory {}: not a directory",
            from.display()
        );
    }
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    flock(&lock, FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let found = read_dir(from, default_ifname, now, out)?;

    let sandbox = runner::load_policy(conf).map_err(|e| anyhow::anyhow!("{e}"))?;
    let node = runner::node_name(conf).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = reboot::bare_context(conf, &node);
    let policy = &conf.ipam.policy;
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}; nothing was imported");
    let mut txn = store.begin(network)?;
    // Who holds what now.
    let (answer, back) = sandbox.call(
        txn,
        &Invocation::new(&base, &Op::Leases, &conf.ipam.limits, now),
    );
    txn = back;
    let held: BTreeMap<IpAddr, Attachment> = match answer
        .map_err(|e| fail(&e))?
        .map_err(|e| fail(&crate::sandbox::ipam_error(e)))?
    {
        Answer::Leases(leases) => leases
            .into_iter()
            .filter_map(|l| Some((l.address.parse().ok()?, l.attachment)))
            .collect(),
        _ => bail!(
            "policy {policy} does not export {}: the import needs it to see what is held already",
            crate::sandbox::INSPECT_INTERFACE
        ),
    };
    // Holders of a cursor address last, so the round-robin resumes there.
    let cursor_ips: Vec<IpAddr> = found.cursors.iter().map(|(_, ip)| *ip).collect();
    let mut order: Vec<(&Holder, &Held)> = found.holders.iter().collect();
    order.sort_by_key(|(_, (ips, _))| ips.iter().any(|ip| cursor_ips.contains(ip)));
    let boot = reboot::boot_id(&|k| std::env::var_os(k));
    let mut summary = Summary {
        imported: 0,
        already: 0,
        cursors: 0,
    };
    for ((id, ifname), (ips, since)) in order {
        let att = Attachment {
            container_id: id.clone(),
            ifname: ifname.clone(),
        };
        let mut fresh = Vec::new();
        for ip in ips {
            match held.get(ip) {
                Some(h) if h.container_id == att.container_id && h.ifname == att.ifname => {
                    summary.already += 1
                }
                Some(h) => bail!(
                    "{ip} is held by {id}/{ifname} in host-local but by {}/{} in wasm-ipam; nothing was imported",
                    h.container_id,
                    h.ifname
                ),
                None => fresh.push(*ip),
            }
        }
        if fresh.is_empty() {
            continue;
        }
        if fresh.len() < ips.len() {
            bail!("{id}/{ifname} holds only part of {ips:?} in wasm-ipam; nothing was imported");
        }
        let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
        let mut ctx = base.clone();
        ctx.cni_args = vec![("IP".into(), list.join(","))];
        let add = Op::Add(att.clone());
        let (answer, back) =
            sandbox.call(txn, &Invocation::new(&ctx, &add, &conf.ipam.limits, *since));
        txn = back;
        let given = match answer.map_err(|e| fail(&e))? {
            Ok(Answer::Allocation(a)) => a.ips.len(),
            Ok(_) => 0,
            Err(e) => bail!(
                "policy {policy} refused {} for {id}/{ifname}: {}; nothing was imported",
                list.join(","),
                crate::sandbox::ipam_error(e)
            ),
        };
        if given != ips.len() {
            bail!(
                "policy {policy} gave {id}/{ifname} {given} addresses for the {} it held in host-local: \
                 the config's range sets differ from the reference's; nothing was imported",
                ips.len()
            );
        }
        if let Some(boot) = &boot {
            reboot::remember(&mut *txn, &node, &att, boot)?;
        }
        summary.imported += ips.len();
    }
    summary.cursors = found
        .cursors
        .iter()
        .filter(|(_, ip)| found.holders.values().any(|(ips, _)| ips.contains(ip)))
        .count();
    for (set, ip) in &found.cursors {
        if !found.holders.values().any(|(ips, _)| ips.contains(ip)) {
            writeln!(
                out,
                "cursor {ip} of range set {set} not carried over: no reservation holds it any more"
            )?;
        }
    }
    NetworkRecord::of(conf).remember(&mut *txn)?;
    txn.commit()?;
    writeln!(
        out,
        "{network}: imported {} reservation{} ({} already there) and {} cursor{} from {}",
        summary.imported,
        if summary.imported == 1 { "" } else { "s" },
        summary.already,
        summary.cursors,
        if summary.cursors == 1 { "" } else { "s" },
        from.display()
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_files_name_the_holder() {
        assert_eq!(
            holder("c1\r\neth0", "eth9"),
            Some(("c1".into(), "eth0".into()))
        );
        assert_eq!(holder("c1", "eth9"), Some(("c1".into(), "eth9".into())));
        assert_eq!(holder("c1\r\n", "eth9"), Some(("c1".into(), "eth9".into())));
        assert_eq!(holder("", "eth0"), None);
        assert_eq!(holder("bad id\r\neth0", "eth0"), None);
        assert_eq!(holder("c1\r\nway-too-long-ifname", "eth0"), None);
    }
}
