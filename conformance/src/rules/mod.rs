//! Spec-derived scenarios. Each rule names the statements of the spec it
//! tests ([`Cite`], into [`crate::spec`]), takes its level from their words
//! at the version under test, names the plugin kinds it judges, runs once
//! per version the plugin claims, and fails with the invocation, what was
//! expected, what came back and the statement broken.
//!
//! The levels keep the suite fair. A rule is `must` where the strongest
//! statement it tests says MUST at that version, `should` where it says
//! SHOULD; only a `must` failure fails a run unless `--strict` is given. A
//! rule that tests no statement, such as a habit of the reference plugins,
//! is `convention` and says where the habit comes from. A rule put below
//! its statements' level says why ([`Rule::lowered`]), and the report shows
//! it. One check may find faults of different weight: a failure names the
//! statement it breaks ([`Finding::at`]) and is judged at that statement's
//! level, so a `convention` rule can still fail a run on the MUST it meets
//! along the way.
//!
//! One module per part of the spec: [`envelope`] (VERSION, the
//! environment, the config, CNI_ARGS and `args`), [`lifecycle`] (ADD, DEL
//! and CHECK as every kind of plugin sees them), [`ipam`] (allocation),
//! [`interface`] (links, addresses and routes in the namespace),
//! [`delegation`] (what reaches the IPAM plugin an interface plugin calls)
//! and [`chained`] (`prevResult`).

mod case;
pub mod chained;
pub mod delegation;
pub mod envelope;
pub mod interface;
pub mod ipam;
pub mod lifecycle;
mod spy;

use std::fmt;

pub use case::{Case, Step, take_last_failure};

use crate::netns;
use crate::spec::{self, Statement, Wording};
use crate::target::Target;
use crate::target::{Kind, PluginKind};
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

/// How much of a statement a rule checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    Full,
    /// Part of it; the text says what is left unchecked.
    Partly(&'static str),
}

/// A statement a rule tests.
#[derive(Debug, Clone, Copy)]
pub struct Cite {
    /// Its id in [`crate::spec`].
    pub id: &'static str,
    pub extent: Extent,
    /// Whether it sets the rule's level. A statement checked on the side
    /// (an error object's layout, on a rule about something else) is
    /// judged at its own level through [`Finding::at`], not the rule's.
    pub basis: bool,
}

impl Cite {
    pub const fn full(id: &'static str) -> Cite {
        Cite {
            id,
            extent: Extent::Full,
            basis: true,
        }
    }

    pub const fn partly(id: &'static str, unchecked: &'static str) -> Cite {
        Cite {
            id,
            extent: Extent::Partly(unchecked),
            basis: true,
        }
    }

    /// Checked on the side: it does not set the rule's level.
    pub const fn aside(mut self) -> Cite {
        self.basis = false;
        self
    }
}

/// A rule put below its statements' level, and why.
#[derive(Debug, Clone, Copy)]
pub struct Lowered {
    pub to: Level,
    pub why: &'static str,
}

/// What a rule's check found.
#[derive(Debug, Clone)]
pub enum Finding {
    /// A failure, judged at the level of what it breaks.
    Fail { against: Against, msg: String },
    /// The rule does not apply to this plugin, for this reason (a skip).
    NotApplicable(String),
}

/// What a failure breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Against {
    /// The rule as a whole, at its level.
    Rule,
    /// One statement, at its level at the version under test.
    Statement(&'static str),
}

impl Finding {
    /// A failure of the statement `id`, judged at its level.
    pub fn at(id: &'static str, msg: impl Into<String>) -> Finding {
        Finding::Fail {
            against: Against::Statement(id),
            msg: msg.into(),
        }
    }

    pub fn not_applicable(why: impl Into<String>) -> Finding {
        Finding::NotApplicable(why.into())
    }

    /// The message, whatever the finding.
    pub fn message(&self) -> &str {
        match self {
            Finding::Fail { msg, .. } | Finding::NotApplicable(msg) => msg,
        }
    }
}

/// The prefix that marks a message as breaking one statement, whatever
/// rule met it on the way (see [`tagged`]).
const BREAKS: &str = "[breaks ";

/// `msg`, marked as breaking the statement `id`: a check that meets a
/// fault of another weight than its rule's (a plugin that fails and exits
/// 0 breaks a MUST in any rule) says so in the text it returns, and the
/// finding made of it is judged at that statement's level.
pub fn tagged(id: &'static str, msg: String) -> String {
    format!("{BREAKS}{id}] {msg}")
}

impl From<String> for Finding {
    fn from(msg: String) -> Finding {
        let against = msg
            .strip_prefix(BREAKS)
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(id, _)| spec::find(id))
            .map_or(Against::Rule, |s| Against::Statement(s.id));
        Finding::Fail { against, msg }
    }
}

impl From<&str> for Finding {
    fn from(msg: &str) -> Finding {
        Finding::from(msg.to_string())
    }
}

/// What a rule's check returns.
pub type Checked = Result<(), Finding>;

/// One rule of the suite.
pub struct Rule {
    pub id: &'static str,
    /// The statements it tests.
    pub cites: &'static [Cite],
    /// Set when the rule sits below its statements' level.
    pub lowered: Option<Lowered>,
    /// Where a rule that rests on no statement comes from.
    pub habit: Option<&'static str>,
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
    pub check: fn(&Case) -> Checked,
}

