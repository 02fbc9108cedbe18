//! Each pooled rule, natively against an in-memory store.

use super::*;
use ipam_kit::MemHost;
use ipam_kit::errors::{NOT_ALLOCATED, code};
use ipam_kit::testing::att;
use serde_json::{Value, json};

fn ctx(config: Value, node: &str) -> Context {
    let mut c = ipam_kit::testing::context(config);
    c.node = node.into();
    c
}

/// A /27 pool cut into /30 blocks: 8 blocks of 4 addresses.
fn small(extra: Value) -> Value {
    let mut c = json!({"pools": [{"name": "p", "cidr": "10.30.0.0/27", "blockSize": 30}]});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn add(h: &mut MemHost, c: &Context, id: &str) -> Result<Vec<String>, IpamError> {
    Pooled::add(h, c, &att(id)).map(|a| a.ips.into_iter().map(|i| i.address).collect())
}

fn add1(h: &mut MemHost, c: &Context, id: &str) -> String {
    add(h, c, id).unwrap().remove(0)
}

fn owned_blocks(h: &MemHost, node: &str) -> Vec<String> {
    blocks::node_blocks(h, node, "p")
        .into_iter()
        .map(|i| {
            let cfg = config::parse(&ctx(small(json!({})), node)).unwrap();
            cfg.pools[0].block_net(i).to_string()
        })
        .collect()
}

#[test]
fn lowest_free_address_of_an_own_block_then_a_new_block() {
    let mut h = MemHost::default();
    let c = ctx(small(json!({})), "node-a");
    // Block 10.30.0.0/30: .0 is the pool's network address, never handed out.
    assert_eq!(add1(&mut h, &c, "a"), "10.30.0.1/27");
    assert_eq!(add1(&mut h, &c, "b"), "10.30.0.2/27");
    assert_eq!(add1(&mut h, &c, "c"), "10.30.0.3/27");
    assert_eq!(
        add1(&mut h, &c, "d"),
        "10.30.0.4/27",
        "a second block is claimed"
    );
    assert_eq!(owned_blocks(&h, "node-a"), ["10.30.0.0/30", "10.30.0.4/30"]);
    Pooled::del(&mut h, &c, &att("b")).unwrap();
    assert_eq!(add1(&mut h, &c, "e"), "10.30.0.2/27", "lowest free first");
}

#[test]
fn nodes_prefer_their_own_blocks() {
    let mut h = MemHost::default();
    let a = ctx(small(json!({})), "node-a");
    let b = ctx(small(json!({})), "node-b");
    assert_eq!(add1(&mut h, &a, "a1"), "10.30.0.1/27");
    assert_eq!(add1(&mut h, &b, "b1"), "10.30.0.4/27");
    assert_eq!(add1(&mut h, &a, "a2"), "10.30.0.2/27");
    assert_eq!(add1(&mut h, &b, "b2"), "10.30.0.5/27");
    assert_eq!(owned_blocks(&h, "node-b"), ["10.30.0.4/30"]);
    // The node name in the config wins over the host's.
    let named = ctx(small(json!({"node": "node-b"})), "node-a");
    assert_eq!(add1(&mut h, &named, "b3"), "10.30.0.6/27");
}

fn fill_pool_from(h: &mut MemHost, c: &Context, prefix: &str) -> usize {
    let mut n = 0;
    while add(h, c, &format!("{prefix}{n}")).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn borrowing_unless_strict_affinity() {
    // A /28 in /29 blocks: block 0 (.1-.7) and block 1 (.8-.14).
    let pool = |extra: Value| {
        let mut c = json!({"pools": [{"name": "p", "cidr": "10.31.0.0/28", "blockSize": 29}]});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let mut h = MemHost::default();
    let a = ctx(pool(json!({})), "node-a");
    let b = ctx(pool(json!({})), "node-b");
    add1(&mut h, &a, "a0");
    add1(&mut h, &b, "b0");
    assert_eq!(
        fill_pool_from(&mut h, &a, "a-more-"),
        6 + 6,
        "a fills its block, then borrows b's"
    );
    let leases = leases::all(&h);
    let borrowed = leases
        .iter()
        .filter(|(ip, l)| {
            ip.to_string().starts_with("10.31.0.")
                && l.container_id.starts_with("a-more-")
                && blocks_index(ip) == 1
        })
        .count();
    assert_eq!(borrowed, 6);

    let mut h = MemHost::default();
    let a = ctx(pool(json!({"strictAffinity": true})), "node-a");
    let b = ctx(pool(json!({"strictAffinity": true})), "node-b");
    add1(&mut h, &a, "a0");
    add1(&mut h, &b, "b0");
    assert_eq!(
        fill_pool_from(&mut h, &a, "a-more-"),
        6,
        "strict affinity never borrows"
    );
    let err = add(&mut h, &a, "late").unwrap_err();
    assert_eq!(code(&err), 11);
    assert!(
        ipam_kit::errors::message(&err).contains("node-a"),
        "{err:?}"
    );
    assert_eq!(
        Pooled::status(&mut h, &a).unwrap(),
        Availability::Unavailable("every pool is exhausted for node node-a: p".into())
    );
    assert_eq!(Pooled::status(&mut h, &b).unwrap(), Availability::Available);
}

fn blocks_index(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) => v4.octets()[3] / 8,
        IpAddr::V6(_) => 0,
    }
}

#[test]
fn max_blocks_per_node_stops_claiming_and_borrowing() {
    let mut h = MemHost::default();
    let c = ctx(small(json!({"maxBlocksPerNode": 1})), "node-a");
    assert_eq!(fill_pool_from(&mut h, &c, "p"), 3);
    assert_eq!(owned_blocks(&h, "node-a").len(), 1);
    assert_eq!(code(&add(&mut h, &c, "late").unwrap_err()), 11);
}

#[test]
fn dual_stack_pools_give_one_address_each() {
    let mut h = MemHost::default();
    let c = ctx(
        json!({"pools": [
            {"name": "v4", "cidr": "10.32.0.0/16", "gateway": "10.32.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            {"name": "v6", "cidr": "fd00:32::/64", "routes": [{"dst": "::/0"}]}
        ]}),
        "node-a",
    );
    let a = Pooled::add(&mut h, &c, &att("a")).unwrap();
    let addrs: Vec<_> = a.ips.iter().map(|i| i.address.as_str()).collect();
    assert_eq!(addrs, ["10.32.0.2/16", "fd00:32::1/64"]);
    assert_eq!(a.ips[0].gateway.as_deref(), Some("10.32.0.1"));
    assert_eq!(a.routes.len(), 2);
    // Default block sizes: /26 and /122.
    let cfg = config::parse(&c).unwrap();
    assert_eq!(
        (cfg.pools[0].block_prefix, cfg.pools[1].block_prefix),
        (26, 122)
    );
}

#[test]
fn pools_are_chosen_by_request_then_namespace_then_default() {
    let conf = json!({"pools": [
        {"name": "default", "cidr": "10.40.0.0/24"},
        {"name": "prod", "cidr": "10.41.0.0/24", "namespaces": ["prod"]},
        {"name": "special", "cidr": "10.42.0.0/24", "namespaces": ["nobody"]}
    ]});
    let mut h = MemHost::default();
    let mut c = ctx(conf.clone(), "n");
    assert_eq!(add1(&mut h, &c, "a"), "10.40.0.1/24");
    c.cni_args = vec![("K8S_POD_NAMESPACE".into(), "prod".into())];
    assert_eq!(add1(&mut h, &c, "b"), "10.41.0.1/24");
    c.cni_args.push(("IPAM_POOL".into(), "special".into()));
    assert_eq!(add1(&mut h, &c, "c"), "10.42.0.1/24");
    let mut c = ctx(conf.clone(), "n");
    c.args = Some(json!({"cni": {"pool": "prod"}}).to_string());
    assert_eq!(add1(&mut h, &c, "d"), "10.41.0.2/24");
    c.args = Some(json!({"cni": {"pool": "nope"}}).to_string());
    let err = add(&mut h, &c, "e").unwrap_err();
    assert_eq!(code(&err), 7);
    assert!(ipam_kit::errors::message(&err).contains("unknown pool \"nope\""));
}

#[test]
fn requested_addresses_inside_a_pool_and_free_are_honoured() {
    let mut h = MemHost::default();
    let mut c = ctx(
        json!({"pools": [{"name": "p", "cidr": "10.50.0.0/24", "exclude": ["10.50.0.100"]}]}),
        "n",
    );
    c.cni_args = vec![("IP".into(), "10.50.0.77".into())];
    assert_eq!(add1(&mut h, &c, "a"), "10.50.0.77/24");
    let err = add(&mut h, &c, "b").unwrap_err();
    assert_eq!(code(&err), ADDRESS_UNAVAILABLE);
    c.cni_args = vec![("IP".into(), "10.50.0.100".into())];
    assert!(ipam_kit::errors::message(&add(&mut h, &c, "b").unwrap_err()).contains("excluded"));
    c.cni_args = vec![("IP".into(), "10.99.0.1".into())];
    assert!(
        ipam_kit::errors::message(&add(&mut h, &c, "b").unwrap_err()).contains("not in any pool")
    );
}

#[test]
fn excluded_addresses_are_never_handed_out() {
    let mut h = MemHost::default();
    let c = ctx(
        json!({"pools": [{"name": "p", "cidr": "10.51.0.0/29", "blockSize": 29, "exclude": ["10.51.0.0/30", "10.51.0.5"]}]}),
        "n",
    );
    assert_eq!(fill_pool_from(&mut h, &c, "x"), 2);
    let leased: Vec<String> = leases::all(&h)
        .into_iter()
        .map(|(ip, _)| ip.to_string())
        .collect();
    assert_eq!(
        leased,
        ["10.51.0.4", "10.51.0.6"],
        ".7 is the broadcast address"
    );
}

#[test]
fn released_addresses_cool_down_before_reuse() {
    let mut h = MemHost {
        now: 1000,
        ..MemHost::default()
    };
    let c = ctx(small(json!({"cooldownSeconds": 30})), "n");
    assert_eq!(add1(&mut h, &c, "a"), "10.30.0.1/27");
    Pooled::del(&mut h, &c, &att("a")).unwrap();
    assert_eq!(add1(&mut h, &c, "b"), "10.30.0.2/27", ".1 is cooling");
    h.now = 1030;
    assert_eq!(add1(&mut h, &c, "c"), "10.30.0.1/27", "cooled down");
}

#[test]
fn an_emptied_block_returns_to_the_pool_but_a_node_keeps_one() {
    let mut h = MemHost::default();
    let c = ctx(small(json!({})), "n");
    for id in ["a", "b", "c", "d"] {
        add1(&mut h, &c, id);
    }
    assert_eq!(owned_blocks(&h, "n").len(), 2);
    Pooled::del(&mut h, &c, &att("d")).unwrap();
    assert_eq!(
        owned_blocks(&h, "n"),
        ["10.30.0.0/30"],
        "the emptied second block went back"
    );
    for id in ["a", "b", "c"] {
        Pooled::del(&mut h, &c, &att(id)).unwrap();
    }
    assert_eq!(
        owned_blocks(&h, "n"),
        ["10.30.0.0/30"],
        "the last block stays"
    );
    Pooled::del(&mut h, &c, &att("a")).unwrap();
}

#[test]
fn duplicate_add_check_and_gc() {
    let mut h = MemHost::default();
    let c = ctx(small(json!({})), "n");
    let a = Pooled::add(&mut h, &c, &att("a")).unwrap();
    assert_eq!(
        code(&Pooled::add(&mut h, &c, &att("a")).unwrap_err()),
        ALREADY_ALLOCATED
    );
    Pooled::check(&mut h, &c, &att("a"), Some(&a)).unwrap();
    assert_eq!(
        code(&Pooled::check(&mut h, &c, &att("zz"), None).unwrap_err()),
        NOT_ALLOCATED
    );
    add1(&mut h, &c, "b");
    add1(&mut h, &c, "c");
    let released = Pooled::gc(&mut h, &c, &[att("b")]).unwrap();
    let gone: Vec<_> = released
        .iter()
        .map(|r| r.attachment.container_id.as_str())
        .collect();
    assert_eq!(gone, ["a", "c"]);
    assert_eq!(leases::all(&h).len(), 1);
}

#[test]
fn config_errors_name_the_problem() {
    let mut h = MemHost::default();
    for (conf, want) in [
        (json!({}), "no pools configured"),
        (
            json!({"pools": [{"name": "p", "cidr": "10.0.0.0/33"}]}),
            "is not a CIDR",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "10.0.0.1/24"}]}),
            "host bits",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "10.0.0.0/24", "blockSize": 20}]}),
            "blockSize 20",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "10.0.0.0/24", "exclude": ["10.9.0.1"]}]}),
            "exclude 10.9.0.1",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "10.0.0.0/24", "gateway": "10.9.0.1"}]}),
            "gateway 10.9.0.1",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "10.0.0.0/24", "blocksize": 28}]}),
            "unknown field `blocksize`",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "10.0.0.0/16"}, {"name": "q", "cidr": "10.0.1.0/24"}]}),
            "overlap",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "10.0.0.0/24"}, {"name": "p", "cidr": "10.1.0.0/24"}]}),
            "used twice",
        ),
    ] {
        let err = add(&mut h, &ctx(conf.clone(), "n"), "a").unwrap_err();
        assert_eq!(code(&err), 7, "{conf}");
        assert!(
            ipam_kit::errors::message(&err).contains(want),
            "{conf}: {err:?}"
        );
    }
    assert!(h.data.is_empty());
}

