//! `cni-conformance`: run the suite against a plugin, or record what a
//! runtime sends one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use cni_conformance::chain::{self, Versions};
use cni_conformance::expectations::Expectations;
use cni_conformance::kind::{self, Detected};
use cni_conformance::netns;
use cni_conformance::recordings::Mode;
use cni_conformance::report::{self, Counts, Results};
use cni_conformance::suite::Suite;
use cni_conformance::target::{PluginKind, Target};
use cni_conformance::{json, record, target};
use libtest_mimic::FormatSetting;
use serde_json::Value;

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Exact,
    Spec,
    Both,
}

/// Check a CNI plugin against the spec and against recorded runtime traffic.
///
/// Give the plugin with --plugin (any CNI plugin binary: IPAM, interface or
/// chained), --policy (a wasm-ipam policy: a built-in name or a .wasm file,
/// run through the wasm-ipam binary) or --conflist (a whole chain, run as
/// libcni runs it). Interface and chained plugins run in network
/// namespaces the suite makes and removes, so they need root. The usual
/// test-harness options (a filter, --list, --exact, --format json,
/// --test-threads) work as with cargo test.
#[derive(Parser)]
#[command(
    name = "cni-conformance",
    version,
    help_template = "{about-with-newline}\n{usage-heading} {usage}\n\n{all-args}"
)]
struct Cli {
    /// A CNI plugin binary to test.
    #[arg(long, conflicts_with_all = ["policy", "conflist"])]
    plugin: Option<PathBuf>,
    /// The plugin's network config (JSON): its type, its own fields and its
    /// ipam when it delegates. The suite fills in name and cniVersion.
    #[arg(long, conflicts_with = "conflist")]
    config: Option<PathBuf>,
    /// The same plugin with a delegated pool of a few addresses, for the
    /// leak and exhaustion rules; without it they are skipped.
    #[arg(long)]
    small_config: Option<PathBuf>,
    /// A network configuration list (JSON) to test as a whole chain.
    #[arg(long, conflicts_with = "policy")]
    conflist: Option<PathBuf>,
    /// Where delegated plugins (and a conflist's plugins) are found.
    /// Repeatable. By default the plugin's own folder; for a conflist,
    /// CNI_PATH or /opt/cni/bin.
    #[arg(long = "cni-path", value_name = "DIR")]
    cni_path: Vec<PathBuf>,
    /// Which rules apply; by default worked out from the plugin's behaviour.
    #[arg(long, value_parser = ["ipam", "interface", "meta"])]
    kind: Option<String>,
    /// One call's limit: a plugin still running then is killed, and the
    /// case fails naming the call.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// A link to make in each case's host namespace, such as the master a
    /// macvlan config names or the device of host-device: a veth, its peer
    /// NAMEp beside it. Repeatable.
    #[arg(long = "host-link", value_name = "NAME")]
    host_link: Vec<String>,
    /// A command (sh -c) to start in each case's host namespace once its
    /// links are made, such as a DHCP server on a --host-link's peer; the
    /// case starts once it prints a line, and it is killed when the case
    /// ends. CNICT_SCRATCH names a folder of the case's own. Repeatable.
    #[arg(long = "host-daemon", value_name = "COMMAND")]
    host_daemon: Vec<String>,
    /// A variable (KEY=VALUE) every call gets beside the CNI_* ones, as a
    /// runtime passes its own environment on to its plugins. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Fail the run on failed should and convention rules too, not only on
    /// must rules.
    #[arg(long)]
    strict: bool,
    /// Print, for every statement of SPEC.md and CONVENTIONS.md (1.1.0)
    /// that binds a plugin with MUST or SHOULD, whether the suite covers it,
    /// and exit.
    #[arg(long)]
    coverage: bool,
    /// Do not put a dataDir of the suite's into the ipam objects (for a
    /// plugin that refuses fields it does not know). Cases then share the
    /// plugin's own state.
    #[arg(long)]
    no_data_dir: bool,
    /// A wasm-ipam policy to test: a built-in name or a .wasm file.
    #[arg(long)]
    policy: Option<String>,
    /// The wasm-ipam binary for --policy; by default the one beside this
    /// program, else the one on PATH.
    #[arg(long)]
    wasm_ipam: Option<PathBuf>,
    /// The `ipam` object (a JSON file) the spec scenarios use.
    #[arg(long)]
    ipam_config: Option<PathBuf>,
    /// A variant with a pool of a few addresses, for the exhaustion rules;
    /// without it they are skipped.
    #[arg(long)]
    small_ipam_config: Option<PathBuf>,
    /// Add a field to every config's `ipam` object: KEY=VALUE, VALUE as JSON
    /// (or a plain string). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A recording (.jsonl) or a folder of them. Repeatable.
    #[arg(long)]
    recordings: Vec<PathBuf>,
    /// Whose invocations to replay from the recordings; by default the
    /// plugin's own name (host-local for a policy).
    #[arg(long)]
    replay_plugin: Option<String>,
    /// How to compare a replay with its recording.
    #[arg(long, value_enum, default_value = "both")]
    mode: ModeArg,
    /// Known failures and skips of this plugin, each with a reason (TOML).
    #[arg(long)]
    expectations: Option<PathBuf>,
    /// The expectations file of the plugin an IPAM plugin is judged through
    /// (such as macvlan's, for dhcp): its faults are that plugin's own, and
    /// are reported as such rather than laid on the IPAM plugin.
    #[arg(long, value_name = "FILE")]
    carrier_expectations: Option<PathBuf>,
    /// Write PATH.md (a rule × version matrix) and PATH.xml (JUnit).
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    #[command(flatten)]
    harness: libtest_mimic::Arguments,
}

