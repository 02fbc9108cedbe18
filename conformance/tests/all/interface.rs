//! The interface and chained rules, checked against the faulty plugin in
//! those modes: each fault is caught by the rule it breaks, the plugin
//! without a fault passes every rule at every version, alone and in a
//! conflist, and a plugin that hangs, crashes, prints garbage or leaves a
//! namespace gets a clear failure and leaves the machine clean.
//!
//! The faulty plugin delegates to itself as its IPAM plugin, through a link
//! named `faulty-ipam`, so every version it claims works. They need root
//! (network namespaces); elsewhere they say they were skipped, and in CI
//! they fail instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cni_conformance::kind::PluginKind;
use cni_conformance::netns;
use cni_conformance::rules::{self, Case};
use cni_conformance::target::Target;
use serde_json::{Value, json};

use crate::faulty::{passes_every_rule, rule};

const FAULTY: &str = env!("CARGO_BIN_EXE_faulty-cni-plugin");

/// Whether these tests can run here; in CI they must.
pub fn can_run() -> bool {
    let ok = netns::is_root();
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI must run as root"
    );
    if !ok {
        eprintln!("skipped: needs root, to make network namespaces");
    }
    ok
}

fn ipam(subnet: &str) -> Value {
    json!({"type": "faulty-ipam", "subnet": subnet, "routes": [{"dst": "0.0.0.0/0"}]})
}

/// The faulty plugin's folder, and one with the `faulty-ipam` link.
fn cni_path() -> Vec<PathBuf> {
    static IPAM_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let ipam_dir = IPAM_DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("faulty-ipam")
            .tempdir()
            .unwrap()
            .keep();
        std::os::unix::fs::symlink(FAULTY, dir.join("faulty-ipam")).unwrap();
        dir
    });
    vec![
        Path::new(FAULTY).parent().unwrap().to_path_buf(),
        ipam_dir.clone(),
    ]
}

fn config(mode: &str, fault: &str, subnet: &str) -> Value {
    let mut c = json!({"type": "faulty-cni-plugin", "mode": mode, "fault": fault});
    if mode == "interface" {
        c["ipam"] = ipam(subnet);
    }
    c
}

fn faulty(mode: &str, fault: &str) -> Target {
    let mut t = Target::native(FAULTY);
    t.plugin_kind = if mode == "meta" {
        PluginKind::Meta
    } else {
        PluginKind::Interface
    };
    t.config = Some(config(mode, fault, "10.213.0.0/24"));
    t.small_config = Some(config(mode, fault, "10.214.0.0/29"));
    t.cni_path = cni_path();
    t.timeout = Some(std::time::Duration::from_secs(20));
    t
}

fn check(target: &Target, id: &str, version: &str) -> Result<(), String> {
    let rule = rule(id);
    rules::applies(&rule, version, target).unwrap();
    (rule.check)(&Case::new(target, version, &rule))
}

/// The suite's namespaces whose suite process has ended: what a run that
/// is over left behind.
fn left_by_ended_runs() -> Vec<String> {
    netns::ip(&["netns", "list"])
        .unwrap()
        .lines()
        .filter_map(|l| {
            let name = l.split_whitespace().next()?;
            let pid: i32 = name
                .strip_prefix(netns::PREFIX)?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            let alive =
                rustix::process::test_kill_process(rustix::process::Pid::from_raw(pid)?).is_ok();
            (!alive).then(|| name.to_string())
        })
        .collect()
}

#[test]
fn a_correct_interface_or_chained_plugin_passes_every_rule_at_every_version() {
    if !can_run() {
        return;
    }
    for mode in ["interface", "meta"] {
        passes_every_rule(&faulty(mode, "none"), mode);
    }
}

#[test]
fn each_interface_and_chained_fault_is_caught_by_the_rule_it_breaks() {
    if !can_run() {
        return;
    }
    for (mode, fault, id, needle) in [
        (
            "interface",
            "no-interface",
            "add.ifname-created",
            "a link named eth0",
        ),
        (
            "interface",
            "wrong-name",
            "add.ifname-created",
            "a link named eth0",
        ),
        (
            "interface",
            "no-sandbox",
            "add.sandbox-reported",
            "to carry \"sandbox\"",
        ),
        (
            "interface",
            "wrong-mac",
            "add.interfaces-exist",
            "with the MAC address the result names",
        ),
        (
            "interface",
            "no-addresses",
            "add.addresses-configured",
            "configured on eth0",
        ),
        (
            "interface",
            "no-addresses",
            "add.routes-present",
            "a route to 0.0.0.0/0",
        ),
        (
            "interface",
            "del-needs-netns",
            "del.netns-deleted",
            "exit 0 and no output",
        ),
        (
            "interface",
            "del-leaves-interface",
            "del.removes-interface",
            "eth0 gone",
        ),
        (
            "interface",
            "leaks-host-link",
            "leak.host-links",
            "links it did not have before",
        ),
        (
            "interface",
            "no-ipam-release",
            "leak.addresses",
            "DEL does not release them",
        ),
        (
            "interface",
            "ipam-failure-leaks",
            "add.ipam-failure-clean",
            "nothing left on the host",
        ),
        (
            "meta",
            "drops-prev-result",
            "add.keeps-prev-result",
            "it dropped interfaces",
        ),
    ] {
        let err =
            check(&faulty(mode, fault), id, "1.0.0").expect_err(&format!("{fault} escaped {id}"));
        assert!(err.contains(needle), "{fault} / {id}: {err}");
        assert!(
            check(&faulty(mode, "none"), id, "1.0.0").is_ok(),
            "the control fails {id}"
        );
    }
    // A fault breaks its own rule, not unrelated ones.
    assert!(
        check(
            &faulty("interface", "wrong-mac"),
            "add.ifname-created",
            "1.0.0"
        )
        .is_ok()
    );
}

