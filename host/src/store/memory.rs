//! An in-memory store with optimistic transactions: each transaction works
//! on a snapshot and commits only if nobody committed since it began. It is
//! the model of the distributed backend's behaviour, and the store of
//! throwaway runs.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use super::{Entry, Store, StoreError, Txn};

type Data = BTreeMap<(String, Vec<u8>), Vec<u8>>;

#[derive(Default)]
struct Shared {
    version: u64,
    data: Data,
}

#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Mutex<Shared>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Every key and value of `namespace`, for inspection in tests.
    pub fn dump(&self, namespace: &str) -> Vec<Entry> {
        let shared = self.shared.lock().expect("memory store lock");
        shared
            .data
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, k), v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
            .collect()
    }
}

impl Store for MemoryStore {
    fn begin(&self, namespace: &str) -> Result<Box<dyn Txn>, StoreError> {
        let shared = self.shared.lock().expect("memory store lock");
        Ok(Box::new(MemoryTxn {
            store: self.shared.clone(),
            ns: namespace.to_string(),
            base_version: shared.version,
            data: shared.data.clone(),
        }))
    }

    fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let shared = self.shared.lock().expect("memory store lock");
        let set: std::collections::BTreeSet<&String> =
            shared.data.keys().map(|(ns, _)| ns).collect();
        Ok(set.into_iter().cloned().collect())
    }
}

struct MemoryTxn {
    store: Arc<Mutex<Shared>>,
    ns: String,
    base_version: u64,
    data: Data,
}

impl MemoryTxn {
    fn k(&self, key: &str) -> (String, Vec<u8>) {
        (self.ns.clone(), key.as_bytes().to_vec())
    }
}

impl Txn for MemoryTxn {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.data.get(&self.k(key)).cloned())
    }
    fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let k = self.k(key);
        self.data.insert(k, value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        let k = self.k(key);
        self.data.remove(&k);
        Ok(())
    }
    fn scan(
        &mut self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        let lower = match start_after {
            Some(a) if a >= prefix => Bound::Excluded(self.k(a)),
            _ => Bound::Included(self.k(prefix)),
        };
        Ok(self
            .data
            .range((lower, Bound::Unbounded))
            .take_while(|((ns, k), _)| *ns == self.ns && k.starts_with(prefix.as_bytes()))
            .take(limit as usize)
            .map(|((_, k), v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
            .collect())
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let mut shared = self.store.lock().expect("memory store lock");
        if shared.version != self.base_version {
            return Err(StoreError::Conflict);
        }
        shared.version += 1;
        shared.data = self.data;
        Ok(())
    }
}
