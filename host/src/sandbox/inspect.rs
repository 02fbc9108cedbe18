//! What a component asks of its host and offers it, checked against the
//! `cni:ipam` contract before it is trusted with a network: the work of
//! `wasm-ipam compile` at install time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::component::types::ComponentItem;

use super::{Compiled, Origin, PolicySource, Sandbox, compile};
use crate::cni::CniError;

/// WASI 0.2 packages the sandbox links. A policy's standard library imports
/// some of them; the sandbox provides them with nothing behind them (no
/// files, sockets, environment or real clock).
const WASI_PACKAGES: [&str; 6] = ["cli", "clocks", "filesystem", "io", "random", "sockets"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// Part of the `cni:ipam` world.
    Contract,
    /// WASI 0.2, linked empty.
    Wasi,
    /// Anything else: the component is refused.
    Foreign,
}

pub struct Inspection {
    pub imports: Vec<(String, ImportKind)>,
    /// Each exported interface and its functions.
    pub exports: Vec<(String, Vec<String>)>,
    pub cache_entry: PathBuf,
    /// Where the code came from, and how long it took to get it.
    pub origin: Origin,
    pub took: Duration,
}

pub fn classify(name: &str) -> ImportKind {
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    match path.split_once('/') {
        Some(("cni:ipam", _)) if super::contract_compatible(version) => ImportKind::Contract,
        Some((pkg, _))
            if version.starts_with("0.2.")
                && pkg
                    .strip_prefix("wasi:")
                    .is_some_and(|p| WASI_PACKAGES.contains(&p)) =>
        {
            ImportKind::Wasi
        }
        _ => ImportKind::Foreign,
    }
}

/// Compiles `source` into the cache at `cache_dir` (unless it is there) and
/// checks it: no import outside the contract, and the world's exports with
/// the right types.
pub fn inspect(source: &PolicySource, cache_dir: &Path) -> Result<Inspection, CniError> {
    let start = Instant::now();
    let Compiled {
        engine,
        component,
        entry: cache_entry,
        origin,
    } = compile(source, cache_dir)?;
    let took = start.elapsed();
    let ty = component.component_type();
    let imports: Vec<(String, ImportKind)> = ty
        .imports(&engine)
        .map(|(name, _)| (name.to_string(), classify(name)))
        .collect();
    let exports = ty
        .exports(&engine)
        .map(|(name, e)| {
            let funcs = match e.ty {
                ComponentItem::ComponentInstance(i) => i
                    .exports(&engine)
                    .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                    .map(|(f, _)| f.to_string())
                    .collect(),
                _ => Vec::new(),
            };
            (name.to_string(), funcs)
        })
        .collect();
    let foreign: Vec<&str> = imports
        .iter()
        .filter(|(_, k)| *k == ImportKind::Foreign)
        .map(|(n, _)| n.as_str())
        .collect();
    if !foreign.is_empty() {
        // Keep no compiled copy of a component that will never run.
        let _ = std::fs::remove_file(&cache_entry);
        return Err(CniError::InvalidConfig(format!(
            "policy {} imports what the cni:ipam contract does not offer: {}; a policy may import cni:ipam/*@{}.x and WASI 0.2 ({})",
            source.name(),
            foreign.join(", "),
            super::CONTRACT_VERSION
                .rsplit_once('.')
                .map_or("", |(s, _)| s),
            WASI_PACKAGES.map(|p| format!("wasi:{p}")).join(", ")
        )));
    }
    if let Err(e) = Sandbox::link(engine, &component, source.name()) {
        let _ = std::fs::remove_file(&cache_entry);
        return Err(e);
    }
    Ok(Inspection {
        imports,
        exports,
        cache_entry,
        origin,
        took,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_sorted_into_contract_wasi_and_foreign() {
        for (name, kind) in [
            ("cni:ipam/store@0.1.0", ImportKind::Contract),
            ("cni:ipam/store@0.1.4", ImportKind::Contract),
            ("cni:ipam/store@0.2.0", ImportKind::Foreign),
            ("cni:ipam/store@1.1.0", ImportKind::Foreign),
            ("cni:ipam/store", ImportKind::Foreign),
            ("wasi:cli/environment@0.2.6", ImportKind::Wasi),
            ("wasi:io/streams@0.2.0", ImportKind::Wasi),
            ("wasi:http/outgoing-handler@0.2.0", ImportKind::Foreign),
            ("wasi:cli/environment@0.3.0", ImportKind::Foreign),
            ("evil:net/socket", ImportKind::Foreign),
            ("store", ImportKind::Foreign),
        ] {
            assert_eq!(classify(name), kind, "{name}");
        }
    }
}
