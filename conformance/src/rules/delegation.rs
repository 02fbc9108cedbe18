//! Delegation: what an interface plugin does with the IPAM plugin its
//! config names. The suite puts a spy in its place ([`super::spy`]) and
//! reads what reached it: which commands, with what environment and
//! config, and what the upper plugin made of the spy's errors.

use serde_json::{Value, json};

use super::spy::{self, Spy, SpyCall};
use super::{Case, Checked, Cite, Finding, INTERFACE, Rule, Step};
use cni::exec::Call;

/// The variables a runtime sets for `call`, with the `PATH` the suite runs
/// plugins with.
fn runtime_vars(call: &Call) -> Vec<(String, String)> {
    let mut vars = call.vars();
    if let Some(path) = std::env::var_os("PATH") {
        vars.push(("PATH".into(), path.to_string_lossy().into_owned()));
    }
    vars
}

/// The delegated call of `command` for `step`, checked for the same
/// environment and config: every variable the upper plugin got, and the
/// same JSON on stdin.
fn same_input(spy: &Spy, command: &str, step: &Step) -> Result<SpyCall, Finding> {
    let seen = spy.of(command);
    let Some(call) = seen.last().cloned() else {
        return Err(step
            .fail(&format!(
                "a {command} call to the IPAM plugin its config names ({}), found on CNI_PATH; \
                 it made none",
                spy::NAME
            ))
            .into());
    };
    let differ: Vec<String> = runtime_vars(&step.call)
        .into_iter()
        .filter(|(k, v)| call.env.get(k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: the plugin got {v:?}, its IPAM plugin {:?}",
                call.env.get(&k)
            )
        })
        .collect();
    if !differ.is_empty() {
        return Err(Finding::at(
            "spec/delegation.same-env",
            step.fail(&format!(
                "the IPAM plugin run with the plugin's own environment; it differs in {}",
                differ.join("; ")
            )),
        ));
    }
    if call.config().as_ref() != Some(&step.stdin) {
        return Err(Finding::at(
            "spec/delegation.same-input",
            step.fail(&format!(
                "the IPAM plugin given the plugin's whole config on stdin; it got {}",
                call.stdin
            )),
        ));
    }
    Ok(call)
}

/// ADD through the spy for `c1`, which must succeed; the spy and the step.
fn added(case: &Case, fails: &[&str]) -> Result<(Spy, Value, Step), Finding> {
    let spy = Spy::new(case, fails)?;
    let conf = spy.conf(&case.conf());
    let call = spy.call(
        case.call("ADD", "c1")?
            .args("IgnoreUnknown=1;K8S_POD_NAMESPACE=conformance;K8S_POD_NAME=delegated-0"),
        case,
    );
    let step = case.run(call, &conf);
    step.result(case.version)?;
    let result = step.out.parsed().unwrap_or_default();
    Ok((spy, result, step))
}

fn add_environment(case: &Case) -> Checked {
    let (spy, _, step) = added(case, &[])?;
    same_input(&spy, "ADD", &step).map(drop)
}

fn stderr(case: &Case) -> Checked {
    let (_, _, step) = added(case, &[])?;
    if step.out.stderr.contains(spy::MARKER) {
        Ok(())
    } else {
        Err(step
            .fail(&format!(
                "the IPAM plugin's stderr ({:?}) on the plugin's stderr",
                spy::MARKER
            ))
            .into())
    }
}

/// `command` for `c1` after an ADD through the spy, with the ADD's result.
fn after_add(case: &Case, command: &str, fails: &[&str]) -> Result<(Spy, Step), Finding> {
    let (spy, result, _) = added(case, fails)?;
    let conf = case.with_prev(&spy.conf(&case.conf()), &result);
    let step = case.run(spy.call(case.call(command, "c1")?, case), &conf);
    Ok((spy, step))
}

fn del(case: &Case) -> Checked {
    let (spy, step) = after_add(case, "DEL", &[])?;
    step.quiet_success()?;
    same_input(&spy, "DEL", &step).map(drop)
}

fn check(case: &Case) -> Checked {
    let (spy, step) = after_add(case, "CHECK", &[])?;
    step.quiet_success()?;
    same_input(&spy, "CHECK", &step).map(drop)
}

fn check_error(case: &Case) -> Checked {
    let (_, step) = after_add(case, "CHECK", &["CHECK"])?;
    step.error(&[])
        .map(drop)
        .map_err(|e| format!("its IPAM plugin failed CHECK on purpose, so CHECK fails: {e}").into())
}

/// GC or STATUS through the spy, which fails `fails`.
fn network_call(case: &Case, command: &str, fails: &[&str]) -> Result<(Spy, Step), Finding> {
    let spy = Spy::new(case, fails)?;
    let mut conf = spy.conf(&case.conf());
    if command == "GC" {
        let valid = json!([{"containerID": "c1", "ifname": "eth0"}]);
        conf["cni.dev/valid-attachments"] = valid.clone();
        conf["cni.dev/attachments"] = valid;
    }
    let step = case.run(spy.call(Call::new(command), case), &conf);
    Ok((spy, step))
}

