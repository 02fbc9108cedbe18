//! `wasm-ipam metrics`: how full each pool is, in the Prometheus text
//! exposition format, for node-exporter's textfile collector or, with
//! `--listen`, scraped over HTTP.
//!
//! The figures are the ones `leases` prints, which each network's own
//! policy reports through `inspect`, in read-only transactions, each time:
//! capacity, used and free addresses per pool, whether the pool is
//! exhausted (the alert operators ask for before pods fail with "no IP
//! addresses available"), leases per network, and the policies' own
//! figures, such as blocks per node (pooled) and addresses on hold
//! (sticky). For a network whose policy takes DHCP leases, it also shows
//! the host's own record of them: leases held, failing renewals, lapsed
//! leases, renewals done, and RELEASEs still to send. Where the reconciler
//! ran (`wasm-ipam reconcile`, or `serve` with `--reconcile-cri`), its
//! counters per node: passes, orphans seen, addresses released, and the
//! time of its last good pass, whose age is the alert that it stopped. The exposition is written by the Prometheus project's client
//! library (which ends each HELP text with its own period), and checked in
//! the tests with `promtool`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
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
struct FigureLabels {
    network: String,
    pool: String,
    figure: String,
    /// Empty for a figure about the whole pool.
    node: String,
}

#[derive(Default)]
struct Families {
    capacity: Family<PoolLabels, Value>,
    used: Family<PoolLabels, Value>,
    free: Family<PoolLabels, Value>,
    exhausted: Family<PoolLabels, Value>,
    leases: Family<NetworkLabels, Value>,
    figures: Family<FigureLabels, Value>,
    dhcp: [Family<DhcpLabels, Value>; 5],
    reconcile: [Family<NodeLabels, Value>; 4],
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    network: String,
    node: String,
}

/// The reconciler's families (see `reconcile::marks`): name, help, and the
/// figure of a node's counters.
type ReconcileFigure = fn(&crate::reconcile::marks::Counters) -> u64;
const RECONCILE: [(&str, &str, ReconcileFigure); 4] = [
    (
        "reconcile_passes",
        "Reconciler passes that asked the runtime and ran through a network, per node",
        |c| c.passes,
    ),
    (
        "reconcile_orphans_seen",
        "Attachments a reconciler pass found with no sandbox in the runtime, each counted once",
        |c| c.orphans_seen,
    ),
    (
        "reconcile_released_addresses",
        "Addresses the reconciler released, once orphaned for the grace period",
        |c| c.released,
    ),
    (
        "reconcile_last_good_pass_timestamp_seconds",
        "When the reconciler last asked the runtime and ran through a network (Unix time)",
        |c| c.last_good_pass,
    ),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DhcpLabels {
    network: String,
}

/// The DHCP families: name, help, and the figure of a summary.
type DhcpFigure = fn(&crate::dhcp::record::Summary) -> u64;
const DHCP: [(&str, &str, DhcpFigure); 5] = [
    (
        "dhcp_leases",
        "DHCP leases the host holds for a network's attachments",
        |s| s.leases,
    ),
    (
        "dhcp_leases_failing",
        "DHCP leases whose last renewal failed (wasm-ipam serve logs why)",
        |s| s.failing,
    ),
    (
        "dhcp_leases_lapsed",
        "DHCP leases past their expiry, unrenewed: is wasm-ipam serve running",
        |s| s.lapsed,
    ),
    (
        "dhcp_renewals",
        "Renewals that worked, over the DHCP leases held now",
        |s| s.renewals,
    ),
    (
        "dhcp_releases_pending",
        "DHCPRELEASEs still to be sent for leases given up",
        |s| s.pending_releases,
    ),
];

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
            "pool_figure",
            "A policy's own figure about a pool: blocks a node holds (pooled, figure blocks), addresses on hold (sticky, figure holds)",
            self.figures,
        );
        for ((name, help, _), family) in DHCP.iter().zip(self.dhcp) {
            registry.register(*name, *help, family);
        }
        for ((name, help, _), family) in RECONCILE.iter().zip(self.reconcile) {
            registry.register(*name, *help, family);
        }
    }
}

/// The exposition for every network of `store`.
pub fn render(store: &dyn Store, data_dir: &Path, now: u64) -> anyhow::Result<String> {
    let families = Families::default();
    for network in leases::collect(store, data_dir, None, now)? {
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
            for f in &p.figures {
                let labels = FigureLabels {
                    network: network.name.clone(),
                    pool: p.pool.clone(),
                    figure: f.name.clone(),
                    node: f.node.clone().unwrap_or_default(),
                };
                families.figures.get_or_create(&labels).set(f.value as f64);
            }
        }
        // The host's own records of the network, read in one transaction.
        let mut txn = store.begin(&network.name)?;
        let summary = crate::dhcp::record::summary(&mut *txn, now)?;
        let counters = crate::reconcile::marks::every_nodes_counters(&mut *txn)?;
        drop(txn);
        if summary != Default::default() {
            let labels = DhcpLabels {
                network: network.name.clone(),
            };
            for ((_, _, figure), family) in DHCP.iter().zip(&families.dhcp) {
                family.get_or_create(&labels).set(figure(&summary) as f64);
            }
        }
        for (node, c) in counters {
            let labels = NodeLabels {
                network: network.name.clone(),
                node,
            };
            for ((_, _, figure), family) in RECONCILE.iter().zip(&families.reconcile) {
                family.get_or_create(&labels).set(figure(&c) as f64);
            }
        }
        if network.reported {
            let net = NetworkLabels {
                network: network.name.clone(),
                policy: network.policy.clone().unwrap_or_default(),
            };
            families
                .leases
                .get_or_create(&net)
                .set(network.leases.len() as f64);
        }
    }
    let mut registry = Registry::with_prefix("wasm_ipam");
    families.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).context("cannot encode the metrics")?;
    Ok(text)
}

/// Prints the metrics once.
pub fn run(
    store: &dyn Store,
    data_dir: &Path,
    now: u64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    out.write_all(render(store, data_dir, now)?.as_bytes())?;
    Ok(())
}

/// Serves `/metrics` on `addr` until killed, reading the store afresh for
/// each scrape.
pub fn serve(
    store: &dyn Store,
    data_dir: &Path,
    addr: SocketAddr,
    now: &dyn Fn() -> anyhow::Result<u64>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (bound, requests) =
        super::http::listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
    writeln!(out, "serving metrics on http://{bound}/metrics")?;
    out.flush()?;
    for request in requests {
        let response = if request.path != "/metrics" {
            super::http::Response {
                status: 404,
                content_type: "text/plain; charset=utf-8",
                body: "not found: the metrics are at /metrics\n".into(),
            }
        } else {
            match now().and_then(|t| render(store, data_dir, t)) {
                Ok(text) => super::http::Response {
                    status: 200,
                    content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body: text,
                },
                Err(e) => super::http::Response {
                    status: 500,
                    content_type: "text/plain; charset=utf-8",
                    body: format!("{e:#}\n"),
                },
            }
        };
        request.respond(response);
    }
    Ok(())
}
