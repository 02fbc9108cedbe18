//! Each deliberate fault is caught by the rule it breaks, at that rule's
//! level: a fault of a MUST rule fails a default run, a fault of a SHOULD
//! rule only a strict one. The same plugin without a fault passes every
//! rule. Every `must` and `should` rule has such a fault.

use cni::version::{VERSIONS, at_least};
use cni_conformance::rules::{self, Case, Finding, Level, Rule};
use cni_conformance::target::Target;
use serde_json::json;

const FAULTY: &str = env!("CARGO_BIN_EXE_faulty-cni-plugin");

/// A fault: the plugin's mode (`ipam`, `version-echo`, `interface`,
/// `meta`), the fault, the rule that catches it, the version, the level it
/// is judged at there, and words its message must hold.
pub type Fault = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Level,
    &'static str,
);

/// The IPAM plugin's faults.
pub const FAULTS: &[Fault] = &[
    // "A plugin must exit with a return code of 0 on success, and non-zero
    // on failure": a fill of the small pool meets the error at once.
    (
        "ipam",
        "errors-exit-0",
        "add.exhaustion",
        "1.1.0",
        Level::Must,
        "printed an error object and exited 0",
    ),
    (
        "ipam",
        "errors-exit-0",
        "status.exhausted",
        "1.1.0",
        Level::Must,
        "printed an error object and exited 0",
    ),
    (
        "version-echo",
        "none",
        "version.output",
        "1.1.0",
        Level::Must,
        "the version the input named",
    ),
    (
        "ipam",
        "race",
        "add.concurrent-distinct",
        "1.1.0",
        Level::Must,
        "handed out twice",
    ),
    (
        "ipam",
        "dup-when-full",
        "add.exhaustion",
        "1.1.0",
        Level::Must,
        "handed out twice",
    ),
    (
        "ipam",
        "del-once",
        "del.repeated",
        "1.1.0",
        Level::Must,
        "exit 0 and no output",
    ),
    (
        "ipam",
        "del-once",
        "del.unknown-container",
        "1.1.0",
        Level::Must,
        "exit 0 and no output",
    ),
    // SPEC 0.4.0 asked only that DEL "should be idempotent".
    (
        "ipam",
        "del-once",
        "del.repeated",
        "0.4.0",
        Level::Should,
        "exit 0 and no output",
    ),
    (
        "ipam",
        "del-needs-netns",
        "del.no-netns-no-prev-result",
        "1.1.0",
        Level::Should,
        "exit 0 and no output",
    ),
    (
        "ipam",
        "leak",
        "add.reuse-after-release",
        "1.1.0",
        Level::Should,
        "which DEL released",
    ),
    (
        "ipam",
        "leak",
        "check.after-del",
        "1.1.0",
        Level::Should,
        "an error object",
    ),
    (
        "ipam",
        "stderr-errors",
        "env.unknown-command",
        "1.1.0",
        Level::Should,
        "stdout was empty",
    ),
    // SPEC 0.4.0: "Errors must be indicated by ... JSON being printed to stdout".
    (
        "ipam",
        "stderr-errors",
        "env.unknown-command",
        "0.4.0",
        Level::Must,
        "stdout was empty",
    ),
    (
        "ipam",
        "stderr-errors",
        "status.exhausted",
        "1.1.0",
        Level::Must,
        "stdout was empty",
    ),
    (
        "ipam",
        "vague-env",
        "env.missing-containerid",
        "1.1.0",
        Level::Must,
        "names [\"CNI_CONTAINERID\"]",
    ),
    (
        "ipam",
        "vague-env",
        "env.unknown-command",
        "1.1.0",
        Level::Must,
        "names [\"CNI_COMMAND\"]",
    ),
    (
        "ipam",
        "vague-args",
        "args.unknown-key",
        "1.1.0",
        Level::Must,
        "CONFORMANCE_UNKNOWN_KEY",
    ),
    (
        "ipam",
        "rejects-args",
        "args.unknown-data",
        "1.1.0",
        Level::Should,
        "to be ignored",
    ),
    (
        "ipam",
        "lenient",
        "config.malformed-field",
        "1.1.0",
        Level::Should,
        "ipam.subnet is",
    ),
    (
        "ipam",
        "wrong-version",
        "add.result-schema",
        "1.1.0",
        Level::Must,
        "must equal the config's",
    ),
    (
        "ipam",
        "wrong-version",
        "add.result-schema",
        "0.4.0",
        Level::Must,
        "must equal the config's",
    ),
    (
        "ipam",
        "interfaces",
        "add.ipam-no-interfaces",
        "1.1.0",
        Level::Must,
        "must not have interfaces",
    ),
    // SPEC 0.4.0: IPAM plugins "should return an abbreviated Result".
    (
        "ipam",
        "interfaces",
        "add.ipam-no-interfaces",
        "0.4.0",
        Level::Should,
        "must not have interfaces",
    ),
    (
        "ipam",
        "no-address",
        "add.ipam-has-address",
        "1.1.0",
        Level::Must,
        "at least one address",
    ),
    (
        "ipam",
        "cni-args-wins",
        "args.ips-over-cni-args",
        "1.1.0",
        Level::Must,
        "to be ignored",
    ),
    (
        "ipam",
        "check-fails",
        "check.after-add",
        "1.1.0",
        Level::Must,
        "exit 0 and no output",
    ),
    (
        "ipam",
        "check-ignores-prev",
        "check.foreign-prev-result",
        "1.1.0",
        Level::Must,
        "an error object",
    ),
    (
        "ipam",
        "check-remembers",
        "check.after-del",
        "1.1.0",
        Level::Should,
        "an error object",
    ),
    (
        "ipam",
        "gc-noop",
        "gc.releases-unlisted",
        "1.1.0",
        Level::Should,
        "stale is released",
    ),
    (
        "ipam",
        "gc-one-key",
        "gc.key-names",
        "1.1.0",
        Level::Should,
        "the spec-v1.1.0 text names",
    ),
    (
        "ipam",
        "status-fails",
        "status.available",
        "1.1.0",
        Level::Must,
        "the pool has room",
    ),
    (
        "ipam",
        "status-blind",
        "status.exhausted",
        "1.1.0",
        Level::Should,
        "the pool is exhausted",
    ),
];

