//! What a policy instance can reach: its transaction, a log, the clock the
//! host chose, WASI with nothing in it, and, where the network grants it,
//! the `dhcp` capability (`dhcp.rs`). Everything it asks for is
//! bounded here, so a hostile policy costs the host bounded memory.

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::cni::ipam::{clock, log, store, types};
use crate::netrecord::RESERVED_PREFIX;
use crate::store::{Entry, StoreError, Txn};

pub const MAX_KEY_BYTES: usize = 512;
/// A lease names its container, whose id the kernel lets be as long as an
/// environment variable (128 KiB, `MAX_ARG_STRLEN`), and the spec puts no
/// bound on it: a value holds such an id with room to spare.
pub const MAX_VALUE_BYTES: usize = 256 << 10;
pub const MAX_SCAN: u32 = 1000;
pub const MAX_STORE_CALLS: u64 = 1_000_000;
pub const MAX_WRITTEN_BYTES: u64 = 64 << 20;
const MAX_LOG_LINES: u32 = 200;
const MAX_LOG_LINE: usize = 4096;

/// A policy broke one of the sandbox's limits; the call fails.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("exceeded its memory limit of {0} MiB")]
    Memory(usize),
    #[error("used a store key of {0} bytes; the limit is {MAX_KEY_BYTES}")]
    KeyTooLarge(usize),
    #[error("stored a value of {0} bytes; the limit is {MAX_VALUE_BYTES}")]
    ValueTooLarge(usize),
    #[error("made more than {MAX_STORE_CALLS} store calls")]
    TooManyCalls,
    #[error("wrote more than {MAX_WRITTEN_BYTES} bytes to the store")]
    TooMuchWritten,
    #[error("grew a table beyond {0} elements")]
    Table(usize),
    #[error("used the store key {0:?}; keys under {RESERVED_PREFIX:?} belong to the host")]
    Reserved(String),
    #[error("{0}")]
    Dhcp(String),
}

pub struct HostState {
    pub txn: Box<dyn Txn>,
    pub now: u64,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub memory_limit: usize,
    calls: u64,
    written: u64,
    log_lines: u32,
    pub policy_name: String,
    crash_at_call: Option<u64>,
    /// Time spent in the store and in DHCP exchanges on the policy's
    /// behalf, which its deadline does not charge (see `Sandbox::call`).
    pub host_time: std::time::Duration,
    /// The call's `dhcp` capability, when the policy imports it and the
    /// network grants it.
    pub dhcp: Option<std::sync::Arc<crate::dhcp::Capability>>,
    /// The last DHCP exchange of the call that failed, reported with its
    /// own code if the call fails.
    pub dhcp_failure: Option<crate::dhcp::DhcpError>,
}

impl HostState {
    pub fn new(
        txn: Box<dyn Txn>,
        now: u64,
        wasi: WasiCtx,
        memory_limit: usize,
        policy_name: String,
    ) -> HostState {
        HostState {
            txn,
            now,
            wasi,
            table: ResourceTable::new(),
            memory_limit,
            calls: 0,
            written: 0,
            log_lines: 0,
            policy_name,
            crash_at_call: match crate::envvars::crash_point() {
                Some(crate::crash::Point::StoreCall(n)) => Some(n),
                _ => None,
            },
            host_time: std::time::Duration::ZERO,
            dhcp: None,
            dhcp_failure: None,
        }
    }

    /// Runs one store operation, adding its time to `host_time`.
    fn in_store<R>(&mut self, op: impl FnOnce(&mut dyn Txn) -> R) -> R {
        let start = std::time::Instant::now();
        let out = op(&mut *self.txn);
        self.host_time += start.elapsed();
        out
    }

    fn count_call(&mut self, key: &str) -> Result<()> {
        self.calls += 1;
        if self.crash_at_call == Some(self.calls) {
            crate::crash::now();
        }
        if self.calls > MAX_STORE_CALLS {
            return Err(LimitError::TooManyCalls.into());
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(LimitError::KeyTooLarge(key.len()).into());
        }
        Ok(())
    }

    /// A key the policy may name: within the limits and not the host's.
    fn policy_key(&mut self, key: &str) -> Result<()> {
        self.count_call(key)?;
        if key.starts_with(RESERVED_PREFIX) {
            return Err(LimitError::Reserved(key.to_string()).into());
        }
        Ok(())
    }
}

fn store_err(e: StoreError) -> wasmtime::Error {
    wasmtime::Error::new(e)
}

impl types::Host for HostState {}

impl store::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>> {
        self.policy_key(&key)?;
        self.in_store(|t| t.get(&key)).map_err(store_err)
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> Result<()> {
        self.policy_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(LimitError::ValueTooLarge(value.len()).into());
        }
        self.written += (key.len() + value.len()) as u64;
        if self.written > MAX_WRITTEN_BYTES {
            return Err(LimitError::TooMuchWritten.into());
        }
        self.in_store(|t| t.put(&key, &value)).map_err(store_err)
    }

    fn delete(&mut self, key: String) -> Result<()> {
        self.policy_key(&key)?;
        self.in_store(|t| t.delete(&key)).map_err(store_err)
    }

    fn scan(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        if prefix.starts_with(RESERVED_PREFIX) {
            return Err(LimitError::Reserved(prefix).into());
        }
        self.count_call(&prefix)?;
        // The host's keys are left out of the page, and the page is topped
        // up past them, so a short page still means the end of the prefix.
        let limit = limit.min(MAX_SCAN);
        let mut out = Vec::new();
        let mut after = start_after;
        loop {
            let page = self
                .in_store(|t| t.scan(&prefix, after.as_deref(), limit))
                .map_err(store_err)?;
            let full = page.len() == limit as usize;
            after = page.last().map(|(k, _)| k.clone());
            out.extend(
                page.into_iter()
                    .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX)),
            );
            if !full || out.len() >= limit as usize {
                out.truncate(limit as usize);
                return Ok(out);
            }
        }
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> Result<()> {
        // Printed with the WIT's own names for the levels.
        let (shown, word) = match level {
            log::Level::Debug => (::log::Level::Debug, "debug"),
            log::Level::Info => (::log::Level::Info, "info"),
            log::Level::Warn => (::log::Level::Warn, "warn"),
            log::Level::Error => (::log::Level::Error, "error"),
        };
        // Debug lines show only with WASM_IPAM_DEBUG, and do not count
        // against the cap when they do not.
        if !crate::diag::shows(shown) {
            return Ok(());
        }
        self.log_lines += 1;
        if self.log_lines <= MAX_LOG_LINES {
            let mut end = message.len().min(MAX_LOG_LINE);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            ::log::log!(
                shown,
                "policy {} {word}: {}",
                self.policy_name,
                &message[..end]
            );
        }
        Ok(())
    }
}

impl clock::Host for HostState {
    fn now(&mut self) -> Result<u64> {
        Ok(self.now)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Few instances, memories and tables: a policy is one component.
const MAX_TABLE_ELEMENTS: usize = 20_000;

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        if desired > self.memory_limit {
            return Err(LimitError::Memory(self.memory_limit >> 20).into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(LimitError::Table(MAX_TABLE_ELEMENTS).into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        32
    }
    fn memories(&self) -> usize {
        8
    }
}
