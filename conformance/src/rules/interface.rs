//! Interface plugins: what ADD, DEL and CHECK do to the namespaces. Every
//! rule reads the container's and the host's namespace with `ip` after the
//! call and compares them with the result the plugin printed.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::{Case, INTERFACE, Level, NAMESPACED, Rule};
use crate::netns::{Link, Netns};

/// The result's interface entries (none before 0.3.0).
fn interfaces(result: &Value) -> Vec<Value> {
    result["interfaces"].as_array().cloned().unwrap_or_default()
}

/// Where an entry lives: the case's container namespace when it names a
/// sandbox, else the host namespace.
/// The links where an entry lives, and that namespace's path: the case's
/// container namespace when it names a sandbox, else the host namespace.
fn links_of(case: &Case, id: &str, entry: &Value) -> Result<(String, Vec<Link>), String> {
    let (path, links) = if entry["sandbox"].is_string() {
        let ns = case.sandbox(id)?;
        (ns.path(), ns.links()?)
    } else {
        let host = case.host()?;
        (host.path(), host.links()?)
    };
    Ok((path.display().to_string(), links))
}

fn names(links: &[Link]) -> String {
    let n: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    format!("[{}]", n.join(", "))
}

/// Each address of a result with the interface entry it is on (`None`: the
/// result names none, so `CNI_IFNAME`).
fn placed_addresses(result: &Value) -> Vec<(IpNet, Option<Value>)> {
    let entries = interfaces(result);
    let mut out = Vec::new();
    for ip in result["ips"].as_array().into_iter().flatten() {
        if let Some(net) = ip["address"].as_str().and_then(|a| a.parse().ok()) {
            let entry = ip["interface"]
                .as_u64()
                .and_then(|i| entries.get(i as usize).cloned());
            out.push((net, entry));
        }
    }
    for key in ["ip4", "ip6"] {
        if let Some(net) = result[key]["ip"].as_str().and_then(|a| a.parse().ok()) {
            out.push((net, None));
        }
    }
    out
}

fn ifname_created(case: &Case) -> Result<(), String> {
    let step = case.add_step("c1", &case.conf())?;
    step.result(case.version)?;
    let ns = case.sandbox("c1")?;
    let links = ns.links()?;
    if links.iter().any(|l| l.name == "eth0") {
        Ok(())
    } else {
        Err(step.fail(&format!(
            "a link named eth0 (CNI_IFNAME) in {}; it has {}",
            ns.path().display(),
            names(&links)
        )))
    }
}

fn sandbox_reported(case: &Case) -> Result<(), String> {
    let step = case.add_step("c1", &case.conf())?;
    let r = step.result(case.version)?;
    let path = case.sandbox("c1")?.path().display().to_string();
    let entry = interfaces(&r).into_iter().find(|i| i["name"] == "eth0");
    match entry {
        Some(e) if e["sandbox"].as_str().is_some_and(|s| !s.is_empty()) => Ok(()),
        Some(_) => Err(step.fail(&format!(
            "the interfaces entry for eth0 to carry \"sandbox\": {path:?}; it has none"
        ))),
        None => Err(step.fail("an interfaces entry named eth0 (CNI_IFNAME)")),
    }
}

fn interfaces_exist(case: &Case) -> Result<(), String> {
    let step = case.add_step("c1", &case.conf())?;
    let r = step.result(case.version)?;
    for entry in interfaces(&r) {
        let name = entry["name"].as_str().unwrap_or_default();
        let (path, links) = links_of(case, "c1", &entry)?;
        let Some(link) = links.iter().find(|l| l.name == name) else {
            return Err(step.fail(&format!(
                "the interface {name} the result lists, in {path}; it has {}",
                names(&links)
            )));
        };
        if let Some(mac) = entry["mac"].as_str().filter(|m| !m.is_empty())
            && link.mac.as_deref() != Some(mac.to_ascii_lowercase().as_str())
        {
            return Err(step.fail(&format!(
                "{name} with the MAC address the result names, {mac}; it has {}",
                link.mac.as_deref().unwrap_or("none")
            )));
        }
    }
    Ok(())
}

fn ips_on_sandbox(case: &Case) -> Result<(), String> {
    let step = case.add_step("c1", &case.conf())?;
    let r = step.result(case.version)?;
    let entries = interfaces(&r);
    for (i, ip) in r["ips"].as_array().into_iter().flatten().enumerate() {
        if let Some(idx) = ip["interface"].as_u64()
            && !entries
                .get(idx as usize)
                .is_some_and(|e| e["sandbox"].is_string())
        {
            return Err(step.fail(&format!(
                "ips[{i}].interface ({idx}) to index an interface with a sandbox"
            )));
        }
    }
    Ok(())
}

