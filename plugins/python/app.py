"""A wasm-ipam policy in Python: the lowest free address of one subnet.

The same rules as plugins/template, written against the `cni:ipam` WIT
world with componentize-py, to show that the contract is language-neutral.
It targets the `ipam-policy-tools` world: besides the CNI calls it exports
`inspect`, through which `wasm-ipam leases` and `metrics` see its leases and
its subnet's use (the host never reads its keys), and `nodes`, with nothing
to release per node.

Build (see README.md here):
    componentize-py -d ../../wit -w ipam-policy-tools componentize app -o policy_python.wasm
"""

import ipaddress
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.inspect import Lease, PoolUsage
from wit_world.imports import clock, store
from wit_world.imports.types import (
    Allocation,
    Attachment,
    Availability_Available,
    Availability_Unavailable,
    IpamError_Exhausted,
    IpamError_InvalidConfig,
    IpamError_Policy,
    IpamError_UnsupportedField,
    IpConfig,
    PolicyError,
    Released,
)

# Policy error codes shared with the built-in policies (wit/ipam.wit).
ALREADY_ALLOCATED = 100
ADDRESS_UNAVAILABLE = 101
NOT_ALLOCATED = 102
SCAN_PAGE = 1000


def policy_error(code, msg):
    return Err(IpamError_Policy(PolicyError(code=code, msg=msg, details="")))


def config(ctx):
    """The policy's fields of the ipam object; the host's are ignored."""
    try:
        raw = json.loads(ctx.config)
        subnet = ipaddress.ip_network(raw["subnet"])
    except KeyError:
        raise Err(IpamError_InvalidConfig("python: invalid ipam config: missing field `subnet`"))
    except ValueError as e:
        raise Err(IpamError_InvalidConfig(f"python: invalid ipam config: {e}"))
    if subnet.max_prefixlen - subnet.prefixlen < 2:
        raise Err(IpamError_InvalidConfig("python: subnet is too small"))
    gateway = ipaddress.ip_address(raw.get("gateway") or str(subnet.network_address + 1))
    return subnet, gateway


def candidates(subnet, gateway):
    return (ip for ip in subnet.hosts() if ip != gateway)


def scan_all(prefix):
    out = []
    while True:
        after = out[-1][0] if out else None
        page = store.scan(prefix, after, SCAN_PAGE)
        out.extend(page)
        if len(page) < SCAN_PAGE:
            return out


def owner_prefix(att):
    return f"owner/{att.container_id}/{att.ifname}/"


def held_by(att):
    prefix = owner_prefix(att)
    return [key[len(prefix):] for key, _ in scan_all(prefix)]


def reserve(ip, att, since, pod):
    key = f"lease/{ip}"
    if store.get(key) is not None:
        return False
    lease = {"containerId": att.container_id, "ifname": att.ifname, "since": since}
    if pod:
        lease["pod"] = pod
    store.put(key, json.dumps(lease).encode())
    store.put(f"{owner_prefix(att)}{ip}", b"")
    return True


def release(ip):
    value = store.get(f"lease/{ip}")
    if value is not None:
        lease = json.loads(value)
        store.delete(f"owner/{lease['containerId']}/{lease['ifname']}/{ip}")
    store.delete(f"lease/{ip}")


def cni_args(ctx):
    return dict(ctx.cni_args)


def requested(ctx):
    """Addresses asked for by CNI_ARGS IP=, args.cni.ips or runtimeConfig.ips.

    Where args.cni.ips is given, CNI_ARGS IP= is ignored (CONVENTIONS.md: the
    plugin "must ignore the CNI_ARGS Field")."""

    def field(raw, path):
        if not raw:
            return []
        value = json.loads(raw)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value or []

    from_args = field(ctx.args, ("cni", "ips"))
    asked = []
    ip_arg = cni_args(ctx).get("IP")
    if ip_arg and not from_args:
        asked += ip_arg.split(",")
    asked += from_args + field(ctx.runtime_config, ("ips",))
    try:
        return [ipaddress.ip_interface(a.strip()).ip for a in asked]
    except ValueError as e:
        raise Err(IpamError_InvalidConfig(f"python: invalid requested address: {e}"))


