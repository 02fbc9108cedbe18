//! The `WASM_IPAM_*` environment variables: every one the host reads is
//! named and read here, and listed in [`VARIABLES`], which is the table in
//! README.md (a test keeps the two equal).
//!
//! A runtime sets none of them. They exist for tests (a fixed clock, a fake
//! reboot, a crash at a chosen point), for `simulate`, for the benchmark's
//! stage breakdown, and for a person debugging a policy. The CNI variables
//! themselves (`CNI_COMMAND` and the rest) belong to the protocol crate's
//! `env` module, not here.
//!
//! Most are read through a lookup function rather than the process
//! environment, so that in-process tests and the tools can give a call its
//! own values; the three that matter to a whole process (the crash point,
//! debug logging and the serve socket) are read from it directly, except
//! that `wasm-ipam serve` gives each call it serves its client's crash point
//! and debug setting.

use std::cell::Cell;
use std::ffi::OsString;
use std::path::PathBuf;

use crate::cni::CniError;
use crate::crash;

/// What every variable of ours starts with.
pub const PREFIX: &str = "WASM_IPAM_";
/// Fixes the clock policies see, in seconds since the Unix epoch.
pub const NOW: &str = "WASM_IPAM_NOW";
/// Fixes the boot id, for tests that fake a reboot.
pub const BOOT_ID: &str = "WASM_IPAM_BOOT_ID";
/// Prints each stage's time on stderr.
pub const TIMINGS: &str = "WASM_IPAM_TIMINGS";
/// Shows the policies' debug-level log lines.
pub const DEBUG: &str = "WASM_IPAM_DEBUG";
/// Print a successful call's log lines too.
pub const LOG: &str = "WASM_IPAM_LOG";
/// Kills the process at a chosen point of a call (the crash tests).
pub const TEST_CRASH_AT: &str = "WASM_IPAM_TEST_CRASH_AT";
/// Where the CNI binary looks for a node's `wasm-ipam serve`.
pub const SOCKET: &str = "WASM_IPAM_SOCKET";
/// Where `wasm-ipam serve` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/wasm-ipam/wasm-ipam.sock";

/// One variable, as the README's table shows it.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub value: &'static str,
    pub effect: &'static str,
}

/// Every variable the host reads.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: NOW,
        value: "seconds since the epoch",
        effect: "the clock the policies see (holds, cooldowns, lease times); for tests and `simulate`",
    },
    Variable {
        name: BOOT_ID,
        value: "any text",
        effect: "this boot's id instead of the kernel's, so a test can fake a reboot",
    },
    Variable {
        name: TIMINGS,
        value: "anything",
        effect: "print each stage's time on stderr as `wasm-ipam: timings [...]`, which the benchmark's breakdown reads",
    },
    Variable {
        name: DEBUG,
        value: "anything",
        effect: "show the policies' `debug` log lines, which are dropped otherwise",
    },
    Variable {
        name: LOG,
        value: "anything",
        effect: "print a call's log lines on stderr when it succeeds too; by default only a failed call's are (as are they with `WASM_IPAM_DEBUG` or `WASM_IPAM_TIMINGS`)",
    },
    Variable {
        name: TEST_CRASH_AT,
        value: "`call:N`, `commit`, `after-commit`, `after-release`",
        effect: "kill the process with SIGKILL at that point of a call (see `crash.rs`); only the crash tests set it",
    },
    Variable {
        name: SOCKET,
        value: "a path, or empty",
        effect: "the socket of the node's `wasm-ipam serve` that CNI calls are forwarded to (default `/run/wasm-ipam/wasm-ipam.sock`); empty: run every call in its own process",
    },
];

/// The fixed clock, when [`NOW`] is set.
pub fn now(lookup: &dyn Fn(&str) -> Option<OsString>) -> Result<Option<u64>, CniError> {
    lookup(NOW)
        .map(|v| {
            v.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                CniError::InvalidEnvironment(format!(
                    "{NOW} must be seconds since the epoch, not {v:?}"
                ))
            })
        })
        .transpose()
}

