//! Precompiled policies, so a warm call maps native code instead of
//! compiling (hundreds of milliseconds) in every CNI process.
//!
//! Loading a precompiled artifact is running code, so an entry is trusted
//! only when:
//!
//! - the cache directory is ours and writable by nobody else (it is created
//!   0700), and so is every folder above it ([`crate::trust`]): otherwise
//!   a local user who owns a folder on the way could swap the cache for
//!   one of theirs between a check and the load;
//! - the entry is opened once, relative to the folder's descriptor and
//!   without following a link, checked on its own descriptor (a regular
//!   file of this user's that no one else can write), and mapped through
//!   that descriptor, never opened again by path;
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

use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::fd::AsFd;

use rustix::fs::{FileType, Mode, OFlags};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::trust::TrustedDir;

// The number changes with the trailer's layout, so an older entry is a miss.
const MAGIC: &[u8; 8] = b"WIPAMC02";
const CHECKSUM: usize = 16;
const TRAILER: usize = CHECKSUM + MAGIC.len();

fn checksum(artifact: &[u8]) -> [u8; CHECKSUM] {
    xxhash_rust::xxh3::xxh3_128(artifact).to_le_bytes()
}

/// The entry's file name in the cache folder.
pub fn entry_name(engine: &Engine, wasm_hash: &[u8; 32]) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!(
        "{}-{:016x}.cwasm",
        blake3::Hash::from_bytes(*wasm_hash).to_hex(),
        h.finish()
    )
}

/// Opens the entry `name` in `dir`, never through a link, and checks what
/// was opened: a regular file of this user's that no one else can write.
fn open_entry(dir: &TrustedDir, name: &str) -> Result<Option<std::fs::File>, String> {
    let shown = || dir.path().join(name).display().to_string();
    let fd = match rustix::fs::openat(
        dir.fd(),
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(format!("cache entry {} cannot be opened: {e}", shown())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
    let me = rustix::process::geteuid().as_raw();
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_uid != me
        || st.st_mode & 0o022 != 0
    {
        return Err(format!(
            "cache entry {} is not a private regular file",
            shown()
        ));
    }
    Ok(Some(std::fs::File::from(fd)))
}

/// Checks an open entry without copying it: the trailer's checksum over a
/// read-only mapping of the file, which wasmtime then maps again from the
/// page cache.
fn verify(file: &std::fs::File, shown: &str) -> Result<(), String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len() as usize;
    if len < TRAILER {
        return Err(format!("cache entry {shown} has no valid trailer"));
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
            file,
            0,
        )
    }
    .map_err(|e| e.to_string())?;
    // SAFETY: the mapping is `len` readable bytes until the munmap below.
    let bytes = unsafe { std::slice::from_raw_parts(map.cast::<u8>(), len) };
    let body = len - TRAILER;
    let verdict = if &bytes[len - MAGIC.len()..] != MAGIC {
        Err(format!("cache entry {shown} has no valid trailer"))
    } else if checksum(&bytes[..body]) != bytes[body..body + CHECKSUM] {
        Err(format!(
            "cache entry {shown} is damaged (checksum mismatch)"
        ))
    } else {
        Ok(())
    };
    // SAFETY: `map` came from mmap with this length and `bytes` is not used
    // after this point.
    let _ = unsafe { rustix::mm::munmap(map, len) };
    verdict
}

/// Maps the open, verified `file` with `engine`. wasmtime opens what it
/// maps by path, so it is given the descriptor's own path in /proc, which
/// reaches the file this call checked whatever has been renamed since;
/// without /proc, the file is read into memory.
///
/// # Safety
///
/// `file` must have passed [`open_entry`] and [`verify`].
unsafe fn map(engine: &Engine, file: std::fs::File) -> wasmtime::Result<Component> {
    use std::os::fd::AsRawFd;
    let by_fd = format!("/proc/self/fd/{}", file.as_fd().as_raw_fd());
    if std::path::Path::new(&by_fd).exists() {
        // SAFETY: the caller's.
        return unsafe { Component::deserialize_file(engine, &by_fd) };
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes)?;
    // SAFETY: the caller's; the trailer after the artifact is outside every
    // section wasmtime reads.
    unsafe { Component::deserialize(engine, &bytes[..bytes.len().saturating_sub(TRAILER)]) }
}

