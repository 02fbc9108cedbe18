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
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub elapsed: Duration,
    /// The call ran past its limit and was killed.
    pub timed_out: bool,
    /// The call printed more than [`MAX_OUTPUT`] on stdout or stderr and
    /// was killed; what it printed is cut there.
    pub flooded: bool,
    /// Which plugin answered, when the call ran a chain: "plugin 2 of 3
    /// (firewall)".
    pub origin: Option<String>,
}

/// The most a call may print on stdout or on stderr. A result is a few
/// kilobytes and a Go panic's stack dump a few hundred; more is a plugin
/// out of control, which must not fill the caller's memory.
pub const MAX_OUTPUT: usize = 4 << 20;

/// What a crash's report keeps of stderr: its last lines.
const TAIL_LINES: usize = 12;
const TAIL_CHARS: usize = 2000;

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// An outcome for a plugin that could not be started at all.
    pub fn not_run(why: impl std::fmt::Display) -> Outcome {
        Outcome {
            stderr: format!("could not run the plugin: {why}"),
            ..Outcome::default()
        }
    }

    /// How the process ended, for messages: its exit status or the signal
    /// that ended it, the limit it was killed at, and, for a crash, what
    /// the crash was.
    pub fn status(&self) -> String {
        let ended = if self.timed_out {
            format!(
                "killed after {} ms (the time limit)",
                self.elapsed.as_millis()
            )
        } else if self.flooded {
            format!("killed for printing more than {MAX_OUTPUT} bytes")
        } else {
            match (self.code, self.signal) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(s)) => format!("killed by signal {s} ({})", signal_name(s)),
                (None, None) => "never started".into(),
            }
        };
        match self.crash() {
            Some(what) => format!("{ended}: a crash ({what})"),
            None => ended,
        }
    }

    /// What makes this outcome a crash rather than an answer, if it is
    /// one: a signal the caller did not send, a Go or Rust panic, or a
    /// failure with nothing on stdout (an answer is an error object there).
    pub fn crash(&self) -> Option<String> {
        if self.timed_out || self.flooded {
            return None;
        }
        if let Some(s) = self.signal {
            return Some(format!("signal {}", signal_name(s)));
        }
        let panic_line = |marker: &str| {
            self.stderr
                .lines()
                .find(|l| l.contains(marker))
                .map(|l| l.trim().chars().take(200).collect::<String>())
        };
        if let Some(line) = panic_line("panic: ") {
            return Some(format!("a Go panic: {line}"));
        }
        if let Some(line) = panic_line("panicked at") {
            return Some(format!("a Rust panic: {line}"));
        }
        match self.code {
            Some(c) if c != 0 && self.stdout.trim().is_empty() => {
                Some(format!("exit {c} with nothing on stdout"))
            }
            _ => None,
        }
    }

    /// The last lines of stderr, for messages.
    pub fn stderr_tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.trim_end().lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        let chars = tail.chars().count();
        if chars > TAIL_CHARS {
            let kept: String = tail.chars().skip(chars - TAIL_CHARS).collect();
            format!("...{kept}")
        } else {
            tail
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

/// A signal's name, for messages.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "a signal",
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
///
/// Whatever the plugin does, this returns: past the limit the plugin is
/// killed with everything it started; past [`MAX_OUTPUT`] on either stream
/// it is killed too; and once it has exited, a daemon it left holding its
/// stdout or stderr open is not waited for.
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
    let mut child = spawn_retrying(&mut cmd)?;
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
    let stdout = Capture::start(child.stdout.take().expect("stdout is piped"), pid);
    let stderr = Capture::start(child.stderr.take().expect("stderr is piped"), pid);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let mut timed_out = false;
    let status = match spawn.timeout {
        Some(limit) => match rx.recv_timeout(limit) {
            Ok(status) => status,
            Err(_) => {
                timed_out = true;
                kill_group(pid);
                rx.recv().map_err(std::io::Error::other)?
            }
        },
        None => rx.recv().map_err(std::io::Error::other)?,
    }?;
    RUNNING.lock().expect("running calls").remove(&pid);
    // The writer may be stuck on a pipe nobody reads, held by a daemon the
    // plugin left: it is not waited for.
    drop(writer);
    let (out, out_flooded) = stdout.finish();
    let (err, err_flooded) = stderr.finish();
    use std::os::unix::process::ExitStatusExt;
    Ok(Outcome {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        code: status.code(),
        signal: status.signal(),
        elapsed: start.elapsed(),
        timed_out,
        flooded: out_flooded || err_flooded,
        origin: None,
    })
}

