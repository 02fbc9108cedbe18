//! The operator subcommands, run as a person would run them: `leases`,
//! `gc`, `compile`, `import-host-local` and `simulate`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use cni::exec::Call;
use serde_json::{Value, json};

use crate::common::{Net, cache_entries, http_get, plugin, serving_address, test_policy};

/// Runs `wasm-ipam ARGS` with the clock at `now` and `stdin` piped in.
fn tool(args: &[&str], now: u64, stdin: &str) -> Output {
    let mut child = Command::new(plugin())
        .args(args)
        .env("WASM_IPAM_NOW", now.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[track_caller]
fn fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

fn dir_arg(net: &Net) -> String {
    net.data_dir().display().to_string()
}

/// `wasm-ipam gc` on `network` in the store at `dir`, with `--valid` and
/// any `extra` flags, and `stdin`.
fn gc(dir: &str, network: &str, valid: &str, extra: &[&str], stdin: &str) -> Output {
    let mut args = vec![
        "gc",
        "--data-dir",
        dir,
        "--network",
        network,
        "--valid",
        valid,
    ];
    args.extend_from_slice(extra);
    tool(&args, 0, stdin)
}

/// A pod's ADD, as kubelet sends it, at time `now`.
fn add_pod(net: &Net, id: &str, pod: &str, now: u64) -> String {
    let mut call = Call::attach("ADD", id);
    call.args = Some(format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME={pod}"
    ));
    call.extra = vec![("WASM_IPAM_NOW".into(), now.to_string())];
    let out = net.run(&call);
    assert!(out.ok(), "{}", out.stdout);
    out.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A second network in `net`'s store.
fn beside(net: &Net, name: &str, ipam: Value) -> Net {
    let mut other = Net::with_ipam("1.0.0", ipam);
    other.conf["name"] = json!(name);
    other.conf["ipam"]["dataDir"] = json!(net.data_dir());
    other
}

fn two_networks() -> (Net, Net) {
    let mut pods = Net::host_local("1.0.0", "10.9.0.0/28");
    pods.conf["name"] = json!("pods");
    for (i, id) in ["c1", "c2", "c3"].iter().enumerate() {
        add_pod(&pods, id, &format!("web-{i}"), 1000);
    }
    let blocks = beside(
        &pods,
        "blocks",
        json!({"policy": "pooled", "node": "node-a",
               "pools": [{"name": "main", "cidr": "10.20.0.0/24", "blockSize": 28}]}),
    );
    for id in ["p1", "p2"] {
        add_pod(&blocks, id, id, 1300);
    }
    (pods, blocks)
}

#[test]
fn leases_lists_holders_pods_and_how_full_each_pool_is() {
    let (pods, _blocks) = two_networks();
    let dir = dir_arg(&pods);
    let out = stdout(&tool(&["leases", "--data-dir", &dir, "--json"], 1600, ""));
    let v: Value = serde_json::from_str(&out).unwrap();
    let nets = v["networks"].as_array().unwrap();
    assert_eq!(nets.len(), 2);
    let (blocks, hl) = (&nets[0], &nets[1]);
    assert_eq!(blocks["name"], "blocks");
    assert_eq!(blocks["policy"], "pooled");
    assert_eq!(blocks["pools"][0]["used"], 2);
    // A /24 less its network, its broadcast and the address kept for a
    // gateway: 253 usable.
    assert_eq!(blocks["pools"][0]["capacity"], 253);
    assert_eq!(hl["policy"], "host-local");
    // 10.9.0.1-10.9.0.14 less the gateway: 13 addresses, 3 taken.
    assert_eq!(hl["pools"][0]["used"], 3);
    assert_eq!(hl["pools"][0]["free"], 10);
    assert_eq!(hl["pools"][0]["percent"], 23.1);
    let first = &hl["leases"][0];
    assert_eq!(first["address"], "10.9.0.2");
    assert_eq!(first["containerID"], "c1");
    assert_eq!(first["ifname"], "eth0");
    assert_eq!(first["pod"], "shop/web-0");
    assert_eq!(first["ageSeconds"], 600);

    let text = stdout(&tool(&["leases", "--data-dir", &dir], 1600, ""));
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../testdata/snapshots/host");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("leases_text", text));

    let one = stdout(&tool(
        &["leases", "--data-dir", &dir, "--network", "pods"],
        1600,
        "",
    ));
    assert!(
        one.starts_with("network pods  policy host-local  3 leases"),
        "{one}"
    );
    assert!(!one.contains("blocks"));
}

#[test]
fn leases_names_what_is_wrong_with_its_arguments() {
    let (pods, _blocks) = two_networks();
    fails_with(
        &tool(
            &["leases", "--data-dir", &dir_arg(&pods), "--network", "nope"],
            0,
            "",
        ),
        "no network \"nope\" in this store; it holds blocks, pods",
    );
    let nowhere = pods.dir.path().join("typo");
    fails_with(
        &tool(&["leases", "--data-dir", nowhere.to_str().unwrap()], 0, ""),
        "wasm-ipam.db does not exist",
    );
    assert!(!nowhere.exists(), "a read-only tool created a store");
}

#[test]
fn gc_dry_run_changes_nothing_and_gc_releases_the_stale() {
    let (pods, _blocks) = two_networks();
    let dir = dir_arg(&pods);
    let valid = pods.dir.path().join("valid.json");
    std::fs::write(&valid, r#"[{"containerID": "c2", "ifname": "eth0"}]"#).unwrap();
    let before = pods.store_dump();
    let dry = stdout(&gc(
        &dir,
        "pods",
        valid.to_str().unwrap(),
        &["--dry-run"],
        "",
    ));
    assert!(dry.contains("would release 10.9.0.2 from c1/eth0"), "{dry}");
    assert!(dry.contains("would release 10.9.0.4 from c3/eth0"), "{dry}");
    assert!(
        dry.contains("2 addresses would be released (dry run"),
        "{dry}"
    );
    assert_eq!(pods.store_dump(), before, "a dry run changed the store");

    // The real run, with the list on stdin in CNI's own envelope.
    let real = stdout(&gc(
        &dir,
        "pods",
        "-",
        &[],
        r#"{"cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]}"#,
    ));
    assert!(real.contains("pods: 2 addresses released"), "{real}");
    let leased: Vec<String> = pods
        .store_dump_of("pods")
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix("lease/").map(str::to_string))
        .collect();
    assert_eq!(leased, ["10.9.0.3"]);
    assert_eq!(
        pods.store_dump_of("blocks")
            .iter()
            .filter(|(k, _)| k.starts_with("lease/"))
            .count(),
        2,
        "another network's leases are untouched"
    );
}

#[test]
fn gc_refuses_bad_lists_and_unknown_networks() {
    let (pods, _blocks) = two_networks();
    let dir = dir_arg(&pods);
    let before = pods.store_dump();
    for (valid, needle) in [
        ("not json", "the valid list is not JSON"),
        (r#"{"x": 1}"#, "without cni.dev/valid-attachments"),
        (
            r#"[{"ifname": "eth0"}]"#,
            "valid attachment 0 has no string \"containerID\"",
        ),
        ("42", "must be a JSON array"),
    ] {
        fails_with(&gc(&dir, "pods", "-", &[], valid), needle);
    }
    fails_with(&gc(&dir, "other", "-", &[], "[]"), "no network \"other\"");
    fails_with(
        &gc(&dir, "pods", "/nonexistent", &[], ""),
        "cannot read /nonexistent",
    );
    assert_eq!(pods.store_dump(), before);
}

#[test]
fn compile_checks_the_contract_and_warms_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("c");
    let c = cache_dir.to_str().unwrap();
    let template = test_policy("policy_template");
    let first = stdout(&tool(
        &["compile", template.to_str().unwrap(), "--cache-dir", c],
        0,
        "",
    ));
    assert!(
        first.contains(
            "implements cni:ipam/ipam-policy-tools@0.1.1 (ipam-policy, with inspect and nodes"
        ),
        "{first}"
    );
    assert!(
        first.contains("cni:ipam/policy@0.1.1: add, del, check, gc, status"),
        "{first}"
    );
    assert!(
        first.contains("cni:ipam/nodes@0.1.1: release-node"),
        "{first}"
    );
    assert!(
        first.contains("cni:ipam/inspect@0.1.1: leases, usage"),
        "{first}"
    );
    assert!(first.contains("cni:ipam/store@0.1.1"), "{first}");
    assert!(first.contains("compiled in"), "{first}");
    let entries = cache_entries(&cache_dir);
    assert_eq!(entries.len(), 1);
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&entries[0]).unwrap());
    let again = stdout(&tool(
        &["compile", template.to_str().unwrap(), "--cache-dir", c],
        0,
        "",
    ));
    assert!(again.contains("already compiled"), "{again}");

    // The first ADD finds it compiled: the entry is used, not replaced.
    let net = Net::with_ipam(
        "1.0.0",
        json!({"policy": template, "subnet": "10.1.0.0/24", "cacheDir": cache_dir}),
    );
    assert_eq!(net.add_ip("c1"), "10.1.0.2/24");
    assert_eq!(cache_entries(&cache_dir), entries);
    // The template exports inspect: the tools see its lease through it.
    let listed = stdout(&tool(
        &["leases", "--data-dir", &dir_arg(&net), "--json"],
        0,
        "",
    ));
    let report: Value = serde_json::from_str(&listed).unwrap();
    let template_net = &report["networks"][0];
    assert_eq!(template_net["reported"], true, "{listed}");
    assert_eq!(template_net["leases"][0]["address"], "10.1.0.2", "{listed}");
    assert_eq!(template_net["leases"][0]["containerID"], "c1", "{listed}");
    let after = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&entries[0]).unwrap());
    assert_eq!(inode, after);

    // A damaged entry is compiled again, and says so.
    let mut damaged = std::fs::read(&entries[0]).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    std::fs::write(&entries[0], &damaged).unwrap();
    let rebuilt = stdout(&tool(
        &["compile", template.to_str().unwrap(), "--cache-dir", c],
        0,
        "",
    ));
    assert!(rebuilt.contains("compiled in"), "{rebuilt}");

    // Built-in policies by name: their artifact was compiled with the
    // binary, and is only written into the cache.
    let sticky = stdout(&tool(&["compile", "sticky", "--cache-dir", c], 0, ""));
    assert!(
        sticky.contains("precompiled into this binary; installed in"),
        "{sticky}"
    );
}

