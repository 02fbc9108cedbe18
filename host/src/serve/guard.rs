//! Whether a served call may still commit: its client is waiting for it.
//!
//! A client gives up on a server that does not answer in time and runs the
//! call itself (`client.rs`). The server's call must then never commit: a
//! runtime that retries an ADD would otherwise find the address of the
//! abandoned one held by the same attachment ("duplicate allocation"). So
//! every served call runs under a guard that the commit consults last
//! ([`may_commit`]): the client's deadline has not passed, and the client
//! is still connected. A one-shot process has no guard, and commits.
//!
//! The window left is the one between this check and the commit itself, a
//! few microseconds, against the seconds a client waits: a server stopped
//! exactly there and resumed after its client gave up could still commit.

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cni::CniError;

/// How long before its client's deadline a call stops committing: time for
/// the commit itself and the answer to travel.
const MARGIN: Duration = Duration::from_millis(500);

struct Guard {
    /// Milliseconds since the epoch by which the client stops waiting.
    deadline_ms: u64,
    /// The client's connection, to see whether it hung up.
    peer: OwnedFd,
}

thread_local! {
    static GUARD: RefCell<Option<Guard>> = const { RefCell::new(None) };
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs `f`, a served call, under the guard of a client connected on
/// `peer` that waits until `deadline_ms`.
pub fn with<T>(deadline_ms: u64, peer: OwnedFd, f: impl FnOnce() -> T) -> T {
    GUARD.with(|g| *g.borrow_mut() = Some(Guard { deadline_ms, peer }));
    let value = f();
    GUARD.with(|g| g.borrow_mut().take());
    value
}

/// Whether the call this thread runs may commit: always outside a served
/// call; inside one, code 11 once its client can no longer be waiting.
pub fn may_commit() -> Result<(), CniError> {
    GUARD.with(|g| match g.borrow().as_ref() {
        None => Ok(()),
        Some(guard) => {
            if now_ms() + MARGIN.as_millis() as u64 >= guard.deadline_ms {
                return Err(CniError::TryAgain(
                    "wasm-ipam serve ran this call past its client's deadline, so nothing was \
                     committed: the client runs it itself"
                        .into(),
                ));
            }
            if hung_up(&guard.peer) {
                return Err(CniError::TryAgain(
                    "the client of this served call hung up, so nothing was committed".into(),
                ));
            }
            Ok(())
        }
    })
}

/// Whether the other end of `peer` has closed, without waiting.
fn hung_up(peer: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(peer, PollFlags::RDHUP | PollFlags::HUP)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(0) => false,
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_call_commits_only_while_its_client_waits() {
        assert!(may_commit().is_ok(), "a one-shot call has no guard");
        let (ours, theirs) = UnixStream::pair().unwrap();
        let far = now_ms() + 60_000;
        with(far, OwnedFd::from(ours.try_clone().unwrap()), || {
            assert!(may_commit().is_ok());
        });
        with(
            now_ms() + 100,
            OwnedFd::from(ours.try_clone().unwrap()),
            || {
                assert_eq!(may_commit().unwrap_err().code(), 11, "past the deadline");
            },
        );
        drop(theirs);
        with(far, OwnedFd::from(ours), || {
            let err = may_commit().unwrap_err();
            assert!(err.to_string().contains("hung up"), "{err}");
        });
        assert!(may_commit().is_ok(), "the guard ends with the call");
    }
}
