//! `wasm-ipam compile`: validate a policy and warm the compile cache at
//! install time, so that the first pod does not wait for the compiler.

use std::io::Write;
use std::path::Path;

use crate::sandbox::{ImportKind, Origin, PolicySource, inspect, is_dhcp_import};

pub fn run(policy: &str, cache_dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let source = PolicySource::resolve(policy).map_err(|e| anyhow::anyhow!("{e}"))?;
    let found = inspect(&source, cache_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    writeln!(
        out,
        "policy {} ({} bytes, blake3 {})",
        source.name(),
        source.wasm().len(),
        &blake3::Hash::from_bytes(*source.hash()).to_hex()[..16]
    )?;
    let exports = |interface: &str| found.exports.iter().any(|(name, _)| name == interface);
    if exports(crate::sandbox::NODES_INTERFACE) && exports(crate::sandbox::INSPECT_INTERFACE) {
        writeln!(
            out,
            "  implements {} (ipam-policy, with inspect and nodes for the operator tools)",
            crate::sandbox::TOOLS_WORLD
        )?;
    } else {
        writeln!(out, "  implements {}", crate::sandbox::POLICY_WORLD)?;
    }
    writeln!(out, "  exports:")?;
    for (name, funcs) in &found.exports {
        writeln!(out, "    {name}: {}", funcs.join(", "))?;
    }
    writeln!(out, "  imports:")?;
    let width = found
        .imports
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(0);
    for (name, kind) in &found.imports {
        let note = match kind {
            ImportKind::Contract if is_dhcp_import(name) => {
                "cni:ipam contract: DHCP exchanges, where a network grants \"dhcp\""
            }
            ImportKind::Contract => "cni:ipam contract",
            ImportKind::Wasi => "WASI, linked empty",
            ImportKind::Foreign => "refused",
        };
        writeln!(out, "    {name:<width$}  {note}")?;
    }
    if found.imports.iter().any(|(n, _)| is_dhcp_import(n)) {
        writeln!(
            out,
            "  (it runs only on networks whose ipam says \"grant\": [\"dhcp\"]; elsewhere it is refused with code 7)"
        )?;
    }
    if found.imports.iter().any(|(_, k)| *k == ImportKind::Wasi) {
        writeln!(
            out,
            "  (WASI is there for the language's standard library: the sandbox gives it no files, sockets, environment or real clock)"
        )?;
    }
    let (entry, ms) = (found.cache_entry.display(), found.took.as_millis());
    match found.origin {
        Origin::Compiled => writeln!(out, "  compiled in {ms} ms into {entry}")?,
        Origin::Precompiled => writeln!(
            out,
            "  precompiled into this binary; installed in {ms} ms into {entry}"
        )?,
        Origin::Cached => writeln!(out, "  already compiled: {entry}")?,
    }
    Ok(())
}
