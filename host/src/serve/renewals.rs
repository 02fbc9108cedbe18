//! Renewing this node's DHCP leases, the job of `wasm-ipam serve` beside
//! forwarded calls, in the place of the reference dhcp plugin's daemon.
//!
//! Unlike that daemon, it keeps nothing in memory that it cannot read
//! back: each round reads the stores the node's calls listed
//! (`dhcp::registry`) and the host's record of each lease in them
//! (`dhcp::record`), so a server that restarts, or starts after the
//! leases were taken, renews them all. For each lease of this node and
//! boot:
//!
//! - before T1 it renews with the server that granted it (unicast; a
//!   tenth of T1 ahead, at most 30 s, so the renewal is done by T1), at T2
//!   it rebinds with any server (broadcast), and past the expiry it keeps
//!   rebinding, since the pod still uses the address;
//! - a failure is logged with the lease and what happened, counted in the
//!   record (`wasm-ipam metrics` shows it), and tried again after half the
//!   time left to the next of T2 and the expiry, at least 1 s and at most
//!   60 s or the lease's own T1, whichever is less (RFC 2131 4.4.5 waits
//!   half the time left, down to 60 s; a lease renewed every few seconds
//!   is retried as often);
//! - the record is updated in a transaction of its own once the exchange
//!   is done, never during it, so no call waits for a server; a lease
//!   released while its renewal was under way is released again;
//! - each round also sends the RELEASEs a crash left in the outbox.
//!
//! The renewals use the real clock: the server counts lease time in it.

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::dhcp::record::{self, Record};
use crate::dhcp::registry::{self, Place};
use crate::dhcp::{client, outbox};
use crate::store::{Store, StoreError};

/// How often the stores are read again for leases taken elsewhere (by a
/// one-shot call, or another process); a served call that takes a lease
/// wakes the renewer at once.
const RESCAN: Duration = Duration::from_secs(5);

