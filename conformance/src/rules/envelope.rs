//! The CNI envelope: VERSION, the `CNI_*` environment, the network config
//! and `CNI_ARGS`. These judge every kind of plugin the same way.

use serde_json::{Value, json};

use super::{ALL, Case, IPAM, Level, Rule};
use cni::exec::Call;

pub fn version_output() -> Rule {
    Rule::new(
        "version.output",
        Level::Must,
        "SPEC.md VERSION: prints {\"cniVersion\", \"supportedVersions\": [...]} and exits 0",
        version_output_check,
    )
    .kinds(ALL)
}

fn version_output_check(case: &Case) -> Result<(), String> {
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
            .all(|s| s.as_str().and_then(cni::version::Version::parse).is_some())
    {
        return Err(step.fail("{\"cniVersion\": <version>, \"supportedVersions\": [<versions>]}"));
    }
    Ok(())
}

fn env_error(case: &Case, call: Call) -> Result<(), String> {
    case.run(call, &case.conf()).error(&[4]).map(drop)
}

fn missing_command(case: &Case) -> Result<(), String> {
    let call = Call {
        command: String::new(),
        ..case.call("ADD", "c1")?
    };
    env_error(case, call)
}

fn unknown_command(case: &Case) -> Result<(), String> {
    let call = Call {
        command: "FROBNICATE".into(),
        ..case.call("ADD", "c1")?
    };
    env_error(case, call)
}

fn missing_container_id(case: &Case) -> Result<(), String> {
    let call = Call {
        container_id: None,
        ..case.call("ADD", "c1")?
    };
    env_error(case, call)
}

fn invalid_container_id(case: &Case) -> Result<(), String> {
    let mut call = case.call("ADD", "c1")?;
    call.container_id = Some("bad/container/id".into());
    env_error(case, call)
}

fn invalid_ifname(case: &Case) -> Result<(), String> {
    env_error(case, case.call("ADD", "c1")?.ifname("eth0/x"))
}

fn missing_netns(case: &Case) -> Result<(), String> {
    let call = Call {
        netns: None,
        ..case.call("ADD", "c1")?
    };
    env_error(case, call)
}

fn malformed_config(case: &Case) -> Result<(), String> {
    let raw = Value::String(format!(
        "{{\"cniVersion\": \"{}\", \"name\": ",
        case.version
    ));
    case.run(case.call("ADD", "c1")?, &raw)
        .error(&[6])
        .map(drop)
}

fn unsupported_version(case: &Case) -> Result<(), String> {
    let mut c = case.conf();
    c["cniVersion"] = json!("99.0.0");
    case.run(case.call("ADD", "c1")?, &c).error(&[1]).map(drop)
}

fn missing_ipam(case: &Case) -> Result<(), String> {
    let mut c = case.conf();
    c.as_object_mut().expect("an object").remove("ipam");
    case.run(case.call("ADD", "c1")?, &c).error(&[7]).map(drop)
}

fn kubernetes_args(case: &Case) -> Result<(), String> {
    let call = case.call("ADD", "c1")?.args(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=conformance;K8S_POD_NAME=pod-0;\
         K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=8d0b2f1e",
    );
    let conf = case.add_conf("c1", &case.conf())?;
    case.run(call, &conf).result(case.version).map(drop)
}

fn unknown_cni_arg(case: &Case) -> Result<(), String> {
    let call = case.call("ADD", "c1")?.args("CONFORMANCE_UNKNOWN_KEY=x");
    let step = case.run(call, &case.add_conf("c1", &case.conf())?);
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

// The spec names code 4 for invalid environment variables, 6 for
// undecodable content and 1 for an incompatible version among its
// well-known codes, and says a plugin "should" answer 1; it never says a
// plugin must pick these codes over another error. So these rules are
// `should`: the error itself matters most, its code next.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new(
            "env.missing-command",
            Level::Should,
            "SPEC.md: CNI_COMMAND is required; code 4 for invalid environment variables",
            missing_command,
        )
        .kinds(ALL),
        Rule::new(
            "env.unknown-command",
            Level::Should,
            "SPEC.md: CNI_COMMAND is one of ADD, DEL, CHECK, GC, STATUS or VERSION; code 4",
            unknown_command,
        )
        .kinds(ALL),
        Rule::new(
            "env.missing-containerid",
            Level::Should,
            "SPEC.md: ADD requires CNI_CONTAINERID; code 4",
            missing_container_id,
        )
        .kinds(ALL),
        Rule::new(
            "env.invalid-containerid",
            Level::Should,
            "SPEC.md: CNI_CONTAINERID must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$; code 4",
            invalid_container_id,
        )
        .kinds(ALL),
        Rule::new(
            "env.invalid-ifname",
            Level::Should,
            "SPEC.md: CNI_IFNAME must not contain '/'; code 4",
            invalid_ifname,
        )
        .kinds(ALL),
        Rule::new(
            "env.missing-netns",
            Level::Should,
            "SPEC.md: ADD requires CNI_NETNS; code 4",
            missing_netns,
        )
        .kinds(ALL),
        Rule::new(
            "config.malformed-json",
            Level::Should,
            "SPEC.md: code 6 for failure to decode content",
            malformed_config,
        )
        .kinds(ALL),
        Rule::new(
            "config.unsupported-version",
            Level::Should,
            "SPEC.md: if the cniVersion of the config is not supported, the plugin should return \
             error code 1",
            unsupported_version,
        )
        .kinds(ALL),
        // The reference IPAM plugins answer 999; code 7 is the well-known
        // code for an invalid config, not a requirement.
        Rule::new(
            "config.missing-ipam",
            Level::Convention,
            "SPEC.md: code 7 for an invalid network config (an IPAM plugin without its ipam \
             object)",
            missing_ipam,
        )
        .kinds(IPAM),
        Rule::new(
            "args.kubernetes",
            Level::Convention,
            "CONVENTIONS.md CNI_ARGS: K8S_POD_* keys with IgnoreUnknown=1 are accepted",
            kubernetes_args,
        )
        .kinds(ALL),
        // A plugin that accepts unknown keys breaks no MUST: refusing them
        // is the Go skeleton's habit, and code 2 the well-known code.
        Rule::new(
            "args.unknown-key",
            Level::Convention,
            "CONVENTIONS.md CNI_ARGS: an unknown key without IgnoreUnknown=1 is refused; SPEC.md \
             code 2 names the unsupported field",
            unknown_cni_arg,
        )
        .kinds(ALL),
    ]
}
