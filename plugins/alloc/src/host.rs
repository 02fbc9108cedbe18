//! The policy's view of the host: the store, the clock and the log.
//!
//! Policies take `&mut dyn Host` rather than calling the imports directly so
//! that their rules are unit-tested natively, against [`MemHost`], with a
//! clock the test sets. The kit's `WitHost` is the real one, over the
//! component's imports.
//!
//! The optional `dhcp` import is reached through [`Host::dhcp`], which is
//! `None` unless the host behind it has the import: a policy built without
//! it never imports it, and so runs on networks that grant nothing.

use std::collections::BTreeMap;

use crate::Level;
use crate::dhcp::{Dhcp, FakeDhcp};

/// The most entries one `scan` call returns; the host caps it there too.
pub const SCAN_PAGE: u32 = 1000;

pub trait Host {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn put(&mut self, key: &str, value: &[u8]);
    fn delete(&mut self, key: &str);
    fn scan(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)>;
    /// Seconds since the Unix epoch, as the host gives it.
    fn now(&self) -> u64;
    fn log(&self, level: Level, message: &str);
    /// The `dhcp` import, when this host has it.
    fn dhcp(&mut self) -> Option<&mut dyn Dhcp> {
        None
    }

    /// Every entry under `prefix`, in key order, read page by page.
    fn scan_all(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        loop {
            let after = out.last().map(|(k, _)| k.clone());
            let page = self.scan(prefix, after.as_deref(), SCAN_PAGE);
            let full = page.len() == SCAN_PAGE as usize;
            out.extend(page);
            if !full {
                return out;
            }
        }
    }
}

/// An in-memory host for unit tests: an ordered map, a settable clock and,
/// when a test gives it one, a DHCP server.
#[derive(Debug, Default, Clone)]
pub struct MemHost {
    pub data: BTreeMap<String, Vec<u8>>,
    pub now: u64,
    pub dhcp: Option<FakeDhcp>,
}

impl Host for MemHost {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.data.get(key).cloned()
    }
    fn put(&mut self, key: &str, value: &[u8]) {
        self.data.insert(key.to_string(), value.to_vec());
    }
    fn delete(&mut self, key: &str) {
        self.data.remove(key);
    }
    fn scan(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)> {
        use std::ops::Bound;
        let lower = match start_after {
            Some(after) => Bound::Excluded(after.to_string()),
            None => Bound::Included(prefix.to_string()),
        };
        self.data
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit.min(SCAN_PAGE) as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn log(&self, _level: Level, _message: &str) {}
    fn dhcp(&mut self) -> Option<&mut dyn Dhcp> {
        let now = self.now;
        self.dhcp.as_mut().map(|d| {
            d.now = now;
            d as &mut dyn Dhcp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_all_pages_past_the_page_size() {
        let mut host = MemHost::default();
        for i in 0..2500 {
            host.put(&format!("a/{i:05}"), b"x");
        }
        host.put("b/0", b"y");
        let all = host.scan_all("a/");
        assert_eq!(all.len(), 2500);
        assert_eq!(all.first().unwrap().0, "a/00000");
        assert_eq!(all.last().unwrap().0, "a/02499");
    }

    #[test]
    fn scan_starts_after_the_given_key() {
        let mut host = MemHost::default();
        for k in ["p/1", "p/2", "p/3", "q/1"] {
            host.put(k, b"");
        }
        let keys: Vec<_> = host
            .scan("p/", Some("p/1"), 10)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["p/2", "p/3"]);
    }
}
