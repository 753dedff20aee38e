//! Checks the model's rules on request values and collects every failure.

use crate::error::{ApiError, FieldError};
use serde::{Deserialize, Deserializer};

/// A PATCH field: left out, set to null, or set to a value.
#[derive(Debug, Default)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    /// The client did not name the field.
    pub fn is_absent(&self) -> bool {
        matches!(self, Patch::Absent)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            Some(v) => Patch::Value(v),
            None => Patch::Null,
        })
    }
}

impl<T> crate::config::Given for Patch<T> {
    fn given(&self) -> bool {
        matches!(self, Patch::Value(_))
    }
}

/// `Debug` for a request body that carries secrets: the `fields` as derived,
/// then the `secrets` as [`crate::config::redacted`] shows them (`Some("***")`
/// when given), so that a body logged with `{:?}` (in a hook, say) leaks no
/// password, code or token.
#[macro_export]
macro_rules! debug_redacted {
    ($ty:ident { $($field:ident),* $(,)? } secrets { $($secret:ident),+ $(,)? }) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(stringify!($secret), &$crate::config::redacted(&self.$secret)))+
                    .finish()
            }
        }
    };
}

/// The shape a text field's value must have (the model's `format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    Any,
    Email,
    /// An absolute http(s) URL, or one of the service's own download paths
    /// (placeholders in braces): an uploaded file's public path lands there.
    Url {
        local_paths: &'static [&'static str],
    },
}

/// The rules of a text field.
pub struct TextRule {
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub format: TextFormat,
    pub allowed: &'static [&'static str],
}

/// Collects field errors; `finish` turns them into one 400 answer.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }
    /// A field a create route must receive.
    pub fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.error(field, "is required");
        }
        value
    }
    /// A PATCH of a field that cannot be empty: null is refused.
    /// `None` means "leave unchanged".
    pub fn patch_required<T>(&mut self, field: &str, value: Patch<T>) -> Option<T> {
        match value {
            Patch::Absent => None,
            Patch::Null => {
                self.error(field, "cannot be null");
                None
            }
            Patch::Value(v) => Some(v),
        }
    }
    /// A PATCH of a nullable field: `Some(None)` sets it to null.
    pub fn patch_nullable<T>(&mut self, value: Patch<T>) -> Option<Option<T>> {
        match value {
            Patch::Absent => None,
            Patch::Null => Some(None),
            Patch::Value(v) => Some(Some(v)),
        }
    }
    pub fn text(&mut self, field: &str, value: Option<&str>, rule: &TextRule) {
        let Some(value) = value else { return };
        let len = value.chars().count();
        if let Some(min) = rule.min_length {
            if len < min {
                self.error(field, format!("must be at least {min} characters long"));
            }
        }
        if let Some(max) = rule.max_length {
            if len > max {
                self.error(field, format!("must be at most {max} characters long"));
            }
        }
        match rule.format {
            TextFormat::Email if !is_email(value) => {
                self.error(field, "must be an email address")
            }
            TextFormat::Url { local_paths } if !is_url(value, local_paths) => {
                self.error(
                    field,
                    "must be an absolute http(s) URL without credentials, in RFC 3986 characters only (no ', others percent-encoded, non-ASCII hosts in punycode), or one of this service's download paths",
                )
            }
            _ => {}
        }
        if !rule.allowed.is_empty() && !rule.allowed.contains(&value) {
            self.error(field, format!("must be one of {}", rule.allowed.join(", ")));
        }
    }
    /// An Object field must hold a JSON object.
    pub fn object(&mut self, field: &str, value: Option<&serde_json::Value>) {
        if value.is_some_and(|v| !v.is_object()) {
            self.error(field, "must be a JSON object");
        }
    }
    /// The expected recordVersion, from the body or If-Match; they must agree.
    pub fn version(&mut self, body: Option<i32>, header: Option<i32>) -> Option<i32> {
        match (body, header) {
            (Some(b), Some(h)) if b != h => {
                self.error("recordVersion", "differs from the If-Match header");
                None
            }
            (b, h) => b.or(h),
        }
    }
    pub fn into_error(self) -> ApiError {
        ApiError::Validation(self.errors)
    }
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

