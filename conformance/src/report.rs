//! The conformance report: a Markdown matrix (rule × CNI version) for
//! people, and JUnit XML for CI systems.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use cni::version::VERSIONS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Fail,
    Skip,
    /// Failed, as the expectations file said it would.
    XFail,
    /// Failed a `should` or `convention` rule: reported, fatal only with
    /// `--strict`.
    Warn,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::XFail => "xfail",
            Status::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// The test's full name, as libtest shows it.
    pub name: String,
    /// The rule or recording, without the version.
    pub case: String,
    /// The CNI version, or `-` for cases that have none.
    pub version: String,
    /// The rule's level (`must`, `should`, `convention`), `-` for a
    /// recording.
    pub level: String,
    /// The spec text the rule cites (empty for a recording).
    pub spec: String,
    pub status: Status,
    /// The failure message, or the reason for a skip or an expected failure.
    pub detail: String,
    /// What the plugin answered to the step that failed, as JSON.
    pub answer: Option<serde_json::Value>,
}

/// Results as the trials finish, from any thread, and what the run found
/// left behind.
#[derive(Debug, Default)]
pub struct Results {
    entries: Mutex<Vec<Entry>>,
    left: Mutex<Vec<String>>,
}

impl Results {
    pub fn push(&self, e: Entry) {
        self.entries.lock().expect("results lock").push(e);
    }

    pub fn entries(&self) -> Vec<Entry> {
        let mut v = self.entries.lock().expect("results lock").clone();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The entry of the test `name`, once it has run.
    pub fn entry(&self, name: &str) -> Option<Entry> {
        self.entries
            .lock()
            .expect("results lock")
            .iter()
            .find(|e| e.name == name)
            .cloned()
    }

    /// Notes something the plugin left behind (a process, a state folder),
    /// which the suite removed.
    pub fn left(&self, what: String) {
        self.left.lock().expect("results lock").push(what);
    }

    pub fn leftovers(&self) -> Vec<String> {
        let mut v = self.left.lock().expect("results lock").clone();
        v.sort();
        v
    }
}

/// How many entries have each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub warned: usize,
    pub xfailed: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn of(entries: &[Entry]) -> Counts {
        let n = |s: Status| entries.iter().filter(|e| e.status == s).count();
        Counts {
            passed: n(Status::Pass),
            failed: n(Status::Fail),
            warned: n(Status::Warn),
            xfailed: n(Status::XFail),
            skipped: n(Status::Skip),
        }
    }

    /// Whether any rule was judged at all.
    pub fn judged(&self) -> usize {
        self.passed + self.failed + self.warned + self.xfailed
    }

    /// The counts in words, in the same order everywhere: the console, the
    /// report and JSON.
    pub fn words(&self) -> String {
        format!(
            "{} passed, {} failed, {} warnings (failed should or convention rules), {} expected \
             failures, {} skipped",
            self.passed, self.failed, self.warned, self.xfailed, self.skipped
        )
    }
}

