//! One rule run against one version: its own data directory and network
//! name and, for plugins that act on namespaces, its own host namespace and
//! one container namespace per container id, all removed when the case
//! ends, pass or fail.
//!
//! A case cleans up as libcni does: every attachment it ADDed and did not
//! DEL gets its DEL when the case ends ([`Case::finish`]), with its result
//! as `prevResult`, in the reverse order of the ADDs. What still runs in
//! the case's namespaces after that (a daemon the plugin started and did
//! not stop) is killed, and named for the report.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::chain;
use crate::host::Host;
use crate::netns::Netns;
use crate::prev;
use crate::schema;
use crate::target::{PluginKind, Target, network_name};
use cni::exec::{Call, Outcome};

use super::Rule;

/// The namespaces of a case, made on first use.
#[derive(Default)]
struct Spaces {
    host: Option<Arc<Host>>,
    sandboxes: BTreeMap<String, Arc<Netns>>,
    /// Attachments the suite made itself, to number their links.
    made: usize,
    /// Paths of container namespaces deleted mid-case.
    deleted: Vec<std::path::PathBuf>,
}

impl Drop for Spaces {
    fn drop(&mut self) {
        // A plugin that opens a deleted namespace's path with O_CREAT (sbr
        // 1.1.1 locks it) leaves a plain file there, which `ip netns list`
        // would show for ever.
        for path in &self.deleted {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An attachment the case ADDed and has not DELeted: what its DEL sends.
struct Attached {
    call: Call,
    stdin: Value,
    result: Value,
}

pub struct Case<'a> {
    pub target: &'a Target,
    pub version: &'a str,
    pub rule: &'a Rule,
    /// The network name of the case's configs, when the config names none.
    pub network: String,
    dir: tempfile::TempDir,
    spaces: Mutex<Spaces>,
    attached: Mutex<Vec<Attached>>,
    finished: Mutex<bool>,
}

thread_local! {
    /// The last step of this thread that failed, for a report that shows
    /// what came back as JSON rather than as text (`--format json`).
    static LAST_FAILURE: RefCell<Option<Value>> = const { RefCell::new(None) };
}

/// Takes the last step this thread saw fail (see [`Step::fail`]).
pub fn take_last_failure() -> Option<Value> {
    LAST_FAILURE.with(|f| f.borrow_mut().take())
}

/// An invocation and what it returned, for failure messages.
pub struct Step {
    pub call: Call,
    pub stdin: Value,
    pub out: Outcome,
}

/// Whether `v` is an error object rather than a result: a code and a
/// message, and none of a result's keys.
fn is_error_object(v: &Value) -> bool {
    v["code"].is_u64()
        && v["msg"].is_string()
        && ["ips", "interfaces", "ip4", "ip6", "routes", "dns"]
            .iter()
            .all(|k| v.get(k).is_none())
}

impl Step {
    /// The failure text: the invocation, what was expected, and what came
    /// back: how the plugin ended (its exit status or signal, and whether
    /// that was a crash), which plugin of a chain answered, its stdout and
    /// the end of its stderr.
    pub fn fail(&self, expected: &str) -> String {
        let env: Vec<String> = self
            .call
            .vars()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let from = self
            .out
            .origin
            .as_ref()
            .map(|o| format!(" from {o}"))
            .unwrap_or_default();
        LAST_FAILURE.with(|f| *f.borrow_mut() = Some(self.answer(expected)));
        format!(
            "invocation: {}\nstdin: {}\nexpected: {expected}\ngot{from}: {}, stdout {:?}, stderr {:?}",
            env.join(" "),
            self.stdin,
            self.out.status(),
            self.out.stdout,
            self.out.stderr_tail()
        )
    }

    /// What came back, as JSON: the invocation, the status, stdout (parsed
    /// when it is JSON) and the end of stderr.
    pub fn answer(&self, expected: &str) -> Value {
        let vars: serde_json::Map<String, Value> = self
            .call
            .vars()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        json!({
            "invocation": vars,
            "stdin": self.stdin,
            "expected": expected,
            "plugin": self.out.origin,
            "status": self.out.status(),
            "exit": self.out.code,
            "signal": self.out.signal,
            "crash": self.out.crash(),
            "timedOut": self.out.timed_out,
            "stdout": self.out.parsed().unwrap_or_else(|_| Value::String(self.out.stdout.clone())),
            "stderrTail": self.out.stderr_tail(),
        })
    }

    /// A success that printed an error object: the plugin failed and
    /// exited 0, breaking "A plugin must exit with a return code of 0 on
    /// success, and non-zero on failure."
    fn exited_0_with_an_error(&self, expected: &str) -> Option<String> {
        let v = self.out.parsed().ok()?;
        is_error_object(&v).then(|| {
            super::tagged(
                "spec/errors.exit-code",
                self.fail(&format!(
                    "{expected}; it printed an error object and exited 0, but a plugin that \
                     fails must exit non-zero"
                )),
            )
        })
    }

    /// The success result, checked against the version's schema.
    pub fn result(&self, version: &str) -> Result<Value, String> {
        if !self.out.ok() {
            return Err(self.fail("success"));
        }
        if let Some(e) = self.exited_0_with_an_error("success") {
            return Err(e);
        }
        let v = self
            .out
            .parsed()
            .map_err(|e| self.fail(&format!("a JSON result ({e})")))?;
        let problems = schema::result_problems(&v, version);
        if problems.is_empty() {
            Ok(v)
        } else {
            Err(self.fail(&format!(
                "a valid {version} result; problems: {}",
                problems.join("; ")
            )))
        }
    }

    /// Success with nothing printed (DEL, CHECK, GC, STATUS).
    pub fn quiet_success(&self) -> Result<(), String> {
        if let Some(e) = self
            .out
            .ok()
            .then(|| self.exited_0_with_an_error("exit 0 and no output"))
            .flatten()
        {
            return Err(e);
        }
        if self.out.ok() && self.out.stdout.trim().is_empty() {
            Ok(())
        } else {
            Err(self.fail("exit 0 and no output"))
        }
    }

    /// A failure with the error on stdout, with one of `codes` if given.
    pub fn error(&self, codes: &[u64]) -> Result<u64, String> {
        let want = if codes.is_empty() {
            "an error object on stdout and a non-zero exit".to_string()
        } else {
            format!("an error with code {codes:?} on stdout and a non-zero exit")
        };
        if self.out.ok() {
            return Err(self
                .exited_0_with_an_error(&want)
                .unwrap_or_else(|| self.fail(&want)));
        }
        if self.out.stdout.trim().is_empty() {
            return Err(self.fail(&format!(
                "{want}; stdout was empty (errors belong on stdout, stderr is for logs)"
            )));
        }
        let v = self
            .out
            .parsed()
            .map_err(|e| self.fail(&format!("{want} ({e})")))?;
        let problems = schema::error_problems(&v);
        if !problems.is_empty() {
            return Err(self.fail(&format!("{want}; {}", problems.join("; "))));
        }
        let code = v["code"].as_u64().unwrap_or_default();
        if !codes.is_empty() && !codes.contains(&code) {
            return Err(self.fail(&want));
        }
        Ok(code)
    }
}

impl<'a> Case<'a> {
    pub fn new(target: &'a Target, version: &'a str, rule: &'a Rule) -> Case<'a> {
        Case {
            target,
            version,
            rule,
            network: network_name(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            spaces: Mutex::default(),
            attached: Mutex::default(),
            finished: Mutex::new(false),
        }
    }

    /// Whether the plugin acts on namespaces (interface and chained
    /// plugins); IPAM plugins get a `CNI_NETNS` path only.
    pub fn namespaced(&self) -> bool {
        self.target.plugin_kind != PluginKind::Ipam
    }

    pub fn conf(&self) -> Value {
        crate::kind::settle_data_dir(self.target, self.version);
        self.target.case_conf(
            self.version,
            false,
            &self.dir.path().join("data"),
            &self.network,
        )
    }

    pub fn small_conf(&self) -> Value {
        crate::kind::settle_data_dir(self.target, self.version);
        self.target.case_conf(
            self.version,
            true,
            &self.dir.path().join("data"),
            &self.network,
        )
    }

    /// The case's host namespace, with the `--host-link` links and the
    /// `--host-daemon` commands in it.
    pub fn host(&self) -> Result<Arc<Host>, String> {
        let mut spaces = self.spaces.lock().expect("case namespaces");
        if let Some(h) = &spaces.host {
            return Ok(h.clone());
        }
        let host = Arc::new(Host::new(self.target, "host", &self.scratch("host")?)?);
        spaces.host = Some(host.clone());
        Ok(host)
    }

    /// The container namespace of `id`, made on first use.
    pub fn sandbox(&self, id: &str) -> Result<Arc<Netns>, String> {
        let mut spaces = self.spaces.lock().expect("case namespaces");
        if let Some(ns) = spaces.sandboxes.get(id) {
            return Ok(ns.clone());
        }
        let ns = Arc::new(Netns::new("ctr")?);
        spaces.sandboxes.insert(id.to_string(), ns.clone());
        Ok(ns)
    }

    /// Deletes the container namespace of `id`, as a runtime does when a
    /// pod is gone; its path stays in later calls.
    pub fn delete_sandbox(&self, id: &str) -> Result<String, String> {
        let ns = self.sandbox(id)?;
        let path = ns.path();
        let mut spaces = self.spaces.lock().expect("case namespaces");
        spaces.sandboxes.remove(id);
        spaces.deleted.push(path.clone());
        drop(ns);
        Ok(path.display().to_string())
    }

    /// `command` for container `id` on `eth0`, with its namespace.
    pub fn call(&self, command: &str, id: &str) -> Result<Call, String> {
        let mut call = Call::attach(command, id);
        if self.namespaced() {
            call.netns = Some(self.sandbox(id)?.path().display().to_string());
        }
        Ok(call)
    }

    pub fn run(&self, call: Call, stdin: &Value) -> Step {
        let host = if self.namespaced() {
            match self.host() {
                Ok(h) => Some(h),
                Err(e) => {
                    return Step {
                        call,
                        stdin: stdin.clone(),
                        out: Outcome::not_run(e),
                    };
                }
            }
        } else {
            None
        };
        let out = chain::run(self.target, &call, stdin, host.as_deref().map(|h| h.name()))
            .unwrap_or_else(Outcome::not_run);
        self.track(&call, stdin, &out);
        Step {
            call,
            stdin: stdin.clone(),
            out,
        }
    }

    /// Keeps the attachments that need a DEL when the case ends.
    fn track(&self, call: &Call, stdin: &Value, out: &Outcome) {
        let same =
            |a: &Attached| a.call.container_id == call.container_id && a.call.ifname == call.ifname;
        let mut attached = self.attached.lock().expect("attachments");
        match call.command.as_str() {
            "ADD" if out.ok() => {
                if let Ok(result) = out
                    .parsed()
                    .map(|r| if r.is_object() { r } else { json!({}) })
                {
                    attached.retain(|a| !same(a));
                    attached.push(Attached {
                        call: call.clone(),
                        stdin: stdin.clone(),
                        result,
                    });
                }
            }
            // libcni's DEL carries the cached result: a DEL without one
            // (a rule's) still gets the cleanup's, as a runtime would send.
            "DEL" if out.ok() && stdin.get("prevResult").is_some() => attached.retain(|a| !same(a)),
            _ => {}
        }
    }

    /// Ends the case as a runtime ends its pods: the DEL of every
    /// attachment still added, newest first, with its result as
    /// `prevResult`. Then what still runs in the case's namespaces is
    /// killed: each such process, with its command line, is returned.
    pub fn finish(&self) -> Vec<String> {
        {
            let mut finished = self.finished.lock().expect("finished");
            if *finished {
                return Vec::new();
            }
            *finished = true;
        }
        let attached: Vec<Attached> =
            std::mem::take(&mut *self.attached.lock().expect("attachments"));
        for a in attached.into_iter().rev() {
            let mut stdin = a.stdin;
            if stdin.is_object() {
                stdin["prevResult"] = a.result;
            }
            let del = Call {
                command: "DEL".into(),
                ..a.call
            };
            let _ = self.run(del, &stdin);
        }
        let spaces = self.spaces.lock().expect("case namespaces");
        let mut left: Vec<(u32, String)> = spaces
            .host
            .as_ref()
            .map(|h| h.leftovers())
            .unwrap_or_default();
        for ns in spaces.sandboxes.values() {
            left.extend(crate::netns::processes(ns.name()));
        }
        left.into_iter()
            .map(|(pid, cmdline)| {
                crate::netns::kill(pid);
                format!("pid {pid}: {cmdline}")
            })
            .collect()
    }

    /// `conf` as ADD sends it for `id`: for a chained plugin, with a
    /// `prevResult` for an attachment the suite made in `id`'s namespace.
    pub fn add_conf(&self, id: &str, conf: &Value) -> Result<Value, String> {
        if self.target.plugin_kind != PluginKind::Meta || conf.get("prevResult").is_some() {
            return Ok(conf.clone());
        }
        let host = self.host()?;
        let sandbox = self.sandbox(id)?;
        let n = {
            let mut spaces = self.spaces.lock().expect("case namespaces");
            spaces.made += 1;
            spaces.made
        };
        let prev = prev::make(&host, &sandbox, "eth0", n, self.version)?;
        Ok(self.with_prev(conf, &prev))
    }

    /// ADD for `id`, as a step.
    pub fn add_step(&self, id: &str, conf: &Value) -> Result<Step, String> {
        let conf = self.add_conf(id, conf)?;
        Ok(self.run(self.call("ADD", id)?, &conf))
    }

    /// ADD for `id`, which must succeed with a valid result.
    pub fn add(&self, id: &str, conf: &Value) -> Result<Value, String> {
        self.add_step(id, conf)?.result(self.version)
    }

    /// DEL for `id` with `prev` as its `prevResult`; it must succeed quietly.
    pub fn del(&self, id: &str, conf: &Value, prev: &Value) -> Result<(), String> {
        self.run(self.call("DEL", id)?, &self.with_prev(conf, prev))
            .quiet_success()
    }

    /// A folder of this case's own, for files a rule writes.
    pub fn scratch(&self, name: &str) -> Result<std::path::PathBuf, String> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// `conf` with `prevResult` set, for CHECK and DEL.
    pub fn with_prev(&self, conf: &Value, prev: &Value) -> Value {
        let mut c = conf.clone();
        c["prevResult"] = prev.clone();
        c
    }
}

impl Drop for Case<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}
