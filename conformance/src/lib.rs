//! cni-conformance: a conformance suite for CNI plugins.
//!
//! The CNI project has no conformance suite, so plugins are checked only by
//! the runtimes that break on them. This crate replays recorded runtime
//! invocations ([`recordings`]) and spec-derived scenarios ([`rules`])
//! against any plugin: a native binary, or a wasm-ipam policy run through
//! the `wasm-ipam` host ([`target`]). Each case is a libtest-mimic trial, so
//! the suite filters, lists and reports like `cargo test`, and it writes a
//! Markdown and JUnit report for CI systems ([`report`]). Known deviations
//! of a plugin live in an expectations file, each with its reason
//! ([`expectations`]); an expected failure that starts passing is reported,
//! so the list stays honest.
//!
//! A judge must be exact, so no rule states its own level. The normative
//! statements of SPEC.md and CONVENTIONS.md are data ([`spec`]), quoted per
//! spec version; each rule cites the statements it tests and takes its level
//! from the strongest of them at the version under test, and lowering one
//! needs a written reason that the report shows. [`coverage`] counts which
//! statements no rule tests, and why.

pub mod chain;
pub mod coverage;
pub mod expectations;
pub mod host;
pub mod json;
pub mod kind;
pub mod netns;
pub mod prev;
pub mod record;
pub mod recordings;
pub mod report;
pub mod rules;
pub mod schema;
pub mod spec;
pub mod suite;
pub mod target;
