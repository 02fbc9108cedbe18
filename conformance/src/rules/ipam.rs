//! Allocation: what an IPAM plugin does with its pool. Release and reuse,
//! exhaustion, concurrent ADDs, requested addresses, CHECK of the
//! reservation, GC and STATUS.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::{Case, Checked, Cite, Finding, Level, Rule, Step};
use crate::schema;
use cni::exec::Call;

fn first_address(result: &Value) -> Result<IpAddr, String> {
    schema::addresses(result)
        .into_iter()
        .next()
        .ok_or_else(|| format!("the result has no address: {result}"))
}

/// The most ADDs a fill of the small pool makes: a small pool has a few
/// addresses (`--small-config`), so a fill that gets this far is not
/// filling anything, and stops rather than running on for a plugin that
/// never says no.
const FILL_LIMIT: usize = 64;

/// One successful ADD of [`fill`]: the container id, its result and the step.
type Added = (String, Value, Step);

/// ADDs until one fails (at most `limit`): the successes' results, and
/// the failing step if one failed.
fn fill(case: &Case, conf: &Value, limit: usize) -> Result<(Vec<Added>, Option<Step>), String> {
    let mut got = Vec::new();
    for i in 0..limit {
        let id = format!("fill-{i}");
        let step = case.run(case.call("ADD", &id)?, conf);
        if !step.out.ok() {
            return Ok((got, Some(step)));
        }
        let result = step.result(case.version)?;
        got.push((id, result, step));
    }
    Ok((got, None))
}

/// What [`fill`] saw when it ended without a failure.
fn not_small(got: &[Added]) -> String {
    let addresses: Vec<String> = got
        .iter()
        .flat_map(|(_, r, _)| schema::addresses(r))
        .map(|a| a.to_string())
        .collect();
    format!(
        "{} ADDs all succeeded on the small pool ({} to {}), so the suite stopped filling it: give \
         --small-config (or --small-ipam-config) a pool of a few addresses",
        got.len(),
        addresses.first().map_or("-", String::as_str),
        addresses.last().map_or("-", String::as_str)
    )
}

/// [`fill`], which must end in a failure: the pool is small.
fn exhaust(case: &Case, conf: &Value) -> Result<(Vec<(String, Value)>, Step), String> {
    match fill(case, conf, FILL_LIMIT)? {
        (got, Some(step)) => Ok((got.into_iter().map(|(i, r, _)| (i, r)).collect(), step)),
        (got, None) => Err(not_small(&got)),
    }
}

fn ipam_no_interfaces(case: &Case) -> Checked {
    let step = case.run(case.call("ADD", "c1")?, &case.conf());
    let v = step.result(case.version)?;
    let problems = schema::ipam_problems(&v);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(step
            .fail(&format!(
                "an IPAM result; problems: {}",
                problems.join("; ")
            ))
            .into())
    }
}

fn has_address(case: &Case) -> Checked {
    let step = case.run(case.call("ADD", "c1")?, &case.conf());
    let v = step.result(case.version)?;
    if schema::addresses(&v).is_empty() {
        Err(step
            .fail(
                "a result with at least one address: the IPAM plugin determines the interface's IP",
            )
            .into())
    } else {
        Ok(())
    }
}

fn reuse_released(case: &Case) -> Checked {
    let conf = case.small_conf();
    let (got, _) = exhaust(case, &conf)?;
    let (id, result) = got.first().ok_or("the small pool gave no address at all")?;
    let freed = first_address(result)?;
    case.run(case.call("DEL", id)?, &case.with_prev(&conf, result))
        .quiet_success()?;
    let again = case.add("after-release", &conf).map_err(|e| {
        format!("the only free address was {freed}, which DEL released; an ADD did not get it: {e}")
    })?;
    let addr = first_address(&again)?;
    if addr == freed {
        Ok(())
    } else {
        Err(format!(
            "expected the released address {freed} again (it was the only free one), got {addr}"
        )
        .into())
    }
}

fn exhaustion(case: &Case) -> Checked {
    let (got, failing) = fill(case, &case.small_conf(), FILL_LIMIT)?;
    let mut holders: std::collections::BTreeMap<IpAddr, &str> = Default::default();
    for (id, r, step) in &got {
        for a in schema::addresses(r) {
            if let Some(first) = holders.insert(a, id) {
                return Err(step
                    .fail(&format!(
                        "an address no attachment holds, or an error once none is left; {a} was \
                         handed out twice, to {first} and {id}"
                    ))
                    .into());
            }
        }
    }
    let failing = failing.ok_or_else(|| not_small(&got))?;
    failing.error(&[])?;
    Ok(())
}

