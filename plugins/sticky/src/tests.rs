//! Each sticky rule, natively, with the clock set by the test.

use super::*;
use ipam_kit::MemHost;
use ipam_kit::errors::{NOT_ALLOCATED, code};
use ipam_kit::testing::att;
use serde_json::{Value, json};

fn ctx(config: Value, pod: Option<(&str, &str)>) -> Context {
    let mut c = ipam_kit::testing::context(config);
    c.cni_args = vec![("IgnoreUnknown".to_string(), "1".to_string())];
    if let Some((ns, name)) = pod {
        c.cni_args.push(("K8S_POD_NAMESPACE".into(), ns.into()));
        c.cni_args.push(("K8S_POD_NAME".into(), name.into()));
    }
    c
}

fn conf(extra: Value) -> Value {
    let mut c = json!({"ranges": [[{"subnet": "10.80.0.0/29"}]]});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn add(h: &mut MemHost, c: &Context, id: &str) -> Result<String, IpamError> {
    Sticky::add(h, c, &att(id)).map(|a| a.ips[0].address.clone())
}

#[test]
fn a_recreated_pod_gets_its_address_back_under_a_new_container_id() {
    let mut h = MemHost {
        now: 1000,
        ..MemHost::default()
    };
    let web0 = ctx(conf(json!({})), Some(("default", "web-0")));
    let web1 = ctx(conf(json!({})), Some(("default", "web-1")));
    assert_eq!(add(&mut h, &web0, "c1").unwrap(), "10.80.0.2/29");
    assert_eq!(add(&mut h, &web1, "c2").unwrap(), "10.80.0.3/29");
    Sticky::del(&mut h, &web0, &att("c1")).unwrap();
    h.now = 2000;
    let other = ctx(conf(json!({})), Some(("default", "other")));
    assert_eq!(
        add(&mut h, &other, "c3").unwrap(),
        "10.80.0.4/29",
        "web-0's address is held"
    );
    assert_eq!(
        add(&mut h, &web0, "c4").unwrap(),
        "10.80.0.2/29",
        "same workload, new container id"
    );
}

#[test]
fn the_same_workload_cannot_be_attached_twice() {
    let mut h = MemHost::default();
    let web0 = ctx(conf(json!({})), Some(("default", "web-0")));
    add(&mut h, &web0, "c1").unwrap();
    let err = add(&mut h, &web0, "c2").unwrap_err();
    assert_eq!(code(&err), ALREADY_ALLOCATED);
    assert!(
        ipam_kit::errors::message(&err)
            .contains("workload default/web-0/eth0 is already attached as container c1")
    );
    assert_eq!(
        code(&add(&mut h, &web0, "c1").unwrap_err()),
        ALREADY_ALLOCATED,
        "second ADD of one attachment"
    );
}

#[test]
fn without_pod_args_the_container_is_the_workload() {
    let mut h = MemHost::default();
    let anon = ctx(conf(json!({})), None);
    assert_eq!(add(&mut h, &anon, "c1").unwrap(), "10.80.0.2/29");
    Sticky::del(&mut h, &anon, &att("c1")).unwrap();
    assert_eq!(
        add(&mut h, &anon, "c2").unwrap(),
        "10.80.0.3/29",
        "c2 is another workload"
    );
    assert_eq!(
        add(&mut h, &anon, "c1").unwrap(),
        "10.80.0.2/29",
        "c1 again is the same one"
    );
}

#[test]
fn a_custom_key_names_the_workload() {
    let mut h = MemHost::default();
    let mut c = ctx(conf(json!({"key": ["APP_ID"]})), None);
    c.cni_args.push(("APP_ID".into(), "billing".into()));
    assert_eq!(add(&mut h, &c, "c1").unwrap(), "10.80.0.2/29");
    Sticky::del(&mut h, &c, &att("c1")).unwrap();
    assert_eq!(add(&mut h, &c, "c9").unwrap(), "10.80.0.2/29");
}

#[test]
fn expired_holds_are_taken_only_when_nothing_is_free_oldest_first() {
    let mut h = MemHost {
        now: 0,
        ..MemHost::default()
    };
    let pod = |name: &str| ctx(conf(json!({"holdSeconds": 100})), Some(("ns", name)));
    // Five addresses: .2 to .6.
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        assert_eq!(
            add(&mut h, &pod(name), name).unwrap(),
            format!("10.80.0.{}/29", i + 2)
        );
    }
    h.now = 10;
    Sticky::del(&mut h, &pod("c"), &att("c")).unwrap();
    h.now = 20;
    Sticky::del(&mut h, &pod("b"), &att("b")).unwrap();
    h.now = 50;
    let err = add(&mut h, &pod("new1"), "new1").unwrap_err();
    assert_eq!(code(&err), 11);
    assert!(
        ipam_kit::errors::message(&err).contains("first hold ends in 60 s"),
        "{err:?}"
    );
    assert_eq!(
        Sticky::status(&mut h, &pod("x")).unwrap(),
        Availability::Unavailable(
            "no free address in range set 10.80.0.1-10.80.0.6: every address is in use or held"
                .into()
        )
    );
    h.now = 130;
    // Both holds ran out; c's (released at 10) is the older one.
    assert_eq!(add(&mut h, &pod("new1"), "new1").unwrap(), "10.80.0.4/29");
    assert_eq!(add(&mut h, &pod("new2"), "new2").unwrap(), "10.80.0.3/29");
    // c comes back too late: its address is gone, and nothing is left.
    assert_eq!(code(&add(&mut h, &pod("c"), "c2").unwrap_err()), 11);
}

