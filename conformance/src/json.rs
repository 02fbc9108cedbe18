//! `--format json`: the tests run as libtest's harness runs them (the same
//! filter, `--exact`, `--skip` and `--test-threads`), and each is reported
//! as one JSON object a line carrying what a CI system needs to show it
//! without parsing prose: the status (`pass`, `fail`, `warn`, `xfail`,
//! `skip`), the level the rule was judged at, the version, the reason, the
//! spec text it rests on, and what the plugin answered, as JSON. libtest's
//! own JSON carried only a failure's message, as one escaped string.
//!
//! The last line is the run's counts, the same as the report's.

use std::collections::VecDeque;
use std::sync::Mutex;

use libtest_mimic::{Arguments, Trial};
use serde_json::{Value, json};

use crate::report::{Counts, Entry, Results, Status};
use crate::suite::Test;

/// One test's line.
pub fn event(entry: &Entry) -> Value {
    json!({
        "type": "test",
        "name": entry.name,
        "event": match entry.status {
            Status::Pass => "ok",
            Status::Fail => "failed",
            _ => "ignored",
        },
        "status": entry.status.word(),
        "rule": entry.case,
        "version": entry.version,
        "level": entry.level,
        "reason": entry.detail,
        "spec": entry.spec,
        "answer": entry.answer,
    })
}

/// The last line: the counts, and whether the run failed.
pub fn suite_event(counts: &Counts, filtered_out: usize) -> Value {
    json!({
        "type": "suite",
        "event": if counts.failed > 0 { "failed" } else { "ok" },
        "passed": counts.passed,
        "failed": counts.failed,
        "warnings": counts.warned,
        "expected_failures": counts.xfailed,
        "skipped": counts.skipped,
        "filtered_out": filtered_out,
    })
}

/// Runs the tests `args` selects and prints a line for each as it ends,
/// then the suite's; the counts of what ran.
pub fn run(args: &Arguments, tests: Vec<Test>, results: &Results) -> Counts {
    let total = tests.len();
    let selected: VecDeque<Test> = tests
        .into_iter()
        .filter(|t| !args.is_filtered_out(&Trial::test(t.name.clone(), || Ok(()))))
        .collect();
    let filtered_out = total - selected.len();
    let threads = args
        .test_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let queue = Mutex::new(selected);
    let out = Mutex::new(std::io::stdout());
    let mut ran = Vec::new();
    let ran_names = Mutex::new(&mut ran);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let Some(test) = queue.lock().expect("queue").pop_front() else {
                        return;
                    };
                    let name = test.name.clone();
                    // A panic is the suite's own bug; it still gets a line.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test.run));
                    let entry = results.entry(&name).unwrap_or_else(|| Entry {
                        name: name.clone(),
                        case: name.clone(),
                        version: "-".into(),
                        level: "-".into(),
                        spec: String::new(),
                        status: Status::Fail,
                        detail: "the suite panicked running this test".into(),
                        answer: None,
                    });
                    use std::io::Write;
                    let mut out = out.lock().expect("stdout");
                    let _ = writeln!(out, "{}", event(&entry));
                    ran_names.lock().expect("ran").push(entry);
                }
            });
        }
    });
    let counts = Counts::of(&ran);
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{}", suite_event(&counts, filtered_out));
    counts
}
