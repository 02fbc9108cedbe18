//! Links the WASI 0.2 interfaces a policy imports, and only those.
//!
//! A policy's standard library imports a few WASI interfaces (a Rust policy:
//! `wasi:io` and `wasi:cli`), and each process links them again. Adding
//! all of WASI, as `wasmtime_wasi::p2::add_to_linker_sync` does, registers
//! about two hundred host functions, most of them filesystem and socket
//! calls no policy makes, and in a fresh process that was a quarter of
//! loading a policy. A component declares every interface whose functions
//! or types it uses, so linking exactly its imports links everything it
//! can reach; anything else it names is left for `instantiate_pre` to
//! refuse, as before.
//!
//! The table mirrors `add_to_linker_with_options_sync` of wasmtime-wasi
//! 48: the same bindings (sync where the crate has a sync variant) and the
//! same views. A test checks that it offers every interface that does.

use std::collections::BTreeSet;

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::{self, sync};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};

use super::state::HostState;

type L = Linker<HostState>;
type Adder = fn(&mut L) -> wasmtime::Result<()>;

/// The `wasi:io` interfaces work on the resource table alone.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

fn table(s: &mut HostState) -> &mut ResourceTable {
    s.ctx().table
}

fn random(s: &mut HostState) -> &mut wasmtime_wasi::random::WasiRandomCtx {
    s.ctx().ctx.random()
}

/// Each WASI 0.2 interface the sandbox can link, by name without version.
const INTERFACES: &[(&str, Adder)] = &[
    ("wasi:io/error", |l| {
        bindings::io::error::add_to_linker::<HostState, Io>(l, table)
    }),
    ("wasi:io/poll", |l| {
        sync::io::poll::add_to_linker::<HostState, Io>(l, table)
    }),
    ("wasi:io/streams", |l| {
        sync::io::streams::add_to_linker::<HostState, Io>(l, table)
    }),
    ("wasi:clocks/wall-clock", |l| {
        bindings::clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(l, HostState::clocks)
    }),
    ("wasi:clocks/monotonic-clock", |l| {
        bindings::clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(
            l,
            HostState::clocks,
        )
    }),
    ("wasi:filesystem/types", |l| {
        sync::filesystem::types::add_to_linker::<HostState, WasiFilesystem>(
            l,
            HostState::filesystem,
        )
    }),
    ("wasi:filesystem/preopens", |l| {
        bindings::filesystem::preopens::add_to_linker::<HostState, WasiFilesystem>(
            l,
            HostState::filesystem,
        )
    }),
    ("wasi:random/random", |l| {
        bindings::random::random::add_to_linker::<HostState, WasiRandom>(l, random)
    }),
    ("wasi:random/insecure", |l| {
        bindings::random::insecure::add_to_linker::<HostState, WasiRandom>(l, random)
    }),
    ("wasi:random/insecure-seed", |l| {
        bindings::random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, random)
    }),
    ("wasi:cli/exit", |l| {
        bindings::cli::exit::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:cli/environment", |l| {
        bindings::cli::environment::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:cli/stdin", |l| {
        bindings::cli::stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:cli/stdout", |l| {
        bindings::cli::stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:cli/stderr", |l| {
        bindings::cli::stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:cli/terminal-input", |l| {
        bindings::cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:cli/terminal-output", |l| {
        bindings::cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:cli/terminal-stdin", |l| {
        bindings::cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:cli/terminal-stdout", |l| {
        bindings::cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:cli/terminal-stderr", |l| {
        bindings::cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)
    }),
    ("wasi:sockets/tcp-create-socket", |l| {
        bindings::sockets::tcp_create_socket::add_to_linker::<HostState, WasiSockets>(
            l,
            HostState::sockets,
        )
    }),
    ("wasi:sockets/instance-network", |l| {
        bindings::sockets::instance_network::add_to_linker::<HostState, WasiSockets>(
            l,
            HostState::sockets,
        )
    }),
    ("wasi:sockets/network", |l| {
        bindings::sockets::network::add_to_linker::<HostState, WasiSockets>(
            l,
            &Default::default(),
            HostState::sockets,
        )
    }),
    ("wasi:sockets/ip-name-lookup", |l| {
        bindings::sockets::ip_name_lookup::add_to_linker::<HostState, WasiSockets>(
            l,
            HostState::sockets,
        )
    }),
    ("wasi:sockets/tcp", |l| {
        sync::sockets::tcp::add_to_linker::<HostState, WasiSockets>(l, HostState::sockets)
    }),
    ("wasi:sockets/udp", |l| {
        sync::sockets::udp::add_to_linker::<HostState, WasiSockets>(l, HostState::sockets)
    }),
    ("wasi:sockets/udp-create-socket", |l| {
        sync::sockets::udp_create_socket::add_to_linker::<HostState, WasiSockets>(
            l,
            HostState::sockets,
        )
    }),
];

/// Adds to `linker` each WASI interface named in `imports` (full import
/// names, `wasi:io/poll@0.2.6`); other names are skipped.
pub fn add_imported<'a>(
    linker: &mut L,
    imports: impl IntoIterator<Item = &'a str>,
) -> wasmtime::Result<()> {
    let wanted: BTreeSet<&str> = imports
        .into_iter()
        .map(|name| name.split_once('@').map_or(name, |(path, _)| path))
        .collect();
    for (name, add) in INTERFACES {
        if wanted.contains(name) {
            add(linker)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each entry adds what wasmtime-wasi's own linking adds under that
    /// name: added after it, every entry collides with it.
    #[test]
    fn each_interface_is_the_one_wasmtime_wasi_links() {
        let engine = wasmtime::Engine::default();
        for (name, add) in INTERFACES {
            let mut linker = L::new(&engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
            let err = add(&mut linker).expect_err(name);
            assert!(err.to_string().contains("defined twice"), "{name}: {err}");
        }
    }
}
