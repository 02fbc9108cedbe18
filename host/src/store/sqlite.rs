//! The embedded store: one SQLite database file under `dataDir`.
//!
//! - A rollback journal (`journal_mode=TRUNCATE`) with `synchronous=FULL`:
//!   a committed reservation survives a power cut, because losing one would
//!   hand the same address out twice. WAL is the better mode for a
//!   connection that lives; ours lives for one transaction, and WAL made
//!   every process set up its shared-memory index and then checkpoint and
//!   remove the log on close, which cost more than the rollback journal's
//!   extra fsync (BENCHMARKS.md). A database an older version left in WAL
//!   mode is switched on its next open.
//! - WAL for the connections `wasm-ipam serve` keeps ([`Journal::Wal`]):
//!   they live, so WAL's set-up is paid once, and a commit is one fsync.
//!   One-shot calls that run meanwhile join the WAL instead of waiting to
//!   switch it back; the first one alone after the server is gone switches
//!   it.
//! - `BEGIN IMMEDIATE` takes the write lock before the policy runs, so
//!   concurrent processes on one node are serialized, never interleaved, and
//!   a transaction never fails half-way on a lock upgrade.
//! - Keys are BLOBs, so ordering and prefix ranges are bytewise.
//! - A new database is made whole under a name of its own, table and all,
//!   and only then renamed to `wasm-ipam.db`; so a database without the
//!   table (a file truncated to zero) is damage, refused with code 5,
//!   never taken for a new store. The file is never opened through a
//!   link, and one that another user owns or can write is refused: the
//!   folder it lives in is checked first ([`crate::trust`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, params};

use super::{Entry, Store, StoreError, Txn, backoff, prefix_end};
use crate::trust::TrustedDir;

pub const DB_FILE: &str = "wasm-ipam.db";
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// The journal file stays between calls, emptied, so a commit does not
/// create and unlink a file (and fsync the directory) every time.
const JOURNAL_MODE: &str = "TRUNCATE";

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn io(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Busy(e.to_string())
        }
        Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull) if disk_full(path) => {
            StoreError::Io(format!(
                "{}: {e}: the filesystem holding it is full",
                path.display()
            ))
        }
        _ => StoreError::Io(format!("{}: {e}", path.display())),
    }
}

/// Whether the filesystem holding `path` has no room left. SQLite can report
/// a full disk as a plain I/O error (it did under WAL), which tells an
/// operator nothing; this says what to fix.
fn disk_full(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(path);
    rustix::fs::statvfs(dir).is_ok_and(|st| st.f_bavail.saturating_mul(st.f_frsize) < 64 * 1024)
}