/// A rule's level at one version, and what it rests on.
pub struct Standing {
    pub level: Level,
    /// The basis statements in that version's text, with their wording.
    pub basis: Vec<(&'static Statement, &'static Wording)>,
    /// Why the level is not the statements' own: a lowering, a habit, or
    /// statements the version's text lacks.
    pub why: Option<String>,
}

impl Rule {
    /// A rule for every version and, until [`Rule::kinds`] says otherwise,
    /// IPAM plugins. It rests on nothing until [`Rule::cites`] says so.
    pub const fn new(id: &'static str, check: fn(&Case) -> Checked) -> Rule {
        Rule {
            id,
            cites: &[],
            lowered: None,
            habit: None,
            kinds: IPAM,
            since: None,
            before: None,
            small: false,
            delegates: false,
            check,
        }
    }

    pub const fn cites(mut self, cites: &'static [Cite]) -> Rule {
        self.cites = cites;
        self
    }

    /// Puts the rule below its statements' level, saying why.
    pub const fn lowered(mut self, to: Level, why: &'static str) -> Rule {
        self.lowered = Some(Lowered { to, why });
        self
    }

    /// Where the habit a `convention` rule checks comes from.
    pub const fn habit(mut self, source: &'static str) -> Rule {
        self.habit = Some(source);
        self
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

    /// The rule's level at `version`, from the words of its statements
    /// there.
    pub fn standing(&self, version: &str) -> Standing {
        let basis: Vec<(&'static Statement, &'static Wording)> = self
            .cites
            .iter()
            .filter(|c| c.basis)
            .filter_map(|c| {
                let s = spec::find(c.id)?;
                Some((s, s.at(version)?))
            })
            .collect();
        let strongest = basis.iter().map(|(_, w)| w.word.level()).min();
        let (mut level, mut why) = match strongest {
            Some(level) => (level, None),
            None if self.cites.iter().any(|c| c.basis) => (
                Level::Convention,
                Some(format!(
                    "SPEC {version} has no statement of what this rule tests{}",
                    self.habit
                        .map(|h| format!("; the habit: {h}"))
                        .unwrap_or_default()
                )),
            ),
            None => (Level::Convention, self.habit.map(str::to_string)),
        };
        if let Some(l) = self.lowered
            && l.to > level
        {
            level = l.to;
            why = Some(l.why.to_string());
        }
        Standing { level, basis, why }
    }

    /// The level of `finding` at `version`: the statement it names, else
    /// the rule's own.
    pub fn level_of(&self, finding: &Finding, version: &str) -> Level {
        match finding {
            Finding::Fail {
                against: Against::Statement(id),
                ..
            } => spec::find(id)
                .and_then(|s| s.at(version))
                .map_or(Level::Convention, |w| w.word.level()),
            _ => self.standing(version).level,
        }
    }

    /// The spec text the rule rests on at `version`, for reports.
    pub fn cited_text(&self, version: &str) -> String {
        let standing = self.standing(version);
        let mut parts: Vec<String> = standing
            .basis
            .iter()
            .map(|(s, _)| s.cite(version))
            .collect();
        if let Some(why) = standing.why {
            parts.push(format!("level: {why}"));
        }
        parts.join("; ")
    }

    /// The message of a failure: the rule, the level it was judged at,
    /// what it breaks, and what the check found.
    pub fn failure_text(&self, finding: &Finding, version: &str) -> String {
        let level = self.level_of(finding, version);
        let against = match finding {
            Finding::Fail {
                against: Against::Statement(id),
                ..
            } => spec::find(id).map_or_else(|| id.to_string(), |s| s.cite(version)),
            // A rule put below its statements fails as its own level says:
            // what it quotes is why, not a MUST the plugin did not meet.
            _ => match (self.lowered, self.habit) {
                (Some(lowered), Some(habit)) if lowered.to == level => {
                    format!("{habit}; level: {}", lowered.why)
                }
                _ => self.cited_text(version),
            },
        };
        format!(
            "rule {} ({level}): {against}\n{}",
            self.id,
            finding.message()
        )
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
    if matches!(target.kind, Kind::Conflist) && !at_least(version, "0.3.0") {
        return Err("network configuration lists came with CNI 0.3.0".into());
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
    all.extend(delegation::rules());
    all.extend(chained::rules());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_put_below_its_statements_quotes_why_not_a_must_the_plugin_did_not_meet() {
        let rule = envelope::rules()
            .into_iter()
            .find(|r| r.id == "env.missing-command")
            .unwrap();
        // The plugin answered success: no error, so no error code to judge.
        let text = rule.failure_text(&Finding::from("expected: an error with code 4"), "1.1.0");
        assert!(
            text.starts_with("rule env.missing-command (convention): the Go skeleton"),
            "{text}"
        );
        assert!(!text.contains("(MUST): \""), "{text}");
        // A code-4 message that names nothing breaks the MUST, at its level.
        let named = Finding::at("spec/errors.code-4", "a code-4 message that names");
        assert_eq!(rule.level_of(&named, "1.1.0"), Level::Must);
        // A message tagged with the statement it breaks is judged there.
        let tagged = Finding::from(tagged("spec/errors.exit-code", "exited 0".into()));
        assert_eq!(rule.level_of(&tagged, "1.1.0"), Level::Must);
    }
}
