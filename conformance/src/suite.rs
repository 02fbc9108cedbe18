//! The suite: rules and recordings turned into tests, with a plugin's
//! expectations applied and every outcome kept for the report. The tests
//! run as libtest-mimic trials, or, for `--format json`, in [`crate::json`],
//! which reports them as JSON rather than as libtest's escaped text.

use std::path::PathBuf;
use std::sync::Arc;

use libtest_mimic::{Completion, Failed, Trial};

use crate::expectations::{self, Expectations};
use crate::recordings::{self, Mode};
use crate::report::{Entry, Results, Status};
use crate::rules::{self, Case, Finding, Level, Rule};
use crate::target::Target;
use cni::version::VERSIONS;

pub struct Suite {
    pub target: Arc<Target>,
    /// The versions the plugin claims (for a chain, every plugin of it).
    pub claimed: Vec<String>,
    pub recordings: Vec<PathBuf>,
    /// Whose invocations to replay from the recordings.
    pub replay_plugin: String,
    pub modes: Vec<Mode>,
    pub expectations: Expectations,
    pub results: Arc<Results>,
    /// Fail the run on a failed `should` or `convention` rule too.
    pub strict: bool,
}

/// One test: its name, and what running it comes to.
pub struct Test {
    pub name: String,
    pub run: Box<dyn FnOnce() -> Result<Completion, Failed> + Send>,
}

impl Test {
    pub fn trial(self) -> Trial {
        Trial::ignorable_test(self.name, self.run)
    }
}

/// What one case came to, before expectations.
enum Verdict {
    Pass,
    /// Failed, judged at this level (`None`: a recording, whose every
    /// mismatch counts).
    Fail(String, Option<Level>),
    Skip(String),
}

/// What a trial is, for its report entry.
struct Meta {
    name: String,
    case: String,
    version: String,
    /// The rule's level at this version; `None` for a recording.
    level: Option<Level>,
    /// The spec text the rule rests on at this version, with why its level
    /// is what it is.
    spec: String,
}

/// The two lines of a failure that say what was expected and what came
/// back, on one line: what a warning shows on the console.
pub fn summary(msg: &str) -> String {
    let line = |prefix: &str| msg.lines().find(|l| l.starts_with(prefix));
    let text = match (line("expected: "), line("got")) {
        (Some(e), Some(g)) => format!("{e}; {g}"),
        _ => msg
            .lines()
            .rfind(|l| !l.starts_with("rule ") && !l.trim().is_empty())
            .unwrap_or_default()
            .to_string(),
    };
    if text.chars().count() > 400 {
        format!("{}...", text.chars().take(400).collect::<String>())
    } else {
        text
    }
}

/// A test that applies the expectation for its name and records the
/// outcome.
fn test(meta: Meta, suite: &Suite, run: impl FnOnce() -> Verdict + Send + 'static) -> Test {
    let expected = suite.expectations.find(&meta.name).cloned();
    let results = suite.results.clone();
    let strict = suite.strict;
    let name = meta.name.clone();
    Test {
        name,
        run: Box::new(move || {
            let record_at = |status: Status, detail: &str, level: Option<Level>| {
                let answer = if matches!(status, Status::Pass | Status::Skip) {
                    None
                } else {
                    rules::take_last_failure()
                };
                results.push(Entry {
                    name: meta.name.clone(),
                    case: meta.case.clone(),
                    version: meta.version.clone(),
                    level: level.or(meta.level).map_or("-", Level::word).to_string(),
                    spec: meta.spec.clone(),
                    status,
                    detail: detail.to_string(),
                    answer,
                })
            };
            let record = |status: Status, detail: &str| record_at(status, detail, None);
            if let Some(e) = expected
                .as_ref()
                .filter(|e| e.status == expectations::Status::Skip)
            {
                record(Status::Skip, &e.reason);
                return Ok(Completion::ignored_with(format!(
                    "expected skip: {}",
                    e.reason
                )));
            }
            let expect_fail = expected.filter(|e| e.status == expectations::Status::Fail);
            rules::take_last_failure();
            match (run(), expect_fail) {
                (Verdict::Skip(why), _) => {
                    record(Status::Skip, &why);
                    Ok(Completion::ignored_with(why))
                }
                (Verdict::Pass, None) => {
                    record(Status::Pass, "");
                    Ok(Completion::Completed)
                }
                (Verdict::Pass, Some(e)) => {
                    let msg = format!(
                        "expected to fail ({}), but it passed: remove it from the expectations \
                         file",
                        e.reason
                    );
                    record(Status::Fail, &msg);
                    Err(Failed::from(msg))
                }
                (Verdict::Fail(msg, _), Some(e)) => {
                    record(Status::XFail, &format!("{}\n{msg}", e.reason));
                    Ok(Completion::ignored_with(format!("xfail: {}", e.reason)))
                }
                (Verdict::Fail(msg, level), None) => match level {
                    Some(level) if level != Level::Must && !strict => {
                        record_at(Status::Warn, &msg, Some(level));
                        Ok(Completion::ignored_with(format!(
                            "warn: broke a {level} rule, fatal only with --strict: {}",
                            summary(&msg)
                        )))
                    }
                    _ => {
                        record_at(Status::Fail, &msg, level);
                        Err(Failed::from(msg))
                    }
                },
            }
        }),
    }
}

