//! Timed ADD/DEL pairs, interleaved across every configuration measured.
//!
//! The machines this runs on are shared virtual machines whose speed drifts
//! by tens of percent over a minute. Measuring one configuration after
//! another let that drift into the very ratios the targets are about (ours
//! against the reference, 10,000 addresses against none): one run showed
//! host-local 1.4x slower at 10,000 than empty, the next 1.0x. Taking pair
//! `i` of every configuration before pair `i + 1` of any spreads the drift
//! over all of them alike. The order within a round is shuffled, because a
//! call pays for what the call before it did to the CPU's caches: the
//! reference at 10,000 addresses reads 10,000 files, and whichever cell
//! always came next looked 20% slower than the others.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::spawn;
use crate::stats::{Summary, summarise};
use crate::systems::env_to;

/// One configuration: the binary and the network config it is given.
pub struct Cell {
    pub bin: PathBuf,
    pub stdin: String,
    /// What the cell is, for error messages.
    pub label: String,
    /// The server its calls are forwarded to, empty for none.
    pub socket: String,
}

pub struct Op {
    pub add: Summary,
    pub del: Summary,
    pub rss_kib: u64,
}

/// `iterations` ADD/DEL pairs per cell, round-robin over the cells, after
/// an untimed call per cell that warms the page cache (and, for ours, the
/// compile cache). The answers come back in the order of the cells.
pub fn interleaved(cells: &[Cell], iterations: usize) -> Result<Vec<Op>> {
    for cell in cells {
        let warm_up = env_to("ADD", "warm-up", &cell.socket);
        spawn::run(&cell.bin, &warm_up, cell.stdin.as_bytes());
    }
    let mut samples = vec![(Vec::new(), Vec::new(), 0u64); cells.len()];
    let mut order: Vec<usize> = (0..cells.len()).collect();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..iterations {
        let id = format!("bench-{i}");
        rng.shuffle(&mut order);
        for &c in &order {
            let (cell, (adds, dels, rss)) = (&cells[c], &mut samples[c]);
            let mut pair = Vec::with_capacity(2);
            for command in ["ADD", "DEL"] {
                let call = env_to(command, &id, &cell.socket);
                let run = spawn::run(&cell.bin, &call, cell.stdin.as_bytes());
                if !run.ok {
                    bail!("{}: {command} failed: {}", cell.label, run.stderr);
                }
                *rss = (*rss).max(run.max_rss_kib);
                pair.push(run.wall);
            }
            adds.push(pair[0]);
            dels.push(pair[1]);
        }
    }
    Ok(samples
        .into_iter()
        .map(|(adds, dels, rss_kib)| Op {
            add: summarise(&adds),
            del: summarise(&dels),
            rss_kib,
        })
        .collect())
}

/// A fixed-seed xorshift: the shuffle needs no statistical quality, and a
/// fixed seed makes runs comparable.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
