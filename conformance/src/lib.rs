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

pub mod chain;
pub mod coverage;
pub mod expectations;
pub mod host;
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
