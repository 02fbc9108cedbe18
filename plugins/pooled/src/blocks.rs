//! Blocks and addresses in the store.
//!
//! - `block/<pool>/<index>`: a claimed block, `{"node", "used", "bits"}`,
//!   `bits` a bitmap of the offsets in use (hex, four offsets a digit). The
//!   index is 32 hex digits, so keys sort in address order.
//! - `node/<node>/<pool>/<index>`: the blocks a node has affinity to.
//! - `open/<node>/<pool>/<index>`: those of them with room left, so a warm
//!   ADD reads one index entry and one block whatever the pool's size.
//! - `cool/<ip>`: when a released address was freed, while it cools down.
//! - the kit's `lease/` and `owner/` records, tagged `<pool>/<index>`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipam_kit::Host;
use ipam_kit::leases::{self, Lease};
use ipam_kit::ranges::{ip_from_num, ip_num};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Pool};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub node: String,
    pub used: u64,
    #[serde(default)]
    pub bits: String,
}

impl Block {
    fn new(node: &str, len: u128) -> Block {
        Block {
            node: node.to_string(),
            used: 0,
            bits: "0".repeat(len.div_ceil(4) as usize),
        }
    }

    pub fn in_use(&self, offset: u128) -> bool {
        let digit = self
            .bits
            .as_bytes()
            .get((offset / 4) as usize)
            .copied()
            .unwrap_or(b'0');
        let nibble = (digit as char).to_digit(16).unwrap_or(0);
        nibble & (1 << (offset % 4)) != 0
    }

    fn set(&mut self, offset: u128, on: bool) {
        let i = (offset / 4) as usize;
        let mut digits: Vec<u8> = std::mem::take(&mut self.bits).into_bytes();
        let mut nibble = (digits[i] as char).to_digit(16).unwrap_or(0);
        if on {
            nibble |= 1 << (offset % 4);
        } else {
            nibble &= !(1 << (offset % 4));
        }
        digits[i] = std::char::from_digit(nibble, 16).expect("a nibble") as u8;
        self.bits = String::from_utf8(digits).expect("hex digits");
    }
}

fn block_key(pool: &str, index: u128) -> String {
    format!("block/{pool}/{index:032x}")
}

fn node_key(node: &str, pool: &str, index: u128) -> String {
    format!("node/{node}/{pool}/{index:032x}")
}

fn open_key(node: &str, pool: &str, index: u128) -> String {
    format!("open/{node}/{pool}/{index:032x}")
}

fn cool_key(ip: IpAddr) -> String {
    format!("cool/{ip}")
}

fn parse_index(hex: &str) -> Option<u128> {
    u128::from_str_radix(hex, 16).ok()
}

pub fn get_block(host: &dyn Host, pool: &str, index: u128) -> Option<Block> {
    host.get(&block_key(pool, index))
        .and_then(|v| serde_json::from_slice(&v).ok())
}

fn put_block(host: &mut dyn Host, pool: &str, index: u128, block: &Block) {
    host.put(
        &block_key(pool, index),
        &serde_json::to_vec(block).expect("serializes"),
    );
}

/// Every claimed block of the pool, by index.
pub fn all_blocks(host: &dyn Host, pool: &str) -> BTreeMap<u128, Block> {
    let prefix = format!("block/{pool}/");
    host.scan_all(&prefix)
        .into_iter()
        .filter_map(|(k, v)| {
            Some((
                parse_index(&k[prefix.len()..])?,
                serde_json::from_slice(&v).ok()?,
            ))
        })
        .collect()
}

/// The blocks `node` has affinity to in the pool, in address order.
pub fn node_blocks(host: &dyn Host, node: &str, pool: &str) -> Vec<u128> {
    let prefix = format!("node/{node}/{pool}/");
    host.scan_all(&prefix)
        .into_iter()
        .filter_map(|(k, _)| parse_index(&k[prefix.len()..]))
        .collect()
}

fn cooling(host: &dyn Host, ip: IpAddr, now: u64, cooldown: u64) -> bool {
    cooldown > 0
        && host
            .get(&cool_key(ip))
            .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
            .is_some_and(|freed| now < freed.saturating_add(cooldown))
}

/// Whether `ip` can be handed out now: usable, not leased, not cooling.
pub fn is_free(host: &dyn Host, pool: &Pool, ip: IpAddr, now: u64, cooldown: u64) -> bool {
    pool.usable(ip) && leases::get(host, ip).is_none() && !cooling(host, ip, now, cooldown)
}

