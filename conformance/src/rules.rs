//! Spec-derived scenarios. Each rule cites the text of the CNI spec (1.1.0,
//! SPEC.md and CONVENTIONS.md) it checks, runs once per version the plugin
//! claims, and fails with the invocation, what was expected and what came
//! back.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::exec::{Call, Outcome};
use crate::schema;
use crate::target::Target;
use crate::versions::at_least;

/// One rule of the suite.
pub struct Rule {
    pub id: &'static str,
    /// The spec text the rule checks.
    pub spec: &'static str,
    /// The oldest version the rule applies to.
    pub since: Option<&'static str>,
    /// The rule applies only to versions older than this.
    pub before: Option<&'static str>,
    /// Needs the small-pool config.
    pub small: bool,
    pub check: fn(&Case) -> Result<(), String>,
}

/// Whether a rule applies to a version, and why not.
pub fn applies(rule: &Rule, version: &str, has_small: bool) -> Result<(), String> {
    if let Some(min) = rule.since
        && !at_least(version, min)
    {
        return Err(format!("needs CNI {min} or later"));
    }
    if let Some(max) = rule.before
        && at_least(version, max)
    {
        return Err(format!("applies only before CNI {max}"));
    }
    if rule.small && !has_small {
        return Err("needs a small-pool config (--small-ipam-config)".into());
    }
    Ok(())
}

/// One rule run against one version, in its own data directory.
pub struct Case<'a> {
    pub target: &'a Target,
    pub version: &'a str,
    pub rule: &'a Rule,
    dir: tempfile::TempDir,
}

/// An invocation and what it returned, for failure messages.
pub struct Step {
    call: Call,
    stdin: Value,
    out: Outcome,
}

impl Step {
    pub fn fail(&self, expected: &str) -> String {
        let env: Vec<String> = self
            .call
            .vars()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "invocation: {}\nstdin: {}\nexpected: {expected}\ngot: exit {}, stdout {:?}, stderr {:?}",
            env.join(" "),
            self.stdin,
            self.out.code.map_or("by signal".into(), |c| c.to_string()),
            self.out.stdout,
            self.out.stderr.trim()
        )
    }

    /// The success result, checked against the version's schema.
    pub fn result(&self, version: &str) -> Result<Value, String> {
        if !self.out.ok() {
            return Err(self.fail("success"));
        }
        let v = self
            .out
            .parsed()
            .map_err(|e| self.fail(&format!("a JSON result ({e})")))?;
        let problems = schema::result_problems(&v, version);
        if problems.is_empty() {
            Ok(v)
        } else {
            Err(self.fail(&format!(
                "a valid {version} result; problems: {}",
                problems.join("; ")
            )))
        }
    }

    /// Success with nothing printed (DEL, CHECK, GC, STATUS).
    pub fn quiet_success(&self) -> Result<(), String> {
        if self.out.ok() && self.out.stdout.trim().is_empty() {
            Ok(())
        } else {
            Err(self.fail("exit 0 and no output"))
        }
    }

    /// A failure with the error on stdout, with one of `codes` if given.
    pub fn error(&self, codes: &[u64]) -> Result<u64, String> {
        let want = if codes.is_empty() {
            "an error object on stdout and a non-zero exit".to_string()
        } else {
            format!("an error with code {codes:?} on stdout and a non-zero exit")
        };
        if self.out.ok() {
            return Err(self.fail(&want));
        }
        if self.out.stdout.trim().is_empty() {
            return Err(self.fail(&format!(
                "{want}; stdout was empty (errors belong on stdout, stderr is for logs)"
            )));
        }
        let v = self
            .out
            .parsed()
            .map_err(|e| self.fail(&format!("{want} ({e})")))?;
        let problems = schema::error_problems(&v);
        if !problems.is_empty() {
            return Err(self.fail(&format!("{want}; {}", problems.join("; "))));
        }
        let code = v["code"].as_u64().unwrap_or_default();
        if !codes.is_empty() && !codes.contains(&code) {
            return Err(self.fail(&want));
        }
        Ok(code)
    }
}

