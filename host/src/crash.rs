//! Crash injection, for the crash tests only: a runtime never sets it.
//!
//! `WASM_IPAM_TEST_CRASH_AT` makes the host kill itself with SIGKILL, as a
//! node losing power or an OOM kill would, at one point of a call:
//!
//! - `call:N`: at the policy's N-th store call (get, put, delete or scan),
//!   before it runs; the tests stop an ADD at every store call in turn;
//! - `commit`: after the policy answered, just before the transaction
//!   commits;
//! - `after-commit`: just after the commit, before the result is printed.
//!
//! The tests (`host/tests/all/crash.rs`, and on etcd `etcd.rs`) then check
//! that the store holds all of the call or none of it, and opens.

/// The variable that names the crash point.
pub const ENV: &str = "WASM_IPAM_TEST_CRASH_AT";

/// Where a call is to be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// At the policy's N-th store call (from 1).
    StoreCall(u64),
    /// Just before the commit.
    Commit,
    /// Just after the commit.
    AfterCommit,
}

/// The crash point [`ENV`] names, if it names one.
pub fn point() -> Option<Point> {
    parse(&std::env::var(ENV).ok()?)
}

fn parse(text: &str) -> Option<Point> {
    match text {
        "commit" => Some(Point::Commit),
        "after-commit" => Some(Point::AfterCommit),
        other => other
            .strip_prefix("call:")?
            .parse()
            .ok()
            .map(Point::StoreCall),
    }
}

/// Ends the process at once with SIGKILL: no destructor, no rollback, no
/// flush runs.
pub fn now() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    unreachable!("SIGKILL does not return")
}

/// Kills the process if [`point`] is `at`.
pub fn at(at: Point) {
    if point() == Some(at) {
        now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_points_parse() {
        assert_eq!(parse("call:3"), Some(Point::StoreCall(3)));
        assert_eq!(parse("commit"), Some(Point::Commit));
        assert_eq!(parse("after-commit"), Some(Point::AfterCommit));
        assert_eq!(parse("call:x"), None);
        assert_eq!(parse("later"), None);
    }
}
