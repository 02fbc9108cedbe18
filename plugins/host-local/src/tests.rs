//! The policy's rules, run natively against an in-memory store.

use super::*;
use ipam_kit::MemHost;
use ipam_kit::errors::{NOT_ALLOCATED, code};
use ipam_kit::testing::{att, context as ctx};
use serde_json::json;

fn small() -> Context {
    ctx(json!({"type": "wasm-ipam", "ranges": [[{"subnet": "10.1.0.0/29"}]]}))
}

fn addrs(a: &Allocation) -> Vec<&str> {
    a.ips.iter().map(|i| i.address.as_str()).collect()
}

#[test]
fn round_robin_continues_past_a_freed_address() {
    let mut h = MemHost::default();
    let c = small();
    for (id, want) in [
        ("a", "10.1.0.2/29"),
        ("b", "10.1.0.3/29"),
        ("c", "10.1.0.4/29"),
    ] {
        assert_eq!(
            addrs(&HostLocal::add(&mut h, &c, &att(id)).unwrap()),
            [want]
        );
    }
    HostLocal::del(&mut h, &c, &att("b")).unwrap();
    let d = HostLocal::add(&mut h, &c, &att("d")).unwrap();
    assert_eq!(addrs(&d), ["10.1.0.5/29"]);
    assert_eq!(d.ips[0].gateway.as_deref(), Some("10.1.0.1"));
}

#[test]
fn exhaustion_wraps_once_then_fails_with_the_reference_message() {
    let mut h = MemHost::default();
    let c = small();
    for i in 0..5 {
        HostLocal::add(&mut h, &c, &att(&format!("c{i}"))).unwrap();
    }
    let before = h.data.clone();
    let err = HostLocal::add(&mut h, &c, &att("late")).unwrap_err();
    assert_eq!(
        err,
        errors::exhausted(
            "failed to allocate for range 0: no IP addresses available in range set: 10.1.0.1-10.1.0.6"
        )
    );
    assert_eq!(code(&err), 11);
    assert_eq!(h.data, before, "a failed search writes nothing");
    assert_eq!(
        HostLocal::status(&mut h, &c).unwrap(),
        Availability::Unavailable(
            "no IP addresses available in range set: 10.1.0.1-10.1.0.6".into()
        )
    );
    HostLocal::del(&mut h, &c, &att("c2")).unwrap();
    assert_eq!(
        HostLocal::status(&mut h, &c).unwrap(),
        Availability::Available
    );
    assert_eq!(
        addrs(&HostLocal::add(&mut h, &c, &att("late")).unwrap()),
        ["10.1.0.4/29"]
    );
}

#[test]
fn second_add_for_the_same_attachment_is_rejected() {
    let mut h = MemHost::default();
    let c = small();
    HostLocal::add(&mut h, &c, &att("a")).unwrap();
    let err = HostLocal::add(&mut h, &c, &att("a")).unwrap_err();
    assert_eq!(code(&err), ALREADY_ALLOCATED);
    assert!(
        format!("{err:?}")
            .contains("10.1.0.2 has been allocated to a, duplicate allocation is not allowed")
    );
    // Another interface of the same container is a different attachment.
    let net1 = Attachment {
        container_id: "a".into(),
        ifname: "net1".into(),
    };
    assert_eq!(
        addrs(&HostLocal::add(&mut h, &c, &net1).unwrap()),
        ["10.1.0.3/29"]
    );
}

#[test]
fn dual_stack_gets_one_address_per_range_set() {
    let mut h = MemHost::default();
    let c = ctx(
        json!({"ranges": [[{"subnet": "10.92.0.0/28"}], [{"subnet": "fd00:92::/120"}]],
                       "routes": [{"dst": "0.0.0.0/0"}]}),
    );
    let a = HostLocal::add(&mut h, &c, &att("a")).unwrap();
    assert_eq!(addrs(&a), ["10.92.0.2/28", "fd00:92::2/120"]);
    assert_eq!(a.ips[1].gateway.as_deref(), Some("fd00:92::1"));
    assert_eq!(a.routes[0].dst, "0.0.0.0/0");
}

#[test]
fn requested_addresses_are_honoured_or_refused() {
    let mut h = MemHost::default();
    let mut c = small();
    c.cni_args = vec![("IP".into(), "10.1.0.5".into())];
    assert_eq!(
        addrs(&HostLocal::add(&mut h, &c, &att("a")).unwrap()),
        ["10.1.0.5/29"]
    );
    // The cursor moved to the requested address, as in the reference.
    assert_eq!(
        addrs(&HostLocal::add(&mut h, &small(), &att("b")).unwrap()),
        ["10.1.0.6/29"]
    );
    let err = HostLocal::add(&mut h, &c, &att("c")).unwrap_err();
    assert_eq!(code(&err), ADDRESS_UNAVAILABLE);
    c.cni_args = vec![("IP".into(), "10.1.0.1".into())];
    assert!(
        format!("{:?}", HostLocal::add(&mut h, &c, &att("c")).unwrap_err()).contains("gateway")
    );
    c.cni_args = vec![("IP".into(), "10.9.0.1".into())];
    let err = HostLocal::add(&mut h, &c, &att("c")).unwrap_err();
    assert!(
        format!("{err:?}").contains("failed to allocate all requested IPs: 10.9.0.1"),
        "{err:?}"
    );
    let mut c = small();
    c.runtime_config = Some(json!({"ips": ["10.1.0.3/29"]}).to_string());
    assert_eq!(
        addrs(&HostLocal::add(&mut h, &c, &att("d")).unwrap()),
        ["10.1.0.3/29"]
    );
}

