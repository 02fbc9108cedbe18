//! `resolvConf`: the host reads the file, so the policy never needs a
//! filesystem, and hands the parsed DNS settings to the policy.

use std::path::Path;

use super::error::CniError;
use super::result::Dns;

/// Parses resolv.conf text the way the reference plugins do: `nameserver`,
/// `domain`, `search` and `options` lines; comments and the rest ignored.
pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_string)),
            Some("domain") => dns.domain = words.next().map(str::to_string),
            Some("search") => dns.search = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// The most of a resolv.conf file that is read: glibc reads at most 3
/// nameservers and 6 search domains, so a real one is a few hundred bytes.
const MAX_BYTES: u64 = 64 << 10;

/// Reads the file `ipam.resolvConf` names: a regular file (not a link, a
/// device or a FIFO) of at most 64 KiB, or code 7; code 5 when it cannot
/// be read.
pub fn read(path: &Path) -> Result<Dns, CniError> {
    use crate::trust::{FileError, read_regular};
    match read_regular(path, MAX_BYTES) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes))),
        Err(FileError::Refused(why)) => Err(CniError::InvalidConfig(format!(
            "ipam.resolvConf {} is refused: {why}",
            path.display()
        ))),
        Err(FileError::Io(e)) => Err(CniError::Io(format!(
            "cannot read ipam.resolvConf {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_four_kinds_of_line() {
        let dns = parse(
            "# generated\nnameserver 10.0.0.53\nnameserver fd00::53 ; second\n\
             domain cluster.local\nsearch a.svc b.svc\noptions ndots:5 edns0\nsortlist 1.2.3.4\n",
        );
        assert_eq!(dns.nameservers, ["10.0.0.53", "fd00::53"]);
        assert_eq!(dns.domain.as_deref(), Some("cluster.local"));
        assert_eq!(dns.search, ["a.svc", "b.svc"]);
        assert_eq!(dns.options, ["ndots:5", "edns0"]);
    }

    #[test]
    fn a_device_or_fifo_is_refused_at_once_naming_it() {
        let err = read(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.code(), 7);
        assert!(
            err.to_string()
                .contains("/dev/zero is refused: it is a character device"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let err = read(Path::new("/nonexistent/resolv.conf")).unwrap_err();
        assert_eq!(err.code(), 5);
        assert!(err.to_string().contains("/nonexistent/resolv.conf"));
    }
}
