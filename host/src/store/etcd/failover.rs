//! Riding out the loss of an etcd member: requests that fail over, and a
//! commit whose outcome can be found out.
//!
//! Production etcd runs as 3 or 5 members, and a member dies, restarts for
//! an upgrade, or loses leadership now and then. For the second or so that
//! the others take to elect a leader, requests fail with "etcdserver: no
//! leader", "leader changed", a request timeout, or a refused or reset
//! connection. Measured on a 3-member cluster on loopback, with the leader
//! SIGKILLed during a burst of 200 ADDs from 20 nodes: when each such error
//! ended the call, 8 of 200 ADDs succeeded and the other 192 answered code
//! 11 within 2.2 s, though each had a 15 s budget.
//!
//! So every request is tried again until the store's `timeoutMs` is spent,
//! on the next endpoint after a failure ([`Endpoints`]). What is tried again
//! depends on whether doing so is safe:
//!
//! - reads, and the read at the start of a transaction, simply are;
//! - a commit is sent once. When it fails in a way that leaves its outcome
//!   unknown (the connection dropped after sending, the leader changed
//!   while it was proposed, no answer in time), blindly sending it again
//!   could allocate twice, and giving up could fail the call while it holds
//!   an address. Each commit therefore writes a marker key of its own in
//!   the same etcd transaction, on the condition that the marker is still
//!   absent. To resolve an unknown outcome, a second transaction writes the
//!   marker as "abandoned" if it is absent, or else reads it: the first
//!   case fences the commit out (it can never apply afterwards, its
//!   condition now fails) and the policy is run again from scratch; in the
//!   second the commit applied. Both are linearizable, so a commit that a
//!   dying leader had replicated is seen.
//!
//! Markers live outside the store's prefix (`<prefix>:commits/`), so no
//! policy and no `namespaces()` listing sees them, under a lease that lets
//! etcd drop them after [`MARKER_TTL_S`].
//!
//! Without a quorum nothing can be committed or resolved: the call ends
//! with code 11 naming etcd when its budget is spent. If that happens to a
//! commit whose outcome is unknown, the error says so; the runtime's DEL
//! after a failed ADD (which the spec requires) releases what it might
//! hold.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use super::Shared;
use crate::store::StoreError;

/// How long etcd keeps a commit's marker. Resolving an unknown outcome
/// happens within the call's budget (seconds), so this only needs to
/// outlive the longest `timeoutMs` anyone sets.
pub(super) const MARKER_TTL_S: i64 = 600;

/// A lease is used for markers until half its time is gone, so a marker
/// never outlives the call that needs it by less than `MARKER_TTL_S / 2`.
const LEASE_REUSE: Duration = Duration::from_secs(MARKER_TTL_S as u64 / 2);

/// The shortest single attempt. A member cut off by a partition accepts the
/// connection and then never answers; without a bound per attempt the first
/// request to it would spend the whole budget.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// The longest single attempt. A leader cut off by a partition keeps
/// accepting requests until it notices (an election timeout, about 1 s)
/// and then holds them until its own request timeout; each one only ends
/// at this bound. Measured with the old leader partitioned away during a
/// 4 x 5 burst with `timeoutMs` 15000: with a third of the budget per
/// attempt (5 s) ADDs took 6.7 s at p50, with this bound 2.7 s.
/// A healthy member answers in milliseconds; an attempt that ends here
/// while its commit was merely slow costs a fence, not a wrong answer.
const MAX_ATTEMPT: Duration = Duration::from_secs(2);

const COMMITTED: &[u8] = b"committed";
const ABANDONED: &[u8] = b"abandoned";

/// The marker lease of one store handle, granted on the first commit.
#[derive(Default)]
pub(super) struct MarkerLease(Mutex<Option<(i64, Instant)>>);