pub fn markdown(target: &str, entries: &[Entry], leftovers: &[String]) -> String {
    let mut out = String::new();
    writeln!(out, "# CNI conformance report\n").unwrap();
    writeln!(out, "Plugin: `{target}`\n").unwrap();
    writeln!(out, "{}\n", Counts::of(entries).words()).unwrap();
    if !leftovers.is_empty() {
        writeln!(
            out,
            "What the plugin left behind, which the suite removed:\n"
        )
        .unwrap();
        for left in leftovers {
            writeln!(out, "- {left}").unwrap();
        }
        out.push('\n');
    }
    let mut columns: Vec<&str> = VERSIONS.to_vec();
    if entries.iter().any(|e| e.version == "-") {
        columns.insert(0, "-");
    }
    let mut rows: BTreeMap<&str, BTreeMap<&str, Status>> = BTreeMap::new();
    // Per rule, the versions that rest on each (level, text).
    type Group<'a> = (&'a str, &'a str, Vec<&'a str>);
    let mut cited: BTreeMap<&str, Vec<Group>> = BTreeMap::new();
    for e in entries {
        rows.entry(&e.case)
            .or_default()
            .insert(&e.version, e.status);
        if e.status == Status::Skip || e.spec.is_empty() {
            continue;
        }
        let groups = cited.entry(&e.case).or_default();
        match groups
            .iter_mut()
            .find(|(l, s, _)| *l == e.level && *s == e.spec)
        {
            Some(g) => g.2.push(&e.version),
            None => groups.push((&e.level, &e.spec, vec![&e.version])),
        }
    }
    let order = |v: &&str| VERSIONS.iter().position(|x| x == v).unwrap_or(usize::MAX);
    for groups in cited.values_mut() {
        for g in groups.iter_mut() {
            g.2.sort_by_key(order);
        }
    }
    writeln!(out, "| rule | level | {} |", columns.join(" | ")).unwrap();
    writeln!(out, "|---|---|{}", "---|".repeat(columns.len())).unwrap();
    for (case, cells) in &rows {
        let row: Vec<&str> = columns
            .iter()
            .map(|c| cells.get(c).map_or("", |s| s.word()))
            .collect();
        // One entry per level, with its versions when the level changes
        // across them; the spec text per version is in the Rules table.
        let levels: Vec<String> = cited.get(case).map_or_else(Vec::new, |groups| {
            let mut by_level: Vec<(&str, Vec<&str>)> = Vec::new();
            for (l, _, vs) in groups {
                match by_level.iter_mut().find(|(seen, _)| seen == l) {
                    Some((_, all)) => all.extend(vs.iter().copied()),
                    None => by_level.push((l, vs.clone())),
                }
            }
            let single = by_level.len() == 1;
            by_level
                .into_iter()
                .map(|(l, mut vs)| {
                    vs.sort_by_key(order);
                    if single {
                        l.to_string()
                    } else {
                        format!("{l} ({})", vs.join(", "))
                    }
                })
                .collect()
        });
        let level = if levels.is_empty() {
            "-".to_string()
        } else {
            levels.join("; ")
        };
        writeln!(out, "| {case} | {level} | {} |", row.join(" | ")).unwrap();
    }
    writeln!(
        out,
        "\n## Rules\n\nWhat each rule rests on at the versions it ran at, and why its level is \
         what it is.\n\n| rule | versions | level | spec |\n|---|---|---|---|"
    )
    .unwrap();
    for (case, groups) in &cited {
        for (level, spec, versions) in groups {
            writeln!(
                out,
                "| {case} | {} | {level} | {} |",
                versions.join(", "),
                spec.replace('|', "\\|")
            )
            .unwrap();
        }
    }
    let notes: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.status != Status::Pass)
        .collect();
    if !notes.is_empty() {
        writeln!(out, "\n## Details\n").unwrap();
        let mut said = BTreeSet::new();
        for e in notes {
            if said.insert((&e.case, &e.detail, e.status)) {
                writeln!(
                    out,
                    "### {} ({}, level {}, {})\n\n```\n{}\n```\n",
                    e.name,
                    e.status.word(),
                    e.level,
                    e.version,
                    e.detail.trim()
                )
                .unwrap();
            }
        }
    }
    out.push('\n');
    out.push_str(&crate::coverage::markdown("1.1.0"));
    out
}

