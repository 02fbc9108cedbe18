//! Folders and files trusted the way OpenSSH's StrictModes trusts them: a
//! path is used only if no one but root and this process's user can change
//! it, or any folder above it.
//!
//! wasm-ipam runs as root, and what it keeps on disk decides what root
//! does: a compiled policy in the cache is native code root maps and runs,
//! and the database decides which address a pod gets. A folder a local
//! user can write anywhere on the way lets that user swap what root loads
//! (`renameat2(RENAME_EXCHANGE)` wins a check-then-open race within a few
//! calls), move the database away so that a held address is handed out
//! again, or plant a symbolic link that makes root create a file where the
//! user chooses. So:
//!
//! - [`TrustedDir::open`] walks the path from `/` one folder at a time,
//!   each opened relative to the one above with `O_NOFOLLOW` and checked
//!   with `fstat` on that descriptor: owned by root or this user, and not
//!   writable by group or others, unless it has the sticky bit (as `/tmp`
//!   has, where no one can rename another's entry). The folder itself must
//!   not be writable by others even with the sticky bit: others could
//!   still create the names wasm-ipam has yet to create. A symbolic link on
//!   the way is followed only when root or this user owns it (in a sticky
//!   folder its owner can replace it), and its target is walked the same
//!   way; a link as the folder itself is refused.
//! - Everything after works on the folder's descriptor ([`TrustedDir::fd`]):
//!   entries are opened with `openat` and `O_NOFOLLOW`, and checked with
//!   `fstat` on what was opened. Since nobody else can change the folders
//!   on the way, the canonical path found by the walk
//!   ([`TrustedDir::path`]) names the same folder for as long as the call
//!   runs, for the libraries that need a path (SQLite).
//! - [`read_regular`] reads a file named in the config (a policy, a
//!   resolv.conf) without following a final link, only if it is a regular
//!   file, never blocking on a FIFO, and never more than a bound, whatever
//!   the file claims its size is (`/dev/zero` claims 0).
//! - [`read_trusted`] reads a file that decides whom wasm-ipam trusts (the
//!   CA of etcd's members): where a link leads, then only if that file and
//!   every folder above it are root's alone.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

/// Symbolic links followed in one walk, at most (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Why a path is not used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A folder or link on the path that someone else could change.
    #[error("{at} {why}")]
    Unsafe { at: PathBuf, why: String },
    /// The path cannot be opened or made.
    #[error("{at}: {error}")]
    Io { at: PathBuf, error: std::io::Error },
}

impl TrustError {
    fn io(at: &Path, error: impl Into<std::io::Error>) -> TrustError {
        TrustError::Io {
            at: at.to_path_buf(),
            error: error.into(),
        }
    }

    fn unsafe_at(at: &Path, why: impl Into<String>) -> TrustError {
        TrustError::Unsafe {
            at: at.to_path_buf(),
            why: why.into(),
        }
    }
}

/// A folder no one but root and this user can change, open.
#[derive(Debug)]
pub struct TrustedDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl TrustedDir {
    /// Opens the folder `path`, making it (mode 0700) and the folders
    /// above it that are missing when `create` is set, and checks every
    /// folder from `/` down (see the module docs).
    pub fn open(path: &Path, create: bool) -> Result<TrustedDir, TrustError> {
        let absolute = std::path::absolute(path).map_err(|e| TrustError::io(path, e))?;
        let mut pending: VecDeque<OsString> = parts(&absolute);
        let root = rustix::fs::open(
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| TrustError::io(Path::new("/"), e))?;
        let root_path = PathBuf::from("/");
        check_dir(&stat_fd(&root, &root_path)?, &root_path, pending.is_empty())?;
        let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(root, root_path)];
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let last = pending.is_empty();
            let (dir, dir_path) = stack.last().expect("the root stays");
            let here = dir_path.join(&name);
            let st = match rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(dir, name.as_os_str(), Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(TrustError::io(&here, e)),
                    }
                    rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                }
                other => other,
            }
            .map_err(|e| TrustError::io(&here, e))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Symlink if last => {
                    let to = rustix::fs::readlinkat(dir, name.as_os_str(), Vec::new())
                        .map(|t| PathBuf::from(OsString::from_vec(t.into_bytes())))
                        .unwrap_or_default();
                    return Err(TrustError::unsafe_at(
                        &here,
                        format!(
                            "is a symbolic link (to {}): name the folder itself",
                            to.display()
                        ),
                    ));
                }
                FileType::Symlink => {
                    check_owner(&st, &here, "a symbolic link")?;
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(TrustError::io(&here, Errno::LOOP));
                    }
                    let target = rustix::fs::readlinkat(dir, name.as_os_str(), Vec::new())
                        .map_err(|e| TrustError::io(&here, e))?;
                    let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                    if target.is_absolute() {
                        stack.truncate(1);
                    }
                    for part in parts(&target).into_iter().rev() {
                        pending.push_front(part);
                    }
                }
                FileType::Directory => {
                    // The folder itself is opened for reading, to sync it
                    // and open entries in it; those above only to walk.
                    let access = if last { OFlags::RDONLY } else { OFlags::PATH };
                    let fd = rustix::fs::openat(
                        dir,
                        name.as_os_str(),
                        access | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| TrustError::io(&here, e))?;
                    check_dir(&stat_fd(&fd, &here)?, &here, last)?;
                    stack.push((fd, here));
                }
                _ => {
                    return Err(TrustError::io(
                        &here,
                        std::io::Error::from(std::io::ErrorKind::NotADirectory),
                    ));
                }
            }
        }
        let (fd, path) = stack.pop().expect("the walk ends in a folder");
        Ok(TrustedDir { fd, path })
    }

    /// The folder, for `openat` and its kin.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Its canonical path, which no one else can change.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the folder holds under `name`, not following a link: `None`
    /// when there is nothing.
    pub fn stat(&self, name: &str) -> std::io::Result<Option<Stat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens (creating, mode 0600, if missing) the file `name` in the
    /// folder for writing, never through a link: for lock files.
    pub fn lock_file(&self, name: &str) -> std::io::Result<std::fs::File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(std::fs::File::from(fd))
    }

    /// Makes its latest renames durable.
    pub fn sync(&self) -> std::io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// Writes the file `name`, mode 0600, whole or not at all: `parts` in a
    /// new file of a unique name beside it, synced, then renamed over the
    /// old one. A reader sees the old file or the new one, never half of
    /// one; the new file is never opened through a link. The rename is
    /// durable once [`TrustedDir::sync`] follows.
    pub fn replace(&self, name: &str, parts: &[&[u8]]) -> std::io::Result<()> {
        let temp = temp_name();
        let fd = rustix::fs::openat(
            &self.fd,
            temp.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        let written = parts
            .iter()
            .try_for_each(|part| std::io::Write::write_all(&mut file, part))
            .and_then(|()| file.sync_all())
            .and_then(|()| {
                Ok(rustix::fs::renameat(
                    &self.fd,
                    temp.as_str(),
                    &self.fd,
                    name,
                )?)
            });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, temp.as_str(), AtFlags::empty());
        }
        written
    }
}

