//! Spec-derived scenarios. Each rule cites the text it checks (CNI 1.1.0,
//! SPEC.md and CONVENTIONS.md), carries a level, names the plugin kinds it
//! judges, runs once per version the plugin claims, and fails with the
//! invocation, what was expected and what came back.
//!
//! The levels keep the suite fair. `must` is the spec's required
//! behaviour, and only a `must` failure fails a run unless `--strict` is
//! given. `should` is a recommendation of the spec. `convention` is
//! CONVENTIONS.md or a habit of the reference plugins: a plugin that
//! differs breaks nothing the spec requires. A rule placed below `must`
//! says why beside it.
//!
//! One module per part of the spec: [`envelope`] (VERSION, the
//! environment, the config, CNI_ARGS), [`lifecycle`] (ADD, DEL and CHECK as
//! every kind of plugin sees them), [`ipam`] (allocation), [`interface`]
//! (links, addresses and routes in the namespace) and [`chained`]
//! (`prevResult`).

mod case;
pub mod chained;
pub mod envelope;
pub mod interface;
pub mod ipam;
pub mod lifecycle;

use std::fmt;

pub use case::{Case, Step};

use crate::kind::PluginKind;
use crate::netns;
use crate::target::Target;
use cni::version::at_least;

/// How binding a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// The spec's required behaviour (MUST).
    Must,
    /// The spec's recommendation (SHOULD).
    Should,
    /// CONVENTIONS.md, or a habit of the reference plugins.
    Convention,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Level::Must => "must",
            Level::Should => "should",
            Level::Convention => "convention",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

pub const ALL: &[PluginKind] = &[PluginKind::Ipam, PluginKind::Interface, PluginKind::Meta];
pub const IPAM: &[PluginKind] = &[PluginKind::Ipam];
pub const INTERFACE: &[PluginKind] = &[PluginKind::Interface];
pub const META: &[PluginKind] = &[PluginKind::Meta];
/// Plugins that act on the container's namespace.
pub const NAMESPACED: &[PluginKind] = &[PluginKind::Interface, PluginKind::Meta];

/// One rule of the suite.
pub struct Rule {
    pub id: &'static str,
    pub level: Level,
    /// The spec text the rule checks.
    pub spec: &'static str,
    /// The kinds of plugin it judges.
    pub kinds: &'static [PluginKind],
    /// The oldest version the rule applies to.
    pub since: Option<&'static str>,
    /// The rule applies only to versions older than this.
    pub before: Option<&'static str>,
    /// Needs the small-pool config.
    pub small: bool,
    /// Needs a config that delegates to an IPAM plugin (has `ipam`).
    pub delegates: bool,
    pub check: fn(&Case) -> Result<(), String>,
}

impl Rule {
    /// A rule for every version and, until [`Rule::kinds`] says otherwise,
    /// IPAM plugins.
    pub const fn new(
        id: &'static str,
        level: Level,
        spec: &'static str,
        check: fn(&Case) -> Result<(), String>,
    ) -> Rule {
        Rule {
            id,
            level,
            spec,
            kinds: IPAM,
            since: None,
            before: None,
            small: false,
            delegates: false,
            check,
        }
    }

    pub const fn kinds(mut self, kinds: &'static [PluginKind]) -> Rule {
        self.kinds = kinds;
        self
    }

    pub const fn since(mut self, version: &'static str) -> Rule {
        self.since = Some(version);
        self
    }

    pub const fn before(mut self, version: &'static str) -> Rule {
        self.before = Some(version);
        self
    }

    /// Needs the small-pool config.
    pub const fn small(mut self) -> Rule {
        self.small = true;
        self
    }

    /// Needs a config with a delegated `ipam` object.
    pub const fn delegates(mut self) -> Rule {
        self.delegates = true;
        self
    }

    pub fn judges(&self, kind: PluginKind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// Whether a rule applies to `target` at `version`, and why not.
pub fn applies(rule: &Rule, version: &str, target: &Target) -> Result<(), String> {
    if let Some(min) = rule.since
        && !at_least(version, min)
    {
        return Err(format!("needs CNI {min} or later"));
    }
    if let Some(max) = rule.before
        && at_least(version, max)
    {
        return Err(format!("applies only before CNI {max}"));
    }
    if target.plugin_kind == PluginKind::Meta && !at_least(version, "0.3.0") {
        return Err("a chained plugin acts on a prevResult, which CNI 0.3.0 brought".into());
    }
    let ipam = target.plugin_kind == PluginKind::Ipam && target.config.is_none();
    if ipam && target.ipam.is_none() {
        return Err("no ipam config for this plugin: give --ipam-config".into());
    }
    if rule.small {
        if ipam && target.small_ipam.is_none() {
            return Err("needs a small-pool config (--small-ipam-config)".into());
        }
        if !ipam && target.small_config.is_none() {
            return Err("needs the config with a small delegated pool (--small-config)".into());
        }
    }
    if rule.delegates
        && !target
            .config
            .as_ref()
            .is_some_and(|c| c["ipam"].is_object())
    {
        return Err("the config delegates to no IPAM plugin (it has no ipam object)".into());
    }
    if target.plugin_kind != PluginKind::Ipam && !netns::is_root() {
        return Err("needs root, to make network namespaces".into());
    }
    Ok(())
}

/// Rules that do not depend on the config version.
pub fn global_rules() -> Vec<Rule> {
    vec![envelope::version_output()]
}

/// Rules run once per claimed version, for every kind of plugin.
pub fn version_rules() -> Vec<Rule> {
    let mut all = envelope::rules();
    all.extend(lifecycle::rules());
    all.extend(ipam::rules());
    all.extend(interface::rules());
    all.extend(chained::rules());
    all
}
