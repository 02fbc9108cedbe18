//! The integration tests: every one drives the real `wasm-ipam` binary as a
//! runtime would, through `CNI_*` variables and stdin.

mod badinput;
mod cache;
mod common;
mod concurrency;
mod conformance;
mod containerd;
mod crash;
mod deploy;
mod dhcp;
mod dhcp_cleanup;
mod dhcp_crash;
mod dhcp_policy;
mod dhcp_serve;
mod etcd;
mod etcd_cluster;
mod etcd_tls;
mod fuzz;
mod local_users;
mod mistakes;
mod policies;
mod protocol;
mod reboot;
mod reconcile;
mod recordings;
mod reference;
mod release;
mod sandbox;
mod serve;
mod snapshots;
mod tools;
