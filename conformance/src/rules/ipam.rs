//! Allocation: what an IPAM plugin does with its pool. Release and reuse,
//! exhaustion, concurrent ADDs, requested addresses, CHECK of the
//! reservation, GC and STATUS.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use super::{Case, Level, Rule, Step};
use crate::schema;
use cni::exec::Call;

fn first_address(result: &Value) -> Result<IpAddr, String> {
    schema::addresses(result)
        .into_iter()
        .next()
        .ok_or_else(|| format!("the result has no address: {result}"))
}

/// ADDs until one fails (at most `limit`), returning the successes' results
/// and the failing step.
fn exhaust(
    case: &Case,
    conf: &Value,
    limit: usize,
) -> Result<(Vec<(String, Value)>, Step), String> {
    let mut got = Vec::new();
    for i in 0..limit {
        let id = format!("fill-{i}");
        let step = case.run(case.call("ADD", &id)?, conf);
        if !step.out.ok() {
            return Ok((got, step));
        }
        got.push((id, step.result(case.version)?));
    }
    Err(format!(
        "{limit} ADDs all succeeded on the small pool; it is not small"
    ))
}

fn ipam_no_interfaces(case: &Case) -> Result<(), String> {
    let step = case.run(case.call("ADD", "c1")?, &case.conf());
    let v = step.result(case.version)?;
    let problems = schema::ipam_problems(&v);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(step.fail(&format!(
            "an IPAM result; problems: {}",
            problems.join("; ")
        )))
    }
}

fn reuse_released(case: &Case) -> Result<(), String> {
    let conf = case.small_conf();
    let (got, _) = exhaust(case, &conf, 300)?;
    let (id, result) = got.first().ok_or("the small pool gave no address at all")?;
    let freed = first_address(result)?;
    case.run(case.call("DEL", id)?, &case.with_prev(&conf, result))
        .quiet_success()?;
    let again = case.add("after-release", &conf)?;
    let addr = first_address(&again)?;
    if addr == freed {
        Ok(())
    } else {
        Err(format!(
            "expected the released address {freed} again (it was the only free one), got {addr}"
        ))
    }
}

fn exhaustion(case: &Case) -> Result<(), String> {
    let (got, failing) = exhaust(case, &case.small_conf(), 300)?;
    failing.error(&[])?;
    let mut seen = BTreeSet::new();
    for (_, r) in &got {
        for a in schema::addresses(r) {
            if !seen.insert(a) {
                return Err(format!("{a} was handed out twice before the pool ran out"));
            }
        }
    }
    Ok(())
}

const CONCURRENT: usize = 16;

fn concurrent_adds(case: &Case) -> Result<(), String> {
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
                return Err(step.fail(&format!(
                    "an address no other of {CONCURRENT} concurrent ADDs got; {a} was handed out \
                     twice, to {first} and {id}"
                )));
            }
        }
    }
    Ok(())
}

fn check_after_del(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    let with_prev = case.with_prev(&conf, &r);
    case.run(case.call("DEL", "c1")?, &with_prev)
        .quiet_success()?;
    case.run(case.call("CHECK", "c1")?, &with_prev)
        .error(&[])
        .map(drop)
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

fn check_foreign_prev(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.run(
        case.call("CHECK", "c1")?,
        &case.with_prev(&conf, &foreign(&r)),
    )
    .error(&[])
    .map(drop)
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

fn requested_honoured(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let probe = case.add("probe", &conf)?;
    let wanted = first_address(&probe)?;
    let cidr = first_cidr(&probe)?;
    case.run(case.call("DEL", "probe")?, &case.with_prev(&conf, &probe))
        .quiet_success()?;
    let r = case.add("c1", &with_requested(&conf, &cidr))?;
    if schema::addresses(&r).contains(&wanted) {
        Ok(())
    } else {
        Err(format!(
            "runtimeConfig.ips asked for {wanted}; the result is {r}"
        ))
    }
}

fn requested_refused(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let taken = first_cidr(&case.add("owner", &conf)?)?;
    case.run(case.call("ADD", "c1")?, &with_requested(&conf, &taken))
        .error(&[])
        .map(drop)
}

fn gc_releases_unlisted(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let a = case.add("keep", &conf)?;
    let b = case.add("stale", &conf)?;
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    case.run(Call::new("GC"), &gc).quiet_success()?;
    case.run(case.call("CHECK", "keep")?, &case.with_prev(&conf, &a))
        .quiet_success()?;
    case.run(case.call("CHECK", "stale")?, &case.with_prev(&conf, &b))
        .error(&[])
        .map(drop)
}

fn status_available(case: &Case) -> Result<(), String> {
    case.run(Call::new("STATUS"), &case.conf()).quiet_success()
}

fn status_exhausted(case: &Case) -> Result<(), String> {
    let conf = case.small_conf();
    exhaust(case, &conf, 300)?;
    case.run(Call::new("STATUS"), &conf)
        .error(&[50, 51])
        .map(drop)
}

pub fn rules() -> Vec<Rule> {
    vec![
        // "IPAM plugins should return an abbreviated Result structure".
        Rule::new(
            "add.ipam-no-interfaces",
            Level::Should,
            "SPEC.md IPAM: an IPAM plugin's result has no interfaces, and ips[].interface is unset",
            ipam_no_interfaces,
        ),
        Rule::new(
            "add.reuse-after-release",
            Level::Should,
            "SPEC.md DEL: a delete operation should release all resources held by the container; a \
             later ADD can be given the address",
            reuse_released,
        )
        .small(),
        Rule::new(
            "add.exhaustion",
            Level::Must,
            "SPEC.md ADD: when no address is left, fail with an error; never hand one out twice",
            exhaustion,
        )
        .small(),
        Rule::new(
            "add.concurrent-distinct",
            Level::Must,
            "SPEC.md: the runtime is allowed to invoke parallel operations for different \
             containers; concurrent ADDs get distinct addresses",
            concurrent_adds,
        ),
        Rule::new(
            "check.after-del",
            Level::Should,
            "SPEC.md CHECK: the plugin should return an error if IP reservations are missing",
            check_after_del,
        )
        .since("0.4.0"),
        Rule::new(
            "check.foreign-prev-result",
            Level::Should,
            "SPEC.md CHECK: the plugin must consult prevResult, and should return an error when an \
             address it lists is not the plugin's",
            check_foreign_prev,
        )
        .since("0.4.0"),
        Rule::new(
            "add.requested-ip-honoured",
            Level::Convention,
            "CONVENTIONS.md ips capability: runtimeConfig.ips asks for an address (in CIDR \
             notation); a free one is handed out",
            requested_honoured,
        ),
        Rule::new(
            "add.requested-ip-refused",
            Level::Convention,
            "CONVENTIONS.md ips capability: an address that is taken cannot be handed out",
            requested_refused,
        ),
        Rule::new(
            "gc.releases-unlisted",
            Level::Should,
            "SPEC.md GC: releases what belongs to attachments not in cni.dev/valid-attachments, \
             keeps the rest",
            gc_releases_unlisted,
        )
        .since("1.1.0"),
        Rule::new(
            "status.available",
            Level::Must,
            "SPEC.md STATUS: a plugin must exit 0 with no output when it is ready to serve ADD",
            status_available,
        )
        .since("1.1.0"),
        Rule::new(
            "status.exhausted",
            Level::Should,
            "SPEC.md STATUS: code 50 (or 51) when the plugin cannot serve ADD, as with an \
             exhausted pool",
            status_exhausted,
        )
        .since("1.1.0")
        .small(),
    ]
}
