//! The dhcp policy's config: the reference dhcp plugin's fields, read the
//! way it reads them, and ours.
//!
//! - `daemonSocketPath`: the reference's daemon socket. There is no daemon
//!   here (the host makes the exchange), so it is ignored, with a log line.
//! - `provide`: options to send, `[{"option": "host-name", "value": "x"}]`
//!   or `{"option": "12", "fromArg": "K8S_POD_NAME"}`. `fromArg` names a
//!   runtime argument, read from `args.cni` first and then from
//!   `CNI_ARGS` (CONVENTIONS.md: a plugin that understands `args` prefers
//!   it); when it is absent, `value` stands.
//! - `request`: options to ask for, `[{"option": "routers"}]`; the default
//!   request (subnet mask, routers, DNS servers, domain) is kept unless an
//!   entry says `"skipDefault": true`, as in the reference.
//! - `key`: the `CNI_ARGS` names a workload is known by, as for sticky
//!   (default the pod's namespace and name): its client id stays the same
//!   across re-creations.
//! - `dhcpTimeoutMs`: how long an exchange may take, 1 to 60000 ms
//!   (default 10000, the reference daemon's `-timeout`).
//! - `release`: which leases DEL gives back to the server. `"unnamed"` (the
//!   default): those of attachments without workload names, whose client
//!   id never comes back; a named workload's lease is left to lapse, still
//!   bound to its client id, so that the re-created pod gets it back (a
//!   server such as dnsmasq forgets a released client). `"always"`: every
//!   one, as the reference does.
//!
//! An option is a name the reference knows or a number from 1 to 254.

use ipam_kit::errors::invalid_config;
use ipam_kit::{Context, IpamError, args, workload};
use serde::Deserialize;
use serde_json::Value;

/// Option names, as the reference maps them (dhcp-options(5) names).
const NAMES: [(&str, u8); 6] = [
    ("subnet-mask", 1),
    ("routers", 3),
    ("host-name", 12),
    ("vendor-class-identifier", 60),
    ("dhcp-client-identifier", 61),
    ("user-class", 77),
];

/// What the policy asks for unless `skipDefault`: the reference's subnet
/// mask and routers, and the DNS servers and domain, which the result
/// carries as `dns`.
pub const DEFAULT_REQUEST: [u8; 4] = [1, 3, 6, 15];
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// A DHCP option's value is at most 255 bytes.
pub const MAX_OPTION: usize = 255;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    #[serde(default)]
    daemon_socket_path: Option<String>,
    #[serde(default)]
    provide: Vec<ProvideField>,
    #[serde(default)]
    request: Vec<RequestField>,
    #[serde(default)]
    key: Option<Vec<String>>,
    #[serde(default)]
    dhcp_timeout_ms: Option<Value>,
    #[serde(default)]
    release: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProvideField {
    option: Value,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    from_arg: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestField {
    #[serde(default)]
    option: Option<Value>,
    #[serde(default)]
    skip_default: bool,
}

/// One `provide` entry, its option parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provide {
    pub code: u8,
    pub value: Option<String>,
    pub from_arg: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub provide: Vec<Provide>,
    /// The parameter request list, in order, without repeats.
    pub request: Vec<u8>,
    pub key: Vec<String>,
    pub timeout_ms: u32,
    /// The reference's daemon socket, which is ignored.
    pub daemon_socket_path: Option<String>,
    /// `release: "always"`: every DEL releases its lease at the server.
    pub release_always: bool,
}

/// An option: a name from [`NAMES`], or a number from 1 to 254 (as text,
/// as the reference takes it, or as a JSON number).
fn option_code(v: &Value, field: &str) -> Result<u8, IpamError> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    if let Some((_, code)) = NAMES.iter().find(|(name, _)| *name == text) {
        return Ok(*code);
    }
    match text.parse::<u8>() {
        Ok(code @ 1..=254) => Ok(code),
        _ => Err(invalid_config(format!(
            "dhcp: {field} {v} is not a DHCP option: give a number from 1 to 254 or one of {}",
            NAMES.map(|(n, _)| n).join(", ")
        ))),
    }
}