#[derive(Parser)]
#[command(name = "cni-conformance record")]
struct RecordCli {
    #[command(subcommand)]
    action: RecordAction,
}

#[derive(Subcommand)]
enum RecordAction {
    /// Put the recorder in place of a plugin; the real one keeps working.
    Install {
        /// The plugin to record, such as /opt/cni/bin/host-local.
        #[arg(long)]
        plugin: PathBuf,
        /// The .jsonl file to append invocations to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Put the real plugin back.
    Uninstall {
        #[arg(long)]
        plugin: PathBuf,
    },
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn find_wasm_ipam(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let beside = std::env::current_exe()?.with_file_name("wasm-ipam");
    if beside.exists() {
        return Ok(beside);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("wasm-ipam"))
        .find(|p| p.exists())
        .context("cannot find the wasm-ipam binary: give --wasm-ipam")
}

fn default_cni_path() -> Vec<PathBuf> {
    match std::env::var_os("CNI_PATH") {
        Some(p) => std::env::split_paths(&p).collect(),
        None => vec![PathBuf::from("/opt/cni/bin")],
    }
}

fn build_target(cli: &Cli, cache: &Path) -> Result<Target> {
    let mut t = match (&cli.plugin, &cli.policy, &cli.conflist) {
        (Some(p), None, None) => Target::native(std::path::absolute(p)?),
        (None, Some(policy), None) => {
            let mut t = Target::wasm(find_wasm_ipam(cli.wasm_ipam.clone())?, policy);
            t.set.insert("cacheDir".into(), serde_json::json!(cache));
            t
        }
        (None, None, Some(file)) => {
            let list = read_json(file)?;
            if list["plugins"].as_array().is_none_or(|p| p.is_empty()) {
                bail!(
                    "{} is not a conflist: it has no plugins list",
                    file.display()
                );
            }
            let mut t = Target::conflist(list, default_cni_path());
            if !cli.cni_path.is_empty() {
                t.cni_path = absolute_all(&cli.cni_path)?;
            }
            for (i, plugin) in t.plugins().iter().enumerate() {
                let plugin_type = plugin["type"].as_str().unwrap_or_default();
                if plugin_type.is_empty() {
                    bail!(
                        "{}: plugin {} of the list has no type",
                        file.display(),
                        i + 1
                    );
                }
                if chain::find(&t, plugin_type).is_none() {
                    bail!(
                        "{}: {}",
                        file.display(),
                        chain::missing_message(plugin_type, &t.cni_path_var())
                    );
                }
            }
            t
        }
        _ => bail!(
            "give the plugin to test: --plugin PATH, --policy NAME|FILE.wasm or --conflist FILE"
        ),
    };
    for kv in &cli.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        t.set.insert(k.to_string(), value);
    }
    t.ipam = cli.ipam_config.as_deref().map(read_json).transpose()?;
    t.small_ipam = cli
        .small_ipam_config
        .as_deref()
        .map(read_json)
        .transpose()?;
    if let Some(c) = &cli.config {
        let config = read_json(c)?;
        check_config(c, &config, &t)?;
        t.config = Some(config);
    }
    t.small_config = cli.small_config.as_deref().map(read_json).transpose()?;
    if !cli.cni_path.is_empty() {
        t.cni_path = absolute_all(&cli.cni_path)?;
    }
    t.timeout = Some(Duration::from_millis(cli.timeout_ms));
    t.host_links = cli.host_link.clone();
    t.host_daemons = cli.host_daemon.clone();
    if cli.no_data_dir {
        let _ = t.data_dir.set(target::DataDir {
            given: false,
            note: Some("--no-data-dir: cases share the plugin's own state".into()),
        });
    }
    t.env = cli.env.clone();
    Ok(t.with_defaults())
}

fn absolute_all(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    Ok(paths
        .iter()
        .map(std::path::absolute)
        .collect::<Result<_, _>>()?)
}

/// A `--config` must be one plugin's config for the plugin under test: not
/// a list, and of its `type` (or, for an IPAM plugin judged on its `ipam`
/// object, of its `ipam.type`), as a runtime would run it.
fn check_config(path: &Path, config: &Value, t: &Target) -> Result<()> {
    let shown = path.display();
    if config.get("plugins").is_some() {
        bail!("{shown} is a network configuration list: give it with --conflist FILE");
    }
    let Some(plugin_type) = config["type"].as_str().filter(|s| !s.is_empty()) else {
        bail!("{shown} has no \"type\": a plugin's network config names the plugin it is for");
    };
    let binary = t.ipam_type();
    if matches!(t.kind, target::Kind::Native(_))
        && plugin_type != binary
        && config["ipam"]["type"].as_str() != Some(binary.as_str())
    {
        bail!(
            "{shown} is for the plugin {plugin_type:?}, but --plugin is {binary:?}: a runtime \
             would run {plugin_type}; give that plugin's config, or the plugin it names"
        );
    }
    Ok(())
}

/// `KEY=VALUE`, for `--env`.
fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.starts_with("CNI_") => Ok((k.into(), v.into())),
        Some((k, _)) if k.starts_with("CNI_") => Err(format!(
            "{k} is the suite's to set for each call; --env takes other variables"
        )),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Settles which rules apply, and says why on stderr.
fn settle_kind(cli: &Cli, t: &mut Target, versions: &[String]) -> Result<String> {
    let detected = match cli.kind.as_deref().and_then(PluginKind::parse) {
        Some(kind) => Detected {
            kind,
            why: "--kind says so".into(),
        },
        None => kind::detect(t, versions).map_err(anyhow::Error::msg)?,
    };
    t.plugin_kind = detected.kind;
    if detected.kind == PluginKind::Ipam {
        // An IPAM plugin is judged on its `ipam` object, whatever else its
        // network config holds.
        if let Some(config) = t.config.take() {
            t.ipam = Some(config.get("ipam").cloned().unwrap_or(config));
            t.small_ipam = t
                .small_config
                .take()
                .map(|c| c.get("ipam").cloned().unwrap_or(c));
        }
    } else if t.config.is_none() {
        bail!(
            "an {} plugin needs its network config: give --config FILE",
            detected.kind
        );
    }
    let note = format!("kind {}: {}", detected.kind, detected.why);
    eprintln!("cni-conformance: {note}");
    Ok(note)
}

/// Namespaces that are not the suite's own.
fn foreign_namespaces() -> BTreeSet<String> {
    netns::ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| !n.starts_with(netns::PREFIX))
        .map(str::to_string)
        .collect()
}

