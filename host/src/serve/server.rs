//! The server's side: accept forwarded calls and run each on its own
//! thread, through the same code a one-shot process runs.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use std::io::Write;

use super::guard;
use super::wire::{self, Request, Response};
use crate::{diag, envvars, invoke};

/// How long a stopping server waits for the calls it is running.
const DRAIN: Duration = Duration::from_secs(10);

/// Calls run at once, at most; more are turned away, and their processes
/// run them themselves. Writers of one store take turns anyway (SQLite's
/// lock), and each call holds a policy instance's memory, so a burst of
/// pods must not become hundreds of threads.
const MAX_CALLS: usize = 32;

/// The calls under way.
#[derive(Default)]
struct Running {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Running {
    /// Counts one more call if fewer than `limit` run; false otherwise.
    fn try_enter(&self, limit: usize) -> bool {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        if *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.changed.notify_all();
    }

    /// Waits, at most `limit`, for every call to end.
    fn drain(&self, limit: Duration) {
        let n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(n, limit, |n| *n > 0)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// Leaves [`Running`] when dropped.
struct Leave<'a>(&'a Running);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Serves calls on `socket` until SIGINT or SIGTERM, then removes it and
/// waits for the calls under way.
pub fn run(
    socket: &Path,
    reconcile: Option<super::reconciler::Timer>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    super::policies::keep_loaded();
    super::stores::keep_open();
    diag::init_server();
    let listener = bind(socket)?;
    // The node's DHCP leases are listed beside the socket; renew them.
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::dhcp::registry::use_dir(dir);
    }
    super::renewals::start();
    if let Some(timer) = reconcile {
        super::reconciler::start(timer);
    }
    let running = Arc::new(Running::default());
    {
        let (socket, running) = (socket.to_path_buf(), running.clone());
        ctrlc::set_handler(move || stop(&socket, &running))
            .context("cannot handle SIGINT and SIGTERM")?;
    }
    writeln!(out, "serving CNI calls on {}", socket.display())?;
    out.flush()?;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept on {}: {e}", socket.display());
                continue;
            }
        };
        // At capacity, the connection is closed unanswered: its client runs
        // the call itself at once, rather than every network's calls
        // waiting behind one whose calls are stuck.
        if !running.try_enter(MAX_CALLS) {
            log::debug!("{MAX_CALLS} calls running; a new one runs in its own process");
            continue;
        }
        let running = running.clone();
        std::thread::spawn(move || {
            // Counted out even if the call panics (its client then runs
            // the call itself): a lost count would shrink the server.
            let _left = Leave(&running);
            if let Err(e) = serve_one(stream) {
                log::warn!("a forwarded call: {e:#}");
            }
        });
    }
    Ok(())
}

/// The socket, mode 0600 in a folder this user alone can enter, replacing
/// a stale one but never a live server's.
fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            bail!("a server already answers on {}", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("cannot remove the stale socket {}", socket.display()))?;
    }
    // No moment where the socket is open to others: it is created under a
    // umask that leaves only the owner's bits.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let listener = UnixListener::bind(socket);
    rustix::process::umask(old);
    let listener = listener.with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// SIGINT or SIGTERM: no new calls (the socket goes, so new CNI processes
/// run their calls themselves), the running ones finish, then exit.
fn stop(socket: &PathBuf, running: &Running) {
    let _ = std::fs::remove_file(socket);
    running.drain(DRAIN);
    log::info!("stopped serving on {}", socket.display());
    std::process::exit(0);
}

/// One forwarded call. An error here (a peer that is not us, a request
/// that does not parse) closes the connection unanswered, and the client
/// runs the call itself.
fn serve_one(mut stream: UnixStream) -> anyhow::Result<()> {
    let peer = rustix::net::sockopt::socket_peercred(&stream)?;
    if peer.uid != rustix::process::geteuid() {
        bail!(
            "refused a call from user {}: only this server's user may forward calls",
            peer.uid.as_raw()
        );
    }
    let (request, stdin) = wire::receive::<Request>(&mut stream)?;
    // Its client gave up waiting for the acknowledgement (this server was
    // stopped, or slow): it runs the call itself, so this one must not.
    if guard::now_ms() > request.ack_by_ms {
        bail!("a request read after its client stopped waiting; dropped");
    }
    stream.write_all(&[wire::ACK])?;
    // This thread gets its own working directory, the client's: a
    // relative path in the config means what it means to a one-shot call.
    // SAFETY: CLONE_FS unshares only the cwd, root and umask; the file
    // descriptor table stays shared.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }?;
    rustix::process::chdir(request.cwd.as_str())
        .with_context(|| format!("cannot enter the client's directory {}", request.cwd))?;
    let env: HashMap<String, OsString> = request
        .env
        .into_iter()
        .map(|(k, v)| (k, OsString::from(v)))
        .collect();
    let lookup = |k: &str| env.get(k).cloned();
    let debug = env.contains_key(envvars::DEBUG);
    let peer = std::os::fd::OwnedFd::from(stream.try_clone()?);
    let (outcome, stderr) = diag::captured(debug, || {
        log::debug!("served by wasm-ipam serve (pid {})", std::process::id());
        guard::with(request.deadline_ms, peer, || {
            envvars::with_call_crash_point(&lookup, || {
                invoke::run_timed(&lookup, &stdin, Instant::now(), invoke::Teardown::Full)
            })
        })
    });
    let (stdout, status) = invoke::output(outcome);
    let response = Response { status, stderr };
    wire::send(&mut stream, &response, stdout.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_past_the_limit_is_turned_away() {
        let running = Arc::new(Running::default());
        // A call that panics is counted out too.
        assert!(running.try_enter(1));
        let panicked = {
            let running = running.clone();
            std::thread::spawn(move || {
                let _left = Leave(&running);
                panic!("a call's bug");
            })
        };
        assert!(panicked.join().is_err());
        assert_eq!(*running.count.lock().unwrap(), 0);
        assert!(running.try_enter(1));
        assert!(!running.try_enter(1), "entered past the limit");
        running.leave();
        assert!(running.try_enter(1), "room again");
        running.leave();
        running.drain(Duration::from_secs(1));
        assert_eq!(*running.count.lock().unwrap(), 0);
    }
}