pub fn parse(ctx: &Context) -> Result<Config, IpamError> {
    let ipam: Value = serde_json::from_str(&ctx.config)
        .map_err(|e| invalid_config(format!("invalid ipam config: {e}")))?;
    let fields: Fields = serde_json::from_value(ipam)
        .map_err(|e| invalid_config(format!("invalid dhcp config: {e}")))?;
    let mut provide = Vec::new();
    for (i, p) in fields.provide.iter().enumerate() {
        let code = option_code(&p.option, &format!("ipam.provide[{i}].option"))?;
        if let Some(v) = &p.value
            && v.len() > MAX_OPTION
        {
            return Err(invalid_config(format!(
                "dhcp: ipam.provide[{i}].value is {} bytes; a DHCP option holds at most {MAX_OPTION}",
                v.len()
            )));
        }
        provide.push(Provide {
            code,
            value: p.value.clone(),
            from_arg: p.from_arg.clone().filter(|a| !a.is_empty()),
        });
    }
    let mut request = Vec::new();
    let mut skip_default = false;
    for (i, r) in fields.request.iter().enumerate() {
        skip_default |= r.skip_default;
        if let Some(option) = &r.option {
            let code = option_code(option, &format!("ipam.request[{i}].option"))?;
            if !request.contains(&code) {
                request.push(code);
            }
        }
    }
    if !skip_default {
        for code in DEFAULT_REQUEST {
            if !request.contains(&code) {
                request.push(code);
            }
        }
    }
    let timeout_ms = match &fields.dhcp_timeout_ms {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_MS,
        Some(v) => match v.as_u64() {
            Some(ms @ 1..=60_000) => ms as u32,
            _ => {
                return Err(invalid_config(format!(
                    "dhcp: ipam.dhcpTimeoutMs must be a whole number from 1 to 60000, not {v}"
                )));
            }
        },
    };
    let release_always = match &fields.release {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "unnamed" => false,
        Some(Value::String(s)) if s == "always" => true,
        Some(other) => {
            return Err(invalid_config(format!(
                "dhcp: ipam.release must be \"unnamed\" or \"always\", not {other}"
            )));
        }
    };
    Ok(Config {
        provide,
        request,
        key: workload::key_names(fields.key, "dhcp")?,
        timeout_ms,
        daemon_socket_path: fields.daemon_socket_path,
        release_always,
    })
}

impl Config {
    /// The `CNI_ARGS` names this config reads: its `key` and every
    /// `fromArg`, which are therefore not unknown arguments.
    pub fn arg_names(&self) -> Vec<&str> {
        self.key
            .iter()
            .map(String::as_str)
            .chain(self.provide.iter().filter_map(|p| p.from_arg.as_deref()))
            .collect()
    }

    /// The options to send for this call, code and value: each entry's
    /// runtime argument when the runtime gave one (`args.cni` before
    /// `CNI_ARGS`), else its `value`; an entry with neither is left out,
    /// and a later entry for the same option wins.
    pub fn provided(&self, ctx: &Context) -> Result<Vec<(u8, Vec<u8>)>, IpamError> {
        let args = args::raw_json("args", ctx.args.as_deref())?;
        let from_args = |name: &str| {
            args.as_ref()?
                .get("cni")?
                .get(name)?
                .as_str()
                .map(str::to_string)
        };
        let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
        for (i, p) in self.provide.iter().enumerate() {
            let from_runtime = p.from_arg.as_deref().and_then(|name| {
                from_args(name).or_else(|| args::cni_arg(ctx, name).map(str::to_string))
            });
            let Some(value) = from_runtime.or_else(|| p.value.clone()) else {
                continue;
            };
            if value.len() > MAX_OPTION {
                return Err(invalid_config(format!(
                    "dhcp: ipam.provide[{i}] takes {} bytes from {}; a DHCP option holds at most {MAX_OPTION}",
                    value.len(),
                    p.from_arg.as_deref().unwrap_or("value")
                )));
            }
            out.retain(|(code, _)| *code != p.code);
            out.push((p.code, value.into_bytes()));
        }
        Ok(out)
    }
}
