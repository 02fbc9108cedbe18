//! A plugin's known deviations, in TOML, after wasi-testsuite:
//!
//! ```toml
//! [[expected]]
//! test = "spec::config.missing-ipam@*"   # a test name; `*` matches anything
//! status = "fail"                         # or "skip": not run at all
//! reason = "host-local answers code 999 when ipam is missing"
//! ```
//!
//! An expected failure that passes fails the run, and an entry that matches
//! no test is reported, so the file cannot rot into a list of excuses.
//!
//! An IPAM plugin that needs an interface (dhcp) is judged through an
//! interface plugin that delegates to it (macvlan), whose own faults then
//! show too. Those are the carrier's, already recorded when it was judged
//! on its own: [`Expectations::carried`] loads its file so that each of its
//! faults is expected and reported as the carrier's, and the IPAM plugin
//! needs no file of its own for them.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Fail,
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub test: String,
    pub status: Status,
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    expected: Vec<Expectation>,
}

#[derive(Debug, Default, Clone)]
pub struct Expectations(pub Vec<Expectation>);

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

impl Expectations {
    pub fn load(path: &Path) -> Result<Expectations, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(e) = file.expected.iter().find(|e| e.reason.trim().is_empty()) {
            return Err(format!(
                "{}: the expectation for {} has no reason",
                path.display(),
                e.test
            ));
        }
        Ok(Expectations(file.expected))
    }

    /// The expectations file of the plugin an IPAM plugin is judged
    /// through: each reason says whose fault it is, and where it was
    /// recorded.
    pub fn carried(path: &Path) -> Result<Expectations, String> {
        let mut carried = Expectations::load(path)?;
        for e in &mut carried.0 {
            e.reason = format!(
                "the carrier's own fault, as recorded in {}: {}",
                path.display(),
                e.reason
            );
        }
        Ok(carried)
    }

    /// These expectations, then `other`'s for tests none of these match.
    pub fn and(mut self, other: Expectations) -> Expectations {
        self.0.extend(other.0);
        self
    }

    pub fn find(&self, test: &str) -> Option<&Expectation> {
        self.0.iter().find(|e| glob_match(&e.test, test))
    }

    /// Patterns that match none of `tests`.
    pub fn unused<'a>(&'a self, tests: &[String]) -> Vec<&'a str> {
        self.0
            .iter()
            .filter(|e| !tests.iter().any(|t| glob_match(&e.test, t)))
            .map(|e| e.test.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "spec::check.after-add@*",
            "spec::check.after-add@0.4.0"
        ));
        assert!(glob_match("*@0.1.0", "spec::env.missing-netns@0.1.0"));
        assert!(glob_match(
            "spec::*.exhaustion@*",
            "spec::add.exhaustion@1.0.0"
        ));
        assert!(!glob_match(
            "spec::check.*@1.0.0",
            "spec::check.after-add@0.4.0"
        ));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn loads_and_refuses_reasonless_entries() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            "[[expected]]\ntest = \"spec::a@*\"\nstatus = \"fail\"\nreason = \"because\"\n",
        )
        .unwrap();
        let e = Expectations::load(&good).unwrap();
        assert_eq!(e.find("spec::a@1.0.0").unwrap().status, Status::Fail);
        assert_eq!(e.unused(&["spec::b@1.0.0".into()]), ["spec::a@*"]);
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[[expected]]\ntest = \"x\"\nstatus = \"fail\"\nreason = \"\"\n",
        )
        .unwrap();
        assert!(Expectations::load(&bad).unwrap_err().contains("no reason"));
    }

    #[test]
    fn a_carriers_faults_say_whose_they_are_and_come_after_the_plugins_own() {
        let dir = tempfile::tempdir().unwrap();
        let carrier = dir.path().join("macvlan.toml");
        std::fs::write(
            &carrier,
            "[[expected]]\ntest = \"spec::a@*\"\nstatus = \"fail\"\nreason = \"macvlan's\"\n",
        )
        .unwrap();
        let carried = Expectations::carried(&carrier).unwrap();
        let reason = &carried.find("spec::a@1.0.0").unwrap().reason;
        assert!(
            reason.starts_with("the carrier's own fault, as recorded in "),
            "{reason}"
        );
        assert!(reason.ends_with("macvlan.toml: macvlan's"), "{reason}");
        let own = Expectations(vec![Expectation {
            test: "spec::a@1.0.0".into(),
            status: Status::Skip,
            reason: "its own".into(),
        }]);
        let both = own.and(carried);
        assert_eq!(both.find("spec::a@1.0.0").unwrap().reason, "its own");
        assert_eq!(both.find("spec::a@0.4.0").unwrap().status, Status::Fail);
    }
}
