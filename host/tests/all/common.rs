//! Helpers shared by the integration tests: the real binary, a network
//! config builder, and a peek into the store.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cni::exec::{self, Call, Outcome};
use serde_json::{Value, json};

pub fn plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_wasm-ipam"))
}

/// One compile cache for the whole test binary, so each test does not pay
/// for compiling the same policy again. Tests of the cache use their own.
pub fn shared_cache() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

pub fn test_policy(name: &str) -> PathBuf {
    Path::new(env!("WASM_IPAM_TEST_POLICIES")).join(format!("{name}.wasm"))
}

/// A network with its own data dir.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub conf: Value,
}

impl Net {
    /// host-local on `subnet`, config version `version`.
    pub fn host_local(version: &str, subnet: &str) -> Net {
        Net::with_ipam(
            version,
            json!({"policy": "host-local", "ranges": [[{"subnet": subnet}]]}),
        )
    }

    /// Any `ipam` object; type, dataDir and cacheDir are filled in.
    pub fn with_ipam(version: &str, mut ipam: Value) -> Net {
        let dir = tempfile::tempdir().unwrap();
        ipam["type"] = json!("wasm-ipam");
        ipam["dataDir"] = json!(dir.path().join("data"));
        if ipam.get("cacheDir").is_none() {
            ipam["cacheDir"] = json!(shared_cache());
        }
        Net {
            dir,
            conf: json!({"cniVersion": version, "name": "testnet", "type": "bridge", "ipam": ipam}),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn run(&self, call: &Call) -> Outcome {
        self.run_conf(call, &self.conf)
    }

    /// Runs `call` with `conf`, its log lines printed even when it
    /// succeeds (`WASM_IPAM_LOG`), for the tests that read them; a call
    /// that succeeds prints nothing by default, which
    /// `mistakes::a_call_that_succeeds_says_nothing_on_stderr` holds.
    pub fn run_conf(&self, call: &Call, conf: &Value) -> Outcome {
        let call = call.clone().env("WASM_IPAM_LOG", "1");
        exec::run(plugin(), &call, conf.to_string().as_bytes()).unwrap()
    }

    pub fn add(&self, id: &str) -> Outcome {
        self.run(&Call::attach("ADD", id))
    }

    /// The address of a successful ADD.
    pub fn add_ip(&self, id: &str) -> String {
        let out = self.add(id);
        assert!(out.ok(), "ADD {id} failed: {} {}", out.stdout, out.stderr);
        out.json()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every key and value in the store, of every network.
    /// Every key and value the policies wrote: the host's own record of
    /// each network is left out (see [`Net::record`]).
    pub fn store_dump(&self) -> Vec<(String, Vec<u8>)> {
        self.query("SELECT key, value FROM kv ORDER BY ns, key", None)
    }

    /// Every key and value of one network.
    pub fn store_dump_of(&self, network: &str) -> Vec<(String, Vec<u8>)> {
        self.query(
            "SELECT key, value FROM kv WHERE ns = ?1 ORDER BY key",
            Some(network),
        )
    }

    fn query(&self, sql: &str, network: Option<&str>) -> Vec<(String, Vec<u8>)> {
        let db = self.data_dir().join("wasm-ipam.db");
        if !db.exists() {
            return Vec::new();
        }
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let row = |r: &rusqlite::Row| {
            Ok((
                String::from_utf8_lossy(&r.get::<_, Vec<u8>>(0)?).into_owned(),
                r.get(1)?,
            ))
        };
        let rows: Vec<(String, Vec<u8>)> = match network {
            Some(n) => stmt
                .query_map([n], row)
                .unwrap()
                .map(Result::unwrap)
                .collect(),
            None => stmt
                .query_map([], row)
                .unwrap()
                .map(Result::unwrap)
                .collect(),
        };
        rows.into_iter()
            .filter(|(k, _)| !k.starts_with(wasm_ipam::netrecord::RESERVED_PREFIX))
            .collect()
    }

    /// The host's record of network `n`: its policy and config.
    pub fn record(&self) -> Option<serde_json::Value> {
        let db = self.data_dir().join("wasm-ipam.db");
        let conn = rusqlite::Connection::open(db).ok()?;
        let v: Vec<u8> = conn
            .query_row(
                "SELECT value FROM kv WHERE ns = ?1 AND key = CAST('.wasm-ipam/network' AS BLOB)",
                [self.conf["name"].as_str().unwrap()],
                |r| r.get(0),
            )
            .ok()?;
        serde_json::from_slice(&v).ok()
    }

    /// The addresses leased in the store.
    pub fn leased(&self) -> Vec<String> {
        self.store_dump()
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix("lease/").map(str::to_string))
            .collect()
    }
}

/// Spawns `cmd` with its stdin piped, writes `stdin` into it and closes it.
pub fn spawn_fed(cmd: &mut std::process::Command, stdin: &[u8]) -> std::process::Child {
    use std::io::Write;
    let mut child = cmd.stdin(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child
}

/// Runs the binary for `call` with `conf`, killed past `limit`: for a
/// test that must show a call ends, not how fast.
pub fn run_within(call: &Call, conf: &Value, limit: std::time::Duration) -> Outcome {
    let spawn = exec::Spawn {
        timeout: Some(limit),
        netns: None,
    };
    exec::run_with(plugin(), call, conf.to_string().as_bytes(), &spawn).unwrap()
}

/// Whether `path` is installed; a test without it is skipped, except in CI,
/// which must have installed the Debian `package`.
pub fn installed(path: &str, package: &str) -> bool {
    if std::path::Path::new(path).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{path} is missing in CI: install {package}"
    );
    eprintln!("skipped: {path} is not installed (apt-get install {package})");
    false
}

/// Asserts a CNI error with `code` whose message contains `needle`.
#[track_caller]
pub fn assert_error(out: &Outcome, code: u64, needle: &str) {
    assert!(
        !out.ok(),
        "expected code {code}, got success: {}",
        out.stdout
    );
    let v = out.json();
    assert_eq!(
        v["code"].as_u64(),
        Some(code),
        "stdout: {} stderr: {}",
        out.stdout,
        out.stderr
    );
    let msg = v["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
}

/// The address a `wasm-ipam metrics --listen` child says it serves on, from
/// its first line of output.
pub fn serving_address(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut first)
        .unwrap();
    first
        .trim()
        .strip_prefix("serving metrics on http://")
        .and_then(|a| a.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("not a serving line: {first:?}"))
        .to_string()
}

/// A plain HTTP/1.0 GET: the whole response, status line first.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

/// The compiled policies in a cache dir, sorted (not the lock files beside
/// them, which compiles take turns on).
pub fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
