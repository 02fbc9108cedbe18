//! The kit's [`Host`] over one of our store transactions, so the tools read
//! and write leases with the very code the policies use.

use std::cell::RefCell;

use ipam_kit::{Host, Level};

use crate::store::{StoreError, Txn};

pub struct TxnHost {
    txn: RefCell<Box<dyn Txn>>,
    /// The first store error: the kit's host calls cannot fail, so it is
    /// kept and reported when the work is done.
    error: RefCell<Option<StoreError>>,
    now: u64,
}

impl TxnHost {
    pub fn new(txn: Box<dyn Txn>, now: u64) -> TxnHost {
        TxnHost {
            txn: RefCell::new(txn),
            error: RefCell::new(None),
            now,
        }
    }

    fn note<T: Default>(&self, r: Result<T, StoreError>) -> T {
        r.unwrap_or_else(|e| {
            self.error.borrow_mut().get_or_insert(e);
            T::default()
        })
    }

    /// The transaction back, or the first error it gave.
    pub fn finish(self) -> Result<Box<dyn Txn>, StoreError> {
        match self.error.into_inner() {
            Some(e) => Err(e),
            None => Ok(self.txn.into_inner()),
        }
    }
}

impl Host for TxnHost {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let r = self.txn.borrow_mut().get(key);
        self.note(r)
    }
    fn put(&mut self, key: &str, value: &[u8]) {
        let r = self.txn.borrow_mut().put(key, value);
        self.note(r)
    }
    fn delete(&mut self, key: &str) {
        let r = self.txn.borrow_mut().delete(key);
        self.note(r)
    }
    fn scan(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)> {
        let r = self.txn.borrow_mut().scan(prefix, start_after, limit);
        self.note(r)
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn log(&self, _level: Level, message: &str) {
        eprintln!("wasm-ipam: {message}");
    }
}
