//! The command line for people: `wasm-ipam <subcommand>`. The runtime never
//! passes arguments, so none of this runs on the CNI path.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::cni::config::{DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR, NetConf, StoreConf};
use crate::runner;
use crate::store::Store;
use crate::tools;

#[derive(Parser)]
#[command(
    name = "wasm-ipam",
    version,
    about = "A CNI IPAM plugin that runs its allocation policy as a sandboxed WebAssembly component",
    long_about = "A CNI IPAM plugin that runs its allocation policy as a sandboxed WebAssembly component.\n\n\
                  Run with no arguments, it is the CNI plugin: the runtime passes CNI_* variables and the \
                  network config on stdin. The subcommands below are for people operating a node and for \
                  policy authors.",
    after_help = "Examples:\n  \
                  wasm-ipam leases\n  \
                  wasm-ipam leases --config /etc/cni/net.d/10-pods.conflist\n  \
                  wasm-ipam metrics > /var/lib/node-exporter/wasm-ipam.prom\n  \
                  wasm-ipam gc --network pods --valid attachments.json --dry-run\n  \
                  wasm-ipam release-node node-7 --config /etc/cni/net.d/10-pods.conflist --dry-run\n  \
                  wasm-ipam reconcile --cri unix:///run/containerd/containerd.sock --dry-run\n  \
                  wasm-ipam compile ./my-policy.wasm\n  \
                  wasm-ipam install --cni-bin-dir /opt/cni/bin\n  \
                  wasm-ipam serve\n  \
                  wasm-ipam import-host-local --from /var/lib/cni/networks/pods --network pods\n  \
                  wasm-ipam simulate --config pods.conf --events events.jsonl\n  \
                  wasm-ipam sync-credentials --from /run/secrets/wasm-ipam-etcd --to /etc/cni/wasm-ipam/etcd"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Which store a tool works on.
#[derive(Args)]
struct StoreArgs {
    /// The store's directory: ipam.dataDir of the network config.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Use the store this network config (.conf or .conflist) names
    /// instead, such as a shared etcd; --network, where there is one,
    /// defaults to its name.
    #[arg(long, value_name = "NETCONF", conflicts_with = "data_dir")]
    config: Option<PathBuf>,
}

/// The node's CNI config folder, where runtimes look by default.
const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";

