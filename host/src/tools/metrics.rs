//! `wasm-ipam metrics`: how full each pool is, in the Prometheus text
//! exposition format, for node-exporter's textfile collector or, with
//! `--listen`, scraped over HTTP.
//!
//! The figures are the ones `leases` prints, read in one read-only
//! transaction per network each time: capacity, used and free addresses
//! per pool, whether the pool is exhausted (the alert operators ask for
//! before pods fail with "no IP addresses available"), leases per network,
//! and the policies' own figures: blocks per node (pooled) and addresses on
//! hold (sticky). The exposition is written by the Prometheus project's
//! client library (which ends each HELP text with its own period), and
//! checked in the tests with `promtool`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use anyhow::Context as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::leases;
use crate::store::Store;

type Value = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    network: String,
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkLabels {
    network: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    network: String,
    pool: String,
    node: String,
}

#[derive(Default)]
struct Families {
    capacity: Family<PoolLabels, Value>,
    used: Family<PoolLabels, Value>,
    free: Family<PoolLabels, Value>,
    exhausted: Family<PoolLabels, Value>,
    leases: Family<NetworkLabels, Value>,
    blocks: Family<NodeLabels, Value>,
    holds: Family<NetworkLabels, Value>,
}

impl Families {
    fn register(self, registry: &mut Registry) {
        registry.register(
            "pool_capacity_addresses",
            "Addresses a pool can hand out",
            self.capacity,
        );
        registry.register(
            "pool_used_addresses",
            "Addresses of a pool that are leased",
            self.used,
        );
        registry.register(
            "pool_free_addresses",
            "Addresses of a pool that are free",
            self.free,
        );
        registry.register(
            "pool_exhausted",
            "1 when a pool has no free address left: new pods on it fail",
            self.exhausted,
        );
        registry.register("network_leases", "Leases held in a network", self.leases);
        registry.register(
            "pooled_blocks",
            "Blocks a node holds in a pool (pooled policy)",
            self.blocks,
        );
        registry.register(
            "sticky_holds",
            "Addresses on hold for workloads that went away (sticky policy); a hold past its time counts until the policy frees it",
            self.holds,
        );
    }
}

/// Blocks per (pool, node), from the pooled policy's `block/<pool>/<index>`
/// entries, and the number of sticky's `hold/<ip>` entries.
fn policy_figures(
    store: &dyn Store,
    network: &str,
) -> anyhow::Result<(Vec<(String, String)>, usize)> {
    let mut txn = store.begin(network)?;
    let mut scan = |prefix: &str| -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let mut all: Vec<(String, Vec<u8>)> = Vec::new();
        loop {
            let after = all.last().map(|(k, _)| k.clone());
            let page = txn.scan(prefix, after.as_deref(), 1000)?;
            let done = page.len() < 1000;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    };
    let blocks = scan("block/")?
        .into_iter()
        .filter_map(|(k, v)| {
            let pool = k["block/".len()..].split('/').next()?.to_string();
            let node = serde_json::from_slice::<serde_json::Value>(&v).ok()?["node"]
                .as_str()?
                .to_string();
            Some((pool, node))
        })
        .collect();
    let holds = scan("hold/")?.len();
    Ok((blocks, holds))
}

/// The exposition for every network of `store`.
pub fn render(store: &dyn Store, now: u64) -> anyhow::Result<String> {
    let families = Families::default();
    for network in leases::collect(store, None, now)? {
        for p in &network.pools {
            let labels = PoolLabels {
                network: network.name.clone(),
                pool: p.pool.clone(),
            };
            families
                .capacity
                .get_or_create(&labels)
                .set(p.capacity as f64);
            families.used.get_or_create(&labels).set(p.used as f64);
            families.free.get_or_create(&labels).set(p.free as f64);
            let exhausted = p.free == 0 && p.capacity > 0;
            families
                .exhausted
                .get_or_create(&labels)
                .set(f64::from(u8::from(exhausted)));
        }
        let policy = network.policy.clone().unwrap_or_default();
        let net = NetworkLabels {
            network: network.name.clone(),
            policy: policy.clone(),
        };
        families
            .leases
            .get_or_create(&net)
            .set(network.leases.len() as f64);
        let (blocks, holds) = policy_figures(store, &network.name)?;
        for (pool, node) in blocks {
            let labels = NodeLabels {
                network: network.name.clone(),
                pool,
                node,
            };
            families.blocks.get_or_create(&labels).inc_by(1.0);
        }
        if policy == "sticky" {
            families.holds.get_or_create(&net).set(holds as f64);
        }
    }
    let mut registry = Registry::with_prefix("wasm_ipam");
    families.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).context("cannot encode the metrics")?;
    Ok(text)
}

/// Prints the metrics once.
pub fn run(store: &dyn Store, now: u64, out: &mut dyn Write) -> anyhow::Result<()> {
    out.write_all(render(store, now)?.as_bytes())?;
    Ok(())
}

/// Serves `/metrics` on `addr` until killed, reading the store afresh for
/// each scrape.
pub fn serve(
    store: &dyn Store,
    addr: SocketAddr,
    now: &dyn Fn() -> anyhow::Result<u64>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = server.server_addr().to_ip().context("not an IP listener")?;
    writeln!(out, "serving metrics on http://{bound}/metrics")?;
    out.flush()?;
    for request in server.incoming_requests() {
        let response = if request.url() != "/metrics" {
            tiny_http::Response::from_string("not found: the metrics are at /metrics\n")
                .with_status_code(404)
        } else {
            match now().and_then(|t| render(store, t)) {
                Ok(text) => tiny_http::Response::from_string(text).with_header(
                    tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    )
                    .expect("a valid header"),
                ),
                Err(e) => {
                    tiny_http::Response::from_string(format!("{e:#}\n")).with_status_code(500)
                }
            }
        };
        let _ = request.respond(response);
    }
    Ok(())
}
