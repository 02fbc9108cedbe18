use ipam_kit::dhcp::{DhcpError, Ending, FakeDhcp};
use ipam_kit::errors::code;
use ipam_kit::testing::{att, context};
use ipam_kit::{Host, MemHost, leases};
use serde_json::{Value, json};

use super::*;

fn pod(config: Value, pod: Option<(&str, &str)>) -> Context {
    let mut c = context(config);
    if let Some((ns, name)) = pod {
        c.cni_args = vec![
            ("K8S_POD_NAMESPACE".into(), ns.into()),
            ("K8S_POD_NAME".into(), name.into()),
        ];
    }
    c
}

/// A host with a DHCP server whose current call is for `id` on eth0.
fn host_for(id: &str) -> MemHost {
    MemHost {
        now: 1000,
        dhcp: Some(FakeDhcp::for_attachment(&att(id))),
        ..MemHost::default()
    }
}

fn call_for(h: &mut MemHost, id: &str) {
    h.dhcp.as_mut().unwrap().attachment = Some(att(id));
}

fn fake(h: &MemHost) -> &FakeDhcp {
    h.dhcp.as_ref().unwrap()
}

#[test]
fn add_returns_the_servers_lease_with_its_gateway_route_and_dns() {
    let mut h = host_for("c1");
    h.dhcp.as_mut().unwrap().server.insert(
        client_id(
            &pod(json!({}), Some(("shop", "web-0"))),
            &att("c1"),
            "shop/web-0/eth0",
        ),
        DhcpLease {
            address: "10.9.0.40/24".into(),
            server: "10.9.0.1".into(),
            routers: vec!["10.9.0.1".into()],
            dns_servers: vec!["10.9.0.53".into()],
            domain: Some("pods.example".into()),
            ..DhcpLease::default()
        },
    );
    let ctx = pod(json!({}), Some(("shop", "web-0")));
    let a = DhcpPolicy::add(&mut h, &ctx, &att("c1")).unwrap();
    assert_eq!(a.ips[0].address, "10.9.0.40/24");
    assert_eq!(a.ips[0].gateway.as_deref(), Some("10.9.0.1"));
    assert_eq!(a.routes[0].dst, "0.0.0.0/0");
    assert_eq!(a.routes[0].gw.as_deref(), Some("10.9.0.1"));
    let dns = a.dns.unwrap();
    assert_eq!(dns.nameservers, ["10.9.0.53"]);
    assert_eq!(dns.domain.as_deref(), Some("pods.example"));
    // The store has it, tagged with the workload, for the operator tools.
    let lease = leases::get(&h, "10.9.0.40".parse().unwrap()).unwrap();
    assert_eq!(lease.tag.as_deref(), Some("shop/web-0/eth0"));
    assert_eq!(lease.pod.as_deref(), Some("shop/web-0"));
    // What was asked: the pod's client id and name, the default request.
    let asked = &fake(&h).asked[0];
    assert_eq!(asked.client_id, b"\0wasm-ipam/net1/shop/web-0/eth0");
    assert_eq!(asked.hostname.as_deref(), Some("web-0"));
    assert_eq!(asked.request, config::DEFAULT_REQUEST);
    assert_eq!(asked.timeout_ms, config::DEFAULT_TIMEOUT_MS);
}

#[test]
fn a_re_created_pod_asks_under_the_same_client_id_and_gets_its_lease_back() {
    let mut h = host_for("c1");
    let web0 = pod(json!({}), Some(("shop", "web-0")));
    let first = DhcpPolicy::add(&mut h, &web0, &att("c1")).unwrap();
    // Another pod in between takes another address.
    call_for(&mut h, "c2");
    let other =
        DhcpPolicy::add(&mut h, &pod(json!({}), Some(("shop", "web-1"))), &att("c2")).unwrap();
    assert_ne!(other.ips[0].address, first.ips[0].address);
    // While attached, the same pod under a new container is refused.
    call_for(&mut h, "c3");
    let err = DhcpPolicy::add(&mut h, &web0, &att("c3")).unwrap_err();
    assert_eq!(code(&err), 100, "{err:?}");
    assert!(errors::message(&err).contains("container c1"), "{err:?}");
    // Deleted and re-created (a StatefulSet pod): the lease was left to
    // lapse, not released, so the same client id gets the same address.
    call_for(&mut h, "c1");
    DhcpPolicy::del(&mut h, &web0, &att("c1")).unwrap();
    assert_eq!(fake(&h).released, [(att("c1"), Ending::Lapse)]);
    call_for(&mut h, "c3");
    let again = DhcpPolicy::add(&mut h, &web0, &att("c3")).unwrap();
    let ids: Vec<&Vec<u8>> = fake(&h).asked.iter().map(|p| &p.client_id).collect();
    assert_eq!(ids[0], ids[2], "the same client id both times");
    assert_ne!(ids[0], ids[1]);
    assert_eq!(again.ips, first.ips);
}

