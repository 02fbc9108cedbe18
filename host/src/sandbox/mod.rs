//! Running a policy component in a sandbox.
//!
//! A policy gets no filesystem, network or environment, and only the clock
//! the host hands it (frozen at the invocation's time, for WASI too). Each
//! call runs under a memory limit, a fuel budget and a wall-clock deadline
//! (epoch interruption), so a broken or hostile policy ends in a CNI error
//! within the deadline instead of hanging or crashing the node. Its
//! stdout and stderr are captured with a bound and forwarded to our log.
//! A policy that imports the optional `dhcp` capability gets it linked
//! (`dhcp.rs`), and the host runs it only where the network grants it.

mod bindings;
mod cache;
mod convert;
mod dhcp;
mod inspect;
mod settings;
mod source;
mod state;
mod wasi;

use std::sync::mpsc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

pub use bindings::{
    Allocation, Attachment, Availability, Context, Dns, Figure, IpamError, Lease, PoolUsage,
    Released,
};
pub use convert::{allocation_from_result, dns_to_wit, ipam_error, result_from_allocation};
pub use inspect::{ImportKind, Inspection, inspect};
pub use source::{PolicySource, builtin_names};
pub use state::{LimitError, MAX_KEY_BYTES, MAX_SCAN, MAX_VALUE_BYTES};

/// The version of the `cni:ipam` contract (`wit/ipam.wit`) this host
/// implements: the one place the host writes it.
macro_rules! contract_version {
    () => {
        "0.1.1"
    };
}

/// A name of the contract, such as `cni:ipam/nodes@0.1.0`.
macro_rules! contract {
    ($item:literal) => {
        concat!("cni:ipam/", $item, "@", contract_version!())
    };
}

pub const CONTRACT_VERSION: &str = contract_version!();
/// The world every policy implements.
pub const POLICY_WORLD: &str = contract!("ipam-policy");
/// The world of a policy that also serves the operator tools (`inspect`,
/// `nodes`).
pub const TOOLS_WORLD: &str = contract!("ipam-policy-tools");
/// The optional `inspect` interface, as a component exports it.
pub const INSPECT_INTERFACE: &str = contract!("inspect");
/// The optional `nodes` interface, as a component exports it.
pub const NODES_INTERFACE: &str = contract!("nodes");
/// The optional `dhcp` capability, as a component imports it.
pub const DHCP_INTERFACE: &str = contract!("dhcp");

/// Whether `name`, a component's import, is the `dhcp` capability of a
/// contract version this host serves.
pub fn is_dhcp_import(name: &str) -> bool {
    name.split_once('@')
        .is_some_and(|(path, version)| path == "cni:ipam/dhcp" && contract_compatible(version))
}

/// Whether a `cni:ipam` import of `version` is one this host serves: the
/// same major and minor version, any patch. A patch release only adds, and
/// the linker resolves such an import to this host's definitions, as it
/// does WASI 0.2.x.
pub fn contract_compatible(version: &str) -> bool {
    let series = |v: &str| v.rsplit_once('.').map(|(s, _)| s.to_string());
    series(version).is_some_and(|s| Some(s) == series(CONTRACT_VERSION))
}

use crate::cni::CniError;
use crate::cni::config::Limits;
use crate::store::{StoreError, Txn};
use crate::trust::{TrustError, TrustedDir};
use bindings::{IpamPolicy, IpamPolicyPre};
use state::HostState;

const PIPE_CAPACITY: usize = 64 << 10;

/// One CNI operation, as the policy sees it.
pub enum Op {
    Add(Attachment),
    Del(Attachment),
    Check(Attachment, Option<Allocation>),
    Gc(Vec<Attachment>),
    Status,
    /// `nodes.release-node`, for `ctx.node`: optional (see `wit/ipam.wit`).
    ReleaseNode,
    /// `inspect.leases`: optional.
    Leases,
    /// `inspect.usage`: optional.
    Usage,
}

/// What the policy answered.
#[derive(Debug)]
pub enum Answer {
    Allocation(Allocation),
    Done,
    Released(Vec<Released>),
    Availability(Availability),
    /// The policy does not export the optional interface the call needs.
    NotExported,
    Leases(Vec<Lease>),
    Usage(Vec<PoolUsage>),
}

fn new_engine(config: &Config) -> Result<Engine, CniError> {
    Engine::new(config)
        .map_err(|e| CniError::internal(format!("cannot start the wasm engine: {e}")))
}

