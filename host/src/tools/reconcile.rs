//! `wasm-ipam reconcile`: one pass of the reconciler ([`crate::reconcile`])
//! by hand, or with `--dry-run` the list of what the runtime no longer has.
//! `wasm-ipam serve --reconcile-cri` runs the same pass on a timer.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;

use crate::reconcile::{self, Report, Settings};
use crate::runner::Mode;

use super::leases::age;

/// `600`, `600s`, `10m`, `1h`: a duration in whole seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 10m or 1h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Runs one pass and prints what it found and did. An error from the
/// runtime, or a network that could not be reconciled, is a failure
/// (exit 1), after what could be done was done.
pub fn run(settings: &Settings, now: u64, out: &mut dyn Write) -> anyhow::Result<()> {
    let report = reconcile::run(settings, now)?;
    render(&report, settings, now, out)?;
    let failed: Vec<&str> = report
        .networks
        .iter()
        .filter(|n| n.outcome.is_err())
        .map(|n| n.network.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} network(s) could not be reconciled: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn render(
    report: &Report,
    settings: &Settings,
    now: u64,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let dry = settings.mode == Mode::DryRun;
    writeln!(
        out,
        "{} knows {} pod sandbox{}",
        report.runtime,
        report.sandboxes,
        if report.sandboxes == 1 { "" } else { "es" }
    )?;
    for (file, why) in &report.skipped {
        writeln!(out, "skipped {}: {why}", file.display())?;
    }
    if report.networks.is_empty() {
        writeln!(
            out,
            "no network in {} delegates to wasm-ipam",
            settings.conf_dir.display()
        )?;
    }
    let grace = age(settings.grace.as_secs());
    for n in &report.networks {
        let o = match &n.outcome {
            Err(e) => {
                writeln!(out, "{} ({}): {e}", n.network, n.file.display())?;
                continue;
            }
            Ok(o) => o,
        };
        writeln!(
            out,
            "{} ({}, node {}): {} attachment{}, {} without a sandbox",
            n.network,
            n.policy.as_deref().unwrap_or("not used yet"),
            n.node,
            o.held,
            if o.held == 1 { "" } else { "s" },
            o.orphans.len()
        )?;
        for orphan in &o.orphans {
            let what = format!(
                "{} of {}/{}",
                if orphan.addresses.is_empty() {
                    "nothing".to_string()
                } else {
                    orphan.addresses.join(", ")
                },
                orphan.container_id,
                orphan.ifname
            );
            let seen = if orphan.since == now {
                "first seen now".to_string()
            } else {
                format!("orphaned for {}", age(now.saturating_sub(orphan.since)))
            };
            match (orphan.released, dry) {
                (true, false) => writeln!(out, "  released {what}: {seen}")?,
                (true, true) => writeln!(out, "  would release {what}: {seen}")?,
                (false, _) => writeln!(
                    out,
                    "  kept {what}: {seen}; released once orphaned for {grace}"
                )?,
            }
        }
    }
    let released: usize = report
        .networks
        .iter()
        .filter_map(|n| n.outcome.as_ref().ok())
        .map(|o| o.orphans.iter().filter(|x| x.released).count())
        .sum();
    if dry {
        writeln!(
            out,
            "{released} attachment(s) would be released (dry run: nothing changed)"
        )?;
    } else {
        writeln!(out, "{released} attachment(s) released")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "m", "10d", "1.5h", "-1", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
