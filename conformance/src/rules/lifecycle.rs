//! ADD, DEL and CHECK as every kind of plugin sees them: a valid result,
//! DEL that succeeds whatever is already gone, CHECK right after ADD.

use super::{ALL, Case, Checked, Cite, Finding, IPAM, NAMESPACED, Rule};
use crate::target::PluginKind::{Interface, Ipam};

fn result_schema(case: &Case) -> Checked {
    case.add("c1", &case.conf()).map(drop)?;
    Ok(())
}

fn second_add_fails(case: &Case) -> Checked {
    let conf = case.conf();
    let first = case.add_conf("c1", &conf)?;
    case.run(case.call("ADD", "c1")?, &first)
        .result(case.version)?;
    case.run(case.call("ADD", "c1")?, &first)
        .error(&[])
        .map(drop)?;
    Ok(())
}

fn del_repeated(case: &Case) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.del("c1", &conf, &r)?;
    case.del("c1", &conf, &r)?;
    Ok(())
}

fn del_unknown(case: &Case) -> Checked {
    case.run(case.call("DEL", "never-added")?, &case.conf())
        .quiet_success()?;
    Ok(())
}

fn del_bare(case: &Case) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    let call = cni::exec::Call {
        netns: None,
        ..case.call("DEL", "c1")?
    };
    case.run(call, &conf).quiet_success()?;
    // What such a DEL should still release: the IPAM reservation, which a
    // CHECK (0.4.0 and later) no longer finds.
    if case.target.plugin_kind == Ipam && cni::version::at_least(case.version, "0.4.0") {
        let check = case.run(case.call("CHECK", "c1")?, &case.with_prev(&conf, &r));
        if check.out.ok() {
            return Err(Finding::at(
                "spec/del.ipam-release",
                check
                    .fail("an error: DEL without CNI_NETNS or prevResult released the reservation"),
            ));
        }
    }
    Ok(())
}

/// ADD and DEL of one attachment, then what runs in the case's namespaces
/// that the suite did not start: a daemon the plugin started for the
/// attachment and did not stop (the suite kills it, and names it).
fn del_leaves_nothing_running(case: &Case) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.del("c1", &conf, &r)?;
    let mut left = case.host()?.leftovers();
    left.extend(crate::netns::processes(case.sandbox("c1")?.name()));
    if left.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = left
        .iter()
        .map(|(pid, cmd)| format!("pid {pid}: {cmd}"))
        .collect();
    Err(format!(
        "after the ADD and DEL of the only attachment, nothing of the plugin's still running; \
         still running: {}",
        named.join("; ")
    )
    .into())
}

fn check_after_add(case: &Case) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.run(case.call("CHECK", "c1")?, &case.with_prev(&conf, &r))
        .quiet_success()?;
    Ok(())
}

fn check_below_040(case: &Case) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.run(case.call("CHECK", "c1")?, &case.with_prev(&conf, &r))
        .error(&[1])
        .map(drop)?;
    Ok(())
}

pub fn rules() -> Vec<Rule> {
    const TOLERANT: Cite = Cite::partly(
        "spec/del.tolerate-missing",
        "for what the DEL rules take away: the attachment, the namespace, prevResult",
    );
    vec![
        Rule::new("add.result-schema", result_schema)
            .cites(const { &[
                Cite::full("spec/add.result"),
                Cite::full("spec/result.add-keys"),
                Cite::full("spec/result.output"),
                Cite::full("spec/result.json-stdout"),
                Cite::partly(
                    "spec/status.not-relied",
                    "no rule calls STATUS before its ADD",
                )
                .aside(),
            ] })
            .kinds(ALL),
        Rule::new("add.second-add-fails", second_add_fails)
            .cites(const { &[Cite::partly(
                "spec/add.existing-interface",
                "the interface that exists is the one the plugin's own ADD made; \
                 add.existing-interface has the suite make it",
            )] })
            .kinds(&[Interface]),
        Rule::new("add.second-add-ipam", second_add_fails)
            .habit(
                "the reference IPAM plugins refuse a second ADD for one container and interface \
                 (host-local: \"duplicate allocation is not allowed\"); the spec asks the runtime \
                 not to send one (spec/runtime.no-second-add) and says nothing of what an IPAM \
                 plugin answers",
            )
            .kinds(IPAM),
        Rule::new("del.repeated", del_repeated)
            .cites(const { &[Cite::full("spec/del.multiple"), TOLERANT] })
            .kinds(ALL),
        Rule::new("del.unknown-container", del_unknown)
            .cites(const { &[
                Cite::partly(
                    "spec/del.multiple",
                    "a DEL of an attachment never added, all of whose modifications are missing",
                ),
                TOLERANT,
            ] })
            .kinds(ALL),
        Rule::new("del.no-netns-no-prev-result", del_bare)
            .cites(const { &[
                Cite::full("spec/del.bare"),
                TOLERANT,
                Cite::partly(
                    "spec/del.ipam-release",
                    "with the namespace and prevResult left out; the namespace deleted is \
                     del.netns-deleted",
                ),
            ] })
            .kinds(ALL),
        Rule::new("del.leaves-nothing-running", del_leaves_nothing_running)
            .cites(const { &[Cite::partly(
                "spec/del.undo",
                "processes the plugin started for the attachment (daemons); its other \
                 resources are other rules'",
            )] })
            .kinds(NAMESPACED),
        Rule::new("check.after-add", check_after_add)
            .cites(const { &[
                Cite::full("spec/check.after-add"),
                Cite::full("spec/check.output"),
                Cite::partly(
                    "spec/check.convergence",
                    "the suite calls CHECK at once; it cannot tell a plugin that waits for \
                     convergence from a slow one",
                ),
            ] })
            .kinds(ALL)
            .since("0.4.0"),
        Rule::new("check.below-0.4.0", check_below_040)
            .habit(
                "SPEC 0.3.1 and older have no CHECK; libcni refuses CHECK for such configs, and \
                 the Go skeleton answers code 1",
            )
            .kinds(ALL)
            .before("0.4.0"),
    ]
}