#[test]
fn compile_refuses_what_is_not_a_policy_and_keeps_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let foreign = test_policy("policy_foreign");
    fails_with(
        &tool(
            &["compile", foreign.to_str().unwrap(), "--cache-dir", c],
            0,
            "",
        ),
        "imports what the cni:ipam contract does not offer: test:foreign/dial",
    );
    let not_a_policy = test_policy("not-a-policy");
    fails_with(
        &tool(
            &["compile", not_a_policy.to_str().unwrap(), "--cache-dir", c],
            0,
            "",
        ),
        "does not implement the cni:ipam/ipam-policy@0.1.1 world",
    );
    let junk = cache.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0 junk").unwrap();
    fails_with(
        &tool(
            &["compile", junk.to_str().unwrap(), "--cache-dir", c],
            0,
            "",
        ),
        "is not a valid WebAssembly component",
    );
    fails_with(
        &tool(&["compile", "round-robin"], 0, ""),
        "unknown policy \"round-robin\"",
    );
    let compiled: Vec<_> = cache_entries(cache.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert!(
        compiled.is_empty(),
        "refused components stayed in the cache: {compiled:?}"
    );
}

const REFERENCE: &str = "/usr/lib/cni/host-local";

/// `wasm-ipam import-host-local` of network `pods` from `from` into `net`.
/// `import-host-local` into the network `net` configures, its config given
/// on stdin.
fn import(from: &Path, net: &Net) -> Output {
    tool(
        &[
            "import-host-local",
            "--from",
            from.to_str().unwrap(),
            "--config",
            "-",
        ],
        0,
        &net.conf.to_string(),
    )
}