/// The lowest offset of a block that is usable and not in use, ignoring
/// cool-downs: whether the block has room at all.
fn first_open(pool: &Pool, index: u128, block: Option<&Block>) -> Option<IpAddr> {
    let base = ip_num(pool.block_net(index).network());
    (0..pool.block_len())
        .filter(|off| block.is_none_or(|b| !b.in_use(*off)))
        .map(|off| ip_from_num(pool.net.addr(), base + off))
        .find(|ip| pool.usable(*ip))
}

/// The lowest free address of a block, from its bitmap.
pub fn lowest_free(
    host: &dyn Host,
    pool: &Pool,
    index: u128,
    block: Option<&Block>,
    now: u64,
    cooldown: u64,
) -> Option<IpAddr> {
    let base = ip_num(pool.block_net(index).network());
    (0..pool.block_len())
        .filter(|off| block.is_none_or(|b| !b.in_use(*off)))
        .map(|off| ip_from_num(pool.net.addr(), base + off))
        .find(|ip| pool.usable(*ip) && !cooling(host, *ip, now, cooldown))
}

/// How an address was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From a block this node has affinity to.
    Own,
    /// From a block claimed for this node now.
    Claimed,
    /// From another node's block.
    Borrowed,
}

/// The blocks `node` owns in the pool that have room, in address order.
fn open_blocks(host: &dyn Host, node: &str, pool: &str) -> Vec<u128> {
    let prefix = format!("open/{node}/{pool}/");
    host.scan_all(&prefix)
        .into_iter()
        .filter_map(|(k, _)| parse_index(&k[prefix.len()..]))
        .collect()
}

/// How many blocks a claim looks at one key at a time, from the node's own
/// starting point, before it scans the pool for an unclaimed block.
const PROBES: u128 = 16;

/// Where `node` starts looking for a block to claim: a point of the pool
/// that depends on the node's name (FNV-1a), as Calico starts from a random
/// block. Nodes that start at once so look at different blocks; from the
/// lowest index, every one of them wanted the same block, and all but one
/// lost the race (399 of 500 ADDs failed in a 100-node burst on etcd).
pub fn start_of(node: &str, count: u128) -> u128 {
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    u128::from(hash) % count.max(1)
}

/// An unclaimed block with a free address, for `node` to claim: the first at
/// or after the node's starting point. The first [`PROBES`] blocks are read
/// one key each, so a transaction's reads hold only the keys it looked at
/// and two nodes conflict only if they look at the same block; only a pool
/// that is nearly all claimed is scanned.
fn unclaimed(
    host: &dyn Host,
    pool: &Pool,
    node: &str,
    now: u64,
    cooldown: u64,
) -> Option<(IpAddr, u128)> {
    let count = pool.block_count();
    let start = start_of(node, count);
    let free_in = |index: u128| lowest_free(host, pool, index, None, now, cooldown);
    for step in 0..PROBES.min(count) {
        let index = (start + step) % count;
        if get_block(host, &pool.name, index).is_none()
            && let Some(ip) = free_in(index)
        {
            return Some((ip, index));
        }
    }
    // Only claimed (and fully excluded) blocks are skipped, so this ends
    // quickly even in an IPv6 pool of 2^58 blocks.
    let claimed = all_blocks(host, &pool.name);
    let steps = count.min(claimed.len() as u128 + 4096);
    (PROBES.min(count)..steps)
        .map(|step| (start + step) % count)
        .filter(|index| !claimed.contains_key(index))
        .find_map(|index| free_in(index).map(|ip| (ip, index)))
}

/// The address the pool would hand to a pod on `cfg.node` now, without
/// changing anything: own blocks first, then a new block, then borrowing.
pub fn find(
    host: &dyn Host,
    cfg: &Config,
    pool: &Pool,
    now: u64,
) -> Option<(IpAddr, u128, Source)> {
    let cooldown = cfg.cooldown_seconds;
    for index in open_blocks(host, &cfg.node, &pool.name) {
        let block = get_block(host, &pool.name, index);
        if let Some(ip) = lowest_free(host, pool, index, block.as_ref(), now, cooldown) {
            return Some((ip, index, Source::Own));
        }
    }
    let own = node_blocks(host, &cfg.node, &pool.name).len();
    let limit_reached = cfg.max_blocks_per_node > 0 && own >= cfg.max_blocks_per_node as usize;
    if !limit_reached && let Some((ip, index)) = unclaimed(host, pool, &cfg.node, now, cooldown) {
        return Some((ip, index, Source::Claimed));
    }
    if cfg.strict_affinity || limit_reached {
        return None;
    }
    all_blocks(host, &pool.name)
        .iter()
        .filter(|(_, b)| b.node != cfg.node)
        .find_map(|(&index, b)| {
            lowest_free(host, pool, index, Some(b), now, cooldown)
                .map(|ip| (ip, index, Source::Borrowed))
        })
}