/// The boot id [`BOOT_ID`] sets, if it sets one.
pub fn boot_id(lookup: &dyn Fn(&str) -> Option<OsString>) -> Option<String> {
    lookup(BOOT_ID).map(|v| v.to_string_lossy().into_owned())
}

/// Whether [`TIMINGS`] asks for the stage times.
pub fn timings(lookup: &dyn Fn(&str) -> Option<OsString>) -> bool {
    lookup(TIMINGS).is_some()
}

/// Whether a successful call's log lines are printed: [`LOG`], [`DEBUG`]
/// or [`TIMINGS`] is set.
pub fn logging() -> bool {
    [LOG, DEBUG, TIMINGS]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Whether [`DEBUG`] asks for the policies' debug lines.
pub fn debug() -> bool {
    std::env::var_os(DEBUG).is_some()
}

thread_local! {
    /// In `wasm-ipam serve`, the crash point of the call this thread
    /// serves, from its client's environment rather than the server's.
    static CALL_CRASH_POINT: Cell<Option<Option<crash::Point>>> = const { Cell::new(None) };
}

/// The crash point [`TEST_CRASH_AT`] names, if it names one.
pub fn crash_point() -> Option<crash::Point> {
    CALL_CRASH_POINT
        .get()
        .unwrap_or_else(|| crash::Point::parse(&std::env::var(TEST_CRASH_AT).ok()?))
}

/// Runs `f` with the crash point that `lookup`, a served call's own
/// environment, names.
pub fn with_call_crash_point<T>(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    f: impl FnOnce() -> T,
) -> T {
    let point = lookup(TEST_CRASH_AT).and_then(|v| crash::Point::parse(v.to_str()?));
    CALL_CRASH_POINT.set(Some(point));
    let value = f();
    CALL_CRASH_POINT.set(None);
    value
}

/// The socket of a node's `wasm-ipam serve`: [`SOCKET`] when set (empty:
/// none), else [`DEFAULT_SOCKET`].
pub fn socket() -> Option<PathBuf> {
    match std::env::var_os(SOCKET) {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(PathBuf::from(DEFAULT_SOCKET)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_that_is_not_a_number_is_named() {
        let bad = |k: &str| (k == NOW).then(|| OsString::from("yesterday"));
        let err = now(&bad).unwrap_err();
        assert_eq!(err.code(), 4);
        assert!(err.to_string().contains("WASM_IPAM_NOW"), "{err}");
        assert!(err.to_string().contains("yesterday"), "{err}");
        let good = |k: &str| (k == NOW).then(|| OsString::from("1700000000"));
        assert_eq!(now(&good).unwrap(), Some(1_700_000_000));
        assert_eq!(now(&|_| None).unwrap(), None);
    }

    /// The rows of README.md's table, as this module would write them.
    fn rows() -> Vec<String> {
        VARIABLES
            .iter()
            .map(|v| format!("| `{}` | {} | {} |", v.name, v.value, v.effect))
            .collect()
    }

    #[test]
    fn the_readme_shows_this_table() {
        let readme = include_str!("../../README.md");
        let shown: Vec<&str> = readme
            .lines()
            .filter(|l| l.starts_with("| `WASM_IPAM_"))
            .collect();
        assert_eq!(shown, rows(), "README.md's table of WASM_IPAM_* variables");
    }

    /// No other file of the host names a variable: they are read here.
    #[test]
    fn no_other_module_reads_a_wasm_ipam_variable() {
        fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("envvars.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if text.contains("\"WASM_IPAM_") {
                        found.push(path.display().to_string());
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(found.is_empty(), "WASM_IPAM_ variables named in {found:?}");
        for name in [NOW, BOOT_ID, TIMINGS, DEBUG, TEST_CRASH_AT, SOCKET] {
            assert!(name.starts_with(PREFIX), "{name}");
            assert!(VARIABLES.iter().any(|v| v.name == name), "{name}");
        }
    }
}
