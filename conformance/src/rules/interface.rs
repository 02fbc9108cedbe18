//! Interface plugins: what ADD, DEL and CHECK do to the namespaces. Every
//! rule reads the container's and the host's namespace with `ip` after the
//! call and compares them with the result the plugin printed.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::spy::Spy;
use super::{Case, Checked, Cite, Finding, INTERFACE, Level, NAMESPACED, Rule};
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

fn ifname_created(case: &Case) -> Checked {
    let step = case.add_step("c1", &case.conf())?;
    step.result(case.version)?;
    let ns = case.sandbox("c1")?;
    let links = ns.links()?;
    if links.iter().any(|l| l.name == "eth0") {
        Ok(())
    } else {
        Err(step
            .fail(&format!(
                "a link named eth0 (CNI_IFNAME) in {}; it has {}",
                ns.path().display(),
                names(&links)
            ))
            .into())
    }
}

fn sandbox_reported(case: &Case) -> Checked {
    let step = case.add_step("c1", &case.conf())?;
    let r = step.result(case.version)?;
    let path = case.sandbox("c1")?.path();
    let entry = interfaces(&r).into_iter().find(|i| i["name"] == "eth0");
    let Some(entry) = entry else {
        return Err(step
            .fail("an interfaces entry named eth0 (CNI_IFNAME)")
            .into());
    };
    let same = |s: &str| {
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        std::path::Path::new(s) == path || canonical(s.as_ref()) == canonical(&path)
    };
    match entry["sandbox"].as_str().filter(|s| !s.is_empty()) {
        None => Err(Finding::at(
            "spec/result.sandbox",
            step.fail(&format!(
                "the interfaces entry for eth0 to carry \"sandbox\": {path:?}; it has none"
            )),
        )),
        Some(s) if !same(s) => {
            // 1.x asks for CNI_NETNS; 0.3 and 0.4 for the namespace's path.
            let id = if cni::version::at_least(case.version, "1.0.0") {
                "spec/result.sandbox"
            } else {
                "spec/result.sandbox-path"
            };
            Err(Finding::at(
                id,
                step.fail(&format!(
                    "\"sandbox\": {path:?} (CNI_NETNS) for eth0; it says {s:?}"
                )),
            ))
        }
        Some(_) => Ok(()),
    }
}

fn existing_interface(case: &Case) -> Checked {
    let ns = case.sandbox("c1")?;
    // A veth pair, both ends in the container: every kernel has veth, not
    // every kernel has dummy links.
    ns.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "cnict-eth0p",
    ])
    .map_err(|e| Finding::not_applicable(format!("cannot make an eth0 first: {e}")))?;
    let step = case.add_step("c1", &case.conf())?;
    if step.out.ok() {
        return Err(step
            .fail("an error: an interface named eth0 (CNI_IFNAME) already exists in the container")
            .into());
    }
    step.error(&[])
        .map_err(|e| Finding::at("spec/errors.structure", e))?;
    Ok(())
}

fn ifname_unusable(case: &Case) -> Checked {
    // 16 characters: Linux takes at most 15.
    let call = case.call("ADD", "c1")?.ifname("cnictlongname016");
    let step = case.run(call, &case.add_conf("c1", &case.conf())?);
    if step.out.ok() {
        return Err(step
            .fail("an error: Linux cannot name an interface with 16 characters")
            .into());
    }
    step.error(&[])
        .map_err(|e| Finding::at("spec/errors.structure", e))?;
    Ok(())
}

/// A route to a documentation network that no plugin of the suite's makes.
const LATER_ROUTE: &str = "198.51.100.0/24";
const LATER_MAC: &str = "02:c0:ff:ee:00:01";

fn check_after_chained_change(case: &Case) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    let ns = case.sandbox("c1")?;
    let suite_could_not = |what: &str, e: String| {
        Finding::not_applicable(format!(
            "the suite could not {what} as a later plugin would: {e}"
        ))
    };
    ns.ip(&["route", "add", LATER_ROUTE, "dev", "eth0"])
        .map_err(|e| suite_could_not("add a route", e))?;
    // A later plugin that sets the MAC address (tuning) reports it in the
    // result, which is the prevResult CHECK gets.
    let mut prev = r.clone();
    ns.ip(&["link", "set", "dev", "eth0", "address", LATER_MAC])
        .map_err(|e| suite_could_not("change eth0's MAC address", e))?;
    for entry in prev["interfaces"].as_array_mut().into_iter().flatten() {
        if entry["name"] == "eth0" && entry["sandbox"].is_string() {
            entry["mac"] = json!(LATER_MAC);
        }
    }
    let step = case.run(case.call("CHECK", "c1")?, &case.with_prev(&conf, &prev));
    step.quiet_success().map_err(|e| {
        format!(
            "after a later plugin added a route to {LATER_ROUTE} and set eth0's MAC address to \
             {LATER_MAC} (reported in prevResult), CHECK passes: {e}"
        )
    })?;
    Ok(())
}

