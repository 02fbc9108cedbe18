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

/// A node name whose claims start at `block` of a pool of `count` blocks
/// (see `blocks::start_of`), so a test can say which block it gets.
fn node_at(block: u128, count: u128) -> String {
    (0..)
        .map(|i| format!("node-{i}"))
        .find(|n| blocks::start_of(n, count) == block)
        .expect("some name starts there")
}

fn add(h: &mut dyn Host, c: &Context, id: &str) -> Result<Vec<String>, IpamError> {
    Pooled::add(h, c, &att(id)).map(|a| a.ips.into_iter().map(|i| i.address).collect())
}

fn add1(h: &mut dyn Host, c: &Context, id: &str) -> String {
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
    let n = node_at(0, 8);
    let c = ctx(small(json!({})), &n);
    // Block 10.30.0.0/30: .0 is the pool's network address, and .1 is kept
    // for the gateway a bridge takes; neither is handed out.
    assert_eq!(add1(&mut h, &c, "a"), "10.30.0.2/27");
    assert_eq!(add1(&mut h, &c, "b"), "10.30.0.3/27");
    assert_eq!(
        add1(&mut h, &c, "c"),
        "10.30.0.4/27",
        "a second block is claimed, the next from where the node starts"
    );
    assert_eq!(add1(&mut h, &c, "d"), "10.30.0.5/27");
    assert_eq!(owned_blocks(&h, &n), ["10.30.0.0/30", "10.30.0.4/30"]);
    Pooled::del(&mut h, &c, &att("b")).unwrap();
    assert_eq!(add1(&mut h, &c, "e"), "10.30.0.3/27", "lowest free first");
}

