//! The values of `wit/ipam.wit` as plain Rust types, field for field: the
//! records and variants of its `types` interface, the log `level`, and the
//! records of `inspect`.
//!
//! The allocation logic works on these, not on generated bindings, so it
//! builds and is tested as ordinary Rust, with no component toolchain, and
//! could serve a policy that is bound another way. The guest SDK
//! (`ipam-kit`) converts at the component's boundary, one `From` per type
//! and direction, written out field by field: a change to the WIT that is
//! not made here fails to compile there.

/// `attachment`: one container's interface on the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// `dns`, as in a CNI result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// `context`: what the host tells a policy about a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub network: String,
    pub cni_version: String,
    /// The `ipam` object, as JSON text.
    pub config: String,
    pub cni_args: Vec<(String, String)>,
    /// The config's `args`, as JSON text.
    pub args: Option<String>,
    /// The config's `runtimeConfig`, as JSON text.
    pub runtime_config: Option<String>,
    pub netns: Option<String>,
    pub node: String,
    pub dns: Option<Dns>,
}

/// `ip-config`: one address, with its prefix, and its gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpConfig {
    pub address: String,
    pub gateway: Option<String>,
}

/// `route`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub dst: String,
    pub gw: Option<String>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u32>,
}

/// `allocation`: what ADD hands out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Option<Dns>,
}

/// `released`: one address given back by GC or `release-node`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    pub attachment: Attachment,
    pub address: String,
}

/// `availability`: STATUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Available,
    Unavailable(String),
    Degraded(String),
}

/// `policy-error`: a policy's own error, code 100 or more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

/// `ipam-error`: every way a call can fail, each a CNI code (see
/// [`crate::errors::code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpamError {
    InvalidConfig(String),
    UnsupportedField(String),
    Exhausted(String),
    TryAgain(String),
    Policy(PolicyError),
}

/// `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// `inspect.lease`: one lease as the operator tools show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    pub address: String,
    pub attachment: Attachment,
    pub since: u64,
    pub pool: Option<String>,
    pub pod: Option<String>,
    pub note: Option<String>,
}

/// `inspect.figure`: a policy's own figure about a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figure {
    pub name: String,
    pub node: Option<String>,
    pub value: u64,
}

/// `inspect.pool-usage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub name: String,
    pub capacity: u64,
    pub used: u64,
    pub free: u64,
    pub figures: Vec<Figure>,
}
