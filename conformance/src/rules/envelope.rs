//! The CNI envelope: VERSION, the `CNI_*` environment, the network config,
//! `CNI_ARGS` and `args`. These judge every kind of plugin the same way.

use serde_json::{Value, json};

use super::{ALL, Case, Checked, Cite, Finding, IPAM, Level, Rule, Step};
use cni::exec::Call;
use cni::version::at_least;

pub fn version_output() -> Rule {
    Rule::new("version.output", version_output_check)
        .cites(
            const {
                &[
                    Cite::full("spec/result.version"),
                    Cite::full("spec/version.output"),
                ]
            },
        )
        .kinds(ALL)
}

fn version_output_check(case: &Case) -> Checked {
    let step = case.run(Call::new("VERSION"), &json!({"cniVersion": case.version}));
    if !step.out.ok() {
        return Err(step.fail("exit 0").into());
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
            .all(|s| s.as_str().and_then(cni::version::Version::parse).is_some())
    {
        return Err(step
            .fail("{\"cniVersion\": <version>, \"supportedVersions\": [<versions>]}")
            .into());
    }
    if at_least(case.version, "1.0.0") && v["cniVersion"] != case.version {
        return Err(step
            .fail(&format!(
                "\"cniVersion\": {:?}, the version the input named",
                case.version
            ))
            .into());
    }
    Ok(())
}

/// How a variable may be named in a message: its name with or without the
/// `CNI_` prefix, in any case, or the phrase the Go skeleton uses for it
/// ("containerID", "interface name"), which names it well enough.
fn names_variable(text: &str, variable: &str) -> bool {
    let text = text.to_ascii_lowercase();
    let bare = variable.trim_start_matches("CNI_").to_ascii_lowercase();
    let phrase = match variable {
        "CNI_IFNAME" => Some("interface name"),
        "CNI_CONTAINERID" => Some("container id"),
        _ => None,
    };
    text.contains(&variable.to_ascii_lowercase())
        || text.contains(&bare)
        || phrase.is_some_and(|p| text.contains(p))
}

/// The error object of a failed step; a failure of the error layout is
/// judged at `spec/errors.structure`.
fn error_object(step: &Step) -> Result<Value, Finding> {
    step.error(&[])
        .map_err(|e| Finding::at("spec/errors.structure", e))?;
    Ok(step.out.parsed().unwrap_or_default())
}

/// A call the runtime must not make: it fails with an error object, code
/// `code`, whose message names `names` (a MUST for codes 2 and 4).
fn refused(step: &Step, code: u64, names: &[&str], must: &'static str) -> Checked {
    if step.out.ok() {
        return Err(step.fail(&format!("an error with code {code}")).into());
    }
    let error = error_object(step)?;
    if error["code"].as_u64() != Some(code) {
        return Err(step.fail(&format!("code {code}")).into());
    }
    let text = format!(
        "{} {}",
        error["msg"].as_str().unwrap_or_default(),
        error["details"].as_str().unwrap_or_default()
    );
    let missing: Vec<&&str> = names.iter().filter(|n| !names_variable(&text, n)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Finding::at(
            must,
            step.fail(&format!(
                "a code-{code} message that names {missing:?}; it says {text:?}"
            )),
        ))
    }
}

fn env_error(case: &Case, call: Call, variable: &str) -> Checked {
    let step = case.run(call, &case.conf());
    refused(&step, 4, &[variable], "spec/errors.code-4")
}

fn missing_command(case: &Case) -> Checked {
    let call = Call {
        command: String::new(),
        ..case.call("ADD", "c1")?
    };
    env_error(case, call, "CNI_COMMAND")
}

fn unknown_command(case: &Case) -> Checked {
    let call = Call {
        command: "FROBNICATE".into(),
        ..case.call("ADD", "c1")?
    };
    env_error(case, call, "CNI_COMMAND")
}

fn missing_container_id(case: &Case) -> Checked {
    let call = Call {
        container_id: None,
        ..case.call("ADD", "c1")?
    };
    env_error(case, call, "CNI_CONTAINERID")
}

fn invalid_container_id(case: &Case) -> Checked {
    let mut call = case.call("ADD", "c1")?;
    call.container_id = Some("bad/container/id".into());
    env_error(case, call, "CNI_CONTAINERID")
}

fn invalid_ifname(case: &Case) -> Checked {
    env_error(case, case.call("ADD", "c1")?.ifname("eth0/x"), "CNI_IFNAME")
}

fn missing_netns(case: &Case) -> Checked {
    let call = Call {
        netns: None,
        ..case.call("ADD", "c1")?
    };
    env_error(case, call, "CNI_NETNS")
}

/// A failure with an error object of code `code`.
fn coded(step: &Step, code: u64) -> Checked {
    if step.out.ok() {
        return Err(step.fail(&format!("an error with code {code}")).into());
    }
    let error = error_object(step)?;
    if error["code"].as_u64() == Some(code) {
        Ok(())
    } else {
        Err(step.fail(&format!("code {code}")).into())
    }
}

