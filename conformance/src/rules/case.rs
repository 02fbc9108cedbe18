//! One rule run against one version: its own data directory and, for
//! plugins that act on namespaces, its own host namespace and one container
//! namespace per container id, all removed when the case ends, pass or
//! fail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::host::Host;
use crate::kind::PluginKind;
use crate::netns::Netns;
use crate::prev;
use crate::schema;
use crate::target::Target;
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

pub struct Case<'a> {
    pub target: &'a Target,
    pub version: &'a str,
    pub rule: &'a Rule,
    dir: tempfile::TempDir,
    spaces: Mutex<Spaces>,
}

/// An invocation and what it returned, for failure messages.
pub struct Step {
    pub call: Call,
    pub stdin: Value,
    pub out: Outcome,
}

impl Step {
    pub fn fail(&self, expected: &str) -> String {
        let env: Vec<String> = self
            .call
            .vars()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "invocation: {}\nstdin: {}\nexpected: {expected}\ngot: {}, stdout {:?}, stderr {:?}",
            env.join(" "),
            self.stdin,
            self.out.status(),
            self.out.stdout,
            self.out.stderr.trim()
        )
    }

    /// The success result, checked against the version's schema.
    pub fn result(&self, version: &str) -> Result<Value, String> {
        if !self.out.ok() {
            return Err(self.fail("success"));
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
            return Err(self.fail(&want));
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
            dir: tempfile::tempdir().expect("a temporary directory"),
            spaces: Mutex::default(),
        }
    }

    /// Whether the plugin acts on namespaces (interface and chained
    /// plugins); IPAM plugins get a `CNI_NETNS` path only.
    pub fn namespaced(&self) -> bool {
        self.target.plugin_kind != PluginKind::Ipam
    }

    pub fn conf(&self) -> Value {
        self.target
            .case_conf(self.version, false, &self.dir.path().join("data"))
    }

    pub fn small_conf(&self) -> Value {
        self.target
            .case_conf(self.version, true, &self.dir.path().join("data"))
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
        let out = self
            .target
            .run_in(&call, stdin, host.as_deref().map(|h| h.name()))
            .unwrap_or_else(Outcome::not_run);
        Step {
            call,
            stdin: stdin.clone(),
            out,
        }
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