const CONCURRENT: usize = 16;

fn concurrent_adds(case: &Case) -> Checked {
    let conf = case.conf();
    let steps: Vec<(String, Step)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CONCURRENT)
            .map(|i| {
                let conf = &conf;
                s.spawn(move || {
                    let id = format!("parallel-{i}");
                    // IPAM only: the call needs no namespace.
                    let step = case.run(Call::attach("ADD", &id), conf);
                    (id, step)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let mut holders: std::collections::BTreeMap<IpAddr, String> = Default::default();
    for (id, step) in &steps {
        for a in schema::addresses(&step.result(case.version)?) {
            if let Some(first) = holders.insert(a, id.clone()) {
                return Err(step
                    .fail(&format!(
                        "an address no other of {CONCURRENT} concurrent ADDs got; {a} was handed \
                         out twice, to {first} and {id}"
                    ))
                    .into());
            }
        }
    }
    Ok(())
}

fn check_after_del(case: &Case) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    let with_prev = case.with_prev(&conf, &r);
    case.run(case.call("DEL", "c1")?, &with_prev)
        .quiet_success()?;
    case.run(case.call("CHECK", "c1")?, &with_prev).error(&[])?;
    Ok(())
}

/// A prevResult naming an address the plugin never gave this container.
fn foreign(result: &Value) -> Value {
    let mut r = result.clone();
    if let Some(ips) = r["ips"].as_array_mut() {
        for ip in ips {
            let swapped = ip["address"].as_str().and_then(|a| {
                let net: ipnet::IpNet = a.parse().ok()?;
                let other = match net.addr() {
                    IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) ^ 0x80).into()),
                    IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) ^ 0x8000).into()),
                };
                Some(format!("{other}/{}", net.prefix_len()))
            });
            if let Some(s) = swapped {
                ip["address"] = json!(s);
            }
        }
    }
    r
}

fn check_foreign_prev(case: &Case) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.run(
        case.call("CHECK", "c1")?,
        &case.with_prev(&conf, &foreign(&r)),
    )
    .error(&[])?;
    Ok(())
}

/// The first address of a result in CIDR notation, as the `ips`
/// capability carries it.
fn first_cidr(result: &Value) -> Result<String, String> {
    let from_ips = result["ips"][0]["address"].as_str();
    let from_v02 = result["ip4"]["ip"]
        .as_str()
        .or(result["ip6"]["ip"].as_str());
    from_ips
        .or(from_v02)
        .map(str::to_string)
        .ok_or_else(|| format!("the result has no address: {result}"))
}

fn with_requested(conf: &Value, cidr: &str) -> Value {
    let mut c = conf.clone();
    c["runtimeConfig"] = json!({"ips": [cidr]});
    c
}

/// Two addresses of the pool that are free, found by taking and giving
/// them back.
fn two_free(case: &Case, conf: &Value) -> Result<[(IpAddr, String); 2], String> {
    let mut got = Vec::new();
    for id in ["probe-a", "probe-b"] {
        let r = case.add(id, conf)?;
        got.push((first_address(&r)?, first_cidr(&r)?, id, r));
    }
    for (_, _, id, r) in &got {
        case.run(case.call("DEL", id)?, &case.with_prev(conf, r))
            .quiet_success()?;
    }
    let mut it = got.into_iter().map(|(a, c, _, _)| (a, c));
    Ok([it.next().expect("two"), it.next().expect("two")])
}

fn requested_honoured(case: &Case) -> Checked {
    let conf = case.conf();
    let [(wanted, cidr), _] = two_free(case, &conf)?;
    let r = case.add("c1", &with_requested(&conf, &cidr))?;
    if schema::addresses(&r).contains(&wanted) {
        Ok(())
    } else {
        Err(format!("runtimeConfig.ips asked for {wanted}; the result is {r}").into())
    }
}

fn requested_refused(case: &Case) -> Checked {
    let conf = case.conf();
    let taken = first_cidr(&case.add("owner", &conf)?)?;
    case.run(case.call("ADD", "c1")?, &with_requested(&conf, &taken))
        .error(&[])?;
    Ok(())
}