impl<'a> Case<'a> {
    pub fn new(target: &'a Target, version: &'a str, rule: &'a Rule) -> Case<'a> {
        Case {
            target,
            version,
            rule,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn conf(&self) -> Value {
        let ipam = self.target.ipam.clone().unwrap_or_else(|| json!({}));
        self.target
            .netconf(self.version, &ipam, &self.dir.path().join("data"))
    }

    pub fn small_conf(&self) -> Value {
        let ipam = self.target.small_ipam.clone().unwrap_or_else(|| json!({}));
        self.target
            .netconf(self.version, &ipam, &self.dir.path().join("data"))
    }

    pub fn run(&self, call: Call, stdin: &Value) -> Step {
        let out = self.target.run(&call, stdin).unwrap_or_else(|e| Outcome {
            stdout: String::new(),
            stderr: format!("could not run the plugin: {e}"),
            code: None,
            elapsed: Default::default(),
        });
        Step {
            call,
            stdin: stdin.clone(),
            out,
        }
    }

    /// ADD for `id`, which must succeed with a valid result.
    pub fn add(&self, id: &str, conf: &Value) -> Result<Value, String> {
        self.run(Call::attach("ADD", id), conf).result(self.version)
    }

    /// `conf` with `prevResult` set, for CHECK and DEL.
    fn with_prev(&self, conf: &Value, prev: &Value) -> Value {
        let mut c = conf.clone();
        c["prevResult"] = prev.clone();
        c
    }
}

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
        let step = case.run(Call::attach("ADD", &id), conf);
        if !step.out.ok() {
            return Ok((got, step));
        }
        got.push((id, step.result(case.version)?));
    }
    Err(format!(
        "{limit} ADDs all succeeded on the small pool; it is not small"
    ))
}

fn version_output(case: &Case) -> Result<(), String> {
    let step = case.run(Call::new("VERSION"), &json!({"cniVersion": case.version}));
    if !step.out.ok() {
        return Err(step.fail("exit 0"));
    }
    let v = step.out.parsed().map_err(|e| step.fail(&e))?;
    let versions = v["supportedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !v["cniVersion"].is_string()
        || versions.is_empty()
        || !versions
            .iter()
            .all(|s| s.as_str().and_then(crate::versions::parse).is_some())
    {
        return Err(step.fail("{\"cniVersion\": <version>, \"supportedVersions\": [<versions>]}"));
    }
    Ok(())
}

fn env_error(case: &Case, call: Call) -> Result<(), String> {
    case.run(call, &case.conf()).error(&[4]).map(drop)
}

fn missing_command(case: &Case) -> Result<(), String> {
    env_error(
        case,
        Call {
            command: String::new(),
            ..Call::attach("ADD", "c1")
        },
    )
}

fn unknown_command(case: &Case) -> Result<(), String> {
    env_error(
        case,
        Call {
            command: "FROBNICATE".into(),
            ..Call::attach("ADD", "c1")
        },
    )
}

fn missing_container_id(case: &Case) -> Result<(), String> {
    env_error(
        case,
        Call {
            container_id: None,
            ..Call::attach("ADD", "c1")
        },
    )
}

fn invalid_container_id(case: &Case) -> Result<(), String> {
    env_error(case, Call::attach("ADD", "bad/container/id"))
}

fn invalid_ifname(case: &Case) -> Result<(), String> {
    env_error(case, Call::attach("ADD", "c1").ifname("eth0/x"))
}

fn missing_netns(case: &Case) -> Result<(), String> {
    env_error(
        case,
        Call {
            netns: None,
            ..Call::attach("ADD", "c1")
        },
    )
}

fn malformed_config(case: &Case) -> Result<(), String> {
    let raw = Value::String(format!(
        "{{\"cniVersion\": \"{}\", \"name\": ",
        case.version
    ));
    case.run(Call::attach("ADD", "c1"), &raw)
        .error(&[6])
        .map(drop)
}

fn unsupported_version(case: &Case) -> Result<(), String> {
    let mut c = case.conf();
    c["cniVersion"] = json!("99.0.0");
    case.run(Call::attach("ADD", "c1"), &c)
        .error(&[1])
        .map(drop)
}

fn missing_ipam(case: &Case) -> Result<(), String> {
    let mut c = case.conf();
    c.as_object_mut().expect("an object").remove("ipam");
    case.run(Call::attach("ADD", "c1"), &c)
        .error(&[7])
        .map(drop)
}

fn result_schema(case: &Case) -> Result<(), String> {
    case.add("c1", &case.conf()).map(drop)
}

fn ipam_no_interfaces(case: &Case) -> Result<(), String> {
    let step = case.run(Call::attach("ADD", "c1"), &case.conf());
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

fn second_add_fails(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    case.add("c1", &conf)?;
    case.run(Call::attach("ADD", "c1"), &conf)
        .error(&[])
        .map(drop)
}

fn del_repeated(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    let del = case.with_prev(&conf, &r);
    case.run(Call::attach("DEL", "c1"), &del).quiet_success()?;
    case.run(Call::attach("DEL", "c1"), &del).quiet_success()
}

fn del_unknown(case: &Case) -> Result<(), String> {
    case.run(Call::attach("DEL", "never-added"), &case.conf())
        .quiet_success()
}

fn del_bare(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    case.add("c1", &conf)?;
    case.run(
        Call {
            netns: None,
            ..Call::attach("DEL", "c1")
        },
        &conf,
    )
    .quiet_success()
}

fn reuse_released(case: &Case) -> Result<(), String> {
    let conf = case.small_conf();
    let (got, _) = exhaust(case, &conf, 300)?;
    let (id, result) = got.first().ok_or("the small pool gave no address at all")?;
    let freed = first_address(result)?;
    case.run(Call::attach("DEL", id), &case.with_prev(&conf, result))
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
                    "an address no other of {CONCURRENT} concurrent ADDs got; {a} was handed out twice, to {first} and {id}"
                )));
            }
        }
    }
    Ok(())
}