/// What the reconciler asks and reads.
#[derive(Args)]
struct ReconcileArgs {
    /// The runtime's CRI socket, such as unix:///run/containerd/containerd.sock
    /// (CRI-O: unix:///var/run/crio/crio.sock).
    #[arg(long, value_name = "ENDPOINT")]
    cri: String,
    /// The CNI config folder: every network in it whose IPAM is wasm-ipam.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONF_DIR)]
    conf_dir: PathBuf,
    /// How long an attachment must have had no sandbox before it is
    /// released (90s, 10m, 1h), counted across passes; covers a pod whose
    /// ADD is under way and a runtime that is restarting.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = tools::reconcile::parse_duration)]
    grace: std::time::Duration,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every reservation and how full each pool is.
    #[command(
        long_about = "List every reservation (address, container id, interface, pod when the runtime named it, \
                      policy and age) and, per pool or range, how many addresses are used and free, with a bar \
                      that shows exhaustion coming. Reads only; works whatever the policy."
    )]
    Leases {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this network (the config's "name").
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Pool usage in the Prometheus text format, once or served over HTTP.
    #[command(
        long_about = "Print, per network and pool, the addresses a pool can hand out, how many are used and \
                      free, whether it is exhausted, the leases of each network, the blocks each node holds \
                      (pooled) and the addresses on hold (sticky), in the Prometheus text exposition format: \
                      write it where node-exporter's textfile collector reads, or serve it with --listen."
    )]
    Metrics {
        #[command(flatten)]
        store: StoreArgs,
        /// Serve /metrics over HTTP on this address (such as 127.0.0.1:9942)
        /// instead of printing once.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Release the addresses of attachments that no longer exist (CNI GC).
    #[command(
        long_about = "Run the network's policy's GC, as a runtime's CNI GC would: every lease whose \
                      attachment is not in the valid list is released. The policy and its config are those \
                      of the network's last ADD. An empty list releases every lease, so try --dry-run first."
    )]
    Gc {
        #[command(flatten)]
        store: StoreArgs,
        /// The network (the config's "name").
        #[arg(long, value_name = "NAME", required_unless_present = "config")]
        network: Option<String>,
        /// The attachments still in use: a JSON array of {"containerID", "ifname"}
        /// (CNI's cni.dev/valid-attachments), from a file or - for stdin.
        #[arg(long, value_name = "FILE|-")]
        valid: PathBuf,
        /// Show what would be released and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Release everything a node that left the cluster still holds.
    #[command(
        long_about = "Release every attachment a node recorded, in every network of the store (on etcd, the \
                      store the cluster shares), with each network's own policy's DEL: its addresses, the \
                      blocks they leave empty but its last, which pooled keeps as Calico keeps an affinity, and \
                      holds started as on any DEL (sticky). Run it for a node \
                      that is gone for good, as Calico's controllers do; try --dry-run first."
    )]
    ReleaseNode {
        /// The node's name: ipam.node of its configs, by default its host name.
        #[arg(value_name = "NODE")]
        node: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Only this network.
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
        /// Show what would be released and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Release the addresses of pods the container runtime no longer has.
    #[command(
        long_about = "Ask the container runtime, through CRI as kubelet does, which pod sandboxes exist, and \
                      for every network in the CNI config folder that delegates to wasm-ipam, release this \
                      node's attachments whose container id is no sandbox, once they have been seen so for the \
                      grace period, through the network's own policy's GC. Runtimes that send no CNI GC \
                      (containerd) otherwise leak the address of every pod whose DEL did not reach wasm-ipam. \
                      A runtime that does not answer releases nothing. Each run is one pass; \
                      `serve --reconcile-cri` runs passes on a timer."
    )]
    Reconcile {
        #[command(flatten)]
        reconcile: ReconcileArgs,
        /// Show what would be released and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The node's runtime was replaced: take the one answering as the
        /// runtime of the node's pods. Without it, a pass that finds another
        /// runtime than earlier passes asked releases nothing.
        #[arg(long)]
        new_runtime: bool,
    },
    /// Check a policy component and compile it into the cache.
    #[command(
        long_about = "Check a policy component against the cni:ipam world and compile it into the cache, so \
                      the first pod does not wait for the compiler: run it when installing a policy. It lists \
                      what the component exports and imports, and refuses a component that imports anything \
                      beyond the cni:ipam contract and the (empty) WASI 0.2 interfaces."
    )]
    Compile {
        /// A .wasm component, or the name of a built-in policy.
        #[arg(value_name = "POLICY")]
        policy: String,
        /// The cache: ipam.cacheDir of the network config, by default <dataDir>/cache.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
        cache_dir: PathBuf,
    },
    /// Install this binary as the CNI plugin and compile the built-in policies.
    #[command(
        long_about = "Copy this binary into the runtime's plugin folder as wasm-ipam, atomically (a temporary \
                      file renamed into place, so a runtime never runs half a binary, and a running one is \
                      not disturbed), then compile the built-in policies into the cache, so the first pod does \
                      not wait for the compiler. What a DaemonSet's init container runs (see deploy/)."
    )]
    Install {
        /// The runtime's plugin folder, such as /opt/cni/bin.
        #[arg(long, value_name = "DIR")]
        cni_bin_dir: PathBuf,
        /// The compile cache: ipam.cacheDir of the network configs, by default <dataDir>/cache.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
        cache_dir: PathBuf,
    },
    /// Copy a mounted Secret's files (etcd's CA, certificate, key) to the node.
    #[command(
        long_about = "Copy the files of a folder, such as a Kubernetes Secret mounted into a pod, into a folder \
                      on the node where the network configs' ipam.store.etcd settings (tls.caFile, \
                      tls.certFile, tls.keyFile, passwordFile) name them: the runtime runs the plugin on the \
                      node, where a pod's mounts are not. The folder is made root-only (0700), each file is \
                      written 0600 and renamed into place, so a call reads a whole old file or a whole new \
                      one. With --every, it keeps copying what changed, so a rotated certificate reaches the \
                      node; each call reads the files afresh. What the DaemonSet in deploy/ runs."
    )]
    SyncCredentials {
        /// The folder to copy from, such as a Secret's mount.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The folder on the node the configs name, such as /etc/cni/wasm-ipam/etcd.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Keep copying what changed, every this many seconds, until stopped.
        #[arg(long, value_name = "SECONDS")]
        every: Option<u64>,
        /// A missing or empty --from copies nothing and is no error (a Secret
        /// volume marked optional, on nodes whose networks use no etcd).
        #[arg(long)]
        optional: bool,
    },
    /// Take over the reservations of the reference host-local plugin.
    #[command(
        long_about = "Take over the reservations and the round-robin cursors of a reference host-local \
                      plugin's network, so that a node switched to wasm-ipam with policy host-local (and the \
                      same ranges) loses no address and hands out none twice. It holds host-local's lock \
                      while it reads, and writes all of it or nothing. Running it again is harmless."
    )]
    ImportHostLocal {
        /// host-local's directory for the network: <its dataDir>/<network>.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The new network config (a .conf or .conflist, `-` for stdin),
        /// with wasm-ipam as its IPAM plugin: its name, policy, ranges and
        /// store. Its policy must export cni:ipam/inspect.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The interface of reservations written by old host-local versions,
        /// which recorded only the container id.
        #[arg(long, value_name = "IFNAME", default_value = "eth0")]
        default_ifname: String,
    },
    /// Try a policy on a sequence of events in a throwaway store.
    #[command(
        long_about = "Run ADD, DEL, CHECK, GC and STATUS events against the network config's policy in a \
                      throwaway in-memory store, through the same checks as real calls, and print each \
                      outcome and the leases at the end. Nothing on the node is read or written.\n\n\
                      Events are JSON Lines, for example:\n  \
                      {\"op\":\"ADD\",\"containerID\":\"c1\",\"ifname\":\"eth0\",\"args\":\"K8S_POD_NAME=web-0\",\"node\":\"node-a\",\"at\":1700000000}\n  \
                      {\"op\":\"DEL\",\"containerID\":\"c1\"}\n  \
                      {\"op\":\"GC\",\"valid\":[{\"containerID\":\"c2\",\"ifname\":\"eth0\"}]}\n\
                      ifname defaults to eth0; at sets the clock for that event and those after it."
    )]
    Simulate {
        /// A network config (.conf), or a config list whose first plugin with
        /// an ipam section is used; - for stdin.
        #[arg(long, value_name = "NETCONF")]
        config: PathBuf,
        /// The events, one JSON object per line; - for stdin.
        #[arg(long, value_name = "FILE|-")]
        events: PathBuf,
        /// Print one JSON object per event, with the CNI result or error.
        #[arg(long)]
        json: bool,
    },
    /// Serve this node's CNI calls from one resident process (optional).
    #[command(
        long_about = "Keep the policies loaded in one process and run the node's CNI calls in it: each CNI \
                      process forwards its call over a root-only unix socket and prints the answer, and runs \
                      the call itself whenever no server answers. Calls run exactly as they would alone (the \
                      same checks, store transactions and sandbox limits); only loading the policy is saved. \
                      SIGINT or SIGTERM removes the socket and lets the running calls finish."
    )]
    Serve {
        /// The socket; CNI processes look for it at WASM_IPAM_SOCKET, by default this one.
        #[arg(long, value_name = "PATH", default_value = crate::envvars::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Also run the reconciler (see `reconcile`) against this CRI socket.
        #[arg(long, value_name = "ENDPOINT")]
        reconcile_cri: Option<String>,
        /// How often the reconciler runs.
        #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = tools::reconcile::parse_duration)]
        reconcile_every: std::time::Duration,
        /// The CNI config folder the reconciler reads.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_CONF_DIR)]
        conf_dir: PathBuf,
        /// How long the reconciler waits before it releases an orphan.
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = tools::reconcile::parse_duration)]
        grace: std::time::Duration,
    },
    /// Run a pod lifecycle through this binary as a runtime would, and show
    /// each CNI call and its answer.
    Demo {
        /// Keep the data directory here instead of a temporary one.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn now() -> anyhow::Result<u64> {
    crate::runner::now(&|k| std::env::var_os(k)).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The store a tool works on: the one a network config names (and that
/// network's name), or the embedded one in `data_dir`.
fn store_for(
    args: StoreArgs,
    network: Option<String>,
) -> anyhow::Result<(Box<dyn Store>, PathBuf, Option<String>)> {
    let StoreArgs { data_dir, config } = args;
    let Some(config) = config else {
        return Ok((
            Box::new(tools::open_existing(&data_dir)?),
            data_dir,
            network,
        ));
    };
    let text = tools::read_config(&tools::read_input(&config)?)?;
    let conf = NetConf::parse(text.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let store: Box<dyn Store> = match conf.ipam.store {
        StoreConf::Embedded => Box::new(tools::open_existing(&conf.ipam.data_dir)?),
        StoreConf::Etcd(_) => runner::open_store(&conf).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    Ok((
        store,
        conf.ipam.data_dir.clone(),
        network.or(Some(conf.name)),
    ))
}

fn run(cmd: Cmd, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        Cmd::Leases {
            store,
            network,
            json,
        } => {
            let (store, data_dir, network) = store_for(store, network)?;
            tools::leases::run(&*store, &data_dir, network.as_deref(), json, now()?, out)
        }
        Cmd::Metrics { store, listen } => {
            let (store, data_dir, _) = store_for(store, None)?;
            match listen {
                Some(addr) => tools::metrics::serve(&*store, &data_dir, addr, &now, out),
                None => tools::metrics::run(&*store, &data_dir, now()?, out),
            }
        }
        Cmd::Gc {
            store,
            network,
            valid,
            dry_run,
        } => {
            let valid = tools::gc::parse_valid(&tools::read_input(&valid)?)?;
            let (store, data_dir, network) = store_for(store, network)?;
            let network = network.expect("clap requires --network without --config");
            tools::gc::run(&*store, &data_dir, &network, valid, dry_run, out).map(drop)
        }
        Cmd::ReleaseNode {
            node,
            store,
            network,
            dry_run,
        } => {
            let (store, data_dir, _) = store_for(store, None)?;
            let network = network.as_deref();
            tools::release_node::run(&*store, &data_dir, &node, network, dry_run, now()?, out)
                .map(drop)
        }
        Cmd::Reconcile {
            reconcile,
            dry_run,
            new_runtime,
        } => {
            let settings = crate::reconcile::Settings {
                cri: reconcile.cri,
                conf_dir: reconcile.conf_dir,
                grace: reconcile.grace,
                new_runtime,
                mode: if dry_run {
                    crate::runner::Mode::DryRun
                } else {
                    crate::runner::Mode::Commit
                },
            };
            tools::reconcile::run(&settings, now()?, out)
        }
        Cmd::Compile { policy, cache_dir } => tools::compile::run(&policy, &cache_dir, out),
        Cmd::Install {
            cni_bin_dir,
            cache_dir,
        } => tools::install::run(&cni_bin_dir, &cache_dir, out),
        Cmd::SyncCredentials {
            from,
            to,
            every,
            optional,
        } => tools::credentials::run(
            &tools::credentials::Sync {
                from: &from,
                to: &to,
                every,
                optional,
            },
            out,
        ),
        Cmd::ImportHostLocal {
            from,
            config,
            default_ifname,
        } => {
            let text = tools::read_config(&tools::read_input(&config)?)?;
            let conf = NetConf::parse(text.to_string().as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
            let store = runner::open_store(&conf).map_err(|e| anyhow::anyhow!("{e}"))?;
            tools::import::run(&from, &conf, &*store, &default_ifname, now()?, out).map(drop)
        }
        Cmd::Simulate {
            config,
            events,
            json,
        } => tools::simulate::run_files(&config, &events, json, out),
        Cmd::Serve {
            socket,
            reconcile_cri,
            reconcile_every,
            conf_dir,
            grace,
        } => {
            let reconcile = reconcile_cri.map(|cri| crate::serve::reconciler::Timer {
                settings: crate::reconcile::Settings {
                    cri,
                    conf_dir,
                    grace,
                    new_runtime: false,
                    mode: crate::runner::Mode::Commit,
                },
                every: reconcile_every,
            });
            crate::serve::server::run(&socket, reconcile, out)
        }
        Cmd::Demo { data_dir } => crate::demo::run(data_dir),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match run(cli.command, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`| head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = stdout.flush();
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