#[test]
fn ipv6_pools_claim_blocks_without_enumerating_them() {
    let mut h = MemHost::default();
    let c = ctx(
        json!({"pools": [{"name": "p", "cidr": "fd00:60::/64", "blockSize": 126}]}),
        "n",
    );
    let got: Vec<String> = (0..5).map(|i| add1(&mut h, &c, &format!("c{i}"))).collect();
    assert_eq!(
        got,
        [
            "fd00:60::1/64",
            "fd00:60::2/64",
            "fd00:60::3/64",
            "fd00:60::4/64",
            "fd00:60::5/64"
        ]
    );
}

#[test]
fn unknown_cni_args_are_refused_unless_ignored() {
    let mut h = MemHost::default();
    let mut c = ctx(small(json!({})), "n");
    c.cni_args = vec![
        ("K8S_POD_NAMESPACE".into(), "default".into()),
        ("K8S_POD_NAME".into(), "web-0".into()),
    ];
    let err = add(&mut h, &c, "a").unwrap_err();
    assert_eq!(code(&err), 2);
    assert!(ipam_kit::errors::message(&err).contains("K8S_POD_NAME"));
    c.cni_args.push(("IgnoreUnknown".into(), "1".into()));
    add1(&mut h, &c, "a");
}

#[test]
fn the_open_index_follows_room_in_a_nodes_blocks() {
    let mut h = MemHost::default();
    let c = ctx(small(json!({})), "n");
    let open = |h: &MemHost| h.data.keys().filter(|k| k.starts_with("open/n/p/")).count();
    add1(&mut h, &c, "a");
    assert_eq!(open(&h), 1, "block 0 has room");
    add1(&mut h, &c, "b");
    add1(&mut h, &c, "c");
    assert_eq!(open(&h), 0, "block 0 is full: .1 to .3");
    Pooled::del(&mut h, &c, &att("b")).unwrap();
    assert_eq!(open(&h), 1, "room again");
    let block = blocks::get_block(&h, "p", 0).unwrap();
    assert!(block.in_use(1) && !block.in_use(2) && block.in_use(3));
}

#[test]
fn blocks_of_more_than_65536_addresses_are_refused() {
    let mut h = MemHost::default();
    let c = ctx(
        json!({"pools": [{"name": "p", "cidr": "10.0.0.0/8", "blockSize": 12}]}),
        "n",
    );
    let err = add(&mut h, &c, "a").unwrap_err();
    assert!(
        ipam_kit::errors::message(&err).contains("more than 65536 addresses"),
        "{err:?}"
    );
}