/// A plain addr-spec: a local part of RFC 5322 atext and single dots, `@`,
/// and a domain of letter-digit-hyphen labels ending in a top-level label.
/// Quoted local parts, comments, address literals and anything that could be
/// markup (`<>()[]\,;:"`, whitespace, control characters) are refused.
/// Deliverability is proven by verification, not here.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let local_ok = local.len() <= 64
        && local
            .split('.')
            .all(|w| !w.is_empty() && w.chars().all(atext));
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let tld = domain.rsplit('.').next().unwrap_or_default();
    let tld_ok =
        tld.len() >= 2 && (tld.chars().all(|c| c.is_ascii_alphabetic()) || tld.starts_with("xn--"));
    local_ok
        && domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(label)
        && tld_ok
}

/// An absolute `http`/`https` URL with a host and no credentials, or one of
/// `local_paths` with its placeholders filled. Only [`uri_chars`] are
/// taken, so markup, whitespace, control, invisible and other non-ASCII
/// characters (browsers drop or reinterpret some of them, hiding a scheme or
/// a host) are refused; non-ASCII hosts must come in punycode. Other schemes
/// (`javascript:`, `data:`), scheme-relative `//host` and other paths are
/// refused too.
pub fn is_url(value: &str, local_paths: &[&str]) -> bool {
    if !uri_chars(value) {
        return false;
    }
    if value.starts_with('/') {
        return local_paths.iter().any(|p| fills_path(p, value));
    }
    let prefix = |p: &str| {
        value
            .get(..p.len())
            .is_some_and(|v| v.eq_ignore_ascii_case(p))
    };
    if !prefix("http://") && !prefix("https://") {
        return false;
    }
    let after_slashes = value
        .split_once("//")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let authority = after_slashes
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    url::Url::parse(value).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

/// Only characters RFC 3986 allows in a URI: ASCII letters and digits,
/// `-._~:/?#[]@!$&()*+,;=`, and `%` followed by two hex digits. The `'` it
/// also allows is refused: it closes HTML attributes and is rare in URLs.
fn uri_chars(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += match b {
            b'%' if bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
            {
                3
            }
            b if b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&()*+,;=".contains(&b) => 1,
            _ => return false,
        };
    }
    true
}

/// `value` is `template` with each `{placeholder}` segment filled by a key
/// (letters, digits, `-`, `_`); no query, fragment or extra segment.
fn fills_path(template: &str, value: &str) -> bool {
    let key = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let (mut t, mut v) = (template.split('/'), value.split('/'));
    loop {
        match (t.next(), v.next()) {
            (None, None) => return true,
            (Some(ts), Some(vs)) if ts.starts_with('{') && ts.ends_with('}') && key(vs) => {}
            (Some(ts), Some(vs)) if ts == vs => {}
            _ => return false,
        }
    }
}

/// Emails are compared and stored trimmed and lower-cased.
pub fn normalize_email(value: String) -> String {
    value.trim().to_lowercase()
}

