//! cni-conformance through its CLI, as a plugin author runs it, on plugins
//! nobody here wrote: podman's dnsname (a chained plugin that runs
//! dnsmasq) and a chain of two reference plugins whose versions differ
//! (bridge and firewall). Then what a careful runtime must survive: a
//! plugin whose errors exit 0, one that hangs, one that leaves a daemon,
//! and a run that can judge nothing.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cni::exec::Call;
use cni_conformance::chain;
use cni_conformance::netns::{self, Netns};
use cni_conformance::recordings::Mode;
use cni_conformance::suite::Suite;
use cni_conformance::target::{PluginKind, Target};
use serde_json::{Value, json};

const SUITE: &str = env!("CARGO_BIN_EXE_cni-conformance");
const FAULTY: &str = env!("CARGO_BIN_EXE_faulty-cni-plugin");

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// dnsname and dnsmasq, which CI installs; elsewhere the test is skipped.
fn dnsname() -> Option<PathBuf> {
    if !crate::interface::can_run() {
        return None;
    }
    let path = PathBuf::from("/usr/lib/cni/dnsname");
    let dnsmasq = Path::new("/usr/sbin/dnsmasq").exists();
    if path.exists() && dnsmasq {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI installs golang-github-containernetworking-plugin-dnsname and dnsmasq-base"
    );
    eprintln!(
        "skipped: apt-get install golang-github-containernetworking-plugin-dnsname dnsmasq-base"
    );
    None
}

/// Runs the CLI; its exit status, all it printed, and its pid.
fn cli(args: &[&str]) -> (Output, String, u32) {
    let child = Command::new(SUITE)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out, text, pid)
}

/// The faulty plugin's config as a chained plugin with `fault`, in `dir`.
fn meta_config(dir: &Path, fault: &str) -> PathBuf {
    let config = dir.join("meta.json");
    std::fs::write(
        &config,
        json!({"type": "faulty-cni-plugin", "mode": "meta", "fault": fault}).to_string(),
    )
    .unwrap();
    config
}

/// libtest's line for test `name`.
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("test {name} ")))
        .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
}

/// What a run with pid `pid` left on the machine: live processes whose
/// command line names its networks, namespaces, and state named after its
/// networks.
fn left_by(pid: u32) -> Vec<String> {
    let prefix = format!("cnict-{pid}-");
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(&prefix) {
            left.push(format!(
                "process {p}: {}",
                String::from_utf8_lossy(&cmdline)
            ));
        }
    }
    for ns in netns::ip(&["netns", "list"]).unwrap().lines() {
        if ns.starts_with(&prefix) {
            left.push(format!("namespace {ns}"));
        }
    }
    for root in ["/run/containers/cni/dnsname", "/var/lib/cni/networks"] {
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                left.push(format!("state {}", entry.path().display()));
            }
        }
    }
    left
}

