//! What the host says on stderr, through one facade: the `log` crate's
//! macros.
//!
//! A CNI plugin's stdout is the protocol (one result or error object), so
//! everything else goes to stderr, which runtimes keep in their own logs
//! (containerd and CRI-O at debug level). Every line starts with
//! `wasm-ipam: `, so it can be found among the other plugins' output.
//!
//! `log` is the facade wasmtime and Cranelift already log through, so it
//! adds nothing to the binary. The logger prints only the host's own
//! records (their target starts with `wasm_ipam`), never the libraries':
//! Cranelift logs at debug and trace while it compiles, and a CNI call must
//! not print that. A policy's own log lines come here too (see
//! `sandbox/state.rs`); their `debug` level shows only with
//! `WASM_IPAM_DEBUG` (see [`crate::envvars`]).
//!
//! The binary installs the logger first thing ([`init`]). Code that links
//! the library (tests, the benchmark) and installs none prints nothing.

use std::cell::RefCell;
use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

/// The lines of the call this thread serves, in `wasm-ipam serve`: they go
/// back to the call's own client, whose stderr the runtime logs, not to
/// the server's.
struct Capture {
    lines: Vec<String>,
    debug: bool,
}

thread_local! {
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// Keeps `line`, already formatted (a served call's line, from its
/// server), as this thread's own; prints it when nothing is kept.
pub fn relay(line: &str) {
    let kept = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(capture) => {
            capture.lines.push(line.to_string());
            true
        }
        None => false,
    });
    if !kept {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

impl Log for Stderr {
    fn enabled(&self, meta: &Metadata) -> bool {
        meta.target().starts_with("wasm_ipam") && shows(meta.level())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A closed stderr is no reason to fail a CNI call.
        relay(&format!("wasm-ipam: {}", record.args()));
    }

    fn flush(&self) {}
}

/// Runs `f` with this thread's log lines kept instead of printed, `debug`
/// lines included only when `debug`; returns them with `f`'s value.
pub fn captured<T>(debug: bool, f: impl FnOnce() -> T) -> (T, Vec<String>) {
    CAPTURE.with(|c| {
        *c.borrow_mut() = Some(Capture {
            lines: Vec::new(),
            debug,
        })
    });
    let value = f();
    let lines = CAPTURE.with(|c| c.borrow_mut().take().map(|c| c.lines).unwrap_or_default());
    (value, lines)
}

/// Prints a CNI call's log lines on stderr: always when it failed, and
/// when it succeeded only if logging is on ([`crate::envvars::logging`]).
///
/// A call that succeeds says nothing by default. Its lines are not worth a
/// write to a pipe whose reader may be gone: an interface plugin shares
/// its stderr with the IPAM plugin it runs, and when the runtime dies
/// mid-ADD, the Go plugin is killed by SIGPIPE at its next write, after
/// the address was taken and before its own setup is done. And a
/// runtime's log is no place for "installed the precompiled policy" on
/// every node's first pod.
pub fn emit(lines: &[String], succeeded: bool) {
    if lines.is_empty() || (succeeded && !crate::envvars::logging()) {
        return;
    }
    let mut err = std::io::stderr().lock();
    for line in lines {
        // A closed stderr is no reason to fail a CNI call.
        if writeln!(err, "{line}").is_err() {
            return;
        }
    }
}

/// Installs the logger: `info` and above, `debug` too with
/// `WASM_IPAM_DEBUG`.
pub fn init() {
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(if crate::envvars::debug() {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    }
}

/// Installs the logger for `wasm-ipam serve`, which decides for each call
/// whether its `debug` lines show (see [`captured`]).
pub fn init_server() {
    init();
    log::set_max_level(LevelFilter::Debug);
}

/// Whether a line of `level` would be printed: false until [`init`].
pub fn shows(level: Level) -> bool {
    let call_debug = CAPTURE.with(|c| c.borrow().as_ref().map(|c| c.debug));
    level <= log::max_level() && (level < Level::Debug || call_debug.unwrap_or(true))
}

/// The innermost cause of an error, in words: "Connection refused (os error
/// 111)", not the "transport error" a client library wraps it in, whose
/// own `Display` says nothing an operator can act on.
pub fn innermost(mut err: &(dyn std::error::Error + 'static)) -> String {
    while let Some(next) = err.source() {
        err = next;
    }
    err.to_string()
}