/// Runs the reference host-local on `conf`.
fn reference(command: &str, id: &str, conf: &Value) -> Value {
    let mut call = Call::attach(command, id);
    call.extra = vec![("CNI_PATH".into(), "/usr/lib/cni".into())];
    let out = cni::exec::run(Path::new(REFERENCE), &call, conf.to_string().as_bytes()).unwrap();
    assert!(out.ok(), "reference {command} {id}: {}", out.stdout);
    if out.stdout.trim().is_empty() {
        Value::Null
    } else {
        out.json()
    }
}

#[test]
fn import_takes_over_from_the_reference_host_local_without_duplicates() {
    let work = tempfile::tempdir().unwrap();
    let ref_dir = work.path().join("hl");
    let ref_conf = json!({"cniVersion": "1.0.0", "name": "pods", "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": ref_dir, "ranges": [[{"subnet": "10.9.0.0/28"}]]}});
    let mut theirs = Vec::new();
    for id in ["r1", "r2", "r3", "r4"] {
        theirs.push(
            reference("ADD", id, &ref_conf)["ips"][0]["address"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    reference("DEL", "r2", &ref_conf);
    theirs.remove(1);

    let mut net = Net::host_local("1.0.0", "10.9.0.0/28");
    net.conf["name"] = json!("pods");
    let from = ref_dir.join("pods");
    let out = stdout(&import(&from, &net));
    assert!(
        out.contains("imported 3 reservations (0 already there) and 1 cursor"),
        "{out}"
    );
    let again = stdout(&import(&from, &net));
    assert!(
        again.contains("imported 0 reservations (3 already there)"),
        "{again}"
    );
    // Imported through the policy, which also recorded the network: the
    // leases are listed at once, before any ADD through wasm-ipam.
    let listed = stdout(&tool(&["leases", "--data-dir", &dir_arg(&net)], 0, ""));
    assert!(
        listed.contains("network pods  policy host-local  3 leases"),
        "{listed}"
    );
    let imported: Vec<String> = net
        .leased()
        .into_iter()
        .map(|ip| format!("{ip}/28"))
        .collect();
    let mut sorted = theirs.clone();
    sorted.sort();
    assert_eq!(imported, sorted);

    // Ours carries on after the reference's cursor (10.9.0.5), as the
    // reference itself would, and never hands out an imported address.
    assert_eq!(net.add_ip("n1"), "10.9.0.6/28");
    let mut ours = vec!["10.9.0.6/28".to_string()];
    loop {
        let out = net.add(&format!("n{}", ours.len() + 1));
        if !out.ok() {
            assert_eq!(out.json()["code"], 11, "{}", out.stdout);
            break;
        }
        ours.push(
            out.json()["ips"][0]["address"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(
        ours.iter().all(|a| !theirs.contains(a)),
        "{ours:?} reuses one of {theirs:?}"
    );
    assert_eq!(
        ours.len() + theirs.len(),
        13,
        "every address of the range in use once"
    );
    // An imported container's DEL, now through ours, frees its address.
    let out = net.run(&Call::attach("DEL", "r1"));
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(net.add_ip("n99"), theirs[0]);
}

#[test]
fn import_refuses_a_conflict_and_imports_nothing() {
    let work = tempfile::tempdir().unwrap();
    let from = work.path().join("pods");
    std::fs::create_dir(&from).unwrap();
    std::fs::write(from.join("10.9.0.2"), "r1\r\neth0").unwrap();
    std::fs::write(from.join("10.9.0.3"), "r2\r\neth0").unwrap();
    let mut net = Net::host_local("1.0.0", "10.9.0.0/28");
    net.conf["name"] = json!("pods");
    assert_eq!(net.add_ip("mine"), "10.9.0.2/28");
    let before = net.store_dump();
    fails_with(
        &import(&from, &net),
        "10.9.0.2 is held by r1/eth0 in host-local but by mine/eth0 in wasm-ipam; nothing was imported",
    );
    assert_eq!(net.store_dump(), before);

    std::fs::write(from.join("10.9.0.2"), "not a valid id!").unwrap();
    fails_with(
        &import(&from, &net),
        "does not name a container and interface",
    );
    fails_with(
        &import(Path::new("/nonexistent"), &net),
        "cannot read the host-local directory /nonexistent",
    );
    assert_eq!(net.store_dump(), before);
}

#[test]
fn import_refuses_what_it_cannot_carry_over_exactly_and_imports_nothing() {
    let work = tempfile::tempdir().unwrap();
    let from = work.path().join("pods");
    std::fs::create_dir(&from).unwrap();
    std::fs::write(from.join("10.9.0.2"), "r1\r\neth0").unwrap();
    std::fs::write(from.join("10.9.0.3"), "r2\r\neth0").unwrap();

    // The new config has an IPv6 range set the reference's did not: the
    // policy would give each holder an address more than it reserved.
    let mut wider = Net::host_local("1.0.0", "10.9.0.0/28");
    wider.conf["name"] = json!("pods");
    wider.conf["ipam"]["ranges"]
        .as_array_mut()
        .unwrap()
        .push(json!([{"subnet": "fd00:9::/120"}]));
    fails_with(
        &import(&from, &wider),
        "gave r1/eth0 2 addresses for the 1 it held in host-local: \
         the config's range sets differ from the reference's; nothing was imported",
    );
    assert_eq!(wider.store_dump(), Vec::new());

    // A policy that does not export inspect cannot say what it holds
    // already, so the import cannot tell a duplicate from a fresh one.
    let mut bare = Net::with_ipam(
        "1.0.0",
        json!({"policy": test_policy("policy_bare"), "node": "node-a"}),
    );
    bare.conf["name"] = json!("pods");
    fails_with(
        &import(&from, &bare),
        "does not export cni:ipam/inspect@0.1.1: the import needs it to see what is held already",
    );
    assert_eq!(bare.store_dump(), Vec::new());
    // Both left the reference's reservations as they were.
    let mut left: Vec<String> = std::fs::read_dir(&from)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["10.9.0.2", "10.9.0.3", "lock"]);
}

fn simulate(config: &Value, events: &str, json_out: bool) -> Output {
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("net.conf");
    std::fs::write(&conf, config.to_string()).unwrap();
    let mut args = vec![
        "simulate",
        "--config",
        conf.to_str().unwrap(),
        "--events",
        "-",
    ];
    if json_out {
        args.push("--json");
    }
    tool(&args, 5000, events)
}

const EVENTS: &str = r#"
# a sticky workload comes back to its address
{"op":"ADD","containerID":"a","args":"IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=pg-0","at":1000}
{"op":"ADD","containerID":"b","args":"IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=pg-1"}
{"op":"DEL","containerID":"a","at":1060}
{"op":"ADD","containerID":"c"}
{"op":"ADD","containerID":"a2","args":"IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=pg-0","at":1100}
{"op":"CHECK","containerID":"a2"}
{"op":"GC","valid":[{"containerID":"a2","ifname":"eth0"}]}
{"op":"STATUS"}
"#;

#[test]
fn simulate_runs_events_through_the_policy_and_prints_the_leases() {
    let config = json!({"cniVersion": "1.1.0", "name": "db", "type": "bridge",
        "ipam": {"type": "wasm-ipam", "policy": "sticky", "dataDir": "/nonexistent/never-touched",
                 "ranges": [[{"subnet": "10.30.0.0/29"}]]}});
    let text = stdout(&simulate(&config, EVENTS, false));
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../../testdata/snapshots/host");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("simulate_sticky", text));
    assert!(!Path::new("/nonexistent/never-touched").exists());

    let json_lines = stdout(&simulate(&config, EVENTS, true));
    let lines: Vec<Value> = json_lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 9, "8 events and the leases");
    assert_eq!(lines[0]["result"]["cniVersion"], "1.1.0");
    let first = lines[0]["result"]["ips"][0]["address"].clone();
    assert_eq!(
        lines[4]["result"]["ips"][0]["address"], first,
        "pg-0 kept its address"
    );
    assert_eq!(lines[6]["released"].as_array().unwrap().len(), 2);
    assert_eq!(
        lines[8]["networks"][0]["leases"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn simulate_takes_a_conflist_and_names_bad_events() {
    let conflist = json!({"cniVersion": "1.0.0", "name": "pods", "plugins": [
        {"type": "bridge", "ipam": {"type": "wasm-ipam", "ranges": [[{"subnet": "10.9.0.0/24"}]]}},
        {"type": "portmap"}]});
    let out = stdout(&simulate(
        &conflist,
        r#"{"op":"ADD","containerID":"x"}"#,
        false,
    ));
    assert!(
        out.starts_with("line 1: ADD x/eth0 -> 10.9.0.2/24"),
        "{out}"
    );
    fails_with(
        &simulate(
            &conflist,
            "{\"op\":\"ADD\"}\n{\"op\":\"ADD\",\"bogus\":1}",
            false,
        ),
        "events line 2: not an event",
    );
    fails_with(
        &simulate(&conflist, r#"{"op":"RESET"}"#, false),
        "events line 1: op must be ADD, DEL, CHECK, GC or STATUS, not \"RESET\"",
    );
    fails_with(&simulate(&conflist, "\n", false), "no events");
    // A call that CNI refuses is an outcome, not a failure of the run.
    let out = stdout(&simulate(
        &conflist,
        "{\"op\":\"ADD\",\"containerID\":\"x\",\"ifname\":\"way-too-long-ifname\"}\n{\"op\":\"ADD\",\"containerID\":\"y\"}",
        false,
    ));
    assert!(
        out.contains("line 1: ADD x/way-too-long-ifname -> error 4: CNI_IFNAME"),
        "{out}"
    );
    assert!(out.contains("line 2: ADD y/eth0 -> 10.9.0.2/24"), "{out}");
}

#[test]
fn every_subcommand_explains_itself() {
    for (cmd, needle) in [
        ("leases", "how many addresses are used and free"),
        ("gc", "An empty list releases every lease"),
        ("compile", "refuses a component that imports anything"),
        (
            "import-host-local",
            "loses no address and hands out none twice",
        ),
        ("simulate", "Events are JSON Lines"),
        ("install", "a runtime never runs half a binary"),
        ("release-node", "that is gone for good"),
        ("metrics", "node-exporter's textfile collector"),
        (
            "sync-credentials",
            "a call reads a whole old file or a whole new",
        ),
    ] {
        let help = stdout(&tool(&[cmd, "--help"], 0, ""));
        assert!(
            help.contains(needle),
            "{cmd} --help lacks {needle:?}: {help}"
        );
        assert!(help.contains("Usage: wasm-ipam"), "{help}");
    }
    fails_with(&tool(&["gc", "--valid", "-"], 0, ""), "--network <NAME>");
    fails_with(
        &tool(&["frobnicate"], 0, ""),
        "unrecognized subcommand 'frobnicate'",
    );
}

#[test]
fn sync_credentials_refuses_a_folder_others_could_change_and_an_empty_secret() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let from = work.path().join("secret");
    std::fs::create_dir(&from).unwrap();
    let to = work.path().join("node/etcd");
    let sync = |extra: &[&str]| {
        let mut args = vec![
            "sync-credentials",
            "--from",
            from.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ];
        args.extend(extra);
        tool(&args, 0, "")
    };
    // An empty Secret: an error, unless it is optional.
    fails_with(&sync(&[]), "holds no file: is the Secret mounted there");
    assert!(stdout(&sync(&["--optional"])).contains("nothing to copy"));
    std::fs::write(from.join("ca.crt"), "a CA\n").unwrap();
    let said = stdout(&sync(&[]));
    assert!(said.contains("updated ca.crt in"), "{said}");
    assert!(stdout(&sync(&[])).contains("is up to date"));
    // A folder a local user could write on the way: root would trust a CA
    // they chose.
    std::fs::set_permissions(
        work.path().join("node"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    fails_with(&sync(&[]), "is writable by its group and all users");
    assert_eq!(std::fs::read(to.join("ca.crt")).unwrap(), b"a CA\n");
}

#[test]
fn install_puts_the_plugin_in_place_and_compiles_the_policies() {
    let dir = tempfile::tempdir().unwrap();
    let (bin, cache) = (dir.path().join("bin"), dir.path().join("cache"));
    let args = |b: &Path, c: &Path| {
        vec![
            "install".to_string(),
            "--cni-bin-dir".into(),
            b.display().to_string(),
            "--cache-dir".into(),
            c.display().to_string(),
        ]
    };
    let run = |a: &[String]| tool(&a.iter().map(String::as_str).collect::<Vec<_>>(), 0, "");
    let out = stdout(&run(&args(&bin, &cache)));
    let installed = bin.join("wasm-ipam");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(plugin()).unwrap()
    );
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let builtins = wasm_ipam::sandbox::builtin_names();
    assert_eq!(builtins, ["host-local", "pooled", "sticky", "dhcp"]);
    for policy in &builtins {
        assert!(
            out.contains(&format!("installed the precompiled policy {policy} in")),
            "{out}"
        );
    }
    assert_eq!(cache_entries(&cache).len(), builtins.len(), "{out}");
    // The installed plugin is a working CNI plugin, and it finds the
    // policies compiled.
    let net = Net::with_ipam(
        "1.0.0",
        json!({"ranges": [[{"subnet": "10.130.0.0/24"}]], "cacheDir": cache}),
    );
    let added = cni::exec::run(
        &installed,
        &cni::exec::Call::attach("ADD", "c1"),
        net.conf.to_string().as_bytes(),
    )
    .unwrap();
    assert!(added.ok(), "{} {}", added.stdout, added.stderr);
    assert_eq!(
        cache_entries(&cache).len(),
        builtins.len(),
        "nothing compiled again"
    );

    // Again, over a plugin that is running: the running one goes on, the
    // new one is in place, no temporary file is left.
    std::fs::copy("/bin/sleep", &installed).unwrap();
    let mut running = Command::new(&installed).arg("30").spawn().unwrap();
    let out = stdout(&run(&args(&bin, &cache)));
    assert!(
        out.contains("policy host-local was already compiled"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(plugin()).unwrap()
    );
    assert!(
        running.try_wait().unwrap().is_none(),
        "the running binary was disturbed"
    );
    running.kill().unwrap();
    running.wait().unwrap();
    let names: Vec<_> = std::fs::read_dir(&bin)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["wasm-ipam"], "only the plugin is left");

    // Where it cannot write: a clear error, and the old plugin untouched.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    fails_with(&run(&args(&file, &cache)), "cannot make");
    fails_with(&tool(&["install"], 0, ""), "--cni-bin-dir <DIR>");
}

#[test]
fn release_node_frees_a_departed_nodes_addresses() {
    let pooled = |node: &str| {
        json!({"policy": "pooled", "node": node,
               "pools": [{"name": "main", "cidr": "10.131.0.0/24", "blockSize": 28}]})
    };
    let a = Net::with_ipam("1.0.0", pooled("node-a"));
    // A second node on the same store and network.
    let mut b = Net::with_ipam("1.0.0", pooled("node-b"));
    b.conf["ipam"]["dataDir"] = json!(a.data_dir());
    for id in ["a1", "a2"] {
        assert!(a.add(id).ok());
    }
    assert!(b.add("b1").ok());
    let blocks_of = |node: &str| {
        a.store_dump()
            .into_iter()
            .filter(|(k, v)| k.starts_with("block/") && String::from_utf8_lossy(v).contains(node))
            .count()
    };
    assert_eq!(blocks_of("node-a"), 1);
    let dir = dir_arg(&a);
    let before = a.store_dump();
    let dry = stdout(&tool(
        &["release-node", "node-a", "--data-dir", &dir, "--dry-run"],
        0,
        "",
    ));
    assert!(dry.contains("testnet: would release a1/eth0"), "{dry}");
    assert!(
        dry.contains("2 attachments of node node-a would release (dry run"),
        "{dry}"
    );
    assert_eq!(a.store_dump(), before, "a dry run changes nothing");
    let done = stdout(&tool(
        &["release-node", "node-a", "--data-dir", &dir],
        0,
        "",
    ));
    assert!(
        done.contains("testnet: 2 attachments of node node-a released"),
        "{done}"
    );
    let owners: Vec<String> = a
        .store_dump()
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix("owner/").map(str::to_string))
        .collect();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert!(owners[0].starts_with("b1/"), "{owners:?}");
    // Pooled keeps a node's last block when it empties, as Calico keeps an
    // affinity; releasing the node gives that up too (`nodes.release-node`):
    // no block, no affinity and no open entry names node-a any more.
    assert!(
        done.contains("testnet: policy pooled released the node's own state"),
        "{done}"
    );
    let left: Vec<String> = a
        .store_dump()
        .into_iter()
        .filter(|(k, v)| k.contains("node-a") || String::from_utf8_lossy(v).contains("node-a"))
        .map(|(k, _)| k)
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(blocks_of("node-a"), 0);
    assert_eq!(blocks_of("node-b"), 1);
    let again = stdout(&tool(
        &["release-node", "node-a", "--data-dir", &dir],
        0,
        "",
    ));
    assert!(
        again.contains("0 attachments of node node-a released"),
        "{again}"
    );
    fails_with(
        &tool(
            &[
                "release-node",
                "node-a",
                "--data-dir",
                &dir,
                "--network",
                "nope",
            ],
            0,
            "",
        ),
        "no network \"nope\"",
    );
    fails_with(
        &tool(
            &["release-node", "node-a", "--data-dir", "/nonexistent/dir"],
            0,
            "",
        ),
        "no wasm-ipam store in /nonexistent/dir",
    );
    fails_with(&tool(&["release-node"], 0, ""), "<NODE>");
}

/// `promtool check metrics` on `text`; in CI promtool must be there.
pub(crate) fn promtool_accepts(text: &str) {
    if !Path::new("/usr/bin/promtool").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing in CI"
        );
        eprintln!("skipped the promtool check: apt-get install prometheus");
        return;
    }
    let mut child = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_say_how_full_each_pool_is_and_pass_promtool() {
    let small = Net::host_local("1.0.0", "10.132.0.0/30");
    assert!(small.add("c1").ok());
    let pooled = beside(
        &small,
        "blocks",
        json!({"policy": "pooled", "node": "node-a",
               "pools": [{"name": "main", "cidr": "10.133.0.0/24", "blockSize": 28}]}),
    );
    assert!(pooled.add("p1").ok());
    let sticky = beside(
        &small,
        "held",
        json!({"policy": "sticky", "ranges": [[{"subnet": "10.134.0.0/29"}]], "holdSeconds": 600}),
    );
    let pod =
        Call::attach("ADD", "s1").args("IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=pg-0");
    assert!(sticky.run(&pod).ok());
    assert!(sticky.run(&Call::attach("DEL", "s1")).ok());
    let text = stdout(&tool(&["metrics", "--data-dir", &dir_arg(&small)], 0, ""));
    for line in [
        "wasm_ipam_pool_capacity_addresses{network=\"testnet\",pool=\"range 10.132.0.1-10.132.0.2 (10.132.0.0/30)\"} 1.0",
        "wasm_ipam_pool_used_addresses{network=\"testnet\",pool=\"range 10.132.0.1-10.132.0.2 (10.132.0.0/30)\"} 1.0",
        "wasm_ipam_pool_free_addresses{network=\"testnet\",pool=\"range 10.132.0.1-10.132.0.2 (10.132.0.0/30)\"} 0.0",
        "wasm_ipam_pool_exhausted{network=\"testnet\",pool=\"range 10.132.0.1-10.132.0.2 (10.132.0.0/30)\"} 1.0",
        "wasm_ipam_pool_exhausted{network=\"blocks\",pool=\"pool main 10.133.0.0/24\"} 0.0",
        "wasm_ipam_network_leases{network=\"blocks\",policy=\"pooled\"} 1.0",
        // The policies' own figures, as each reports them through inspect.
        "wasm_ipam_pool_figure{network=\"blocks\",pool=\"pool main 10.133.0.0/24\",figure=\"blocks\",node=\"node-a\"} 1.0",
        "wasm_ipam_pool_figure{network=\"held\",pool=\"range 10.134.0.1-10.134.0.6 (10.134.0.0/29)\",figure=\"holds\",node=\"\"} 1.0",
        // Sticky counts its address on hold as not free.
        "wasm_ipam_pool_free_addresses{network=\"held\",pool=\"range 10.134.0.1-10.134.0.6 (10.134.0.0/29)\"} 4.0",
        "wasm_ipam_network_leases{network=\"held\",policy=\"sticky\"} 0.0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
    promtool_accepts(&text);
    fails_with(
        &tool(&["metrics", "--data-dir", "/nonexistent/dir"], 0, ""),
        "no wasm-ipam store in /nonexistent/dir",
    );
    fails_with(
        &tool(&["metrics", "--listen", "localhost-ish"], 0, ""),
        "invalid value 'localhost-ish' for '--listen <ADDR>'",
    );
}

#[test]
fn metrics_are_served_over_http() {
    let net = Net::host_local("1.0.0", "10.135.0.0/24");
    assert!(net.add("c1").ok());
    let mut child = Command::new(plugin())
        .args([
            "metrics",
            "--data-dir",
            &dir_arg(&net),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving_address(&mut child);
    let get = |path: &str| http_get(&addr, path);
    let scraped = get("/metrics");
    assert!(scraped.starts_with("HTTP/1.0 200"), "{scraped}");
    assert!(scraped.contains("openmetrics-text"), "{scraped}");
    assert!(
        scraped.contains("wasm_ipam_network_leases{network=\"testnet\",policy=\"host-local\"} 1.0")
    );
    // A later scrape reads the store afresh.
    assert!(net.add("c2").ok());
    assert!(
        get("/metrics")
            .contains("wasm_ipam_network_leases{network=\"testnet\",policy=\"host-local\"} 2.0")
    );
    assert!(get("/other").starts_with("HTTP/1.0 404"));
    child.kill().unwrap();
    child.wait().unwrap();
    let body = scraped.split("\r\n\r\n").nth(1).unwrap();
    promtool_accepts(body);
}

#[test]
fn a_policy_without_the_optional_exports_still_serves_and_the_tools_say_so() {
    // policy-bare: world ipam-policy only, built without the kit, against
    // the contract as it was at 0.1.0; this host serves 0.1.1.
    let cache = tempfile::tempdir().unwrap();
    let path = test_policy("policy_bare");
    let vetted = stdout(&tool(
        &[
            "compile",
            path.to_str().unwrap(),
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ],
        0,
        "",
    ));
    assert!(
        vetted.contains("implements cni:ipam/ipam-policy@0.1.1"),
        "{vetted}"
    );
    assert!(
        vetted.contains("cni:ipam/policy@0.1.0: add, del"),
        "{vetted}"
    );
    assert!(vetted.contains("cni:ipam/store@0.1.0"), "{vetted}");
    let bare = Net::with_ipam(
        "1.0.0",
        json!({"policy": test_policy("policy_bare"), "node": "node-a"}),
    );
    assert_eq!(bare.add_ip("c1"), "10.250.0.2/24");
    assert_eq!(bare.add_ip("c2"), "10.250.0.3/24");
    let dir = dir_arg(&bare);
    let listed = stdout(&tool(&["leases", "--data-dir", &dir], 0, ""));
    assert!(
        listed.contains("does not report leases: it does not export cni:ipam/inspect@0.1.1"),
        "{listed}"
    );
    let json = stdout(&tool(&["leases", "--data-dir", &dir, "--json"], 0, ""));
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["networks"][0]["reported"], false, "{json}");
    let metrics = stdout(&tool(&["metrics", "--data-dir", &dir], 0, ""));
    assert!(!metrics.contains("network=\"testnet\""), "{metrics}");
    promtool_accepts(&metrics);
    let released = stdout(&tool(
        &["release-node", "node-a", "--data-dir", &dir],
        0,
        "",
    ));
    assert!(
        released.contains(
            "keeps no per-node state to release (it does not export cni:ipam/nodes@0.1.1)"
        ),
        "{released}"
    );
    assert!(
        released.contains("testnet: 2 attachments of node node-a released"),
        "{released}"
    );
    assert!(
        !bare
            .store_dump()
            .iter()
            .any(|(k, _)| k.starts_with("held/")),
        "released through the policy's DEL"
    );
}

#[test]
fn compile_says_which_policies_need_the_dhcp_grant() {
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let dhcp = stdout(&tool(&["compile", "dhcp", "--cache-dir", c], 0, ""));
    assert!(
        dhcp.contains("cni:ipam/dhcp@0.1.1             cni:ipam contract: DHCP exchanges, where a network grants \"dhcp\""),
        "{dhcp}"
    );
    assert!(
        dhcp.contains("it runs only on networks whose ipam says \"grant\": [\"dhcp\"]"),
        "{dhcp}"
    );
    let plain = stdout(&tool(&["compile", "host-local", "--cache-dir", c], 0, ""));
    assert!(!plain.contains("dhcp"), "{plain}");
}
