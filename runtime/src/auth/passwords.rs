//! The secret policy beyond length: the most common passwords are refused
//! when the model asks for it.

use crate::validation::Validator;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Passwords found in breaches, one a line, lower case: the 10,000 most common
/// of SecLists (`Passwords/Common-Credentials/10k-most-common.txt`), the
/// 10,000 of Wikipedia's list of most common passwords and the NCSC's top
/// 100, deduplicated (12,430 in all). Shipped with the crate: a policy that
/// needs no network nor a strength estimator whose scoring would change what
/// users may choose beyond "not a known password".
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// The list, read once.
fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    // A copied runtime's list starts with a `#` note (see svcgen's runtime copy).
    SET.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Whether `secret` is one of the common passwords, whatever its case.
pub fn is_common(secret: &str) -> bool {
    common_passwords().contains(secret.to_lowercase().as_str())
}

/// Records an error on `field` when `value` is one of the most common passwords.
pub fn check_common(v: &mut Validator, field: &str, value: Option<&str>) {
    if value.is_some_and(is_common) {
        v.error(field, "is one of the most common passwords; choose another");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        assert!(common_passwords().len() >= 10_000);
        assert!(is_common("password"));
        // Passed the hand-written list of 100 (issue 17).
        for weak in ["zaq12wsx", "11223344", "qwerty12345", "Trustno1"] {
            assert!(is_common(weak), "{weak}");
        }
        assert!(is_common("PassWord"));
        assert!(!is_common("correct horse battery staple"));
        let mut v = Validator::default();
        check_common(&mut v, "password", Some("Qwerty123"));
        check_common(&mut v, "password", None);
        assert!(v.finish().is_err());
    }

    #[test]
    fn the_list_is_lower_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in COMMON_PASSWORDS.lines() {
            assert_eq!(p, p.to_lowercase());
            assert!(!p.is_empty() && p.trim() == p, "{p:?}");
            assert!(seen.insert(p), "{p} twice");
        }
    }
}