/// Starts renewing in a thread of its own, until the process ends.
pub fn start() {
    let Some(rx) = registry::wake_channel() else {
        return;
    };
    std::thread::spawn(move || {
        loop {
            let next = round();
            match rx.recv_timeout(next.min(RESCAN)) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    });
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// One pass over every listed store; returns how long until the next
/// lease is due.
fn round() -> Duration {
    let boot = crate::reboot::boot_id(&|k| std::env::var_os(k));
    let mut next = RESCAN;
    for place in registry::places() {
        match renew_place(&place, boot.as_deref()) {
            Ok(due) => next = next.min(due),
            Err(e) => log::warn!(
                "dhcp: cannot renew the leases in the store of {}: {e}",
                place.data_dir.display()
            ),
        }
    }
    next
}

fn renew_place(place: &Place, boot: Option<&str>) -> Result<Duration, String> {
    let conf = place
        .store_conf()
        .ok_or_else(|| format!("its listed store {} does not parse", place.store))?;
    // A store that is gone holds nothing to renew; opening it would make
    // it again.
    if crate::release::nothing_stored(&conf, &place.data_dir) {
        return Ok(RESCAN);
    }
    let store = crate::runner::open_store_at(&conf, &place.data_dir).map_err(|e| e.to_string())?;
    let mut next = RESCAN;
    for network in store.namespaces().map_err(|e| e.to_string())? {
        outbox::flush(&*store, &network, &place.node, boot);
        let records = {
            let mut txn = store.begin(&network).map_err(|e| e.to_string())?;
            record::all(&mut *txn).map_err(|e| e.to_string())?
        };
        for r in records.iter().filter(|r| r.is_local(&place.node, boot)) {
            let at = now();
            let due = due(r);
            if due <= at {
                renew(&*store, &network, r, at);
            } else {
                next = next.min(Duration::from_secs(due - at));
            }
        }
    }
    Ok(next)
}

/// When a lease is next to be renewed: a little before T1, or, after
/// failures, half the time left to the next of T2 and the expiry (1 s to
/// 60 s, and no longer than T1).
pub fn due(r: &Record) -> u64 {
    if r.failures == 0 {
        let lead = u64::from(r.lease.renew_secs / 10).min(30);
        return r.renew_at().saturating_sub(lead);
    }
    let tried = r.attempted_at.unwrap_or(r.bound_at);
    let longest = u64::from(r.lease.renew_secs).clamp(1, 60);
    let boundary = [r.rebind_at(), r.expires_at()]
        .into_iter()
        .find(|b| *b > tried);
    let wait = boundary
        .map_or(longest, |b| (b - tried) / 2)
        .clamp(1, longest);
    tried + wait
}

fn renew(store: &dyn Store, network: &str, r: &Record, at: u64) {
    let rebind = at >= r.rebind_at();
    let answer = client::renew(&r.attachment(), &r.request, &r.lease, rebind);
    let what = if rebind { "rebinding" } else { "renewing" };
    for _ in 0..5 {
        match update(store, network, r, &answer, at) {
            Err(StoreError::Conflict) => continue,
            Err(e) => {
                log::warn!(
                    "dhcp: {what} the lease of {}/{} worked out, but its record was not updated: {e}",
                    r.container_id,
                    r.ifname
                );
                return;
            }
            Ok(None) => {
                // Released while it was being renewed: the renewal gave
                // the server the lease back, so it is released again.
                if answer.is_ok() {
                    let _ = client::release(&r.attachment(), &r.request, &r.lease);
                }
                return;
            }
            Ok(Some(updated)) => {
                match &answer {
                    Ok(_) => log::info!(
                        "dhcp: {what} the lease of {} for {}/{} in network {network}: held until {}",
                        updated.lease.address,
                        r.container_id,
                        r.ifname,
                        updated.expires_at()
                    ),
                    Err(e) => log::warn!(
                        "dhcp: {what} the lease of {} for {}/{} in network {network} failed ({} in a row; it {}): {e}",
                        r.lease.address,
                        r.container_id,
                        r.ifname,
                        updated.failures,
                        match r.expires_at().checked_sub(at) {
                            Some(left) if left > 0 => format!("lapses in {left} s"),
                            _ => "has lapsed".to_string(),
                        }
                    ),
                }
                return;
            }
        }
    }
}

/// Writes a renewal's outcome into the lease's record, if the lease is
/// still held: `None` when it is not.
fn update(
    store: &dyn Store,
    network: &str,
    r: &Record,
    answer: &Result<client::Lease, client::DhcpError>,
    at: u64,
) -> Result<Option<Record>, StoreError> {
    let mut txn = store.begin(network)?;
    let Some(mut current) = record::read(&mut *txn, &r.container_id, &r.ifname)? else {
        return Ok(None);
    };
    if current.request.client_id != r.request.client_id {
        return Ok(None);
    }
    current.attempted_at = Some(at);
    match answer {
        Ok(lease) => {
            current.lease = lease.clone();
            current.bound_at = at;
            current.renewals += 1;
            current.failures = 0;
            current.last_error = None;
        }
        Err(e) => {
            current.failures += 1;
            current.last_error = Some(e.to_string());
        }
    }
    record::write(&mut *txn, &current)?;
    txn.commit()?;
    Ok(Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(bound_at: u64, failures: u32, attempted_at: Option<u64>) -> Record {
        let mut r: Record = serde_json::from_value(serde_json::json!({
            "containerId": "c1", "ifname": "eth0", "netns": "/x", "node": "n",
            "request": {"clientId": [0, 1], "hostname": null, "request": [], "provide": [], "timeoutMs": 5000},
            "lease": {"address": "10.9.0.20", "prefixLen": 24, "server": "10.9.0.1",
                      "routers": [], "dns": [], "domain": null, "leaseSecs": 3600,
                      "renewSecs": 1800, "rebindSecs": 3150, "options": []},
            "boundAt": 0
        }))
        .unwrap();
        r.bound_at = bound_at;
        r.failures = failures;
        r.attempted_at = attempted_at;
        r
    }

    #[test]
    fn a_lease_is_due_before_t1_then_half_the_time_left_between_1_and_60_s() {
        // T1 at 2800: 30 s ahead.
        assert_eq!(due(&lease(1000, 0, None)), 2770);
        // Failed at T1: 1350 s to T2, so the 60 s cap.
        assert_eq!(due(&lease(1000, 1, Some(2800))), 2860);
        // Failed 10 s before T2: 5 s.
        assert_eq!(due(&lease(1000, 3, Some(4140))), 4145);
        // Failed a second before the expiry: 1 s, the floor.
        assert_eq!(due(&lease(1000, 9, Some(4599))), 4600);
        // Lapsed: every 60 s.
        assert_eq!(due(&lease(1000, 9, Some(9000))), 9060);
        // A lease renewed every 2 s is retried at least as often.
        let mut short = lease(1000, 1, Some(1002));
        short.lease.renew_secs = 2;
        assert_eq!(due(&short), 1004);
    }
}
