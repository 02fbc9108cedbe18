//! Who a workload is, across re-creations: the `key` config field of the
//! policies that keep something for a workload (sticky its address, dhcp
//! its DHCP client id). A Kubernetes pod that is re-created, as a
//! StatefulSet's are, comes back under a new container id but with the same
//! namespace and name, which the runtime passes in `CNI_ARGS`.

use crate::args::cni_arg;
use crate::errors::invalid_config;
use crate::{Attachment, Context, IpamError};

/// The `CNI_ARGS` names a workload is known by, unless `key` says others.
pub const DEFAULT_KEY: [&str; 2] = ["K8S_POD_NAMESPACE", "K8S_POD_NAME"];

/// The `key` field's names, or the default; `policy` names the policy in
/// the error.
pub fn key_names(field: Option<Vec<String>>, policy: &str) -> Result<Vec<String>, IpamError> {
    let key = field.unwrap_or_else(|| DEFAULT_KEY.map(str::to_string).to_vec());
    if key.is_empty() || key.iter().any(String::is_empty) {
        return Err(invalid_config(format!(
            "{policy}: key must list at least one CNI_ARGS name"
        )));
    }
    Ok(key)
}

/// The workload this attachment belongs to: the values of the `key` names
/// and the interface, or the container id and interface when one of the
/// values is absent (such a workload does not outlive its container).
pub fn workload(names: &[String], ctx: &Context, att: &Attachment) -> String {
    let values: Option<Vec<&str>> = names
        .iter()
        .map(|k| cni_arg(ctx, k).filter(|v| !v.is_empty()))
        .collect();
    match values {
        Some(v) => format!("{}/{}", v.join("/"), att.ifname),
        None => format!(
            "container:{}/{}",
            crate::keys::part(&att.container_id),
            att.ifname
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{att, context};

    #[test]
    fn a_pod_is_its_namespace_and_name_and_otherwise_its_container() {
        let names = key_names(None, "sticky").unwrap();
        let mut ctx = context(serde_json::json!({}));
        assert_eq!(workload(&names, &ctx, &att("c1")), "container:c1/eth0");
        ctx.cni_args = vec![
            ("K8S_POD_NAMESPACE".into(), "shop".into()),
            ("K8S_POD_NAME".into(), "web-0".into()),
        ];
        assert_eq!(workload(&names, &ctx, &att("c1")), "shop/web-0/eth0");
        assert_eq!(workload(&names, &ctx, &att("c2")), "shop/web-0/eth0");
        assert!(key_names(Some(vec![]), "dhcp").is_err());
        assert!(key_names(Some(vec!["".into()]), "dhcp").is_err());
    }
}
