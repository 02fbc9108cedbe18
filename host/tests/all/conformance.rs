//! wasm-ipam with each built-in policy passes cni-conformance with no
//! expectations file at all: every spec rule for every version, and the
//! recorded runtime sessions.

use std::path::Path;

use cni::exec::Call;
use cni::version::VERSIONS;
use cni_conformance::expectations::Expectations;
use cni_conformance::recordings::Mode;
use cni_conformance::schema::normalise;
use cni_conformance::suite::Suite;
use cni_conformance::target::Target;
use serde_json::{Map, Value, json};

use crate::common::{plugin, shared_cache};

fn target(policy: &str) -> Target {
    let mut t = Target::wasm(plugin(), policy);
    t.set.insert("cacheDir".into(), json!(shared_cache()));
    t.with_defaults()
}

fn recordings() -> Vec<std::path::PathBuf> {
    vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/recordings")]
}

/// Runs the suite; `filter` narrows it like a libtest filter.
fn conforms(target: Target, modes: Vec<Mode>, filter: Option<&str>) -> u64 {
    let suite = Suite {
        recordings: recordings(),
        replay_plugin: "host-local".into(),
        modes,
        ..Suite::of(target).unwrap()
    };
    let args = libtest_mimic::Arguments {
        quiet: true,
        test_threads: Some(2),
        filter: filter.map(str::to_string),
        ..Default::default()
    };
    let conclusion = libtest_mimic::run(&args, suite.trials().unwrap());
    assert!(!conclusion.has_failed(), "{conclusion:?}");
    conclusion.num_passed
}

#[test]
fn host_local_conforms_and_replays_the_recordings_exactly() {
    assert!(conforms(target("host-local"), vec![Mode::Exact, Mode::Spec], None) >= 170);
}

#[test]
fn sticky_conforms_and_replays_the_recordings() {
    assert!(conforms(target("sticky"), vec![Mode::Exact, Mode::Spec], None) >= 170);
}

#[test]
fn pooled_conforms_and_replays_the_recordings_by_the_spec() {
    assert!(conforms(target("pooled"), vec![], None) >= 160);
    // The recordings carry host-local's ranges; pooled gets its pools added.
    let mut t = target("pooled");
    t.set.insert(
        "pools".into(),
        json!([{"name": "all", "cidr": "10.0.0.0/8"}, {"name": "v6", "cidr": "fd00::/16"}]),
    );
    assert_eq!(conforms(t, vec![Mode::Spec], Some("recording::")), 3);
}

#[test]
fn normalised_results_per_version_for_each_policy() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../testdata/snapshots/conformance");
    settings.set_prepend_module_to_snapshot(false);
    let _guard = settings.bind_to_scope();
    for policy in ["host-local", "pooled", "sticky"] {
        let t = target(policy);
        let mut by_version = Map::new();
        for version in VERSIONS {
            let dir = tempfile::tempdir().unwrap();
            let conf = t.netconf(
                version,
                t.ipam.as_ref().unwrap(),
                &dir.path().join("data"),
                "conformance",
            );
            let out =
                cni_conformance::chain::run(&t, &Call::attach("ADD", "snap"), &conf, None).unwrap();
            assert!(out.ok(), "{policy} {version}: {}", out.stdout);
            by_version.insert(version.to_string(), normalise(&out.json()));
        }
        insta::assert_json_snapshot!(format!("{policy}_normalised"), Value::Object(by_version));
    }
}

#[test]
fn the_policy_template_conforms() {
    // A third-party policy: the suite is told its config, as a policy
    // author does with --ipam-config and --small-ipam-config.
    let mut t = target(
        crate::common::test_policy("policy_template")
            .to_str()
            .unwrap(),
    );
    t.ipam = Some(json!({"subnet": "10.201.0.0/24"}));
    t.small_ipam = Some(json!({"subnet": "10.202.0.0/29"}));
    assert!(conforms(t, vec![], None) >= 160);
}

/// The DHCP server of each case: dnsmasq in the case's host namespace on
/// the peer of the macvlan master, with four addresses, as cni-conformance's
/// own test gives the reference dhcp plugin (`conformance/tests/all`), but
/// without the ping check that holds every new offer back 3 s: with it,
/// the run takes minutes.
const DNSMASQ: &str = "ip addr add 10.226.0.1/24 dev cnictm0p && exec dnsmasq --keep-in-foreground \
    --log-facility=- --port=0 --no-resolv --no-hosts --interface=cnictm0p --bind-interfaces --no-ping \
    --dhcp-range=10.226.0.10,10.226.0.13,255.255.255.0,1h --dhcp-leasefile=\"$CNICT_SCRATCH/leases\" --pid-file=";

/// The dhcp policy judged as the reference dhcp is, through macvlan, which
/// delegates to it, against a DHCP server in each case, with no
/// expectations file of its own: macvlan's own faults are expected as the
/// carrier's, from the file it was judged with. Every version, strictly
/// (the pool's four addresses make the leak rule prove that DEL releases
/// each lease).
#[test]
fn the_dhcp_policy_conforms_through_macvlan_with_no_expectations() {
    if !crate::dhcp_policy::available() {
        return;
    }
    let macvlan = crate::dhcp_policy::MACVLAN;
    let config = json!({
        "type": "macvlan", "master": "cnictm0", "mode": "bridge",
        "ipam": {"type": "wasm-ipam", "policy": "dhcp", "grant": ["dhcp"], "dhcpTimeoutMs": 5000}
    });
    let mut t = Target::native(macvlan);
    t.plugin_kind = cni_conformance::target::PluginKind::Interface;
    t.config = Some(config.clone());
    t.small_config = Some(config);
    t.cni_path = vec![
        plugin().parent().unwrap().to_path_buf(),
        Path::new(macvlan).parent().unwrap().to_path_buf(),
    ];
    t.set.insert("cacheDir".into(), json!(shared_cache()));
    t.host_links = vec!["cnictm0".into()];
    t.host_daemons = vec![DNSMASQ.into()];
    // No node-wide list of DHCP stores for the node's renewer: the cases'
    // stores are temporary.
    t.env = vec![("WASM_IPAM_SOCKET".into(), String::new())];
    t.timeout = Some(std::time::Duration::from_secs(30));
    let suite = Suite {
        recordings: recordings(),
        replay_plugin: "dhcp".into(),
        modes: vec![Mode::Spec],
        expectations: Expectations::carried(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../conformance/expectations/macvlan-1.1.1.toml"),
        )
        .unwrap(),
        strict: true,
        ..Suite::of(t).unwrap()
    };
    assert!(
        suite
            .unused_expectations(&suite.names().unwrap())
            .is_empty()
    );
    let args = libtest_mimic::Arguments {
        quiet: true,
        test_threads: Some(4),
        ..Default::default()
    };
    let conclusion = libtest_mimic::run(&args, suite.trials().unwrap());
    assert!(!conclusion.has_failed(), "{conclusion:?}");
    assert!(conclusion.num_passed >= 100, "{conclusion:?}");
}
