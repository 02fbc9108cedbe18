//! Calling a CNI plugin the way a runtime does: a fresh process with the
//! `CNI_*` environment and the config on stdin. wasm-ipam's demo and tests,
//! cni-conformance and the benchmark all drive plugins through this, never
//! through a plugin's library.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One call's environment.
#[derive(Debug, Clone, Default)]
pub struct Call {
    pub command: String,
    pub container_id: Option<String>,
    pub ifname: Option<String>,
    pub netns: Option<String>,
    pub args: Option<String>,
    /// Further variables, such as `WASM_IPAM_NOW`.
    pub extra: Vec<(String, String)>,
}

impl Call {
    pub fn new(command: &str) -> Call {
        Call {
            command: command.into(),
            ..Call::default()
        }
    }

    /// ADD, DEL or CHECK for `container_id` on `eth0`, with a netns.
    pub fn attach(command: &str, container_id: &str) -> Call {
        Call {
            command: command.into(),
            container_id: Some(container_id.into()),
            ifname: Some("eth0".into()),
            netns: Some(format!("/var/run/netns/{container_id}")),
            ..Call::default()
        }
    }

    pub fn ifname(mut self, ifname: &str) -> Call {
        self.ifname = Some(ifname.into());
        self
    }

    pub fn args(mut self, args: &str) -> Call {
        self.args = Some(args.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Call {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// The variables, in the order a person would write them.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut v = vec![("CNI_COMMAND".to_string(), self.command.clone())];
        for (k, val) in [
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_NETNS", &self.netns),
            ("CNI_ARGS", &self.args),
        ] {
            if let Some(val) = val {
                v.push((k.to_string(), val.clone()));
            }
        }
        v.extend(self.extra.iter().cloned());
        v
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
    pub elapsed: Duration,
    /// The call ran past its limit and was killed.
    pub timed_out: bool,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// An outcome for a plugin that could not be started at all.
    pub fn not_run(why: impl std::fmt::Display) -> Outcome {
        Outcome {
            stdout: String::new(),
            stderr: format!("could not run the plugin: {why}"),
            code: None,
            elapsed: Duration::ZERO,
            timed_out: false,
        }
    }

    /// How the process ended, for messages.
    pub fn status(&self) -> String {
        match (self.code, self.timed_out) {
            (_, true) => format!(
                "killed after {} ms (the time limit)",
                self.elapsed.as_millis()
            ),
            (Some(c), _) => format!("exit {c}"),
            (None, _) => "no exit status (killed by a signal, or never started)".into(),
        }
    }

    /// stdout as JSON: `Null` when empty, an error when it is not JSON.
    pub fn parsed(&self) -> Result<serde_json::Value, String> {
        if self.stdout.trim().is_empty() {
            Ok(serde_json::Value::Null)
        } else {
            serde_json::from_str(&self.stdout)
                .map_err(|e| format!("stdout is not JSON ({e}): {:?}", self.stdout))
        }
    }

    /// stdout as JSON (`Null` when empty); panics when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        if self.stdout.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
        }
    }

    /// The CNI error code on stdout, if it is an error.
    pub fn error_code(&self) -> Option<u64> {
        (!self.ok()).then(|| self.json()["code"].as_u64()).flatten()
    }
}

/// Finds plugin `plugin_type` on a `CNI_PATH` value (folders joined with
/// `:`), the first folder first, as libcni and the Go skeleton's delegation
/// do.
pub fn find(cni_path: &std::ffi::OsStr, plugin_type: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(cni_path)
        .map(|d| d.join(plugin_type))
        .find(|p| p.is_file())
}

/// The process groups of the calls running now.
static RUNNING: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Kills every call still running, with what it started (on an interrupt).
pub fn kill_running() {
    let groups: Vec<u32> = RUNNING
        .lock()
        .map(|r| r.iter().copied().collect())
        .unwrap_or_default();
    for pid in groups {
        kill_group(pid);
    }
}

/// SIGKILL to the process group led by `pid`.
pub fn kill_group(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
    }
}

