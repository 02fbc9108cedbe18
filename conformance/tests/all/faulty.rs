//! Each deliberate fault is caught by the rule it breaks; the same plugin
//! without a fault passes every rule.

use cni::version::VERSIONS;
use cni_conformance::rules::{self, Case, Rule};
use cni_conformance::target::Target;
use serde_json::json;

fn faulty(fault: &str) -> Target {
    let mut t = Target::native(env!("CARGO_BIN_EXE_faulty-cni-plugin"));
    t.ipam = Some(json!({"subnet": "10.210.0.0/24", "fault": fault}));
    t.small_ipam = Some(json!({"subnet": "10.211.0.0/29", "fault": fault}));
    t
}

pub fn rule(id: &str) -> Rule {
    rules::version_rules()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no rule {id}"))
}

fn check(target: &Target, id: &str, version: &str) -> Result<(), String> {
    let rule = rule(id);
    rules::applies(&rule, version, target).unwrap();
    (rule.check)(&Case::new(target, version, &rule))
}

/// Every rule that judges `target`'s kind passes at every version.
pub fn passes_every_rule(target: &Target, label: &str) {
    for version in VERSIONS {
        for rule in rules::version_rules()
            .into_iter()
            .filter(|r| r.judges(target.plugin_kind))
        {
            if rules::applies(&rule, version, target).is_ok() {
                let result = (rule.check)(&Case::new(target, version, &rule));
                assert!(
                    result.is_ok(),
                    "{label} {}@{version}: {}",
                    rule.id,
                    result.unwrap_err()
                );
            }
        }
    }
}

#[test]
fn a_correct_plugin_passes_every_rule_at_every_version() {
    passes_every_rule(&faulty("none"), "ipam");
}

#[test]
fn each_fault_is_caught_by_the_rule_it_breaks() {
    for (fault, id, version, needle) in [
        (
            "race",
            "add.concurrent-distinct",
            "1.0.0",
            "handed out twice",
        ),
        ("del-once", "del.repeated", "1.0.0", "exit 0 and no output"),
        (
            "stderr-errors",
            "env.unknown-command",
            "1.0.0",
            "stdout was empty",
        ),
        (
            "stderr-errors",
            "add.second-add-fails",
            "0.4.0",
            "stdout was empty",
        ),
        (
            "wrong-version",
            "add.result-schema",
            "1.0.0",
            "must equal the config's",
        ),
        (
            "wrong-version",
            "add.result-schema",
            "0.4.0",
            "must equal the config's",
        ),
        (
            "interfaces",
            "add.ipam-no-interfaces",
            "1.0.0",
            "must not have interfaces",
        ),
        ("check-below-040", "check.below-0.4.0", "0.3.1", "code [1]"),
    ] {
        let err = check(&faulty(fault), id, version)
            .expect_err(&format!("{fault} escaped {id}@{version}"));
        assert!(err.contains(needle), "{fault} / {id}: {err}");
        assert!(
            err.contains("invocation: CNI_COMMAND="),
            "the message shows the call: {err}"
        );
        assert!(err.contains("expected:") && err.contains("got:"), "{err}");
        assert!(
            check(&faulty("none"), id, version).is_ok(),
            "the control fails {id}"
        );
    }
    // A fault breaks its own rule, not unrelated ones.
    assert!(check(&faulty("interfaces"), "add.result-schema", "1.0.0").is_ok());
}

#[test]
fn an_expected_failure_that_passes_fails_the_run() {
    // Through the CLI, so the deliberately failing run's output stays out of
    // this test's.
    let dir = tempfile::tempdir().unwrap();
    let ipam = dir.path().join("ipam.json");
    std::fs::write(&ipam, json!({"subnet": "10.214.0.0/24"}).to_string()).unwrap();
    let expectations = dir.path().join("expect.toml");
    std::fs::write(
        &expectations,
        "[[expected]]\ntest = \"spec::del.unknown-container@1.0.0\"\nstatus = \"fail\"\nreason = \"pretend it is broken\"\n",
    )
    .unwrap();
    let run = |filter: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cni-conformance"))
            .args([
                "--plugin",
                env!("CARGO_BIN_EXE_faulty-cni-plugin"),
                "--ipam-config",
            ])
            .arg(&ipam)
            .arg("--expectations")
            .arg(&expectations)
            .args(["--report"])
            .arg(dir.path().join("r"))
            .arg(filter)
            .output()
            .unwrap()
    };
    let out = run("spec::del.");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("remove it from the expectations file"),
        "{text}"
    );
    let md = std::fs::read_to_string(dir.path().join("r.md")).unwrap();
    assert!(md.contains("| del.unknown-container |"), "{md}");
    // A pattern that matches nothing is reported and fails the run too.
    std::fs::write(
        &expectations,
        "[[expected]]\ntest = \"spec::no.such-rule@*\"\nstatus = \"skip\"\nreason = \"stale\"\n",
    )
    .unwrap();
    let out = run("spec::del.");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches no test"));
}

#[test]
fn the_cli_lists_and_filters_like_libtest() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = dir.path().join("ipam.json");
    std::fs::write(&ipam, json!({"subnet": "10.212.0.0/24"}).to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cni-conformance"))
        .args([
            "--plugin",
            env!("CARGO_BIN_EXE_faulty-cni-plugin"),
            "--ipam-config",
        ])
        .arg(&ipam)
        .args(["--list", "spec::check."])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("spec::check.after-add@1.1.0: test"), "{text}");
    assert!(!text.contains("spec::add."), "the filter applies: {text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cni-conformance"))
        .args([
            "--plugin",
            env!("CARGO_BIN_EXE_faulty-cni-plugin"),
            "--ipam-config",
        ])
        .arg(&ipam)
        .args(["--exact", "spec::add.exhaustion@1.0.0", "--report"])
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ignored (needs a small-pool config"),
        "skips show their reason: {text}"
    );
    let md = std::fs::read_to_string(dir.path().join("r.md")).unwrap();
    assert!(md.contains("0 passed, 0 failed, 1 skipped"), "{md}");
    assert!(
        std::fs::read_to_string(dir.path().join("r.xml"))
            .unwrap()
            .contains("<testsuites")
    );
}

#[test]
fn bad_arguments_get_a_message_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_list = dir.path().join("single.json");
    std::fs::write(&not_a_list, json!({"type": "bridge"}).to_string()).unwrap();
    let faulty = env!("CARGO_BIN_EXE_faulty-cni-plugin");
    let missing = dir.path().join("missing.json");
    for (args, needle) in [
        (
            vec!["--plugin", faulty, "--config", missing.to_str().unwrap()],
            "reading",
        ),
        (
            vec!["--conflist", not_a_list.to_str().unwrap()],
            "is not a conflist: it has no plugins list",
        ),
        (
            vec!["--plugin", faulty, "--kind", "interface"],
            "an interface plugin needs its network config: give --config FILE",
        ),
        (
            vec!["--plugin", faulty],
            "give the plugin's network config with --config FILE",
        ),
        (
            vec!["--plugin", faulty, "--kind", "router"],
            "invalid value 'router'",
        ),
        (vec![], "give the plugin to test"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cni-conformance"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} passed");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
