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

use cni_conformance::netns;
use cni_conformance::rules::Level;
use cni_conformance::target::PluginKind;
use cni_conformance::target::Target;
use serde_json::{Value, json};

use crate::faulty::{
    Fault, each_fault_is_caught, judge, passes_every_rule, should_faults_pass_a_default_run,
};

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

pub fn faulty(mode: &str, fault: &str) -> Target {
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
    judge(target, id, version).map_err(|(_, msg)| msg)
}

/// The interface and chained plugin's faults (see [`crate::faulty::Fault`]).
pub const FAULTS: &[Fault] = &[
    (
        "interface",
        "no-interface",
        "add.ifname-created",
        "1.1.0",
        Level::Must,
        "a link named eth0",
    ),
    (
        "interface",
        "wrong-name",
        "add.ifname-created",
        "1.1.0",
        Level::Must,
        "a link named eth0",
    ),
    (
        "interface",
        "truncates-ifname",
        "add.ifname-unusable",
        "1.1.0",
        Level::Must,
        "16 characters",
    ),
    (
        "interface",
        "reuses-interface",
        "add.existing-interface",
        "1.1.0",
        Level::Must,
        "already exists",
    ),
    (
        "interface",
        "idempotent-add",
        "add.second-add-fails",
        "1.1.0",
        Level::Must,
        "an error object",
    ),
    (
        "interface",
        "wrong-sandbox",
        "add.sandbox-reported",
        "1.1.0",
        Level::Should,
        "(CNI_NETNS) for eth0",
    ),
    // SPEC 0.4.0: "This item must be provided for interfaces created or
    // moved into a sandbox".
    (
        "interface",
        "no-sandbox",
        "add.sandbox-reported",
        "0.4.0",
        Level::Must,
        "to carry \"sandbox\"",
    ),
    (
        "interface",
        "wrong-mac",
        "add.interfaces-exist",
        "1.1.0",
        Level::Must,
        "with the MAC address the result names",
    ),
    (
        "interface",
        "ips-on-host",
        "add.ips-on-sandbox-interface",
        "1.1.0",
        Level::Should,
        "to index an interface with a sandbox",
    ),
    (
        "interface",
        "no-addresses",
        "add.addresses-configured",
        "1.1.0",
        Level::Should,
        "configured on eth0",
    ),
    (
        "interface",
        "no-routes",
        "add.routes-present",
        "1.1.0",
        Level::Should,
        "a route to 0.0.0.0/0",
    ),
    (
        "interface",
        "racy-links",
        "add.concurrent-interfaces",
        "1.1.0",
        Level::Must,
        "ran at once",
    ),
    (
        "interface",
        "del-needs-netns",
        "del.netns-deleted",
        "1.1.0",
        Level::Should,
        "exit 0 and no output",
    ),
    (
        "interface",
        "del-needs-prev",
        "del.no-prev-result",
        "1.1.0",
        Level::Should,
        "exit 0 and no output",
    ),
    (
        "interface",
        "del-leaves-interface",
        "del.removes-interface",
        "1.1.0",
        Level::Should,
        "eth0 gone",
    ),
    (
        "interface",
        "leaks-host-link",
        "leak.host-links",
        "1.1.0",
        Level::Should,
        "links it did not have before",
    ),
    (
        "interface",
        "no-ipam-release",
        "leak.addresses",
        "1.1.0",
        Level::Must,
        "DEL does not release them",
    ),
    (
        "interface",
        "no-ipam-release",
        "delegate.del",
        "1.1.0",
        Level::Must,
        "it made none",
    ),
    (
        "interface",
        "ipam-failure-leaks",
        "add.ipam-failure-clean",
        "1.1.0",
        Level::Should,
        "nothing left on the host",
    ),
    (
        "interface",
        "no-del-on-ipam-failure",
        "delegate.add-failure-del",
        "1.1.0",
        Level::Should,
        "a DEL to the IPAM plugin after its ADD failed",
    ),
    (
        "interface",
        "check-trusts",
        "check.address-removed",
        "1.1.0",
        Level::Should,
        "an error object",
    ),
    (
        "interface",
        "check-trusts",
        "check.interface-removed",
        "1.1.0",
        Level::Should,
        "an error object",
    ),
    (
        "interface",
        "check-exact",
        "check.after-chained-change",
        "1.1.0",
        Level::Must,
        "CHECK passes",
    ),
    (
        "interface",
        "delegate-env",
        "delegate.add-environment",
        "1.1.0",
        Level::Must,
        "CNI_ARGS",
    ),
    (
        "interface",
        "delegate-edits-config",
        "delegate.add-environment",
        "1.1.0",
        Level::Should,
        "whole config",
    ),
    (
        "interface",
        "swallows-stderr",
        "delegate.stderr",
        "1.1.0",
        Level::Should,
        "on the plugin's stderr",
    ),
    (
        "interface",
        "check-no-delegate",
        "delegate.check",
        "1.1.0",
        Level::Must,
        "it made none",
    ),
    (
        "interface",
        "check-hides-ipam-error",
        "delegate.check-error",
        "1.1.0",
        Level::Should,
        "so CHECK fails",
    ),
    (
        "interface",
        "gc-no-delegate",
        "delegate.gc",
        "1.1.0",
        Level::Must,
        "it made none",
    ),
    (
        "interface",
        "gc-hides-ipam-error",
        "delegate.gc-error",
        "1.1.0",
        Level::Should,
        "so GC fails",
    ),
    (
        "interface",
        "status-no-delegate",
        "delegate.status",
        "1.1.0",
        Level::Must,
        "it made none",
    ),
    (
        "interface",
        "status-hides-ipam-error",
        "delegate.status-error",
        "1.1.0",
        Level::Should,
        "so STATUS fails",
    ),
    (
        "meta",
        "drops-prev-result",
        "add.keeps-prev-result",
        "1.1.0",
        Level::Must,
        "it dropped interfaces",
    ),
    // SPEC 0.4.0: plugins "SHOULD echo the contents of the prevResult".
    (
        "meta",
        "drops-prev-result",
        "add.keeps-prev-result",
        "0.4.0",
        Level::Should,
        "it dropped interfaces",
    ),
    (
        "meta",
        "crash-without-interfaces",
        "add.prev-result-without-interfaces",
        "1.1.0",
        Level::Should,
        "a crash (a Go panic: panic: runtime error",
    ),
    // SPEC 0.4.0: "Errors must be indicated by ... JSON being printed to
    // stdout".
    (
        "meta",
        "crash-without-interfaces",
        "add.prev-result-without-interfaces",
        "0.4.0",
        Level::Must,
        "stdout was empty",
    ),
    (
        "meta",
        "daemon-after-del",
        "del.leaves-nothing-running",
        "1.1.0",
        Level::Should,
        "still running: pid",
    ),
];

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
fn each_interface_and_chained_fault_is_caught_by_its_rule_at_its_level() {
    if !can_run() {
        return;
    }
    each_fault_is_caught(FAULTS);
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
fn a_should_fault_of_an_interface_or_chained_plugin_fails_only_a_strict_run() {
    if !can_run() {
        return;
    }
    should_faults_pass_a_default_run(FAULTS);
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
    // A plugin of the chain that fails is named, with its place.
    let list = json!({"name": "chain", "plugins": [config("interface", "none", "10.215.0.0/24"),
                                                   config("meta", "crash", "")]});
    let mut t = Target::conflist(list, cni_path());
    t.plugin_kind = PluginKind::Interface;
    let err = check(&t, "add.result-schema", "1.0.0").unwrap_err();
    assert!(
        err.contains(
            "got from plugin 2 of 2 (faulty-cni-plugin): killed by signal 6 (SIGABRT): a crash"
        ),
        "{err}"
    );
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
        ("crash", "killed by signal 6 (SIGABRT): a crash"),
        ("flood", "killed for printing more than 4194304 bytes"),
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