fn malformed_config(case: &Case) -> Checked {
    let raw = Value::String(format!(
        "{{\"cniVersion\": \"{}\", \"name\": ",
        case.version
    ));
    coded(&case.run(case.call("ADD", "c1")?, &raw), 6)
}

fn unsupported_version(case: &Case) -> Checked {
    let mut c = case.conf();
    c["cniVersion"] = json!("99.0.0");
    coded(&case.run(case.call("ADD", "c1")?, &c), 1)
}

fn missing_ipam(case: &Case) -> Checked {
    let mut c = case.conf();
    c.as_object_mut().expect("an object").remove("ipam");
    coded(&case.run(case.call("ADD", "c1")?, &c), 7)
}

fn kubernetes_args(case: &Case) -> Checked {
    let call = case.call("ADD", "c1")?.args(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=conformance;K8S_POD_NAME=pod-0;\
         K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=8d0b2f1e",
    );
    let conf = case.add_conf("c1", &case.conf())?;
    case.run(call, &conf).result(case.version).map(drop)?;
    Ok(())
}

fn unknown_cni_arg(case: &Case) -> Checked {
    let call = case
        .call("ADD", "c1")?
        .args("CONFORMANCE_UNKNOWN_KEY=conformance-value");
    let step = case.run(call, &case.add_conf("c1", &case.conf())?);
    refused(
        &step,
        2,
        &["CONFORMANCE_UNKNOWN_KEY", "conformance-value"],
        "spec/errors.code-2",
    )
}

fn unknown_args_data(case: &Case) -> Checked {
    let mut conf = case.add_conf("c1", &case.conf())?;
    conf["args"] = json!({
        "cni": {"conformance-unknown": {"labels": [{"key": "app", "value": "conformance"}]}},
        "org.example.conformance": {"anything": [1, 2, 3]}
    });
    case.run(case.call("ADD", "c1")?, &conf)
        .result(case.version)
        .map(drop)
        .map_err(|e| format!("args the plugin does not understand are to be ignored: {e}").into())
}

/// Fields the runtime or the suite fills in, which a malformed-field case
/// must leave alone.
const NOT_THE_PLUGINS: &[&str] = &[
    "type",
    "name",
    "cniVersion",
    "ipam",
    "dns",
    "args",
    "runtimeConfig",
    "capabilities",
    "prevResult",
    "dataDir",
    "plugins",
    "disableCheck",
    "disableGC",
    "cniVersions",
];

/// A value of another JSON type than `v`.
fn malformed(v: &Value) -> Value {
    match v {
        Value::String(_) => json!({"cni-conformance": "not a string"}),
        Value::Number(_) => json!("not a number"),
        Value::Bool(_) => json!("not a boolean"),
        Value::Array(_) => json!(42),
        Value::Object(_) => json!(42),
        Value::Null => json!(42),
    }
}

fn malformed_field(case: &Case) -> Checked {
    if matches!(case.target.kind, crate::target::Kind::Conflist) {
        return Err(Finding::not_applicable(
            "a conflist's own fields are the runtime's; its plugins are judged one by one",
        ));
    }
    let mut conf = case.conf();
    let is_ipam = case.target.plugin_kind == crate::target::PluginKind::Ipam;
    let set = &case.target.set;
    let object = if is_ipam {
        &mut conf["ipam"]
    } else {
        &mut conf
    };
    // The last of the plugin's own fields: in a sorted map, the plugin's
    // own settings usually come after a selector such as `mode` or `fault`.
    let field = object.as_object().and_then(|o| {
        o.keys()
            .rfind(|k| !NOT_THE_PLUGINS.contains(&k.as_str()) && !set.contains_key(k.as_str()))
            .cloned()
    });
    let Some(field) = field else {
        return Err(Finding::not_applicable(
            "the config has no field of the plugin's own to malform",
        ));
    };
    let bad = malformed(&object[&field]);
    object[&field] = bad.clone();
    let conf = case.add_conf("c1", &conf)?;
    let step = case.run(case.call("ADD", "c1")?, &conf);
    if step.out.ok() {
        let path = if is_ipam { "ipam." } else { "" };
        return Err(step
            .fail(&format!(
                "an error: {path}{field} is {bad}, a value of the wrong type"
            ))
            .into());
    }
    error_object(&step).map(drop)
}

const SKELETON: &str = "the Go skeleton (pkg/skel), which every reference plugin uses, refuses \
                        these calls with code 4";
