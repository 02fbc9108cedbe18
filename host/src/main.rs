//! `wasm-ipam`: with no arguments, a CNI IPAM plugin (the runtime's way of
//! calling it); with arguments, a command-line tool for people.

use std::io::Read;
use std::process::ExitCode;

use wasm_ipam::invoke;

/// The largest network config we read; a runtime never sends more than a few
/// kilobytes.
const MAX_STDIN: u64 = 16 << 20;

fn main() -> ExitCode {
    let start = std::time::Instant::now();
    wasm_ipam::diag::init();
    if std::env::args_os().len() > 1 {
        return wasm_ipam::cli::main();
    }
    let mut stdin = Vec::new();
    let read = std::io::stdin().take(MAX_STDIN + 1).read_to_end(&mut stdin);
    let outcome = match read {
        Err(e) => Err(invoke::Failure {
            error: wasm_ipam::cni::CniError::Io(format!(
                "cannot read the network config from stdin: {e}"
            )),
            cni_version: wasm_ipam::cni::version::LATEST.into(),
        }),
        Ok(_) if stdin.len() as u64 > MAX_STDIN => Err(invoke::Failure {
            error: wasm_ipam::cni::CniError::Decoding(format!(
                "the network config on stdin is larger than {MAX_STDIN} bytes"
            )),
            cni_version: wasm_ipam::cni::version::LATEST.into(),
        }),
        Ok(_) => {
            // A node's `wasm-ipam serve` runs the call when one answers.
            if let Some(status) = wasm_ipam::serve::client::forward(&stdin) {
                return status;
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
    print!("{stdout}");
    ExitCode::from(status)
}
