//! The reconciler on a timer, in `wasm-ipam serve` (`--reconcile-cri`):
//! the same pass as `wasm-ipam reconcile` ([`crate::reconcile`]), every
//! `--reconcile-every`, in a thread of its own so no call waits for it.
//! A pass that fails is logged and the next one runs on time: the grace
//! marks live in the stores, so nothing is lost between passes, and
//! `metrics` shows the time of the last good pass.

use std::time::Duration;

use crate::reconcile::{self, Settings};

/// What to run, and how often.
pub struct Timer {
    pub settings: Settings,
    pub every: Duration,
}

/// Starts the passes, the first one at once.
pub fn start(timer: Timer) {
    log::info!(
        "reconciling {} against {} every {}s (grace {}s)",
        timer.settings.conf_dir.display(),
        timer.settings.cri,
        timer.every.as_secs(),
        timer.settings.grace.as_secs()
    );
    std::thread::spawn(move || {
        loop {
            match crate::runner::now(&|k| std::env::var_os(k)) {
                Ok(now) => {
                    if let Err(e) = reconcile::run(&timer.settings, now) {
                        log::warn!("reconcile: {e}");
                    }
                }
                Err(e) => log::warn!("reconcile: {e}"),
            }
            std::thread::sleep(timer.every.max(Duration::from_secs(1)));
        }
    });
}