/// The engine a call runs a cached policy on: one without a compiler.
/// Setting up Cranelift (its ISA and settings, checked against the CPU)
/// was a sixth of loading a policy from the cache, and only a miss
/// compiles. Cache entries are named for this engine's settings; wasmtime
/// checks an artifact's compiler flags against the CPU when it maps it.
fn engine() -> Result<Engine, CniError> {
    let mut config = settings::config();
    config.enable_compiler(false);
    new_engine(&config)
}

/// The engine that compiles a policy the cache does not hold.
fn compiler() -> Result<Engine, CniError> {
    new_engine(&settings::compiler_config())
}

/// Where a call found its policy's compiled code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The cache held a valid entry.
    Cached,
    /// The artifact built into this binary, written into the cache.
    Precompiled,
    /// Compiled by Cranelift in this call, and cached.
    Compiled,
}

/// A policy's component and the engine it belongs to.
struct Compiled {
    engine: Engine,
    component: Component,
    /// Its cache entry.
    entry: std::path::PathBuf,
    origin: Origin,
}

/// The cache folder, checked: `None` when it cannot be made or opened
/// (the call then runs without a cache and says why); code 7 when someone
/// other than root and this user could change it.
fn cache_folder(
    cache_dir: &std::path::Path,
    log: &mut dyn FnMut(String),
) -> Result<Option<TrustedDir>, CniError> {
    match TrustedDir::open(cache_dir, true) {
        Ok(dir) => Ok(Some(dir)),
        Err(e @ TrustError::Unsafe { .. }) => Err(CniError::InvalidConfig(format!(
            "ipam.cacheDir {} is refused: {e}; compiled policies are native code this \
             process runs, so no one else may be able to change that folder or any above it",
            cache_dir.display()
        ))),
        Err(e) => {
            log(format!(
                "cannot cache the policy in {}: {e}; running it without a cache",
                cache_dir.display()
            ));
            Ok(None)
        }
    }
}

/// The policy's component, from the cache, or from the artifact built into
/// the binary, or compiled; the last two are written into the cache.
fn compile(source: &PolicySource, cache_dir: &std::path::Path) -> Result<Compiled, CniError> {
    let log = &mut |m| log::info!("{m}");
    let engine = engine()?;
    let name = cache::entry_name(&engine, source.hash());
    let dir = cache_folder(cache_dir, log)?;
    let found = |engine, component, origin| Compiled {
        engine,
        component,
        entry: cache_dir.join(&name),
        origin,
    };
    if let Some(dir) = &dir
        && let Some(component) = cache::lookup(&engine, dir, &name, log)
    {
        return Ok(found(engine, component, Origin::Cached));
    }
    // A miss: one call of the node fills the entry, the others wait for it
    // and then find it.
    let turn = dir.as_ref().and_then(|d| cache::compile_turn(d, &name));
    if let (Some(dir), Some(_)) = (&dir, &turn)
        && let Some(component) = cache::lookup(&engine, dir, &name, log)
    {
        return Ok(found(engine, component, Origin::Cached));
    }
    let started = std::time::Instant::now();
    if let Some(artifact) = source.precompiled()
        && let Some(component) = cache::install(&engine, dir.as_ref(), &name, artifact, log)
    {
        log(format!(
            "installed the precompiled policy {} in {} ms",
            source.name(),
            started.elapsed().as_millis(),
        ));
        return Ok(found(engine, component, Origin::Precompiled));
    }
    let compiler = compiler()?;
    let component =
        cache::compile(&compiler, dir.as_ref(), &name, source.wasm(), log).map_err(|e| {
            CniError::InvalidConfig(format!(
                "policy {} is not a valid WebAssembly component: {}",
                source.name(),
                root_message(&e)
            ))
        })?;
    // Once per node and policy: what a cold call spent its time on.
    log(format!(
        "compiled policy {} in {} ms into {}",
        source.name(),
        started.elapsed().as_millis(),
        cache_dir.display()
    ));
    Ok(found(compiler, component, Origin::Compiled))
}

/// A policy ready to run: compiled (or loaded from the cache) and linked.
pub struct Sandbox {
    engine: Engine,
    pre: IpamPolicyPre<HostState>,
    name: String,
    /// Whether it imports the `dhcp` capability.
    imports_dhcp: bool,
}

/// One call into a policy: what it is for, and what the host gives it.
pub struct Invocation<'a> {
    pub ctx: &'a Context,
    pub op: &'a Op,
    pub limits: &'a Limits,
    /// The clock the policy sees.
    pub now: u64,
    /// The `dhcp` capability, for a policy that imports it on a network
    /// that grants it; without it the import makes no exchange.
    pub dhcp: Option<std::sync::Arc<crate::dhcp::Capability>>,
}

