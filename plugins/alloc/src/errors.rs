//! Constructors for the error variants, and the policy codes the built-in
//! policies share (documented in `wit/ipam.wit`).

use crate::{IpamError, PolicyError};

/// The attachment already has an allocation (a second ADD).
pub const ALREADY_ALLOCATED: u32 = 100;
/// A requested address is taken or outside every range.
pub const ADDRESS_UNAVAILABLE: u32 = 101;
/// The attachment has no allocation, or not the one the runtime holds.
pub const NOT_ALLOCATED: u32 = 102;

pub fn invalid_config(msg: impl Into<String>) -> IpamError {
    IpamError::InvalidConfig(msg.into())
}

pub fn unsupported(msg: impl Into<String>) -> IpamError {
    IpamError::UnsupportedField(msg.into())
}

pub fn exhausted(msg: impl Into<String>) -> IpamError {
    IpamError::Exhausted(msg.into())
}

pub fn policy(code: u32, msg: impl Into<String>) -> IpamError {
    IpamError::Policy(PolicyError {
        code,
        msg: msg.into(),
        details: String::new(),
    })
}

/// Prefixes an error's message, keeping its kind and code.
pub fn context(err: IpamError, prefix: &str) -> IpamError {
    let wrap = |m: String| format!("{prefix}: {m}");
    match err {
        IpamError::InvalidConfig(m) => IpamError::InvalidConfig(wrap(m)),
        IpamError::UnsupportedField(m) => IpamError::UnsupportedField(wrap(m)),
        IpamError::Exhausted(m) => IpamError::Exhausted(wrap(m)),
        IpamError::TryAgain(m) => IpamError::TryAgain(wrap(m)),
        IpamError::Policy(p) => IpamError::Policy(PolicyError {
            msg: wrap(p.msg),
            ..p
        }),
    }
}

/// The message an error carries, whatever its kind.
pub fn message(err: &IpamError) -> &str {
    match err {
        IpamError::InvalidConfig(m)
        | IpamError::UnsupportedField(m)
        | IpamError::Exhausted(m)
        | IpamError::TryAgain(m) => m,
        IpamError::Policy(p) => &p.msg,
    }
}

/// The CNI error code the host reports for an error.
pub fn code(err: &IpamError) -> u32 {
    match err {
        IpamError::InvalidConfig(_) => 7,
        IpamError::UnsupportedField(_) => 2,
        IpamError::Exhausted(_) | IpamError::TryAgain(_) => 11,
        IpamError::Policy(p) => p.code,
    }
}