fn ips_over_cni_args(case: &Case) -> Checked {
    let conf = case.conf();
    let [(from_args, args_cidr), (from_cni_args, cni_args_cidr)] = two_free(case, &conf)?;
    if from_args == from_cni_args {
        return Err(Finding::not_applicable(format!(
            "the plugin gives every container {from_args}, so the suite cannot tell which of two \
             requested addresses it took"
        )));
    }
    let mut with_args = conf.clone();
    with_args["args"] = json!({"cni": {"ips": [args_cidr]}});
    // Whether the plugin understands args.cni.ips at all. A refusal here
    // is not this rule's to judge: the address two DELs gave back may still
    // be held (add.reuse-after-release judges that).
    let probe = case.add("understands", &with_args).map_err(|e| {
        Finding::not_applicable(format!(
            "the plugin did not hand out {from_args}, asked for in args.cni.ips after its holder \
             was deleted, so the suite cannot tell whether it understands args: {}",
            e.lines().next().unwrap_or_default()
        ))
    })?;
    if !schema::addresses(&probe).contains(&from_args) {
        return Err(Finding::not_applicable(format!(
            "the plugin does not take args.cni.ips (asked for {from_args}, got {probe}), so the \
             convention's condition, a plugin that understands args, does not hold"
        )));
    }
    case.run(
        case.call("DEL", "understands")?,
        &case.with_prev(&with_args, &probe),
    )
    .quiet_success()?;
    // With its prefix: CONVENTIONS.md lets a plugin require one.
    let call = case
        .call("ADD", "c1")?
        .args(&format!("IgnoreUnknown=1;IP={cni_args_cidr}"));
    let step = case.run(call, &with_args);
    let r = step.result(case.version).map_err(|e| {
        format!(
            "args.cni.ips asks for {from_args} and CNI_ARGS IP for {from_cni_args}; a plugin that \
             understands args ignores the CNI_ARGS field, but this one refused the call: {e}"
        )
    })?;
    let got = schema::addresses(&r);
    if got.contains(&from_args) && !got.contains(&from_cni_args) {
        Ok(())
    } else {
        Err(step
            .fail(&format!(
                "{from_args} (args.cni.ips) and not {from_cni_args} (CNI_ARGS IP, to be ignored)"
            ))
            .into())
    }
}

/// ADD `<tag>keep` and `<tag>stale`, GC with `keys` listing the first:
/// it still passes CHECK, the other no longer does.
fn gc_with(case: &Case, tag: &str, keys: &[&str]) -> Checked {
    let conf = case.conf();
    let (keep, stale) = (format!("{tag}keep"), format!("{tag}stale"));
    let a = case.add(&keep, &conf)?;
    let b = case.add(&stale, &conf)?;
    let mut gc = conf.clone();
    for key in keys {
        gc[*key] = json!([{"containerID": keep, "ifname": "eth0"}]);
    }
    let step = case.run(Call::new("GC"), &gc);
    step.quiet_success()
        .map_err(|e| Finding::at("spec/gc.no-error", e))?;
    let named = keys.join(" and ");
    case.run(case.call("CHECK", &keep)?, &case.with_prev(&conf, &a))
        .quiet_success()
        .map_err(|e| format!("GC listed {keep} in {named}, so it is kept: {e}"))?;
    case.run(case.call("CHECK", &stale)?, &case.with_prev(&conf, &b))
        .error(&[])
        .map_err(|e| format!("GC listed only {keep} in {named}, so {stale} is released: {e}"))?;
    Ok(())
}

fn gc_releases_unlisted(case: &Case) -> Checked {
    // As libcni sends it: both keys (containernetworking/cni#1101).
    gc_with(
        case,
        "",
        &["cni.dev/valid-attachments", "cni.dev/attachments"],
    )
}

fn gc_key_names(case: &Case) -> Checked {
    gc_with(case, "tag-text-", &["cni.dev/attachments"])
        .map_err(|e| format!("with the key the spec-v1.1.0 text names: {}", e.message()))?;
    gc_with(case, "libcni-", &["cni.dev/valid-attachments"])
        .map_err(|e| format!("with the key libcni sends: {}", e.message()).into())
}

fn status_available(case: &Case) -> Checked {
    let step = case.run(Call::new("STATUS"), &case.conf());
    if step.out.ok() {
        Ok(())
    } else {
        Err(step.fail("exit 0: the pool has room to serve ADD").into())
    }
}

fn status_exhausted(case: &Case) -> Checked {
    let conf = case.small_conf();
    let (got, _) = exhaust(case, &conf)?;
    let step = case.run(Call::new("STATUS"), &conf);
    if step.out.ok() {
        return Err(step
            .fail("an error (code 50 or 51): the pool is exhausted")
            .into());
    }
    step.error(&[])
        .map_err(|e| Finding::at("spec/status.not-ready", e))?;
    step.error(&[50, 51])?;
    // STATUS informs; it does not stop the runtime's other calls.
    let (id, result) = got.first().ok_or("the small pool gave no address at all")?;
    case.run(case.call("DEL", id)?, &case.with_prev(&conf, result))
        .quiet_success()
        .map_err(|e| Finding::at("spec/status.other-operations", e))?;
    case.add("after-status", &conf)
        .map_err(|e| Finding::at("spec/status.other-operations", e))?;
    Ok(())
}

