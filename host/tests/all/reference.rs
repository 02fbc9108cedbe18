//! Differential tests against Debian's reference host-local (1.1.1): the
//! same calls on the same configs must print the same bytes on success and
//! fail where it fails. CI installs containernetworking-plugins; elsewhere
//! these tests say they were skipped.

use std::path::Path;

use cni::exec::{Call, Outcome, run};
use serde_json::{Value, json};

use crate::common::{plugin, shared_cache};

const REFERENCE: &str = "/usr/lib/cni/host-local";

fn reference_available() -> bool {
    crate::common::installed(REFERENCE, "containernetworking-plugins")
}

/// Runs the same sequence against both plugins, each with its own data dir.
struct Pair {
    dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Pair {
    fn new() -> Pair {
        Pair {
            dirs: (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()),
        }
    }

    fn both(&self, call: &Call, ipam: &Value, version: &str) -> (Outcome, Outcome) {
        let conf = |ty: &str, dir: &Path| {
            let mut ipam = ipam.clone();
            ipam["type"] = json!(ty);
            ipam["dataDir"] = json!(dir);
            if ty == "wasm-ipam" {
                ipam["policy"] = json!("host-local");
                ipam["cacheDir"] = json!(shared_cache());
            }
            json!({"cniVersion": version, "name": "refnet", "ipam": ipam}).to_string()
        };
        let call = call.clone().env("CNI_PATH", "/usr/lib/cni");
        let theirs = run(
            Path::new(REFERENCE),
            &call,
            conf("host-local", self.dirs.0.path()).as_bytes(),
        )
        .unwrap();
        let ours = run(
            plugin(),
            &call,
            conf("wasm-ipam", self.dirs.1.path()).as_bytes(),
        )
        .unwrap();
        (theirs, ours)
    }

    /// Both succeed with identical stdout, or both fail.
    #[track_caller]
    fn same(&self, call: Call, ipam: &Value, version: &str) -> Outcome {
        let (theirs, ours) = self.both(&call, ipam, version);
        assert_eq!(
            ours.ok(),
            theirs.ok(),
            "reference: {} / ours: {}",
            theirs.stdout,
            ours.stdout
        );
        if theirs.ok() {
            assert_eq!(
                ours.stdout, theirs.stdout,
                "{} {:?}",
                call.command, call.container_id
            );
        }
        ours
    }
}

#[test]
fn single_stack_lifecycle_matches_byte_for_byte() {
    if !reference_available() {
        return;
    }
    let p = Pair::new();
    let ipam = json!({"ranges": [[{"subnet": "10.60.0.0/29"}]], "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.60.0.1"}]});
    for version in ["1.0.0", "0.4.0", "0.3.1", "0.2.0"] {
        let id = format!("v{}", version.replace('.', ""));
        p.same(Call::attach("ADD", &id), &ipam, version);
    }
    p.same(Call::attach("DEL", "v040"), &ipam, "1.0.0");
    p.same(Call::attach("ADD", "next"), &ipam, "1.0.0");
    p.same(Call::attach("ADD", "fill"), &ipam, "1.0.0");
    let out = p.same(Call::attach("ADD", "none-left"), &ipam, "1.0.0");
    assert!(!out.ok());
    p.same(Call::attach("ADD", "next"), &ipam, "1.0.0");
    p.same(Call::attach("DEL", "next"), &ipam, "1.0.0");
    p.same(Call::attach("ADD", "again"), &ipam, "1.0.0");
    p.same(Call::attach("CHECK", "again"), &ipam, "1.0.0");
    p.same(Call::attach("DEL", "unknown"), &ipam, "1.0.0");
}

#[test]
fn dual_stack_and_range_options_match() {
    if !reference_available() {
        return;
    }
    let p = Pair::new();
    let ipam = json!({"ranges": [
        [{"subnet": "10.61.0.0/24", "rangeStart": "10.61.0.10", "rangeEnd": "10.61.0.11", "gateway": "10.61.0.254"},
         {"subnet": "10.62.0.0/30"}],
        [{"subnet": "fd00:61::/120", "rangeStart": "fd00:61::fc"}]
    ]});
    for i in 0..3 {
        p.same(Call::attach("ADD", &format!("c{i}")), &ipam, "0.4.0");
    }
    p.same(Call::attach("DEL", "c1"), &ipam, "0.4.0");
    p.same(Call::attach("ADD", "c9"), &ipam, "1.0.0");
    p.same(Call::attach("ADD", "c10"), &ipam, "1.0.0");
}

/// The one deliberate difference. When ADD fails part-way (the second range
/// set is full), the reference releases what it took but leaves its cursor
/// moved on; our transaction rolls the cursor back too, so the next ADD
/// resumes where the last successful one left off.
#[test]
fn a_failed_add_leaves_no_trace_where_the_reference_moves_its_cursor() {
    if !reference_available() {
        return;
    }
    let p = Pair::new();
    let ipam = json!({"ranges": [
        [{"subnet": "10.66.0.0/24", "rangeStart": "10.66.0.10", "rangeEnd": "10.66.0.13"}],
        [{"subnet": "fd00:66::/120", "rangeStart": "fd00:66::fe"}]
    ]});
    p.same(Call::attach("ADD", "a"), &ipam, "1.0.0");
    p.same(Call::attach("ADD", "b"), &ipam, "1.0.0");
    p.same(Call::attach("ADD", "full"), &ipam, "1.0.0");
    p.same(Call::attach("DEL", "b"), &ipam, "1.0.0");
    let (theirs, ours) = p.both(&Call::attach("ADD", "c"), &ipam, "1.0.0");
    assert_eq!(
        theirs.json()["ips"][0]["address"],
        "10.66.0.13/24",
        "reference skipped .12"
    );
    assert_eq!(
        ours.json()["ips"][0]["address"],
        "10.66.0.12/24",
        "ours did not"
    );
}

#[test]
fn legacy_range_and_requested_ips_match() {
    if !reference_available() {
        return;
    }
    let p = Pair::new();
    let ipam =
        json!({"subnet": "10.63.0.0/24", "rangeStart": "10.63.0.100", "gateway": "10.63.0.1"});
    p.same(Call::attach("ADD", "a"), &ipam, "0.2.0");
    p.same(
        Call::attach("ADD", "b").args("IgnoreUnknown=1;IP=10.63.0.200"),
        &ipam,
        "1.0.0",
    );
    p.same(Call::attach("ADD", "c"), &ipam, "1.0.0");
    p.same(
        Call::attach("ADD", "d").args("IP=10.63.0.200"),
        &ipam,
        "1.0.0",
    );
    p.same(
        Call::attach("ADD", "e").args("IP=10.63.0.1"),
        &ipam,
        "1.0.0",
    );
    p.same(Call::attach("ADD", "a"), &ipam, "1.0.0");
}

#[test]
fn config_rejections_match() {
    if !reference_available() {
        return;
    }
    let p = Pair::new();
    for ipam in [
        json!({"ranges": [[{"subnet": "10.64.0.0/31"}]]}),
        json!({"ranges": [[{"subnet": "10.64.0.1/24"}]]}),
        json!({"ranges": [[{"subnet": "10.64.0.0/24", "rangeStart": "10.65.0.1"}]]}),
        json!({"ranges": [[{"subnet": "10.64.0.0/24"}], [{"subnet": "10.64.0.0/25"}]]}),
        json!({"ranges": []}),
    ] {
        let out = p.same(Call::attach("ADD", "x"), &ipam, "1.0.0");
        assert_eq!(out.error_code(), Some(7), "{ipam}");
    }
}