#[test]
fn within_its_hold_a_workload_returns_even_after_the_hold_expired_if_untaken() {
    let mut h = MemHost {
        now: 0,
        ..MemHost::default()
    };
    let web = ctx(conf(json!({"holdSeconds": 10})), Some(("ns", "web")));
    add(&mut h, &web, "c1").unwrap();
    Sticky::del(&mut h, &web, &att("c1")).unwrap();
    h.now = 5000;
    assert_eq!(
        add(&mut h, &web, "c2").unwrap(),
        "10.80.0.2/29",
        "nobody needed it"
    );
}

#[test]
fn new_workloads_go_round_robin_from_the_last_address() {
    let mut h = MemHost::default();
    let pod = |name: &str| ctx(conf(json!({"holdSeconds": 0})), Some(("ns", name)));
    assert_eq!(add(&mut h, &pod("a"), "a").unwrap(), "10.80.0.2/29");
    assert_eq!(add(&mut h, &pod("b"), "b").unwrap(), "10.80.0.3/29");
    Sticky::del(&mut h, &pod("a"), &att("a")).unwrap();
    assert_eq!(
        add(&mut h, &pod("c"), "c").unwrap(),
        "10.80.0.4/29",
        "on from the cursor, not back to .2"
    );
    for name in ["d", "e"] {
        add(&mut h, &pod(name), name).unwrap();
    }
    assert_eq!(
        add(&mut h, &pod("f"), "f").unwrap(),
        "10.80.0.2/29",
        "wraps round to the freed address"
    );
}

#[test]
fn ordinal_pods_get_their_ordinal_address() {
    let mut h = MemHost::default();
    let pod = |name: &str| {
        ctx(
            json!({"ranges": [[{"subnet": "10.81.0.0/24"}]], "ordinal": true}),
            Some(("db", name)),
        )
    };
    assert_eq!(
        add(&mut h, &pod("pg-2"), "a").unwrap(),
        "10.81.0.4/24",
        "0-based from the first address"
    );
    assert_eq!(add(&mut h, &pod("pg-0"), "b").unwrap(), "10.81.0.2/24");
    assert_eq!(
        add(&mut h, &pod("cache"), "c").unwrap(),
        "10.81.0.3/24",
        "no ordinal: first free"
    );
    assert_eq!(
        add(&mut h, &pod("pg-1"), "d").unwrap(),
        "10.81.0.5/24",
        "ordinal address taken: first free"
    );
}

