//! The CNI versions the suite knows, and comparisons between them.

/// Every released version of the CNI spec, oldest first.
pub const KNOWN: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let t = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(t)
}

/// `a >= b`; unparseable versions compare as 0.0.0.
pub fn at_least(a: &str, b: &str) -> bool {
    parse(a).unwrap_or_default() >= parse(b).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_versions() {
        assert!(at_least("1.0.0", "0.4.0"));
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert_eq!(parse("1.0"), None);
    }
}