#[test]
fn nodes_prefer_their_own_blocks() {
    let mut h = MemHost::default();
    let (na, nb) = (node_at(0, 8), node_at(5, 8));
    let a = ctx(small(json!({})), &na);
    let b = ctx(small(json!({})), &nb);
    assert_eq!(add1(&mut h, &a, "a1"), "10.30.0.2/27");
    assert_eq!(add1(&mut h, &b, "b1"), "10.30.0.20/27");
    assert_eq!(add1(&mut h, &a, "a2"), "10.30.0.3/27");
    assert_eq!(add1(&mut h, &b, "b2"), "10.30.0.21/27");
    assert_eq!(owned_blocks(&h, &nb), ["10.30.0.20/30"]);
    // The node name in the config wins over the host's.
    let named = ctx(small(json!({"node": nb})), &na);
    assert_eq!(add1(&mut h, &named, "b3"), "10.30.0.22/27");
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
    // A /28 in /29 blocks: block 0 (.2-.7: .1 is kept for the gateway) and
    // block 1 (.8-.14).
    let pool = |extra: Value| {
        let mut c = json!({"pools": [{"name": "p", "cidr": "10.31.0.0/28", "blockSize": 29}]});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let (na, nb) = (node_at(0, 2), node_at(1, 2));
    let mut h = MemHost::default();
    let a = ctx(pool(json!({})), &na);
    let b = ctx(pool(json!({})), &nb);
    add1(&mut h, &a, "a0");
    add1(&mut h, &b, "b0");
    assert_eq!(
        fill_pool_from(&mut h, &a, "a-more-"),
        5 + 6,
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
    let a = ctx(pool(json!({"strictAffinity": true})), &na);
    let b = ctx(pool(json!({"strictAffinity": true})), &nb);
    add1(&mut h, &a, "a0");
    add1(&mut h, &b, "b0");
    assert_eq!(
        fill_pool_from(&mut h, &a, "a-more-"),
        5,
        "strict affinity never borrows"
    );
    let err = add(&mut h, &a, "late").unwrap_err();
    assert_eq!(code(&err), 11);
    assert!(ipam_kit::errors::message(&err).contains(&na), "{err:?}");
    assert_eq!(
        Pooled::status(&mut h, &a).unwrap(),
        Availability::Unavailable(format!("every pool is exhausted for node {na}: p"))
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
    let n = node_at(0, 8);
    let c = ctx(small(json!({"maxBlocksPerNode": 1})), &n);
    assert_eq!(fill_pool_from(&mut h, &c, "p"), 2, ".2 and .3");
    assert_eq!(owned_blocks(&h, &n).len(), 1);
    assert_eq!(code(&add(&mut h, &c, "late").unwrap_err()), 11);
}

#[test]
fn the_networks_routes_go_with_every_pools_addresses() {
    // As host-local's: a network moved to pooled keeps its routes.
    let mut h = MemHost::default();
    let c = ctx(
        json!({"pools": [{"name": "p", "cidr": "10.33.0.0/24", "routes": [{"dst": "10.99.0.0/16"}]}],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16"}]}),
        "n",
    );
    let a = Pooled::add(&mut h, &c, &att("a")).unwrap();
    let dsts: Vec<&str> = a.routes.iter().map(|r| r.dst.as_str()).collect();
    assert_eq!(dsts, ["10.99.0.0/16", "0.0.0.0/0"]);
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
    // node-a starts at block 851 of 1024 and block 0xa5c73088_1e32d4c0 of
    // 2^58; the first address of a block other than the pool's first is usable.
    assert_eq!(
        (
            blocks::start_of("node-a", 1 << 10),
            blocks::start_of("node-a", 1 << 58)
        ),
        (851, 0xa5c7_3088_1e32_d4c0 >> 6)
    );
    assert_eq!(
        addrs,
        ["10.32.212.192/16", "fd00:32::a5c7:3088:1e32:d4c0/64"]
    );
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
    // Three pools of four /26 blocks each; this node starts at the first.
    let n = node_at(0, 4);
    let mut c = ctx(conf.clone(), &n);
    assert_eq!(add1(&mut h, &c, "a"), "10.40.0.2/24");
    c.cni_args = vec![("K8S_POD_NAMESPACE".into(), "prod".into())];
    assert_eq!(add1(&mut h, &c, "b"), "10.41.0.2/24");
    c.cni_args.push(("IPAM_POOL".into(), "special".into()));
    assert_eq!(add1(&mut h, &c, "c"), "10.42.0.2/24");
    let mut c = ctx(conf.clone(), &n);
    c.args = Some(json!({"cni": {"pool": "prod"}}).to_string());
    assert_eq!(add1(&mut h, &c, "d"), "10.41.0.3/24");
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
    let c = ctx(small(json!({"cooldownSeconds": 30})), &node_at(0, 8));
    assert_eq!(add1(&mut h, &c, "a"), "10.30.0.2/27");
    Pooled::del(&mut h, &c, &att("a")).unwrap();
    assert_eq!(add1(&mut h, &c, "b"), "10.30.0.3/27", ".2 is cooling");
    h.now = 1030;
    assert_eq!(add1(&mut h, &c, "c"), "10.30.0.2/27", "cooled down");
}

#[test]
fn an_emptied_block_returns_to_the_pool_but_a_node_keeps_one() {
    let mut h = MemHost::default();
    let n = node_at(0, 8);
    let c = ctx(small(json!({})), &n);
    // Block 0 holds two (.2 and .3), so "c" claims a second block.
    for id in ["a", "b", "c"] {
        add1(&mut h, &c, id);
    }
    assert_eq!(owned_blocks(&h, &n).len(), 2);
    Pooled::del(&mut h, &c, &att("c")).unwrap();
    assert_eq!(
        owned_blocks(&h, &n),
        ["10.30.0.0/30"],
        "the emptied second block went back"
    );
    for id in ["a", "b"] {
        Pooled::del(&mut h, &c, &att(id)).unwrap();
    }
    assert_eq!(
        owned_blocks(&h, &n),
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
        (
            json!({"pools": [{"name": "x".repeat(600), "cidr": "10.0.0.0/24"}]}),
            "must be 1 to 63 letters",
        ),
        (
            json!({"pools": [{"name": "a/b", "cidr": "10.0.0.0/24"}]}),
            "pool name \"a/b\" must be",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "224.1.0.0/24"}]}),
            "cidr 224.1.0.0/24 is a multicast network",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "0.0.0.0/24"}]}),
            "0.0.0.0/8",
        ),
        (
            json!({"pools": [{"name": "p", "cidr": "10.0.0.0/24"}],
                   "routes": [{"dst": "nowhere"}]}),
            "routes: invalid route dst \"nowhere\"",
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
    // 2^62 blocks of 4: "n" starts at block 0x2f63_e34c_8601_f871.
    assert_eq!(blocks::start_of("n", 1 << 62), 0x2f63_e34c_8601_f871);
    assert_eq!(
        got,
        [
            "fd00:60::bd8f:8d32:1807:e1c4/64",
            "fd00:60::bd8f:8d32:1807:e1c5/64",
            "fd00:60::bd8f:8d32:1807:e1c6/64",
            "fd00:60::bd8f:8d32:1807:e1c7/64",
            "fd00:60::bd8f:8d32:1807:e1c8/64"
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
    let n = node_at(0, 8);
    let c = ctx(small(json!({})), &n);
    let prefix = format!("open/{n}/p/");
    let open = |h: &MemHost| h.data.keys().filter(|k| k.starts_with(&prefix)).count();
    add1(&mut h, &c, "a");
    assert_eq!(open(&h), 1, "block 0 has room");
    add1(&mut h, &c, "b");
    assert_eq!(
        open(&h),
        0,
        "block 0 is full: .2 and .3 (.1 is the gateway's)"
    );
    Pooled::del(&mut h, &c, &att("a")).unwrap();
    assert_eq!(open(&h), 1, "room again");
    let block = blocks::get_block(&h, "p", 0).unwrap();
    assert!(!block.in_use(1) && !block.in_use(2) && block.in_use(3));
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

/// A host that remembers what a call read and wrote, as a serializable
/// store does to find conflicts: keys got, prefixes scanned, keys written.
#[derive(Default)]
struct Recording {
    inner: MemHost,
    got: std::cell::RefCell<BTreeSet<String>>,
    scanned: std::cell::RefCell<BTreeSet<String>>,
    written: BTreeSet<String>,
}

impl Host for Recording {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.got.borrow_mut().insert(key.to_string());
        self.inner.get(key)
    }
    fn put(&mut self, key: &str, value: &[u8]) {
        self.written.insert(key.to_string());
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &str) {
        self.written.insert(key.to_string());
        self.inner.delete(key)
    }
    fn scan(&self, prefix: &str, after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)> {
        self.scanned.borrow_mut().insert(prefix.to_string());
        self.inner.scan(prefix, after, limit)
    }
    fn now(&self) -> u64 {
        self.inner.now()
    }
    fn log(&self, level: ipam_kit::Level, message: &str) {
        self.inner.log(level, message)
    }
}

impl Recording {
    /// Whether anything this call read was written by `other`.
    fn read_what_was_written_by(&self, other: &Recording) -> Vec<String> {
        other
            .written
            .iter()
            .filter(|w| {
                self.got.borrow().contains(*w)
                    || self.scanned.borrow().iter().any(|p| w.starts_with(p))
            })
            .cloned()
            .collect()
    }
}

/// 4096 blocks of 16 addresses, as in the 100-node burst of the issue.
fn wide() -> Value {
    json!({"pools": [{"name": "p", "cidr": "10.60.0.0/16", "blockSize": 28}]})
}

#[test]
fn nodes_starting_at_once_claim_blocks_without_reading_each_others_writes() {
    // Every node's first ADD runs on the same snapshot, as 100 nodes
    // starting at once do on etcd: two of them conflict only if one read a
    // key the other wrote. From the lowest block, every pair did.
    let base = {
        let mut h = MemHost::default();
        add1(&mut h, &ctx(wide(), "seed"), "s");
        h
    };
    let nodes: Vec<String> = (0..100).map(|i| format!("worker-{i:03}")).collect();
    let calls: Vec<Recording> = nodes
        .iter()
        .map(|n| {
            let mut r = Recording {
                inner: base.clone(),
                ..Recording::default()
            };
            add1(&mut r, &ctx(wide(), n), &format!("{n}-pod"));
            r
        })
        .collect();
    let starts: BTreeSet<u128> = nodes.iter().map(|n| blocks::start_of(n, 4096)).collect();
    let mut conflicting = 0;
    for (i, a) in calls.iter().enumerate() {
        for b in &calls[i + 1..] {
            let (ab, ba) = (a.read_what_was_written_by(b), b.read_what_was_written_by(a));
            // Only the kit's pool-wide lease index could be shared: none is.
            assert!(
                ab.iter().chain(&ba).all(|k| k.starts_with("block/")),
                "{ab:?} {ba:?}"
            );
            conflicting += usize::from(!ab.is_empty() || !ba.is_empty());
        }
    }
    // Only nodes whose starting points coincide read the same block key.
    let collisions = 100 - starts.len();
    assert!(conflicting <= collisions, "{conflicting} pairs conflict");
    for r in &calls {
        let scanned = r.scanned.borrow();
        assert!(
            scanned.iter().all(|p| !p.starts_with("block/")),
            "a claim scans no pool-wide range: {scanned:?}"
        );
    }
}

#[test]
fn a_claim_past_its_probes_scans_and_wraps_around_the_pool() {
    // A /26 in /31 blocks: 32 blocks of 2. Other nodes hold every block but
    // one, 20 blocks past this node's start: beyond the probes, and (from
    // a start past 11) wrapping around the end of the pool.
    let conf = json!({"pools": [{"name": "p", "cidr": "10.61.0.0/26", "blockSize": 31}]});
    let n = node_at(20, 32);
    let free = (20 + 20) % 32;
    let c = ctx(conf.clone(), &n);
    let pool = config::parse(&c).unwrap().pools.remove(0);
    let mut h = MemHost::default();
    for index in (0..32).filter(|i| *i != free) {
        let ip = ipam_kit::ranges::ip_from_num(
            pool.net.addr(),
            ipam_kit::ranges::ip_num(pool.block_net(index).network()) + 1,
        );
        let lease = Lease::new(&c, &att(&format!("o{index}")), 0);
        blocks::take(&mut h, &pool, index, ip, "other", lease);
    }
    assert_eq!(add1(&mut h, &c, "a"), "10.61.0.16/26");
    assert_eq!(owned_blocks_of(&h, &n, &pool), ["10.61.0.16/31"]);
}

fn owned_blocks_of(h: &MemHost, node: &str, pool: &Pool) -> Vec<String> {
    blocks::node_blocks(h, node, "p")
        .into_iter()
        .map(|i| pool.block_net(i).to_string())
        .collect()
}

#[test]
fn a_released_node_gives_its_blocks_back_once_they_are_empty() {
    let mut h = MemHost::default();
    let n = node_at(0, 8);
    let c = ctx(small(json!({})), &n);
    for id in ["a", "b", "c", "d"] {
        add1(&mut h, &c, id);
    }
    // The host DELs what it recorded; "b" it had no record of.
    for id in ["a", "c", "d"] {
        Pooled::del(&mut h, &c, &att(id)).unwrap();
    }
    assert_eq!(
        owned_blocks(&h, &n),
        ["10.30.0.0/30"],
        "a node keeps its last"
    );
    assert!(Pooled::release_node(&mut h, &c).unwrap().is_empty());
    assert!(owned_blocks(&h, &n).is_empty(), "no affinity left");
    assert!(
        !h.data.keys().any(|k| k.contains(&n)),
        "no key names the node"
    );
    let block = blocks::get_block(&h, "p", 0).unwrap();
    assert_eq!((block.node.as_str(), block.used), ("", 1), "kept for b");
    // Its last address released, the block goes back to the pool, and a
    // new node starting there claims it.
    Pooled::del(&mut h, &c, &att("b")).unwrap();
    assert!(blocks::get_block(&h, "p", 0).is_none());
    let other = (0..)
        .map(|i| format!("other-{i}"))
        .find(|o| blocks::start_of(o, 8) == 0)
        .unwrap();
    assert_eq!(
        add1(&mut h, &ctx(small(json!({})), &other), "x"),
        "10.30.0.2/27"
    );
    // Releasing a node that holds nothing is a no-op.
    Pooled::release_node(&mut h, &c).unwrap();
}