fn forwarded(case: &Case, command: &str) -> Checked {
    let (spy, step) = network_call(case, command, &[])?;
    step.quiet_success()?;
    same_input(&spy, command, &step).map(drop)
}

fn gc(case: &Case) -> Checked {
    forwarded(case, "GC")
}

fn status(case: &Case) -> Checked {
    forwarded(case, "STATUS")
}

fn passes_on(case: &Case, command: &str) -> Checked {
    let (_, step) = network_call(case, command, &[command])?;
    step.error(&[]).map(drop).map_err(|e| {
        format!("its IPAM plugin failed {command} on purpose, so {command} fails: {e}").into()
    })
}

fn gc_error(case: &Case) -> Checked {
    passes_on(case, "GC")
}

fn status_error(case: &Case) -> Checked {
    passes_on(case, "STATUS")
}

fn add_failure_del(case: &Case) -> Checked {
    let spy = Spy::new(case, &["ADD"])?;
    let conf = spy.conf(&case.conf());
    let step = case.run(spy.call(case.call("ADD", "c1")?, case), &conf);
    step.error(&[])?;
    let order: Vec<String> = spy.calls().into_iter().map(|c| c.command).collect();
    let failed_add = order.iter().position(|c| c == "ADD");
    if failed_add.is_some_and(|i| order[i..].iter().any(|c| c == "DEL")) {
        Ok(())
    } else {
        Err(step
            .fail(&format!(
                "a DEL to the IPAM plugin after its ADD failed, before the plugin answered; the \
                 IPAM plugin saw {order:?}"
            ))
            .into())
    }
}

pub fn rules() -> Vec<Rule> {
    const SPY: &str = "the suite's spy is found only on the CNI_PATH it gives";
    vec![
        Rule::new("delegate.add-environment", add_environment)
            .cites(const { &[
                Cite::full("spec/delegation.same-env"),
                Cite::full("spec/delegation.same-input"),
                Cite::partly("spec/delegation.cni-path", SPY),
                Cite::partly(
                    "spec/config.key-semantics",
                    "ipam.type names the plugin run; ipMasq and dns are not checked",
                )
                .aside(),
            ] })
            .kinds(INTERFACE)
            .delegates(),
        Rule::new("delegate.stderr", stderr)
            .cites(const { &[Cite::full("spec/delegation.stderr")] })
            .kinds(INTERFACE)
            .delegates(),
        Rule::new("delegate.del", del)
            .cites(const { &[
                Cite::partly("spec/delegation.execute", "DEL; CHECK and GC in their own rules"),
                Cite::partly(
                    "spec/del.bridge-delegates",
                    "with the namespace still there; del.netns-deleted covers it gone",
                ),
            ] })
            .kinds(INTERFACE)
            .delegates(),
        Rule::new("delegate.check", check)
            .cites(const { &[
                Cite::partly("spec/delegation.execute", "CHECK"),
                Cite::partly("spec/check.delegate", "calling CHECK; delegate.check-error passes errors on"),
            ] })
            .kinds(INTERFACE)
            .delegates()
            .since("0.4.0"),
        Rule::new("delegate.check-error", check_error)
            .cites(const { &[
                Cite::partly("spec/delegation.errors", "on CHECK"),
                Cite::partly("spec/check.delegate", "passing the error on"),
            ] })
            .kinds(INTERFACE)
            .delegates()
            .since("0.4.0"),
        Rule::new("delegate.gc", gc)
            .cites(const { &[
                Cite::full("spec/gc.forward"),
                Cite::partly("spec/delegation.execute", "GC"),
            ] })
            .kinds(INTERFACE)
            .delegates()
            .since("1.1.0"),
        Rule::new("delegate.gc-error", gc_error)
            .cites(const { &[
                Cite::partly("spec/delegation.errors", "on GC"),
                Cite::partly(
                    "spec/gc.continue",
                    "reporting a delegate's error; whether the plugin went on cleaning is not \
                     observable",
                ),
            ] })
            .kinds(INTERFACE)
            .delegates()
            .since("1.1.0"),
        Rule::new("delegate.status", status)
            .cites(const { &[Cite::full("spec/status.delegate")] })
            .kinds(INTERFACE)
            .delegates()
            .since("1.1.0"),
        Rule::new("delegate.status-error", status_error)
            .cites(const { &[Cite::full("spec/status.delegate-error")] })
            .kinds(INTERFACE)
            .delegates()
            .since("1.1.0"),
        Rule::new("delegate.add-failure-del", add_failure_del)
            .cites(const { &[Cite::full("spec/delegation.add-failure")] })
            .kinds(INTERFACE)
            .delegates(),
    ]
}