/// `%`, `_` and `\` taken literally inside an ILIKE pattern.
pub fn like_pattern(keyword: &str) -> String {
    let mut out = String::with_capacity(keyword.len() + 2);
    out.push('%');
    for c in keyword.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// An unguessable 256-bit key, hex-encoded.
pub fn random_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Checks a list's paging parameters against the model's limits.
pub fn page(
    page_number: Option<u32>,
    page_row_count: Option<u32>,
    default_rows: u32,
    max_rows: u32,
) -> Result<(u32, u32), ApiError> {
    let mut v = Validator::default();
    let number = page_number.unwrap_or(1);
    let rows = page_row_count.unwrap_or(default_rows);
    if number < 1 {
        v.error("pageNumber", "must be at least 1");
    }
    if rows < 1 || rows > max_rows {
        v.error("pageRowCount", format!("must be between 1 and {max_rows}"));
    }
    v.finish()?;
    Ok((number, rows))
}

/// A stale recordVersion is a conflict; no expectation passes.
pub fn check_version(expected: Option<i32>, current: i32) -> Result<(), ApiError> {
    match expected {
        Some(v) if v != current => Err(ApiError::StaleVersion { current }),
        _ => Ok(()),
    }
}

/// The ORDER BY of a list's `sort` parameter (`field` or `-field`), from the
/// object's table of sort keys and their ORDER BY clauses; `default` when
/// the client names none.
pub fn sort_order(
    sort: Option<&str>,
    default: &str,
    table: &'static [(&'static str, &'static str)],
) -> Result<&'static str, ApiError> {
    let key = sort.unwrap_or(default);
    table
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, order_by)| *order_by)
        .ok_or_else(|| {
            let keys: Vec<&str> = table.iter().map(|(k, _)| *k).collect();
            ApiError::Validation(vec![FieldError::new(
                "sort",
                format!(
                    "unknown sort \"{key}\"; expected one of {}",
                    keys.join(", ")
                ),
            )])
        })
}

/// Base64 (standard alphabet) for Blob fields in JSON bodies.
pub mod blob {
    use base64::Engine;
    use serde::{Deserialize, Deserializer};
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct SignUp {
        email: Option<String>,
        password: Option<String>,
        current: Patch<String>,
    }
    crate::debug_redacted!(SignUp { email } secrets { password, current });