/// The faults whose rule is a `should` everywhere they are caught: a run
/// without --strict must pass with them.
pub fn should_only(faults: &[Fault]) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut out: Vec<(&str, &str, &str)> = Vec::new();
    for (mode, fault, _, version, _, _) in faults {
        let key = (*mode, *fault, *version);
        let all_should = faults
            .iter()
            .filter(|f| (f.0, f.1, f.3) == key)
            .all(|f| f.4 == Level::Should);
        if all_should && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

pub fn ipam_target(fault: &str) -> Target {
    let mut t = Target::native(FAULTY);
    t.ipam = Some(json!({"subnet": "10.210.0.0/24", "fault": fault}));
    t.small_ipam = Some(json!({"subnet": "10.211.0.0/29", "fault": fault}));
    t
}

/// The faulty plugin run as `faulty-version-echo`, whose VERSION answers
/// 1.0.0 whatever it was asked.
fn version_echo() -> Target {
    static LINK: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let link = LINK.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("faulty-echo")
            .tempdir()
            .unwrap()
            .keep();
        std::os::unix::fs::symlink(FAULTY, dir.join("faulty-version-echo")).unwrap();
        dir.join("faulty-version-echo")
    });
    let mut t = ipam_target("none");
    t.kind = cni_conformance::target::Kind::Native(link.clone());
    t
}

pub fn target(mode: &str, fault: &str) -> Target {
    match mode {
        "ipam" => ipam_target(fault),
        "version-echo" => version_echo(),
        _ => crate::interface::faulty(mode, fault),
    }
}

pub fn rule(id: &str) -> Rule {
    rules::global_rules()
        .into_iter()
        .chain(rules::version_rules())
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no rule {id}"))
}

