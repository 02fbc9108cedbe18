//! A policy as a third party might first write one: straight from the
//! contract's WIT with wit-bindgen, world `ipam-policy` only, so it exports
//! neither `inspect` nor `nodes`. Each attachment gets the next address of
//! 10.250.0.0/24 (from .2), recorded under `held/<id>/<ifname>`.

// Built against the contract as it was at 0.1.0, frozen in `wit/`: a
// policy built then must keep running on a host that serves a later 0.1.x.
wit_bindgen::generate!({ path: "wit", world: "ipam-policy" });

use cni::ipam::store;
use cni::ipam::types::{
    Allocation, Attachment, Availability, Context, IpConfig, IpamError, Released,
};
use exports::cni::ipam::policy::Guest;

struct Bare;

fn key(a: &Attachment) -> String {
    format!("held/{}/{}", a.container_id, a.ifname)
}

impl Guest for Bare {
    fn add(_: Context, a: Attachment) -> Result<Allocation, IpamError> {
        if store::get(&key(&a)).is_some() {
            return Err(IpamError::InvalidConfig("already added".into()));
        }
        let next = store::get("next")
            .and_then(|v| String::from_utf8(v).ok()?.parse::<u8>().ok())
            .unwrap_or(2);
        if next == 255 {
            return Err(IpamError::Exhausted("10.250.0.0/24 is full".into()));
        }
        let address = format!("10.250.0.{next}/24");
        store::put("next", (next + 1).to_string().as_bytes());
        store::put(&key(&a), address.as_bytes());
        Ok(Allocation {
            ips: vec![IpConfig {
                address,
                gateway: None,
            }],
            routes: Vec::new(),
            dns: None,
        })
    }
    fn del(_: Context, a: Attachment) -> Result<(), IpamError> {
        store::delete(&key(&a));
        Ok(())
    }
    fn check(_: Context, _: Attachment, _: Option<Allocation>) -> Result<(), IpamError> {
        Ok(())
    }
    fn gc(_: Context, _: Vec<Attachment>) -> Result<Vec<Released>, IpamError> {
        Ok(Vec::new())
    }
    fn status(_: Context) -> Result<Availability, IpamError> {
        Ok(Availability::Available)
    }
}

export!(Bare);
