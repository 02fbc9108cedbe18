//! What the suite works out by running the plugin before the rules run:
//! which rule set applies (IPAM, interface or chained), and whether the
//! plugin takes the `dataDir` the suite gives each case.
//!
//! `--kind` says the kind outright. Otherwise it is worked out from what
//! the plugin does, never from its name, and the report says which kind was
//! assumed and why:
//! - only an `ipam` object was given: IPAM;
//! - an ADD without a `prevResult` that reports an interface with a
//!   `sandbox`: interface;
//! - an ADD that returns addresses and no interfaces: IPAM;
//! - an ADD that fails without a `prevResult` and succeeds with one:
//!   chained.
//!
//! A probe cleans up as a runtime would: every ADD that succeeded gets its
//! DEL, each version is tried in namespaces of its own (so a retry never
//! meets the links of the last), and they are removed, with whatever the
//! plugin left running in them, before the next. When the kind cannot be
//! told, the error shows what the plugin answered at each version.

use serde_json::{Value, json};

use crate::chain;
use crate::host::Host;
use crate::netns::Netns;
use crate::prev;
use crate::target::{DataDir, PluginKind, Target, network_name};
use cni::exec::{Call, Outcome};

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

/// Works out the kind of `target` by running it once as each kind would be
/// run, newest of `versions` first.
pub fn detect(target: &Target, versions: &[String]) -> Result<Detected, String> {
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
    if !crate::netns::is_root() {
        return Err(
            "working out the plugin's kind needs network namespaces, so root: run as \
                    root, or give --kind"
                .into(),
        );
    }
    // Newest first: a plugin may claim a version its delegate lacks.
    let mut tried = Vec::new();
    for version in versions.iter().rev() {
        match probe(target, version)? {
            Ok(found) => return Ok(found),
            Err(answers) => tried.push(format!("at {version}:\n{answers}")),
        }
    }
    Err(format!(
        "cannot tell the plugin's kind from what it answered; give --kind ipam|interface|meta.\n{}",
        tried.join("\n")
    ))
}

/// What a probe's call came back with, for the error that says why the
/// kind could not be told.
fn answered(what: &str, out: &Outcome) -> String {
    format!(
        "  {what}: {}{}, stdout {:?}, stderr {:?}",
        out.status(),
        out.origin
            .as_ref()
            .map(|o| format!(" from {o}"))
            .unwrap_or_default(),
        out.stdout.trim(),
        out.stderr_tail()
    )
}

/// One version's probes, each in namespaces of their own: the kind, or
/// what the ADDs answered.
fn probe(target: &Target, version: &str) -> Result<Result<Detected, String>, String> {
    let mut probe = target.clone();
    probe.plugin_kind = PluginKind::Interface;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let network = network_name();
    let conf = probe.case_conf(version, false, &scratch.path().join("data"), &network);
    let bare = {
        let host = Host::new(target, "probe-host", scratch.path())?;
        let container = Netns::new("probe-ctr")?;
        let (out, result) = add_then_del(&probe, &host, &container, &conf);
        if let Some(result) = result {
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
        out
    };
    if !cni::version::at_least(version, "0.3.0") {
        return Ok(Err(format!(
            "{} (no prevResult before 0.3.0)",
            answered("ADD", &bare)
        )));
    }
    let host = Host::new(target, "probe-host", scratch.path())?;
    let container = Netns::new("probe-ctr")?;
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = prev::make(&host, &container, "eth0", 0, version)?;
    let (chained, result) = add_then_del(&probe, &host, &container, &with_prev);
    if result.is_some() {
        return Ok(Ok(Detected {
            kind: PluginKind::Meta,
            why: format!(
                "an ADD without a prevResult {}, and one with a prevResult succeeded",
                if bare.ok() {
                    "reported no interface in the sandbox"
                } else {
                    "failed"
                }
            ),
        }));
    }
    Ok(Err(format!(
        "{}\n{}",
        answered("ADD without a prevResult", &bare),
        answered("ADD with a prevResult", &chained)
    )))
}

/// ADD in `container`, and when it succeeded its DEL, as a runtime would:
/// the ADD's outcome, and its result when it succeeded.
fn add_then_del(
    target: &Target,
    host: &Host,
    container: &Netns,
    conf: &Value,
) -> (Outcome, Option<Value>) {
    let call = Call {
        netns: Some(container.path().display().to_string()),
        ..Call::attach("ADD", "kind-probe")
    };
    let out = chain::run(target, &call, conf, Some(host.name())).unwrap_or_else(Outcome::not_run);
    let result = out.ok().then(|| out.parsed().ok()).flatten();
    if let Some(result) = &result {
        let mut del_conf = conf.clone();
        del_conf["prevResult"] = result.clone();
        let del = Call {
            command: "DEL".into(),
            ..call
        };
        let _ = chain::run(target, &del, &del_conf, Some(host.name()));
    }
    (out, result)
}

/// Settles, once, whether an IPAM plugin takes the `dataDir` the suite
/// adds: an ADD that fails naming `dataDir` and succeeds without it means
/// it refuses the field, which the spec allows, and then cases go without.
/// Called when the first case needs a config, so a listing or a run of
/// rules that send none never ADDs; every ADD of the probe gets its DEL.
pub fn settle_data_dir(target: &Target, version: &str) {
    target.data_dir.get_or_init(|| {
        let note = (target.plugin_kind == PluginKind::Ipam && target.ipam.is_some())
            .then(|| probe_data_dir(target, version))
            .flatten();
        DataDir {
            given: note.is_none(),
            note,
        }
    });
}

fn probe_data_dir(target: &Target, version: &str) -> Option<String> {
    let dir = tempfile::tempdir().ok()?;
    let data = dir.path().join("data");
    let call = Call::attach("ADD", "cnict-data-dir-probe");
    let try_add = |with: bool| {
        let mut conf = target.case_conf(version, false, &data, &network_name());
        if !with && let Some(ipam) = conf["ipam"].as_object_mut() {
            ipam.remove("dataDir");
        }
        let out = chain::run(target, &call, &conf, None).ok()?;
        if out.ok() {
            conf["prevResult"] = out.parsed().unwrap_or(json!({}));
            let del = Call {
                command: "DEL".into(),
                ..call.clone()
            };
            let _ = chain::run(target, &del, &conf, None);
        }
        Some(out)
    };
    let first = try_add(true)?;
    let said = format!("{} {}", first.stdout, first.stderr).to_ascii_lowercase();
    if first.ok() || !said.contains("datadir") || !try_add(false)?.ok() {
        return None;
    }
    Some(format!(
        "the plugin refuses the ipam.dataDir the suite adds for fresh state (\"{}\"), which the \
         spec allows (spec/config.unknown-fields); the suite leaves it out, so cases share the \
         plugin's own state",
        first.stdout.trim()
    ))
}
