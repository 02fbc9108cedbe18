//! Where a policy's component comes from: a built-in embedded in this binary,
//! or a `.wasm` file named in the config.

use std::path::{Path, PathBuf};

use crate::cni::CniError;

/// A built-in policy, embedded at build time with its hash precomputed so a
/// warm start does not hash it.
pub struct Builtin {
    pub name: &'static str,
    pub wasm: &'static [u8],
    pub hash: [u8; 32],
    /// Its artifact, compiled by `build.rs` with the host's settings for the
    /// target's baseline CPU; `None` when the build could not compile for
    /// the target.
    pub precompiled: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// Policy files larger than this are refused rather than read.
const MAX_POLICY_BYTES: u64 = 64 << 20;

pub enum PolicySource {
    Builtin(&'static Builtin),
    File {
        path: PathBuf,
        wasm: Vec<u8>,
        hash: [u8; 32],
    },
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

impl PolicySource {
    /// A built-in name, or a path (anything with a `/` or ending `.wasm`).
    pub fn resolve(policy: &str) -> Result<PolicySource, CniError> {
        if let Some(b) = BUILTINS.iter().find(|b| b.name == policy) {
            return Ok(PolicySource::Builtin(b));
        }
        if !policy.contains('/') && !policy.ends_with(".wasm") {
            return Err(CniError::InvalidConfig(format!(
                "unknown policy {policy:?}: the built-in policies are {}; a policy file is given by its path",
                builtin_names().join(", ")
            )));
        }
        let path = Path::new(policy);
        let unreadable =
            |why: String| CniError::InvalidConfig(format!("cannot read policy {policy}: {why}"));
        let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
        if meta.is_dir() {
            return Err(unreadable("it is a directory".into()));
        }
        if meta.len() > MAX_POLICY_BYTES {
            return Err(unreadable(format!(
                "it is larger than {MAX_POLICY_BYTES} bytes"
            )));
        }
        let wasm = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let hash = *blake3::hash(&wasm).as_bytes();
        Ok(PolicySource::File {
            path: path.to_path_buf(),
            wasm,
            hash,
        })
    }

    pub fn name(&self) -> String {
        match self {
            PolicySource::Builtin(b) => b.name.to_string(),
            PolicySource::File { path, .. } => path.display().to_string(),
        }
    }

    pub fn wasm(&self) -> &[u8] {
        match self {
            PolicySource::Builtin(b) => b.wasm,
            PolicySource::File { wasm, .. } => wasm,
        }
    }

    /// The artifact compiled at build time, for a built-in policy.
    pub fn precompiled(&self) -> Option<&'static [u8]> {
        match self {
            PolicySource::Builtin(b) => b.precompiled,
            PolicySource::File { .. } => None,
        }
    }

    pub fn hash(&self) -> &[u8; 32] {
        match self {
            PolicySource::Builtin(b) => &b.hash,
            PolicySource::File { hash, .. } => hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `build.rs` compiles with its own wasmtime (the compiler alone): its
    /// artifacts must be exactly what the host's settings give for the
    /// target's baseline CPU, or the host would refuse them and compile.
    #[test]
    fn the_built_in_artifacts_are_the_host_settings_for_the_baseline_cpu() {
        let mut config = super::super::settings::compiler_config();
        config.target(env!("BUILTINS_PRECOMPILED_FOR")).unwrap();
        let engine = wasmtime::Engine::new(&config).unwrap();
        for b in BUILTINS {
            let ours = engine.precompile_component(b.wasm).unwrap();
            let embedded = b.precompiled.expect("this target is precompiled");
            assert!(embedded == ours.as_slice(), "{} differs", b.name);
        }
    }
}
