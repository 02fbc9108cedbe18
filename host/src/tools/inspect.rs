//! The operator tools' view of a network's state: its own policy's
//! `inspect` export, called with the config the host recorded at ADD, in a
//! transaction that is always rolled back. The host never reads a policy's
//! keys itself: a third-party policy shows up in `leases` and `metrics` by
//! exporting `inspect`, not by copying the built-in policies' layout.

use std::path::Path;

use anyhow::Context as _;

use crate::netrecord::NetworkRecord;
use crate::runner;
use crate::sandbox::{Answer, Invocation, Lease, Op, PoolUsage};
use crate::store::Store;

/// What a network's policy reports.
pub enum Seen {
    /// The network has no recorded config yet (no ADD through wasm-ipam).
    Unrecorded,
    /// Its policy does not export `inspect`.
    NotReported { policy: String },
    Reported {
        policy: String,
        leases: Vec<Lease>,
        pools: Vec<PoolUsage>,
    },
}

/// Asks `network`'s policy for its leases and pools.
pub fn network(
    store: &dyn Store,
    data_dir: &Path,
    network: &str,
    now: u64,
) -> anyhow::Result<Seen> {
    let record = NetworkRecord::read(&mut *store.begin(network)?)?;
    let Some(record) = record else {
        return Ok(Seen::Unrecorded);
    };
    let conf = super::recorded_conf(&record, network, data_dir, Default::default())?;
    let sandbox = runner::load_policy(&conf).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = crate::reboot::bare_context(
        &conf,
        &runner::node_name(&conf).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let ask = |op: Op| -> anyhow::Result<Answer> {
        let txn = store.begin(network)?;
        // The transaction comes back and is dropped: rolled back.
        let (answer, _txn) = sandbox.call(txn, &Invocation::new(&ctx, &op, &conf.ipam.limits, now));
        answer
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map_err(|e| anyhow::anyhow!("{}", crate::sandbox::ipam_error(e)))
            .with_context(|| format!("policy {} could not inspect {network:?}", record.policy))
    };
    let policy = record.policy.clone();
    let leases = match ask(Op::Leases)? {
        Answer::Leases(leases) => leases,
        _ => return Ok(Seen::NotReported { policy }),
    };
    let pools = match ask(Op::Usage)? {
        Answer::Usage(pools) => pools,
        _ => Vec::new(),
    };
    Ok(Seen::Reported {
        policy,
        leases,
        pools,
    })
}
