//! The CNI process's side: forward the call to a node's server if one
//! answers in time, else let the caller run it.
//!
//! The server is only an accelerator, so it must never make a call worse
//! than running it here. Every wait is bounded:
//!
//! - connecting does not wait: a server whose backlog is full (stopped, or
//!   swamped) refuses at once, and the call runs here; nor is a call told
//!   to a listener of another user than this process's;
//! - the server acknowledges a request as soon as it reads it; without
//!   that within `ACK_WAIT` (a stopped server, one running as many calls
//!   as it takes), the call runs here;
//! - the answer is waited for until `ANSWER_WAIT` has passed, and the
//!   server never commits a call past that deadline, nor once this process
//!   has hung up (`guard`), so running the call here after giving up is
//!   safe: the server's attempt left nothing behind.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::guard::now_ms;
use super::wire::{self, ACK, Request, Response};
use crate::cni::env::{Command, Env};
use crate::envvars;

/// How long a server has to acknowledge a request. A running server does
/// in well under a millisecond (it reads the request and writes a byte);
/// a second is long enough for a loaded node, and short enough that a
/// stopped server costs a pod one second.
const ACK_WAIT: Duration = Duration::from_secs(1);

/// How long an acknowledged call may take before this process gives up on
/// it and runs it itself. It must exceed what a served call can rightly
/// take, or a slow call would be run twice over: SQLite's busy wait (30 s)
/// plus the policy's own deadline (2 s by default) and a margin.
const ANSWER_WAIT: Duration = Duration::from_secs(45);

/// What a server answered: the exit status, the call's log lines and its
/// stdout.
pub struct Served {
    pub status: u8,
    pub log: Vec<String>,
    pub stdout: Vec<u8>,
}

/// Forwards the call whose config is `stdin`: `None` when no server takes
/// it in time (or the call cannot be forwarded faithfully), and the caller
/// runs the call itself.
pub fn forward(stdin: &[u8]) -> Option<Served> {
    let socket = envvars::socket()?;
    // VERSION is answered at once by any process, and a missing or unknown
    // command is an error the process reports itself.
    match Env::command(&|k| std::env::var_os(k)) {
        Ok(Command::Version) | Err(_) => return None,
        Ok(_) => {}
    }
    // No server (no file, or a stale one that refuses): the common case on
    // a node without one, and quiet; nothing else is gathered before it.
    let mut stream = connect_now(&socket)?;
    let mut request = request()?;
    let start = now_ms();
    request.ack_by_ms = start + ACK_WAIT.as_millis() as u64;
    request.deadline_ms = start + ANSWER_WAIT.as_millis() as u64;
    match exchange(&mut stream, &request, stdin) {
        Ok((response, stdout)) => Some(Served {
            status: response.status,
            log: response.stderr,
            stdout,
        }),
        Err(e) => {
            log::warn!(
                "the server on {} did not answer the call ({e}); running it here",
                socket.display()
            );
            None
        }
    }
}

/// Connects without waiting: `None` when nothing listens, or the listener
/// has no room in its backlog (a server that is stopped or swamped).
fn connect_now(socket: &Path) -> Option<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .ok()?;
    let addr = SocketAddrUnix::new(socket).ok()?;
    rustix::net::connect(&fd, &addr).ok()?;
    // Only a server of this process's own user is told the call, as the
    // server answers only clients of its user: anyone else listening on
    // the path is not ours to trust.
    let server = rustix::net::sockopt::socket_peercred(&fd).ok()?;
    if server.uid != rustix::process::geteuid() {
        log::warn!(
            "{} is served by user {}, not by this process's user: running the call here",
            socket.display(),
            server.uid.as_raw()
        );
        return None;
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false).ok()?;
    Some(stream)
}

/// Sends the request and waits, each step bounded, for the acknowledgement
/// and then the answer.
fn exchange(
    stream: &mut UnixStream,
    request: &Request,
    stdin: &[u8],
) -> std::io::Result<(Response, Vec<u8>)> {
    let until = |ms: u64| Duration::from_millis(ms.saturating_sub(now_ms()).max(1));
    stream.set_write_timeout(Some(until(request.ack_by_ms)))?;
    wire::send(stream, request, stdin)?;
    stream.set_read_timeout(Some(until(request.ack_by_ms)))?;
    let mut first = [0u8; 1];
    std::io::Read::read_exact(stream, &mut first)
        .map_err(|e| std::io::Error::new(e.kind(), format!("no acknowledgement: {e}")))?;
    stream.set_read_timeout(Some(until(request.deadline_ms)))?;
    if first[0] == ACK {
        return wire::receive::<Response>(stream);
    }
    // A server of an older build, still running while the binary was
    // upgraded, answers without acknowledging: the byte read is the first
    // of its answer's length. Its answer is taken, as the call it ran is
    // committed whatever this process does.
    wire::receive::<Response>(&mut std::io::Read::chain(&first[..], stream))
}

/// What the server needs of this process: the variables a call reads and
/// the working directory. `None` when one is not UTF-8, which JSON cannot
/// carry exactly: such a call runs here.
fn request() -> Option<Request> {
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if (k.starts_with("CNI_") || k.starts_with(envvars::PREFIX)) && k != envvars::SOCKET {
            env.push((k.to_string(), v.into_string().ok()?));
        }
    }
    let cwd = std::env::current_dir()
        .ok()?
        .into_os_string()
        .into_string()
        .ok()?;
    Some(Request {
        env,
        cwd,
        ack_by_ms: 0,
        deadline_ms: 0,
    })
}
