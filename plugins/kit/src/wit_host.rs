//! The real [`Host`]: the component's `store`, `clock` and `log` imports.

use crate::Host;
use crate::Level;
use crate::bindings::cni::ipam::{clock, log, store};

/// The imports, for code running inside the component.
#[derive(Default)]
pub struct WitHost;

impl Host for WitHost {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        store::get(key)
    }
    fn put(&mut self, key: &str, value: &[u8]) {
        store::put(key, value)
    }
    fn delete(&mut self, key: &str) {
        store::delete(key)
    }
    fn scan(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)> {
        store::scan(prefix, start_after, limit)
    }
    fn now(&self) -> u64 {
        clock::now()
    }
    fn log(&self, level: Level, message: &str) {
        log::log(level.into(), message)
    }
}
