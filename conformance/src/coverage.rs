//! How much of the spec the suite judges: for every statement that binds a
//! plugin with MUST or SHOULD at a spec version, whether a rule checks all
//! of it, part of it (and what it leaves), none of it, or why a black-box
//! suite cannot. Counted from the rules' own citations, so it cannot drift
//! from what the rules do.

use std::fmt::Write as _;

use crate::rules::{self, Extent, Rule};
use crate::spec::{self, Doc, Judge, Statement, Word};

/// How far the rules reach into one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Covered,
    /// Each rule that checks part of it, with what it leaves unchecked.
    Partly(Vec<(&'static str, &'static str)>),
    NotCovered,
    NotBlackBox(&'static str),
}

impl Status {
    pub fn word(&self) -> &'static str {
        match self {
            Status::Covered => "covered",
            Status::Partly(_) => "partly covered",
            Status::NotCovered => "not covered",
            Status::NotBlackBox(_) => "not testable black-box",
        }
    }

    /// What is missing, or why it cannot be tested.
    pub fn detail(&self) -> String {
        match self {
            Status::Covered | Status::NotCovered => String::new(),
            Status::Partly(parts) => {
                // Rules that leave the same thing unchecked, together.
                let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
                for (rule, unchecked) in parts {
                    match groups.iter_mut().find(|(_, u)| u == unchecked) {
                        Some((rules, _)) => rules.push(rule),
                        None => groups.push((vec![rule], unchecked)),
                    }
                }
                groups
                    .iter()
                    .map(|(rules, unchecked)| format!("{}: {unchecked}", rules.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Status::NotBlackBox(why) => why.to_string(),
        }
    }
}

pub struct Row {
    pub statement: &'static Statement,
    pub word: Word,
    pub status: Status,
    /// The rules that cite it.
    pub rules: Vec<&'static str>,
}

fn every_rule() -> Vec<Rule> {
    let mut all = rules::global_rules();
    all.extend(rules::version_rules());
    all
}

/// One row per statement binding a plugin at `version`.
pub fn rows(version: &str) -> Vec<Row> {
    let rules = every_rule();
    spec::binding_plugins(version)
        .map(|s| {
            let cites: Vec<(&'static str, Extent)> = rules
                .iter()
                .flat_map(|r| {
                    r.cites
                        .iter()
                        .filter(|c| c.id == s.id)
                        .map(move |c| (r.id, c.extent))
                })
                .collect();
            let status = if cites.iter().any(|(_, e)| *e == Extent::Full) {
                Status::Covered
            } else if !cites.is_empty() {
                Status::Partly(
                    cites
                        .iter()
                        .filter_map(|(r, e)| match e {
                            Extent::Partly(u) => Some((*r, *u)),
                            Extent::Full => None,
                        })
                        .collect(),
                )
            } else if let Judge::NotBlackBox(why) = s.judge {
                Status::NotBlackBox(why)
            } else {
                Status::NotCovered
            };
            let mut rules: Vec<&'static str> = cites.iter().map(|(r, _)| *r).collect();
            rules.dedup();
            Row {
                statement: s,
                word: s.at(version).expect("binding at this version").word,
                status,
                rules,
            }
        })
        .collect()
}

/// Counts for one document and word: covered, partly, not covered, not
/// testable black-box.
pub fn counts(rows: &[Row], doc: Doc, word: Word) -> [usize; 4] {
    let mut n = [0; 4];
    for r in rows
        .iter()
        .filter(|r| r.statement.doc == doc && r.word == word)
    {
        n[match r.status {
            Status::Covered => 0,
            Status::Partly(_) => 1,
            Status::NotCovered => 2,
            Status::NotBlackBox(_) => 3,
        }] += 1;
    }
    n
}

fn totals(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for doc in [Doc::Spec, Doc::Conventions] {
        for word in [Word::Must, Word::Should] {
            let [c, p, n, b] = counts(rows, doc, word);
            let all = c + p + n + b;
            out.push(format!(
                "{} {}: {all} statement{}; {c} covered, {p} partly covered, {n} not covered, {b} \
                 not testable black-box",
                doc.file(),
                word,
                if all == 1 { "" } else { "s" }
            ));
        }
    }
    out
}

/// The report `--coverage` prints.
pub fn text(version: &str) -> String {
    let rows = rows(version);
    let mut out = format!(
        "Coverage of CNI {version}: the statements of SPEC.md and CONVENTIONS.md that bind a \
         plugin with MUST or SHOULD, and the rules that judge them.\n"
    );
    for doc in [Doc::Spec, Doc::Conventions] {
        writeln!(out, "\n{}", doc.file()).unwrap();
        for r in rows.iter().filter(|r| r.statement.doc == doc) {
            writeln!(
                out,
                "  {:<38} {:<6} {:<22} {}",
                r.statement.id,
                r.word.text(),
                r.status.word(),
                r.rules.join(", ")
            )
            .unwrap();
            let detail = r.status.detail();
            if !detail.is_empty() {
                writeln!(out, "      {detail}").unwrap();
            }
        }
    }
    writeln!(out, "\nTotals").unwrap();
    for line in totals(&rows) {
        writeln!(out, "  {line}").unwrap();
    }
    out
}

/// The same as a Markdown section, for the report.
pub fn markdown(version: &str) -> String {
    let rows = rows(version);
    let mut out = format!(
        "## Coverage of CNI {version}\n\nEvery statement of SPEC.md and CONVENTIONS.md that \
         binds a plugin with MUST or SHOULD, and the rules that judge it.\n\n| statement | word | \
         coverage | rules | what is missing, or why not |\n|---|---|---|---|---|\n"
    );
    for r in &rows {
        writeln!(
            out,
            "| [{}]({}) | {} | {} | {} | {} |",
            r.statement.id,
            r.statement.url(version),
            r.word.text(),
            r.status.word(),
            r.rules.join(", "),
            r.status.detail().replace('|', "\\|")
        )
        .unwrap();
    }
    out.push('\n');
    for line in totals(&rows) {
        writeln!(out, "- {line}").unwrap();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_left_is_explained() {
        for r in rows("1.1.0") {
            assert_ne!(
                r.status,
                Status::NotCovered,
                "{} is neither judged nor explained",
                r.statement.id
            );
        }
    }

    #[test]
    fn a_statement_judged_by_a_rule_is_not_called_untestable() {
        let rules = every_rule();
        for s in spec::all() {
            if matches!(s.judge, Judge::NotBlackBox(_)) {
                let citing: Vec<&str> = rules
                    .iter()
                    .filter(|r| r.cites.iter().any(|c| c.id == s.id))
                    .map(|r| r.id)
                    .collect();
                assert!(citing.is_empty(), "{} is cited by {citing:?}", s.id);
            }
        }
    }

    #[test]
    fn at_least_50_of_the_spec_statements_are_judged() {
        let rows = rows("1.1.0");
        let judged: usize = [Word::Must, Word::Should]
            .into_iter()
            .map(|w| {
                let [c, p, _, _] = counts(&rows, Doc::Spec, w);
                c + p
            })
            .sum();
        assert!(judged >= 50, "{judged} of SPEC.md's statements judged");
    }

    #[test]
    fn the_readme_shows_the_counts() {
        let readme = include_str!("../README.md");
        for line in totals(&rows("1.1.0")) {
            assert!(readme.contains(&line), "README.md lacks: {line}");
        }
    }
}