/// The rule's check at `version`: `Err` with the level it was judged at
/// and the message the report shows.
pub fn judge(target: &Target, id: &str, version: &str) -> Result<(), (Level, String)> {
    let rule = rule(id);
    rules::applies(&rule, version, target).unwrap_or_else(|e| panic!("{id}@{version}: {e}"));
    match (rule.check)(&Case::new(target, version, &rule)) {
        Ok(()) => Ok(()),
        Err(Finding::NotApplicable(why)) => panic!("{id}@{version} does not apply: {why}"),
        Err(f) => Err((rule.level_of(&f, version), rule.failure_text(&f, version))),
    }
}

/// Every rule that judges `target`'s kind passes at every version.
pub fn passes_every_rule(target: &Target, label: &str) {
    for version in VERSIONS {
        for rule in rules::version_rules()
            .into_iter()
            .chain(rules::global_rules())
            .filter(|r| r.judges(target.plugin_kind))
        {
            if rules::applies(&rule, version, target).is_ok() {
                let result = (rule.check)(&Case::new(target, version, &rule));
                assert!(
                    result.is_ok(),
                    "{label} {}@{version}: {}",
                    rule.id,
                    result.unwrap_err().message()
                );
            }
        }
    }
}

/// What a run without --strict would make of `target` at `version`: the
/// failures judged at `must`.
pub fn must_failures(target: &Target, version: &str) -> Vec<String> {
    rules::version_rules()
        .into_iter()
        .chain(rules::global_rules())
        .filter(|r| r.judges(target.plugin_kind))
        .filter(|r| rules::applies(r, version, target).is_ok())
        .filter_map(|r| match (r.check)(&Case::new(target, version, &r)) {
            Err(f @ Finding::Fail { .. }) if r.level_of(&f, version) == Level::Must => {
                Some(r.failure_text(&f, version))
            }
            _ => None,
        })
        .collect()
}

/// Runs `faults`: each is caught by its rule at its level, with its words,
/// and the plugin without it passes that rule.
pub fn each_fault_is_caught(faults: &[Fault]) {
    std::thread::scope(|s| {
        for &(mode, fault, id, version, level, needle) in faults {
            s.spawn(move || {
                let (got, msg) = judge(&target(mode, fault), id, version)
                    .err()
                    .unwrap_or_else(|| panic!("{mode} {fault} escaped {id}@{version}"));
                assert_eq!(got, level, "{fault} / {id}@{version}: {msg}");
                assert!(msg.contains(needle), "{fault} / {id}@{version}: {msg}");
                assert!(
                    msg.contains(&format!("rule {id} ({level})")),
                    "the message names the rule and its level: {msg}"
                );
                if mode == "ipam" {
                    assert!(msg.contains("invocation: CNI_COMMAND="), "{msg}");
                }
                let control = if mode == "version-echo" { "ipam" } else { mode };
                judge(&target(control, "none"), id, version)
                    .unwrap_or_else(|(_, e)| panic!("the control fails {id}@{version}: {e}"));
            });
        }
    });
}

/// Each `should` fault passes a run without --strict.
pub fn should_faults_pass_a_default_run(faults: &[Fault]) {
    std::thread::scope(|s| {
        for (mode, fault, version) in should_only(faults) {
            s.spawn(move || {
                let failures = must_failures(&target(mode, fault), version);
                assert!(
                    failures.is_empty(),
                    "{mode} {fault}@{version} is caught only by should rules, yet a default run \
                     fails it:\n{}",
                    failures.join("\n")
                );
            });
        }
    });
}

#[test]
fn a_correct_plugin_passes_every_rule_at_every_version() {
    passes_every_rule(&ipam_target("none"), "ipam");
}

#[test]
fn each_ipam_fault_is_caught_by_its_rule_at_its_level() {
    each_fault_is_caught(FAULTS);
    // A fault breaks its own rule, not unrelated ones.
    assert!(judge(&ipam_target("interfaces"), "add.result-schema", "1.0.0").is_ok());
}

#[test]
fn a_should_fault_of_an_ipam_plugin_fails_only_a_strict_run() {
    should_faults_pass_a_default_run(FAULTS);
}

