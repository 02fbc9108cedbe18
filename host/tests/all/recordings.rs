//! Replays the invocations recorded from libcni driving the reference
//! host-local (testdata/recordings) against wasm-ipam with policy
//! host-local: the same addresses in the same order, and failures where the
//! reference failed.

use std::path::Path;

use cni::exec::{Call, run};
use serde_json::{Value, json};

use crate::common::{plugin, shared_cache};

fn call_from(env: &Value) -> Call {
    let get = |k: &str| {
        env.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Call {
        command: get("CNI_COMMAND").unwrap(),
        container_id: get("CNI_CONTAINERID"),
        ifname: get("CNI_IFNAME"),
        netns: get("CNI_NETNS"),
        args: get("CNI_ARGS"),
        extra: vec![],
    }
}

/// Replays one recording; returns how many host-local calls it checked.
fn replay(file: &Path) -> usize {
    let data = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (n, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
        let rec: Value = serde_json::from_str(line).unwrap();
        if rec["plugin"] != "host-local" {
            continue;
        }
        let mut stdin = rec["stdin"].clone();
        stdin["ipam"]["type"] = json!("wasm-ipam");
        stdin["ipam"]["policy"] = json!("host-local");
        stdin["ipam"]["dataDir"] = json!(data.path());
        stdin["ipam"]["cacheDir"] = json!(shared_cache());
        let call = call_from(&rec["env"]);
        let out = run(plugin(), &call, stdin.to_string().as_bytes()).unwrap();
        let at = format!("{}:{} {}", file.display(), n + 1, call.command);
        assert_eq!(
            out.ok(),
            rec["exit"] == 0,
            "{at}: exit differs: {} {}",
            out.stdout,
            out.stderr
        );
        if out.ok() {
            let want = if rec["stdout"] == "" {
                Value::Null
            } else {
                rec["stdout"].clone()
            };
            assert_eq!(out.json(), want, "{at}");
        }
        checked += 1;
    }
    checked
}

#[test]
fn recordings_replay_against_the_host_local_policy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/recordings");
    let mut total = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "recordings missing from {}",
        dir.display()
    );
    for file in files {
        total += replay(&file);
    }
    assert_eq!(total, 25, "every recorded host-local call was replayed");
}