impl<'a> Invocation<'a> {
    /// A call with nothing beyond the contract's own imports.
    pub fn new(ctx: &'a Context, op: &'a Op, limits: &'a Limits, now: u64) -> Invocation<'a> {
        Invocation {
            ctx,
            op,
            limits,
            now,
            dhcp: None,
        }
    }

    /// The same call, with the `dhcp` capability when there is one.
    pub fn with_dhcp(self, dhcp: &Option<std::sync::Arc<crate::dhcp::Capability>>) -> Self {
        Invocation {
            dhcp: dhcp.clone(),
            ..self
        }
    }
}

struct FixedWallClock(Duration);
impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct FixedMonotonicClock;
impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Bumps the engine's epoch every tick until stopped: at each bump the
/// call's epoch callback weighs the policy's own time against its deadline.
struct Watchdog(mpsc::Sender<()>);

impl Watchdog {
    fn start(engine: Engine, timeout: Duration) -> Watchdog {
        // A tenth of the deadline, so a runaway policy is stopped within
        // 110% of it; between 1 and 100 ms.
        let tick = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                engine.increment_epoch();
            }
        });
        Watchdog(tx)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl Sandbox {
    pub fn load(source: &PolicySource, cache_dir: &std::path::Path) -> Result<Sandbox, CniError> {
        let compiled = compile(source, cache_dir)?;
        Sandbox::link(compiled.engine, &compiled.component, source.name())
    }

    /// Links a compiled policy against the host's imports; this also checks
    /// its exports and every type against the world.
    fn link(engine: Engine, component: &Component, name: String) -> Result<Sandbox, CniError> {
        let mut linker = Linker::new(&engine);
        let ty = component.component_type();
        let imports_dhcp = ty.imports(&engine).any(|(name, _)| is_dhcp_import(name));
        wasi::add_imported(&mut linker, ty.imports(&engine).map(|(name, _)| name))
            .and_then(|()| {
                IpamPolicy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            })
            .and_then(|()| match imports_dhcp {
                true => bindings::optional::cni::ipam::dhcp::add_to_linker::<
                    HostState,
                    HasSelf<HostState>,
                >(&mut linker, |s| s),
                false => Ok(()),
            })
            .map_err(|e| CniError::internal(format!("cannot link the policy imports: {e}")))?;
        let pre = linker
            .instantiate_pre(component)
            .and_then(IpamPolicyPre::new)
            .map_err(|e| {
                CniError::InvalidConfig(format!(
                    "policy {name} does not implement the {POLICY_WORLD} world: {}",
                    root_message(&e)
                ))
            })?;
        Ok(Sandbox {
            engine,
            pre,
            name,
            imports_dhcp,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the policy imports the `dhcp` capability, which a network
    /// must grant.
    pub fn imports_dhcp(&self) -> bool {
        self.imports_dhcp
    }

    /// Runs `op` against `txn` and hands the transaction back: the caller
    /// commits it only if the answer is a success.
    pub fn call(
        &self,
        txn: Box<dyn Txn>,
        call: &Invocation,
    ) -> (Result<Result<Answer, IpamError>, CniError>, Box<dyn Txn>) {
        let Invocation {
            ctx,
            op,
            limits,
            now,
            ..
        } = *call;
        let stdout = MemoryOutputPipe::new(PIPE_CAPACITY);
        let stderr = MemoryOutputPipe::new(PIPE_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedWallClock(Duration::from_secs(now)))
            .monotonic_clock(FixedMonotonicClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut state = HostState::new(txn, now, wasi, limits.memory_bytes, self.name.clone());
        state.dhcp = call.dhcp.clone();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        // The deadline charges the policy's own execution, not the time the
        // host spends in the store or a DHCP exchange for it: an etcd that
        // is slow but within its own timeout (whose expiry is code 11), or a
        // DHCP server that takes seconds, must not make a healthy policy
        // look broken (999).
        store.set_epoch_deadline(1);
        let (started, timeout) = (std::time::Instant::now(), limits.timeout);
        store.epoch_deadline_callback(move |ctx| {
            let own = started.elapsed().saturating_sub(ctx.data().host_time);
            if own >= timeout {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        let result = store.set_fuel(limits.fuel).and_then(|()| {
            let _watchdog = Watchdog::start(self.engine.clone(), limits.timeout);
            let instance = self.pre.instance_pre().instantiate(&mut store)?;
            if let Some(answer) = call_optional(&mut store, &instance, op, ctx)? {
                return Ok(answer);
            }
            let bindings = IpamPolicy::new(&mut store, &instance)?;
            let policy = bindings.cni_ipam_policy();
            Ok(match op {
                Op::Add(a) => policy.call_add(&mut store, ctx, a)?.map(Answer::Allocation),
                Op::Del(a) => policy.call_del(&mut store, ctx, a)?.map(|()| Answer::Done),
                Op::Check(a, prev) => policy
                    .call_check(&mut store, ctx, a, prev.as_ref())?
                    .map(|()| Answer::Done),
                Op::Gc(valid) => policy
                    .call_gc(&mut store, ctx, valid)?
                    .map(Answer::Released),
                Op::Status => policy
                    .call_status(&mut store, ctx)?
                    .map(Answer::Availability),
                Op::ReleaseNode | Op::Leases | Op::Usage => unreachable!("called above"),
            })
        });
        let captured = forward_output(&self.name, &stdout, &stderr);
        let state = store.into_data();
        let mut result = result.map_err(|e| self.failure(&e, limits, &captured));
        // A call that failed after an exchange failed: the exchange's own
        // code and words (see `dhcp` in wit/ipam.wit).
        if let (Ok(Err(_)), Some(e)) = (&result, state.dhcp_failure) {
            result = Err(e.into());
        }
        (result, state.txn)
    }

    /// Names what went wrong when a call failed outside the policy's own
    /// error values.
    fn failure(&self, e: &wasmtime::Error, limits: &Limits, stderr_tail: &str) -> CniError {
        let name = &self.name;
        if let Some(se) = e.downcast_ref::<StoreError>() {
            return se.clone().into();
        }
        let what = if let Some(limit) = e.downcast_ref::<LimitError>() {
            limit.to_string()
        } else if let Some(trap) = e.downcast_ref::<Trap>() {
            match trap {
                Trap::Interrupt => {
                    format!("did not finish within {} ms", limits.timeout.as_millis())
                }
                Trap::OutOfFuel => format!("ran out of fuel ({} units)", limits.fuel),
                Trap::StackOverflow => "overflowed its stack".to_string(),
                other => format!("trapped: {other}"),
            }
        } else {
            format!("failed: {}", root_message(e))
        };
        let mut msg = format!("policy {name} {what}");
        if !stderr_tail.is_empty() {
            msg.push_str(&format!("; its stderr ends: {stderr_tail}"));
        }
        CniError::internal(msg)
    }
}

/// Runs `op` when it is one of the optional exports (world
/// `ipam-policy-tools`): [`Answer::NotExported`] when the policy does not
/// export its interface, `None` for the operations every policy has.
fn call_optional(
    store: &mut Store<HostState>,
    instance: &wasmtime::component::Instance,
    op: &Op,
    ctx: &Context,
) -> wasmtime::Result<Option<Result<Answer, IpamError>>> {
    use bindings::optional::exports::cni::ipam::{inspect, nodes};
    let pre = instance.instance_pre(&*store);
    Ok(Some(match op {
        Op::ReleaseNode => match nodes::GuestIndices::new(&pre) {
            Err(_) => Ok(Answer::NotExported),
            Ok(ix) => ix
                .load(&mut *store, instance)?
                .call_release_node(&mut *store, ctx)?
                .map(Answer::Released),
        },
        Op::Leases | Op::Usage => match inspect::GuestIndices::new(&pre) {
            Err(_) => Ok(Answer::NotExported),
            Ok(ix) => {
                let guest = ix.load(&mut *store, instance)?;
                if let Op::Leases = op {
                    guest.call_leases(&mut *store, ctx)?.map(Answer::Leases)
                } else {
                    guest.call_usage(&mut *store, ctx)?.map(Answer::Usage)
                }
            }
        },
        _ => return Ok(None),
    }))
}

fn root_message(e: &wasmtime::Error) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    parts.join(": ")
}

/// Sends the policy's stdout and stderr to our log (stderr; stdout belongs
/// to the CNI result) and returns the tail of its stderr for error messages.
fn forward_output(name: &str, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) -> String {
    for (stream, pipe) in [("stdout", stdout), ("stderr", stderr)] {
        let bytes = pipe.contents();
        for line in String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.is_empty())
        {
            log::info!("policy {name} {stream}: {line}");
        }
    }
    let text = String::from_utf8_lossy(&stderr.contents())
        .trim()
        .to_string();
    let tail: String = text
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    tail.replace('\n', " | ")
}
