//! One CNI invocation, from environment and stdin to what goes on stdout.
//!
//! The order of the checks is the order of their cost: the environment and
//! the config first, then the policy (a cache lookup), then the store, and
//! only then the policy call, inside one transaction that commits only when
//! the policy succeeded and its answer passed the host's checks. What has
//! to wait for the commit comes after it: the DHCPRELEASEs of the leases
//! the call gave up (`dhcp::outbox`).

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Instant;

use crate::cni::config::{NetConf, peek_version};
use crate::cni::env::{Command, Env};
use crate::cni::result::IpamResult;
use crate::cni::version::{LATEST, Version, version_json};
use crate::cni::{CniError, resolv};
use crate::dhcp::{Capability, Exchanges, Target};
use crate::netrecord::NetworkRecord;
use crate::retry::Retries;
use crate::runner::{
    Answered, Mode, after_commit, dhcp_capability, load_policy, node_name, now, open_store,
};
use crate::sandbox::{self, Answer, Attachment, Availability, Context, Invocation, Op, Sandbox};
use crate::store::{Store, StoreError};
use crate::{crash, envvars, reboot, release};

/// What to do with the engine and the store when the call is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// Drop them: for a process that goes on (tests, tools).
    Full,
    /// Leave the engine to the OS: a CNI process exits right after
    /// printing, and unmapping the engine's code and reservations costs it
    /// time for nothing. The store is always closed properly.
    Exit,
}

/// Stage times in microseconds since `start`, printed as one JSON line.
pub struct Timings {
    start: Instant,
    marks: Vec<(&'static str, u128)>,
}

impl Timings {
    pub fn new(start: Instant) -> Timings {
        Timings {
            start,
            marks: Vec::new(),
        }
    }

    fn mark(timings: &mut Option<Timings>, stage: &'static str) {
        if let Some(t) = timings {
            t.marks.push((stage, t.start.elapsed().as_micros()));
        }
    }

    /// One line: `wasm-ipam: timings [["parse",110],...]`, in stage order.
    fn print(&self) {
        let fields: Vec<String> = self
            .marks
            .iter()
            .map(|(k, v)| format!("[\"{k}\",{v}]"))
            .collect();
        log::info!("timings [{}]", fields.join(","));
    }
}

/// A failed invocation: the error and the version to report it in.
#[derive(Debug)]
pub struct Failure {
    pub error: CniError,
    pub cni_version: String,
}

fn fail(cni_version: &str) -> impl Fn(CniError) -> Failure + '_ {
    move |error| Failure {
        error,
        cni_version: cni_version.to_string(),
    }
}

/// What a finished call prints on stdout, and its exit status.
pub fn output(outcome: Result<Option<String>, Failure>) -> (String, u8) {
    match outcome {
        Ok(out) => (out.unwrap_or_default(), 0),
        Err(f) => (f.error.to_json(&f.cni_version), 1),
    }
}

/// Runs an invocation. `Ok(Some(text))` is printed as the result,
/// `Ok(None)` means success with no output.
pub fn run(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    stdin: &[u8],
) -> Result<Option<String>, Failure> {
    run_timed(lookup, stdin, Instant::now(), Teardown::Full)
}

/// [`run`], with `start` the moment the process started its work, for the
/// stage timings.
pub fn run_timed(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    stdin: &[u8],
    start: Instant,
    teardown: Teardown,
) -> Result<Option<String>, Failure> {
    let command = Env::command(lookup).map_err(fail(LATEST))?;
    if command == Command::Version {
        return Ok(Some(version_json(peek_version(stdin).as_deref())));
    }
    let mut timings = envvars::timings(lookup).then(|| Timings::new(start));
    // A DEL whose config cannot serve (code 7) releases with the one
    // recorded at ADD instead: see `release`.
    let unusable = |e: &CniError| command == Command::Del && e.code() == 7;
    let conf = match NetConf::parse(stdin) {
        Ok(conf) => conf,
        Err(e) if unusable(&e) => {
            return del_with_record(lookup, stdin, &e, &mut timings, teardown)
                .map_err(fail(LATEST));
        }
        Err(e) => return Err(fail(LATEST)(e)),
    };
    let version = conf.cni_version.text.clone();
    let out = match run_conf(lookup, command, &conf, &mut timings, teardown) {
        Err(e) if unusable(&e) => del_with_record(lookup, stdin, &e, &mut timings, teardown),
        out => out,
    }
    .map_err(fail(&version));
    Timings::mark(&mut timings, "output");
    if let Some(t) = &timings {
        t.print();
    }
    out
}

