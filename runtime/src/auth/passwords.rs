//! The secret policy beyond length: the most common passwords are refused
//! when the model asks for it.

use crate::validation::Validator;

/// The 100 most common passwords (NCSC's list of breached passwords, SecLists).
pub const COMMON_PASSWORDS: &[&str] = &[
    "123456",
    "123456789",
    "qwerty",
    "password",
    "12345678",
    "111111",
    "123123",
    "1234567890",
    "1234567",
    "qwerty123",
    "000000",
    "1q2w3e",
    "aa12345678",
    "abc123",
    "password1",
    "1234",
    "qwertyuiop",
    "123321",
    "password123",
    "1q2w3e4r5t",
    "iloveyou",
    "654321",
    "666666",
    "987654321",
    "123",
    "123456a",
    "qwe123",
    "1q2w3e4r",
    "7777777",
    "1qaz2wsx",
    "123qwe",
    "zxcvbnm",
    "121212",
    "asdasd",
    "a123456",
    "555555",
    "dragon",
    "112233",
    "123123123",
    "monkey",
    "11111111",
    "qazwsx",
    "159753",
    "asdfghjkl",
    "222222",
    "1234qwer",
    "qwerty1",
    "123654",
    "123abc",
    "asdfgh",
    "777777",
    "aaaaaa",
    "myspace1",
    "88888888",
    "fuckyou",
    "123456789a",
    "999999",
    "888888",
    "football",
    "princess",
    "789456123",
    "147258369",
    "1111111",
    "sunshine",
    "michael",
    "computer",
    "qwer1234",
    "daniel",
    "789456",
    "11111",
    "abcd1234",
    "q1w2e3r4",
    "shadow",
    "159357",
    "123456q",
    "1111",
    "samsung",
    "killer",
    "asd123",
    "superman",
    "master",
    "12345",
    "azerty",
    "zxcvbn",
    "qazwsxedc",
    "131313",
    "ashley",
    "target123",
    "987654",
    "baseball",
    "qwertyui",
    "welcome",
    "passw0rd",
    "charlie",
    "letmein",
    "trustno1",
    "hello123",
    "whatever",
    "jordan23",
    "1qaz2wsx3edc",
];

/// Whether `secret` is one of [`COMMON_PASSWORDS`], whatever its case.
pub fn is_common(secret: &str) -> bool {
    COMMON_PASSWORDS.contains(&secret.to_lowercase().as_str())
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
        assert_eq!(COMMON_PASSWORDS.len(), 100);
        assert!(is_common("password"));
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
        for p in COMMON_PASSWORDS {
            assert_eq!(*p, p.to_lowercase());
            assert!(seen.insert(p), "{p} twice");
        }
    }
}
