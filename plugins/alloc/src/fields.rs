//! Which `ipam` fields a policy reads, so one it does not read is named
//! rather than ignored without a word: a typo, or a field that belongs
//! elsewhere (pooled takes routes per pool, not at the top).

use serde_json::Value;

/// The fields the host reads under `ipam` (README, "Config"), which every
/// policy sees in its config and ignores.
pub const HOST_FIELDS: &[&str] = &[
    "type",
    "policy",
    "dataDir",
    "cacheDir",
    "node",
    "resolvConf",
    "limits",
    "store",
    "reclaimAfterReboot",
    "grant",
];

/// The fields of the `ipam` object `config` that neither the host nor the
/// policy (whose own fields are `known`) reads, in the object's order.
pub fn unknown(config: &Value, known: &[&str]) -> Vec<String> {
    config
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .filter(|k| !HOST_FIELDS.contains(&k.as_str()) && !known.contains(&k.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_no_one_reads() {
        let config = serde_json::json!({"type": "wasm-ipam", "dataDir": "/x", "pools": [],
                                        "routes": [], "stictAffinity": true});
        assert_eq!(
            unknown(&config, &["pools", "strictAffinity"]),
            ["routes", "stictAffinity"]
        );
    }
}
