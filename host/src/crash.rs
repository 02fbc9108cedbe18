//! Crash injection, for the crash tests only: a runtime never sets it.
//!
//! `WASM_IPAM_TEST_CRASH_AT` makes the host kill itself with SIGKILL, as a
//! node losing power or an OOM kill would, at one point of a call:
//!
//! - `call:N`: at the policy's N-th store call (get, put, delete or scan),
//!   before it runs; the tests stop an ADD at every store call in turn;
//! - `commit`: after the policy answered, just before the transaction
//!   commits;
//! - `after-commit`: just after the commit, before the result is printed
//!   (and before the DHCPRELEASEs of the leases a call gave up are sent);
//! - `after-release`: just after a DHCPRELEASE was sent, before it leaves
//!   the outbox (see `dhcp::outbox`).
//!
//! The tests (`host/tests/all/crash.rs`, and on etcd `etcd.rs`) then check
//! that the store holds all of the call or none of it, and opens.

/// Where a call is to be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// At the policy's N-th store call (from 1).
    StoreCall(u64),
    /// Just before the commit.
    Commit,
    /// Just after the commit.
    AfterCommit,
    /// Just after a DHCPRELEASE went out.
    AfterRelease,
}

impl Point {
    /// `call:N`, `commit`, `after-commit` or `after-release`.
    pub fn parse(text: &str) -> Option<Point> {
        match text {
            "commit" => Some(Point::Commit),
            "after-commit" => Some(Point::AfterCommit),
            "after-release" => Some(Point::AfterRelease),
            other => other
                .strip_prefix("call:")?
                .parse()
                .ok()
                .map(Point::StoreCall),
        }
    }
}

/// Ends the process at once with SIGKILL: no destructor, no rollback, no
/// flush runs.
pub fn now() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    unreachable!("SIGKILL does not return")
}

/// Kills the process if `WASM_IPAM_TEST_CRASH_AT` names `at`.
pub fn at(at: Point) {
    if crate::envvars::crash_point() == Some(at) {
        now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_points_parse() {
        assert_eq!(Point::parse("call:3"), Some(Point::StoreCall(3)));
        assert_eq!(Point::parse("commit"), Some(Point::Commit));
        assert_eq!(Point::parse("after-commit"), Some(Point::AfterCommit));
        assert_eq!(Point::parse("after-release"), Some(Point::AfterRelease));
        assert_eq!(Point::parse("call:x"), None);
        assert_eq!(Point::parse("later"), None);
    }
}
