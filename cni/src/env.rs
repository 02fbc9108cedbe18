//! The `CNI_*` environment: which variables each operation needs, and the
//! spec's rules for container ids, interface names and `CNI_ARGS`.

use std::ffi::OsString;

use crate::error::CniError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// A validated environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// Set for ADD, DEL and CHECK.
    pub container_id: Option<String>,
    pub ifname: Option<String>,
    pub netns: Option<String>,
    pub args: Vec<(String, String)>,
}

fn get(lookup: &dyn Fn(&str) -> Option<OsString>, name: &str) -> Result<Option<String>, CniError> {
    match lookup(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .into_string()
            .map(Some)
            .map_err(|_| CniError::InvalidEnvironment(format!("{name} is not valid UTF-8"))),
    }
}

fn required(value: Option<String>, name: &str, cmd: Command) -> Result<String, CniError> {
    value.ok_or_else(|| {
        CniError::InvalidEnvironment(format!(
            "required env variable {name} missing for {}",
            cmd.as_str()
        ))
    })
}

/// The spec's pattern for container ids (and network names):
/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The spec's interface name rules: 1 to 15 bytes, not `.` or `..`, no `/`,
/// `:` or whitespace.
pub fn ifname_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > 15 {
        Some("must be 1 to 15 characters")
    } else if s == "." || s == ".." {
        Some("must not be . or ..")
    } else if s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        Some("must not contain '/', ':' or whitespace")
    } else {
        None
    }
}

/// Splits `K=V;K=V`. An empty value is allowed; a pair without `=` is not.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    s.split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::InvalidEnvironment(format!(
                "CNI_ARGS: invalid pair {pair:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

pub fn parse_command(s: &str) -> Result<Command, CniError> {
    Ok(match s {
        "ADD" => Command::Add,
        "DEL" => Command::Del,
        "CHECK" => Command::Check,
        "VERSION" => Command::Version,
        "STATUS" => Command::Status,
        "GC" => Command::Gc,
        other => {
            return Err(CniError::InvalidEnvironment(format!(
                "unknown CNI_COMMAND {other:?}: expected ADD, DEL, CHECK, VERSION, STATUS or GC"
            )));
        }
    })
}

impl Env {
    /// Only `CNI_COMMAND`: VERSION needs nothing else, and the other checks
    /// wait until the config has been read.
    pub fn command(lookup: &dyn Fn(&str) -> Option<OsString>) -> Result<Command, CniError> {
        let cmd = get(lookup, "CNI_COMMAND")?.ok_or_else(|| {
            CniError::InvalidEnvironment("required env variable CNI_COMMAND missing".into())
        })?;
        parse_command(&cmd)
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<OsString>) -> Result<Env, CniError> {
        let command = Env::command(lookup)?;
        Env::new(
            command,
            Given {
                container_id: get(lookup, "CNI_CONTAINERID")?,
                ifname: get(lookup, "CNI_IFNAME")?,
                netns: get(lookup, "CNI_NETNS")?,
                args: get(lookup, "CNI_ARGS")?,
            },
        )
    }

    /// The environment of a call given as values (empty counts as unset),
    /// with the checks a runtime's is held to: how the operator tools that
    /// run a policy (`gc`, `simulate`) describe their calls.
    pub fn new(command: Command, given: Given) -> Result<Env, CniError> {
        let per_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let set = |v: Option<String>| v.filter(|v| !v.is_empty());
        let (container_id, ifname) = if per_attachment {
            let id = required(set(given.container_id), "CNI_CONTAINERID", command)?;
            if !valid_id(&id) {
                return Err(CniError::InvalidEnvironment(format!(
                    "CNI_CONTAINERID {id:?} is invalid: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"
                )));
            }
            let ifname = required(set(given.ifname), "CNI_IFNAME", command)?;
            if let Some(problem) = ifname_problem(&ifname) {
                return Err(CniError::InvalidEnvironment(format!(
                    "CNI_IFNAME {ifname:?} is invalid: it {problem}"
                )));
            }
            (Some(id), Some(ifname))
        } else {
            (None, None)
        };
        let netns = if matches!(command, Command::Add | Command::Check) {
            Some(required(set(given.netns), "CNI_NETNS", command)?)
        } else {
            set(given.netns)
        };
        let args = parse_cni_args(&given.args.unwrap_or_default())?;
        Ok(Env {
            command,
            container_id,
            ifname,
            netns,
            args,
        })
    }
}

/// The values of a call's environment, before [`Env::new`] checks them.
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub container_id: Option<String>,
    pub ifname: Option<String>,
    pub netns: Option<String>,
    /// `CNI_ARGS`, as text (`K=V;K2=V2`).
    pub args: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Env::from_lookup(&|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc-1.2_3"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
    ];

    fn with(
        base: &[(&'static str, &'static str)],
        key: &'static str,
        value: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = base.iter().filter(|(k, _)| *k != key).copied().collect();
        v.push((key, value));
        v
    }

    fn msg(r: Result<Env, CniError>) -> (u32, String) {
        let e = r.unwrap_err();
        (e.code(), e.to_string())
    }

    #[test]
    fn add_needs_id_netns_and_ifname() {
        assert!(env(ADD).is_ok());
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let pairs: Vec<_> = ADD.iter().filter(|(k, _)| *k != missing).copied().collect();
            let (code, m) = msg(env(&pairs));
            assert_eq!(code, 4);
            assert!(m.contains(missing), "{m}");
        }
    }

    #[test]
    fn del_needs_no_netns_and_status_gc_version_need_nothing() {
        let del: Vec<_> = with(ADD, "CNI_COMMAND", "DEL")
            .into_iter()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        assert_eq!(env(&del).unwrap().netns, None);
        for cmd in ["STATUS", "GC", "VERSION"] {
            assert!(env(&[("CNI_COMMAND", cmd)]).is_ok(), "{cmd}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (key, value) in [
            ("CNI_CONTAINERID", "-starts-with-dash"),
            ("CNI_CONTAINERID", "has/slash"),
            ("CNI_IFNAME", "sixteen-chars-xx"),
            ("CNI_IFNAME", ".."),
            ("CNI_IFNAME", "et h0"),
            ("CNI_IFNAME", "eth:0"),
            ("CNI_ARGS", "IgnoreUnknown=1;garbage"),
            ("CNI_COMMAND", "FROB"),
        ] {
            let (code, m) = msg(env(&with(ADD, key, value)));
            assert_eq!(code, 4, "{key}={value}");
            assert!(m.contains(key) || m.contains("CNI_COMMAND"), "{m}");
        }
        let (code, m) = msg(env(&[]));
        assert_eq!((code, m.contains("CNI_COMMAND")), (4, true));
    }

    #[test]
    fn cni_args_split_into_pairs() {
        let e = env(&with(
            ADD,
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web-0;EMPTY=",
        ))
        .unwrap();
        assert_eq!(
            e.args,
            [
                ("IgnoreUnknown", "1"),
                ("K8S_POD_NAME", "web-0"),
                ("EMPTY", "")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
