//! A local user who is not root, against root's wasm-ipam: folders they
//! own on a configured path, a race to swap root's cache for theirs, a
//! planted database, symbolic links where wasm-ipam creates files, and
//! devices and FIFOs where it reads one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cni::exec::{self, Call, Spawn};
use serde_json::json;

use crate::common::{Net, assert_error, cache_entries, plugin};

/// The user the attacks run as: `nobody`.
const USER: u32 = 65534;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether this test can act as another user; without root it is skipped,
/// except in CI, which runs as root.
fn can_switch_users() -> bool {
    if is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI runs as root");
    eprintln!("skipped: needs root to act as another user");
    false
}

fn chown(path: &Path, uid: u32) {
    rustix::fs::chown(
        path,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(uid)),
    )
    .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A folder `nobody` owns, in a fresh private folder of root's.
fn users_folder(tmp: &tempfile::TempDir) -> PathBuf {
    let dir = tmp.path().join("home");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    chown(&dir, USER);
    dir
}

/// Swaps `a` and `b` with `renameat2(RENAME_EXCHANGE)` in a loop, as
/// `nobody`, on a thread of its own (Linux credentials are per thread),
/// until the returned flag is set; then the count of swaps.
fn swap_loop(a: PathBuf, b: PathBuf) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        rustix::thread::set_thread_res_gid(
            rustix::fs::Gid::from_raw(USER),
            rustix::fs::Gid::from_raw(USER),
            rustix::fs::Gid::from_raw(USER),
        )
        .unwrap();
        rustix::thread::set_thread_uid(rustix::fs::Uid::from_raw(USER)).unwrap();
        let mut swaps = 0;
        while !flag.load(Ordering::Relaxed) {
            if rustix::fs::renameat_with(
                rustix::fs::CWD,
                &a,
                rustix::fs::CWD,
                &b,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .is_ok()
            {
                swaps += 1;
            }
        }
        swaps
    });
    (stop, handle)
}

#[test]
fn a_cache_below_a_users_folder_is_refused_whatever_they_swap() {
    if !can_switch_users() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = users_folder(&tmp);
    // Root's cache, in the user's folder, filled by a first call made
    // before the folder changed hands; beside it the user's own, with
    // root's entry's name on a file of theirs.
    let cache = home.join("cache");
    let net = Net::with_ipam(
        "1.0.0",
        json!({"policy": "host-local", "ranges": [[{"subnet": "10.60.0.0/24"}]],
               "cacheDir": tmp.path().join("first")}),
    );
    net.add_ip("warm");
    std::fs::rename(tmp.path().join("first"), &cache).unwrap();
    let theirs = home.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let entry = cache_entries(&cache).remove(0);
    std::fs::write(
        theirs.join(entry.file_name().unwrap()),
        b"the user's native code",
    )
    .unwrap();
    chown(&theirs, USER);
    chown(&theirs.join(entry.file_name().unwrap()), USER);
    let mut conf = net.conf.clone();
    conf["ipam"]["cacheDir"] = json!(cache);
    let (stop, swapper) = swap_loop(cache.clone(), theirs.clone());
    let outs: Vec<_> = (0..20)
        .map(|i| net.run_conf(&Call::attach("ADD", &format!("c{i}")), &conf))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "the user never swapped the folders");
    for out in &outs {
        assert_error(
            out,
            7,
            &format!(
                "ipam.cacheDir {} is refused: {}",
                cache.display(),
                home.display()
            ),
        );
        assert!(out.stdout.contains("owned by uid 65534"), "{}", out.stdout);
    }
    assert_eq!(
        net.leased(),
        ["10.60.0.2"],
        "only the call before the attack"
    );
}

#[test]
fn a_data_dir_others_can_write_is_refused_naming_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let data = open.join("data");
    let net = Net::host_local("1.0.0", "10.61.0.0/24");
    let mut conf = net.conf.clone();
    conf["ipam"]["dataDir"] = json!(data);
    let out = net.run_conf(&Call::attach("ADD", "c1"), &conf);
    assert_error(
        &out,
        7,
        &format!(
            "ipam.dataDir {} is refused: {}",
            data.display(),
            open.display()
        ),
    );
    assert!(
        out.stdout.contains("without the sticky bit"),
        "{}",
        out.stdout
    );
    assert!(!data.exists(), "nothing was made there");
    // The folder itself writable by others, even with the sticky bit.
    chmod(&open, 0o1777);
    conf["ipam"]["dataDir"] = json!(open);
    let out = net.run_conf(&Call::attach("ADD", "c1"), &conf);
    assert_error(&out, 7, "mode 1777");
    // /tmp's way, sticky and root's, is fine above a private folder.
    conf["ipam"]["dataDir"] = json!(data);
    assert!(net.run_conf(&Call::attach("ADD", "c1"), &conf).ok());
}