/// A DEL whose config cannot serve, run with the config recorded at ADD
/// (see `release`); with no record, there is nothing to release.
fn del_with_record(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    stdin: &[u8],
    cause: &CniError,
    timings: &mut Option<Timings>,
    teardown: Teardown,
) -> Result<Option<String>, CniError> {
    match release::recorded_conf(lookup, stdin, cause)? {
        Some(conf) => run_conf(lookup, Command::Del, &conf, timings, teardown),
        None => Ok(None),
    }
}

/// One call with a parsed config.
pub fn run_conf(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    command: Command,
    conf: &NetConf,
    timings: &mut Option<Timings>,
    teardown: Teardown,
) -> Result<Option<String>, CniError> {
    allowed(command, conf)?;
    let env = Env::from_lookup(lookup)?;
    let (op, ctx) = prepare(&env, conf)?;
    Timings::mark(timings, "parse");
    if command == Command::Del && release::nothing_stored(&conf.ipam.store, &conf.ipam.data_dir) {
        return Ok(None);
    }
    let sandbox = load_policy(conf)?;
    Timings::mark(timings, "policy_load");
    let store = open_store(conf)?;
    Timings::mark(timings, "store_open");
    let now = now(lookup)?;
    let boot = reboot::boot_id(lookup);
    let dhcp = dhcp_capability(
        &sandbox,
        conf,
        || exchanges(&env),
        &ctx.node,
        boot.as_deref(),
    )?;
    let answer = transact(
        &Work {
            store: &*store,
            sandbox: &sandbox,
            conf,
            ctx: &ctx,
            op: &op,
            now,
            mode: Mode::Commit,
            boot: boot.as_deref(),
            dhcp,
        },
        timings,
    );
    if teardown == Teardown::Exit {
        // Only the engine, whose teardown is all unmapping. The store is
        // still closed in order: a store backend may have work to finish
        // on close (SQLite in WAL mode, which an older version used, grew
        // its log without bound when processes skipped it).
        std::mem::forget(sandbox);
    }
    drop(store);
    render(answer?, conf)
}

/// What goes on stdout for an answer.
fn render(answered: Answered, conf: &NetConf) -> Result<Option<String>, CniError> {
    match answered {
        Answered::Result(result) => Ok(Some(result.to_json(&conf.cni_version)?)),
        Answered::Released(released) => {
            for r in &released {
                log::info!(
                    "GC released {} from {}/{}",
                    r.address,
                    r.attachment.container_id,
                    r.attachment.ifname
                );
            }
            Ok(None)
        }
        Answered::Nothing => Ok(None),
    }
}

/// Whether the config's CNI version has `command`: checked before the
/// environment, as the reference plugins do.
fn allowed(command: Command, conf: &NetConf) -> Result<(), CniError> {
    match command {
        Command::Check => conf.cni_version.require("CHECK", Version(0, 4, 0)),
        Command::Gc => conf.cni_version.require("GC", Version(1, 1, 0)),
        Command::Status => conf.cni_version.require("STATUS", Version(1, 1, 0)),
        _ => Ok(()),
    }
}

