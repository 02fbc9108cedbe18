//! Calling a CNI plugin the way a runtime does: a fresh process with the
//! `CNI_*` environment and the config on stdin. The demo and the tests
//! drive the real binary through this, never through the library.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One call's environment.
#[derive(Debug, Clone, Default)]
pub struct Call {
    pub command: String,
    pub container_id: Option<String>,
    pub ifname: Option<String>,
    pub netns: Option<String>,
    pub args: Option<String>,
    /// Further variables, such as `WASM_IPAM_NOW`.
    pub extra: Vec<(String, String)>,
}

impl Call {
    pub fn new(command: &str) -> Call {
        Call {
            command: command.into(),
            ..Call::default()
        }
    }

    /// ADD, DEL or CHECK for `container_id` on `eth0`, with a netns.
    pub fn attach(command: &str, container_id: &str) -> Call {
        Call {
            command: command.into(),
            container_id: Some(container_id.into()),
            ifname: Some("eth0".into()),
            netns: Some(format!("/var/run/netns/{container_id}")),
            ..Call::default()
        }
    }

    pub fn ifname(mut self, ifname: &str) -> Call {
        self.ifname = Some(ifname.into());
        self
    }

    pub fn args(mut self, args: &str) -> Call {
        self.args = Some(args.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Call {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// The variables, in the order a person would write them.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut v = vec![("CNI_COMMAND".to_string(), self.command.clone())];
        for (k, val) in [
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_NETNS", &self.netns),
            ("CNI_ARGS", &self.args),
        ] {
            if let Some(val) = val {
                v.push((k.to_string(), val.clone()));
            }
        }
        v.extend(self.extra.iter().cloned());
        v
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout as JSON: `Null` when empty, an error when it is not JSON.
    pub fn parsed(&self) -> Result<serde_json::Value, String> {
        if self.stdout.trim().is_empty() {
            Ok(serde_json::Value::Null)
        } else {
            serde_json::from_str(&self.stdout)
                .map_err(|e| format!("stdout is not JSON ({e}): {:?}", self.stdout))
        }
    }

    /// stdout as JSON (`Null` when empty); panics when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        if self.stdout.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
        }
    }

    /// The CNI error code on stdout, if it is an error.
    pub fn error_code(&self) -> Option<u64> {
        (!self.ok()).then(|| self.json()["code"].as_u64()).flatten()
    }
}

/// Runs `plugin` with a clean environment (only `PATH` is kept, as runtimes
/// do not pass theirs through either) plus `call`'s variables.
pub fn run(plugin: &Path, call: &Call, stdin: &[u8]) -> std::io::Result<Outcome> {
    let start = Instant::now();
    let mut cmd = Command::new(plugin);
    cmd.env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH".to_string(), p)))
        .envs(call.vars())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut input = child.stdin.take().expect("stdin is piped");
    let writer = {
        let stdin = stdin.to_vec();
        std::thread::spawn(move || {
            // A plugin may exit without reading (VERSION); that is not ours
            // to report.
            let _ = input.write_all(&stdin);
        })
    };
    let out = child.wait_with_output()?;
    let _ = writer.join();
    Ok(Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
        elapsed: start.elapsed(),
    })
}