fn check_after_add(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    case.run(Call::attach("CHECK", "c1"), &case.with_prev(&conf, &r))
        .quiet_success()
}

fn check_after_del(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    let with_prev = case.with_prev(&conf, &r);
    case.run(Call::attach("DEL", "c1"), &with_prev)
        .quiet_success()?;
    case.run(Call::attach("CHECK", "c1"), &with_prev)
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
        Call::attach("CHECK", "c1"),
        &case.with_prev(&conf, &foreign(&r)),
    )
    .error(&[])
    .map(drop)
}

fn check_below_040(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    case.add("c1", &conf)?;
    case.run(Call::attach("CHECK", "c1"), &conf)
        .error(&[1])
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
    case.run(Call::attach("DEL", "probe"), &case.with_prev(&conf, &probe))
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
    case.run(Call::attach("ADD", "c1"), &with_requested(&conf, &taken))
        .error(&[])
        .map(drop)
}

fn kubernetes_args(case: &Case) -> Result<(), String> {
    let call = Call::attach("ADD", "c1").args(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=conformance;K8S_POD_NAME=pod-0;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=8d0b2f1e",
    );
    case.run(call, &case.conf()).result(case.version).map(drop)
}

fn unknown_cni_arg(case: &Case) -> Result<(), String> {
    let step = case.run(
        Call::attach("ADD", "c1").args("CONFORMANCE_UNKNOWN_KEY=x"),
        &case.conf(),
    );
    step.error(&[2])?;
    let msg = step.out.parsed().unwrap_or_default()["msg"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if msg.contains("CONFORMANCE_UNKNOWN_KEY") {
        Ok(())
    } else {
        Err(step.fail("an error message that names the unsupported key CONFORMANCE_UNKNOWN_KEY"))
    }
}

fn gc_releases_unlisted(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let a = case.add("keep", &conf)?;
    let b = case.add("stale", &conf)?;
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    case.run(Call::new("GC"), &gc).quiet_success()?;
    case.run(Call::attach("CHECK", "keep"), &case.with_prev(&conf, &a))
        .quiet_success()?;
    case.run(Call::attach("CHECK", "stale"), &case.with_prev(&conf, &b))
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

macro_rules! rule {
    ($id:literal, $spec:literal, $check:ident) => {
        Rule {
            id: $id,
            spec: $spec,
            since: None,
            before: None,
            small: false,
            check: $check,
        }
    };
    ($id:literal, $spec:literal, $check:ident, since $v:literal) => {
        Rule {
            id: $id,
            spec: $spec,
            since: Some($v),
            before: None,
            small: false,
            check: $check,
        }
    };
    ($id:literal, $spec:literal, $check:ident, small) => {
        Rule {
            id: $id,
            spec: $spec,
            since: None,
            before: None,
            small: true,
            check: $check,
        }
    };
}

/// Rules that do not depend on the config version.
pub fn global_rules() -> Vec<Rule> {
    vec![rule!(
        "version.output",
        "SPEC.md VERSION: prints {\"cniVersion\", \"supportedVersions\": [...]} and exits 0",
        version_output
    )]
}

/// Rules run once per claimed version.
pub fn version_rules() -> Vec<Rule> {
    vec![
        rule!(
            "env.missing-command",
            "SPEC.md: CNI_COMMAND is required; error code 4 for invalid environment variables",
            missing_command
        ),
        rule!(
            "env.unknown-command",
            "SPEC.md: CNI_COMMAND is one of ADD, DEL, CHECK, GC, STATUS or VERSION; code 4",
            unknown_command
        ),
        rule!(
            "env.missing-containerid",
            "SPEC.md: ADD requires CNI_CONTAINERID; code 4",
            missing_container_id
        ),
        rule!(
            "env.invalid-containerid",
            "SPEC.md: CNI_CONTAINERID must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$; code 4",
            invalid_container_id
        ),
        rule!(
            "env.invalid-ifname",
            "SPEC.md: CNI_IFNAME must not contain '/'; code 4",
            invalid_ifname
        ),
        rule!(
            "env.missing-netns",
            "SPEC.md: ADD requires CNI_NETNS; code 4",
            missing_netns
        ),
        rule!(
            "config.malformed-json",
            "SPEC.md: code 6 for failure to decode content",
            malformed_config
        ),
        rule!(
            "config.unsupported-version",
            "SPEC.md: code 1 for an incompatible CNI version",
            unsupported_version
        ),
        rule!(
            "config.missing-ipam",
            "SPEC.md: code 7 for an invalid network config (an IPAM plugin without its ipam object)",
            missing_ipam
        ),
        rule!(
            "add.result-schema",
            "SPEC.md ADD: prints a Success result whose cniVersion matches the config's, in that version's layout",
            result_schema
        ),
        rule!(
            "add.ipam-no-interfaces",
            "SPEC.md IPAM: an IPAM plugin's result has no interfaces, and ips[].interface is unset",
            ipam_no_interfaces
        ),
        rule!(
            "add.second-add-fails",
            "SPEC.md ADD: a second ADD for the same container and interface without a DEL must fail",
            second_add_fails
        ),
        rule!(
            "del.repeated",
            "SPEC.md DEL: must succeed when the resources are already gone, as on a repeated DEL",
            del_repeated
        ),
        rule!(
            "del.unknown-container",
            "SPEC.md DEL: must succeed for a container it never saw",
            del_unknown
        ),
        rule!(
            "del.no-netns-no-prev-result",
            "SPEC.md DEL: must release IPAM resources even without CNI_NETNS or prevResult",
            del_bare
        ),
        rule!(
            "add.reuse-after-release",
            "SPEC.md DEL: releases the address; a later ADD can be given it",
            reuse_released,
            small
        ),
        rule!(
            "add.exhaustion",
            "SPEC.md ADD: when no address is left, fail with an error; never hand one out twice",
            exhaustion,
            small
        ),
        rule!(
            "add.concurrent-distinct",
            "SPEC.md: runtimes call plugins for different containers in parallel; concurrent ADDs get distinct addresses",
            concurrent_adds
        ),
        rule!("check.after-add", "SPEC.md CHECK: succeeds with no output while the allocation matches prevResult", check_after_add, since "0.4.0"),
        rule!("check.after-del", "SPEC.md CHECK: fails when the IP reservation is missing", check_after_del, since "0.4.0"),
        rule!("check.foreign-prev-result", "SPEC.md CHECK: fails when prevResult names an address the plugin did not allocate", check_foreign_prev, since "0.4.0"),
        Rule {
            id: "check.below-0.4.0",
            spec: "SPEC.md CHECK: a config older than 0.4.0 gets code 1",
            since: None,
            before: Some("0.4.0"),
            small: false,
            check: check_below_040,
        },
        rule!(
            "add.requested-ip-honoured",
            "CONVENTIONS.md ips capability: runtimeConfig.ips asks for an address (in CIDR notation); a free one is handed out",
            requested_honoured
        ),
        rule!(
            "add.requested-ip-refused",
            "CONVENTIONS.md ips capability: an address that is taken cannot be handed out",
            requested_refused
        ),
        rule!(
            "args.kubernetes",
            "CONVENTIONS.md CNI_ARGS: K8S_POD_* keys with IgnoreUnknown=1 are accepted",
            kubernetes_args
        ),
        rule!(
            "args.unknown-key",
            "CONVENTIONS.md CNI_ARGS: an unknown key without IgnoreUnknown=1 is refused; SPEC.md code 2 names the unsupported field",
            unknown_cni_arg
        ),
        rule!("gc.releases-unlisted", "SPEC.md GC: releases what belongs to attachments not in cni.dev/valid-attachments, keeps the rest", gc_releases_unlisted, since "1.1.0"),
        rule!("status.available", "SPEC.md STATUS: exits 0 with no output when ADD can succeed", status_available, since "1.1.0"),
        Rule {
            id: "status.exhausted",
            spec: "SPEC.md STATUS: code 50 (or 51) when the plugin cannot serve ADD, as with an exhausted pool",
            since: Some("1.1.0"),
            before: None,
            small: true,
            check: status_exhausted,
        },
    ]
}