/// The operation and context the policy is called with.
fn prepare(env: &Env, conf: &NetConf) -> Result<(Op, Context), CniError> {
    let command = env.command;
    let attachment = || Attachment {
        container_id: env.container_id.clone().unwrap_or_default(),
        ifname: env.ifname.clone().unwrap_or_default(),
    };
    let op = match command {
        Command::Add => Op::Add(attachment()),
        Command::Del => Op::Del(attachment()),
        Command::Check => {
            let prev = conf
                .prev_result
                .as_ref()
                .map(IpamResult::from_prev_result)
                .transpose()?
                .map(|r| sandbox::allocation_from_result(&r));
            Op::Check(attachment(), prev)
        }
        Command::Gc => {
            let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
                CniError::InvalidConfig(
                    "GC needs cni.dev/valid-attachments: without the list every address would be released".into(),
                )
            })?;
            Op::Gc(
                valid
                    .iter()
                    .map(|a| Attachment {
                        container_id: a.container_id.clone(),
                        ifname: a.ifname.clone(),
                    })
                    .collect(),
            )
        }
        Command::Status => Op::Status,
        Command::Version => unreachable!("answered before the config is read"),
    };
    // Only ADD returns DNS; DEL must not fail because resolv.conf went away.
    let dns = match (&op, &conf.ipam.resolv_conf) {
        (Op::Add(_), Some(path)) => Some(sandbox::dns_to_wit(&resolv::read(path)?)),
        _ => None,
    };
    let ctx = Context {
        network: conf.name.clone(),
        cni_version: conf.cni_version.text.clone(),
        config: conf.ipam_raw.clone(),
        cni_args: env.args.clone(),
        args: conf.args.clone(),
        runtime_config: conf.runtime_config.clone(),
        netns: env.netns.clone(),
        node: node_name(conf)?,
        dns,
    };
    Ok((op, ctx))
}

/// One call, typed: its checked environment and the time it runs at.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: Env,
    /// Seconds since the Unix epoch, as the policy sees them.
    pub now: u64,
}

/// One invocation against a store and a policy the caller chose: what the
/// operator tools (`simulate`, `gc`) run, through the same checks and the
/// same transaction as the CNI path.
pub fn run_with(
    request: &Request,
    conf: &NetConf,
    store: &dyn Store,
    sandbox: &Sandbox,
    mode: Mode,
) -> Result<Answered, CniError> {
    allowed(request.env.command, conf)?;
    let (op, ctx) = prepare(&request.env, conf)?;
    // No exchange; but the RELEASEs of what a GC gives up go out from the
    // node that made the namespaces, in the boot that made them.
    let no_exchange = || Exchanges::None("an operator tool's call makes no DHCP exchange".into());
    let boot = reboot::boot_id(&|k| std::env::var_os(k));
    let dhcp = dhcp_capability(sandbox, conf, no_exchange, &ctx.node, boot.as_deref())?;
    transact(
        &Work {
            store,
            sandbox,
            conf,
            ctx: &ctx,
            op: &op,
            now: request.now,
            mode,
            boot: None,
            dhcp,
        },
        &mut None,
    )
}

/// Whether a runtime's call may make DHCP exchanges: those for a container
/// interface (ADD, CHECK and DEL with `CNI_NETNS`), in its namespace.
fn exchanges(env: &Env) -> Exchanges {
    let interface = matches!(env.command, Command::Add | Command::Check | Command::Del);
    match (&env.netns, &env.container_id, &env.ifname) {
        (Some(netns), Some(id), Some(ifname)) if interface => Exchanges::Live(Target {
            container_id: id.clone(),
            ifname: ifname.clone(),
            // Absolute, as the renewals run later from elsewhere (as given
            // when the working directory is gone: the exchange names it).
            netns: std::path::absolute(netns).unwrap_or_else(|_| netns.into()),
        }),
        _ => Exchanges::None(format!(
            "a {} call has no container interface to make a DHCP exchange on",
            env.command.as_str()
        )),
    }
}

