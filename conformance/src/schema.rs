//! What a valid result looks like in each CNI version, and the extra rules
//! for IPAM plugins. Each check returns every problem it finds, so a failure
//! message lists them all.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use cni::version::at_least;

fn cidr(v: &Value) -> Option<IpNet> {
    v.as_str()?.parse().ok()
}

fn ip(v: &Value) -> Option<IpAddr> {
    v.as_str()?.parse().ok()
}

fn check_routes(routes: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(list) = routes.as_array() else {
        problems.push(format!("{path} must be a list"));
        return;
    };
    for (i, r) in list.iter().enumerate() {
        if cidr(&r["dst"]).is_none() {
            problems.push(format!("{path}[{i}].dst must be a CIDR, not {}", r["dst"]));
        }
        if !r["gw"].is_null() && ip(&r["gw"]).is_none() {
            problems.push(format!(
                "{path}[{i}].gw must be an IP address, not {}",
                r["gw"]
            ));
        }
    }
}

fn check_dns(dns: &Value, problems: &mut Vec<String>) {
    if dns.is_null() {
        return;
    }
    let Some(obj) = dns.as_object() else {
        problems.push("dns must be an object".into());
        return;
    };
    for key in ["nameservers", "search", "options"] {
        if let Some(v) = obj.get(key)
            && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        {
            problems.push(format!("dns.{key} must be a list of strings"));
        }
    }
    if let Some(d) = obj.get("domain")
        && !d.is_string()
    {
        problems.push("dns.domain must be a string".into());
    }
}

fn check_ip_v02(v: &Value, path: &str, family_v4: bool, problems: &mut Vec<String>) {
    match cidr(&v["ip"]) {
        Some(n) if n.addr().is_ipv4() == family_v4 => {}
        Some(n) => problems.push(format!("{path}.ip {n} is of the wrong family")),
        None => problems.push(format!("{path}.ip must be a CIDR, not {}", v["ip"])),
    }
    if !v["gateway"].is_null() && ip(&v["gateway"]).is_none() {
        problems.push(format!("{path}.gateway must be an IP address"));
    }
    if !v["routes"].is_null() {
        check_routes(&v["routes"], &format!("{path}.routes"), problems);
    }
}

/// Problems with a success result for config version `version`.
pub fn result_problems(result: &Value, version: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(obj) = result.as_object() else {
        return vec![format!("the result must be a JSON object, not {result}")];
    };
    match obj.get("cniVersion").and_then(Value::as_str) {
        Some(v) if v == version => {}
        Some(v) => problems.push(format!(
            "result cniVersion is {v:?}; it must equal the config's {version:?}"
        )),
        None => problems.push("the result has no cniVersion".into()),
    }
    check_dns(&result["dns"], &mut problems);
    if !at_least(version, "0.3.0") {
        for key in ["ips", "interfaces", "routes"] {
            if obj.contains_key(key) {
                problems.push(format!(
                    "a {version} result has no {key:?}: it uses ip4 and ip6"
                ));
            }
        }
        for (key, v4) in [("ip4", true), ("ip6", false)] {
            if let Some(v) = obj.get(key) {
                check_ip_v02(v, key, v4, &mut problems);
            }
        }
        return problems;
    }
    for key in ["ip4", "ip6"] {
        if obj.contains_key(key) {
            problems.push(format!("a {version} result has no {key:?}: it uses ips"));
        }
    }
    let with_version = !at_least(version, "1.0.0");
    let interfaces = obj
        .get("interfaces")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    match obj.get("ips") {
        None => {}
        Some(Value::Array(ips)) => {
            for (i, entry) in ips.iter().enumerate() {
                let addr = cidr(&entry["address"]);
                if addr.is_none() {
                    problems.push(format!(
                        "ips[{i}].address must be a CIDR, not {}",
                        entry["address"]
                    ));
                }
                if !entry["gateway"].is_null() && ip(&entry["gateway"]).is_none() {
                    problems.push(format!("ips[{i}].gateway must be an IP address"));
                }
                let version_field = entry.get("version").and_then(Value::as_str);
                match (with_version, version_field, addr) {
                    (true, Some(f), Some(a)) if f != if a.addr().is_ipv4() { "4" } else { "6" } => {
                        problems.push(format!("ips[{i}].version {f:?} does not match {a}"))
                    }
                    (true, None, _) => {
                        problems.push(format!("ips[{i}].version is required in {version}"))
                    }
                    (false, Some(_), _) => {
                        problems.push(format!("ips[{i}].version does not exist in {version}"))
                    }
                    _ => {}
                }
                if let Some(idx) = entry.get("interface")
                    && idx.as_u64().is_none_or(|n| (n as usize) >= interfaces)
                {
                    problems.push(format!(
                        "ips[{i}].interface {idx} is not an index into interfaces"
                    ));
                }
            }
        }
        Some(_) => problems.push("ips must be a list".into()),
    }
    if let Some(routes) = obj.get("routes") {
        check_routes(routes, "routes", &mut problems);
    }
    problems
}

