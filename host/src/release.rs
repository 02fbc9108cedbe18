//! A DEL releases what the store knows, whatever the config it is given.
//!
//! Runtimes do not always send DEL the config the ADD got: Multus sends an
//! empty `ipam` when it has lost its cached config (multus#755, #1449), and
//! operators edit configs while pods run. A DEL that failed on such a
//! config left the address held until someone noticed "no IP addresses
//! available", and the reference host-local does the same. So when a DEL's
//! `ipam` turns out unusable, code 7 from the host's parse, the policy's
//! load or the policy itself, the host runs the DEL again with the policy
//! and config it recorded at the network's last ADD ([`NetworkRecord`]), in
//! the store the config still points at (the default data dir when it
//! names none), and says so on stderr. With no record, the store holds
//! nothing of the network, and the DEL succeeds with nothing to do.
//!
//! It still fails for stdin that is not a JSON object with a valid network
//! name (codes 6 and 7), and for a store it cannot read.

use std::ffi::OsString;
use std::path::Path;

use crate::cni::CniError;
use crate::cni::config::{Location, NetConf, StoreConf};
use crate::netrecord::NetworkRecord;
use crate::runner;
use crate::store::DB_FILE;

/// Whether the store is an embedded one that was never made: it holds
/// nothing, so a DEL has nothing to release, and opening it would create
/// it.
pub fn nothing_stored(store: &StoreConf, data_dir: &Path) -> bool {
    *store == StoreConf::Embedded && !data_dir.join(DB_FILE).exists()
}

/// The config to run the DEL of `stdin` with, `cause` being why the config
/// given could not serve: the one recorded at the network's last ADD, or
/// `None` when the store holds nothing of the network (nothing to release).
/// The caller, `invoke`, runs the DEL.
pub fn recorded_conf(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    stdin: &[u8],
    cause: &CniError,
) -> Result<Option<NetConf>, CniError> {
    let at = Location::read(stdin)?;
    let attachment = format!(
        "{}/{}",
        lookup("CNI_CONTAINERID")
            .unwrap_or_default()
            .to_string_lossy(),
        lookup("CNI_IFNAME").unwrap_or_default().to_string_lossy()
    );
    let record = if nothing_stored(&at.store, &at.data_dir) {
        None
    } else {
        let store = runner::open_store_at(&at.store, &at.data_dir)?;
        let mut txn = store.begin(&at.name)?;
        NetworkRecord::read(&mut *txn)?
    };
    let Some(record) = record else {
        log::warn!(
            "DEL of {attachment} in network {}: the ipam config is unusable ({}), and the store in {} holds nothing of the network: nothing to release",
            at.name,
            cause,
            at.data_dir.display()
        );
        return Ok(None);
    };
    log::warn!(
        "DEL of {attachment} in network {}: the ipam config is unusable ({}); releasing with policy {} and the config recorded at ADD",
        at.name,
        cause,
        record.policy
    );
    let mut conf = record.netconf(&at.name, &at.data_dir, Default::default());
    // The recorded ipam names the policy already (or means the default,
    // as it did at ADD); only the node-local fields were left out of it.
    if let Some(ipam) = conf["ipam"].as_object_mut() {
        ipam.extend(at.local);
    }
    NetConf::parse(conf.to_string().as_bytes()).map(Some)
}
