//! The sticky policy's config: host-local's `ranges` (parsed by the kit,
//! not copied), plus how a workload is named and how long it keeps an
//! address.

use ipam_kit::errors::invalid_config;
use ipam_kit::ranges::{self, RangesConfig};
use ipam_kit::{Attachment, Context, IpamError, args, workload};
use serde::Deserialize;

pub const DEFAULT_HOLD_SECONDS: u64 = 3600;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    #[serde(default)]
    key: Option<Vec<String>>,
    #[serde(default)]
    hold_seconds: Option<u64>,
    #[serde(default)]
    ordinal: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub ranges: RangesConfig,
    pub key: Vec<String>,
    pub hold_seconds: u64,
    pub ordinal: bool,
}

pub fn parse(ctx: &Context) -> Result<Config, IpamError> {
    let ipam: serde_json::Value = serde_json::from_str(&ctx.config)
        .map_err(|e| invalid_config(format!("invalid ipam config: {e}")))?;
    let fields: Fields = serde_json::from_value(ipam.clone())
        .map_err(|e| invalid_config(format!("invalid sticky config: {e}")))?;
    let rc = args::raw_json("runtimeConfig", ctx.runtime_config.as_deref())?;
    let key = workload::key_names(fields.key, "sticky")?;
    Ok(Config {
        ranges: ranges::parse(&ipam, rc.as_ref(), &ctx.cni_version)?,
        key,
        hold_seconds: fields.hold_seconds.unwrap_or(DEFAULT_HOLD_SECONDS),
        ordinal: fields.ordinal,
    })
}

impl Config {
    /// The workload this attachment belongs to: the `key` values and the
    /// interface, or the container id and interface when a value is absent.
    pub fn workload(&self, ctx: &Context, att: &Attachment) -> String {
        workload::workload(&self.key, ctx, att)
    }

    /// N for a pod named `<name>-<N>`, when `ordinal` is on.
    pub fn ordinal_of(&self, ctx: &Context) -> Option<u64> {
        if !self.ordinal {
            return None;
        }
        let name = args::cni_arg(ctx, "K8S_POD_NAME")?;
        let (_, n) = name.rsplit_once('-')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok()
    }
}
