//! Debian's reference plugins pass every rule for the versions they claim,
//! with their known deviations in `conformance/expectations`. CI installs
//! containernetworking-plugins; elsewhere these tests say they were skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cni_conformance::expectations::Expectations;
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
    let suite = Suite {
        target: Arc::new(target),
        recordings: vec![manifest("../testdata/recordings")],
        replay_plugin: replay_plugin.into(),
        modes: vec![Mode::Exact, Mode::Spec],
        expectations: Expectations::load(&manifest(expectations)).unwrap(),
        results: Arc::default(),
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
    assert!(conclusion.num_passed > 100, "{conclusion:?}");
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