class Policy(exports.Policy):
    def add(self, ctx, attachment):
        args = cni_args(ctx)
        # SPEC.md, code 2: "The error message must contain the key and value
        # of the unsupported field."
        unknown = sorted(f"{k}={v}" for k, v in args.items() if k not in ("IP", "IgnoreUnknown"))
        if unknown and args.get("IgnoreUnknown", "").lower() not in ("1", "true"):
            raise Err(IpamError_UnsupportedField(f"CNI_ARGS: unknown args {', '.join(unknown)}"))
        subnet, gateway = config(ctx)
        held = held_by(attachment)
        if held:
            raise policy_error(ALREADY_ALLOCATED, f"python: {attachment.container_id} already holds {held[0]}")
        now = clock.now()
        pod = args.get("K8S_POD_NAME")
        if pod and args.get("K8S_POD_NAMESPACE"):
            pod = f"{args['K8S_POD_NAMESPACE']}/{pod}"
        wanted = requested(ctx)
        if not wanted:
            ip = next((c for c in candidates(subnet, gateway) if reserve(c, attachment, now, pod)), None)
            if ip is None:
                raise Err(IpamError_Exhausted(f"python: {subnet} is full"))
        elif len(wanted) == 1 and wanted[0] in subnet and wanted[0] not in (gateway, subnet.network_address, subnet.broadcast_address):
            ip = wanted[0]
            if not reserve(ip, attachment, now, pod):
                raise policy_error(ADDRESS_UNAVAILABLE, f"python: requested {ip} is taken")
        else:
            raise policy_error(ADDRESS_UNAVAILABLE, f"python: cannot give {[str(w) for w in wanted]}: one address of {subnet} only")
        return Allocation(
            ips=[IpConfig(address=f"{ip}/{subnet.prefixlen}", gateway=str(gateway))],
            routes=[],
            dns=ctx.dns,
        )

    def del_(self, ctx, attachment):
        for ip in held_by(attachment):
            release(ip)

    def check(self, ctx, attachment, prev_result):
        config(ctx)
        held = set(held_by(attachment))
        if not held:
            raise policy_error(NOT_ALLOCATED, f"python: Failed to find address added by container {attachment.container_id}")
        for ip in prev_result.ips if prev_result else []:
            if str(ipaddress.ip_interface(ip.address).ip) not in held:
                raise policy_error(NOT_ALLOCATED, f"python: address {ip.address} in prevResult is not allocated to container {attachment.container_id} ifname {attachment.ifname}")

    def gc(self, ctx, valid):
        keep = {(a.container_id, a.ifname) for a in valid}
        released = []
        for key, value in scan_all("lease/"):
            lease = json.loads(value)
            if (lease["containerId"], lease["ifname"]) not in keep:
                ip = key[len("lease/"):]
                release(ip)
                holder = Attachment(container_id=lease["containerId"], ifname=lease["ifname"])
                released.append(Released(attachment=holder, address=ip))
        return released

    def status(self, ctx):
        subnet, gateway = config(ctx)
        if any(store.get(f"lease/{c}") is None for c in candidates(subnet, gateway)):
            return Availability_Available()
        return Availability_Unavailable(f"python: {subnet} is full")



class Inspect(exports.Inspect):
    def leases(self, ctx):
        subnet, _ = config(ctx)
        out = []
        for key, value in scan_all("lease/"):
            lease = json.loads(value)
            out.append(Lease(
                address=key[len("lease/"):],
                attachment=Attachment(container_id=lease["containerId"], ifname=lease["ifname"]),
                since=lease.get("since", 0),
                pool=f"subnet {subnet}",
                pod=lease.get("pod"),
                note=None,
            ))
        return out

    def usage(self, ctx):
        subnet, gateway = config(ctx)
        # What candidates() yields, counted without walking it: the hosts of
        # the subnet (IPv4 without its network and broadcast addresses, IPv6
        # without the network address), less the gateway.
        hosts = subnet.num_addresses - (2 if subnet.version == 4 else 1)
        capacity = min(hosts - (1 if gateway in subnet else 0), 2**64 - 1)
        used = len(scan_all("lease/"))
        return [PoolUsage(name=f"subnet {subnet}", capacity=capacity, used=used,
                          free=max(capacity - used, 0), figures=[])]


class Nodes(exports.Nodes):
    def release_node(self, ctx):
        # Every lease belongs to an attachment, which the host has released
        # through DEL already: nothing is kept per node.
        return []
