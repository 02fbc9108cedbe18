//! `wasm-ipam install`: put this binary where the runtime finds plugins and
//! compile the built-in policies, as a node's installer (a DaemonSet's init
//! container, a package's postinst) does.
//!
//! The copy is written to a temporary file in the same folder, flushed to
//! disk and renamed over the plugin: a runtime that starts `wasm-ipam`
//! meanwhile runs either the old binary or the new one, never half of
//! one, and a copy over a binary that is running cannot fail with "text
//! file busy" the way an in-place write does. The built-in policies are
//! then put into the cache: their artifacts, compiled when the binary was
//! built, or compiled here if the build could not (a cross build), so the
//! first pod never waits for the compiler.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

use crate::sandbox::{Origin, PolicySource, builtin_names, inspect};

/// The plugin's name on the CNI path.
const PLUGIN: &str = "wasm-ipam";

pub fn run(cni_bin_dir: &Path, cache_dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("cannot find this binary")?;
    let bytes = std::fs::read(&me).with_context(|| format!("cannot read {}", me.display()))?;
    std::fs::create_dir_all(cni_bin_dir)
        .with_context(|| format!("cannot make {}", cni_bin_dir.display()))?;
    let dest = cni_bin_dir.join(PLUGIN);
    let temp = cni_bin_dir.join(format!(".{PLUGIN}.install-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        file.sync_all()?;
        std::fs::rename(&temp, &dest)?;
        // The rename is durable once the folder is.
        std::fs::File::open(cni_bin_dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot install {}", dest.display()));
    }
    writeln!(out, "installed {} ({} bytes)", dest.display(), bytes.len())?;
    for name in builtin_names() {
        let source = PolicySource::resolve(name).map_err(|e| anyhow::anyhow!("{e}"))?;
        let found = inspect(&source, cache_dir).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let ms = found.took.as_millis();
        match found.origin {
            Origin::Compiled => writeln!(out, "compiled policy {name} in {ms} ms")?,
            Origin::Precompiled => {
                writeln!(out, "installed the precompiled policy {name} in {ms} ms")?
            }
            Origin::Cached => writeln!(out, "policy {name} was already compiled")?,
        }
    }
    writeln!(out, "compile cache: {}", cache_dir.display())?;
    Ok(())
}
