//! `wasm-ipam import-host-local`: take over the reservations of the
//! reference host-local plugin, so a node moves to wasm-ipam (policy
//! host-local) without losing an address or handing one out twice.
//!
//! The reference keeps, in `<dataDir>/<network>/`, one file per address
//! holding `<container id>\r\n<ifname>`, a `last_reserved_ip.<n>` cursor per
//! range set, and a `lock` file it flocks for every operation. The import
//! takes the same lock, so no reference call runs halfway through it, and
//! writes everything in one transaction: all of it or none of it.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context as _, bail};
use ipam_kit::leases::{self, Lease};
use rustix::fs::{FlockOperation, flock};

use super::kit_host::TxnHost;
use crate::cni::env::{ifname_problem, valid_id};
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

pub fn run(
    from: &Path,
    network: &str,
    store: &dyn Store,
    default_ifname: &str,
    now: u64,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    if !valid_id(network) {
        bail!("{network:?} is not a valid network name");
    }
    let dir = std::fs::read_dir(from)
        .with_context(|| format!("cannot read the host-local directory {}", from.display()))?;
    // Hold the reference's own lock for the whole import.
    let lock_path = from.join("lock");
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    flock(&lock, FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;

    let mut reservations = Vec::new();
    let mut cursors = Vec::new();
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
            cursors.push((set, ip));
        } else if let Ok(ip) = name.parse::<IpAddr>() {
            let text = std::fs::read_to_string(&path)?;
            let (id, ifname) = holder(&text, default_ifname).with_context(|| {
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
            reservations.push((ip, id, ifname, since));
        } else if name != "lock" {
            writeln!(
                out,
                "skipped {}: not a reservation or a cursor",
                path.display()
            )?;
        }
    }
    reservations.sort();

    let txn = store.begin(network)?;
    let mut host = TxnHost::new(txn, now);
    let mut summary = Summary {
        imported: 0,
        already: 0,
        cursors: cursors.len(),
    };
    for (ip, id, ifname, since) in &reservations {
        let lease = Lease {
            container_id: id.clone(),
            ifname: ifname.clone(),
            since: *since,
            tag: None,
            pod: None,
        };
        match leases::get(&host, *ip) {
            Some(held) if held.container_id == *id && held.ifname == *ifname => {
                summary.already += 1;
            }
            Some(held) => bail!(
                "{ip} is held by {}/{} in host-local but by {}/{} in wasm-ipam; nothing was imported",
                id,
                ifname,
                held.container_id,
                held.ifname
            ),
            None => {
                leases::reserve(&mut host, *ip, &lease);
                summary.imported += 1;
            }
        }
    }
    for (set, ip) in &cursors {
        ipam_kit::ranges::set_cursor(&mut host, *set, *ip);
    }
    host.finish()?.commit()?;
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