/// Stores a block and keeps its owner's `open/` entry in step with it. A
/// block without an owner (its node was released) has no entry.
fn save(host: &mut dyn Host, pool: &Pool, index: u128, block: &Block) {
    put_block(host, &pool.name, index, block);
    if block.node.is_empty() {
        return;
    }
    let key = open_key(&block.node, &pool.name, index);
    if first_open(pool, index, Some(block)).is_some() {
        host.put(&key, b"");
    } else {
        host.delete(&key);
    }
}

/// Leases `ip` in block `index` to the lease's attachment, claiming the block
/// for `node` if nobody has it.
pub fn take(
    host: &mut dyn Host,
    pool: &Pool,
    index: u128,
    ip: IpAddr,
    node: &str,
    mut lease: Lease,
) {
    let mut block = get_block(host, &pool.name, index).unwrap_or_else(|| {
        host.put(&node_key(node, &pool.name, index), b"");
        Block::new(node, pool.block_len())
    });
    let offset = ip_num(ip) - ip_num(pool.block_net(index).network());
    block.set(offset, true);
    block.used += 1;
    save(host, pool, index, &block);
    host.delete(&cool_key(ip));
    lease.tag = Some(format!("{}/{index:032x}", pool.name));
    let reserved = leases::reserve(host, ip, &lease);
    debug_assert!(reserved, "take is only called for free addresses");
}

/// Frees `ip`: it cools down, and an emptied block goes back to the pool
/// unless it is its node's last (a block without an owner always does).
pub fn release(host: &mut dyn Host, cfg: &Config, ip: IpAddr, lease: &Lease, now: u64) {
    leases::release(host, ip);
    if cfg.cooldown_seconds > 0 {
        host.put(&cool_key(ip), now.to_string().as_bytes());
    }
    let Some((pool_name, index)) = lease
        .tag
        .as_deref()
        .and_then(|t| t.split_once('/'))
        .and_then(|(p, i)| Some((p.to_string(), parse_index(i)?)))
    else {
        return;
    };
    let Some(pool) = cfg.pools.iter().find(|p| p.name == pool_name) else {
        return;
    };
    let Some(mut block) = get_block(host, &pool_name, index) else {
        return;
    };
    block.set(ip_num(ip) - ip_num(pool.block_net(index).network()), false);
    block.used = block.used.saturating_sub(1);
    if block.used == 0
        && (block.node.is_empty() || node_blocks(host, &block.node, &pool_name).len() > 1)
    {
        host.delete(&block_key(&pool_name, index));
        host.delete(&node_key(&block.node, &pool_name, index));
        host.delete(&open_key(&block.node, &pool_name, index));
    } else {
        save(host, pool, index, &block);
    }
}

/// Gives up every affinity `node` has in `pool`, for a node that has left
/// the cluster: its empty blocks go back to the pool, and a block that still
/// holds addresses (leases the host had no record of, or borrowed by other
/// nodes, which may be live) stays, without an owner, until its last
/// address is released; meanwhile any node may borrow from it. The count of
/// blocks given back and of blocks left without an owner.
pub fn release_node(host: &mut dyn Host, node: &str, pool: &Pool) -> (usize, usize) {
    let (mut freed, mut orphaned) = (0, 0);
    for index in node_blocks(host, node, &pool.name) {
        host.delete(&node_key(node, &pool.name, index));
        host.delete(&open_key(node, &pool.name, index));
        match get_block(host, &pool.name, index) {
            Some(mut block) if block.used > 0 => {
                block.node = String::new();
                put_block(host, &pool.name, index, &block);
                orphaned += 1;
            }
            _ => {
                host.delete(&block_key(&pool.name, index));
                freed += 1;
            }
        }
    }
    (freed, orphaned)
}

/// How full `pool` is, with `leases` every lease of the network: its
/// capacity, its leases, and a `blocks` figure per node holding blocks.
pub fn usage(
    host: &dyn Host,
    pool: &Pool,
    leases: &[(IpAddr, Lease)],
) -> ipam_kit::inspect::PoolUsage {
    use ipam_kit::inspect::{Figure, PoolUsage, count};
    let used = leases.iter().filter(|(ip, _)| pool.contains(*ip)).count() as u64;
    let capacity = count(pool.capacity());
    let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
    for block in all_blocks(host, &pool.name).values() {
        *per_node.entry(block.node.clone()).or_default() += 1;
    }
    PoolUsage {
        name: pool.label(),
        capacity,
        used,
        free: capacity.saturating_sub(used),
        figures: per_node
            .into_iter()
            .map(|(node, value)| Figure {
                name: "blocks".into(),
                node: Some(node),
                value,
            })
            .collect(),
    }
}
