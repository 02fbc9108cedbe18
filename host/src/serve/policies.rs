//! Loaded policies, kept between calls in `wasm-ipam serve`.
//!
//! A one-shot process loads its policy for each call: an engine, the cached
//! artifact mapped and checked, the imports linked (0.7 ms of a 3.5 ms ADD,
//! BENCHMARKS.md). A server keeps what it loaded, keyed by the policy's
//! content hash and cache folder, so a changed policy file is a new entry
//! and the next call loads it. A [`Sandbox`] serves concurrent calls: each
//! call has its own wasmtime store, and the deadline watchdog's epoch ticks
//! only make the other calls' stores check their own clocks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::cni::CniError;
use crate::sandbox::{PolicySource, Sandbox};

/// At most this many loaded policies are kept; past it the server starts
/// again from none (a node runs a handful of policies, and an entry is a
/// few megabytes of mapped code).
const MAX_KEPT: usize = 32;

type Key = ([u8; 32], PathBuf);

static KEPT: OnceLock<Mutex<HashMap<Key, Arc<Sandbox>>>> = OnceLock::new();

/// Makes this process keep the policies it loads: `wasm-ipam serve` only.
pub fn keep_loaded() {
    KEPT.get_or_init(Default::default);
}

/// The loaded policy for `source`: kept from an earlier call in a server,
/// else loaded now.
pub fn load(source: &PolicySource, cache_dir: &Path) -> Result<Arc<Sandbox>, CniError> {
    let Some(kept) = KEPT.get() else {
        return Ok(Arc::new(Sandbox::load(source, cache_dir)?));
    };
    let key = (*source.hash(), cache_dir.to_path_buf());
    if let Some(sandbox) = kept.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(sandbox.clone());
    }
    // Loaded outside the lock: a first call of one policy must not hold up
    // the calls of the others. Two first calls at once both load; one
    // entry is kept.
    let sandbox = Arc::new(Sandbox::load(source, cache_dir)?);
    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() >= MAX_KEPT {
        kept.clear();
    }
    Ok(kept.entry(key).or_insert(sandbox).clone())
}
