//! Precompiled policies, so a warm call maps native code instead of
//! compiling (hundreds of milliseconds) in every CNI process.
//!
//! Loading a precompiled artifact is running code, so an entry is trusted
//! only when:
//!
//! - the cache directory is ours and writable by nobody else (it is created
//!   0700), and so is the file;
//! - its name matches the policy's hash and the engine's compatibility hash
//!   (a different wasmtime or engine config never even looks at it; the
//!   compiler's flags are not in it, as calls map entries with an engine
//!   that has no compiler, and wasmtime checks them against the CPU);
//! - its trailer (a magic and an XXH3-128 checksum of the artifact) matches,
//!   which catches truncation and damage that wasmtime's own header checks
//!   miss.
//!
//! The checksum guards against accidents, not attackers: it is in the same
//! file, so whoever can write the entry can rewrite it too, and ownership
//! and mode are what keep others out. That is why it is not a cryptographic
//! digest: it runs on every call, and XXH3 checks a 1.1 MB artifact in
//! 0.04 ms where BLAKE3 took 0.2 ms.
//!
//! Anything else is a miss: the policy is compiled again and the entry is
//! replaced atomically (write a temp file, fsync, rename), so a reader never
//! sees a half-written file and a file is never changed while mapped. A
//! built-in policy is not compiled on a miss: the artifact `build.rs`
//! compiled into this binary is written instead ([`install`]), as trusted as
//! the binary itself, and goes through the same checks when it is mapped.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

// The number changes with the trailer's layout, so an older entry is a miss.
const MAGIC: &[u8; 8] = b"WIPAMC02";
const CHECKSUM: usize = 16;
const TRAILER: usize = CHECKSUM + MAGIC.len();

fn checksum(artifact: &[u8]) -> [u8; CHECKSUM] {
    xxhash_rust::xxh3::xxh3_128(artifact).to_le_bytes()
}

pub fn entry_path(engine: &Engine, dir: &Path, wasm_hash: &[u8; 32]) -> PathBuf {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let name = format!(
        "{}-{:016x}.cwasm",
        blake3::Hash::from_bytes(*wasm_hash).to_hex(),
        h.finish()
    );
    dir.join(name)
}

fn owned_and_private(meta: &fs::Metadata) -> bool {
    meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0
}

/// Checks an entry without copying it: ownership and mode of the directory
/// and the file, then the trailer's checksum over a read-only mapping of the
/// file, which wasmtime then maps again from the page cache.
fn verify(dir: &Path, path: &Path) -> Result<(), String> {
    let dir_meta = fs::metadata(dir).map_err(|e| e.to_string())?;
    if !owned_and_private(&dir_meta) {
        return Err(format!(
            "cache dir {} is not private to this user",
            dir.display()
        ));
    }
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file()
        || !owned_and_private(&meta)
        || fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink())
    {
        return Err(format!(
            "cache entry {} is not a private regular file",
            path.display()
        ));
    }
    let len = meta.len() as usize;
    if len < TRAILER {
        return Err(format!(
            "cache entry {} has no valid trailer",
            path.display()
        ));
    }
    // SAFETY: a private read-only mapping of a file only this user can
    // write and that is only ever replaced by rename, never changed in
    // place; it is unmapped before this function returns.
    let map = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::PRIVATE,
            &file,
            0,
        )
    }
    .map_err(|e| e.to_string())?;
    // SAFETY: the mapping is `len` readable bytes until the munmap below.
    let bytes = unsafe { std::slice::from_raw_parts(map.cast::<u8>(), len) };
    let body = len - TRAILER;
    let verdict = if &bytes[len - MAGIC.len()..] != MAGIC {
        Err(format!(
            "cache entry {} has no valid trailer",
            path.display()
        ))
    } else if checksum(&bytes[..body]) != bytes[body..body + CHECKSUM] {
        Err(format!(
            "cache entry {} is damaged (checksum mismatch)",
            path.display()
        ))
    } else {
        Ok(())
    };
    // SAFETY: `map` came from mmap with this length and `bytes` is not used
    // after this point.
    let _ = unsafe { rustix::mm::munmap(map, len) };
    verdict
}

