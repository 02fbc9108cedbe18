//! Debian's reference plugins pass every rule for the versions they claim,
//! at every level (`--strict`), with their known deviations in
//! `conformance/expectations`: the IPAM plugins, and the interface and
//! chained plugins with the configs in `conformance/reference`, their kind
//! worked out by the suite. CI installs containernetworking-plugins and runs
//! as root; elsewhere these tests say they were skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cni_conformance::expectations::Expectations;
use cni_conformance::kind::{self, PluginKind};
use cni_conformance::netns::Netns;
use cni_conformance::recordings::Mode;
use cni_conformance::suite::Suite;
use cni_conformance::target::Target;
use serde_json::json;

fn installed(plugin: &str) -> Option<PathBuf> {
    let path = Path::new("/usr/lib/cni").join(plugin);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing in CI",
        path.display()
    );
    eprintln!(
        "skipped: {} is not installed (apt-get install containernetworking-plugins)",
        path.display()
    );
    None
}

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn passes(target: Target, replay_plugin: &str, expectations: &str) {
    run(target, replay_plugin, expectations, false)
}

fn run(target: Target, replay_plugin: &str, expectations: &str, strict: bool) {
    let suite = Suite {
        target: Arc::new(target),
        recordings: vec![manifest("../testdata/recordings")],
        replay_plugin: replay_plugin.into(),
        modes: vec![Mode::Exact, Mode::Spec],
        expectations: Expectations::load(&manifest(expectations)).unwrap(),
        results: Arc::default(),
        strict,
    };
    let trials = suite.trials().unwrap();
    assert!(
        suite.unused_expectations(&trials).is_empty(),
        "stale expectations"
    );
    let args = libtest_mimic::Arguments {
        quiet: true,
        test_threads: Some(2),
        ..Default::default()
    };
    let conclusion = libtest_mimic::run(&args, trials);
    assert!(!conclusion.has_failed(), "{conclusion:?}");
    assert!(conclusion.num_passed >= 30, "{conclusion:?}");
}

fn read(rel: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(manifest(rel)).unwrap()).unwrap()
}

/// Runs the whole suite, strictly, on a reference interface or chained
/// plugin with its config from `reference/`, after checking that the suite
/// works out its kind.
fn reference(plugin: &str, kind: PluginKind, host_links: &[&str], link_kind: Option<&str>) {
    if !crate::interface::can_run() {
        return;
    }
    let Some(path) = installed(plugin) else {
        return;
    };
    if let Some(link_kind) = link_kind
        && !Netns::new("kernel").unwrap().supports(link_kind)
    {
        eprintln!("skipped: this kernel has no {link_kind} links, which {plugin} makes");
        return;
    }
    let mut target = Target::native(path);
    target.config = Some(read(&format!("reference/{plugin}.json")));
    let small = manifest(&format!("reference/{plugin}.small.json"));
    target.small_config = small
        .exists()
        .then(|| read(&format!("reference/{plugin}.small.json")));
    target.host_links = host_links.iter().map(|l| l.to_string()).collect();
    target.timeout = Some(std::time::Duration::from_secs(30));
    let detected = kind::detect(&target).unwrap();
    assert_eq!(detected.kind, kind, "{plugin}: {}", detected.why);
    target.plugin_kind = kind;
    run(
        target,
        plugin,
        &format!("expectations/{plugin}-1.1.1.toml"),
        true,
    );
}

#[test]
fn reference_bridge_passes_with_its_expectations() {
    reference("bridge", PluginKind::Interface, &[], None);
}

#[test]
fn reference_ptp_passes_with_its_expectations() {
    reference("ptp", PluginKind::Interface, &[], None);
}

#[test]
fn reference_macvlan_passes_with_its_expectations() {
    reference("macvlan", PluginKind::Interface, &["cnictm0"], None);
}

#[test]
fn reference_ipvlan_passes_with_its_expectations() {
    reference(
        "ipvlan",
        PluginKind::Interface,
        &["cnictm0"],
        Some("ipvlan"),
    );
}

#[test]
fn reference_vlan_passes_with_its_expectations() {
    reference("vlan", PluginKind::Interface, &["cnictm0"], Some("vlan"));
}

#[test]
fn reference_host_device_passes_with_its_expectations() {
    reference("host-device", PluginKind::Interface, &["cnictd0"], None);
}

#[test]
fn reference_tuning_passes_with_its_expectations() {
    reference("tuning", PluginKind::Meta, &[], None);
}

#[test]
fn reference_portmap_passes_with_its_expectations() {
    reference("portmap", PluginKind::Meta, &[], None);
}

#[test]
fn reference_bandwidth_passes_with_its_expectations() {
    reference("bandwidth", PluginKind::Meta, &[], None);
}

#[test]
fn reference_firewall_passes_with_its_expectations() {
    reference("firewall", PluginKind::Meta, &[], None);
}

#[test]
fn reference_sbr_passes_with_its_expectations() {
    reference("sbr", PluginKind::Meta, &[], None);
}

#[test]
fn reference_host_local_passes_with_its_expectations() {
    let Some(path) = installed("host-local") else {
        return;
    };
    passes(
        Target::native(path).with_defaults(),
        "host-local",
        "expectations/host-local-1.1.1.toml",
    );
}

#[test]
fn reference_static_passes_with_its_expectations() {
    let Some(path) = installed("static") else {
        return;
    };
    let mut target = Target::native(path);
    target.ipam = Some(
        json!({"addresses": [{"address": "10.98.0.7/24", "gateway": "10.98.0.1"}],
                              "routes": [{"dst": "0.0.0.0/0"}]}),
    );
    passes(target, "static", "expectations/static-1.1.1.toml");
}