/// How a connection journals its commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// The rollback journal: for a connection that lives for one call.
    /// A database in WAL mode is switched back, unless another connection
    /// (a `wasm-ipam serve`) has it open: then this one joins the WAL.
    Rollback,
    /// WAL: for connections that live (`wasm-ipam serve` keeps them), where
    /// WAL's set-up is paid once and a commit is one fsync of the log
    /// instead of five.
    Wal,
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0700) `data_dir` and the database in
    /// it, with a rollback journal: for the tools and tests, which name a
    /// folder. CNI calls check theirs first, naming the config field (see
    /// `runner::open_store_at`), and open it with [`SqliteStore::open_in`].
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let dir = TrustedDir::open(data_dir, true).map_err(|e| {
            StoreError::Io(format!(
                "cannot use the data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        SqliteStore::open_in(&dir, Journal::Rollback)
    }

    /// The database in the checked folder `dir`, made if it is missing,
    /// journaling as `journal` says.
    pub fn open_in(dir: &TrustedDir, journal: Journal) -> Result<SqliteStore, StoreError> {
        let path = dir.path().join(DB_FILE);
        existing_or_new(dir, &path)?;
        let conn = retry_busy(|| connect(&path, journal))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Whether no transaction is open on the connection (a failed COMMIT
    /// can leave one), so that it can serve another call.
    pub fn idle(&self) -> bool {
        Arc::strong_count(&self.conn) == 1 && self.conn.lock().is_ok_and(|c| c.is_autocommit())
    }
}

/// The one table. It is made only in a new database, before the database
/// has its name (see [`existing_or_new`]).
const SCHEMA: &str = "CREATE TABLE kv (
     ns    TEXT NOT NULL,
     key   BLOB NOT NULL,
     value BLOB NOT NULL,
     PRIMARY KEY (ns, key)
 ) WITHOUT ROWID;";

/// Makes sure `dir` holds a database this process may trust at `path`: an
/// existing one must be a regular file (not a link) of this user's that no
/// one else can write; a missing one is made whole beside it, schema and
/// all, and only then given its name. So a database file that exists and
/// has no table is damage (truncated to zero by a full disk or a careless
/// hand), never a store that was just begun, and it is refused rather
/// than taken for a new, empty one: a new store would hand out addresses
/// that pods still hold.
fn existing_or_new(dir: &TrustedDir, path: &Path) -> Result<(), StoreError> {
    let refuse =
        |why: String| StoreError::Io(format!("{}: {why}; wasm-ipam refuses it", path.display()));
    let st = dir.stat(DB_FILE).map_err(|e| refuse(e.to_string()))?;
    let Some(st) = st else {
        return create_aside(dir);
    };
    let me = rustix::process::geteuid().as_raw();
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => {}
        rustix::fs::FileType::Symlink => {
            return Err(refuse(
                "it is a symbolic link, which would make this process write where the link \
                 points"
                    .into(),
            ));
        }
        _ => return Err(refuse("it is not a regular file".into())),
    }
    if st.st_uid != me {
        return Err(refuse(format!(
            "it is owned by uid {}, not by this process's user (uid {me}), so someone else may \
             have put it there",
            st.st_uid
        )));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(refuse(format!(
            "others can write it (mode {:04o})",
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

/// Makes a new database, with its table, under a name of its own in
/// `dir`, then gives it the store's name unless another call did first.
fn create_aside(dir: &TrustedDir) -> Result<(), StoreError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = format!(
        ".{DB_FILE}.new-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let tmp_path = dir.path().join(&tmp);
    let made = (|| {
        let conn = Connection::open_with_flags(
            &tmp_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)
    })()
    .map_err(|e| io(&tmp_path, e));
    let named = made.and_then(|()| {
        let flags = rustix::fs::RenameFlags::NOREPLACE;
        match rustix::fs::renameat_with(dir.fd(), tmp.as_str(), dir.fd(), DB_FILE, flags) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
            // A filesystem without RENAME_NOREPLACE: a hard link fails the
            // same way when the name is taken.
            Err(rustix::io::Errno::INVAL) => {
                match rustix::fs::linkat(
                    dir.fd(),
                    tmp.as_str(),
                    dir.fd(),
                    DB_FILE,
                    rustix::fs::AtFlags::empty(),
                ) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
        .map_err(|e| {
            StoreError::Io(format!(
                "cannot create {}: {e}",
                dir.path().join(DB_FILE).display()
            ))
        })
    });
    // Whatever happened, the name of its own goes: renamed, linked, lost
    // to another call, or left half made.
    let _ = rustix::fs::unlinkat(dir.fd(), tmp.as_str(), rustix::fs::AtFlags::empty());
    named?;
    dir.sync()
        .map_err(|e| StoreError::Io(format!("{}: {e}", dir.path().display())))
}

/// Runs `f` again while SQLite reports the database busy, up to the busy
/// timeout. The busy handler covers most waits, but not all: while a
/// database's journal mode changes (an older version's WAL database being
/// switched), SQLite answers SQLITE_BUSY at once, and the first pods on a
/// node start together.
fn retry_busy<T>(mut f: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut attempt = 0;
    loop {
        match f() {
            Err(StoreError::Busy(_)) if Instant::now() < deadline => {
                std::thread::sleep(backoff(attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn connect(path: &Path, journal: Journal) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| io(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| io(path, e))?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'kv'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| io(path, e))?;
    if tables == 0 {
        return Err(StoreError::Io(format!(
            "{} holds no wasm-ipam store: it is empty or its table is gone, so it was damaged \
             (a new store is never left without its table), and the addresses it held are \
             unknown. Restore it from a backup; or, once no pod on this node holds an address \
             from it, remove it and the next call makes a new one",
            path.display()
        )));
    }
    match journal {
        Journal::Rollback => rollback_journal(&conn, path)?,
        // Entering WAL needs an exclusive lock: the busy handler waits for
        // the one-shot calls under way.
        Journal::Wal => conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| io(path, e))?,
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| io(path, e))?;
    Ok(conn)
}

/// Sets the rollback journal. Only WAL is recorded in the database file;
/// any other journal mode is per connection and set on every open. Leaving
/// WAL needs the only connection to the database, so it is asked for
/// without waiting: while other connections have it open (a
/// `wasm-ipam serve`, an operator's `metrics --listen`, or the first calls
/// after an upgrade all switching an older version's WAL at once), this
/// one joins the WAL, and a later call that finds itself alone switches
/// it. Joining costs little while a server is up, since the server keeps
/// the WAL's index set up. Busy for any other reason is waited out by
/// `retry_busy`.
fn rollback_journal(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::ZERO).map_err(|e| io(path, e))?;
    let switched = conn.pragma_update(None, "journal_mode", JOURNAL_MODE);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| io(path, e))?;
    match switched.map_err(|e| io(path, e)) {
        Err(StoreError::Busy(why)) => {
            let mode: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .map_err(|e| io(path, e))?;
            if mode == "wal" {
                Ok(())
            } else {
                Err(StoreError::Busy(why))
            }
        }
        other => other,
    }
}

impl Store for SqliteStore {
    fn begin(&self, namespace: &str) -> Result<Box<dyn Txn>, StoreError> {
        retry_busy(|| {
            self.conn
                .lock()
                .expect("store lock")
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| io(&self.path, e))
        })?;
        Ok(Box::new(SqliteTxn {
            conn: self.conn.clone(),
            path: self.path.clone(),
            ns: namespace.to_string(),
            open: true,
        }))
    }

    fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.lock().expect("store lock");
        let mut stmt = conn
            .prepare("SELECT DISTINCT ns FROM kv ORDER BY ns")
            .map_err(|e| io(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| io(&self.path, e))?;
        Ok(rows)
    }
}

struct SqliteTxn {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    ns: String,
    open: bool,
}

impl SqliteTxn {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        f(&self.conn.lock().expect("store lock")).map_err(|e| io(&self.path, e))
    }
}

impl Txn for SqliteTxn {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT value FROM kv WHERE ns = ?1 AND key = ?2")?;
            let mut rows = stmt.query(params![self.ns, key.as_bytes()])?;
            rows.next()?.map(|r| r.get(0)).transpose()
        })
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.with(|c| {
            c.prepare_cached("INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?1, ?2, ?3)")?
                .execute(params![self.ns, key.as_bytes(), value])
                .map(drop)
        })
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM kv WHERE ns = ?1 AND key = ?2")?
                .execute(params![self.ns, key.as_bytes()])
                .map(drop)
        })
    }

    fn scan(
        &mut self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        // One lower and one upper bound, both plain comparisons, so SQLite
        // walks only the index range: an `OR` or a second lower bound makes
        // it scan every later row of the network, and ADD cost grows with
        // the pool.
        let end = prefix_end(prefix.as_bytes());
        let (lower_op, lower) = match start_after {
            Some(after) if after.as_bytes() >= prefix.as_bytes() => (">", after.as_bytes()),
            _ => (">=", prefix.as_bytes()),
        };
        let sql = scan_sql(lower_op, end.is_some());
        self.with(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![self.ns, lower, end, limit], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            rows.map(|r| r.map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v)))
                .collect()
        })
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.open = false;
        self.with(|c| c.execute_batch("COMMIT"))
    }
}