fn run_suite(cli: Cli) -> Result<ExitCode> {
    if netns::is_root() {
        for name in netns::sweep_stale() {
            eprintln!("cni-conformance: removed {name}, left by a run that was killed");
        }
    }
    if cli.coverage {
        print!("{}", cni_conformance::coverage::text("1.1.0"));
        return Ok(ExitCode::SUCCESS);
    }
    // What the node holds before the suite runs the plugin at all: the
    // probes below run it too.
    let namespaces_before = foreign_namespaces();
    let state_before = netns::StateBefore::take();
    let cache = tempfile::tempdir()?;
    let mut target = build_target(&cli, cache.path())?;
    let Versions { claimed, narrowed } = chain::versions(&target).map_err(anyhow::Error::msg)?;
    let mut notes = Vec::new();
    if let Some(why) = narrowed {
        eprintln!("cni-conformance: {why}");
        notes.push(why);
    }
    notes.insert(0, settle_kind(&cli, &mut target, &claimed)?);
    let replay_plugin = cli
        .replay_plugin
        .clone()
        .unwrap_or_else(|| match &target.kind {
            target::Kind::Wasm { .. } => "host-local".into(),
            _ => target.ipam_type(),
        });
    let modes = match cli.mode {
        ModeArg::Exact => vec![Mode::Exact],
        ModeArg::Spec => vec![Mode::Spec],
        ModeArg::Both => vec![Mode::Exact, Mode::Spec],
    };
    let mut expectations = match &cli.expectations {
        Some(p) => Expectations::load(p).map_err(anyhow::Error::msg)?,
        None => Expectations::default(),
    };
    if let Some(p) = &cli.carrier_expectations {
        expectations = expectations.and(Expectations::carried(p).map_err(anyhow::Error::msg)?);
    }

    let suite = Suite {
        target: Arc::new(target),
        claimed: claimed.clone(),
        recordings: cli.recordings.clone(),
        replay_plugin,
        modes,
        expectations,
        results: Arc::new(Results::default()),
        strict: cli.strict,
    };
    let tests = suite.tests().map_err(anyhow::Error::msg)?;
    let names: Vec<String> = tests.iter().map(|t| t.name.clone()).collect();
    let unused = suite.unused_expectations(&names);
    let listing = cli.harness.list;
    // Whether a test runs at all, for the verdict on a run that judged
    // nothing.
    let runs_any = names.iter().any(|n| {
        !cli.harness
            .is_filtered_out(&libtest_mimic::Trial::test(n.clone(), || Ok(())))
    });

    let json_format = cli.harness.format == Some(FormatSetting::Json) && !listing;
    let failed = if json_format {
        json::run(&cli.harness, tests, &suite.results).failed > 0
    } else {
        let trials: Vec<_> = tests.into_iter().map(|t| t.trial()).collect();
        libtest_mimic::run(&cli.harness, trials).has_failed()
    };
    for pattern in &unused {
        eprintln!("cni-conformance: the expectation {pattern:?} matches no test; remove it");
    }
    // Namespaces the plugin made itself and left: a failure, and removed so
    // the machine stays clean.
    let left: Vec<String> = foreign_namespaces()
        .difference(&namespaces_before)
        .cloned()
        .collect();
    for name in &left {
        eprintln!(
            "cni-conformance: the plugin left the network namespace {name} behind; removed it"
        );
        let _ = netns::ip(&["netns", "del", name]);
    }
    netns::remove_all();
    for path in state_before.remove_left() {
        suite.results.left(format!(
            "{}: state of the run's networks, removed",
            path.display()
        ));
    }
    if listing {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(note) = suite.target.data_dir.get().and_then(|d| d.note.clone()) {
        eprintln!("cni-conformance: {note}");
        notes.push(note);
    }
    let description = format!("{} ({})", suite.target.describe(), notes.join("; "));
    let entries = suite.results.entries();
    let leftovers = suite.results.leftovers();
    eprint!("{}", report::closing(&entries, &leftovers, cli.strict));
    let counts = Counts::of(&entries);
    let judged_nothing = runs_any && counts.judged() == 0;
    if judged_nothing {
        eprintln!("cni-conformance: {}", nothing_judged(&entries));
    }
    if let Some(path) = &cli.report {
        std::fs::write(
            path.with_extension("md"),
            report::markdown(&description, &entries, &leftovers),
        )?;
        std::fs::write(
            path.with_extension("xml"),
            report::junit(&description, &entries),
        )?;
    }
    Ok(
        if failed || !unused.is_empty() || !left.is_empty() || judged_nothing {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// Why a run judged no rule at all: the skip reason most tests gave.
fn nothing_judged(entries: &[report::Entry]) -> String {
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in entries {
        *reasons.entry(e.detail.as_str()).or_default() += 1;
    }
    let top = reasons
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(why, n)| format!("; {n} of them because: {why}"))
        .unwrap_or_default();
    format!(
        "no rule could be judged: every test was skipped{top}. A run that judges nothing \
         proves nothing, so it fails"
    )
}

fn main() -> ExitCode {
    let argv0 = PathBuf::from(std::env::args_os().next().unwrap_or_default());
    if let Some(sidecar) = record::shim_for(&argv0) {
        return ExitCode::from(record::run_shim(&argv0, &sidecar).clamp(0, 255) as u8);
    }
    let result = if std::env::args().nth(1).as_deref() == Some("record") {
        let cli = RecordCli::parse_from(std::env::args().skip(1));
        match cli.action {
            RecordAction::Install { plugin, out } => record::install(&plugin, &out),
            RecordAction::Uninstall { plugin } => record::uninstall(&plugin),
        }
        .map(|()| ExitCode::SUCCESS)
        .map_err(anyhow::Error::msg)
    } else {
        run_suite(Cli::parse())
    };
    result.unwrap_or_else(|e| {
        eprintln!("cni-conformance: {e:#}");
        ExitCode::from(2)
    })
}