#[test]
fn gc_ends_attachments_but_keeps_their_hold() {
    let mut h = MemHost {
        now: 100,
        ..MemHost::default()
    };
    let a = ctx(conf(json!({})), Some(("ns", "a")));
    let b = ctx(conf(json!({})), Some(("ns", "b")));
    add(&mut h, &a, "ca").unwrap();
    add(&mut h, &b, "cb").unwrap();
    let released = Sticky::gc(&mut h, &a, &[att("cb")]).unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].attachment.container_id, "ca");
    assert_eq!(
        get_hold(&h, "10.80.0.2".parse().unwrap()).unwrap().key,
        "ns/a/eth0"
    );
    assert_eq!(add(&mut h, &a, "ca2").unwrap(), "10.80.0.2/29");
}

#[test]
fn hold_zero_frees_at_once() {
    let mut h = MemHost::default();
    // A /30: the gateway and one address, so b can only have a's.
    let one = |name| {
        ctx(
            json!({"ranges": [[{"subnet": "10.80.0.0/30"}]], "holdSeconds": 0}),
            Some(("ns", name)),
        )
    };
    let (a, b) = (one("a"), one("b"));
    add(&mut h, &a, "ca").unwrap();
    Sticky::del(&mut h, &a, &att("ca")).unwrap();
    assert_eq!(add(&mut h, &b, "cb").unwrap(), "10.80.0.2/30");
    assert!(
        h.data.keys().all(|k| !k.starts_with("workload/ns/a")),
        "{:?}",
        h.data.keys()
    );
}

#[test]
fn check_and_dual_stack() {
    let mut h = MemHost::default();
    let c = ctx(
        json!({"ranges": [[{"subnet": "10.82.0.0/24"}], [{"subnet": "fd00:82::/64"}]]}),
        Some(("ns", "a")),
    );
    let a = Sticky::add(&mut h, &c, &att("ca")).unwrap();
    assert_eq!(a.ips.len(), 2);
    Sticky::check(&mut h, &c, &att("ca"), Some(&a)).unwrap();
    Sticky::del(&mut h, &c, &att("ca")).unwrap();
    assert_eq!(
        code(&Sticky::check(&mut h, &c, &att("ca"), Some(&a)).unwrap_err()),
        NOT_ALLOCATED
    );
    let again = Sticky::add(&mut h, &c, &att("cb")).unwrap();
    assert_eq!(again.ips, a.ips, "both families come back");
}

#[test]
fn config_errors() {
    let mut h = MemHost::default();
    for (c, want) in [
        (json!({}), "no IP ranges specified"),
        (conf(json!({"key": []})), "key must list"),
        (
            conf(json!({"holdSeconds": "long"})),
            "invalid sticky config",
        ),
    ] {
        let err = add(&mut h, &ctx(c.clone(), None), "x").unwrap_err();
        assert_eq!(code(&err), 7, "{c}");
        assert!(
            ipam_kit::errors::message(&err).contains(want),
            "{c}: {err:?}"
        );
    }
}

#[test]
fn unknown_cni_args_are_refused_unless_ignored() {
    let mut h = MemHost::default();
    let mut c = ctx(conf(json!({})), Some(("ns", "a")));
    c.cni_args.retain(|(k, _)| k != "IgnoreUnknown");
    add(&mut h, &c, "ca").unwrap();
    c.cni_args.push(("OTHER".into(), "x".into()));
    let err = add(&mut h, &c, "cb").unwrap_err();
    assert_eq!(code(&err), 2);
    assert!(ipam_kit::errors::message(&err).contains("OTHER"));
}
