//! Which rule set applies to a plugin: IPAM, interface or chained (meta).
//!
//! `--kind` says it outright. Otherwise it is worked out from what the
//! plugin does, never from its name, and the report says which kind was
//! assumed and why:
//! - only an `ipam` object was given: IPAM;
//! - an ADD without a `prevResult` that reports an interface with a
//!   `sandbox`: interface;
//! - an ADD that returns addresses and no interfaces: IPAM;
//! - an ADD that fails without a `prevResult` and succeeds with one:
//!   chained.

use std::fmt;

use serde_json::Value;

use crate::host::Host;
use crate::netns::{self, Netns};
use crate::prev;
use crate::target::Target;
use cni::exec::Call;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PluginKind {
    /// Allocates addresses; called by another plugin with the whole config.
    Ipam,
    /// Creates or configures `CNI_IFNAME` in the container's namespace.
    Interface,
    /// Acts on a previous plugin's result in a chain (tuning, portmap...).
    Meta,
}

impl PluginKind {
    pub fn word(self) -> &'static str {
        match self {
            PluginKind::Ipam => "ipam",
            PluginKind::Interface => "interface",
            PluginKind::Meta => "meta",
        }
    }

    pub fn parse(s: &str) -> Option<PluginKind> {
        [PluginKind::Ipam, PluginKind::Interface, PluginKind::Meta]
            .into_iter()
            .find(|k| k.word() == s)
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// The kind, and the observation it rests on.
#[derive(Debug, Clone)]
pub struct Detected {
    pub kind: PluginKind,
    pub why: String,
}

fn has_sandbox_interface(result: &Value) -> bool {
    result["interfaces"]
        .as_array()
        .is_some_and(|l| l.iter().any(|i| i["sandbox"].is_string()))
}

/// Works out the kind of `target`, whose `config` is set, by running it
/// once as each kind would be run, at its newest version.
pub fn detect(target: &Target) -> Result<Detected, String> {
    if target.config.is_none() {
        if target.ipam.is_none() {
            return Err(
                "give the plugin's network config with --config FILE (or, for an IPAM \
                        plugin, its ipam object with --ipam-config FILE)"
                    .into(),
            );
        }
        return Ok(Detected {
            kind: PluginKind::Ipam,
            why: "only an ipam object was given (--ipam-config, --policy, or a known IPAM \
                  plugin's defaults)"
                .into(),
        });
    }
    if !netns::is_root() {
        return Err(
            "working out the plugin's kind needs network namespaces, so root: run as \
                    root, or give --kind"
                .into(),
        );
    }
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let host = Host::new(target, "probe-host", scratch.path())?;
    // Newest first: a plugin may claim a version its delegate lacks.
    let mut tried = Vec::new();
    for version in target.versions()?.iter().rev() {
        match probe(target, &host, version)? {
            Ok(found) => return Ok(found),
            Err(outcomes) => tried.push(format!("at {version}:\n{outcomes}")),
        }
    }
    Err(format!(
        "cannot tell the plugin's kind: give --kind ipam|interface|meta.\n{}",
        tried.join("\n")
    ))
}

/// One version's probes: the kind, or what the two ADDs printed.
fn probe(target: &Target, host: &Host, version: &str) -> Result<Result<Detected, String>, String> {
    let mut probe = target.clone();
    probe.plugin_kind = PluginKind::Interface;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let conf = probe.case_conf(version, false, &dir.path().join("data"));
    let run = |container: &Netns, conf: &Value| {
        let call = Call {
            netns: Some(container.path().display().to_string()),
            ..Call::attach("ADD", "kind-probe")
        };
        probe
            .run_in(&call, conf, Some(host.name()))
            .unwrap_or_else(cni::exec::Outcome::not_run)
    };
    let bare = Netns::new("probe-ctr")?;
    let first = run(&bare, &conf);
    if first.ok() {
        let result = first.parsed().unwrap_or_default();
        if has_sandbox_interface(&result) {
            return Ok(Ok(Detected {
                kind: PluginKind::Interface,
                why: "an ADD without a prevResult reported an interface with a sandbox".into(),
            }));
        }
        if result["ips"].as_array().is_some_and(|l| !l.is_empty())
            && result.get("interfaces").is_none()
        {
            return Ok(Ok(Detected {
                kind: PluginKind::Ipam,
                why: "an ADD returned addresses and no interfaces".into(),
            }));
        }
    }
    if !cni::version::at_least(version, "0.3.0") {
        return Ok(Err(format!(
            "ADD: {} {:?} (no prevResult before 0.3.0)",
            first.status(),
            first.stdout
        )));
    }
    let chained = Netns::new("probe-ctr")?;
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = prev::make(host, &chained, "eth0", 0, version)?;
    let second = run(&chained, &with_prev);
    if second.ok() {
        return Ok(Ok(Detected {
            kind: PluginKind::Meta,
            why: format!(
                "an ADD without a prevResult {}, and one with a prevResult succeeded",
                if first.ok() {
                    "reported no interface in the sandbox"
                } else {
                    "failed"
                }
            ),
        }));
    }
    Ok(Err(format!(
        "ADD without a prevResult: {} {:?} {:?}\nADD with a prevResult: {} {:?} {:?}",
        first.status(),
        first.stdout,
        first.stderr.trim(),
        second.status(),
        second.stdout,
        second.stderr.trim()
    )))
}