#[test]
fn dnsname_passes_a_default_run_with_its_known_bugs_listed_and_leaves_nothing() {
    let Some(dnsname) = dnsname() else { return };
    let config = manifest("reference/dnsname.json");
    let expectations = manifest("expectations/dnsname-1.3.1.toml");
    let report = tempfile::tempdir().unwrap();
    let (out, text, pid) = cli(&[
        "--plugin",
        dnsname.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--cni-path",
        "/usr/lib/cni",
        "--expectations",
        expectations.to_str().unwrap(),
        "--report",
        report.path().join("r").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("kind meta: an ADD without a prevResult failed"),
        "{text}"
    );
    // The CHECK bug and the panic: known, listed, and shown as such.
    for known in [
        "spec::check.after-add@1.0.0",
        "spec::add.prev-result-without-interfaces@1.0.0",
    ] {
        let line = line_of(&text, known);
        assert!(line.contains("ignored (xfail: "), "{line}");
    }
    // A chained plugin is not judged below 0.3.0, which brought prevResult.
    assert!(
        line_of(&text, "spec::add.keeps-prev-result@0.2.0")
            .contains("ignored (a chained plugin acts on a prevResult, which CNI 0.3.0 brought)"),
        "{text}"
    );
    // One closing line, whose counts are the report's.
    let closing = text
        .lines()
        .find(|l| l.starts_with("cni-conformance: passed"))
        .unwrap_or_else(|| panic!("{text}"));
    let md = std::fs::read_to_string(report.path().join("r.md")).unwrap();
    let counts = closing
        .split_once(": ")
        .unwrap()
        .1
        .split_once(": ")
        .unwrap()
        .1;
    assert!(md.contains(counts), "{closing}\n{md}");
    assert!(
        md.contains("main.go:219"),
        "the reason names the upstream line"
    );
    assert_eq!(left_by(pid), Vec::<String>::new());
}

#[test]
fn a_chain_whose_plugins_claim_different_versions_passes_at_the_versions_they_share() {
    if !crate::interface::can_run() {
        return;
    }
    if !Path::new("/usr/lib/cni/firewall").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs the reference plugins"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("chain.conflist");
    std::fs::write(
        &list,
        json!({"cniVersion": "1.0.0", "name": "chain", "plugins": [
            {"type": "bridge", "bridge": "cnictbr9", "isGateway": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.231.0.0/24"}]]}},
            {"type": "firewall", "backend": "iptables"}]})
        .to_string(),
    )
    .unwrap();
    let (out, text, pid) = cli(&[
        "--conflist",
        list.to_str().unwrap(),
        "--cni-path",
        "/usr/lib/cni",
    ]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(
            "the chain is judged at the versions every plugin claims (0.4.0, 1.0.0): plugin 2 \
             of 2 (firewall) claims 0.4.0, 1.0.0"
        ),
        "{text}"
    );
    assert!(
        line_of(&text, "spec::add.result-schema@0.3.1")
            .contains("ignored (the plugin does not claim CNI 0.3.1)"),
        "{text}"
    );
    assert!(
        line_of(&text, "spec::add.result-schema@1.0.0").ends_with(" ok"),
        "{text}"
    );
    assert_eq!(left_by(pid), Vec::<String>::new());
}

#[test]
fn configs_the_suite_cannot_judge_are_refused_naming_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, v: Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let list = write(
        "list.json",
        json!({"name": "n", "plugins": [{"type": "bridge"}]}),
    );
    let untyped = write("untyped.json", json!({"bridge": "br0"}));
    let other = write("other.json", json!({"type": "bridge"}));
    let empty = dir.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    for (args, needle) in [
        (
            vec!["--plugin", FAULTY, "--config", &list],
            "is a network configuration list: give it with --conflist FILE",
        ),
        (
            vec!["--plugin", FAULTY, "--config", &untyped],
            "has no \"type\"",
        ),
        (
            vec!["--plugin", FAULTY, "--config", &other],
            "is for the plugin \"bridge\", but --plugin is \"faulty-cni-plugin\"",
        ),
        (
            vec!["--conflist", &list, "--cni-path", empty.to_str().unwrap()],
            "failed to find plugin \"bridge\" in path",
        ),
    ] {
        let (out, text, _) = cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(needle), "{args:?}: {text}");
    }
    let (_, text, _) = cli(&["--conflist", &list, "--cni-path", empty.to_str().unwrap()]);
    assert!(
        text.contains("give the folder that holds it with --cni-path"),
        "{text}"
    );
}

