//! The normative statements the suite judges by: every sentence of SPEC.md
//! and CONVENTIONS.md that binds a plugin with MUST or SHOULD at spec
//! 1.1.0, plus the MAYs and runtime duties the rules lean on, each quoted
//! as the spec words it, in every version whose wording differs.
//!
//! After opencontainers/runtime-tools, which holds each requirement of the
//! runtime spec as a constant quoting it: a rule names the statements it
//! tests ([`crate::rules::Cite`]), its level comes from their words at the
//! version under test, and a failure names the statement it breaks. So a
//! level can be traced to a sentence, and coverage can be counted
//! ([`crate::coverage`]).
//!
//! Where the text came from: SPEC.md and CONVENTIONS.md at 1.1.0 as libcni
//! 1.3.0 ships them (Debian's golang-github-appc-cni 1.3.0), which differ
//! from the `spec-v1.1.0` tag in one line (containernetworking/cni#1103
//! renamed GC's `cni.dev/attachments` to `cni.dev/valid-attachments`; the
//! tag's wording is the one quoted, see `spec/gc.attachments`); 1.0.0 from
//! libcni 1.1.2; 0.1.0 to 0.4.0 from the tagged copies cni.dev keeps.
//! 0.3.0 differs from 0.3.1 only by the `ip`/`ips` fix, so they share
//! wordings. Markdown links are quoted as their text, a list as one
//! sentence, and `[...]` stands for the items of a list left out between
//! its lead-in and the item quoted.
//!
//! Where the spec contradicts itself, the statement's `note` says so and
//! which reading the suite takes.

mod conventions_md;
mod spec_md;

use std::fmt;

use cni::version::at_least;

use crate::rules::Level;

/// Which document a statement is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    Spec,
    Conventions,
}

impl Doc {
    pub fn file(self) -> &'static str {
        match self {
            Doc::Spec => "SPEC.md",
            Doc::Conventions => "CONVENTIONS.md",
        }
    }
}

/// The RFC 2119 keyword a sentence uses (MUST NOT and REQUIRED are MUST,
/// SHOULD NOT and RECOMMENDED are SHOULD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Word {
    Must,
    Should,
    May,
}

impl Word {
    pub fn text(self) -> &'static str {
        match self {
            Word::Must => "MUST",
            Word::Should => "SHOULD",
            Word::May => "MAY",
        }
    }

    /// The level of a rule that tests this word: a MAY obliges no one, so
    /// testing it is at most a convention.
    pub fn level(self) -> Level {
        match self {
            Word::Must => Level::Must,
            Word::Should => Level::Should,
            Word::May => Level::Convention,
        }
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Whom a statement binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// Every plugin.
    Plugin,
    Ipam,
    /// A plugin that creates the container's interface.
    Interface,
    /// A plugin run after another in a chain (it gets a `prevResult`).
    Chained,
    /// A plugin that delegates to another, such as its IPAM plugin.
    Delegating,
    Runtime,
}

impl Actor {
    pub fn word(self) -> &'static str {
        match self {
            Actor::Plugin => "plugin",
            Actor::Ipam => "IPAM plugin",
            Actor::Interface => "interface plugin",
            Actor::Chained => "chained plugin",
            Actor::Delegating => "delegating plugin",
            Actor::Runtime => "runtime",
        }
    }
}

/// How a statement reads from one spec version on.
#[derive(Debug, Clone, Copy)]
pub struct Wording {
    /// The first spec version with this wording.
    pub from: &'static str,
    /// The version from which it reads otherwise, or is gone.
    pub until: Option<&'static str>,
    pub word: Word,
    /// The sentence, quoted.
    pub text: &'static str,
}

/// From `from` on, until a later wording replaces it.
pub const fn since(from: &'static str, word: Word, text: &'static str) -> Wording {
    Wording {
        from,
        until: None,
        word,
        text,
    }
}

impl Wording {
    /// This wording is gone from `version` on.
    pub const fn until(mut self, version: &'static str) -> Wording {
        self.until = Some(version);
        self
    }

    fn holds_at(&self, version: &str) -> bool {
        at_least(version, self.from) && self.until.is_none_or(|u| !at_least(version, u))
    }
}

/// Whether a black-box suite can judge a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// It can: a rule does, or the coverage report says it is missing.
    BlackBox,
    /// It cannot, for this reason.
    NotBlackBox(&'static str),
}

/// One normative statement.
#[derive(Debug, Clone, Copy)]
pub struct Statement {
    /// `spec/<section>.<name>` or `conv/<section>.<name>`.
    pub id: &'static str,
    pub doc: Doc,
    /// The section it is in, as the 1.1.0 text names it.
    pub section: &'static str,
    /// The section's anchor in the 1.1.0 document.
    pub anchor: &'static str,
    pub actor: Actor,
    /// Ascending by version; where none holds, the statement is not in
    /// that version's text.
    pub wordings: &'static [Wording],
    pub judge: Judge,
    /// A contradiction in the spec, or the reading the suite takes.
    pub note: Option<&'static str>,
}