/// Writes the entry `name` whole or not at all (see
/// [`TrustedDir::replace`]), and makes the rename durable.
fn write_atomically(dir: &TrustedDir, name: &str, artifact: &[u8]) -> std::io::Result<()> {
    dir.replace(name, &[artifact, &checksum(artifact), MAGIC])?;
    dir.sync()
}

/// Waits for this node's turn to compile the entry `name`, and holds it
/// until the returned file is dropped (an flock on `<entry>.lock`).
///
/// On a cold node every pod's first call misses at once; without turns each
/// of them compiled the policy, so 40 nodes of 5 cold pods ran 200 compiles
/// on 2 cores and took 61 s. With them, the first call compiles and the
/// others wait, look again and map its entry. `None` when the lock cannot be
/// taken (an unwritable cache): the call then compiles on its own.
pub fn compile_turn(dir: &TrustedDir, name: &str) -> Option<std::fs::File> {
    let file = dir.lock_file(&format!("{name}.lock")).ok()?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).ok()?;
    Some(file)
}

/// The cached artifact `name` in `dir`, mapped with `engine`, if it passes
/// every check; a present entry that fails one is logged, and is replaced
/// by the caller's [`compile`].
pub fn lookup(
    engine: &Engine,
    dir: &TrustedDir,
    name: &str,
    log: &mut dyn FnMut(String),
) -> Option<Component> {
    let shown = dir.path().join(name).display().to_string();
    let file = match open_entry(dir, name) {
        Ok(Some(file)) => file,
        Ok(None) => return None,
        Err(why) => {
            log(format!("{why}; recompiling"));
            return None;
        }
    };
    if let Err(why) = verify(&file, &shown) {
        log(format!("{why}; recompiling"));
        return None;
    }
    // SAFETY: the file was opened once, without following a link, in a
    // folder no one else can change, and checked on its descriptor: a
    // regular file only this user can write, named for this engine's
    // settings and this policy, whose checksum was just verified; it is
    // never changed in place, and it is mapped through that same
    // descriptor. wasmtime checks the header, the settings and the CPU
    // features it needs again.
    match unsafe { map(engine, file) } {
        Ok(c) => Some(c),
        Err(e) => {
            log(format!("cache entry {shown} rejected: {e}; recompiling"));
            None
        }
    }
}

/// Writes `artifact`, compiled at build time, into the cache as `name`
/// and maps it with `engine`, as if a call had compiled it. Without a
/// usable cache (`dir` is `None`, or the write fails) it is mapped from
/// memory instead. `None` if wasmtime refuses it (an artifact of another
/// build's settings): the caller then compiles.
pub fn install(
    engine: &Engine,
    dir: Option<&TrustedDir>,
    name: &str,
    artifact: &[u8],
    log: &mut dyn FnMut(String),
) -> Option<Component> {
    let written = dir.map(|d| (d, write_atomically(d, name, artifact)));
    let Some((dir, Ok(()))) = written else {
        if let Some((dir, Err(e))) = written {
            log(format!(
                "cannot cache the precompiled policy in {}: {e}; mapping it from the binary",
                dir.path().display()
            ));
        }
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
    };
    let component = lookup(engine, dir, name, log);
    if component.is_none() {
        log(format!(
            "the precompiled policy in {} was refused; compiling",
            dir.path().join(name).display()
        ));
    }
    component
}

/// Compiles `wasm` with `compiler` and caches the artifact as `name` in
/// `dir`. A cache that cannot be written is logged: the call goes on
/// uncached.
pub fn compile(
    compiler: &Engine,
    dir: Option<&TrustedDir>,
    name: &str,
    wasm: &[u8],
    log: &mut dyn FnMut(String),
) -> Result<Component, wasmtime::Error> {
    let component = Component::new(compiler, wasm)?;
    if let Some(dir) = dir
        && let Err(e) = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|artifact| write_atomically(dir, name, &artifact).map_err(|e| e.to_string()))
    {
        log(format!(
            "cannot cache the compiled policy in {}: {e}",
            dir.path().display()
        ));
    }
    Ok(component)
}
