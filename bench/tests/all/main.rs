//! The bench's integration test: `wasm-ipam-bench --etcd` over TLS, with
//! a client certificate, on a real etcd member started with
//! `--client-cert-auth` (the `etcd-cluster` testkit, its certificates made
//! by rcgen), measures bursts in which every pod gets its own address.

use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_cluster::{Cluster, Pki};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_wasm-ipam-bench");

/// The `wasm-ipam` binary the bench drives, built beside it by a
/// workspace build; `None` (skipped) outside CI when it is not.
fn wasm_ipam() -> Option<PathBuf> {
    let ours = Path::new(BENCH).with_file_name("wasm-ipam");
    if ours.exists() {
        return Some(ours);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: CI runs cargo test --workspace, which builds it",
        ours.display()
    );
    eprintln!("skipped: build wasm-ipam first (cargo build)");
    None
}

fn etcd() -> bool {
    if etcd_cluster::available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing in CI: install etcd-server",
        etcd_cluster::ETCD
    );
    eprintln!("skipped: etcd is not installed");
    false
}

#[test]
fn bursts_over_tls_with_a_client_certificate_address_every_pod() {
    let Some(ours) = wasm_ipam() else { return };
    if !etcd() {
        return;
    }
    // The CA's folder lives as long as `pki`.
    let pki = Pki::new("etcd-ca");
    let tls = pki.server_tls(&["127.0.0.1"]);
    let cluster = Cluster::start_tls(1, tls.clone());
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(BENCH)
        .arg("--wasm-ipam")
        .arg(&ours)
        .args(["--etcd", &cluster.endpoints()[0], "--etcd-ca"])
        .arg(&tls.ca_file)
        .arg("--etcd-cert")
        .arg(&tls.client.cert)
        .arg("--etcd-key")
        .arg(&tls.client.key)
        .args(["--cluster", "3x4", "--json"])
        .arg(json.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("over TLS with a client certificate"),
        "{stdout}"
    );
    let results: Value = serde_json::from_slice(&std::fs::read(json.path()).unwrap()).unwrap();
    let run = &results["cluster"][0];
    assert_eq!(run["adds"], 12, "{run}");
    assert_eq!(run["failed"], 0, "{run}");
    assert_eq!(run["distinct_addresses"], 12, "{run}");
}

#[test]
fn an_https_endpoint_without_a_ca_stops_the_bench_with_the_hosts_message() {
    let out = Command::new(BENCH)
        .args(["--etcd", "https://127.0.0.1:2379", "--cluster", "1x1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ipam.store.etcd.tls must say how to trust the members"),
        "{stderr}"
    );
}
