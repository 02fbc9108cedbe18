//! The pause image, built here since no registry is reachable: an OCI
//! image layout holding one uncompressed layer with Debian's static
//! busybox, whose entrypoint sleeps, as the real pause does nothing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::json;
use sha2::{Digest, Sha256};

/// The image's name, as containerd's `sandbox_image` names it.
pub const NAME: &str = "wasm-ipam.test/pause:1";

/// The OCI archive, built once per test run.
pub fn archive() -> &'static Path {
    static ARCHIVE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &ARCHIVE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("pause.tar");
            build(&path);
            (dir, path)
        })
        .1
}

/// A blob and its descriptor fields.
struct Blob {
    digest: String,
    bytes: Vec<u8>,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        Blob {
            digest: format!("sha256:{:x}", Sha256::digest(&bytes)),
            bytes,
        }
    }
}

fn layer() -> Vec<u8> {
    let busybox = std::fs::read("/usr/bin/busybox").unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_cksum();
    tar.append_data(&mut dir, "bin/", std::io::empty()).unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o755);
    file.set_size(busybox.len() as u64);
    file.set_cksum();
    tar.append_data(&mut file, "bin/busybox", busybox.as_slice())
        .unwrap();
    tar.into_inner().unwrap()
}

fn build(path: &Path) {
    let layer = Blob::new(layer());
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/bin/busybox", "sleep", "2147483647"]},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]}
        }))
        .unwrap(),
    );
    let manifest = Blob::new(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config.digest,
                "size": config.bytes.len()
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer.digest,
                "size": layer.bytes.len()
            }]
        }))
        .unwrap(),
    );
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.digest,
            "size": manifest.bytes.len(),
            "annotations": {
                "io.containerd.image.name": NAME,
                "org.opencontainers.image.ref.name": "1"
            }
        }]
    }))
    .unwrap();
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_cksum();
        tar.append_data(&mut h, name, bytes).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for blob in [&layer, &config, &manifest] {
        let name = format!("blobs/sha256/{}", &blob.digest["sha256:".len()..]);
        add(&name, &blob.bytes);
    }
    tar.finish().unwrap();
}
