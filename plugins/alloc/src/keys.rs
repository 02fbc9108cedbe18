//! Store keys built from what the runtime sends. A container id has no
//! bound in the spec (the kernel lets an environment variable be 128 KiB),
//! but a store key has one (512 bytes, `wit/ipam.wit`), so a DEL of a
//! container with a long id would fail for ever if the id went into a key
//! as it is. [`part`] keeps a short text as it is, which keeps the keys of
//! every real runtime's ids readable and unchanged, and replaces a long
//! one with its hash. Container ids never contain `~`, so a hashed part
//! cannot be mistaken for an id; values keep the whole id.

use std::borrow::Cow;

/// Texts up to this many bytes stay as they are in keys: runtimes' ids are
/// 64 hex digits, Kubernetes names at most 253 bytes.
pub const LONGEST_PLAIN: usize = 256;

/// `text` as one part of a store key: itself, or `~` and its BLAKE3 hash
/// in hex when it is longer than [`LONGEST_PLAIN`].
pub fn part(text: &str) -> Cow<'_, str> {
    if text.len() <= LONGEST_PLAIN {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("~{}", blake3::hash(text.as_bytes()).to_hex()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_part_stays_and_a_long_one_is_its_hash() {
        assert_eq!(part("c1"), "c1");
        let long = "a".repeat(100_000);
        let hashed = part(&long);
        assert_eq!(hashed.len(), 65);
        assert!(hashed.starts_with('~'));
        assert_eq!(hashed, part(&long), "stable");
        assert_ne!(hashed, part(&"a".repeat(100_001)));
        assert_eq!(part(&"b".repeat(LONGEST_PLAIN)).len(), LONGEST_PLAIN);
    }
}