/// A unique name for a file being written: hidden, and never one another
/// process or thread is writing.
fn temp_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        ".tmp-{}-{}-{nanos:08x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The normal parts of a path, `..` kept for the walk to apply.
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn stat_fd(fd: &OwnedFd, at: &Path) -> Result<Stat, TrustError> {
    rustix::fs::fstat(fd).map_err(|e| TrustError::io(at, e))
}

fn check_owner(st: &Stat, at: &Path, what: &str) -> Result<(), TrustError> {
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid == 0 || st.st_uid == me {
        Ok(())
    } else {
        Err(TrustError::unsafe_at(
            at,
            format!(
                "is {what} owned by uid {}, who is neither root nor this process's user (uid {me})",
                st.st_uid
            ),
        ))
    }
}

/// A folder on the way (`last`: the folder itself) is trusted.
fn check_dir(st: &Stat, at: &Path, last: bool) -> Result<(), TrustError> {
    check_owner(st, at, "a folder")?;
    let mode = st.st_mode & 0o7777;
    let writable = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    let by = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and all users",
        (true, false) => "its group",
        _ => "all users",
    };
    if writable && last {
        return Err(TrustError::unsafe_at(
            at,
            format!(
                "is writable by {by} (mode {mode:04o}), who could put their own files in it: \
                 make it writable by its owner alone"
            ),
        ));
    }
    if writable && !sticky {
        return Err(TrustError::unsafe_at(
            at,
            format!(
                "is writable by {by} without the sticky bit (mode {mode:04o}), so they could \
                 rename what lies below it: make it writable by its owner alone"
            ),
        ));
    }
    Ok(())
}

/// Why a file named in the config was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Missing, unreadable: the error names which.
    #[error("{0}")]
    Io(std::io::Error),
    /// Not a regular file (a link, a device, a FIFO, a folder), or too large.
    #[error("{0}")]
    Refused(String),
}

/// The content of the regular file `path`, at most `limit` bytes: opened
/// without following a final link and without blocking (a FIFO would
/// otherwise wait for a writer for ever), checked on the descriptor, and
/// read with the bound applied to what is read, not to what `fstat` says.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let fd = match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => {
            let to = std::fs::read_link(path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(FileError::Refused(format!(
                "it is a symbolic link{to}: name the file itself"
            )));
        }
        Err(e) => return Err(FileError::Io(e.into())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| FileError::Io(e.into()))?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => None,
        FileType::Directory => Some("a directory"),
        FileType::Fifo => Some("a FIFO"),
        FileType::CharacterDevice => Some("a character device"),
        FileType::BlockDevice => Some("a block device"),
        FileType::Socket => Some("a socket"),
        _ => Some("not a regular file"),
    };
    if let Some(kind) = kind {
        return Err(FileError::Refused(format!(
            "it is {kind}, not a regular file"
        )));
    }
    read_bounded(std::fs::File::from(fd), limit)
}

