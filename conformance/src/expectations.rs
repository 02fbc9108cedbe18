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
}