    #[test]
    fn debug_shows_whether_a_secret_was_given_never_its_value() {
        let body: SignUp = serde_json::from_str(
            r#"{"email": "a@b.io", "password": "hunter2 horse", "current": "old one"}"#,
        )
        .expect("a body");
        let shown = format!("{body:?}");
        assert_eq!(
            shown,
            r#"SignUp { email: Some("a@b.io"), password: Some("***"), current: Some("***") }"#
        );
        let body: SignUp =
            serde_json::from_str(r#"{"email": null, "current": null}"#).expect("a body");
        assert_eq!(
            format!("{body:#?}"),
            "SignUp {\n    email: None,\n    password: None,\n    current: None,\n}"
        );
    }
    #[test]
    fn a_stale_version_is_a_conflict_naming_the_current_one() {
        assert!(check_version(None, 3).is_ok());
        assert!(check_version(Some(3), 3).is_ok());
        match check_version(Some(2), 3) {
            Err(ApiError::StaleVersion { current: 3 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sorts_come_from_the_table_or_are_refused_by_name() {
        const SORTS: &[(&str, &str)] = &[("name", "t.name ASC"), ("-name", "t.name DESC")];
        assert_eq!(sort_order(None, "-name", SORTS).unwrap(), "t.name DESC");
        assert_eq!(
            sort_order(Some("name"), "-name", SORTS).unwrap(),
            "t.name ASC"
        );
        match sort_order(Some("age; DROP TABLE x"), "-name", SORTS) {
            Err(ApiError::Validation(errors)) => {
                assert_eq!(errors[0].field, "sort");
                assert_eq!(
                    errors[0].message,
                    "unknown sort \"age; DROP TABLE x\"; expected one of name, -name"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paging_parameters_are_bounded() {
        assert_eq!(page(None, None, 25, 100).unwrap(), (1, 25));
        assert_eq!(page(Some(3), Some(100), 25, 100).unwrap(), (3, 100));
        match page(Some(0), Some(101), 25, 100) {
            Err(ApiError::Validation(errors)) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["pageNumber", "pageRowCount"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn plain_addresses_are_emails() {
        for ok in [
            "ann@example.com",
            "ann.o'neil+tag@mail.example.co.uk",
            "a_b-c@x-y.io",
            "x@xn--p1ai.xn--p1ai",
            "!#$%&*+/=?^`{|}~@a.bc",
        ] {
            assert!(is_email(ok), "{ok}");
        }
    }
    #[test]
    fn markup_and_odd_addresses_are_not_emails() {
        for bad in [
            "<svg/onload=alert(1)>@a.bc",
            "\"ann\"@a.bc",
            "ann@[127.0.0.1]",
            "ann@127.0.0.1",
            "(c)ann@a.bc",
            "ann lee@a.bc",
            "ann\tlee@a.bc",
            "ann@a.bc\n",
            "a,b@a.bc",
            "a;b@a.bc",
            "a:b@a.bc",
            "a\\b@a.bc",
            ".ann@a.bc",
            "ann.@a.bc",
            "an..n@a.bc",
            "ann@a..bc",
            "ann@-a.bc",
            "ann@a-.bc",
            "ann@a_b.bc",
            "ann@localhost",
            "ann@a.b",
            "ann@a.b1",
            "ann@b@a.bc",
            "@a.bc",
            "ann@",
            "ann",
            "ännchen@a.bc",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert!(!is_email(&format!("{}@a.bc", "a".repeat(65))));
        assert!(!is_email(&format!("a@{}.bc", "a".repeat(64))));
    }
    #[test]
    fn normalized_emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ".to_string()),
            "ann@example.com"
        );
    }
    const DOWNLOAD_PATHS: &[&str] = &["/v1/avatars/{id}/file", "/v1/avatars/key/{accessKey}"];

    fn is_url(value: &str) -> bool {
        super::is_url(value, DOWNLOAD_PATHS)
    }

    #[test]
    fn urls_are_http_or_the_services_own_downloads() {
        for ok in [
            "https://cdn.example.com/a.png",
            "HTTP://example.com",
            "https://example.com:8443/a?b=c#d",
            "https://[::1]/a",
            "https://xn--bcher-kva.example/%C3%A9t%C3%A9.png?a=1&b=(2)*;c=d,e+f!$",
            "https://example.com/~ann/a-b_c.png#x@y",
            "https://example.com/a?next=https://b.example/@c",
        ] {
            assert!(is_url(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "java\tscript:alert(1)",
            " javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "vbscript:x",
            "//evil.example/a.png",
            "https:evil.example",
            "https://",
            "https://ann:secret@example.com/",
            "https://trusted.example@evil.example/",
            "https://example.com/a b",
            "ftp://example.com/a",
            "a.png",
            "",
            "/etc/passwd",
            "https://example.com/\"><script>alert(1)</script>",
            "https://example.com/'onerror='alert(1)",
            "https://example.com/a<b",
            "https://example.com/a{b}",
            "https://example.com/a|b",
            "https://example.com/a^b",
            "https://example.com/a`b",
            "https://evil.com\\@good.com/",
            "http://@evil.com/",
            "https://@evil.com",
            "https://a@b@evil.com/",
            "https://exa\u{200B}mple.com/",
            "http://ev\u{00AD}il.com/",
            "https://example.com/\u{202E}gnp.exe",
            "https://bücher.example/",
            "https://example.com/%",
            "https://example.com/%2",
            "https://example.com/%zz",
        ] {
            assert!(!is_url(bad), "{bad}");
        }
        for path in DOWNLOAD_PATHS {
            let filled: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "abc-123_X" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            assert!(is_url(&filled), "{filled}");
            assert!(!is_url(&format!("{filled}/more")), "{filled}/more");
            assert!(!is_url(&format!("{filled}?x=1")), "{filled}?x=1");
            assert!(
                !is_url(&filled.replace("abc-123_X", "..")),
                "{filled} with .."
            );
            assert!(
                !is_url(&filled.replace("abc-123_X", "a\"><b")),
                "{filled} with markup"
            );
        }
    }
}
