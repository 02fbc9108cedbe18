//! The compile cache: entries are reused, and a damaged, foreign or exposed
//! entry is never trusted: the policy is compiled again (or, built in, its
//! precompiled artifact written again) and still answers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::common::{Net, assert_error, cache_entries, test_policy};

fn net_with_cache(cache: &Path) -> Net {
    net_with_policy(cache, json!("host-local"))
}

fn net_with_policy(cache: &Path, policy: Value) -> Net {
    Net::with_ipam(
        "1.0.0",
        json!({"policy": policy, "ranges": [[{"subnet": "10.9.0.0/24"}]], "cacheDir": cache}),
    )
}

/// The same host-local twice: built in, whose artifact was compiled with the
/// binary, and as a policy file, which Cranelift compiles on a miss; each
/// with what its first call logs.
fn both_origins() -> [(Value, String); 2] {
    let file = test_policy("policy_host_local");
    [
        (
            json!("host-local"),
            "installed the precompiled policy host-local in".to_string(),
        ),
        (
            json!(file),
            format!("compiled policy {} in", file.display()),
        ),
    ]
}

#[test]
fn a_built_in_policy_never_waits_for_the_compiler() {
    for policy in ["host-local", "pooled", "sticky"] {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let mut ipam = json!({"policy": policy, "cacheDir": cache});
        if policy == "pooled" {
            ipam["pools"] = json!([{"name": "p", "cidr": "10.9.0.0/24"}]);
        } else {
            ipam["ranges"] = json!([[{"subnet": "10.9.0.0/24"}]]);
        }
        let net = Net::with_ipam("1.0.0", ipam);
        let out = net.add("c1");
        assert!(out.ok(), "{policy}: {} {}", out.stdout, out.stderr);
        assert!(
            out.stderr
                .contains(&format!("installed the precompiled policy {policy} in")),
            "{policy}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("wasm-ipam: compiled policy"),
            "{}",
            out.stderr
        );
        assert_eq!(cache_entries(&cache).len(), 1, "{policy}");
    }
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
    for (policy, first) in both_origins() {
        cold_calls_race(policy, &first);
    }
}

fn cold_calls_race(policy: Value, first: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let net = net_with_policy(&cache, policy);
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
    let compiled = outs.iter().filter(|o| o.stderr.contains(first)).count();
    assert_eq!(compiled, 1, "one {first:?} for six racing calls");
    assert_eq!(cache_entries(&cache).len(), 1);
}

#[test]
fn damaged_truncated_and_foreign_entries_are_rebuilt() {
    for (policy, first) in both_origins() {
        entries_are_rebuilt(policy, &first);
    }
}

fn entries_are_rebuilt(policy: Value, first: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let net = net_with_policy(&cache, policy);
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
        assert!(out.stderr.contains(first), "{why}: {}", out.stderr);
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
    // Compiled policies are code root runs: a cache folder others can
    // write is refused, naming the field and the folder at fault.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = net.add("c1");
    assert_error(
        &out,
        7,
        &format!(
            "ipam.cacheDir {} is refused: {}",
            cache.display(),
            cache.display()
        ),
    );
    assert!(out.stdout.contains("mode 0777"), "{}", out.stdout);
    // An entry others can write, in a private folder, is compiled again.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let entry = cache_entries(&cache).remove(0);
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = net.add("c2");
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("not a private regular file"),
        "{}",
        out.stderr
    );
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

#[test]
fn a_cache_that_cannot_be_written_still_answers() {
    // A cacheDir under a regular file can never be created, even by root:
    // the call runs from memory and says why nothing was cached.
    for (policy, first) in both_origins() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let net = net_with_policy(&file.join("cache"), policy);
        let out = net.add("c1");
        assert!(out.ok(), "{first}: {} {}", out.stdout, out.stderr);
        assert!(out.stderr.contains("cannot cache the"), "{}", out.stderr);
        let out = net.add("c2");
        assert!(out.ok(), "{first}: {} {}", out.stdout, out.stderr);
    }
}