#[test]
fn unnamed_leases_are_released_and_release_always_releases_named_ones_too() {
    let mut h = host_for("c1");
    let unnamed = pod(json!({}), None);
    DhcpPolicy::add(&mut h, &unnamed, &att("c1")).unwrap();
    DhcpPolicy::del(&mut h, &unnamed, &att("c1")).unwrap();
    let always = pod(json!({"release": "always"}), Some(("shop", "web-0")));
    call_for(&mut h, "c2");
    DhcpPolicy::add(&mut h, &always, &att("c2")).unwrap();
    DhcpPolicy::del(&mut h, &always, &att("c2")).unwrap();
    assert_eq!(
        fake(&h).released,
        [(att("c1"), Ending::Release), (att("c2"), Ending::Release)]
    );
    assert!(fake(&h).server.is_empty(), "the server was told both");
    let err =
        DhcpPolicy::add(&mut h, &pod(json!({"release": "never"}), None), &att("c3")).unwrap_err();
    assert_eq!(code(&err), 7);
    assert!(errors::message(&err).contains("ipam.release"));
}

#[test]
fn without_pod_names_the_client_id_is_the_references() {
    let mut h = host_for("c1");
    DhcpPolicy::add(&mut h, &pod(json!({}), None), &att("c1")).unwrap();
    assert_eq!(fake(&h).asked[0].client_id, b"\0c1/net1/eth0");
    assert_eq!(fake(&h).asked[0].hostname, None);
    // Too long for option 61: its hash, the same every time.
    let long = "n".repeat(253);
    let ctx = pod(json!({}), Some(("ns", &long)));
    let id = client_id(&ctx, &att("c1"), &format!("ns/{long}/eth0"));
    assert!(id.len() <= 255);
    assert!(id.starts_with(b"\0wasm-ipam/"));
    assert_eq!(id, client_id(&ctx, &att("c2"), &format!("ns/{long}/eth0")));
}

#[test]
fn provide_and_request_follow_the_reference() {
    let mut h = host_for("c1");
    let mut ctx = pod(
        json!({
            "daemonSocketPath": "/run/cni/dhcp.sock",
            "provide": [
                {"option": "host-name", "value": "fixed"},
                {"option": "host-name", "fromArg": "K8S_POD_NAME"},
                {"option": "60", "value": "wasm-ipam"},
                {"option": 77, "fromArg": "CLASS"},
            ],
            "request": [{"skipDefault": true}, {"option": "routers"}, {"option": "121"}],
            "dhcpTimeoutMs": 1500,
        }),
        Some(("shop", "web-0")),
    );
    ctx.cni_args.push(("CLASS".into(), "from-cni-args".into()));
    // `args` beats CNI_ARGS for the same name.
    ctx.args = Some(json!({"cni": {"CLASS": "from-args"}}).to_string());
    DhcpPolicy::add(&mut h, &ctx, &att("c1")).unwrap();
    let asked = &fake(&h).asked[0];
    assert_eq!(asked.request, [3, 121]);
    assert_eq!(asked.timeout_ms, 1500);
    assert_eq!(
        asked.provide,
        [
            (12, b"web-0".to_vec()),
            (60, b"wasm-ipam".to_vec()),
            (77, b"from-args".to_vec()),
        ]
    );
    // A provided client id replaces the workload's.
    let mut h = host_for("c9");
    let ctx = pod(
        json!({"provide": [{"option": "dhcp-client-identifier", "value": "\u{1}mine"}]}),
        None,
    );
    DhcpPolicy::add(&mut h, &ctx, &att("c9")).unwrap();
    assert_eq!(fake(&h).asked[0].client_id, b"\x01mine");
}

#[test]
fn bad_config_is_code_7_naming_the_field() {
    for (config, field) in [
        (
            json!({"provide": [{"option": "hostname", "value": "x"}]}),
            "ipam.provide[0].option",
        ),
        (
            json!({"request": [{"option": "300"}]}),
            "ipam.request[0].option",
        ),
        (
            json!({"provide": [{"option": "12", "value": "x".repeat(256)}]}),
            "ipam.provide[0].value",
        ),
        (json!({"dhcpTimeoutMs": 0}), "ipam.dhcpTimeoutMs"),
        (json!({"dhcpTimeoutMs": "soon"}), "ipam.dhcpTimeoutMs"),
        (json!({"key": []}), "key"),
        (json!({"provide": "host-name"}), "invalid dhcp config"),
    ] {
        let mut h = host_for("c1");
        let err = DhcpPolicy::add(&mut h, &pod(config.clone(), None), &att("c1")).unwrap_err();
        assert_eq!(code(&err), 7, "{config}: {err:?}");
        assert!(errors::message(&err).contains(field), "{config}: {err:?}");
        assert!(fake(&h).asked.is_empty(), "nothing was asked of the server");
    }
}

