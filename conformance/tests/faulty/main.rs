//! A small, correct CNI plugin with one fault switched on, for the suite's
//! tests of itself: every fault must be caught by the rule it breaks, at
//! that rule's level, and the plugin without a fault must pass. It is an
//! IPAM plugin (the fault in `ipam.fault`; see [`ipam`]), or with
//! `"mode": "interface"` or `"mode": "meta"` an interface or chained plugin
//! (the fault in `fault`; see [`interface`]).
//!
//! Faults of a bad plugin of any mode, on ADD:
//! - `hang`: never finishes;
//! - `crash`: aborts;
//! - `garbage`: prints something that is not JSON and exits 0;
//! - `flood`: prints without end;
//! - `leaves-netns`: makes a network namespace of its own and leaves it.
//!
//! And of any command: `errors-exit-0` prints each error object, but exits
//! 0, as if it had succeeded.
//!
//! Run as `faulty-version-echo` (a link to this binary), VERSION answers
//! 1.0.0 whatever version it was asked in.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use cni::env::valid_id;
use cni::version::{VERSIONS, at_least};
use serde_json::{Value, json};

mod interface;
mod ipam;

struct Fail(u32, String);

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The file name this binary was run as.
fn called_as() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// The `CNI_ARGS` pairs.
fn cni_args() -> Vec<(String, String)> {
    env("CNI_ARGS")
        .unwrap_or_default()
        .split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The environment of an attachment call, and CNI_ARGS; the container id
/// and ifname (empty for GC and STATUS). `fault` may name the variables
/// vaguely, or let an overlong ifname through.
fn check_env(cmd: &str, fault: &str) -> Result<(String, String), Fail> {
    let named = |var: &str, what: &str| {
        if fault == "vague-env" {
            Fail(4, "the environment is not right".into())
        } else {
            Fail(4, format!("{what} {var}"))
        }
    };
    let attach = matches!(cmd, "ADD" | "DEL" | "CHECK");
    let ids = if attach {
        let id = env("CNI_CONTAINERID")
            .filter(|i| valid_id(i))
            .ok_or(named("CNI_CONTAINERID", "bad"))?;
        let long_ok = fault == "truncates-ifname";
        let mut ifname = env("CNI_IFNAME")
            .filter(|i| (long_ok || i.len() <= 15) && !i.contains(['/', ':']))
            .ok_or(named("CNI_IFNAME", "bad"))?;
        ifname.truncate(15);
        if cmd != "DEL" && env("CNI_NETNS").is_none() {
            return Err(named("CNI_NETNS", "missing"));
        }
        (id, ifname)
    } else {
        Default::default()
    };
    let pairs = cni_args();
    let ignore_unknown = pairs
        .iter()
        .any(|(k, v)| k == "IgnoreUnknown" && (v == "1" || v == "true"));
    if let Some((k, v)) = pairs
        .iter()
        .find(|(k, _)| !ignore_unknown && k != "IgnoreUnknown" && k != "IP")
    {
        return Err(Fail(
            2,
            if fault == "vague-args" {
                "unsupported CNI_ARGS".into()
            } else {
                format!("unsupported CNI_ARGS key {k}={v}")
            },
        ));
    }
    Ok(ids)
}

/// The faults of a plugin that misbehaves outright.
fn bad_plugin(fault: &str) -> Result<(), Fail> {
    match fault {
        "hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        "crash" => std::process::abort(),
        "garbage" => {
            print!("this is not JSON");
            std::process::exit(0);
        }
        "flood" => {
            let line = [b'x'; 4096];
            let mut out = std::io::stdout().lock();
            while std::io::Write::write_all(&mut out, &line).is_ok() {}
            std::process::exit(0);
        }
        "leaves-netns" => {
            let name = format!("faulty-left-{}", std::process::id());
            std::process::Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .map_err(|e| Fail(5, e.to_string()))?;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn run(stdin: &[u8]) -> Result<Option<Value>, Fail> {
    let conf: Option<Value> = serde_json::from_slice(stdin).ok();
    let fault_of = |c: &Value| {
        c["ipam"]["fault"]
            .as_str()
            .or(c["fault"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let early_fault = conf.as_ref().map(fault_of).unwrap_or_default();
    let vague = early_fault == "vague-env";
    let cmd = env("CNI_COMMAND").ok_or_else(|| {
        Fail(
            4,
            if vague {
                "the environment is not right".into()
            } else {
                "CNI_COMMAND missing".into()
            },
        )
    })?;
    if cmd == "VERSION" {
        let asked = conf
            .as_ref()
            .and_then(|c| c["cniVersion"].as_str().map(str::to_string))
            .unwrap_or_else(|| "1.1.0".into());
        let printed = if called_as() == "faulty-version-echo" {
            "1.0.0".to_string()
        } else {
            asked
        };
        return Ok(Some(
            json!({"cniVersion": printed, "supportedVersions": VERSIONS}),
        ));
    }
    if !["ADD", "DEL", "CHECK", "GC", "STATUS"].contains(&cmd.as_str()) {
        return Err(if vague {
            Fail(4, "the environment is not right".into())
        } else {
            Fail(4, format!("unknown CNI_COMMAND {cmd}"))
        });
    }
    let conf = conf.ok_or(Fail(6, "stdin is not JSON".into()))?;
    let version = conf["cniVersion"].as_str().unwrap_or("0.1.0").to_string();
    if !VERSIONS.contains(&version.as_str()) {
        return Err(Fail(1, format!("unsupported version {version}")));
    }
    if conf.get("mode").is_some_and(|m| !m.is_string()) {
        return Err(Fail(
            7,
            format!("mode must be a string, not {}", conf["mode"]),
        ));
    }
    // Called as `faulty-ipam` (a link to this binary), it is the IPAM
    // plugin of an interface-mode faulty plugin, whatever the config says.
    let mode = if called_as() == "faulty-ipam" {
        "ipam"
    } else {
        conf["mode"].as_str().unwrap_or("ipam")
    };
    let fault = match mode {
        "ipam" => conf["ipam"]["fault"].as_str(),
        _ => conf["fault"].as_str(),
    }
    .unwrap_or("");
    if cmd == "ADD" {
        bad_plugin(fault)?;
    }
    if cmd == "CHECK" && !at_least(&version, "0.4.0") && fault != "check-below-040" {
        return Err(Fail(1, "CHECK needs 0.4.0".into()));
    }
    if matches!(cmd.as_str(), "GC" | "STATUS") && !at_least(&version, "1.1.0") {
        return Err(Fail(1, format!("{cmd} needs 1.1.0")));
    }
    let ids = check_env(&cmd, fault)?;
    if mode == "ipam" {
        ipam::run(&cmd, &conf, &version, fault, ids)
    } else {
        interface::run(&cmd, &conf, &version, stdin, ids)
    }
}

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    // `FAULTY_LOG`: a file each call appends its command to, so a test can
    // see which calls the suite made.
    if let Some(log) = env("FAULTY_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(
                f,
                "{} {}",
                env("CNI_COMMAND").unwrap_or_default(),
                env("CNI_CONTAINERID").unwrap_or_default()
            );
        }
    }
    // Read the fault before anything can fail, so that it covers every error.
    let fault = serde_json::from_slice::<Value>(&stdin)
        .map(|c| {
            c["ipam"]["fault"]
                .as_str()
                .or(c["fault"].as_str())
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let stderr_errors = fault == "stderr-errors";
    match run(&stdin) {
        Ok(Some(v)) => {
            print!("{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            if stderr_errors {
                eprintln!("error {code}: {msg}");
            } else {
                print!(
                    "{}",
                    json!({"cniVersion": "1.1.0", "code": code, "msg": msg})
                );
            }
            if fault == "errors-exit-0" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
