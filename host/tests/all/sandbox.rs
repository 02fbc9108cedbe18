//! A broken or hostile policy ends in a clean CNI error, and the store is
//! exactly as before: the policy wrote a key before misbehaving every time.

use cni::exec::Call;
use serde_json::{Value, json};

use crate::common::{Net, assert_error, test_policy};

fn misbehaving(mode: &str, limits: Value) -> Net {
    Net::with_ipam(
        "1.0.0",
        json!({"policy": test_policy("policy_misbehave"), "misbehave": mode, "limits": limits}),
    )
}

#[track_caller]
fn fails_cleanly(mode: &str, limits: Value, needle: &str) {
    let net = misbehaving(mode, limits);
    let out = net.add("c1");
    assert_error(&out, 999, needle);
    assert!(
        net.store_dump().is_empty(),
        "{mode}: the failed call left {:?}",
        net.store_dump()
    );
}

/// The policy's log lines and the host's own, as the binary prints them.
#[test]
fn a_flood_of_log_lines_is_capped_and_debug_shows_only_when_asked() {
    // A fresh cache: the call compiles, and Cranelift's own log records
    // (debug and trace) must not reach stderr either.
    let cache = tempfile::tempdir().unwrap();
    let mut net = misbehaving("log-flood", json!({}));
    net.conf["ipam"]["cacheDir"] = json!(cache.path());
    let out = net.add("c1");
    assert!(out.ok(), "{}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.iter().all(|l| l.starts_with("wasm-ipam: ")),
        "a line not from the host: {:?}",
        lines.iter().find(|l| !l.starts_with("wasm-ipam: "))
    );
    let policy: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(" info: info line "))
        .collect();
    assert_eq!(policy.len(), 200, "the cap is 200 lines a call");
    assert!(lines.iter().all(|l| !l.contains("debug line")));
    // Each line is cut at 4 KiB of message. The prefix names the policy,
    // whose path depends on where the repository is checked out.
    let message = |l: &str| l.split_once(" info: ").unwrap().1.len();
    assert!(
        policy.iter().all(|l| message(l) <= 4096),
        "{}",
        message(policy[0])
    );
    assert!(lines.iter().any(|l| l.contains("compiled policy")));

    let out = net.run(&Call::attach("ADD", "c2").env("WASM_IPAM_DEBUG", "1"));
    assert!(out.ok(), "{}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    let debug = lines
        .iter()
        .filter(|l| l.contains(" debug: debug line "))
        .count();
    let info = lines
        .iter()
        .filter(|l| l.contains(" info: info line "))
        .count();
    assert_eq!(
        (debug, info),
        (100, 100),
        "debug lines count against the cap"
    );
}

#[test]
fn a_policy_that_behaves_is_committed() {
    let net = misbehaving("none", json!({}));
    assert_eq!(net.add_ip("c1"), "10.0.0.2/24");
    assert_eq!(net.store_dump().len(), 1);
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    fails_cleanly(
        "loop",
        json!({"timeoutMs": 300}),
        "did not finish within 300 ms",
    );
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    fails_cleanly(
        "loop",
        json!({"fuel": 1_000_000, "timeoutMs": 60_000}),
        "ran out of fuel",
    );
}

#[test]
fn unbounded_memory_hits_the_memory_limit() {
    fails_cleanly(
        "oom",
        json!({"memoryMiB": 16}),
        "exceeded its memory limit of 16 MiB",
    );
}

#[test]
fn deep_recursion_overflows_the_stack_cleanly() {
    fails_cleanly("stack", json!({}), "overflowed its stack");
}

#[test]
fn a_panic_is_a_trap_with_the_policy_message() {
    fails_cleanly("trap", json!({}), "this policy panics on purpose");
}

#[test]
fn the_hosts_record_of_the_network_is_out_of_the_policys_reach() {
    let net = misbehaving("none", json!({}));
    assert_eq!(net.add_ip("c1"), "10.0.0.2/24");
    let record = net.record().expect("ADD records the network");
    assert_eq!(record["ipam"]["misbehave"], "none");
    assert_eq!(record["cniVersion"], "1.0.0");
    assert!(
        record["ipam"].get("dataDir").is_none() && record["ipam"].get("cacheDir").is_none(),
        "node-local fields are left out: {record}"
    );

    // A scan of every key shows the policy its own key and not the record.
    let mut conf = net.conf.clone();
    conf["ipam"]["misbehave"] = json!("scan-everything");
    let out = net.run_conf(&Call::attach("ADD", "c2"), &conf);
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(out.json()["ips"][0]["address"], "10.0.0.3/24");
    conf["ipam"]["misbehave"] = json!("scan-by-one");
    let out = net.run_conf(&Call::attach("ADD", "c2"), &conf);
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(
        out.json()["ips"][0]["address"],
        "10.0.0.3/24",
        "paged one key at a time"
    );

    // Forging it traps, and the whole call is rolled back.
    let before = (net.store_dump(), net.record());
    conf["ipam"]["misbehave"] = json!("forge-host-key");
    let out = net.run_conf(&Call::attach("ADD", "c3"), &conf);
    assert_error(&out, 999, "keys under \".wasm-ipam/\" belong to the host");
    assert_eq!((net.store_dump(), net.record()), before);
}

