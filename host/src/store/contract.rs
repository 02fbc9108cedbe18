//! The behaviour every backend must have, run against each of them.
#![allow(clippy::missing_panics_doc)]

use super::*;

fn entries(txn: &mut Box<dyn Txn>, prefix: &str, after: Option<&str>, limit: u32) -> Vec<String> {
    txn.scan(prefix, after, limit)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

pub fn check_backend(store: &dyn Store) {
    let mut t = store.begin("net1").unwrap();
    assert_eq!(t.get("a").unwrap(), None);
    for k in [
        "lease/10.0.0.2",
        "lease/10.0.0.10",
        "lease/10.0.0.3",
        "owner/x",
        "leasex",
    ] {
        t.put(k, k.as_bytes()).unwrap();
    }
    t.put("lease/10.0.0.3", b"replaced").unwrap();
    assert_eq!(
        t.get("lease/10.0.0.3").unwrap().as_deref(),
        Some(&b"replaced"[..])
    );
    assert_eq!(
        entries(&mut t, "lease/", None, 10),
        ["lease/10.0.0.10", "lease/10.0.0.2", "lease/10.0.0.3"],
        "bytewise order, prefix only"
    );
    assert_eq!(
        entries(&mut t, "lease/", Some("lease/10.0.0.10"), 1),
        ["lease/10.0.0.2"]
    );
    assert_eq!(
        entries(&mut t, "lease/", Some("a"), 1),
        ["lease/10.0.0.10"],
        "start-after below the prefix"
    );
    assert_eq!(entries(&mut t, "", None, 100).len(), 5);
    t.delete("owner/x").unwrap();
    t.delete("never-there").unwrap();
    t.commit().unwrap();

    // Another namespace sees nothing of net1.
    let mut other = store.begin("net2").unwrap();
    assert!(entries(&mut other, "", None, 100).is_empty());
    other.put("lease/10.0.0.2", b"net2").unwrap();
    other.commit().unwrap();

    // A dropped transaction leaves no trace.
    let mut t = store.begin("net1").unwrap();
    t.put("lease/10.0.0.99", b"x").unwrap();
    t.delete("lease/10.0.0.2").unwrap();
    drop(t);
    let mut t = store.begin("net1").unwrap();
    assert_eq!(t.get("lease/10.0.0.99").unwrap(), None);
    assert_eq!(
        t.get("lease/10.0.0.2").unwrap().as_deref(),
        Some(&b"lease/10.0.0.2"[..])
    );
    assert_eq!(t.get("owner/x").unwrap(), None);
    drop(t);

    // An uncommitted namespace is not listed; committed ones are, sorted.
    let mut t = store.begin("net0").unwrap();
    t.put("k", b"v").unwrap();
    drop(t);
    assert_eq!(store.namespaces().unwrap(), ["net1", "net2"]);
}

#[test]
fn sqlite_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data")).unwrap();
    check_backend(&store);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the data dir is root-only");
    // Reopening sees what was committed.
    drop(store);
    let store = SqliteStore::open(&dir.path().join("data")).unwrap();
    let mut t = store.begin("net2").unwrap();
    assert_eq!(
        t.get("lease/10.0.0.2").unwrap().as_deref(),
        Some(&b"net2"[..])
    );
}

#[test]
fn memory_backend_keeps_the_contract() {
    check_backend(&MemoryStore::new());
}

#[test]
fn memory_backend_detects_conflicts() {
    let store = MemoryStore::new();
    let mut a = store.begin("n").unwrap();
    let mut b = store.begin("n").unwrap();
    a.put("k", b"a").unwrap();
    b.put("k", b"b").unwrap();
    a.commit().unwrap();
    assert!(matches!(b.commit(), Err(StoreError::Conflict)));
    assert_eq!(store.dump("n"), [("k".to_string(), b"a".to_vec())]);
}

#[test]
fn prefix_end_is_the_next_key_range() {
    assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
    assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
    assert_eq!(prefix_end(b"\xff\xff"), None);
    assert_eq!(prefix_end(b""), None);
}

#[test]
fn an_unwritable_data_dir_is_an_io_error() {
    let err = SqliteStore::open(std::path::Path::new("/proc/wasm-ipam-test"))
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Io(m) if m.contains("/proc/wasm-ipam-test")),
        "{err:?}"
    );
    assert_eq!(CniError::from(err).code(), 5);
}
