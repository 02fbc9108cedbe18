//! Builds the built-in policies (`plugins/*`) as wasm32-wasip2 components and
//! embeds them, so `policy: "host-local"` works with nothing to install.
//!
//! The policies are built by a nested cargo, in their own target directory so
//! it never contends for the outer build's lock. A toolchain file does not
//! install a missing target on a toolchain rustup already has, so this script
//! adds `wasm32-wasip2` itself when it is missing: `cargo build` then works on
//! a fresh machine with only rustup and cargo.
//!
//! Each built-in policy is also compiled here, ahead of time, with the same
//! engine settings the host uses (`src/sandbox/settings.rs`, included
//! below), and the artifact is embedded beside the component. A node's
//! first call then writes that artifact into its cache instead of running
//! Cranelift: the compile was 250 to 370 ms of a cold call on two cores
//! (BENCHMARKS.md). The artifact is built for the target's baseline CPU,
//! with no feature detected on the build machine, so the binary runs on any
//! machine of its architecture; wasmtime checks it again when it maps it.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/sandbox/settings.rs"]
mod settings;

const TARGET: &str = "wasm32-wasip2";
/// (policy name, cargo package, library file stem)
const BUILTINS: &[(&str, &str, &str)] = &[
    ("host-local", "policy-host-local", "policy_host_local"),
    ("pooled", "policy-pooled", "policy_pooled"),
    ("sticky", "policy-sticky", "policy_sticky"),
    ("dhcp", "policy-dhcp", "policy_dhcp"),
];
/// Policies built for the host's tests only (the template is built here so
/// CI proves it works as a component); their directory is passed to the
/// tests as `WASM_IPAM_TEST_POLICIES`.
const TEST_POLICIES: &[&str] = &[
    "policy-misbehave",
    "policy-template",
    "policy-foreign",
    "policy-bare",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    for watched in [
        "plugins",
        // The policies read CNI versions with the protocol crate.
        "cni",
        "wit",
        "host/tests/policies",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    link_without_pie();

    ensure_target();
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-policies");
    build_policies(&root, &target_dir);
    println!(
        "cargo:rustc-env=WASM_IPAM_TEST_POLICIES={}",
        target_dir.join(TARGET).join("policy").display()
    );

    let compiler = precompiler();
    let mut src = String::from("pub static BUILTINS: &[Builtin] = &[\n");
    for (name, _, stem) in BUILTINS {
        let built = target_dir
            .join(TARGET)
            .join("policy")
            .join(format!("{stem}.wasm"));
        let bytes = fs::read(&built).unwrap_or_else(|e| panic!("reading {}: {e}", built.display()));
        let embedded = out_dir.join(format!("{name}.wasm"));
        fs::write(&embedded, &bytes).unwrap();
        let hash = blake3::hash(&bytes);
        let precompiled = match &compiler {
            Some(engine) => {
                let artifact = engine
                    .precompile_component(&bytes)
                    .unwrap_or_else(|e| panic!("precompiling the built-in policy {name}: {e:#}"));
                let path = out_dir.join(format!("{name}.cwasm"));
                fs::write(&path, artifact).unwrap();
                format!("Some(include_bytes!({:?}))", path.display().to_string())
            }
            None => "None".to_string(),
        };
        writeln!(
            src,
            "    Builtin {{ name: {name:?}, wasm: include_bytes!({:?}), hash: {:?}, precompiled: {precompiled} }},",
            embedded.display().to_string(),
            hash.as_bytes()
        )
        .unwrap();
    }
    src.push_str("];\n");
    fs::write(out_dir.join("builtins.rs"), src).unwrap();
}

/// The engine that precompiles the built-in policies for the target being
/// built, or `None` when this wasmtime cannot compile for it (a cross build
/// to an architecture Cranelift was not built with): the first call on a
/// node then compiles, as it does for a policy file.
fn precompiler() -> Option<wasmtime::Engine> {
    let target = env::var("TARGET").unwrap();
    // For the test that checks the embedded artifacts.
    println!("cargo:rustc-env=BUILTINS_PRECOMPILED_FOR={target}");
    let mut config = settings::compiler_config();
    // An explicit target turns off the detection of the build machine's
    // CPU features: the artifact uses only the architecture's baseline.
    let engine = config
        .target(&target)
        .and_then(|config| wasmtime::Engine::new(config));
    match engine {
        Ok(engine) => Some(engine),
        Err(e) => {
            println!(
                "cargo:warning=the built-in policies are not precompiled for {target} ({e}); each node compiles them on its first call"
            );
            None
        }
    }
}

fn rustc_sysroot() -> PathBuf {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc --print sysroot");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn ensure_target() {
    let sysroot = rustc_sysroot();
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return;
    }
    println!("cargo:warning=installing the rustup target {TARGET} for the built-in policies");
    let toolchain = sysroot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let toolchain = toolchain.split('-').next().unwrap_or_default().to_string();
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if !toolchain.is_empty() {
        cmd.args(["--toolchain", &toolchain]);
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("the {TARGET} target is missing and rustup could not run ({e}); install it with `rustup target add {TARGET}`")
    });
    assert!(
        status.success(),
        "`rustup target add {TARGET}` failed; install the target by hand"
    );
}

fn build_policies(root: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--target",
            TARGET,
            "--profile",
            "policy",
            "--target-dir",
        ])
        .arg(target_dir)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    for package in BUILTINS
        .iter()
        .map(|b| b.1)
        .chain(TEST_POLICIES.iter().copied())
    {
        cmd.args(["-p", package]);
    }
    // The outer build's settings (its target, flags, a clippy wrapper) are
    // not for the policies. The jobserver (CARGO_MAKEFLAGS) is kept so the
    // nested build shares the outer one's job slots.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let inherited =
            key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS";
        if inherited || key.starts_with("RUSTC_") || key == "RUSTFLAGS" || key == "RUSTDOCFLAGS" {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .expect("running cargo for the built-in policies");
    assert!(status.success(), "building the built-in policies failed");
}

/// Every CNI call is a new process, and a position-independent `wasm-ipam`
/// spends half a millisecond of each in the dynamic loader: wasmtime,
/// SQLite and the etcd client leave about 51,000 relative relocations, and
/// applying them copies some 200 pages of data. A fixed-address executable
/// has none (VERSION: 1.44 -> 0.95 ms; BENCHMARKS.md). It is what Debian
/// ships for the reference plugins too; libraries, the stack, the heap and
/// the policies' compiled code stay randomised. Only the plugin binary is
/// linked so: tests and tools keep the default.
fn link_without_pie() {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=wasm-ipam=-no-pie");
    }
}