#[test]
fn a_run_that_judges_nothing_fails_saying_why() {
    // As a user other than root: namespaces are root's, so every rule of a
    // chained plugin is skipped, and a CI job that forgot sudo must not
    // pass.
    if !netns::is_root() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("nonroot-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = meta_config(dir.path(), "none");
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = Command::new(SUITE)
        .args(["--plugin", FAULTY, "--kind", "meta", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("cni-conformance: NOTHING JUDGED: 0 passed"),
        "{text}"
    );
    assert!(
        text.contains("no rule could be judged: every test was skipped")
            && text.contains("because: needs root, to make network namespaces"),
        "{text}"
    );
}

#[test]
fn a_plugin_whose_errors_exit_0_or_that_hangs_cannot_stall_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = |fault: &str, extra: &[&str]| {
        let (ipam, small) = crate::faulty::ipam_configs(dir.path(), fault, "10.232");
        let started = Instant::now();
        let mut args = vec![
            "--plugin",
            FAULTY,
            "--ipam-config",
            ipam.to_str().unwrap(),
            "--small-ipam-config",
            small.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (out, text, _) = cli(&args);
        (out, text, started.elapsed())
    };
    // Errors that exit 0: the pool fill meets the first one and fails,
    // at the level of the MUST it breaks.
    let (out, text, _) = run("errors-exit-0", &["@1.1.0"]);
    assert!(!out.status.success(), "{text}");
    let exhausted = text
        .split("---- spec::status.exhausted@1.1.0 ----")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        exhausted.contains("spec/errors.exit-code (MUST)"),
        "{exhausted}"
    );
    assert!(
        exhausted.contains("printed an error object and exited 0"),
        "{exhausted}"
    );
    // A plugin that never answers an ADD: the first three calls are killed
    // at the limit, and the rest are not made. The bound below only
    // catches a stall: a run of one limit per rule would take minutes.
    let (out, text, took) = run("hang", &["--timeout-ms", "1000", "@1.1.0"]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("killed after"), "{text}");
    assert!(text.contains("so the suite calls it no more"), "{text}");
    assert!(took < Duration::from_secs(120), "{took:?}");
}

#[test]
fn a_daemon_left_after_del_is_named_and_killed() {
    if !crate::interface::can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = meta_config(dir.path(), "daemon-after-del");
    let (out, text, _) = cli(&[
        "--plugin",
        FAULTY,
        "--kind",
        "meta",
        "--config",
        config.to_str().unwrap(),
        "--strict",
        "spec::del.leaves-nothing-running@1.1.0",
    ]);
    assert!(!out.status.success(), "{text}");
    let pids: Vec<u32> = text
        .split("still running: pid ")
        .skip(1)
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .collect();
    assert!(!pids.is_empty(), "{text}");
    assert!(text.contains("sleep 600"), "{text}");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let gone = stat.is_empty()
            || stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'));
        assert!(gone, "pid {pid} still runs: {stat}");
    }
}

#[test]
fn a_listing_or_a_filtered_run_adds_nothing_it_does_not_need() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = dir.path().join("ipam.json");
    std::fs::write(&ipam, json!({"subnet": "10.233.0.0/24"}).to_string()).unwrap();
    let log = dir.path().join("calls.log");
    let env = format!("FAULTY_LOG={}", log.display());
    let base = [
        "--plugin",
        FAULTY,
        "--ipam-config",
        ipam.to_str().unwrap(),
        "--env",
        &env,
    ];
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();
    let (out, text, _) = cli(&[&base[..], &["--list"]].concat());
    assert!(out.status.success(), "{text}");
    assert!(!calls().contains("ADD"), "--list added: {}", calls());
    let (out, text, _) = cli(&[&base[..], &["--exact", "spec::version.output"]].concat());
    assert!(out.status.success(), "{text}");
    assert!(!calls().contains("ADD"), "VERSION alone added: {}", calls());
    // Every ADD a run makes gets its DEL.
    let (out, text, _) = cli(&[&base[..], &["spec::add.ipam-no-interfaces"]].concat());
    assert!(out.status.success(), "{text}");
    let adds: Vec<String> = calls()
        .lines()
        .filter(|l| l.starts_with("ADD "))
        .map(|l| l[4..].to_string())
        .collect();
    assert!(!adds.is_empty());
    for id in adds {
        assert!(
            calls().contains(&format!("DEL {id}")),
            "{id} was never deleted: {}",
            calls()
        );
    }
}

#[test]
fn json_output_carries_level_reason_and_the_plugins_answer_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = dir.path().join("ipam.json");
    std::fs::write(
        &ipam,
        json!({"subnet": "10.234.0.0/24", "fault": "interfaces"}).to_string(),
    )
    .unwrap();
    let (out, _, _) = cli(&[
        "--plugin",
        FAULTY,
        "--ipam-config",
        ipam.to_str().unwrap(),
        "--format",
        "json",
        "spec::add.",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let failed = lines
        .iter()
        .find(|l| l["name"] == "spec::add.ipam-no-interfaces@1.1.0")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(failed["status"], "fail");
    assert_eq!(failed["level"], "must");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("an IPAM result")
    );
    assert!(
        failed["answer"]["stdout"]["interfaces"].is_array(),
        "the plugin's answer is JSON, not escaped text: {failed}"
    );
    assert_eq!(failed["answer"]["exit"], 0);
    let suite = lines.last().unwrap();
    assert_eq!(suite["type"], "suite");
    assert_eq!(suite["event"], "failed");
    assert!(!out.status.success());
}

