//! Bad input of every kind gets the right CNI error with a message naming
//! the problem, and never loses what the store held.

use std::path::Path;
use std::process::Command;

use cni::exec::{Call, run};
use serde_json::{Value, json};

use crate::common::{Net, assert_error, plugin};

#[test]
fn a_hundred_megabytes_on_stdin_is_refused() {
    let big = vec![b' '; 100 << 20];
    let out = run(plugin(), &Call::attach("ADD", "c1"), &big).unwrap();
    assert_error(&out, 6, "larger than");
}

/// Sets the value at a JSON pointer, creating missing objects on the way.
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let mut at = root;
    let keys: Vec<String> = pointer[1..]
        .split('/')
        .map(|k| k.replace("~1", "/"))
        .collect();
    for key in &keys[..keys.len() - 1] {
        if !at[key.as_str()].is_object() {
            at[key.as_str()] = json!({});
        }
        at = &mut at[key.as_str()];
    }
    at[keys[keys.len() - 1].as_str()] = value;
}

#[test]
fn wrong_json_types_in_every_field_name_the_field() {
    let net = Net::host_local("1.0.0", "10.20.0.0/24");
    assert_eq!(net.add_ip("keep"), "10.20.0.2/24");
    let before = net.store_dump();
    let cases: Vec<(&str, Value, u64, &str)> = vec![
        ("/cniVersion", json!(1.0), 7, "cniVersion must be a string"),
        ("/name", json!(["x"]), 7, "name must be a string"),
        ("/ipam", json!([]), 7, "ipam must be an object"),
        ("/ipam/policy", json!(3), 7, "ipam.policy must be a string"),
        (
            "/ipam/dataDir",
            json!(false),
            7,
            "ipam.dataDir must be a string",
        ),
        (
            "/ipam/cacheDir",
            json!({}),
            7,
            "ipam.cacheDir must be a string",
        ),
        ("/ipam/node", json!(1), 7, "ipam.node must be a string"),
        (
            "/ipam/resolvConf",
            json!(2),
            7,
            "ipam.resolvConf must be a string",
        ),
        (
            "/ipam/limits",
            json!("big"),
            7,
            "ipam.limits must be an object",
        ),
        (
            "/ipam/limits/memoryMiB",
            json!(-1),
            7,
            "ipam.limits.memoryMiB",
        ),
        (
            "/ipam/limits/timeoutMs",
            json!(1e9),
            7,
            "ipam.limits.timeoutMs",
        ),
        ("/ipam/limits/fuel", json!("lots"), 7, "ipam.limits.fuel"),
        (
            "/ipam/reclaimAfterReboot",
            json!("yes"),
            7,
            "ipam.reclaimAfterReboot must be true or false",
        ),
        ("/args", json!("x"), 7, "args must be an object"),
        (
            "/runtimeConfig",
            json!(5),
            7,
            "runtimeConfig must be an object",
        ),
        ("/prevResult", json!([]), 7, "prevResult must be an object"),
        (
            "/cni.dev~1valid-attachments",
            json!({}),
            7,
            "cni.dev/valid-attachments must be a list",
        ),
        ("/ipam/ranges", json!({"a": 1}), 7, "invalid ipam config"),
        (
            "/ipam/routes",
            json!([{"dst": 5}]),
            7,
            "invalid ipam config",
        ),
        (
            "/runtimeConfig/ips",
            json!("10.20.0.9"),
            7,
            "runtimeConfig.ips",
        ),
    ];
    for (pointer, value, code, needle) in cases {
        let mut conf = net.conf.clone();
        set_pointer(&mut conf, pointer, value);
        assert_error(
            &net.run_conf(&Call::attach("ADD", "c1"), &conf),
            code,
            needle,
        );
    }
    assert_eq!(net.store_dump(), before, "nothing stored was touched");
}

#[test]
fn a_corrupted_database_is_an_io_error_and_is_left_alone() {
    let net = Net::host_local("1.0.0", "10.21.0.0/24");
    net.add_ip("c0");
    let db = net.data_dir().join("wasm-ipam.db");
    for leftover in ["wasm-ipam.db-wal", "wasm-ipam.db-shm"] {
        let _ = std::fs::remove_file(net.data_dir().join(leftover));
    }
    let garbage: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    assert_error(&net.add("c1"), 5, "wasm-ipam.db");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the damaged file is evidence: not overwritten"
    );
}

/// A tmpfs mounted at `dir` for the test's lifetime. Needs root, which CI
/// and the development machines have; elsewhere the test says it skipped.
struct Mount(std::path::PathBuf);

impl Mount {
    /// A tmpfs on `dir`, private to its owner as a data dir must be (a
    /// tmpfs is 1777 unless told otherwise).
    fn tmpfs(dir: &Path, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("mode=0700,{options}"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and can mount tmpfs"
            );
            eprintln!("skipped: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_data_dir_is_an_io_error_naming_it() {
    let net = Net::host_local("1.0.0", "10.22.0.0/24");
    let Some(_mount) = Mount::tmpfs(&net.data_dir(), "ro,size=1m") else {
        return;
    };
    assert_error(&net.add("c1"), 5, &net.data_dir().display().to_string());
}

#[test]
fn a_full_disk_fails_cleanly_and_loses_nothing() {
    let net = Net::host_local("1.0.0", "10.23.0.0/24");
    let Some(_mount) = Mount::tmpfs(&net.data_dir(), "size=512k") else {
        return;
    };
    let kept: Vec<String> = (0..5).map(|i| net.add_ip(&format!("c{i}"))).collect();
    // Fill what is left of the filesystem.
    let filler = net.data_dir().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let mut failed = None;
    for i in 5..200 {
        let out = net.add(&format!("c{i}"));
        if !out.ok() {
            failed = Some(out);
            break;
        }
    }
    let out = failed.expect("the disk never filled");
    assert_error(&out, 5, "full");
    std::fs::remove_file(&filler).unwrap();
    let leased = net.leased();
    for ip in &kept {
        assert!(
            leased.contains(&ip.split('/').next().unwrap().to_string()),
            "{ip} was lost"
        );
    }
    assert!(net.add("after").ok(), "works again once there is room");
}