#[test]
fn a_conflist_runs_as_a_chain_and_passes() {
    if !can_run() {
        return;
    }
    let list = json!({"name": "chain", "plugins": [config("interface", "none", "10.215.0.0/24"),
                                                   config("meta", "none", "")]});
    let mut t = Target::conflist(list, cni_path());
    t.plugin_kind = PluginKind::Interface;
    for id in [
        "add.ifname-created",
        "add.interfaces-exist",
        "check.after-add",
        "del.removes-interface",
        "leak.host-links",
    ] {
        check(&t, id, "1.0.0").unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    // The chained plugin's fault shows through the chain's result.
    let list = json!({"name": "chain", "plugins": [config("interface", "none", "10.215.0.0/24"),
                                                   config("meta", "drops-prev-result", "")]});
    let mut t = Target::conflist(list, cni_path());
    t.plugin_kind = PluginKind::Interface;
    let err = check(&t, "add.sandbox-reported", "1.0.0").unwrap_err();
    assert!(err.contains("an interfaces entry named eth0"), "{err}");
}

fn cli(args: &[&str], config: &Value) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cni-conformance"));
    cmd.args(["--plugin", FAULTY, "--config"]).arg(&file);
    for dir in cni_path() {
        cmd.arg("--cni-path").arg(dir);
    }
    cmd.args(args).output().unwrap()
}

#[test]
fn the_kind_is_worked_out_and_said() {
    if !can_run() {
        return;
    }
    for (mode, kind) in [
        (
            "interface",
            "kind interface: an ADD without a prevResult reported an interface with a sandbox",
        ),
        ("meta", "kind meta: an ADD without a prevResult failed"),
    ] {
        let out = cli(&["--list"], &config(mode, "none", "10.216.0.0/24"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains(kind), "{stderr}");
    }
}

#[test]
fn a_conflist_is_judged_through_the_cli() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chain.conflist");
    let list = json!({"cniVersion": "1.0.0", "name": "chain",
                      "plugins": [config("interface", "none", "10.219.0.0/24"), config("meta", "none", "")]});
    std::fs::write(&file, list.to_string()).unwrap();
    let report = dir.path().join("report");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cni-conformance"));
    cmd.arg("--conflist").arg(&file);
    for dir in cni_path() {
        cmd.arg("--cni-path").arg(dir);
    }
    let out = cmd
        .arg("--report")
        .arg(&report)
        .args(["--strict", "@1.0.0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("kind interface"), "{stderr}");
    let md = std::fs::read_to_string(report.with_extension("md")).unwrap();
    assert!(
        md.contains("conflist [faulty-cni-plugin, faulty-cni-plugin]"),
        "{md}"
    );
    assert!(md.contains("| add.interfaces-exist | must |"), "{md}");
    let xml = std::fs::read_to_string(report.with_extension("xml")).unwrap();
    assert!(
        xml.contains("<property name=\"level\" value=\"should\"/>"),
        "{xml}"
    );
}

#[test]
fn a_bad_plugin_fails_clearly_and_leaves_the_machine_clean() {
    if !can_run() {
        return;
    }
    let ours = |out: &Output| {
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    for (fault, needle) in [
        ("hang", "killed after"),
        ("crash", "no exit status"),
        ("garbage", "is not JSON"),
        ("leaves-netns", "left the network namespace faulty-left-"),
    ] {
        let out = cli(
            &[
                "--kind",
                "interface",
                "--timeout-ms",
                "1500",
                "--exact",
                "spec::add.result-schema@1.0.0",
            ],
            &config("interface", fault, "10.217.0.0/24"),
        );
        let text = ours(&out);
        assert!(!out.status.success(), "{fault} passed: {text}");
        assert!(text.contains(needle), "{fault}: {text}");
        let list = netns::ip(&["netns", "list"]).unwrap();
        assert!(!list.contains("faulty-left-"), "{fault} left {list}");
        assert!(
            left_by_ended_runs().is_empty(),
            "{fault} left {:?}",
            left_by_ended_runs()
        );
    }
}

#[test]
fn sigterm_removes_every_namespace_the_suite_made() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(
        &file,
        config("interface", "hang", "10.218.0.0/24").to_string(),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cni-conformance"))
        .args([
            "--plugin",
            FAULTY,
            "--kind",
            "interface",
            "--exact",
            "spec::add.result-schema@1.0.0",
            "--config",
        ])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("{}{}-", netns::PREFIX, child.id());
    let made = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        netns::ip(&["netns", "list"]).unwrap().contains(&prefix)
    });
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(made, "the suite made no namespace to clean up");
    assert_eq!(status.code(), Some(130));
    let list = netns::ip(&["netns", "list"]).unwrap();
    assert!(!list.contains(&prefix), "left after SIGTERM: {list}");
}
