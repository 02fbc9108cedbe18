//! Chained (meta) plugins: they act on a previous plugin's result, which
//! the suite makes itself (see [`crate::prev`]), and hand it on.

use serde_json::Value;

use super::{Case, Checked, Cite, Finding, META, Rule};

/// What identifies an interface or an address across a chain.
fn keys(result: &Value) -> (Vec<Value>, Vec<Value>) {
    let list = |k: &str, f: &dyn Fn(&Value) -> Value| -> Vec<Value> {
        result[k].as_array().into_iter().flatten().map(f).collect()
    };
    (
        list("interfaces", &|i| {
            serde_json::json!([i["name"], i["sandbox"]])
        }),
        list("ips", &|i| i["address"].clone()),
    )
}

fn keeps_prev_result(case: &Case) -> Checked {
    let conf = case.add_conf("c1", &case.conf())?;
    let prev = conf["prevResult"].clone();
    let step = case.run(case.call("ADD", "c1")?, &conf);
    let result = step.result(case.version)?;
    let (want_ifs, want_ips) = keys(&prev);
    let (got_ifs, got_ips) = keys(&result);
    let lost_ifs: Vec<&Value> = want_ifs.iter().filter(|i| !got_ifs.contains(i)).collect();
    let lost_ips: Vec<&Value> = want_ips.iter().filter(|i| !got_ips.contains(i)).collect();
    if lost_ifs.is_empty() && lost_ips.is_empty() {
        Ok(())
    } else {
        Err(step
            .fail(&format!(
                "a result that keeps every interface and address of prevResult; it dropped \
                 interfaces {lost_ifs:?} and addresses {lost_ips:?}"
            ))
            .into())
    }
}

/// ADD with a `prevResult` that has addresses and no interfaces, which a
/// result may be: `interfaces` is optional, and `ips[].interface` with it.
/// The plugin may succeed, or refuse with an error object; what it may not
/// do is crash (dnsname 1.3.1 indexes the list and panics, exit 2 with
/// nothing on stdout).
fn prev_without_interfaces(case: &Case) -> Checked {
    let conf = case.add_conf("c1", &case.conf())?;
    let mut prev = conf["prevResult"].clone();
    if let Some(obj) = prev.as_object_mut() {
        obj.remove("interfaces");
    }
    for ip in prev["ips"].as_array_mut().into_iter().flatten() {
        if let Some(obj) = ip.as_object_mut() {
            obj.remove("interface");
        }
    }
    let step = case.run(case.call("ADD", "c1")?, &case.with_prev(&conf, &prev));
    if step.out.ok() {
        step.result(case.version)?;
        return Ok(());
    }
    step.error(&[])
        .map(drop)
        .map_err(|e| Finding::at("spec/errors.structure", e))
}

// SPEC 0.3 and 0.4 let a plugin "modify or suppress all or part of a
// prevResult" and say it SHOULD echo it; 1.0 made passing it on, modified
// or not, a MUST. The version under test decides.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new("add.keeps-prev-result", keeps_prev_result)
            .cites(const { &[
                Cite::full("spec/result.prev"),
                Cite::partly(
                    "spec/result.prev-unchanged",
                    "interfaces and addresses kept; the suite does not know which changes a \
                     plugin means to make",
                ),
                Cite::partly(
                    "spec/add.prev-result",
                    "passing prevResult on (1.x); 0.3 and 0.4 also allow suppressing it",
                )
                .aside(),
                Cite::full("spec/add.prev-echo"),
            ] })
            .kinds(META),
        Rule::new("add.prev-result-without-interfaces", prev_without_interfaces)
            .cites(const { &[Cite::partly(
                "spec/errors.structure",
                "for an ADD whose prevResult has addresses and no interfaces, which a result \
                 may be (interfaces are optional): an answer, a result or an error object, not \
                 a crash",
            )] })
            .kinds(META)
            .since("0.4.0"),
    ]
}
