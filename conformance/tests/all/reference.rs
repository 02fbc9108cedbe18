//! Debian's reference plugins pass every rule for the versions they claim,
//! at every level (`--strict`), with their known deviations in
//! `conformance/expectations`: the IPAM plugins, and the interface and
//! chained plugins with the configs in `conformance/reference`, their kind
//! worked out by the suite. CI installs containernetworking-plugins and runs
//! as root; elsewhere these tests say they were skipped.

use std::path::{Path, PathBuf};

use cni_conformance::expectations::Expectations;
use cni_conformance::kind;
use cni_conformance::netns::Netns;
use cni_conformance::recordings::{self, Mode};
use cni_conformance::suite::Suite;
use cni_conformance::target::{PluginKind, Target};
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
    let expectations = Expectations::load(&manifest(expectations)).unwrap();
    run_filtered(target, replay_plugin, expectations, strict, None)
}

fn run_filtered(
    target: Target,
    replay_plugin: &str,
    expectations: Expectations,
    strict: bool,
    only: Option<(&str, usize)>,
) {
    let suite = Suite {
        recordings: vec![manifest("../testdata/recordings")],
        replay_plugin: replay_plugin.into(),
        modes: vec![Mode::Exact, Mode::Spec],
        expectations,
        strict,
        ..Suite::of(target).unwrap()
    };
    assert!(
        suite
            .unused_expectations(&suite.names().unwrap())
            .is_empty(),
        "stale expectations"
    );
    let trials = suite.trials().unwrap();
    let args = libtest_mimic::Arguments {
        quiet: true,
        test_threads: Some(only.map_or(2, |o| o.1)),
        filter: only.map(|o| o.0.to_string()),
        ..Default::default()
    };
    let conclusion = libtest_mimic::run(&args, trials);
    assert!(!conclusion.has_failed(), "{conclusion:?}");
    assert!(conclusion.num_passed >= 20, "{conclusion:?}");
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
    let versions = cni_conformance::chain::versions(&target).unwrap().claimed;
    let detected = kind::detect(&target, &versions).unwrap();
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

/// The dhcp plugin's daemon, on its own socket, stopped when dropped.
struct DhcpDaemon(std::process::Child);

impl Drop for DhcpDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The DHCP server of each case: dnsmasq in the case's host namespace, on
/// the peer of the macvlan master, with a pool of four addresses.
const DNSMASQ: &str = "ip addr add 10.226.0.1/24 dev cnictm0p && exec dnsmasq --keep-in-foreground \
    --log-facility=- --port=0 --no-resolv --no-hosts --interface=cnictm0p --bind-interfaces \
    --dhcp-range=10.226.0.10,10.226.0.13,255.255.255.0,1h --dhcp-leasefile=\"$CNICT_SCRATCH/leases\" --pid-file=";

/// dhcp needs an interface to run DHCP on, so it is judged through macvlan,
/// which delegates to it; a DHCP server answers in each case, and the
/// plugin's own daemon runs beside the suite. macvlan's own faults are
/// expected as the carrier's, from its own expectations file; dhcp needs
/// none of its own. Only its newest version: each ADD waits about 2.6 s,
/// because dhcp 1.1.1 tries the link before it is up and then backs off, so
/// every version would add minutes to CI. As a command:
///
/// ```sh
/// /usr/lib/cni/dhcp daemon -socketpath /run/cni/cnict-dhcp.sock &
/// cni-conformance --plugin /usr/lib/cni/macvlan --config conformance/reference/macvlan-dhcp.json \
///   --small-config conformance/reference/macvlan-dhcp.json --host-link cnictm0 \
///   --host-daemon "$DNSMASQ" --strict \
///   --carrier-expectations conformance/expectations/macvlan-1.1.1.toml
/// ```
///
/// with `DNSMASQ` the command below. Its pool has four addresses, so the
/// leak rule's twelve ADD/DEL cycles pass only if dhcp's DEL releases each
/// lease.
#[test]
fn reference_dhcp_passes_through_macvlan_with_none_of_its_own() {
    if !crate::interface::can_run() {
        return;
    }
    let (Some(_), Some(dhcp)) = (installed("macvlan"), installed("dhcp")) else {
        return;
    };
    if !Path::new("/usr/sbin/dnsmasq").exists() {
        assert!(std::env::var_os("CI").is_none(), "dnsmasq is missing in CI");
        eprintln!("skipped: dnsmasq is not installed (apt-get install dnsmasq)");
        return;
    }
    let config = read("reference/macvlan-dhcp.json");
    let socket = PathBuf::from(config["ipam"]["daemonSocketPath"].as_str().unwrap());
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&socket);
    let _daemon = DhcpDaemon(
        std::process::Command::new(dhcp)
            .args(["daemon", "-socketpath"])
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            socket.exists()
        }),
        "the dhcp daemon made no socket"
    );
    let mut target = Target::native(installed("macvlan").unwrap());
    target.small_config = Some(config.clone());
    target.config = Some(config);
    target.host_links = vec!["cnictm0".into()];
    target.host_daemons = vec![DNSMASQ.into()];
    target.plugin_kind = PluginKind::Interface;
    let carrier = Expectations::carried(&manifest("expectations/macvlan-1.1.1.toml")).unwrap();
    run_filtered(target, "dhcp", carrier, true, Some(("@1.0.0", 8)));
}

/// Exact replay of an interface plugin's session is no formality: bridge's
/// recorded session replays against ptp by the spec, but not exactly.
#[test]
fn a_bridge_session_replays_against_ptp_by_the_spec_only() {
    if !crate::interface::can_run() {
        return;
    }
    let Some(ptp) = installed("ptp") else {
        return;
    };
    let mut target = Target::native(ptp);
    target.config = Some(read("reference/ptp.json"));
    target.plugin_kind = PluginKind::Interface;
    let records = recordings::load(&manifest(
        "../testdata/recordings/bridge-hostlocal-lifecycle.jsonl",
    ))
    .unwrap();
    let ptp_records: Vec<_> = records
        .into_iter()
        .map(|mut r| {
            if r.plugin == "bridge" {
                r.plugin = "ptp".into();
                r.stdin["type"] = json!("ptp");
            }
            r
        })
        .collect();
    recordings::replay(&target, &ptp_records, "ptp", Mode::Spec).unwrap();
    let err = recordings::replay(&target, &ptp_records, "ptp", Mode::Exact).unwrap_err();
    assert!(
        err.contains("the result differs from the recording"),
        "{err}"
    );
}