/// A client per endpoint, and the one requests go to now.
///
/// etcd-client's own balancer, given every endpoint, picks one at random for
/// each request and knows nothing of one that just failed. Measured with
/// the old leader of a 3-member cluster partitioned away mid-burst: calls
/// that reached it once reached it again, three attempts of 5 s in a row,
/// and ended with code 11 though the other two members served. So, as
/// etcd's own clientv3 does, requests stick to one endpoint and move on to
/// the next after a transient failure or an attempt without an answer. A
/// process starts at its pid modulo the number of endpoints, so a node's
/// calls spread over the cluster.
///
/// Each client is made with `require_leader`: a member that has lost its
/// leader (the minority side of a partition, or an election) then answers
/// "no leader" at once instead of holding the request until it times out.
pub(super) struct Endpoints {
    clients: Vec<(String, Client)>,
    current: AtomicUsize,
}

impl Endpoints {
    /// Clients for `urls`, made at once. Without a user they connect on
    /// their first request; with one, each logs in now (etcd-client asks
    /// for a token), so a member that is down or cut off is left out
    /// rather than failing the call, as long as one is reached. A refusal
    /// (credentials, a certificate) from any member ends it at once: every
    /// member would answer the same.
    pub(super) async fn new(
        urls: &[String],
        options: ConnectOptions,
    ) -> Result<Endpoints, etcd_client::Error> {
        if urls.is_empty() {
            return Err(etcd_client::Error::InvalidArgs("no endpoints".into()));
        }
        let mut attempts = tokio::task::JoinSet::new();
        for (i, url) in urls.iter().enumerate() {
            let (url, options) = (url.clone(), options.clone().with_require_leader(true));
            attempts.spawn(async move {
                let made = Client::connect([&url], Some(options)).await;
                (i, url, made)
            });
        }
        let mut clients = Vec::new();
        let mut last = None;
        while let Some(joined) = attempts.join_next().await {
            let (i, url, made) =
                joined.map_err(|e| etcd_client::Error::InvalidArgs(e.to_string()))?;
            match made {
                Ok(client) => clients.push((i, url, client)),
                Err(e) if super::credentials::refused(&e) => return Err(e),
                Err(e) => {
                    log::debug!(
                        "etcd: {url} is not reached now ({}); going on without it",
                        describe(&e)
                    );
                    last = Some(e);
                }
            }
        }
        if clients.is_empty() {
            return Err(last.expect("an error per endpoint"));
        }
        // In the config's order, whichever answered first.
        clients.sort_by_key(|(i, _, _)| *i);
        let clients: Vec<(String, Client)> = clients.into_iter().map(|(_, u, c)| (u, c)).collect();
        Ok(Endpoints {
            current: AtomicUsize::new(std::process::id() as usize % clients.len()),
            clients,
        })
    }

    fn current(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        (i, self.clients[i].1.clone())
    }

    /// The URL of endpoint `i`, for messages.
    pub(super) fn url(&self, i: usize) -> &str {
        &self.clients[i % self.clients.len()].0
    }