/// Spawns, trying again while the file is busy: a plugin just written
/// (a test's script, a spy) can still be open for writing in a child
/// another thread forked meanwhile, until that child execs.
fn spawn_retrying(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// One output stream, read on a thread of its own into a bounded buffer.
struct Capture {
    buf: std::sync::Arc<Mutex<(Vec<u8>, bool)>>,
    done: std::sync::mpsc::Receiver<()>,
}

/// How long the streams are read after the plugin exited: what it printed
/// is in the pipe by then, and only a process it left behind (a daemon
/// holding the pipe) could make the wait longer.
const DRAIN: Duration = Duration::from_millis(500);

impl Capture {
    fn start(mut pipe: impl std::io::Read + Send + 'static, pid: u32) -> Capture {
        let buf = std::sync::Arc::new(Mutex::new((Vec::new(), false)));
        let (tx, done) = std::sync::mpsc::channel();
        let shared = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut b = shared.lock().expect("capture");
                        let room = MAX_OUTPUT.saturating_sub(b.0.len());
                        b.0.extend_from_slice(&chunk[..n.min(room)]);
                        if n > room && !b.1 {
                            b.1 = true;
                            kill_group(pid);
                        }
                    }
                }
            }
            let _ = tx.send(());
        });
        Capture { buf, done }
    }

    /// What was read, and whether the stream was cut at [`MAX_OUTPUT`].
    fn finish(self) -> (Vec<u8>, bool) {
        let _ = self.done.recv_timeout(DRAIN);
        let b = self.buf.lock().expect("capture");
        (b.0.clone(), b.1)
    }
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
    fn a_flood_a_crash_and_a_daemon_holding_the_pipe_end_the_call() {
        let spawn = Spawn {
            timeout: Some(Duration::from_secs(20)),
            netns: None,
        };
        let (_dir, flood) = plugin("yes");
        let out = run_with(&flood, &Call::new("VERSION"), b"", &spawn).unwrap();
        assert!(out.flooded && !out.timed_out, "{}", out.status());
        assert_eq!(out.stdout.len(), MAX_OUTPUT);
        let (_dir, crash) = plugin("echo 'panic: runtime error: index out of range' >&2; exit 2");
        let out = run_with(&crash, &Call::new("ADD"), b"", &spawn).unwrap();
        assert_eq!(
            out.status(),
            "exit 2: a crash (a Go panic: panic: runtime error: index out of range)"
        );
        let (_dir, segv) = plugin("kill -SEGV $$");
        let out = run_with(&segv, &Call::new("ADD"), b"", &spawn).unwrap();
        assert!(
            out.status().contains("signal 11 (SIGSEGV)"),
            "{}",
            out.status()
        );
        // A daemon that keeps stdout open, in a session of its own so that
        // killing the group does not reach it: the call still ends.
        let (_dir, daemon) = plugin("setsid sleep 2 & echo '{}'");
        let out = run_with(&daemon, &Call::new("ADD"), b"", &spawn).unwrap();
        assert!(
            out.ok() && out.elapsed < Duration::from_secs(10),
            "{}",
            out.status()
        );
        assert_eq!(out.stdout.trim(), "{}");
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