pub fn rules() -> Vec<Rule> {
    const DETERMINES: Cite = Cite::partly(
        "spec/delegation.ipam-determines",
        "that the address is one no other attachment holds; gateway and routes depend on the \
         config",
    );
    const REQUESTS_LOWERED: &str = "CONVENTIONS.md asks a plugin to take the conventional \
                                    arguments if it implements the same basic functionality as \
                                    other plugins (host-local and static take ips); the suite \
                                    cannot tell whether a plugin does, so not taking them is a \
                                    warning.";
    vec![
        Rule::new("add.ipam-no-interfaces", ipam_no_interfaces).cites(const { &[
            Cite::full("spec/result.ipam-abbreviated"),
            Cite::full("spec/result.ipam-no-interface-index"),
        ] }),
        Rule::new("add.ipam-has-address", has_address).cites(const { &[Cite::partly(
            "spec/delegation.ipam-determines",
            "that there is an address; gateway and routes depend on the config",
        )] }),
        Rule::new("add.reuse-after-release", reuse_released)
            .cites(const { &[
                Cite::partly("spec/del.undo", "for the IPAM reservation"),
                Cite::partly(
                    "spec/del.ipam-release",
                    "with the namespace there; del.no-netns-no-prev-result takes it away",
                ),
            ] })
            .small(),
        Rule::new("add.exhaustion", exhaustion)
            .cites(const { &[DETERMINES] })
            .small(),
        Rule::new("add.concurrent-distinct", concurrent_adds).cites(const { &[
            Cite::full("spec/lifecycle.concurrent"),
            Cite::full("spec/lifecycle.locking"),
            DETERMINES,
        ] }),
        Rule::new("check.after-del", check_after_del)
            .cites(const { &[Cite::partly(
                "spec/check.other-resources",
                "IP reservations; firewall rules, traffic shaping and daemons are the interface \
                 and chained rules'",
            )] })
            .since("0.4.0"),
        Rule::new("check.foreign-prev-result", check_foreign_prev)
            .cites(const { &[Cite::partly(
                "spec/check.prev-result",
                "judged by CHECK failing for an address prevResult names and the plugin never \
                 gave",
            )] })
            .since("0.4.0"),
        Rule::new("add.requested-ip-honoured", requested_honoured)
            .cites(const { &[
                Cite::partly("conv/plugins.accept", "runtimeConfig.ips (the ips capability)"),
                Cite::full("conv/ips.prefix").aside(),
            ] })
            .lowered(Level::Convention, REQUESTS_LOWERED)
            .habit("CONVENTIONS.md's ips capability, which host-local and static implement"),
        Rule::new("add.requested-ip-refused", requested_refused)
            .cites(const { &[Cite::partly(
                "conv/plugins.accept",
                "an address the ips capability asks for that is taken",
            )] })
            .lowered(Level::Convention, REQUESTS_LOWERED)
            .habit("CONVENTIONS.md's ips capability, which host-local and static implement"),
        Rule::new("args.ips-over-cni-args", ips_over_cni_args)
            .cites(const { &[Cite::full("conv/cni-args.args-wins")] }),
        Rule::new("gc.releases-unlisted", gc_releases_unlisted)
            .cites(const { &[
                Cite::partly("spec/gc.stale", "IPAM reservations"),
                Cite::full("spec/gc.ipam"),
                Cite::partly("spec/gc.no-error", "for a GC with nothing in the way").aside(),
            ] })
            .since("1.1.0"),
        Rule::new("gc.key-names", gc_key_names)
            .cites(const { &[Cite::partly(
                "spec/gc.ipam",
                "with the list under either key alone: cni.dev/attachments (the spec-v1.1.0 \
                 text) or cni.dev/valid-attachments (what libcni sends)",
            )] })
            .since("1.1.0"),
        Rule::new("status.available", status_available)
            .cites(const { &[Cite::full("spec/status.ready")] })
            .since("1.1.0"),
        Rule::new("status.exhausted", status_exhausted)
            .cites(const { &[
                Cite::full("spec/status.exhausted"),
                Cite::partly(
                    "spec/status.other-operations",
                    "DEL and ADD after STATUS failed",
                )
                .aside(),
                Cite::partly(
                    "spec/status.not-ready",
                    "the error object on stdout when STATUS fails for an exhausted pool",
                )
                .aside(),
            ] })
            .since("1.1.0")
            .small(),
    ]
}