#[test]
fn store_limits_hold() {
    // A long deadline: the store-call cap is what this case tests, and a
    // million calls take 1 to 1.5 s here alone, near the default 2 s, so a
    // busy machine made the deadline trip first.
    fails_cleanly(
        "store-spam",
        json!({"timeoutMs": 30000}),
        "more than 1000000 store calls",
    );
    fails_cleanly("huge-value", json!({}), "a value of 1048576 bytes");
    // Named once: "policy X used a store key", not "policy X the policy used".
    fails_cleanly(
        "huge-key",
        json!({}),
        "policy_misbehave.wasm used a store key of 1048576 bytes",
    );
}

/// Runs the call and samples the host's peak resident memory (VmHWM) from
/// /proc until it exits.
fn peak_rss_kib(net: &Net, call: &Call) -> (cni::exec::Outcome, u64) {
    use std::process::{Command, Stdio};
    let mut child = crate::common::spawn_fed(
        Command::new(crate::common::plugin())
            .env_clear()
            .envs(call.vars())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        net.conf.to_string().as_bytes(),
    );
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            peak = peak.max(line.split_whitespace().nth(1).unwrap().parse().unwrap_or(0));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    let outcome = cni::exec::Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
        ..Default::default()
    };
    (outcome, peak)
}

#[test]
fn a_hundred_megabyte_answer_costs_the_host_bounded_memory() {
    let net = misbehaving("huge-string", json!({}));
    let (out, peak) = peak_rss_kib(&net, &Call::attach("ADD", "c1"));
    assert_error(&out, 999, "exceeded its memory limit of 64 MiB");
    assert!(net.store_dump().is_empty());
    assert!(peak > 0, "the host's memory was sampled");
    assert!(peak < 150 * 1024, "the host peaked at {peak} KiB");
}

#[test]
fn invalid_allocations_are_refused_before_printing() {
    fails_cleanly("bad-address", json!({}), "10.0.0.300/24");
    fails_cleanly(
        "loopback-address",
        json!({}),
        "127.0.0.5 can never be a pod's",
    );
    fails_cleanly("duplicate-address", json!({}), "appears twice");
    fails_cleanly("reserved-code", json!({}), "reserved code 7");
}

#[test]
fn policy_output_goes_to_the_log_not_the_result() {
    let net = misbehaving("print", json!({}));
    let out = net.add("c1");
    assert!(out.ok());
    assert_eq!(
        out.json()["ips"][0]["address"],
        "10.0.0.2/24",
        "stdout is the result alone"
    );
    assert!(
        out.stderr.contains("hello from the policy's stdout"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_policy_reaches_no_filesystem_environment_socket_or_real_clock() {
    let net = misbehaving("probe", json!({}));
    let out = net.run(
        &Call::attach("ADD", "c1")
            .env("WASM_IPAM_NOW", "1700000000")
            .env("SECRET", "x"),
    );
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
}

#[test]
fn unusable_policy_files_are_config_errors() {
    let net = Net::host_local("1.0.0", "10.1.0.0/24");
    let garbage = net.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not wasm").unwrap();
    let core_module = net.dir.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    for (policy, needle) in [
        (
            json!("/nonexistent/policy.wasm"),
            "cannot read policy /nonexistent/policy.wasm",
        ),
        (json!(net.dir.path()), "is a directory"),
        (
            json!(garbage),
            "is not a WebAssembly component: the file does not start with the WebAssembly \
             magic number",
        ),
        (
            json!(core_module),
            "is not a WebAssembly component: it is a core WebAssembly module",
        ),
        (
            json!(test_policy("not-a-policy")),
            "does not implement the cni:ipam/ipam-policy@0.1.1 world",
        ),
    ] {
        let mut c = net.conf.clone();
        c["ipam"]["policy"] = policy;
        assert_error(&net.run_conf(&Call::attach("ADD", "c1"), &c), 7, needle);
    }
}
