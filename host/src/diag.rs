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

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, meta: &Metadata) -> bool {
        meta.target().starts_with("wasm_ipam") && meta.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            // A closed stderr is no reason to fail a CNI call.
            let _ = writeln!(std::io::stderr().lock(), "wasm-ipam: {}", record.args());
        }
    }

    fn flush(&self) {}
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

/// Whether a line of `level` would be printed: false until [`init`].
pub fn shows(level: Level) -> bool {
    level <= log::max_level()
}