/// The content of the file `path`, at most `limit` bytes, read only if no
/// one but root and this user can change it: the file where it really is
/// (a link is followed, as a Kubernetes Secret's files are links into a
/// folder the kubelet swaps on rotation), every folder above that as
/// [`TrustedDir::open`] checks them, and the file itself, checked on its
/// descriptor, a regular file that others cannot write. For what decides
/// whom wasm-ipam trusts, such as the CA that vouches for etcd's members.
pub fn read_trusted(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let real = std::fs::canonicalize(path).map_err(FileError::Io)?;
    let (Some(parent), Some(name)) = (real.parent(), real.file_name()) else {
        return Err(FileError::Refused("it is not a file".into()));
    };
    let dir = TrustedDir::open(parent, false).map_err(|e| match e {
        TrustError::Io { error, .. } => FileError::Io(error),
        unsafe_dir => FileError::Refused(unsafe_dir.to_string()),
    })?;
    let fd = rustix::fs::openat(
        dir.fd(),
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| FileError::Io(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| FileError::Io(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(FileError::Refused(format!(
            "{} is not a regular file",
            real.display()
        )));
    }
    let me = rustix::process::geteuid().as_raw();
    if (st.st_uid != 0 && st.st_uid != me) || st.st_mode & 0o022 != 0 {
        return Err(FileError::Refused(format!(
            "{} can be changed by others (owner uid {}, mode {:04o})",
            real.display(),
            st.st_uid,
            st.st_mode & 0o7777
        )));
    }
    read_bounded(std::fs::File::from(fd), limit)
}

/// At most `limit` bytes of `file`, or a refusal when it holds more.
fn read_bounded(file: std::fs::File, limit: u64) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::Refused(format!(
            "it is larger than {limit} bytes"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_folder_is_opened_and_made_with_its_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TrustedDir::open(&tmp.path().join("a/b"), true).unwrap();
        assert_eq!(dir.path(), tmp.path().canonicalize().unwrap().join("a/b"));
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(matches!(
            TrustedDir::open(&tmp.path().join("missing"), false),
            Err(TrustError::Io { .. })
        ));
    }

    #[test]
    fn a_folder_others_can_write_is_refused_on_the_way_and_at_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir_all(open.join("data")).unwrap();
        chmod(&open, 0o777);
        let err = TrustedDir::open(&open.join("data"), true).unwrap_err();
        assert!(
            matches!(&err, TrustError::Unsafe { at, why } if at.ends_with("open") && why.contains("without the sticky bit")),
            "{err}"
        );
        // Sticky, as /tmp: fine on the way, not as the folder itself.
        chmod(&open, 0o1777);
        TrustedDir::open(&open.join("data"), true).unwrap();
        let err = TrustedDir::open(&open, true).unwrap_err();
        assert!(err.to_string().contains("mode 1777"), "{err}");
    }

    #[test]
    fn links_are_followed_on_the_way_but_not_at_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("real/data")).unwrap();
        std::os::unix::fs::symlink("real", tmp.path().join("via")).unwrap();
        let dir = TrustedDir::open(&tmp.path().join("via/data"), false).unwrap();
        assert!(
            dir.path().ends_with("real/data"),
            "{}",
            dir.path().display()
        );
        std::os::unix::fs::symlink("real/data", tmp.path().join("data")).unwrap();
        let err = TrustedDir::open(&tmp.path().join("data"), true).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
    }

    #[test]
    fn read_trusted_follows_links_but_reads_only_what_others_cannot_change() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("..2026_12_07");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("ca.pem"), b"pem").unwrap();
        // A Kubernetes Secret's layout: name -> ..data/name, ..data -> dir.
        std::os::unix::fs::symlink("..2026_12_07", tmp.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/ca.pem", tmp.path().join("ca.pem")).unwrap();
        assert_eq!(
            read_trusted(&tmp.path().join("ca.pem"), 10).unwrap(),
            b"pem"
        );
        chmod(&data.join("ca.pem"), 0o666);
        let err = read_trusted(&tmp.path().join("ca.pem"), 10).unwrap_err();
        assert!(
            err.to_string().contains("can be changed by others"),
            "{err}"
        );
        chmod(&data.join("ca.pem"), 0o644);
        chmod(&data, 0o777);
        let err = read_trusted(&tmp.path().join("ca.pem"), 10).unwrap_err();
        assert!(err.to_string().contains("writable by"), "{err}");
    }

    #[test]
    fn read_regular_refuses_devices_fifos_links_and_oversize_files() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"12345");
        assert!(
            matches!(read_regular(&file, 4), Err(FileError::Refused(m)) if m.contains("larger than 4"))
        );
        let zero = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(zero.to_string().contains("character device"), "{zero}");
        let fifo = tmp.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(
            read_regular(&fifo, 10)
                .unwrap_err()
                .to_string()
                .contains("FIFO")
        );
        std::os::unix::fs::symlink(&file, tmp.path().join("link")).unwrap();
        let link = read_regular(&tmp.path().join("link"), 10).unwrap_err();
        assert!(link.to_string().contains("symbolic link (to "), "{link}");
        assert!(matches!(
            read_regular(&tmp.path().join("none"), 10),
            Err(FileError::Io(_))
        ));
    }
}