const ENV_LOWERED: &str = "A runtime never makes this call: setting the variables right is its \
                           duty. The spec defines code 4 for invalid variables but obliges no \
                           plugin to refuse the call or to pick that code, so refusing it with \
                           code 4 is a convention. What the spec does oblige is judged at its \
                           own level: a code-4 message names the variable (spec/errors.code-4, \
                           MUST), and an error is an error object on stdout \
                           (spec/errors.structure).";

pub fn rules() -> Vec<Rule> {
    const NAMES: Cite = Cite::partly(
        "spec/errors.code-4",
        "for the variables the suite spoils, when the plugin answers code 4",
    );
    const LAYOUT: Cite =
        Cite::partly("spec/errors.structure", "for the errors the rules provoke").aside();
    const ERROR_KEYS: Cite =
        Cite::partly("spec/result.error-keys", "for the errors the rules provoke").aside();
    const EXIT: Cite =
        Cite::partly("spec/errors.exit-code", "for the errors the rules provoke").aside();
    let env = |id: &'static str, check: fn(&Case) -> Checked| {
        Rule::new(id, check)
            .cites(const { &[NAMES, LAYOUT, ERROR_KEYS, EXIT] })
            .lowered(Level::Convention, ENV_LOWERED)
            .habit(SKELETON)
            .kinds(ALL)
    };
    vec![
        env("env.missing-command", missing_command),
        env("env.unknown-command", unknown_command),
        env("env.missing-containerid", missing_container_id),
        env("env.invalid-containerid", invalid_container_id),
        env("env.invalid-ifname", invalid_ifname),
        env("env.missing-netns", missing_netns),
        Rule::new("config.malformed-json", malformed_config)
            .cites(const { &[LAYOUT] })
            .habit(
                "the Go skeleton answers stdin it cannot decode with code 6, the spec's code for \
                 \"failed to decode content\"",
            )
            .kinds(ALL),
        Rule::new("config.unsupported-version", unsupported_version)
            .cites(const { &[
                Cite::full("spec/errors.unsupported-version"),
                LAYOUT,
            ] })
            .habit(
                "libcni and the Go skeleton answer a cniVersion they do not speak with code 1, \
                 \"incompatible CNI version\"",
            )
            .kinds(ALL),
        Rule::new("config.missing-ipam", missing_ipam)
            .cites(const { &[LAYOUT] })
            .habit(
                "code 7 is the spec's code for an invalid network config; the reference IPAM \
                 plugins answer 999",
            )
            .kinds(IPAM),
        Rule::new("config.malformed-field", malformed_field)
            .cites(const { &[
                Cite::partly(
                    "conv/fields.errors",
                    "the suite gives one of the plugin's fields a value of the wrong JSON type; \
                     it does not know which values a field accepts",
                ),
                LAYOUT,
            ] })
            .kinds(ALL),
        Rule::new("args.kubernetes", kubernetes_args)
            .habit(
                "Kubernetes runtimes (the CRI plugins of containerd and CRI-O) send K8S_POD_* \
                 keys with IgnoreUnknown=1, which libcni's and the Go skeleton's CNI_ARGS \
                 parsing honours",
            )
            .kinds(ALL),
        Rule::new("args.unknown-key", unknown_cni_arg)
            .cites(const { &[
                Cite::partly(
                    "spec/errors.code-2",
                    "for an unknown CNI_ARGS key, when the plugin answers code 2",
                ),
                LAYOUT,
            ] })
            .lowered(
                Level::Convention,
                "A plugin that accepts unknown CNI_ARGS keys breaks no statement: refusing them \
                 is the Go skeleton's habit, and code 2 the spec's code for an unsupported field. \
                 A code-2 message that does not name the key and value breaks \
                 spec/errors.code-2, a MUST, and fails at that level.",
            )
            .habit("the Go skeleton refuses a CNI_ARGS key it does not know without IgnoreUnknown=1")
            .kinds(ALL),
        Rule::new("args.unknown-data", unknown_args_data)
            .cites(const { &[
                Cite::full("conv/args.ignore"),
                Cite::full("spec/config.args-ignored"),
            ] })
            .kinds(ALL),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_is_named_by_its_name_or_the_skeleton_phrase() {
        assert!(names_variable(
            "required env variables [CNI_NETNS] missing",
            "CNI_NETNS"
        ));
        assert!(names_variable(
            "invalid characters in containerID",
            "CNI_CONTAINERID"
        ));
        assert!(names_variable(
            "interface name contains / or :",
            "CNI_IFNAME"
        ));
        assert!(!names_variable("bad environment", "CNI_IFNAME"));
        assert!(!names_variable("missing", "CNI_NETNS"));
    }

    #[test]
    fn a_malformed_value_has_another_type() {
        for v in [
            json!("a"),
            json!(1),
            json!(true),
            json!([1]),
            json!({"a": 1}),
        ] {
            let bad = malformed(&v);
            assert_ne!(
                std::mem::discriminant(&bad),
                std::mem::discriminant(&v),
                "{v}"
            );
        }
    }
}
