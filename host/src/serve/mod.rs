//! `wasm-ipam serve`: an optional node-resident accelerator for CNI calls.
//!
//! Every CNI call is still its own process, started by the runtime. When
//! a server answers on the node's socket ([`crate::envvars::SOCKET`],
//! by default `/run/wasm-ipam/wasm-ipam.sock`), that process forwards the
//! call (its `CNI_*` environment, working directory and config) and prints
//! what the server answers; when none answers, or the server stops during
//! the call, the process runs the call itself. The pattern is the reference
//! dhcp plugin's daemon, but optional: nothing needs the server.
//!
//! Why it exists (BENCHMARKS.md): a one-shot ADD in an empty pool took
//! 3.5 ms against the reference host-local's 2.4 ms, and of ours 0.7 ms
//! was loading the policy (engine, mapped artifact, linking), which a
//! server does once per policy ([`policies`]), and 0.2 ms opening the
//! store, whose connections a server keeps ([`stores`]).
//!
//! A served call runs the same code as a one-shot one ([`crate::invoke`]):
//! the same config checks, the same store, one transaction per call on the
//! same locks, the same sandbox limits. So the guarantees are the same:
//!
//! - All or nothing: a server killed during a call leaves the transaction
//!   uncommitted (SQLite's journal rolls it back; etcd never saw the
//!   commit), exactly as a killed process would. The client then runs the
//!   call itself; an ADD whose commit landed before the server died is
//!   found by the policy, as a runtime's retry would find it.
//! - DHCP leases: the server also renews the leases of this node that the
//!   `dhcp` capability took, before T1 and at T2 ([`renewals`]), reading them
//!   from the stores, so a restart loses none. Without a server, a lease
//!   lapses at its expiry.
//! - Reconciling: with `--reconcile-cri`, the server also runs the
//!   reconciler's pass on a timer ([`reconciler`]), releasing what pods the
//!   runtime no longer has; off unless given the runtime's socket.
//! - Root only: the socket is created mode 0600 (in a 0700 folder when the
//!   server creates the folder), and the server answers only peers with
//!   its own user id (`SO_PEERCRED`); a client tells its call only to a
//!   server of its own user id.
//! - Never worse than no server: every wait of the client is bounded, a
//!   server at capacity turns calls away, and a call its client gave up
//!   on never commits ([`client`], [`guard`]).

pub mod client;
pub mod guard;
pub mod policies;
pub mod reconciler;
pub mod renewals;
pub mod server;
pub mod stores;
mod wire;