#[test]
fn every_must_and_should_rule_has_a_fault_at_its_level() {
    let all: Vec<Fault> = FAULTS
        .iter()
        .chain(crate::interface::FAULTS)
        .copied()
        .collect();
    for rule in rules::global_rules()
        .into_iter()
        .chain(rules::version_rules())
    {
        // Its level at the newest version it judges.
        let newest = VERSIONS
            .iter()
            .rev()
            .find(|v| {
                rule.since.is_none_or(|s| at_least(v, s))
                    && rule.before.is_none_or(|b| !at_least(v, b))
            })
            .expect("a version");
        let level = rule.standing(newest).level;
        if level == Level::Convention {
            continue;
        }
        assert!(
            all.iter().any(|f| f.2 == rule.id && f.4 == level),
            "{} is a {level} rule at {newest} with no fault that it catches at that level",
            rule.id
        );
    }
}

/// The faulty IPAM plugin's `--ipam-config` and `--small-ipam-config`
/// files with `fault` switched on, in `dir`: a /24 and a /29 of the /16
/// `net` (its first two octets).
pub fn ipam_configs(
    dir: &std::path::Path,
    fault: &str,
    net: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let write = |name: String, subnet: String| {
        let path = dir.join(name);
        std::fs::write(&path, json!({"subnet": subnet, "fault": fault}).to_string()).unwrap();
        path
    };
    (
        write(format!("{fault}.json"), format!("{net}.0.0/24")),
        write(format!("{fault}.small.json"), format!("{net}.1.0/29")),
    )
}

#[test]
fn the_three_faults_a_new_user_tries_are_judged_at_the_spec_level() {
    // Through the CLI, as a plugin author runs it, without --strict.
    let dir = tempfile::tempdir().unwrap();
    let run = |fault: &str, strict: bool| {
        let (ipam, small) = ipam_configs(dir.path(), fault, "10.212");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cni-conformance"));
        cmd.args(["--plugin", FAULTY, "--ipam-config"])
            .arg(&ipam)
            .arg("--small-ipam-config")
            .arg(&small)
            .arg("@1.1.0");
        if strict {
            cmd.arg("--strict");
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // A MUST at 1.1.0 each: "Delegated IPAM plugins must return an
    // abbreviated Success object", "Plugins MUST accept multiple DEL calls".
    for (fault, rule) in [
        ("interfaces", "spec::add.ipam-no-interfaces@1.1.0"),
        ("del-once", "spec::del.repeated@1.1.0"),
    ] {
        let (ok, text) = run(fault, false);
        assert!(!ok, "{fault} passed a default run:\n{text}");
        let failed = text
            .lines()
            .any(|l| l.starts_with(&format!("test {rule} ")) && l.ends_with("FAILED"));
        assert!(failed, "{text}");
    }
    // Releasing on DEL is a SHOULD at 1.1.0 ("an IPAM plugin should
    // generally release an IP allocation"): a leak is a warning by default
    // and fails a strict run.
    let (ok, text) = run("leak", false);
    assert!(ok, "a leak is judged as a should:\n{text}");
    let warned = text.lines().any(|l| {
        l.starts_with("test spec::add.reuse-after-release@1.1.0 ")
            && l.contains("ignored (warn: broke a should rule, fatal only with --strict: expected:")
            && l.contains("; got")
    });
    assert!(warned, "{text}");
    // And the run's last words say so, in any output format: a verdict and
    // counts that agree, then each test by level.
    let verdict = text
        .lines()
        .find(|l| l.starts_with("cni-conformance: passed, with warnings: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(verdict.contains(" 0 failed, "), "{verdict}");
    let should = text
        .lines()
        .find(|l| l.starts_with("  broke a should rule, fatal only with --strict: "))
        .unwrap_or_default();
    assert!(
        should.contains("spec::add.reuse-after-release@1.1.0"),
        "{text}"
    );
    let (ok, text) = run("leak", true);
    assert!(!ok, "--strict fails a leak:\n{text}");
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
            .args(["--plugin", FAULTY, "--ipam-config"])
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
    assert!(md.contains("0 passed, 0 failed, 0 warnings (failed should or convention rules), 0 expected failures, 1 skipped"), "{md}");
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
