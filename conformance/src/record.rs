//! The recorder: captures what a real runtime sends a plugin.
//!
//! `cni-conformance record install --plugin /opt/cni/bin/host-local --out
//! FILE` moves the plugin to `host-local.real` and puts this binary in its
//! place, with a sidecar `host-local.record.json` naming the real plugin and
//! the output file. When the runtime calls `host-local`, this binary runs
//! the real plugin unchanged (same environment, stdin, stdout, stderr and
//! exit status) and appends the invocation to FILE in the recording format,
//! under a lock, so concurrent calls do not interleave. `record uninstall`
//! puts the plugin back.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize)]
pub struct Sidecar {
    pub real: PathBuf,
    pub out: PathBuf,
}

pub fn sidecar_path(plugin: &Path) -> PathBuf {
    let mut s = plugin.as_os_str().to_owned();
    s.push(".record.json");
    PathBuf::from(s)
}

fn real_path(plugin: &Path) -> PathBuf {
    let mut s = plugin.as_os_str().to_owned();
    s.push(".real");
    PathBuf::from(s)
}

pub fn install(plugin: &Path, out: &Path) -> Result<(), String> {
    let real = real_path(plugin);
    if real.exists() {
        return Err(format!(
            "{} exists: the recorder is already installed",
            real.display()
        ));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    std::fs::rename(plugin, &real)
        .map_err(|e| format!("cannot move {} aside: {e}", plugin.display()))?;
    let undo = |e: String| {
        let _ = std::fs::rename(&real, plugin);
        e
    };
    std::fs::copy(&me, plugin).map_err(|e| undo(format!("cannot install the recorder: {e}")))?;
    let sidecar = Sidecar {
        real: real.clone(),
        out: std::path::absolute(out).map_err(|e| undo(e.to_string()))?,
    };
    std::fs::write(
        sidecar_path(plugin),
        serde_json::to_vec_pretty(&sidecar).expect("serializes"),
    )
    .map_err(|e| undo(format!("cannot write the sidecar: {e}")))
}

pub fn uninstall(plugin: &Path) -> Result<(), String> {
    let real = real_path(plugin);
    if !real.exists() {
        return Err(format!(
            "{} does not exist: the recorder is not installed",
            real.display()
        ));
    }
    std::fs::rename(&real, plugin).map_err(|e| e.to_string())?;
    std::fs::remove_file(sidecar_path(plugin)).map_err(|e| e.to_string())
}

/// The sidecar, when this process was started under a plugin's name.
pub fn shim_for(argv0: &Path) -> Option<Sidecar> {
    if argv0.file_name().is_some_and(|n| n == "cni-conformance") {
        return None;
    }
    let text = std::fs::read(sidecar_path(argv0)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn as_json(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        return json!("");
    }
    serde_json::from_str(&text).unwrap_or(Value::String(text.into_owned()))
}

/// Runs the real plugin as the runtime asked and records the call. Returns
/// the real plugin's exit status.
pub fn run_shim(argv0: &Path, sidecar: &Sidecar) -> i32 {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let child = Command::new(&sidecar.real)
        .args(std::env::args_os().skip(1))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!(
            "cni-conformance recorder: cannot run {}",
            sidecar.real.display()
        );
        return 1;
    };
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(&stdin);
    }
    let Ok(out) = child.wait_with_output() else {
        return 1;
    };
    let _ = std::io::stdout().write_all(&out.stdout);
    let _ = std::io::stderr().write_all(&out.stderr);
    let exit = out.status.code().unwrap_or(1);
    let env: serde_json::Map<String, Value> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CNI_"))
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let record = json!({
        "plugin": argv0.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        "env": env,
        "stdin": as_json(&stdin),
        "stdout": as_json(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
        "exit": exit,
    });
    if let Err(e) = append(&sidecar.out, &record) {
        eprintln!(
            "cni-conformance recorder: cannot write {}: {e}",
            sidecar.out.display()
        );
    }
    exit
}

fn append(path: &Path, record: &Value) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    let mut line = record.to_string();
    line.push('\n');
    file.write_all(line.as_bytes())
}
