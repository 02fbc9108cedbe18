//! `wasm-ipam`: with no arguments, a CNI IPAM plugin (the runtime's way of
//! calling it); with arguments, a command-line tool for people.

use std::io::{Read, Write};
use std::process::ExitCode;

use wasm_ipam::cni::CniError;
use wasm_ipam::cni::version::LATEST;
use wasm_ipam::{diag, envvars, invoke, serve};

/// The largest network config we read; a runtime never sends more than a few
/// kilobytes.
const MAX_STDIN: u64 = 16 << 20;

fn main() -> ExitCode {
    let start = std::time::Instant::now();
    diag::init();
    if std::env::args_os().len() > 1 {
        return wasm_ipam::cli::main();
    }
    // The call's log lines are kept, and printed once its outcome is
    // known: a call that succeeds says nothing unless logging is on.
    let ((status, stdout), log) = diag::captured(envvars::debug(), || call(start));
    diag::emit(&log, status == 0);
    // A closed stdout (a runtime that gave up on the call) is no reason to
    // panic: there is no one left to tell.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&stdout).and_then(|()| out.flush());
    ExitCode::from(status)
}

/// One CNI call: its exit status and what goes on stdout. Log lines a
/// server sends back for a call it ran are logged here as this call's.
fn call(start: std::time::Instant) -> (u8, Vec<u8>) {
    let failure = |error| invoke::Failure {
        error,
        cni_version: LATEST.into(),
    };
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().take(MAX_STDIN + 1).read_to_end(&mut stdin) {
        Err(e) => Err(failure(CniError::Io(format!(
            "cannot read the network config from stdin: {e}"
        )))),
        Ok(_) if stdin.len() as u64 > MAX_STDIN => Err(failure(CniError::Decoding(format!(
            "the network config on stdin is larger than {MAX_STDIN} bytes"
        )))),
        Ok(_) => {
            // A node's `wasm-ipam serve` runs the call when one takes it.
            if let Some(served) = serve::client::forward(&stdin) {
                for line in &served.log {
                    diag::relay(line);
                }
                return (served.status, served.stdout);
            }
            invoke::run_timed(
                &|k| std::env::var_os(k),
                &stdin,
                start,
                invoke::Teardown::Exit,
            )
        }
    };
    let (stdout, status) = invoke::output(outcome);
    (status, stdout.into_bytes())
}