fn rule_verdict(
    target: &Target,
    version: &str,
    rule: &Rule,
    results: &Results,
    name: &str,
) -> Verdict {
    if let Err(why) = rules::applies(rule, version, target) {
        return Verdict::Skip(why);
    }
    let case = Case::new(target, version, rule);
    let checked = (rule.check)(&case);
    let left = case.finish();
    if !left.is_empty() {
        results.left(format!(
            "{name}: still running after the DEL of every attachment, killed: {}",
            left.join("; ")
        ));
    }
    match checked {
        Ok(()) => Verdict::Pass,
        Err(Finding::NotApplicable(why)) => Verdict::Skip(why),
        Err(finding) => Verdict::Fail(
            rule.failure_text(&finding, version),
            Some(rule.level_of(&finding, version)),
        ),
    }
}

impl Suite {
    /// A suite of `target`'s rules at the versions it claims (asked with
    /// VERSION), with no recording and no expectation yet.
    pub fn of(target: Target) -> Result<Suite, String> {
        let claimed = crate::chain::versions(&target)?.claimed;
        Ok(Suite {
            target: Arc::new(target),
            claimed,
            recordings: Vec::new(),
            replay_plugin: String::new(),
            modes: Vec::new(),
            expectations: Expectations::default(),
            results: Arc::default(),
            strict: false,
        })
    }

    /// Every test's name.
    pub fn names(&self) -> Result<Vec<String>, String> {
        Ok(self.tests()?.into_iter().map(|t| t.name).collect())
    }

    pub fn tests(&self) -> Result<Vec<Test>, String> {
        let claimed = &self.claimed;
        let kind = self.target.plugin_kind;
        let mut tests = Vec::new();
        for rule in rules::global_rules().into_iter().filter(|r| r.judges(kind)) {
            let (target, version, results) = (
                self.target.clone(),
                claimed.last().cloned().unwrap_or_default(),
                self.results.clone(),
            );
            let name = format!("spec::{}", rule.id);
            let meta = Meta {
                name: name.clone(),
                case: rule.id.into(),
                version: "-".into(),
                level: Some(rule.standing(&version).level),
                spec: rule.cited_text(&version),
            };
            tests.push(test(meta, self, move || {
                rule_verdict(&target, &version, &rule, &results, &name)
            }));
        }
        for version in VERSIONS {
            for rule in rules::version_rules()
                .into_iter()
                .filter(|r| r.judges(kind))
            {
                let (target, results) = (self.target.clone(), self.results.clone());
                let claims = claimed.iter().any(|c| c == version);
                let name = format!("spec::{}@{version}", rule.id);
                let meta = Meta {
                    name: name.clone(),
                    case: rule.id.into(),
                    version: version.to_string(),
                    level: Some(rule.standing(version).level),
                    spec: rule.cited_text(version),
                };
                tests.push(test(meta, self, move || {
                    if claims {
                        rule_verdict(&target, version, &rule, &results, &name)
                    } else {
                        Verdict::Skip(format!("the plugin does not claim CNI {version}"))
                    }
                }));
            }
        }
        for file in recordings::files(&self.recordings) {
            let records = recordings::load(&file)?;
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            for &mode in &self.modes {
                let (target, records, plugin) = (
                    self.target.clone(),
                    records.clone(),
                    self.replay_plugin.clone(),
                );
                let meta = Meta {
                    name: format!("recording::{stem}::{}", mode.name()),
                    case: format!("recording {stem} ({})", mode.name()),
                    version: "-".into(),
                    level: None,
                    spec: String::new(),
                };
                tests.push(test(meta, self, move || {
                    if !records.iter().any(|r| r.plugin == plugin) {
                        return Verdict::Skip(format!(
                            "the recording has no invocation of {plugin}"
                        ));
                    }
                    match recordings::replay(&target, &records, &plugin, mode) {
                        Ok(_) => Verdict::Pass,
                        Err(msg) => Verdict::Fail(msg, None),
                    }
                }));
            }
        }
        Ok(tests)
    }

    /// The tests as libtest-mimic trials.
    pub fn trials(&self) -> Result<Vec<Trial>, String> {
        Ok(self.tests()?.into_iter().map(Test::trial).collect())
    }

    /// Names of the expectations that match none of `names`.
    pub fn unused_expectations(&self, names: &[String]) -> Vec<String> {
        self.expectations
            .unused(names)
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}
