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
}

/// Results as the trials finish, from any thread.
#[derive(Debug, Default)]
pub struct Results(Mutex<Vec<Entry>>);

impl Results {
    pub fn push(&self, e: Entry) {
        self.0.lock().expect("results lock").push(e);
    }

    pub fn entries(&self) -> Vec<Entry> {
        let mut v = self.0.lock().expect("results lock").clone();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

pub fn markdown(target: &str, entries: &[Entry]) -> String {
    let mut out = String::new();
    let count = |s: Status| entries.iter().filter(|e| e.status == s).count();
    writeln!(out, "# CNI conformance report\n").unwrap();
    writeln!(out, "Plugin: `{target}`\n").unwrap();
    writeln!(
        out,
        "{} passed, {} failed, {} skipped, {} expected failures, {} warnings (failed should or \
         convention rules)\n",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skip),
        count(Status::XFail),
        count(Status::Warn)
    )
    .unwrap();
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
        let levels: Vec<String> = cited.get(case).map_or_else(Vec::new, |groups| {
            groups
                .iter()
                .map(|(l, _, vs)| {
                    if groups.len() == 1 {
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

/// The closing lines of a run that broke rules below `must`, or `None`.
///
/// libtest shows such a rule as ignored and the run as ok, and `--quiet`
/// shows only a dot, so a plugin author who reads "ok" would ship a plugin
/// that, say, never releases an address. These lines say, whatever the
/// output format, which rules were broken, at which level, and that
/// `--strict` fails them.
pub fn warnings(entries: &[Entry]) -> Option<String> {
    let mut by_level: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.status == Status::Warn) {
        by_level.entry(&e.level).or_default().insert(&e.name);
    }
    if by_level.is_empty() {
        return None;
    }
    let mut out = String::new();
    let total: usize = by_level.values().map(BTreeSet::len).sum();
    writeln!(
        out,
        "cni-conformance: every must rule held, but {total} test(s) broke a rule below must; \
         --strict fails them:"
    )
    .unwrap();
    // `should` first: the spec's own word, stronger than a habit. Only
    // these two warn; a `must` fails.
    for level in ["should", "convention"] {
        if let Some(names) = by_level.get(level) {
            let names: Vec<&str> = names.iter().copied().collect();
            writeln!(out, "  {level}: {}", names.join(", ")).unwrap();
        }
    }
    Some(out)
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
        let md = markdown("p", &entries);
        assert!(md.contains("1 passed, 1 failed, 1 skipped, 0 expected failures, 0 warnings"));
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
    fn warnings_name_the_rules_below_must_by_level() {
        assert_eq!(warnings(&[entry("a", "1.1.0", Status::Pass, "")]), None);
        let mut leak = entry("add.reuse-after-release", "1.1.0", Status::Warn, "x");
        leak.level = "should".into();
        let mut habit = entry("add.second-add-ipam", "1.0.0", Status::Warn, "y");
        habit.level = "convention".into();
        let text = warnings(&[habit, leak]).unwrap();
        assert!(text.contains("2 test(s) broke a rule below must"), "{text}");
        let should = text
            .find("should: spec::add.reuse-after-release@1.1.0")
            .unwrap();
        let convention = text
            .find("convention: spec::add.second-add-ipam@1.0.0")
            .unwrap();
        assert!(should < convention, "{text}");
    }
}
