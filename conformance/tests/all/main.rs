//! cni-conformance tested against plugins whose faults are known: it must
//! catch each fault with the rule it breaks, pass a correct plugin, and pass
//! Debian's reference plugins given their expectations files.

mod faulty;
mod interface;
mod recorder;
mod reference;
mod third_party;
