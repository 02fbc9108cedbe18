//! CNI errors: one enum, one code per variant, printed as the spec's error
//! object on stdout.

use serde::Serialize;

/// Every way an invocation can fail, each with its CNI error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CniError {
    #[error("{0}")]
    IncompatibleVersion(String),
    #[error("{0}")]
    UnsupportedField(String),
    #[error("{0}")]
    UnknownContainer(String),
    #[error("{0}")]
    InvalidEnvironment(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Decoding(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    TryAgain(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Degraded(String),
    /// A policy's own error (code 100 or more), or the host's internal
    /// failures (999), with optional details.
    #[error("{msg}")]
    Plugin {
        code: u32,
        msg: String,
        details: String,
    },
}

/// The generic "internal error" code of the Go library, used for a policy
/// that crashed, ran out of time or memory, or returned nonsense.
pub const INTERNAL: u32 = 999;

impl CniError {
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion(_) => 1,
            CniError::UnsupportedField(_) => 2,
            CniError::UnknownContainer(_) => 3,
            CniError::InvalidEnvironment(_) => 4,
            CniError::Io(_) => 5,
            CniError::Decoding(_) => 6,
            CniError::InvalidConfig(_) => 7,
            CniError::TryAgain(_) => 11,
            CniError::Unavailable(_) => 50,
            CniError::Degraded(_) => 51,
            CniError::Plugin { code, .. } => *code,
        }
    }

    pub fn internal(msg: impl Into<String>) -> CniError {
        CniError::Plugin {
            code: INTERNAL,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The error object, with `cniVersion` when the config's is known.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: String,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let details = match self {
            CniError::Plugin { details, .. } => details.as_str(),
            _ => "",
        };
        crate::result::to_go_json(&Out {
            cni_version,
            code: self.code(),
            msg: self.to_string(),
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_spec_table() {
        let cases = [
            (CniError::IncompatibleVersion(String::new()), 1),
            (CniError::UnsupportedField(String::new()), 2),
            (CniError::UnknownContainer(String::new()), 3),
            (CniError::InvalidEnvironment(String::new()), 4),
            (CniError::Io(String::new()), 5),
            (CniError::Decoding(String::new()), 6),
            (CniError::InvalidConfig(String::new()), 7),
            (CniError::TryAgain(String::new()), 11),
            (CniError::Unavailable(String::new()), 50),
            (CniError::Degraded(String::new()), 51),
            (CniError::internal("x"), 999),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
        }
    }

    #[test]
    fn error_json_has_version_code_and_message() {
        let json = CniError::InvalidConfig("bad \"name\"".into()).to_json("1.0.0");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cniVersion": "1.0.0", "code": 7, "msg": "bad \"name\""})
        );
    }
}
