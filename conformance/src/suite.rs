//! The suite: rules and recordings turned into libtest-mimic trials, with a
//! plugin's expectations applied and every outcome kept for the report.

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
    pub recordings: Vec<PathBuf>,
    /// Whose invocations to replay from the recordings.
    pub replay_plugin: String,
    pub modes: Vec<Mode>,
    pub expectations: Expectations,
    pub results: Arc<Results>,
    /// Fail the run on a failed `should` or `convention` rule too.
    pub strict: bool,
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

/// A trial that applies the expectation for its name and records the outcome.
fn trial(meta: Meta, suite: &Suite, run: impl FnOnce() -> Verdict + Send + 'static) -> Trial {
    let expected = suite.expectations.find(&meta.name).cloned();
    let results = suite.results.clone();
    let strict = suite.strict;
    let name = meta.name.clone();
    Trial::ignorable_test(name, move || {
        let record_at = |status: Status, detail: &str, level: Option<Level>| {
            results.push(Entry {
                name: meta.name.clone(),
                case: meta.case.clone(),
                version: meta.version.clone(),
                level: level.or(meta.level).map_or("-", Level::word).to_string(),
                spec: meta.spec.clone(),
                status,
                detail: detail.to_string(),
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
                    "expected to fail ({}), but it passed: remove it from the expectations file",
                    e.reason
                );
                record(Status::Fail, &msg);
                Err(Failed::from(msg))
            }
            (Verdict::Fail(msg, _), Some(e)) => {
                record(Status::XFail, &format!("{}\n{msg}", e.reason));
                Ok(Completion::Completed)
            }
            (Verdict::Fail(msg, level), None) => match level {
                Some(level) if level != Level::Must && !strict => {
                    record_at(Status::Warn, &msg, Some(level));
                    Ok(Completion::ignored_with(format!(
                        "failed a {level} rule, fatal only with --strict: {}",
                        msg.lines().nth(1).unwrap_or_default()
                    )))
                }
                _ => {
                    record_at(Status::Fail, &msg, level);
                    Err(Failed::from(msg))
                }
            },
        }
    })
}

fn rule_verdict(target: &Target, version: &str, rule: &Rule) -> Verdict {
    if let Err(why) = rules::applies(rule, version, target) {
        return Verdict::Skip(why);
    }
    let case = Case::new(target, version, rule);
    match (rule.check)(&case) {
        Ok(()) => Verdict::Pass,
        Err(Finding::NotApplicable(why)) => Verdict::Skip(why),
        Err(finding) => Verdict::Fail(
            rule.failure_text(&finding, version),
            Some(rule.level_of(&finding, version)),
        ),
    }
}

impl Suite {
    pub fn trials(&self) -> Result<Vec<Trial>, String> {
        let claimed = self.target.versions()?;
        let kind = self.target.plugin_kind;
        let mut trials = Vec::new();
        for rule in rules::global_rules().into_iter().filter(|r| r.judges(kind)) {
            let (target, version) = (
                self.target.clone(),
                claimed.last().cloned().unwrap_or_default(),
            );
            let meta = Meta {
                name: format!("spec::{}", rule.id),
                case: rule.id.into(),
                version: "-".into(),
                level: Some(rule.standing(&version).level),
                spec: rule.cited_text(&version),
            };
            trials.push(trial(meta, self, move || {
                rule_verdict(&target, &version, &rule)
            }));
        }
        for version in VERSIONS {
            for rule in rules::version_rules()
                .into_iter()
                .filter(|r| r.judges(kind))
            {
                let target = self.target.clone();
                let claims = claimed.iter().any(|c| c == version);
                let meta = Meta {
                    name: format!("spec::{}@{version}", rule.id),
                    case: rule.id.into(),
                    version: version.to_string(),
                    level: Some(rule.standing(version).level),
                    spec: rule.cited_text(version),
                };
                trials.push(trial(meta, self, move || {
                    if claims {
                        rule_verdict(&target, version, &rule)
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
                trials.push(trial(meta, self, move || {
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
        Ok(trials)
    }

    /// Names of the expectations that match no trial.
    pub fn unused_expectations(&self, trials: &[Trial]) -> Vec<String> {
        let names: Vec<String> = trials.iter().map(|t| t.name().to_string()).collect();
        self.expectations
            .unused(&names)
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}