/// Problems specific to IPAM plugins: their result has no interfaces.
pub fn ipam_problems(result: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if result.get("interfaces").is_some() {
        problems.push("an IPAM result must not have interfaces".into());
    }
    if let Some(ips) = result.get("ips").and_then(Value::as_array) {
        for (i, entry) in ips.iter().enumerate() {
            if entry.get("interface").is_some() {
                problems.push(format!(
                    "ips[{i}].interface must not be set by an IPAM plugin"
                ));
            }
        }
    }
    problems
}

/// Problems with an error printed on stdout.
pub fn error_problems(error: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if !error.get("code").is_some_and(Value::is_u64) {
        problems.push(format!("an error needs a numeric code: {error}"));
    }
    if !error.get("msg").is_some_and(Value::is_string) {
        problems.push(format!("an error needs a msg string: {error}"));
    }
    problems
}

/// The addresses of a success result, in any version's layout.
pub fn addresses(result: &Value) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| cidr(&e["address"]).map(|n| n.addr()))
        .collect();
    for key in ["ip4", "ip6"] {
        if let Some(n) = cidr(&result[key]["ip"]) {
            out.push(n.addr());
        }
    }
    out
}

/// A result with the differences that carry no meaning removed: absent
/// versus null, empty lists, empty objects and empty strings, and an error's
/// `cniVersion`, which the reference plugins leave out. Key order never
/// matters to a JSON value.
pub fn normalise(v: &Value) -> Value {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }
    match v {
        Value::Object(o) => {
            let is_error = o.contains_key("code") && o.contains_key("msg");
            Value::Object(
                o.iter()
                    .filter(|(k, _)| !(is_error && k.as_str() == "cniVersion"))
                    .map(|(k, v)| (k.clone(), normalise(v)))
                    .filter(|(_, v)| !empty(v))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_each_versions_layout() {
        let v1 = json!({"cniVersion": "1.0.0",
                        "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
                        "routes": [{"dst": "0.0.0.0/0"}], "dns": {}});
        assert!(result_problems(&v1, "1.0.0").is_empty());
        let v04 = json!({"cniVersion": "0.4.0",
                         "ips": [{"version": "4", "address": "10.0.0.2/24"}], "dns": {}});
        assert!(result_problems(&v04, "0.4.0").is_empty());
        let v02 = json!({"cniVersion": "0.2.0",
                         "ip4": {"ip": "10.0.0.2/24", "routes": [{"dst": "0.0.0.0/0"}]},
                         "dns": {}});
        assert!(result_problems(&v02, "0.2.0").is_empty());
    }

    #[test]
    fn finds_the_faults() {
        let wrong_version = json!({"cniVersion": "1.0.0", "ips": []});
        assert!(
            result_problems(&wrong_version, "0.4.0")
                .iter()
                .any(|p| p.contains("must equal"))
        );
        let missing_version_field =
            json!({"cniVersion": "0.4.0", "ips": [{"address": "10.0.0.2/24"}]});
        assert!(
            result_problems(&missing_version_field, "0.4.0")
                .iter()
                .any(|p| p.contains("version is required"))
        );
        let v02_with_ips = json!({"cniVersion": "0.2.0", "ips": []});
        assert!(!result_problems(&v02_with_ips, "0.2.0").is_empty());
        let bad_cidr = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2"}]});
        assert!(!result_problems(&bad_cidr, "1.0.0").is_empty());
        let with_interfaces = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
                                     "ips": [{"address": "10.0.0.2/24", "interface": 0}]});
        assert!(result_problems(&with_interfaces, "1.0.0").is_empty());
        assert_eq!(ipam_problems(&with_interfaces).len(), 2);
        assert_eq!(error_problems(&json!({"msg": "x"})).len(), 1);
    }

    #[test]
    fn normalise_drops_what_carries_no_meaning() {
        let a = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}],
                       "routes": [], "dns": {}});
        let b =
            json!({"ips": [{"address": "10.0.0.2/24", "gateway": null}], "cniVersion": "1.0.0"});
        assert_eq!(normalise(&a), normalise(&b));
        let err = json!({"cniVersion": "1.0.0", "code": 7, "msg": "m"});
        assert_eq!(normalise(&err), json!({"code": 7, "msg": "m"}));
        assert_eq!(
            addresses(&json!({"ip4": {"ip": "10.0.0.2/24"}, "ip6": {"ip": "fd00::2/64"}})).len(),
            2
        );
    }
}