/// Four: enough to collide on a shared resource taken without a lock, and
/// what a small pool serves (the reference dhcp test's dnsmasq has four
/// addresses, so that its leak rule proves DEL releases each lease).
const CONCURRENT: usize = 4;

fn concurrent_interfaces(case: &Case) -> Checked {
    let conf = case.conf();
    // A plugin that serves one attachment at a time (host-device moves its
    // one device) cannot serve concurrent ones either.
    let first = case.add("serial-0", &conf)?;
    let second = case.add_step("serial-1", &conf)?;
    if !second.out.ok() {
        return Err(Finding::not_applicable(
            "the plugin serves one attachment at a time: a second ADD for another container \
             fails with the first in place",
        ));
    }
    case.del("serial-0", &conf, &first)?;
    case.del("serial-1", &conf, &second.result(case.version)?)?;
    let ids: Vec<String> = (0..CONCURRENT).map(|i| format!("parallel-{i}")).collect();
    for id in &ids {
        case.sandbox(id)?;
    }
    let steps: Vec<(String, Result<super::Step, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                let conf = &conf;
                s.spawn(move || (id.clone(), case.add_step(id, conf)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let mut holders: std::collections::BTreeMap<IpNet, String> = Default::default();
    for (id, step) in steps {
        let step = step?;
        let r = step.result(case.version).map_err(|e| {
            format!("{CONCURRENT} ADDs for different containers ran at once; {id} failed:\n{e}")
        })?;
        for (net, _) in placed_addresses(&r) {
            if let Some(other) = holders.insert(net, id.clone()) {
                return Err(step
                    .fail(&format!(
                        "an address no other of {CONCURRENT} concurrent ADDs got; {net} went to \
                         {other} and {id}"
                    ))
                    .into());
            }
        }
    }
    Ok(())
}

fn interfaces_exist(case: &Case) -> Checked {
    let step = case.add_step("c1", &case.conf())?;
    let r = step.result(case.version)?;
    for entry in interfaces(&r) {
        let name = entry["name"].as_str().unwrap_or_default();
        let (path, links) = links_of(case, "c1", &entry)?;
        let Some(link) = links.iter().find(|l| l.name == name) else {
            return Err(step
                .fail(&format!(
                    "the interface {name} the result lists, in {path}; it has {}",
                    names(&links)
                ))
                .into());
        };
        if let Some(mac) = entry["mac"].as_str().filter(|m| !m.is_empty())
            && link.mac.as_deref() != Some(mac.to_ascii_lowercase().as_str())
        {
            return Err(step
                .fail(&format!(
                    "{name} with the MAC address the result names, {mac}; it has {}",
                    link.mac.as_deref().unwrap_or("none")
                ))
                .into());
        }
    }
    Ok(())
}

fn ips_on_sandbox(case: &Case) -> Checked {
    let step = case.add_step("c1", &case.conf())?;
    let r = step.result(case.version)?;
    let entries = interfaces(&r);
    for (i, ip) in r["ips"].as_array().into_iter().flatten().enumerate() {
        if let Some(idx) = ip["interface"].as_u64()
            && !entries
                .get(idx as usize)
                .is_some_and(|e| e["sandbox"].is_string())
        {
            return Err(step
                .fail(&format!(
                    "ips[{i}].interface ({idx}) to index an interface with a sandbox"
                ))
                .into());
        }
    }
    Ok(())
}

fn addresses_configured(case: &Case) -> Checked {
    let step = case.add_step("c1", &case.conf())?;
    let r = step.result(case.version)?;
    for (net, entry) in placed_addresses(&r) {
        let entry = entry.unwrap_or_else(|| json!({"name": "eth0", "sandbox": "-"}));
        let name = entry["name"].as_str().unwrap_or_default();
        let (path, links) = links_of(case, "c1", &entry)?;
        let link = links.into_iter().find(|l| l.name == name);
        if !link.as_ref().is_some_and(|l| l.addresses.contains(&net)) {
            return Err(step
                .fail(&format!(
                    "{net} configured on {name} in {path}; it has {:?}",
                    link.map(|l| l.addresses).unwrap_or_default()
                ))
                .into());
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

fn routes_present(case: &Case) -> Checked {
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
            return Err(step
                .fail(&format!(
                    "a route to {dst}{} in {}; it has {shown:?}",
                    gw.map(|g| format!(" via {g}")).unwrap_or_default(),
                    ns.path().display()
                ))
                .into());
        }
    }
    Ok(())
}

fn del_removes_interface(case: &Case) -> Checked {
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
        return Err(step
            .fail("eth0 gone from the container's namespace after DEL")
            .into());
    }
    if let Some(peer) = peer
        && host.links()?.iter().any(|l| l.name == peer.name)
    {
        return Err(step
            .fail(&format!(
                "eth0's host-side peer {} gone after DEL",
                peer.name
            ))
            .into());
    }
    Ok(())
}

fn del_netns_deleted(case: &Case) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    let call = case.call("DEL", "c1")?;
    case.delete_sandbox("c1")?;
    case.run(call, &case.with_prev(&conf, &r)).quiet_success()?;
    Ok(())
}

fn del_no_prev_result(case: &Case) -> Checked {
    let conf = case.conf();
    case.add("c1", &conf)?;
    case.run(case.call("DEL", "c1")?, &conf).quiet_success()?;
    Ok(())
}

/// ADD then CHECK after `spoil` broke what ADD made: CHECK must fail.
fn check_fails_after(case: &Case, spoil: impl Fn(&Netns, &Value) -> Result<(), String>) -> Checked {
    let conf = case.conf();
    let r = case.add("c1", &conf)?;
    spoil(&*case.sandbox("c1")?, &r)?;
    case.run(case.call("CHECK", "c1")?, &case.with_prev(&conf, &r))
        .error(&[])
        .map(drop)?;
    Ok(())
}

fn check_address_removed(case: &Case) -> Checked {
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

fn check_interface_removed(case: &Case) -> Checked {
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

fn no_link_leak(case: &Case) -> Checked {
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
        )
        .into())
    }
}

const CYCLES: usize = 12;

fn no_address_leak(case: &Case) -> Checked {
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

fn ipam_failure_clean(case: &Case) -> Checked {
    let conf = case.conf();
    cycle(case, "warm-up", &conf)?;
    let before = host_links(case)?;
    let spy = Spy::new(case, &["ADD"])?;
    let failing = spy.conf(&conf);
    let step = case.run(spy.call(case.call("ADD", "c1")?, case), &failing);
    step.error(&[])?;
    // What the runtime does next: DEL, with no result to give.
    let del = case.run(spy.call(case.call("DEL", "c1")?, case), &failing);
    del.quiet_success()?;
    let inside = case.sandbox("c1")?.links()?;
    if inside.iter().any(|l| l.name != "lo") {
        return Err(del
            .fail(&format!(
                "nothing left in the namespace after the failed ADD and its DEL; it has {}",
                names(&inside)
            ))
            .into());
    }
    let after = host_links(case)?;
    let leaked: Vec<&String> = after.difference(&before).collect();
    if !leaked.is_empty() {
        return Err(del
            .fail(&format!(
                "nothing left on the host after the failed ADD and its DEL; new links {leaked:?}"
            ))
            .into());
    }
    Ok(())
}

pub fn rules() -> Vec<Rule> {
    const CONFIGURED_LOWERED: &str = "SPEC 1.x no longer says the plugin should assign the \
                                      address: its result, which it must print, lists the IPs \
                                      and routes \"assigned by this attachment\". The suite \
                                      holds them to the namespace as a recommendation, since a \
                                      later plugin or a DHCP client may own them.";
    vec![
        Rule::new("add.ifname-created", ifname_created)
            .cites(const { &[
                Cite::full("spec/params.ifname"),
                Cite::full("spec/result.ifname-used"),
                Cite::partly(
                    "spec/add.create-or-adjust",
                    "creating the interface; adjusting one is the chained rules'",
                ),
            ] })
            .kinds(INTERFACE),
        Rule::new("add.ifname-unusable", ifname_unusable)
            .cites(const { &[
                Cite::partly("spec/params.ifname", "a name Linux cannot take (16 characters)"),
                Cite::full("spec/result.ifname-used"),
            ] })
            .kinds(INTERFACE),
        Rule::new("add.existing-interface", existing_interface)
            .cites(const { &[Cite::full("spec/add.existing-interface")] })
            .kinds(INTERFACE),
        Rule::new("add.sandbox-reported", sandbox_reported)
            .cites(const { &[
                Cite::full("spec/result.sandbox"),
                Cite::full("spec/result.sandbox-path").aside(),
            ] })
            .kinds(INTERFACE)
            .since("0.3.0"),
        Rule::new("add.interfaces-exist", interfaces_exist)
            .cites(const { &[Cite::partly(
                "spec/result.add-keys",
                "interfaces: every entry exists where it says, with the MAC it names",
            )] })
            .kinds(INTERFACE)
            .since("0.3.0"),
        Rule::new("add.ips-on-sandbox-interface", ips_on_sandbox)
            .cites(const { &[Cite::partly(
                "spec/result.add-keys",
                "ips[].interface: the interface an address is applied to",
            )] })
            .lowered(
                Level::Should,
                "The spec defines ips[].interface as the interface the address is applied to; it \
                 does not forbid an address on a host interface, so an index to one is a \
                 recommendation missed.",
            )
            .kinds(INTERFACE)
            .since("0.3.0"),
        Rule::new("add.addresses-configured", addresses_configured)
            .cites(const { &[
                Cite::full("spec/overview.assign-ip"),
                Cite::partly("spec/result.add-keys", "ips: configured on their interfaces"),
                Cite::full("spec/result.ips-from-ipam").aside(),
            ] })
            .lowered(Level::Should, CONFIGURED_LOWERED)
            .kinds(INTERFACE),
        Rule::new("add.routes-present", routes_present)
            .cites(const { &[
                Cite::full("spec/overview.assign-ip"),
                Cite::partly("spec/result.add-keys", "routes: present in the container"),
            ] })
            .lowered(Level::Should, CONFIGURED_LOWERED)
            .kinds(INTERFACE),
        Rule::new("add.concurrent-interfaces", concurrent_interfaces)
            .cites(const { &[
                Cite::full("spec/lifecycle.concurrent"),
                Cite::partly(
                    "spec/lifecycle.locking",
                    "judged by its effect: every concurrent ADD succeeds, with its own address",
                ),
            ] })
            .kinds(INTERFACE),
        Rule::new("del.removes-interface", del_removes_interface)
            .cites(const { &[Cite::partly(
                "spec/del.undo",
                "the container interface and its host-side veth peer",
            )] })
            .kinds(INTERFACE),
        Rule::new("del.netns-deleted", del_netns_deleted)
            .cites(const { &[
                Cite::full("spec/del.tolerate-missing"),
                Cite::partly(
                    "spec/del.bridge-delegates",
                    "a successful DEL with the namespace gone; delegate.del sees the IPAM DEL",
                ),
            ] })
            .kinds(NAMESPACED),
        Rule::new("del.no-prev-result", del_no_prev_result)
            .cites(const { &[
                Cite::partly("spec/del.tolerate-missing", "prevResult missing"),
                Cite::partly("spec/del.bare", "prevResult left out"),
            ] })
            .kinds(NAMESPACED),
        Rule::new("check.address-removed", check_address_removed)
            .cites(const { &[
                Cite::partly("spec/check.listed-resources", "an address"),
                Cite::partly(
                    "spec/check.prev-result",
                    "judged by CHECK missing an address prevResult lists",
                )
                .aside(),
            ] })
            .kinds(INTERFACE)
            .since("0.4.0"),
        Rule::new("check.interface-removed", check_interface_removed)
            .cites(const { &[Cite::partly("spec/check.listed-resources", "an interface")] })
            .kinds(INTERFACE)
            .since("0.4.0"),
        Rule::new("check.after-chained-change", check_after_chained_change)
            .cites(const { &[Cite::full("spec/check.later-changes")] })
            .kinds(INTERFACE)
            .since("0.4.0"),
        Rule::new("leak.host-links", no_link_leak)
            .cites(const { &[Cite::partly("spec/del.undo", "the host links an ADD made")] })
            .kinds(INTERFACE),
        Rule::new("leak.addresses", no_address_leak)
            .cites(const { &[
                Cite::partly(
                    "spec/delegation.execute",
                    "DEL reaching the IPAM plugin, judged by a small pool never running out",
                ),
                Cite::partly("spec/del.bridge-delegates", "with the namespace there"),
            ] })
            .kinds(INTERFACE)
            .small(),
        // Bridge, macvlan and host-device 1.1.1 leave the interface in the
        // namespace after their IPAM plugin fails, and the spec has the
        // runtime clean up with DEL: so the rule is what is left after
        // that DEL.
        Rule::new("add.ipam-failure-clean", ipam_failure_clean)
            .cites(const { &[Cite::partly(
                "spec/del.undo",
                "after an ADD whose IPAM plugin failed, and the runtime's DEL",
            )] })
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