impl Statement {
    /// A statement a black-box test can judge, with no note; the tables
    /// change that with [`Statement::not_black_box`] and [`Statement::note`].
    const fn new(
        doc: Doc,
        id: &'static str,
        (section, anchor): (&'static str, &'static str),
        actor: Actor,
        wordings: &'static [Wording],
    ) -> Statement {
        Statement {
            id,
            doc,
            section,
            anchor,
            actor,
            wordings,
            judge: Judge::BlackBox,
            note: None,
        }
    }

    const fn not_black_box(mut self, why: &'static str) -> Statement {
        self.judge = Judge::NotBlackBox(why);
        self
    }

    const fn note(mut self, note: &'static str) -> Statement {
        self.note = Some(note);
        self
    }

    /// Its wording in the spec of `version`, if it is in it.
    pub fn at(&self, version: &str) -> Option<&'static Wording> {
        self.wordings.iter().rev().find(|w| w.holds_at(version))
    }

    /// Where to read it: the document at the spec tag of `version`.
    pub fn url(&self, version: &str) -> String {
        let base = format!(
            "https://github.com/containernetworking/cni/blob/spec-v{version}/{}",
            self.doc.file()
        );
        if version == "1.1.0" {
            format!("{base}#{}", self.anchor)
        } else {
            base
        }
    }

    /// `spec/del.multiple (MUST): "Plugins MUST ..."`, as of `version`.
    pub fn cite(&self, version: &str) -> String {
        match self.at(version) {
            Some(w) => format!("{} ({}): \"{}\"", self.id, w.word, w.text),
            None => format!("{} (not in SPEC {version})", self.id),
        }
    }
}

/// Every statement the suite knows.
pub fn all() -> impl Iterator<Item = &'static Statement> {
    spec_md::STATEMENTS
        .iter()
        .chain(conventions_md::STATEMENTS.iter())
}

/// The statement `id`; a rule citing an unknown id is a bug the tests
/// catch.
pub fn find(id: &str) -> Option<&'static Statement> {
    all().find(|s| s.id == id)
}

/// The statements that bind a plugin with MUST or SHOULD at `version`:
/// what the suite's coverage is counted against.
pub fn binding_plugins(version: &str) -> impl Iterator<Item = &'static Statement> + '_ {
    all().filter(move |s| {
        s.actor != Actor::Runtime && s.at(version).is_some_and(|w| w.word != Word::May)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = BTreeSet::new();
        for s in all() {
            assert!(seen.insert(s.id), "{} twice", s.id);
            let prefix = match s.doc {
                Doc::Spec => "spec/",
                Doc::Conventions => "conv/",
            };
            assert!(s.id.starts_with(prefix), "{}", s.id);
            assert!(!s.wordings.is_empty(), "{} has no wording", s.id);
        }
    }

    #[test]
    fn wordings_run_forward_and_never_overlap() {
        for s in all() {
            for pair in s.wordings.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                assert!(
                    at_least(b.from, a.from) && a.from != b.from,
                    "{}: wordings out of order",
                    s.id
                );
                if let Some(u) = a.until {
                    assert!(at_least(b.from, u), "{}: wordings overlap", s.id);
                }
            }
            for w in s.wordings {
                assert!(!w.text.trim().is_empty(), "{}", s.id);
                assert!(
                    cni::version::VERSIONS.contains(&w.from),
                    "{}: {}",
                    s.id,
                    w.from
                );
            }
        }
    }

    #[test]
    fn the_version_under_test_picks_the_wording() {
        let del = find("spec/del.multiple").unwrap();
        assert_eq!(del.at("1.1.0").unwrap().word, Word::Must);
        assert_eq!(del.at("0.4.0").unwrap().word, Word::Should);
        assert!(del.at("0.3.1").is_none());
        let bare = find("spec/del.bare").unwrap();
        assert!(bare.at("0.4.0").is_some() && bare.at("1.0.0").is_none());
        assert!(
            del.url("1.1.0")
                .ends_with("SPEC.md#del-remove-container-from-network-or-un-apply-modifications")
        );
        assert!(del.url("0.4.0").contains("/spec-v0.4.0/SPEC.md"));
    }

    #[test]
    fn the_table_holds_what_the_1_1_0_text_binds_plugins_to() {
        let count = |doc: Doc, word: Word| {
            binding_plugins("1.1.0")
                .filter(|s| s.doc == doc && s.at("1.1.0").unwrap().word == word)
                .count()
        };
        // SPEC.md at 1.1.0: 27 MUST and 30 SHOULD sentences bind plugins;
        // CONVENTIONS.md: one MUST and six SHOULDs.
        assert_eq!(count(Doc::Spec, Word::Must), 27);
        assert_eq!(count(Doc::Spec, Word::Should), 30);
        assert_eq!(count(Doc::Conventions, Word::Must), 1);
        assert_eq!(count(Doc::Conventions, Word::Should), 6);
    }
}
