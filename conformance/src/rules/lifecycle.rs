//! ADD, DEL and CHECK as every kind of plugin sees them: a valid result,
//! DEL that succeeds whatever is already gone, CHECK right after ADD.

use super::{ALL, Case, Level, Rule};

fn result_schema(case: &Case) -> Result<(), String> {
    case.add("c1", &case.conf()).map(drop)
}

fn second_add_fails(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let first = case.add_conf("c1", &conf)?;
    case.run(case.call("ADD", "c1")?, &first)
        .result(case.version)?;
    case.run(case.call("ADD", "c1")?, &first)
        .error(&[])
        .map(drop)
}

fn del_repeated(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.del("c1", &conf, &r)?;
    case.del("c1", &conf, &r)
}

fn del_unknown(case: &Case) -> Result<(), String> {
    case.run(case.call("DEL", "never-added")?, &case.conf())
        .quiet_success()
}

fn del_bare(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    case.add("c1", &conf)?;
    let call = cni::exec::Call {
        netns: None,
        ..case.call("DEL", "c1")?
    };
    case.run(call, &conf).quiet_success()
}

fn check_after_add(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.run(case.call("CHECK", "c1")?, &case.with_prev(&conf, &r))
        .quiet_success()
}

fn check_below_040(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.run(case.call("CHECK", "c1")?, &case.with_prev(&conf, &r))
        .error(&[1])
        .map(drop)
}

// DEL: "Plugins should generally complete a DEL action without error even
// if some resources are missing" is a SHOULD in the spec, so every DEL rule
// is `should`.
pub fn rules() -> Vec<Rule> {
    use crate::kind::PluginKind::{Interface, Ipam};
    vec![
        Rule::new(
            "add.result-schema",
            Level::Must,
            "SPEC.md ADD: prints a Success result whose cniVersion matches the config's, in that \
             version's layout",
            result_schema,
        )
        .kinds(ALL),
        // The spec forbids the runtime a second ADD; it does not fix what a
        // plugin answers to one. Failing is the reference plugins' habit.
        Rule::new(
            "add.second-add-fails",
            Level::Convention,
            "SPEC.md: a runtime must not call ADD twice for one container and interface; the \
             reference plugins refuse a second ADD",
            second_add_fails,
        )
        .kinds(&[Ipam, Interface]),
        Rule::new(
            "del.repeated",
            Level::Should,
            "SPEC.md DEL: plugins should handle multiple DELs permissively (DEL should be \
             idempotent)",
            del_repeated,
        )
        .kinds(ALL),
        Rule::new(
            "del.unknown-container",
            Level::Should,
            "SPEC.md DEL: plugins should generally complete a DEL without error even if some \
             resources are missing",
            del_unknown,
        )
        .kinds(ALL),
        Rule::new(
            "del.no-netns-no-prev-result",
            Level::Should,
            "SPEC.md DEL: when CNI_NETNS and/or prevResult are not provided, the plugin should \
             clean up as many resources as possible (e.g. releasing IPAM allocations) and return a \
             successful response",
            del_bare,
        )
        .kinds(ALL),
        Rule::new(
            "check.after-add",
            Level::Must,
            "SPEC.md CHECK: the plugin must handle CHECK being called immediately after an ADD; \
             success prints nothing",
            check_after_add,
        )
        .kinds(ALL)
        .since("0.4.0"),
        Rule::new(
            "check.below-0.4.0",
            Level::Should,
            "SPEC.md CHECK: a config older than 0.4.0 does not allow CHECK; code 1 for an \
             incompatible version",
            check_below_040,
        )
        .kinds(ALL)
        .before("0.4.0"),
    ]
}
