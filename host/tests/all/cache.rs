//! The compile cache: entries are reused, and a damaged, foreign or exposed
//! entry is never trusted: the policy is compiled again and still answers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use crate::common::{Net, cache_entries};

fn net_with_cache(cache: &Path) -> Net {
    Net::with_ipam(
        "1.0.0",
        json!({"policy": "host-local", "ranges": [[{"subnet": "10.9.0.0/24"}]], "cacheDir": cache}),
    )
}

#[test]
fn the_first_call_fills_a_private_cache_and_later_calls_reuse_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let net = net_with_cache(&cache);
    net.add_ip("c1");
    let files = cache_entries(&cache);
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o077,
        0
    );
    let before = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    let out = net.add("c2");
    assert!(
        out.ok() && !out.stderr.contains("recompiling"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        before,
        "reused, not rewritten"
    );
}

#[test]
fn cold_calls_racing_on_one_node_compile_the_policy_once() {
    // A cold node's first pods all miss the cache at once: one compiles,
    // the others wait for its entry, and every one of them succeeds.
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let net = net_with_cache(&cache);
    let outs: Vec<_> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..6)
            .map(|i| {
                let net = &net;
                s.spawn(move || net.add(&format!("c{i}")))
            })
            .collect();
        calls.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    }
    let compiled = outs
        .iter()
        .filter(|o| o.stderr.contains("compiled policy host-local in"))
        .count();
    assert_eq!(compiled, 1, "one compile for six racing calls");
    assert_eq!(cache_entries(&cache).len(), 1);
}

#[test]
fn damaged_truncated_and_foreign_entries_are_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let net = net_with_cache(&cache);
    net.add_ip("c0");
    let entry = cache_entries(&cache).remove(0);
    let good = std::fs::read(&entry).unwrap();

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let truncated = good[..good.len() / 3].to_vec();
    let mut foreign = b"not an artifact at all".to_vec();
    foreign
        .extend_from_slice(&xxhash_rust::xxh3::xxh3_128(b"not an artifact at all").to_le_bytes());
    foreign.extend_from_slice(b"WIPAMC02");

    for (i, (bad, why)) in [
        (flipped, "damaged"),
        (truncated, "no valid trailer"),
        (foreign, "rejected"),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&entry, &bad).unwrap();
        let out = net.add(&format!("c{}", i + 1));
        assert!(out.ok(), "{why}: {} {}", out.stdout, out.stderr);
        assert!(out.stderr.contains(why), "{why}: {}", out.stderr);
        assert_eq!(
            std::fs::read(&entry).unwrap().len(),
            good.len(),
            "{why}: rebuilt"
        );
    }
}

#[test]
fn a_cache_others_can_write_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let net = net_with_cache(&cache);
    net.add_ip("c0");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = net.add("c1");
    assert!(out.ok());
    assert!(out.stderr.contains("not private"), "{}", out.stderr);
}

#[test]
fn data_dir_and_cache_are_created_private_to_the_user_running_the_plugin() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("nested/data");
    let cache = tmp.path().join("nested/cache");
    let net = Net::with_ipam(
        "1.0.0",
        json!({"policy": "host-local", "ranges": [[{"subnet": "10.9.0.0/24"}]], "cacheDir": cache}),
    );
    let mut conf = net.conf.clone();
    conf["ipam"]["dataDir"] = json!(data);
    assert!(
        net.run_conf(&cni::exec::Call::attach("ADD", "c1"), &conf)
            .ok()
    );
    let me = rustix::process::geteuid().as_raw();
    for dir in [&data, &cache] {
        let meta = std::fs::metadata(dir).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "{}",
            dir.display()
        );
        assert_eq!(
            meta.uid(),
            me,
            "{} is owned by the plugin's user (root on a node)",
            dir.display()
        );
    }
    let db = std::fs::metadata(data.join("wasm-ipam.db")).unwrap();
    assert_eq!(
        db.permissions().mode() & 0o022,
        0,
        "nobody else may write the store"
    );
}