/// The scan statement: `lower_op` is `>=` (from the prefix) or `>` (after
/// a key); without an upper bound the prefix runs to the end of the keys.
fn scan_sql(lower_op: &str, bounded: bool) -> String {
    let upper = if bounded {
        "AND key < ?3"
    } else {
        "AND ?3 IS NULL"
    };
    format!(
        "SELECT key, value FROM kv WHERE ns = ?1 AND key {lower_op} ?2 {upper} ORDER BY key LIMIT ?4"
    )
}

impl Drop for SqliteTxn {
    fn drop(&mut self) {
        if self.open
            && let Ok(c) = self.conn.lock()
        {
            // Nothing to report to: the caller is already failing.
            let _ = c.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefix scan must be an index range with both ends, or its cost
    /// grows with every row after the prefix (which made ADD slow down as a
    /// pool filled).
    #[test]
    fn prefix_scans_use_both_ends_of_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = store.conn.lock().unwrap();
        for (op, bounded, want) in [
            (">=", true, "(ns=? AND key>? AND key<?)"),
            (">", true, "(ns=? AND key>? AND key<?)"),
            (">=", false, "(ns=? AND key>?)"),
        ] {
            let plan: String = conn
                .query_row(
                    &format!("EXPLAIN QUERY PLAN {}", scan_sql(op, bounded)),
                    params!["n", b"a".to_vec(), b"b".to_vec(), 10],
                    |r| r.get(3),
                )
                .unwrap();
            assert!(plan.contains(want), "{op} {bounded}: {plan}");
        }
    }
}