/// The run's last words, whatever the output format: one line whose
/// verdict and counts are the report's, then the tests behind each count
/// that is not a pass or a skip, and what the plugin left behind.
///
/// libtest shows a rule below `must` that failed as ignored, and `--quiet`
/// shows only a letter, so a plugin author who reads "ok" would ship a
/// plugin that, say, never releases an address. These lines say which rules
/// were broken, at which level, and that `--strict` fails them.
pub fn closing(entries: &[Entry], leftovers: &[String], strict: bool) -> String {
    let counts = Counts::of(entries);
    let mut out = String::new();
    let verdict = if counts.failed > 0 {
        "FAILED"
    } else if counts.judged() == 0 {
        "NOTHING JUDGED"
    } else if counts.warned > 0 {
        "passed, with warnings"
    } else {
        "passed"
    };
    writeln!(out, "cni-conformance: {verdict}: {}", counts.words()).unwrap();
    let names = |status: Status, level: Option<&str>| -> Vec<&str> {
        entries
            .iter()
            .filter(|e| e.status == status && level.is_none_or(|l| e.level == l))
            .map(|e| e.name.as_str())
            .collect()
    };
    let mut list = |label: &str, names: Vec<&str>| {
        if !names.is_empty() {
            writeln!(out, "  {label}: {}", names.join(", ")).unwrap();
        }
    };
    list("failed", names(Status::Fail, None));
    // `should` first: the spec's own word, stronger than a habit.
    let fatal = if strict {
        ""
    } else {
        ", fatal only with --strict"
    };
    for level in ["should", "convention"] {
        list(
            &format!("broke a {level} rule{fatal}"),
            names(Status::Warn, Some(level)),
        );
    }
    list(
        "failed as the expectations file says",
        names(Status::XFail, None),
    );
    for left in leftovers {
        writeln!(out, "  left behind: {left}").unwrap();
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

pub fn junit(target: &str, entries: &[Entry]) -> String {
    let failures = entries.iter().filter(|e| e.status == Status::Fail).count();
    let skipped = entries
        .iter()
        .filter(|e| matches!(e.status, Status::Skip | Status::XFail | Status::Warn))
        .count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    writeln!(
        out,
        "<testsuites tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">\n <testsuite \
         name=\"cni-conformance: {}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
        entries.len(),
        xml_escape(target),
        entries.len()
    )
    .unwrap();
    for e in entries {
        writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\">\n      <properties>\
             <property name=\"level\" value=\"{}\"/>\
             <property name=\"spec\" value=\"{}\"/></properties>",
            xml_escape(&e.case),
            xml_escape(&e.name),
            xml_escape(&e.level),
            xml_escape(&e.spec)
        )
        .unwrap();
        match e.status {
            Status::Pass => {}
            Status::Fail => writeln!(
                out,
                "      <failure message=\"[{}] {}\">{}</failure>",
                xml_escape(&e.level),
                xml_escape(e.detail.lines().next().unwrap_or("")),
                xml_escape(&e.detail)
            )
            .unwrap(),
            Status::Skip | Status::XFail | Status::Warn => writeln!(
                out,
                "      <skipped message=\"{}: {}\"/>",
                e.status.word(),
                xml_escape(&e.detail)
            )
            .unwrap(),
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(case: &str, version: &str, status: Status, detail: &str) -> Entry {
        Entry {
            name: format!("spec::{case}@{version}"),
            case: case.into(),
            version: version.into(),
            level: "must".into(),
            spec: "SPEC.md: the text".into(),
            status,
            detail: detail.into(),
            answer: None,
        }
    }

    #[test]
    fn reports_a_matrix_and_junit() {
        let entries = vec![
            entry("add.result-schema", "1.0.0", Status::Pass, ""),
            entry(
                "add.result-schema",
                "0.4.0",
                Status::Fail,
                "expected <x> & \"y\"",
            ),
            entry(
                "gc.releases-unlisted",
                "1.0.0",
                Status::Skip,
                "needs CNI 1.1.0 or later",
            ),
        ];
        let md = markdown("p", &entries, &[]);
        assert!(md.contains(
            "1 passed, 1 failed, 0 warnings (failed should or convention rules), 0 expected \
             failures, 1 skipped"
        ));
        assert!(
            md.contains("| add.result-schema | must |  |  |  |  | fail | pass |  |"),
            "{md}"
        );
        assert!(
            md.contains("| add.result-schema | 0.4.0, 1.0.0 | must | SPEC.md: the text |"),
            "{md}"
        );
        assert!(md.contains("## Coverage of CNI 1.1.0"), "{md}");
        let xml = junit("p", &entries);
        assert!(xml.contains("failures=\"1\" skipped=\"1\""));
        assert!(xml.contains("expected &lt;x&gt; &amp; &quot;y&quot;"));
        assert!(xml.contains("<skipped message=\"skip: needs CNI 1.1.0 or later\"/>"));
        assert!(
            xml.contains("<property name=\"level\" value=\"must\"/>"),
            "{xml}"
        );
        assert!(xml.contains("<failure message=\"[must] expected"), "{xml}");
    }

    #[test]
    fn a_rule_of_one_level_shows_it_once_whatever_its_text_at_each_version() {
        let mut old = entry("del.repeated", "0.4.0", Status::Pass, "");
        old.spec = "SPEC.md 0.4.0: the text".into();
        let new = entry("del.repeated", "1.0.0", Status::Pass, "");
        let mut lower = entry("del.repeated", "0.3.1", Status::Pass, "");
        lower.level = "should".into();
        let md = markdown("p", &[old.clone(), new.clone()], &[]);
        assert!(md.contains("| del.repeated | must |"), "{md}");
        let md = markdown("p", &[lower, old, new], &[]);
        assert!(
            md.contains("| del.repeated | should (0.3.1); must (0.4.0, 1.0.0) |"),
            "{md}"
        );
    }

    #[test]
    fn the_closing_line_is_the_reports_counts_and_names_each_test_by_level() {
        assert!(closing(&[], &[], false).starts_with("cni-conformance: NOTHING JUDGED: 0 passed"));
        let mut leak = entry("add.reuse-after-release", "1.1.0", Status::Warn, "x");
        leak.level = "should".into();
        let mut habit = entry("add.second-add-ipam", "1.0.0", Status::Warn, "y");
        habit.level = "convention".into();
        let failed = entry("check.after-add", "1.0.0", Status::Fail, "z");
        let known = entry("check.after-add", "0.4.0", Status::XFail, "z");
        let text = closing(&[habit, leak, failed, known], &["a daemon".into()], false);
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "cni-conformance: FAILED: 0 passed, 1 failed, 2 warnings (failed should or \
             convention rules), 1 expected failures, 0 skipped"
        );
        let should = text
            .find("broke a should rule, fatal only with --strict: spec::add.reuse-after-release@1.1.0")
            .unwrap();
        let convention = text
            .find("broke a convention rule, fatal only with --strict: spec::add.second-add-ipam@1.0.0")
            .unwrap();
        assert!(should < convention, "{text}");
        assert!(
            text.contains("  failed: spec::check.after-add@1.0.0"),
            "{text}"
        );
        assert!(
            text.contains("expectations file says: spec::check.after-add@0.4.0"),
            "{text}"
        );
        assert!(text.contains("  left behind: a daemon"), "{text}");
    }
}