    /// Moves on from endpoint `i`, unless another request already did.
    fn failed(&self, i: usize) {
        let next = (i + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// An etcd client error in words for an operator: gRPC's status message
/// and, where a failed connection caused it, the innermost cause ("tcp
/// connect error: Connection refused (os error 111)"), never the
/// libraries' debug layout that their own `Display` falls back to.
pub(super) fn describe(e: &etcd_client::Error) -> String {
    use crate::diag::innermost;
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) => {
            let mut text = s.message().to_string();
            if text.is_empty() {
                text = format!("{:?}", s.code());
            }
            if let Some(source) = std::error::Error::source(s) {
                let cause = innermost(source);
                if !text.contains(&cause) {
                    text = format!("{text}: {cause}");
                }
            }
            text
        }
        E::TransportError(t) => innermost(t),
        E::IoError(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Whether an error is one a member's loss or an election causes, and so
/// may not recur on another endpoint or a moment later.
pub(super) fn transient(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    if super::credentials::refused(e) {
        return false;
    }
    match e {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(s) => {
            // etcd's "no leader", "leader changed" and "request timed out"
            // are all Unavailable (14); a gRPC deadline is 4.
            let code = s.code() as i32;
            let text = s.message();
            code == 14
                || code == 4
                || text.contains("leader")
                || text.contains("timed out")
                || text.contains("connection")
                || text.contains("transport")
        }
        _ => false,
    }
}

fn marker_id() -> String {
    // RandomState is keyed from the OS's randomness once per process; the
    // pid and clock keep two processes with one key apart.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let high = h.finish();
    h.write_u8(1);
    format!("{high:016x}{:016x}", h.finish())
}

impl Shared {
    /// How long one attempt may take, out of what is left.
    fn attempt_time(&self, left: Duration) -> Duration {
        left.min((self.timeout / 3).clamp(MIN_ATTEMPT, MAX_ATTEMPT))
    }

    /// Runs a request that is safe to send again, again after a transient
    /// failure, until `timeout` from now; each failure is mapped to what the
    /// host should do about it.
    pub(super) fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_until(Instant::now() + self.timeout, what, f)
    }

    fn call_until<T, F, Fut>(
        &self,
        deadline: Instant,
        what: &str,
        mut f: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let (endpoint, client) = self.clients.current();
            let last = match self.send(left, f(client)) {
                Sent::Answered(v) => return Ok(v),
                Sent::Failed(e) => self.failed(what, endpoint, e, left)?,
                Sent::NoAnswer(after) => format!("no answer within {} ms", after.as_millis()),
            };
            self.clients.failed(endpoint);
            let wait = crate::store::backoff(attempt.min(5));
            if Instant::now() + wait >= deadline {
                return Err(StoreError::Unreachable(format!(
                    "etcd at {} did not answer {what} within {} ms ({attempt} attempts; the last: \
                     {last})",
                    self.endpoints,
                    self.timeout.as_millis()
                )));
            }
            log::debug!("etcd: {what} failed ({last}); trying again in {wait:?}");
            std::thread::sleep(wait);
        }
    }

    /// What a request's failure on `endpoint` means: the error that ends
    /// the call, or the words for a transient one, to try again.
    ///
    /// Over TLS, a failure that is not etcd's own refusal may be a member
    /// refusing our certificate after the handshake, which gRPC reports
    /// as a closed connection or a cancelled request, transient or not;
    /// the member is asked ([`Handshake::refusal`]) once per call.
    ///
    /// [`Handshake::refusal`]: super::handshake::Handshake::refusal
    fn failed(
        &self,
        what: &str,
        endpoint: usize,
        e: etcd_client::Error,
        left: Duration,
    ) -> Result<String, StoreError> {
        let url = self.clients.url(endpoint);
        if !super::credentials::refused(&e)
            && let Some(why) = self
                .handshake
                .as_ref()
                .and_then(|h| h.refusal(url, self.attempt_time(left)))
        {
            return Err(StoreError::Config(format!(
                "etcd at {url} refused {what}: {why}"
            )));
        }
        if transient(&e) {
            Ok(describe(&e))
        } else {
            Err(self.error(what, url, e))
        }
    }

    fn send<T>(
        &self,
        left: Duration,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Sent<T> {
        let bound = self.attempt_time(left);
        match self
            .rt
            .block_on(async { tokio::time::timeout(bound, request).await })
        {
            Ok(Ok(v)) => Sent::Answered(v),
            Ok(Err(e)) => Sent::Failed(e),
            Err(_) => Sent::NoAnswer(bound),
        }
    }

    /// The lease markers are written under, granted once per handle and
    /// renewed by a new grant when half of it has gone.
    fn marker_lease(&self) -> Result<i64, StoreError> {
        let mut held = self.lease.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, at)) = *held
            && at.elapsed() < LEASE_REUSE
        {
            return Ok(id);
        }
        // An extra lease, if a grant is answered twice, just expires.
        let granted = self.call("a lease grant", |mut c| async move {
            c.lease_grant(MARKER_TTL_S, None).await
        })?;
        *held = Some((granted.id(), Instant::now()));
        Ok(granted.id())
    }

    /// Applies `ops` if `compares` hold, exactly once, whatever happens to
    /// the connection: `Ok` when it applied, [`StoreError::Conflict`] when
    /// it did not and the policy should run again.
    pub(super) fn commit(
        &self,
        mut compares: Vec<Compare>,
        mut ops: Vec<TxnOp>,
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.timeout;
        let lease = self.marker_lease()?;
        let marker = format!("{}:commits/{}", self.prefix, marker_id()).into_bytes();
        let with_lease = Some(PutOptions::new().with_lease(lease));
        compares.push(Compare::version(marker.clone(), CompareOp::Equal, 0));
        ops.push(TxnOp::put(marker.clone(), COMMITTED, with_lease.clone()));
        let txn = Txn::new().when(compares).and_then(ops);
        let left = deadline.saturating_duration_since(Instant::now());
        let (endpoint, mut client) = self.clients.current();
        let unknown = match self.send(left, client.txn(txn)) {
            Sent::Answered(resp) if resp.succeeded() => return Ok(()),
            Sent::Answered(_) => return Err(StoreError::Conflict),
            Sent::Failed(e) if e.to_string().contains("lease not found") => {
                // The lease went (etcd restored, or revoked): a new one, and
                // the policy again.
                *self.lease.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return Err(StoreError::Conflict);
            }
            Sent::Failed(e) => self.failed("the commit", endpoint, e, left)?,
            Sent::NoAnswer(after) => format!("no answer within {} ms", after.as_millis()),
        };
        self.clients.failed(endpoint);
        log::info!("etcd: the commit's outcome is unknown ({unknown}); resolving it");
        // Fence the commit out if it has not applied, else read what it
        // wrote. Sent as often as needed: a second fence finds the first.
        let fence = Txn::new()
            .when([Compare::version(marker.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(marker.clone(), ABANDONED, with_lease)])
            .or_else([TxnOp::get(marker.clone(), None)]);
        let resolved = self
            .call_until(deadline, "the commit's outcome", |mut c| {
                let fence = fence.clone();
                async move { c.txn(fence).await }
            })
            .map_err(|e| match e {
                StoreError::Unreachable(m) => StoreError::Unreachable(format!(
                    "{m}; the commit's outcome is unknown ({unknown}): if it applied, the \
                     runtime's DEL releases it"
                )),
                other => other,
            })?;
        if resolved.succeeded() {
            log::info!("etcd: the commit did not apply; running the policy again");
            return Err(StoreError::Conflict);
        }
        let applied = resolved.op_responses().into_iter().any(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().is_some_and(|kv| kv.value() == COMMITTED),
            _ => false,
        });
        if applied {
            log::info!("etcd: the commit applied");
            Ok(())
        } else {
            // Our own earlier fence, whose answer was lost.
            Err(StoreError::Conflict)
        }
    }
}

enum Sent<T> {
    Answered(T),
    Failed(etcd_client::Error),
    NoAnswer(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_differ() {
        let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| marker_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn an_election_is_transient_and_a_bad_request_is_not() {
        use etcd_client::Error as E;
        for (status, expected) in [
            (tonic_status(14, "etcdserver: leader changed"), true),
            (tonic_status(14, "etcdserver: no leader"), true),
            (tonic_status(14, "etcdserver: request timed out"), true),
            (tonic_status(4, "deadline exceeded"), true),
            (
                tonic_status(3, "etcdserver: too many operations in txn request"),
                false,
            ),
            (
                tonic_status(11, "etcdserver: mvcc: required revision has been compacted"),
                false,
            ),
        ] {
            assert_eq!(transient(&status), expected, "{status}");
        }
        assert!(!transient(&E::InvalidArgs("x".into())));
    }

    #[test]
    fn an_error_reads_as_words_not_as_debug_output() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let status = tonic::Status::from_error(Box::new(refused));
        let text = describe(&etcd_client::Error::GRpcStatus(status));
        assert!(text.contains("connection refused"), "{text}");
        assert!(!text.contains("Os {") && !text.contains("kind:"), "{text}");
        assert_eq!(
            describe(&tonic_status(14, "etcdserver: no leader")),
            "etcdserver: no leader"
        );
    }

    fn tonic_status(code: i32, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code.into(), message))
    }
}
