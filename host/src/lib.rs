//! wasm-ipam: a CNI IPAM plugin whose allocation policy is a sandboxed
//! WebAssembly component.
//!
//! The host owns the CNI protocol ([`cni`], over the shared `cni-protocol`
//! crate): environment, config, versions, error codes and output. A policy owns only allocation decisions, made over
//! a transactional key-value store ([`store`]) from inside a sandbox
//! ([`sandbox`]). [`invoke`] runs one CNI call through all three.
//!
//! The binary is started once per CNI call, so everything here is arranged
//! for a short process: nothing is done that the call does not need, and
//! compiled policies come from a cache.

pub mod cli;
pub mod cni;
pub mod crash;
pub mod demo;
pub mod dhcp;
pub mod diag;
pub mod envvars;
pub mod invoke;
pub mod netrecord;
pub mod reboot;
pub mod reconcile;
pub mod release;
pub mod retry;
pub mod runner;
pub mod sandbox;
pub mod serve;
pub mod store;
pub mod tools;
pub mod trust;