/// dnsname's calls in a real chain (bridge with host-local, then dnsname,
/// run as libcni runs a list) recorded by the suite's own recorder, then
/// replayed on dnsname alone: the replay has no bridge of its own, and
/// must make the links the recorded prevResult names.
#[test]
fn a_recorded_chained_plugin_replays_with_the_links_its_prev_result_names() {
    let Some(dnsname) = dnsname() else { return };
    let bin = tempfile::tempdir().unwrap();
    let shim = bin.path().join("dnsname");
    std::fs::copy(&dnsname, &shim).unwrap();
    let recording = bin.path().join("dnsname.jsonl");
    let status = Command::new(SUITE)
        .args(["record", "install", "--plugin"])
        .arg(&shim)
        .arg("--out")
        .arg(&recording)
        .status()
        .unwrap();
    assert!(status.success());
    let data = tempfile::tempdir().unwrap();
    let list = json!({"cniVersion": "1.0.0", "name": "cnict-rec", "plugins": [
        {"type": "bridge", "bridge": "cnictrb0", "isGateway": true,
         "ipam": {"type": "host-local", "dataDir": data.path(),
                  "ranges": [[{"subnet": "10.235.0.0/24"}]]}},
        {"type": "dnsname", "domainName": "dns.rec"}]});
    let mut t = Target::conflist(list.clone(), vec![bin.path().into(), "/usr/lib/cni".into()]);
    t.plugin_kind = PluginKind::Interface;
    t.timeout = Some(Duration::from_secs(30));
    {
        let host = Netns::new("rec-host").unwrap();
        let ctr = Netns::new("rec-ctr").unwrap();
        let call = Call {
            netns: Some(ctr.path().display().to_string()),
            ..Call::attach("ADD", "rec-c1")
        };
        let added = chain::run(&t, &call, &list, Some(host.name())).unwrap();
        assert!(added.ok(), "{} {}", added.stdout, added.stderr);
        let mut with_prev = list.clone();
        with_prev["prevResult"] = added.json();
        for command in ["CHECK", "DEL"] {
            let c = Call {
                command: command.into(),
                ..call.clone()
            };
            chain::run(&t, &c, &with_prev, Some(host.name())).unwrap();
        }
    }
    let mut replay = Target::native(dnsname);
    replay.plugin_kind = PluginKind::Meta;
    replay.config = Some(read(manifest("reference/dnsname.json")));
    replay.cni_path = vec!["/usr/lib/cni".into()];
    replay.timeout = Some(Duration::from_secs(30));
    let suite = Suite {
        recordings: vec![recording.clone()],
        replay_plugin: "dnsname".into(),
        modes: vec![Mode::Spec],
        ..Suite::of(replay).unwrap()
    };
    let args = libtest_mimic::Arguments {
        quiet: true,
        filter: Some("recording::".into()),
        ..Default::default()
    };
    let conclusion = libtest_mimic::run(&args, suite.trials().unwrap());
    let entries = suite.results.entries();
    assert!(!conclusion.has_failed(), "{entries:#?}");
    assert_eq!(conclusion.num_passed, 1, "{entries:#?}");
}

fn read(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_plugin_whose_kind_cannot_be_told_is_shown_with_its_own_answers() {
    if !crate::interface::can_run() {
        return;
    }
    // A chained plugin whose every ADD hangs: the probe tries each version
    // in namespaces of its own (no "File exists" from the links of the
    // last), and says what the plugin answered.
    let dir = tempfile::tempdir().unwrap();
    let config = meta_config(dir.path(), "hang");
    let (out, text, pid) = cli(&[
        "--plugin",
        FAULTY,
        "--config",
        config.to_str().unwrap(),
        "--timeout-ms",
        "500",
    ]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("cannot tell the plugin's kind from what it answered"),
        "{text}"
    );
    assert!(
        text.contains("ADD with a prevResult: killed after"),
        "{text}"
    );
    assert!(!text.contains("File exists"), "{text}");
    assert_eq!(left_by(pid), Vec::<String>::new());
}