#[test]
fn runtime_ip_ranges_come_first() {
    let mut h = MemHost::default();
    let mut c = small();
    c.runtime_config = Some(json!({"ipRanges": [[{"subnet": "10.50.0.0/24"}]]}).to_string());
    let a = HostLocal::add(&mut h, &c, &att("a")).unwrap();
    assert_eq!(addrs(&a), ["10.50.0.2/24", "10.1.0.2/29"]);
}

#[test]
fn del_is_idempotent_and_releases_only_its_attachment() {
    let mut h = MemHost::default();
    let c = small();
    HostLocal::add(&mut h, &c, &att("a")).unwrap();
    HostLocal::add(&mut h, &c, &att("b")).unwrap();
    HostLocal::del(&mut h, &c, &att("a")).unwrap();
    HostLocal::del(&mut h, &c, &att("a")).unwrap();
    HostLocal::del(&mut h, &c, &att("never-seen")).unwrap();
    let left: Vec<_> = leases::all(&h)
        .into_iter()
        .map(|(ip, l)| (ip.to_string(), l.container_id))
        .collect();
    assert_eq!(left, [("10.1.0.3".to_string(), "b".to_string())]);
}

#[test]
fn check_needs_the_reservation_and_a_matching_prev_result() {
    let mut h = MemHost::default();
    let c = small();
    let a = HostLocal::add(&mut h, &c, &att("a")).unwrap();
    HostLocal::check(&mut h, &c, &att("a"), None).unwrap();
    HostLocal::check(&mut h, &c, &att("a"), Some(&a)).unwrap();
    let mut foreign = a.clone();
    foreign.ips[0].address = "10.1.0.6/29".into();
    let err = HostLocal::check(&mut h, &c, &att("a"), Some(&foreign)).unwrap_err();
    assert_eq!(code(&err), NOT_ALLOCATED);
    HostLocal::del(&mut h, &c, &att("a")).unwrap();
    let err = HostLocal::check(&mut h, &c, &att("a"), Some(&a)).unwrap_err();
    assert!(format!("{err:?}").contains("Failed to find address added by container a"));
}

#[test]
fn gc_releases_everything_not_listed() {
    let mut h = MemHost::default();
    let c = small();
    for id in ["a", "b", "c"] {
        HostLocal::add(&mut h, &c, &att(id)).unwrap();
    }
    let released = HostLocal::gc(&mut h, &c, &[att("b")]).unwrap();
    let ids: Vec<_> = released
        .iter()
        .map(|r| r.attachment.container_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(leases::of(&h, &att("b")).len(), 1);
    assert!(leases::of(&h, &att("a")).is_empty());
}

#[test]
fn config_errors_are_invalid_config() {
    let mut h = MemHost::default();
    for (ipam, want) in [
        (json!({}), "no IP ranges specified"),
        (
            json!({"subnet": "10.1.0.0/31"}),
            "too small to allocate from",
        ),
        (json!({"ranges": "nope"}), "invalid ipam config"),
        (
            json!({"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "x"}]}),
            "invalid route dst",
        ),
    ] {
        let err = HostLocal::add(&mut h, &ctx(ipam.clone()), &att("a")).unwrap_err();
        assert!(
            matches!(&err, IpamError::InvalidConfig(m) if m.contains(want)),
            "{ipam}: {err:?}"
        );
    }
    assert!(h.data.is_empty());
}

#[test]
fn unknown_cni_args_are_refused_unless_ignored() {
    let mut h = MemHost::default();
    let mut c = small();
    c.cni_args = vec![("K8S_POD_NAME".into(), "web-0".into())];
    assert_eq!(code(&HostLocal::add(&mut h, &c, &att("a")).unwrap_err()), 2);
    c.cni_args.insert(0, ("IgnoreUnknown".into(), "1".into()));
    HostLocal::add(&mut h, &c, &att("a")).unwrap();
}

#[test]
fn dns_from_the_host_is_returned() {
    let mut h = MemHost::default();
    let mut c = small();
    c.dns = Some(ipam_kit::Dns {
        nameservers: vec!["10.0.0.53".into()],
        domain: None,
        search: vec![],
        options: vec![],
    });
    let a = HostLocal::add(&mut h, &c, &att("a")).unwrap();
    assert_eq!(a.dns.unwrap().nameservers, ["10.0.0.53"]);
}
