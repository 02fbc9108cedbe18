//! One CNI call in a fresh process, timed, with the child's own peak RSS
//! (from wait4, which std's Child does not expose). The call itself is the
//! protocol crate's [`Call`], as everywhere else; only the reaping differs
//! from `cni::exec::run`, which waits through std.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cni::exec::Call;

pub struct Run {
    pub wall: Duration,
    pub max_rss_kib: u64,
    pub ok: bool,
    pub stderr: String,
    /// Only with [`run_capturing`]; the timed runs send stdout to /dev/null.
    pub stdout: String,
}

/// [`run`], keeping what the call printed on stdout (its result or error).
pub fn run_capturing(bin: &Path, call: &Call, stdin: &[u8]) -> Run {
    spawn(bin, call, stdin, true)
}

// The child is reaped by wait4 below, which std's Child::wait cannot
// replace: only wait4 returns the child's own peak RSS.
pub fn run(bin: &Path, call: &Call, stdin: &[u8]) -> Run {
    spawn(bin, call, stdin, false)
}

#[allow(clippy::zombie_processes)]
fn spawn(bin: &Path, call: &Call, stdin: &[u8], capture: bool) -> Run {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .envs(call.vars())
        .stdin(Stdio::piped())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the plugin");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin)
        .expect("writing stdin");
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let reader = read(child.stderr.take().map(|p| Box::new(p) as _));
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own child, not yet reaped (we never call
    // Child::wait), and both pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert!(pid > 0, "wait4 failed");
    Run {
        wall,
        max_rss_kib: usage.ru_maxrss as u64,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        stderr: reader.join().unwrap_or_default(),
        stdout: stdout.join().unwrap_or_default(),
    }
}
