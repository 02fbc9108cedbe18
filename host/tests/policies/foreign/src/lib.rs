//! A policy that asks for more than the contract: a `dial` import. It
//! must be refused before it runs, by `wasm-ipam compile` and at load.

wit_bindgen::generate!({ path: "wit", world: "foreign", generate_all });

use cni::ipam::types::{Allocation, Attachment, Availability, Context, IpamError, Released};
use exports::cni::ipam::policy::Guest;

struct Foreign;

impl Guest for Foreign {
    fn add(ctx: Context, _: Attachment) -> Result<Allocation, IpamError> {
        // Used, so the import is kept in the component.
        test::foreign::dial::connect(&ctx.network);
        Err(IpamError::TryAgain("unreachable".into()))
    }
    fn del(_: Context, _: Attachment) -> Result<(), IpamError> {
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

export!(Foreign);
