//! CNI versions: which we speak, and which operations each allows.

use crate::error::CniError;

/// Every released version of the spec, oldest first. The crate speaks all
/// of them, and so does wasm-ipam.
pub const VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];
pub const LATEST: &str = "1.1.0";

/// A version as a comparable triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split('.').map(|p| p.parse::<u32>().ok());
        let v = Version(it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(v)
    }
}

/// `a >= b`, for version strings; an unparseable version compares as 0.0.0,
/// so it is older than every real one.
pub fn at_least(a: &str, b: &str) -> bool {
    let parse = |v: &str| Version::parse(v).unwrap_or(Version(0, 0, 0));
    parse(a) >= parse(b)
}

/// The result layouts the versions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// 0.1.0 and 0.2.0: `ip4` and `ip6` objects.
    V02,
    /// 0.3.0 to 0.4.0: `ips` with `version`.
    V04,
    /// 1.0.0 and later: `ips` without `version`.
    V1,
}

/// A version we support, checked once at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniVersion {
    pub text: String,
    pub version: Version,
}

impl CniVersion {
    pub fn parse(text: &str) -> Result<CniVersion, CniError> {
        match Version::parse(text) {
            Some(version) if VERSIONS.contains(&text) => Ok(CniVersion {
                text: text.to_string(),
                version,
            }),
            _ => Err(CniError::IncompatibleVersion(format!(
                "incompatible CNI versions: config is {text:?}, plugin supports {VERSIONS:?}"
            ))),
        }
    }

    pub fn at_least(&self, min: Version) -> bool {
        self.version >= min
    }

    pub fn result_format(&self) -> ResultFormat {
        if self.version < Version(0, 3, 0) {
            ResultFormat::V02
        } else if self.version < Version(1, 0, 0) {
            ResultFormat::V04
        } else {
            ResultFormat::V1
        }
    }

    /// Fails with code 1 unless this version has the operation.
    pub fn require(&self, op: &str, min: Version) -> Result<(), CniError> {
        if self.at_least(min) {
            Ok(())
        } else {
            Err(CniError::IncompatibleVersion(format!(
                "{op} is not supported by CNI version {}: it needs {}.{}.{} or later",
                self.text, min.0, min.1, min.2
            )))
        }
    }
}

/// The VERSION output: the config's version when we speak it, else ours.
pub fn version_json(requested: Option<&str>) -> String {
    let cni_version = requested.filter(|v| VERSIONS.contains(v)).unwrap_or(LATEST);
    serde_json::json!({"cniVersion": cni_version, "supportedVersions": VERSIONS}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_versions_only() {
        for v in VERSIONS {
            assert!(CniVersion::parse(v).is_ok(), "{v}");
        }
        for v in ["0.5.0", "2.0.0", "1.0", "", "1.0.0.0", "abc"] {
            assert_eq!(CniVersion::parse(v).unwrap_err().code(), 1, "{v}");
        }
    }

    #[test]
    fn compares_version_strings() {
        assert!(at_least("1.0.0", "0.4.0"));
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("1.0", "0.1.0"));
        assert_eq!(Version::parse("1.0"), None);
    }

    #[test]
    fn result_formats_by_version() {
        let f = |v: &str| CniVersion::parse(v).unwrap().result_format();
        assert_eq!(f("0.1.0"), ResultFormat::V02);
        assert_eq!(f("0.2.0"), ResultFormat::V02);
        assert_eq!(f("0.3.1"), ResultFormat::V04);
        assert_eq!(f("0.4.0"), ResultFormat::V04);
        assert_eq!(f("1.0.0"), ResultFormat::V1);
        assert_eq!(f("1.1.0"), ResultFormat::V1);
    }

    #[test]
    fn operations_are_gated_by_version() {
        let v = CniVersion::parse("0.3.1").unwrap();
        assert_eq!(v.require("CHECK", Version(0, 4, 0)).unwrap_err().code(), 1);
        assert!(
            CniVersion::parse("0.4.0")
                .unwrap()
                .require("CHECK", Version(0, 4, 0))
                .is_ok()
        );
    }

    #[test]
    fn version_output_lists_every_version() {
        let v: serde_json::Value = serde_json::from_str(&version_json(Some("0.4.0"))).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(
            v["supportedVersions"].as_array().unwrap().len(),
            VERSIONS.len()
        );
        let v: serde_json::Value = serde_json::from_str(&version_json(Some("9.9.9"))).unwrap();
        assert_eq!(v["cniVersion"], LATEST);
    }
}
