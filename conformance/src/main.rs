//! `cni-conformance`: run the suite against a plugin, or record what a
//! runtime sends one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use cni_conformance::expectations::Expectations;
use cni_conformance::recordings::Mode;
use cni_conformance::report::{self, Results};
use cni_conformance::suite::Suite;
use cni_conformance::target::Target;
use cni_conformance::{record, target};
use serde_json::Value;

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Exact,
    Spec,
    Both,
}

/// Check a CNI plugin against the spec and against recorded runtime traffic.
///
/// Give the plugin with --plugin (any CNI plugin binary) or --policy (a
/// wasm-ipam policy: a built-in name or a .wasm file, run through the
/// wasm-ipam binary). The usual test-harness options (a filter, --list,
/// --exact, --format json, --test-threads) work as with cargo test.
#[derive(Parser)]
#[command(
    name = "cni-conformance",
    version,
    help_template = "{about-with-newline}\n{usage-heading} {usage}\n\n{all-args}"
)]
struct Cli {
    /// A CNI plugin binary to test.
    #[arg(long, conflicts_with = "policy")]
    plugin: Option<PathBuf>,
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

fn build_target(cli: &Cli, cache: &Path) -> Result<Target> {
    let mut t = match (&cli.plugin, &cli.policy) {
        (Some(p), None) => Target::native(std::path::absolute(p)?),
        (None, Some(policy)) => {
            let mut t = Target::wasm(find_wasm_ipam(cli.wasm_ipam.clone())?, policy);
            t.set.insert("cacheDir".into(), serde_json::json!(cache));
            t
        }
        _ => bail!("give the plugin to test: --plugin PATH or --policy NAME|FILE.wasm"),
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
    Ok(t.with_defaults())
}

fn run_suite(cli: Cli) -> Result<ExitCode> {
    let cache = tempfile::tempdir()?;
    let target = build_target(&cli, cache.path())?;
    let replay_plugin = cli
        .replay_plugin
        .clone()
        .unwrap_or_else(|| match &target.kind {
            target::Kind::Wasm { .. } => "host-local".into(),
            target::Kind::Native(_) => target.ipam_type(),
        });
    let modes = match cli.mode {
        ModeArg::Exact => vec![Mode::Exact],
        ModeArg::Spec => vec![Mode::Spec],
        ModeArg::Both => vec![Mode::Exact, Mode::Spec],
    };
    let expectations = match &cli.expectations {
        Some(p) => Expectations::load(p).map_err(anyhow::Error::msg)?,
        None => Expectations::default(),
    };
    let description = target.describe();
    let suite = Suite {
        target: Arc::new(target),
        recordings: cli.recordings.clone(),
        replay_plugin,
        modes,
        expectations,
        results: Arc::new(Results::default()),
    };
    let trials = suite.trials().map_err(anyhow::Error::msg)?;
    let unused = suite.unused_expectations(&trials);
    let conclusion = libtest_mimic::run(&cli.harness, trials);
    for pattern in &unused {
        eprintln!("cni-conformance: the expectation {pattern:?} matches no test; remove it");
    }
    if let Some(path) = &cli.report {
        let entries = suite.results.entries();
        std::fs::write(
            path.with_extension("md"),
            report::markdown(&description, &entries),
        )?;
        std::fs::write(
            path.with_extension("xml"),
            report::junit(&description, &entries),
        )?;
    }
    Ok(if conclusion.has_failed() || !unused.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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
