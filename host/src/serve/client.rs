//! The CNI process's side: forward the call to a node's server if one
//! answers, else let the caller run it.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use super::wire::{self, Request, Response};
use crate::cni::env::{Command, Env};
use crate::envvars;

/// Forwards the call whose config is `stdin` and prints the server's
/// answer: `None` when no server answers (or the call cannot be forwarded
/// faithfully), and the caller runs the call itself.
pub fn forward(stdin: &[u8]) -> Option<ExitCode> {
    let socket = envvars::socket()?;
    // VERSION is answered at once by any process, and a missing or unknown
    // command is an error the process reports itself.
    match Env::command(&|k| std::env::var_os(k)) {
        Ok(Command::Version) | Err(_) => return None,
        Ok(_) => {}
    }
    // No server (no file, or a stale one that refuses): the common case on
    // a node without one, and quiet; nothing else is gathered before it.
    let mut stream = UnixStream::connect(&socket).ok()?;
    let request = request()?;
    let answer = wire::send(&mut stream, &request, stdin)
        .and_then(|()| wire::receive::<Response>(&mut stream));
    let (response, stdout) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            log::warn!(
                "the server on {} did not answer the call ({e}); running it here",
                socket.display()
            );
            return None;
        }
    };
    let mut err = std::io::stderr().lock();
    for line in &response.stderr {
        let _ = writeln!(err, "{line}");
    }
    let _ = std::io::stdout().lock().write_all(&stdout);
    Some(ExitCode::from(response.status))
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
    Some(Request { env, cwd })
}
