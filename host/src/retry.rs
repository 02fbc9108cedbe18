//! Running a transaction again when it lost a race, for a bounded time.
//!
//! A lost race (`StoreError::Conflict`) is safe to run again: the policy has
//! no side effects. The bound is time, not a count: a burst of nodes claiming
//! blocks at once needs more rounds than a fixed count of 8 allowed, and an
//! exponential backoff with jitter spreads those rounds out.
//!
//! The clock counts only the call's own attempts. The time a call spends
//! queued behind the node's other calls for the store (the etcd store's
//! per-node flock, taken in `begin`) does not count: on a node starting 64
//! pods at once, the last call waits for 63 commits before its first attempt,
//! and CI saw exactly that call give up after one attempt, "in 1567 ms", when
//! the queue was charged to it.

use std::time::{Duration, Instant};

use crate::cni::config::{NetConf, StoreConf};
use crate::store::{Store, StoreError, Txn};

/// How long a call keeps running again a transaction that lost a race on
/// the embedded store, which serializes calls and so never loses one in
/// practice; a shared store's own `timeoutMs` bounds it instead.
const EMBEDDED_RETRY_BUDGET: Duration = Duration::from_secs(2);

/// The attempts of one call's transaction.
pub struct Retries {
    started: Instant,
    queued: Duration,
    attempt: u32,
    budget: Duration,
}

impl Retries {
    pub fn new(conf: &NetConf) -> Retries {
        Retries {
            started: Instant::now(),
            queued: Duration::ZERO,
            attempt: 0,
            budget: match &conf.ipam.store {
                StoreConf::Etcd(etcd) => etcd.timeout,
                StoreConf::Embedded => EMBEDDED_RETRY_BUDGET,
            },
        }
    }

    /// Begins the next attempt's transaction; the wait for the node's lock
    /// is not charged to the call.
    pub fn begin(&mut self, store: &dyn Store, network: &str) -> Result<Box<dyn Txn>, StoreError> {
        self.attempt += 1;
        let asked = Instant::now();
        let txn = store.begin(network);
        self.queued += asked.elapsed();
        txn
    }

    /// The time the attempts themselves took, waits between them included.
    pub fn spent(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.queued)
    }

    /// After a lost race: how long to wait before the next attempt, or `None`
    /// when that attempt would end past the budget. The first lost race is
    /// always run again, however slow the attempt was.
    pub fn wait(&self) -> Option<Duration> {
        let wait = crate::store::backoff(self.attempt);
        (self.attempt == 1 || self.spent() + wait < self.budget).then_some(wait)
    }

    /// What a caller sees when the budget is spent: code 11, try again.
    pub fn exhausted(&self) -> crate::cni::CniError {
        crate::cni::CniError::TryAgain(format!(
            "store: other calls changed what this one read on each of {} attempts in {} ms \
             (not counting {} ms queued behind this node's other calls); try again",
            self.attempt,
            self.spent().as_millis(),
            self.queued.as_millis()
        ))
    }

    /// Commits the attempt's transaction: `Ok(true)` once it is committed,
    /// `Ok(false)` when it lost a race and the next attempt may run (the
    /// backoff already waited out here), code 11 when the budget is spent.
    /// What the host's own releases (the reboot reclaim, the reconciler)
    /// run their attempts with.
    pub fn commit(&self, txn: Box<dyn Txn>) -> Result<bool, crate::cni::CniError> {
        match txn.commit() {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => match self.wait() {
                Some(wait) => {
                    std::thread::sleep(wait);
                    Ok(false)
                }
                None => Err(self.exhausted()),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}
