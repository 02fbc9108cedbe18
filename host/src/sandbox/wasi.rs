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
//! same views. A unit test checks that each entry adds what wasmtime-wasi
//! adds under that name. Whether the names are the ones components import
//! is checked by running them: the misbehave test policy imports all of
//! WASI 0.2 but `wasi:random`, and the Python policy (in CI) `wasi:random`
//! too. A wasmtime-wasi upgrade that adds an interface needs a row here.

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

/// A table entry: the interface's name and the binding that links it. The
/// first word says which part of the host state the binding works on.
macro_rules! entry {
    (io $name:literal, $($m:ident)::+) => { entry!(@ $name, $($m)::+, Io, table) };
    (clocks $name:literal, $($m:ident)::+) => {
        entry!(@ $name, $($m)::+, WasiClocks, HostState::clocks)
    };
    (fs $name:literal, $($m:ident)::+) => {
        entry!(@ $name, $($m)::+, WasiFilesystem, HostState::filesystem)
    };
    (random $name:literal, $($m:ident)::+) => { entry!(@ $name, $($m)::+, WasiRandom, random) };
    (cli $name:literal, $($m:ident)::+) => { entry!(@ $name, $($m)::+, WasiCli, HostState::cli) };
    (sockets $name:literal, $($m:ident)::+) => {
        entry!(@ $name, $($m)::+, WasiSockets, HostState::sockets)
    };
    (@ $name:literal, $($m:ident)::+, $data:ty, $view:expr) => {
        ($name, |l| $($m)::+::add_to_linker::<HostState, $data>(l, $view))
    };
}

/// Each WASI 0.2 interface the sandbox can link, by name without version.
const INTERFACES: &[(&str, Adder)] = &[
    entry!(io "wasi:io/error", bindings::io::error),
    entry!(io "wasi:io/poll", sync::io::poll),
    entry!(io "wasi:io/streams", sync::io::streams),
    entry!(clocks "wasi:clocks/wall-clock", bindings::clocks::wall_clock),
    entry!(clocks "wasi:clocks/monotonic-clock", bindings::clocks::monotonic_clock),
    entry!(fs "wasi:filesystem/types", sync::filesystem::types),
    entry!(fs "wasi:filesystem/preopens", bindings::filesystem::preopens),
    entry!(random "wasi:random/random", bindings::random::random),
    entry!(random "wasi:random/insecure", bindings::random::insecure),
    entry!(random "wasi:random/insecure-seed", bindings::random::insecure_seed),
    entry!(cli "wasi:cli/exit", bindings::cli::exit),
    entry!(cli "wasi:cli/environment", bindings::cli::environment),
    entry!(cli "wasi:cli/stdin", bindings::cli::stdin),
    entry!(cli "wasi:cli/stdout", bindings::cli::stdout),
    entry!(cli "wasi:cli/stderr", bindings::cli::stderr),
    entry!(cli "wasi:cli/terminal-input", bindings::cli::terminal_input),
    entry!(cli "wasi:cli/terminal-output", bindings::cli::terminal_output),
    entry!(cli "wasi:cli/terminal-stdin", bindings::cli::terminal_stdin),
    entry!(cli "wasi:cli/terminal-stdout", bindings::cli::terminal_stdout),
    entry!(cli "wasi:cli/terminal-stderr", bindings::cli::terminal_stderr),
    entry!(sockets "wasi:sockets/tcp-create-socket", bindings::sockets::tcp_create_socket),
    entry!(sockets "wasi:sockets/instance-network", bindings::sockets::instance_network),
    // The one binding with link options (unstable features, all off).
    ("wasi:sockets/network", |l| {
        bindings::sockets::network::add_to_linker::<HostState, WasiSockets>(
            l,
            &Default::default(),
            HostState::sockets,
        )
    }),
    entry!(sockets "wasi:sockets/ip-name-lookup", bindings::sockets::ip_name_lookup),
    entry!(sockets "wasi:sockets/tcp", sync::sockets::tcp),
    entry!(sockets "wasi:sockets/udp", sync::sockets::udp),
    entry!(sockets "wasi:sockets/udp-create-socket", sync::sockets::udp_create_socket),
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