#[test]
fn requested_addresses_and_unknown_args_are_refused_before_any_exchange() {
    let mut h = host_for("c1");
    let mut ctx = pod(json!({}), None);
    ctx.cni_args = vec![("IP".into(), "10.9.0.77".into())];
    let err = DhcpPolicy::add(&mut h, &ctx, &att("c1")).unwrap_err();
    assert_eq!(code(&err), 2, "{err:?}");
    ctx.cni_args = vec![("COLOUR".into(), "blue".into())];
    let err = DhcpPolicy::add(&mut h, &ctx, &att("c1")).unwrap_err();
    assert_eq!(code(&err), 2, "{err:?}");
    assert!(errors::message(&err).contains("COLOUR=blue"));
    assert!(fake(&h).asked.is_empty());
    // A fromArg name is known.
    let mut ctx = pod(
        json!({"provide": [{"option": "77", "fromArg": "COLOUR"}]}),
        None,
    );
    ctx.cni_args = vec![("COLOUR".into(), "blue".into())];
    DhcpPolicy::add(&mut h, &ctx, &att("c1")).unwrap();
}

#[test]
fn a_failed_exchange_holds_nothing_and_a_second_add_is_refused() {
    let mut h = host_for("c1");
    h.dhcp.as_mut().unwrap().fail = Some(DhcpError::NoAnswer("no answer on eth0".into()));
    let ctx = pod(json!({}), Some(("shop", "web-0")));
    let err = DhcpPolicy::add(&mut h, &ctx, &att("c1")).unwrap_err();
    assert_eq!(code(&err), 11);
    assert!(errors::message(&err).contains("no answer on eth0"));
    assert!(h.data.is_empty(), "nothing held: {:?}", h.data);
    h.dhcp.as_mut().unwrap().fail = None;
    DhcpPolicy::add(&mut h, &ctx, &att("c1")).unwrap();
    let err = DhcpPolicy::add(&mut h, &ctx, &att("c1")).unwrap_err();
    assert_eq!(code(&err), 100);
}

#[test]
fn an_address_the_store_holds_for_another_is_not_handed_out_twice() {
    let mut h = host_for("c1");
    DhcpPolicy::add(&mut h, &pod(json!({}), Some(("a", "x"))), &att("c1")).unwrap();
    // The server lost its leases and offers the same address again.
    h.dhcp.as_mut().unwrap().server.clear();
    call_for(&mut h, "c2");
    let err = DhcpPolicy::add(&mut h, &pod(json!({}), Some(("a", "y"))), &att("c2")).unwrap_err();
    assert_eq!(code(&err), 11);
    assert!(
        errors::message(&err).contains("held by container c1"),
        "{err:?}"
    );
}

#[test]
fn check_wants_the_lease_held_and_not_lapsed() {
    let mut h = host_for("c1");
    let ctx = pod(json!({}), Some(("shop", "web-0")));
    let a = DhcpPolicy::add(&mut h, &ctx, &att("c1")).unwrap();
    DhcpPolicy::check(&mut h, &ctx, &att("c1"), Some(&a)).unwrap();
    // Past its expiry with no renewal.
    h.now = 1000 + 3600;
    let err = DhcpPolicy::check(&mut h, &ctx, &att("c1"), Some(&a)).unwrap_err();
    assert_eq!(code(&err), 102);
    assert!(errors::message(&err).contains("lapsed 0 s ago"), "{err:?}");
    // The host holds no lease for it.
    h.now = 1000;
    h.dhcp.as_mut().unwrap().held.clear();
    let err = DhcpPolicy::check(&mut h, &ctx, &att("c1"), Some(&a)).unwrap_err();
    assert_eq!(code(&err), 102);
    assert!(errors::message(&err).contains("no DHCP lease is held"));
    // Nothing in the store at all.
    let err = DhcpPolicy::check(&mut h, &ctx, &att("c9"), None).unwrap_err();
    assert_eq!(code(&err), 102);
}

#[test]
fn gc_and_del_release_in_the_store_and_at_the_server() {
    let mut h = host_for("c1");
    let ctx = pod(json!({}), None);
    for id in ["c1", "c2", "c3"] {
        call_for(&mut h, id);
        DhcpPolicy::add(&mut h, &ctx, &att(id)).unwrap();
    }
    h.dhcp.as_mut().unwrap().attachment = None;
    let released = DhcpPolicy::gc(&mut h, &ctx, &[att("c2")]).unwrap();
    let ids: Vec<&str> = released
        .iter()
        .map(|r| r.attachment.container_id.as_str())
        .collect();
    assert_eq!(ids, ["c1", "c3"]);
    let ended: Vec<_> = fake(&h).released.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(ended, [att("c1"), att("c3")]);
    assert_eq!(leases::all(&h).len(), 1);
    // DEL twice, and a DEL of what was never added: all succeed.
    DhcpPolicy::del(&mut h, &ctx, &att("c2")).unwrap();
    DhcpPolicy::del(&mut h, &ctx, &att("c2")).unwrap();
    DhcpPolicy::del(&mut h, &ctx, &att("nobody")).unwrap();
    assert!(h.scan_all("").is_empty(), "{:?}", h.data);
    assert!(fake(&h).held.is_empty());
}

#[test]
fn without_the_capability_an_add_names_the_grant() {
    let mut h = MemHost::default();
    let err = DhcpPolicy::add(&mut h, &pod(json!({}), None), &att("c1")).unwrap_err();
    assert_eq!(code(&err), 7);
    assert!(errors::message(&err).contains("\"grant\": [\"dhcp\"]"));
}