fn write_atomically(dir: &Path, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(artifact)?;
    tmp.write_all(&checksum(artifact))?;
    tmp.write_all(MAGIC)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable.
    fs::File::open(dir)?.sync_all()
}

/// Waits for this node's turn to compile the entry at `path`, and holds it
/// until the returned file is dropped (an flock on `<entry>.lock`).
///
/// On a cold node every pod's first call misses at once; without turns each
/// of them compiled the policy, so 40 nodes of 5 cold pods ran 200 compiles
/// on 2 cores and took 61 s. With them, the first call compiles and the
/// others wait, look again and map its entry. `None` when the lock cannot be
/// taken (an unwritable cache): the call then compiles on its own.
pub fn compile_turn(dir: &Path, path: &Path) -> Option<fs::File> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .ok()?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path.with_extension("lock"))
        .ok()?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).ok()?;
    Some(file)
}

/// The cached artifact at `path`, mapped with `engine`, if it passes every
/// check; a present entry that fails one is logged, and is replaced by the
/// caller's [`compile`].
pub fn lookup(
    engine: &Engine,
    dir: &Path,
    path: &Path,
    log: &mut dyn FnMut(String),
) -> Option<Component> {
    match verify(dir, path) {
        // SAFETY: the file is one only this user can write, named for this
        // engine's settings and this policy, whose checksum was just
        // verified, and it is never changed in place; wasmtime checks the
        // header, the settings and the CPU features it needs again. The
        // trailer after the artifact is outside every section wasmtime reads.
        Ok(()) => match unsafe { Component::deserialize_file(engine, path) } {
            Ok(c) => return Some(c),
            Err(e) => log(format!(
                "cache entry {} rejected: {e}; recompiling",
                path.display()
            )),
        },
        Err(why) if path.exists() => log(format!("{why}; recompiling")),
        Err(_) => {}
    }
    None
}

/// Writes `artifact`, compiled at build time, into the cache at `path` and
/// maps it with `engine`, as if a call had compiled it. An unwritable cache
/// maps it from memory instead. `None` if wasmtime refuses it (an artifact
/// of another build's settings): the caller then compiles.
pub fn install(
    engine: &Engine,
    dir: &Path,
    path: &Path,
    artifact: &[u8],
    log: &mut dyn FnMut(String),
) -> Option<Component> {
    if let Err(e) = write_atomically(dir, path, artifact) {
        log(format!(
            "cannot cache the precompiled policy in {}: {e}; mapping it from the binary",
            dir.display()
        ));
        // SAFETY: the artifact is part of this binary, compiled by its own
        // build with the host's settings; wasmtime checks its header, its
        // settings and the CPU features it needs.
        return match unsafe { Component::deserialize(engine, artifact) } {
            Ok(c) => Some(c),
            Err(e) => {
                log(format!(
                    "the precompiled policy was refused: {e}; compiling"
                ));
                None
            }
        };
    }
    let component = lookup(engine, dir, path, log);
    if component.is_none() {
        log(format!(
            "the precompiled policy in {} was refused; compiling",
            path.display()
        ));
    }
    component
}

/// Compiles `wasm` with `compiler` and caches the artifact at `path`. A
/// cache that cannot be written is logged: the call goes on uncached.
pub fn compile(
    compiler: &Engine,
    dir: &Path,
    path: &Path,
    wasm: &[u8],
    log: &mut dyn FnMut(String),
) -> Result<Component, wasmtime::Error> {
    let component = Component::new(compiler, wasm)?;
    if let Err(e) = component
        .serialize()
        .map_err(|e| e.to_string())
        .and_then(|artifact| write_atomically(dir, path, &artifact).map_err(|e| e.to_string()))
    {
        log(format!(
            "cannot cache the compiled policy in {}: {e}",
            dir.display()
        ));
    }
    Ok(component)
}