fn addresses_configured(case: &Case) -> Result<(), String> {
    let step = case.add_step("c1", &case.conf())?;
    let r = step.result(case.version)?;
    for (net, entry) in placed_addresses(&r) {
        let entry = entry.unwrap_or_else(|| json!({"name": "eth0", "sandbox": "-"}));
        let name = entry["name"].as_str().unwrap_or_default();
        let (path, links) = links_of(case, "c1", &entry)?;
        let link = links.into_iter().find(|l| l.name == name);
        if !link.as_ref().is_some_and(|l| l.addresses.contains(&net)) {
            return Err(step.fail(&format!(
                "{net} configured on {name} in {path}; it has {:?}",
                link.map(|l| l.addresses).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

fn result_routes(result: &Value) -> Vec<(IpNet, Option<IpAddr>)> {
    let mut lists: Vec<&Value> = vec![&result["routes"]];
    lists.extend([&result["ip4"]["routes"], &result["ip6"]["routes"]]);
    lists
        .into_iter()
        .flat_map(|l| l.as_array().cloned().unwrap_or_default())
        .filter_map(|r| {
            let dst = r["dst"].as_str()?.parse().ok()?;
            Some((dst, r["gw"].as_str().and_then(|g| g.parse().ok())))
        })
        .collect()
}

fn routes_present(case: &Case) -> Result<(), String> {
    let step = case.add_step("c1", &case.conf())?;
    let r = step.result(case.version)?;
    let ns = case.sandbox("c1")?;
    let present = ns.routes()?;
    for (dst, gw) in result_routes(&r) {
        let found = present
            .iter()
            .any(|p| p.dst == dst && (gw.is_none() || p.gateway == gw));
        if !found {
            let shown: Vec<String> = present
                .iter()
                .map(|p| format!("{} via {:?}", p.dst, p.gateway))
                .collect();
            return Err(step.fail(&format!(
                "a route to {dst}{} in {}; it has {shown:?}",
                gw.map(|g| format!(" via {g}")).unwrap_or_default(),
                ns.path().display()
            )));
        }
    }
    Ok(())
}

fn del_removes_interface(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let before = host_links(case)?;
    let r = case.add("c1", &conf)?;
    let ns = case.sandbox("c1")?;
    let host = case.host()?;
    let link = ns
        .link("eth0")?
        .ok_or("after ADD there is no eth0 in the namespace")?;
    // Only a peer the ADD made is the attachment's (host-device moves in a
    // veth whose peer was there before).
    let peer = match (&link.kind, link.peer_index) {
        (Some(k), Some(i)) if k == "veth" => host
            .links()?
            .into_iter()
            .find(|l| l.index == i && !before.contains(&l.name)),
        _ => None,
    };
    let step = case.run(case.call("DEL", "c1")?, &case.with_prev(&conf, &r));
    step.quiet_success()?;
    if ns.link("eth0")?.is_some() {
        return Err(step.fail("eth0 gone from the container's namespace after DEL"));
    }
    if let Some(peer) = peer
        && host.links()?.iter().any(|l| l.name == peer.name)
    {
        return Err(step.fail(&format!(
            "eth0's host-side peer {} gone after DEL",
            peer.name
        )));
    }
    Ok(())
}

fn del_netns_deleted(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    let call = case.call("DEL", "c1")?;
    case.delete_sandbox("c1")?;
    case.run(call, &case.with_prev(&conf, &r)).quiet_success()
}

fn del_no_prev_result(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    case.add("c1", &conf)?;
    case.run(case.call("DEL", "c1")?, &conf).quiet_success()
}

/// ADD then CHECK after `spoil` broke what ADD made: CHECK must fail.
fn check_fails_after(
    case: &Case,
    spoil: impl Fn(&Netns, &Value) -> Result<(), String>,
) -> Result<(), String> {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    spoil(&*case.sandbox("c1")?, &r)?;
    case.run(case.call("CHECK", "c1")?, &case.with_prev(&conf, &r))
        .error(&[])
        .map(drop)
}

fn check_address_removed(case: &Case) -> Result<(), String> {
    check_fails_after(case, |ns, r| {
        let (net, entry) = placed_addresses(r)
            .into_iter()
            .next()
            .ok_or("the result has no address to remove")?;
        let name = entry.and_then(|e| e["name"].as_str().map(str::to_string));
        ns.ip(&[
            "addr",
            "del",
            &net.to_string(),
            "dev",
            name.as_deref().unwrap_or("eth0"),
        ])
        .map(drop)
    })
}

fn check_interface_removed(case: &Case) -> Result<(), String> {
    check_fails_after(case, |ns, _| ns.ip(&["link", "del", "eth0"]).map(drop))
}

/// The host namespace's link names.
fn host_links(case: &Case) -> Result<BTreeSet<String>, String> {
    Ok(case.host()?.links()?.into_iter().map(|l| l.name).collect())
}

/// ADD and DEL for `id`; both must succeed.
fn cycle(case: &Case, id: &str, conf: &Value) -> Result<(), String> {
    let r = case.add(id, conf)?;
    case.del(id, conf, &r)
}

fn no_link_leak(case: &Case) -> Result<(), String> {
    let conf = case.conf();
    // The first cycle may leave what every attachment shares, such as a
    // bridge; the second must leave nothing of its own.
    cycle(case, "warm-up", &conf)?;
    let before = host_links(case)?;
    cycle(case, "c1", &conf)?;
    let after = host_links(case)?;
    let leaked: Vec<&String> = after.difference(&before).collect();
    if leaked.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "after ADD and DEL of c1 the host has links it did not have before: {leaked:?}"
        ))
    }
}

const CYCLES: usize = 12;

fn no_address_leak(case: &Case) -> Result<(), String> {
    let conf = case.small_conf();
    for i in 0..CYCLES {
        cycle(case, &format!("cycle-{i}"), &conf).map_err(|e| {
            format!(
                "ADD/DEL cycle {} of {CYCLES} on a pool of a few addresses failed; DEL does not \
                 release them?\n{e}",
                i + 1
            )
        })?;
    }
    Ok(())
}

/// A CNI IPAM plugin that always fails ADD, and succeeds at everything else.
const FAILING_IPAM: &str = "#!/bin/sh\n\
case \"$CNI_COMMAND\" in\n\
ADD) echo '{\"code\": 11, \"msg\": \"cni-conformance: this IPAM plugin always fails\"}'; exit 1;;\n\
VERSION) echo '{\"cniVersion\": \"1.1.0\", \"supportedVersions\": \
[\"0.1.0\", \"0.2.0\", \"0.3.0\", \"0.3.1\", \"0.4.0\", \"1.0.0\", \"1.1.0\"]}';;\n\
esac\n\
exit 0\n";

fn ipam_failure_clean(case: &Case) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let conf = case.conf();
    cycle(case, "warm-up", &conf)?;
    let before = host_links(case)?;
    let bin = case.scratch("failing-ipam")?;
    let script = bin.join("cni-conformance-failing-ipam");
    std::fs::write(&script, FAILING_IPAM).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let mut failing = conf.clone();
    failing["ipam"]["type"] = json!("cni-conformance-failing-ipam");
    let path = format!("{}:{}", bin.display(), case.target.cni_path_var());
    let step = case.run(case.call("ADD", "c1")?.env("CNI_PATH", &path), &failing);
    step.error(&[])?;
    // What the runtime does next: DEL, with no result to give.
    let del = case.run(case.call("DEL", "c1")?.env("CNI_PATH", &path), &failing);
    del.quiet_success()?;
    let inside = case.sandbox("c1")?.links()?;
    if inside.iter().any(|l| l.name != "lo") {
        return Err(del.fail(&format!(
            "nothing left in the namespace after the failed ADD and its DEL; it has {}",
            names(&inside)
        )));
    }
    let after = host_links(case)?;
    let leaked: Vec<&String> = after.difference(&before).collect();
    if !leaked.is_empty() {
        return Err(del.fail(&format!(
            "nothing left on the host after the failed ADD and its DEL; new links {leaked:?}"
        )));
    }
    Ok(())
}

pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new(
            "add.ifname-created",
            Level::Must,
            "SPEC.md: if CNI_IFNAME exists, the plugin must use that name for the sandbox \
             interface or return an error",
            ifname_created,
        )
        .kinds(INTERFACE),
        Rule::new(
            "add.sandbox-reported",
            Level::Must,
            "SPEC.md Result: sandbox must be provided for interfaces created or moved into a \
             sandbox like a network namespace",
            sandbox_reported,
        )
        .kinds(INTERFACE)
        .since("0.3.0"),
        Rule::new(
            "add.interfaces-exist",
            Level::Must,
            "SPEC.md Result: interfaces describes the interfaces the plugin created, with mac the \
             hardware address of the interface",
            interfaces_exist,
        )
        .kinds(INTERFACE)
        .since("0.3.0"),
        // The spec defines ips[].interface as the interface the address
        // should be applied to; it does not forbid an address on a host
        // interface, so this is a recommendation.
        Rule::new(
            "add.ips-on-sandbox-interface",
            Level::Should,
            "SPEC.md ips: interface is the index into interfaces of the interface the address is \
             applied to, the sandbox interface",
            ips_on_sandbox,
        )
        .kinds(INTERFACE)
        .since("0.3.0"),
        Rule::new(
            "add.addresses-configured",
            Level::Should,
            "SPEC.md: the plugin should assign the IP to the interface and set up the routes the \
             IPAM plugin returned",
            addresses_configured,
        )
        .kinds(INTERFACE),
        Rule::new(
            "add.routes-present",
            Level::Should,
            "SPEC.md: the plugin should set up the routes of its result in the container",
            routes_present,
        )
        .kinds(INTERFACE),
        Rule::new(
            "del.removes-interface",
            Level::Should,
            "SPEC.md DEL: a delete operation should release all resources held by the container: \
             CNI_IFNAME and its host-side peer",
            del_removes_interface,
        )
        .kinds(INTERFACE),
        Rule::new(
            "del.netns-deleted",
            Level::Should,
            "SPEC.md DEL: the bridge plugin should clean up its own resources even if the \
             container network namespace no longer exists",
            del_netns_deleted,
        )
        .kinds(NAMESPACED),
        Rule::new(
            "del.no-prev-result",
            Level::Should,
            "SPEC.md DEL: when prevResult is not provided, the plugin should clean up as many \
             resources as possible and return a successful response",
            del_no_prev_result,
        )
        .kinds(NAMESPACED),
        Rule::new(
            "check.address-removed",
            Level::Should,
            "SPEC.md CHECK: the plugin should return an error if an address it created and listed \
             in prevResult is missing",
            check_address_removed,
        )
        .kinds(INTERFACE)
        .since("0.4.0"),
        Rule::new(
            "check.interface-removed",
            Level::Should,
            "SPEC.md CHECK: the plugin should return an error if an interface it created and \
             listed in prevResult is missing",
            check_interface_removed,
        )
        .kinds(INTERFACE)
        .since("0.4.0"),
        Rule::new(
            "leak.host-links",
            Level::Should,
            "SPEC.md DEL: a delete operation should release all resources held by the container; \
             an ADD/DEL cycle leaves no host link",
            no_link_leak,
        )
        .kinds(INTERFACE),
        Rule::new(
            "leak.addresses",
            Level::Should,
            "SPEC.md DEL: the plugin should delegate DEL to the IPAM plugin; ADD/DEL cycles never \
             exhaust a small delegated pool",
            no_address_leak,
        )
        .kinds(INTERFACE)
        .small(),
        // Bridge, macvlan and host-device 1.1.1 leave the interface in the
        // namespace after their IPAM plugin fails, and the spec has the
        // runtime clean up with DEL: so the rule is what is left after
        // that DEL, and it is a SHOULD, as the runtime's DEL is.
        Rule::new(
            "add.ipam-failure-clean",
            Level::Should,
            "SPEC.md: if an ADD fails, the runtime should execute DEL; when the delegated IPAM \
             plugin fails, ADD fails, and after that DEL nothing is left in the namespace or on \
             the host",
            ipam_failure_clean,
        )
        .kinds(INTERFACE)
        .delegates(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_each_address_on_its_interface() {
        let r = json!({"interfaces": [{"name": "br0"}, {"name": "eth0", "sandbox": "/x"}],
                       "ips": [{"address": "10.0.0.2/24", "interface": 1},
                               {"address": "fd00::2/64"}],
                       "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]});
        let placed = placed_addresses(&r);
        assert_eq!(placed[0].1.as_ref().unwrap()["name"], "eth0");
        assert!(placed[1].1.is_none());
        let v02 = json!({"ip4": {"ip": "10.0.0.2/24", "routes": [{"dst": "10.9.0.0/16"}]}});
        assert_eq!(placed_addresses(&v02).len(), 1);
        assert_eq!(result_routes(&v02).len(), 1);
        assert_eq!(result_routes(&r)[0].1, Some("10.0.0.1".parse().unwrap()));
    }
}