/// How to spawn a plugin, beyond its call.
#[derive(Debug, Clone, Default)]
pub struct Spawn<'a> {
    /// Kill the call (and everything it started) after this long.
    pub timeout: Option<Duration>,
    /// Run it inside this network namespace (`ip netns exec`), as the host.
    pub netns: Option<&'a str>,
}

/// Runs `plugin` with a clean environment (only `PATH` is kept, as runtimes
/// do not pass theirs through either) plus `call`'s variables.
pub fn run(plugin: &Path, call: &Call, stdin: &[u8]) -> std::io::Result<Outcome> {
    run_with(plugin, call, stdin, &Spawn::default())
}

/// [`run`], with a time limit and a host namespace.
pub fn run_with(
    plugin: &Path,
    call: &Call,
    stdin: &[u8],
    spawn: &Spawn,
) -> std::io::Result<Outcome> {
    let start = Instant::now();
    let mut cmd = match spawn.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(plugin);
            c
        }
        None => Command::new(plugin),
    };
    cmd.env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH".to_string(), p)))
        .envs(call.vars())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a time-out kills the delegated plugins
        // it started too.
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    RUNNING.lock().expect("running calls").insert(pid);
    let mut input = child.stdin.take().expect("stdin is piped");
    let writer = {
        let stdin = stdin.to_vec();
        std::thread::spawn(move || {
            // A plugin may exit without reading (VERSION); that is not ours
            // to report.
            let _ = input.write_all(&stdin);
        })
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let mut timed_out = false;
    let out = match spawn.timeout {
        Some(limit) => match rx.recv_timeout(limit) {
            Ok(out) => out,
            Err(_) => {
                timed_out = true;
                kill_group(pid);
                rx.recv().map_err(std::io::Error::other)?
            }
        },
        None => rx.recv().map_err(std::io::Error::other)?,
    }?;
    RUNNING.lock().expect("running calls").remove(&pid);
    let _ = writer.join();
    Ok(Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
        elapsed: start.elapsed(),
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_takes_the_first_folder_that_has_the_plugin() {
        let dirs = tempfile::tempdir().unwrap();
        let (a, b) = (dirs.path().join("a"), dirs.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(b.join("bridge"), "").unwrap();
        std::fs::write(a.join("ptp"), "").unwrap();
        std::fs::write(b.join("ptp"), "").unwrap();
        // A folder of that name is not a plugin.
        std::fs::create_dir(a.join("bridge")).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find(&path, "ptp"), Some(a.join("ptp")));
        assert_eq!(find(&path, "bridge"), Some(b.join("bridge")));
        assert_eq!(find(&path, "macvlan"), None);
    }

    /// An executable script in a fresh folder, as a plugin.
    fn plugin(body: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_call_gets_its_variables_path_and_stdin_and_nothing_else() {
        let (_dir, path) = plugin("env | grep -E '^(CNI_|HOME=)' | sort; cat");
        let call = Call::attach("ADD", "c1").env("CNI_PATH", "/opt/cni/bin");
        let out = run(&path, &call, b"{\"cniVersion\":\"1.1.0\"}").unwrap();
        assert!(out.ok(), "{}", out.status());
        assert_eq!(
            out.stdout,
            "CNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth0\n\
             CNI_NETNS=/var/run/netns/c1\nCNI_PATH=/opt/cni/bin\n{\"cniVersion\":\"1.1.0\"}"
        );
    }

    #[test]
    fn a_call_past_its_limit_is_killed_with_what_it_started() {
        let (_dir, path) = plugin("sleep 30 & sleep 30");
        let spawn = Spawn {
            timeout: Some(Duration::from_millis(300)),
            netns: None,
        };
        let out = run_with(&path, &Call::new("VERSION"), b"", &spawn).unwrap();
        assert!(out.timed_out);
        assert!(!out.ok());
        assert!(out.status().starts_with("killed after"), "{}", out.status());
        assert!(out.elapsed < Duration::from_secs(20));
    }
}
