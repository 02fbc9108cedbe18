//! A case's host namespace, as a plugin under test sees "the host": the
//! `--host-link` links it needs (a macvlan's master), and the
//! `--host-daemon` commands that serve it (a DHCP server for the dhcp IPAM
//! plugin), started in that namespace before the case and killed, with
//! everything they started, when it ends.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::netns::Netns;
use crate::target::Target;

/// How long a daemon has to print its first line, the sign it is ready.
const READY: Duration = Duration::from_secs(10);

pub struct Host {
    ns: Netns,
    daemons: Vec<Child>,
}

impl Host {
    /// A fresh host namespace for `target`; daemons get `scratch` as
    /// `CNICT_SCRATCH`, a folder of their own for leases and logs.
    pub fn new(target: &Target, role: &str, scratch: &Path) -> Result<Host, String> {
        let mut host = Host {
            ns: Netns::new(role)?,
            daemons: Vec::new(),
        };
        for link in &target.host_links {
            host.ns.add_host_link(link)?;
        }
        for command in &target.host_daemons {
            host.start(command, scratch)?;
        }
        Ok(host)
    }

    /// Starts `command` (sh -c) in the namespace and waits for its first
    /// line of output on stdout or stderr.
    fn start(&mut self, command: &str, scratch: &Path) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), "sh", "-c"])
            .arg(format!("exec 2>&1; {command}"))
            .env("CNICT_SCRATCH", scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the host daemon {command:?}: {e}"))?;
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next());
            // Keep reading, so the daemon never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(READY);
        self.daemons.push(child);
        match first {
            Ok(Some(Ok(_))) => Ok(()),
            _ => Err(format!(
                "the host daemon {command:?} printed nothing within {} s, or exited",
                READY.as_secs()
            )),
        }
    }
}

impl Host {
    /// What runs in the namespace that is not a `--host-daemon` (or one
    /// of its children): after the DEL of every attachment, a daemon the
    /// plugin left. Each with its command line.
    pub fn leftovers(&self) -> Vec<(u32, String)> {
        let ours: Vec<u32> = self.daemons.iter().map(|c| c.id()).collect();
        crate::netns::processes(self.ns.name())
            .into_iter()
            .filter(|(pid, _)| {
                !ours.contains(pid)
                    && !crate::netns::process_group(*pid).is_some_and(|g| ours.contains(&g))
            })
            .collect()
    }
}

impl std::ops::Deref for Host {
    type Target = Netns;

    fn deref(&self) -> &Netns {
        &self.ns
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            cni::exec::kill_group(child.id());
            let _ = child.wait();
        }
    }
}
