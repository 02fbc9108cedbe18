//! The recorder, end to end: put it in place of Debian's host-local, drive a
//! lifecycle through it, and replay what it wrote against the real plugin.

use std::path::Path;
use std::process::Command;

use cni::exec::Call;
use cni_conformance::recordings::{self, Mode};
use cni_conformance::target::Target;
use serde_json::json;

#[test]
fn a_recorded_session_replays_exactly() {
    let reference = Path::new("/usr/lib/cni/host-local");
    if !reference.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "host-local is missing in CI"
        );
        eprintln!("skipped: {} is not installed", reference.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let plugin = bin.join("host-local");
    std::fs::copy(reference, &plugin).unwrap();
    let out = dir.path().join("session.jsonl");
    let cli = env!("CARGO_BIN_EXE_cni-conformance");
    let status = Command::new(cli)
        .args(["record", "install", "--plugin"])
        .arg(&plugin)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());

    let conf = json!({"cniVersion": "1.0.0", "name": "rec", "type": "bridge",
                      "ipam": {"type": "host-local", "dataDir": dir.path().join("data"),
                               "ranges": [[{"subnet": "10.213.0.0/29"}]]}});
    let shim = Target::native(&plugin);
    let a = cni_conformance::chain::run(&shim, &Call::attach("ADD", "ca"), &conf, None).unwrap();
    assert_eq!(
        a.json()["ips"][0]["address"],
        "10.213.0.2/29",
        "the real plugin answered through the shim"
    );
    cni_conformance::chain::run(&shim, &Call::attach("ADD", "cb"), &conf, None).unwrap();
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = a.json();
    assert!(
        cni_conformance::chain::run(&shim, &Call::attach("CHECK", "ca"), &with_prev, None)
            .unwrap()
            .ok()
    );
    assert!(
        cni_conformance::chain::run(&shim, &Call::attach("DEL", "ca"), &with_prev, None)
            .unwrap()
            .ok()
    );
    let dup = cni_conformance::chain::run(&shim, &Call::attach("ADD", "cb"), &conf, None).unwrap();
    assert_eq!(dup.code, Some(1), "errors and exit codes pass through");
    cni_conformance::chain::run(&shim, &Call::attach("ADD", "cc"), &conf, None).unwrap();

    let status = Command::new(cli)
        .args(["record", "uninstall", "--plugin"])
        .arg(&plugin)
        .status()
        .unwrap();
    assert!(status.success());
    let records = recordings::load(&out).unwrap();
    assert_eq!(records.len(), 6);
    assert!(records.iter().all(|r| r.plugin == "host-local"));
    assert_eq!(records[4].exit, 1);
    assert_eq!(records[0].env["CNI_CONTAINERID"], "ca");

    let real = Target::native(&plugin);
    for mode in [Mode::Exact, Mode::Spec] {
        assert_eq!(
            recordings::replay(&real, &records, "host-local", mode).unwrap(),
            6
        );
    }
}
