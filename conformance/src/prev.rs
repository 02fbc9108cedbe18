//! The attachment the suite makes itself to stand in for the plugin before
//! a chained one: a veth pair, one end `CNI_IFNAME` in the container
//! namespace with an address and a default route, the other in the host
//! namespace, and the result an interface plugin would have printed for
//! it. Chained plugins (tuning, portmap, bandwidth, sbr, firewall) act on
//! exactly that: real links, named in a real `prevResult`.

use serde_json::{Value, json};

use crate::netns::Netns;
use cni::version::at_least;

/// Makes the pair for attachment number `n` of a case and returns its
/// result in `version`'s layout (0.3.0 or later: older versions have no
/// `prevResult`).
pub fn make(
    host: &Netns,
    container: &Netns,
    ifname: &str,
    n: usize,
    version: &str,
) -> Result<Value, String> {
    let host_side = format!("cnictv{n}");
    let address = format!("10.250.{}.2/24", n % 250);
    let gateway = format!("10.250.{}.1", n % 250);
    host.ip(&[
        "link",
        "add",
        &host_side,
        "type",
        "veth",
        "peer",
        "name",
        ifname,
        "netns",
        container.name(),
    ])?;
    host.ip(&["link", "set", &host_side, "up"])?;
    container.ip(&["addr", "add", &address, "dev", ifname])?;
    container.ip(&["link", "set", ifname, "up"])?;
    container.ip(&["route", "add", "default", "via", &gateway, "dev", ifname])?;
    let mac = |ns: &Netns, name: &str| -> Result<String, String> {
        ns.link(name)?
            .and_then(|l| l.mac)
            .ok_or_else(|| format!("the suite's own link {name} has no MAC address"))
    };
    let mut ip = json!({"address": address, "gateway": gateway, "interface": 1});
    if !at_least(version, "1.0.0") {
        ip["version"] = json!("4");
    }
    Ok(json!({
        "cniVersion": version,
        "interfaces": [
            {"name": host_side, "mac": mac(host, &host_side)?},
            {"name": ifname, "mac": mac(container, ifname)?, "sandbox": container.path()},
        ],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0", "gw": gateway}],
        "dns": {},
    }))
}
