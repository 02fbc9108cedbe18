//! `wasm-ipam sync-credentials`: put the files of a mounted Secret (etcd's
//! CA, a client certificate and its key, a password file) into a folder
//! on the node, where the network configs' `ipam.store.etcd` settings name
//! them, and keep them in step as the Secret rotates.
//!
//! The runtime runs the plugin on the node, outside any pod, so a Secret
//! mounted into a pod is not where a call can read it. The DaemonSet's
//! init container copies the files once before any call needs them, and a
//! container beside the server copies what changed every `--every`
//! seconds (kubelet itself refreshes a mounted Secret about once a
//! minute); each call reads the files afresh (`store::etcd::credentials`),
//! so the next call uses a rotated certificate.
//!
//! The folder is made 0700 and checked like every folder wasm-ipam trusts
//! (`trust::TrustedDir`), each file is written 0600 to a temporary name
//! and renamed into place: a call reads the old certificate or the new
//! one, never half of one, and a certificate never sits beside another
//! key than its own for longer than between two renames. Files that left
//! the Secret are kept: a config may still name them.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::trust::{TrustedDir, read_regular};

/// The most copied of one file: a certificate chain is a few kilobytes.
const MAX_FILE: u64 = 1 << 20;

/// What `sync-credentials` was asked to do.
pub struct Sync<'a> {
    pub from: &'a Path,
    pub to: &'a Path,
    /// `--every`: seconds between passes, after the first.
    pub every: Option<u64>,
    /// `--optional`: a missing or empty `from` (a Secret volume marked
    /// optional, on a node whose networks use no etcd) copies nothing.
    pub optional: bool,
}

/// Copies every changed file of `from` into `to` once; `--every` again,
/// until the process is stopped.
pub fn run(args: &Sync, out: &mut dyn Write) -> anyhow::Result<()> {
    let Sync {
        from,
        to,
        every,
        optional,
    } = *args;
    if optional && !has_files(from) {
        writeln!(out, "{} holds no file: nothing to copy", from.display())?;
    } else {
        let changed = sync(from, to)?;
        report(&changed, to, out)?;
    }
    let Some(secs) = every else {
        return Ok(());
    };
    loop {
        std::thread::sleep(Duration::from_secs(secs.max(1)));
        // A pass that fails (the Secret's mount being swapped, a full
        // disk) is said and tried again; the files in place stay as they
        // were, whole.
        if optional && !has_files(from) {
            continue;
        }
        match sync(from, to) {
            Ok(changed) if changed.is_empty() => {}
            Ok(changed) => report(&changed, to, out)?,
            Err(e) => eprintln!("wasm-ipam sync-credentials: {e:#}"),
        }
    }
}

fn report(changed: &[String], to: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    if changed.is_empty() {
        writeln!(out, "{} is up to date", to.display())?;
    } else {
        writeln!(out, "updated {} in {}", changed.join(", "), to.display())?;
    }
    out.flush()?;
    Ok(())
}

/// Whether `dir` holds a file a Secret would put there.
fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.')))
    })
}

/// One pass: the names of the files of `from` written into `to` because
/// they were missing or differed.
pub fn sync(from: &Path, to: &Path) -> anyhow::Result<Vec<String>> {
    let dest = TrustedDir::open(to, true).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().into_string().map_err(|n| {
            anyhow::anyhow!("{}: a file name that is not UTF-8: {n:?}", from.display())
        })?;
        // A mounted Secret's `..data` link and `..<timestamp>` folder.
        if name.starts_with('.') {
            continue;
        }
        // Each key of a Secret is a link through `..data`: follow it.
        if !std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            continue;
        }
        names.push(name);
    }
    if names.is_empty() {
        bail!(
            "{} holds no file: is the Secret mounted there, with its keys?",
            from.display()
        );
    }
    names.sort();
    let mut changed = Vec::new();
    for name in names {
        let source = std::fs::canonicalize(from.join(&name))?;
        let bytes = read_regular(&source, MAX_FILE)
            .map_err(|e| anyhow::anyhow!("{}: {e}", source.display()))?;
        let current = read_regular(&dest.path().join(&name), MAX_FILE).ok();
        if current.as_deref() == Some(&bytes[..]) {
            continue;
        }
        dest.replace(&name, &[&bytes])
            .with_context(|| format!("cannot write {}", dest.path().join(&name).display()))?;
        changed.push(name);
    }
    if !changed.is_empty() {
        dest.sync()?;
    }
    Ok(changed)
}