/// One policy call against a store: what [`transact`] runs.
struct Work<'a> {
    store: &'a dyn Store,
    sandbox: &'a Sandbox,
    conf: &'a NetConf,
    ctx: &'a Context,
    op: &'a Op,
    now: u64,
    mode: Mode,
    /// This boot's id: ADDs are recorded with it, and an earlier boot's
    /// attachments are reclaimed first (see `reboot`).
    boot: Option<&'a str>,
    /// The `dhcp` capability, for a policy that imports it.
    dhcp: Option<Arc<Capability>>,
}

/// Runs the policy in a transaction, retrying a transaction that lost a race
/// (safe: the policy's only other side effect, a DHCP exchange, is
/// idempotent within the call), and commits only a success.
fn transact(work: &Work, timings: &mut Option<Timings>) -> Result<Answered, CniError> {
    let Work {
        store,
        sandbox,
        conf,
        ctx,
        op,
        now,
        mode,
        boot,
        ..
    } = *work;
    // What an ADD records of the network, built once for every attempt.
    let record = matches!(op, Op::Add(_)).then(|| NetworkRecord::of(conf));
    let reclaim = boot.filter(|_| conf.ipam.reclaim_after_reboot && mode == Mode::Commit);
    // Lost races are run again for a bounded time (see `retry`).
    let mut retries = Retries::new(conf);
    let mut reclaimed = false;
    loop {
        let mut txn = retries.begin(store, &conf.name)?;
        if let Some(boot) = reclaim
            && !reclaimed
            && reboot::needs_reclaim(&mut *txn, &ctx.node, boot)?
        {
            drop(txn);
            reclaimed = true;
            retries = Retries::new(conf);
            if let Err(e) = reboot::reclaim(store, sandbox, conf, &ctx.node, boot, now) {
                log::warn!("{e}; the reclaim is left for the next call");
            }
            continue;
        }
        let call = Invocation {
            ctx,
            op,
            limits: &conf.ipam.limits,
            now,
            dhcp: work.dhcp.clone(),
        };
        let (result, mut txn) = sandbox.call(txn, &call);
        Timings::mark(timings, "policy_call");
        // Every early return below drops `txn`, which rolls it back.
        let answer = result?.map_err(sandbox::ipam_error)?;
        let (answered, status_error) = match answer {
            Answer::Allocation(a) => (Answered::Result(sandbox::result_from_allocation(a)?), None),
            Answer::Done | Answer::NotExported | Answer::Leases(_) | Answer::Usage(_) => {
                (Answered::Nothing, None)
            }
            Answer::Released(released) => (Answered::Released(released), None),
            Answer::Availability(Availability::Available) => (Answered::Nothing, None),
            Answer::Availability(Availability::Unavailable(m)) => {
                (Answered::Nothing, Some(CniError::Unavailable(m)))
            }
            Answer::Availability(Availability::Degraded(m)) => {
                (Answered::Nothing, Some(CniError::Degraded(m)))
            }
        };
        if let Some(record) = &record {
            record.remember(&mut *txn)?;
        }
        match (op, &answered) {
            (Op::Add(a), _) => {
                if let Some(boot) = boot {
                    reboot::remember(&mut *txn, &ctx.node, a, boot)?;
                }
            }
            (Op::Del(a), _) => reboot::forget(&mut *txn, &ctx.node, a)?,
            (Op::Gc(_), Answered::Released(released)) => {
                for r in released {
                    reboot::forget(&mut *txn, &ctx.node, &r.attachment)?;
                }
            }
            _ => {}
        }
        if mode == Mode::Commit {
            // A served call whose client stopped waiting must leave
            // nothing: the client runs the call itself.
            crate::serve::guard::may_commit()?;
            crash::at(crash::Point::Commit);
            match txn.commit() {
                Ok(()) => {
                    crash::at(crash::Point::AfterCommit);
                    Timings::mark(timings, "commit");
                    if let Some(dhcp) = &work.dhcp {
                        after_commit(store, conf, dhcp, matches!(op, Op::Del(_)));
                    }
                }
                Err(StoreError::Conflict) => match retries.wait() {
                    Some(wait) => {
                        // Reported so an operator (and the tests) can see the
                        // contention a shared store is under.
                        log::info!(
                            "store conflict on attempt {}; running the policy again",
                            retries.attempt()
                        );
                        std::thread::sleep(wait);
                        continue;
                    }
                    None => return Err(retries.exhausted()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        return match status_error {
            Some(e) => Err(e),
            None => Ok(answered),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use crate::cni::config::StoreConf;

    use super::*;
    use crate::store::{Entry, MemoryStore, Txn};

    /// A store whose first `conflicts` commits lose a race, and whose every
    /// operation takes `delay`, as a busy etcd's do; each `begin` waits
    /// `queue`, as a call queued behind its node's other calls does.
    struct TestStore {
        inner: MemoryStore,
        conflicts: u32,
        delay: std::time::Duration,
        queue: std::time::Duration,
        begun: AtomicU32,
    }

    struct TestTxn {
        inner: Box<dyn Txn>,
        lose: bool,
        delay: std::time::Duration,
    }

    impl TestStore {
        fn new(conflicts: u32, delay: Duration) -> TestStore {
            TestStore {
                inner: MemoryStore::new(),
                conflicts,
                delay,
                queue: Duration::ZERO,
                begun: AtomicU32::new(0),
            }
        }
    }

    impl Store for TestStore {
        fn begin(&self, ns: &str) -> Result<Box<dyn Txn>, StoreError> {
            let n = self.begun.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.queue);
            Ok(Box::new(TestTxn {
                inner: self.inner.begin(ns)?,
                lose: n < self.conflicts,
                delay: self.delay,
            }))
        }
        fn namespaces(&self) -> Result<Vec<String>, StoreError> {
            self.inner.namespaces()
        }
    }

    impl Txn for TestTxn {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            std::thread::sleep(self.delay);
            self.inner.get(key)
        }
        fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            std::thread::sleep(self.delay);
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: &str) -> Result<(), StoreError> {
            std::thread::sleep(self.delay);
            self.inner.delete(key)
        }
        fn scan(
            &mut self,
            prefix: &str,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<Entry>, StoreError> {
            std::thread::sleep(self.delay);
            self.inner.scan(prefix, after, limit)
        }
        fn commit(self: Box<Self>) -> Result<(), StoreError> {
            if self.lose {
                Err(StoreError::Conflict)
            } else {
                self.inner.commit()
            }
        }
    }

    fn setup() -> (NetConf, Context, Sandbox, tempfile::TempDir) {
        let cache = tempfile::tempdir().unwrap();
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"10.5.0.0/24"}]]}}"#,
        )
        .unwrap();
        let ctx = Context {
            network: "n".into(),
            cni_version: "1.0.0".into(),
            config: conf.ipam_raw.clone(),
            cni_args: vec![],
            args: None,
            runtime_config: None,
            netns: Some("/x".into()),
            node: "node".into(),
            dns: None,
        };
        let sandbox = Sandbox::load(
            &sandbox::PolicySource::resolve("host-local").unwrap(),
            cache.path(),
        )
        .unwrap();
        (conf, ctx, sandbox, cache)
    }

    /// An ADD of container c1 committed through `store`, with the policy's
    /// deadline set to `timeout` when given; the store is handed back to
    /// look at, with how long the transaction took.
    fn add_through(
        store: TestStore,
        timeout: Option<std::time::Duration>,
    ) -> (TestStore, Result<Answered, CniError>, std::time::Duration) {
        let (conf, ..) = setup();
        add_with(store, timeout, conf.ipam.store)
    }

    /// [`add_through`], with the network's store settings (which set the
    /// retry budget) replaced by `store_conf`.
    fn add_with(
        store: TestStore,
        timeout: Option<std::time::Duration>,
        store_conf: StoreConf,
    ) -> (TestStore, Result<Answered, CniError>, std::time::Duration) {
        let (mut conf, ctx, sandbox, _cache) = setup();
        conf.ipam.store = store_conf;
        if let Some(t) = timeout {
            conf.ipam.limits.timeout = t;
        }
        let op = Op::Add(Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        });
        let started = Instant::now();
        let answer = transact(
            &Work {
                store: &store,
                sandbox: &sandbox,
                conf: &conf,
                ctx: &ctx,
                op: &op,
                now: 0,
                mode: Mode::Commit,
                boot: None,
                dhcp: None,
            },
            &mut None,
        );
        (store, answer, started.elapsed())
    }

    /// An ADD of c1 through a store whose first `conflicts` commits lose a
    /// race.
    fn add_racing(conflicts: u32) -> (TestStore, Result<Answered, CniError>) {
        let (store, answer, _) = add_through(TestStore::new(conflicts, Duration::ZERO), None);
        (store, answer)
    }

    #[test]
    fn a_lost_race_is_run_again_from_scratch() {
        let (store, answer) = add_racing(2);
        let Answered::Result(r) = answer.unwrap() else {
            panic!("ADD answers a result")
        };
        assert_eq!(
            store.begun.load(Ordering::SeqCst),
            3,
            "two lost races, one win"
        );
        assert_eq!(r.ips[0].address.to_string(), "10.5.0.2/24");
        let leases: Vec<_> = store
            .inner
            .dump("n")
            .into_iter()
            .filter(|(k, _)| k.starts_with("lease/"))
            .collect();
        assert_eq!(leases.len(), 1, "only the winning attempt was applied");
    }

    #[test]
    fn store_time_does_not_count_against_the_policys_deadline() {
        // The policy's own work takes about a millisecond; each of its
        // store calls here takes 40 ms, several times the whole deadline.
        let slow = TestStore::new(0, Duration::from_millis(40));
        let (_, answer, took) = add_through(slow, Some(Duration::from_millis(30)));
        let Answered::Result(r) = answer.unwrap() else {
            panic!("ADD answers a result")
        };
        assert_eq!(r.ips[0].address.to_string(), "10.5.0.2/24");
        assert!(
            took > Duration::from_millis(60),
            "the store really was slower than the deadline"
        );
    }

    #[test]
    fn endless_conflicts_end_in_try_again_within_the_retry_budget() {
        let (store, answer) = add_racing(u32::MAX);
        let err = answer.err().unwrap();
        assert_eq!(err.code(), 11);
        let attempts = store.begun.load(Ordering::SeqCst);
        assert!(attempts > 1, "lost races were run again");
        assert!(
            err.to_string()
                .contains(&format!("on each of {attempts} attempts in")),
            "{err}"
        );
        assert!(store.inner.dump("n").is_empty());
    }

    #[test]
    fn time_queued_behind_the_nodes_other_calls_is_not_charged_to_retries() {
        // Three lost races, and each attempt first waits 400 ms for its turn:
        // 1.6 s of queueing against a 300 ms budget, which the attempts
        // themselves (a few ms each, with their backoff) stay well within.
        let mut store = TestStore::new(3, Duration::ZERO);
        store.queue = Duration::from_millis(400);
        let etcd = StoreConf::Etcd(Box::new(crate::cni::config::EtcdConf {
            endpoints: vec!["http://127.0.0.1:1".into()],
            prefix: "/x/".into(),
            timeout: Duration::from_millis(300),
            tls: None,
            auth: None,
        }));
        let (store, answer, took) = add_with(store, None, etcd);
        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(store.begun.load(Ordering::SeqCst), 4);
        assert!(took > Duration::from_millis(1600));
    }
}
