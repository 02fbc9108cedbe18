//! The engine settings every policy is compiled under, in one place.
//!
//! The host compiles with them on a cache miss, and `build.rs` includes this
//! file to precompile the built-in policies into the binary. wasmtime
//! refuses to map an artifact whose settings differ from the engine's, so
//! the two must never drift: a drift would not break a call, but it would
//! put the compiler back on every built-in policy's first call.
//!
//! This file depends on nothing but wasmtime, so that `build.rs` can use it.

use wasmtime::{Config, OptLevel};

/// The settings every policy runs under. They are baked into compiled
/// artifacts, so they never vary at run time: limits are set per store.
pub fn config() -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(true)
        .max_wasm_stack(512 << 10);
    config
}

/// The settings a policy is compiled with.
pub fn compiler_config() -> Config {
    let mut config = config();
    // Cranelift's optimisations cost a quarter of the compile (0.60 ->
    // 0.45 s of CPU for host-local) and buy nothing measurable here: a
    // policy call is a few hundred microseconds of instantiation and host
    // calls either way (BENCHMARKS.md). The cold first call is the one that
    // waits for the compiler.
    config.cranelift_opt_level(OptLevel::None);
    config
}