#[test]
fn a_database_or_lock_that_is_a_link_or_another_users_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("root-owned-target");
    // A link named wasm-ipam.db: root would have created the database
    // where the link points.
    let net = Net::host_local("1.0.0", "10.62.0.0/24");
    std::fs::create_dir_all(net.data_dir()).unwrap();
    chmod(&net.data_dir(), 0o700);
    std::os::unix::fs::symlink(&target, net.data_dir().join("wasm-ipam.db")).unwrap();
    let out = net.add("c1");
    assert_error(&out, 5, "is a symbolic link");
    assert!(
        !target.exists(),
        "nothing was created where the link points"
    );

    // A database another user owns, as one planted before the folder was
    // root's: refused, whatever it holds.
    let net = Net::host_local("1.0.0", "10.62.0.0/24");
    net.add_ip("c1");
    let db = net.data_dir().join("wasm-ipam.db");
    chown(&db, USER);
    chmod(&db, 0o666);
    assert_error(&net.add("c2"), 5, "owned by uid 65534");
    chown(&db, 0);
    assert_error(&net.add("c2"), 5, "others can write it (mode 0666)");
    chmod(&db, 0o600);
    assert!(net.add("c2").ok());

    // A link where a compile takes its turn: the call goes on without the
    // turn, and nothing is created where the link points.
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    chmod(&cache, 0o700);
    let mut conf = net.conf.clone();
    conf["ipam"]["cacheDir"] = json!(cache);
    let first = net.run_conf(&Call::attach("ADD", "probe"), &conf);
    assert!(first.ok());
    let entry = cache_entries(&cache).remove(0);
    std::fs::remove_file(&entry).unwrap();
    let lock = entry.with_extension("lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let out = net.run_conf(&Call::attach("ADD", "c3"), &conf);
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(!target.exists(), "the lock's link was not followed");
}

/// A call with `ipam[field] = path`, bounded in time and in memory
/// (RLIMIT_DATA 256 MiB), as a hang or a runaway read would break both.
fn bounded_add(net: &Net, field: &str, path: &Path) -> cni::exec::Outcome {
    let mut conf = net.conf.clone();
    conf["ipam"][field] = json!(path);
    let prlimit = Path::new("/usr/bin/prlimit");
    let call = Call::attach("ADD", "c1");
    let spawn = Spawn {
        timeout: Some(Duration::from_secs(20)),
        netns: None,
    };
    let out = if prlimit.exists() {
        let wrapper = net.dir.path().join("limited");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} --data=268435456 {} \"$@\"\n",
                prlimit.display(),
                plugin().display()
            ),
        )
        .unwrap();
        chmod(&wrapper, 0o755);
        exec::run_with(&wrapper, &call, conf.to_string().as_bytes(), &spawn)
    } else {
        exec::run_with(plugin(), &call, conf.to_string().as_bytes(), &spawn)
    };
    out.unwrap()
}

#[test]
fn devices_and_fifos_are_refused_at_once_as_policy_and_resolv_conf() {
    let net = Net::host_local("1.0.0", "10.63.0.0/24");
    let fifo = net.dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for (field, path, code, needle) in [
        (
            "policy",
            Path::new("/dev/zero"),
            7,
            "it is a character device",
        ),
        ("policy", fifo.as_path(), 7, "it is a FIFO"),
        (
            "resolvConf",
            Path::new("/dev/zero"),
            7,
            "it is a character device",
        ),
        ("resolvConf", fifo.as_path(), 7, "it is a FIFO"),
    ] {
        let out = bounded_add(&net, field, path);
        assert!(
            !out.timed_out,
            "{field} {}: {}",
            path.display(),
            out.status()
        );
        assert_error(&out, code, needle);
        assert!(
            out.stdout.contains(&path.display().to_string()),
            "{}",
            out.stdout
        );
    }
    // A policy that is a link: named, with where it points.
    let link = net.dir.path().join("policy.wasm");
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    let out = bounded_add(&net, "policy", &link);
    assert_error(&out, 7, "is a symbolic link (to /etc/shadow)");
    assert!(net.leased().is_empty());
}

/// The reconciler reads the node's CNI configs to learn which policy runs
/// on which store: a config a local user owns, or a folder of theirs it
/// sits in, is skipped with why, never run.
#[test]
fn the_reconciler_skips_a_config_another_user_could_have_written() {
    if !can_switch_users() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = |name: &str| {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge","ipam":{{"type":"wasm-ipam",
                "dataDir":"{}","ranges":[[{{"subnet":"10.7.0.0/24"}}]]}}}}"#,
            dir.path().join("data").display()
        )
    };
    std::fs::write(dir.path().join("10-root.conf"), conf("root")).unwrap();
    let theirs = dir.path().join("20-theirs.conf");
    std::fs::write(&theirs, conf("theirs")).unwrap();
    chown(&theirs, USER);
    let found = wasm_ipam::reconcile::networks::read(dir.path()).unwrap();
    let names: Vec<&str> = found.found.iter().map(|f| f.conf.name.as_str()).collect();
    assert_eq!(names, ["root"]);
    assert_eq!(found.skipped.len(), 1, "{:?}", found.skipped);
    assert_eq!(found.skipped[0].0, theirs);
    assert!(found.skipped[0].1.contains("65534"), "{:?}", found.skipped);
}
