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

/// Why `bytes` cannot be a component, judged from its preamble alone: the
/// magic number, then the version and layer (a component is version 0x0d,
/// layer 1; a core module version 1, layer 0). The bytes themselves are
/// never put in a message: a policy path can name any file root can read.
fn not_a_component(bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: &[u8; 4] = b"\0asm";
    if !bytes.starts_with(MAGIC) {
        return Some("the file does not start with the WebAssembly magic number");
    }
    match bytes.get(4..8) {
        Some([0x0d, 0x00, 0x01, 0x00]) => None,
        Some([0x01, 0x00, 0x00, 0x00]) => Some(
            "it is a core WebAssembly module; a policy is a component (build it for \
             wasm32-wasip2, or wrap it with `wasm-tools component new`)",
        ),
        // Another component encoding: wasmtime says what it makes of it.
        Some([_, _, 0x01, 0x00]) => None,
        _ => Some("its WebAssembly header is incomplete or of an unknown kind"),
    }
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
        let wasm = crate::trust::read_regular(path, MAX_POLICY_BYTES)
            .map_err(|e| unreadable(e.to_string()))?;
        if let Some(why) = not_a_component(&wasm) {
            return Err(CniError::InvalidConfig(format!(
                "policy {policy} is not a WebAssembly component: {why}"
            )));
        }
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

    #[test]
    fn a_file_that_is_not_a_component_is_named_without_its_bytes() {
        assert!(not_a_component(b"root:$6$secret:19000:0:99999:7:::").is_some());
        assert!(
            not_a_component(b"\0asm\x01\0\0\0")
                .unwrap()
                .contains("core")
        );
        assert!(not_a_component(b"\0asm").unwrap().contains("incomplete"));
        assert_eq!(not_a_component(b"\0asm\x0d\0\x01\0rest"), None);
        let tmp = tempfile::tempdir().unwrap();
        let shadow = tmp.path().join("shadow.wasm");
        std::fs::write(&shadow, b"root:$6$secret").unwrap();
        let err = PolicySource::resolve(shadow.to_str().unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("magic number") && !err.contains("root") && !err.contains("0x72"),
            "{err}"
        );
    }

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
