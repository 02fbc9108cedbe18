//! What the runtime asks for beyond the config: `CNI_ARGS` keys, and
//! requested addresses from `CNI_ARGS` `IP=`, `args.cni.ips` and the `ips`
//! capability (`runtimeConfig.ips`).

use std::net::IpAddr;

use serde_json::Value;

use crate::errors::{invalid_config, unsupported};
use crate::ranges::parse_ip_loose;
use crate::{Context, IpamError};

/// The value of `CNI_ARGS` key `key`, if present (the last one wins).
pub fn cni_arg<'a>(ctx: &'a Context, key: &str) -> Option<&'a str> {
    ctx.cni_args
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn truthy(v: &str) -> bool {
    v.eq_ignore_ascii_case("true") || v == "1"
}

/// Rejects `CNI_ARGS` keys outside `known` unless `IgnoreUnknown` is set, as
/// the reference plugins do, with code 2 and a message that names each key
/// and value: "The error message must contain the key and value of the
/// unsupported field" (SPEC.md, Error codes).
pub fn reject_unknown_cni_args(ctx: &Context, known: &[&str]) -> Result<(), IpamError> {
    if cni_arg(ctx, "IgnoreUnknown").is_some_and(truthy) {
        return Ok(());
    }
    let unknown: Vec<String> = ctx
        .cni_args
        .iter()
        .filter(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(unsupported(format!(
            "CNI_ARGS: unknown args {} (set IgnoreUnknown=1 to ignore them)",
            unknown.join(", ")
        )))
    }
}

/// Parses raw JSON that the host passed through as a string.
pub fn raw_json(field: &str, raw: Option<&str>) -> Result<Option<Value>, IpamError> {
    raw.map(|s| {
        serde_json::from_str(s).map_err(|e| invalid_config(format!("invalid {field}: {e}")))
    })
    .transpose()
}

fn ip_list(field: &str, v: Option<&Value>) -> Result<Vec<IpAddr>, IpamError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v
        .as_array()
        .ok_or_else(|| invalid_config(format!("{field} must be a list of addresses")))?;
    list.iter()
        .map(|item| {
            item.as_str()
                .and_then(parse_ip_loose)
                .ok_or_else(|| invalid_config(format!("cannot understand ip {item} in {field}")))
        })
        .collect()
}

/// Requested addresses, in the reference host-local's order: `CNI_ARGS`
/// `IP=`, then `args.cni.ips`, then `runtimeConfig.ips`. Where `args.cni.ips`
/// is given, `CNI_ARGS` `IP=` is ignored: "If a runtime passes an
/// equivalent key via `args` ... and the plugin understands `args`, the
/// plugin must ignore the CNI_ARGS Field" (CONVENTIONS.md). The reference
/// takes both, and then fails for asking two addresses of one range set.
pub fn requested_ips(ctx: &Context) -> Result<Vec<IpAddr>, IpamError> {
    let args = raw_json("args", ctx.args.as_deref())?;
    let from_args = ip_list(
        "args.cni.ips",
        args.as_ref()
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("ips")),
    )?;
    let mut out = Vec::new();
    if let Some(ip) = cni_arg(ctx, "IP").filter(|_| from_args.is_empty()) {
        out.push(parse_ip_loose(ip).ok_or_else(|| {
            invalid_config(format!("cannot understand ip {ip:?} in CNI_ARGS IP"))
        })?);
    }
    out.extend(from_args);
    let rc = raw_json("runtimeConfig", ctx.runtime_config.as_deref())?;
    out.extend(ip_list(
        "runtimeConfig.ips",
        rc.as_ref().and_then(|r| r.get("ips")),
    )?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::context as test_context;
    use serde_json::json;

    fn requested(ctx: &Context) -> Vec<String> {
        requested_ips(ctx)
            .unwrap()
            .iter()
            .map(|i| i.to_string())
            .collect()
    }

    #[test]
    fn requested_ips_come_from_cni_args_or_args_then_the_capability() {
        let mut ctx = test_context(json!({}));
        ctx.cni_args = vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("IP".into(), "10.1.0.9".into()),
        ];
        ctx.runtime_config = Some(json!({"ips": ["fd00::5/64"]}).to_string());
        assert_eq!(requested(&ctx), ["10.1.0.9", "fd00::5"]);
        // args.cni.ips is the equivalent of CNI_ARGS IP, and beats it.
        ctx.args = Some(json!({"cni": {"ips": ["10.1.0.10/24"]}}).to_string());
        assert_eq!(requested(&ctx), ["10.1.0.10", "fd00::5"]);
    }

    #[test]
    fn a_bad_requested_ip_is_a_config_error_naming_it() {
        let mut ctx = test_context(json!({}));
        ctx.cni_args = vec![("IP".into(), "10.1.0.x".into())];
        let err = requested_ips(&ctx).unwrap_err();
        assert!(
            matches!(&err, IpamError::InvalidConfig(m) if m.contains("10.1.0.x")),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_cni_args_need_ignore_unknown() {
        let mut ctx = test_context(json!({}));
        ctx.cni_args = vec![("K8S_POD_NAME".into(), "p".into())];
        assert!(matches!(
            reject_unknown_cni_args(&ctx, &["IP"]),
            Err(IpamError::UnsupportedField(m)) if m.contains("K8S_POD_NAME=p")
        ));
        ctx.cni_args.push(("IgnoreUnknown".into(), "true".into()));
        assert!(reject_unknown_cni_args(&ctx, &["IP"]).is_ok());
    }
}
