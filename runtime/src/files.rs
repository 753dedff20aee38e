//! Uploaded files: multipart bodies read as a stream with the model's size
//! limit, content types sniffed from the bytes, and downloads with caching
//! headers.

use crate::error::{ApiError, FieldError};
use crate::extract::{deserialize_error, ApiJson};
use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartError};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// The body of a route that receives a file.
pub trait FileForm: DeserializeOwned {
    /// The form field that carries the bytes.
    const FILE_FIELD: &'static str;
    /// Form fields whose text is JSON rather than a string.
    const JSON_FIELDS: &'static [&'static str];
    /// The largest file accepted, in bytes.
    const MAX_BYTES: usize;
    /// The most bytes the other fields may hold together (the service's body
    /// limit: the route's own limit is raised to let the file through).
    const TEXT_BYTES: usize;
    /// Puts the uploaded bytes (and the part's file name) into the body.
    fn attach(&mut self, bytes: Vec<u8>, file_name: Option<String>);
    /// The field that names the file (JSON name, value), if the form has one.
    fn name_slot(&mut self) -> Option<(&'static str, &mut Option<String>)>;
}

/// A file-carrying body: `multipart/form-data` (streamed; the file part is
/// counted as it arrives and refused with 413 past the limit), or JSON with
/// the bytes in base64.
pub struct Upload<T>(pub T);

impl<S: Send + Sync, T: FileForm> FromRequest<S> for Upload<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        if !multipart {
            let ApiJson(mut input) = ApiJson::<T>::from_request(req, state).await?;
            clean_name(&mut input)?;
            return Ok(Upload(input));
        }
        let mut form = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let mut fields = serde_json::Map::new();
        let mut file: Option<(Vec<u8>, Option<String>)> = None;
        let mut text_bytes = 0usize;
        while let Some(mut part) = form.next_field().await.map_err(multipart_error)? {
            let name = part.name().unwrap_or_default().to_string();
            if name == T::FILE_FIELD {
                if file.is_some() {
                    return Err(ApiError::Validation(vec![FieldError::new(
                        name,
                        "is given twice",
                    )]));
                }
                let part_name = part.file_name().map(str::to_string);
                let mut bytes = Vec::new();
                while let Some(chunk) = part.chunk().await.map_err(multipart_error)? {
                    if bytes.len() + chunk.len() > T::MAX_BYTES {
                        return Err(ApiError::PayloadTooLarge);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some((bytes, part_name));
                continue;
            }
            let mut text = Vec::new();
            while let Some(chunk) = part.chunk().await.map_err(multipart_error)? {
                text_bytes += chunk.len();
                if text_bytes > T::TEXT_BYTES {
                    return Err(ApiError::PayloadTooLarge);
                }
                text.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(text).map_err(|_| {
                ApiError::Validation(vec![FieldError::new(name.clone(), "is not UTF-8 text")])
            })?;
            if text.contains('\0') {
                return Err(ApiError::BadRequest(
                    "strings may not contain NUL characters".to_string(),
                ));
            }
            let value = if T::JSON_FIELDS.contains(&name.as_str()) {
                serde_json::from_str(&text).map_err(|_| {
                    ApiError::Validation(vec![FieldError::new(name.clone(), "is not valid JSON")])
                })?
            } else {
                serde_json::Value::String(text)
            };
            if fields.insert(name.clone(), value).is_some() {
                return Err(ApiError::Validation(vec![FieldError::new(
                    name,
                    "is given twice",
                )]));
            }
        }
        let mut input: T = serde_path_to_error::deserialize(serde_json::Value::Object(fields))
            .map_err(deserialize_error)?;
        if let Some((bytes, part_name)) = file {
            input.attach(bytes, part_name);
        }
        clean_name(&mut input)?;
        Ok(Upload(input))
    }
}

/// Keeps only the file's own name in the form's name field, whether the
/// client wrote it or it came from the part: stored names are echoed in
/// Content-Disposition and used by clients to save the file, so no path may
/// ride along. A name with nothing left is refused.
fn clean_name<T: FileForm>(input: &mut T) -> Result<(), ApiError> {
    let Some((field, slot)) = input.name_slot() else {
        return Ok(());
    };
    if let Some(given) = slot.take() {
        let name = safe_file_name(&given).ok_or_else(|| ApiError::Validation(vec![FieldError::new(field, "names no file: nothing but dots is left without its path, control and invisible characters")]))?;
        *slot = Some(name);
    }
    Ok(())
}

/// What follows the last path separator ([`is_separator`]), without control
/// characters or the invisible ones that reorder or hide text
/// (`evil\u{202E}gnp.exe`, [`is_invisible`]), trimmed; `None` when nothing or
/// only dots (`.`, `..`, `...`, `. .`) are left.
pub fn safe_file_name(name: &str) -> Option<String> {
    let base = name.rsplit(is_separator).next().unwrap_or_default();
    let kept: String = base
        .chars()
        .filter(|&c| !c.is_control() && !is_invisible(c))
        .collect();
    let kept = kept.trim();
    (!kept.chars().all(|c| c == '.' || c.is_whitespace())).then(|| kept.to_string())
}

/// `/`, `\` and the characters drawn like them: fraction slash, division
/// slash, fullwidth solidus and reverse solidus, big solidus and reverse solidus.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        '/' | '\\' | '\u{2044}' | '\u{2215}' | '\u{FF0F}' | '\u{FF3C}' | '\u{29F8}' | '\u{29F9}'
    )
}

/// Invisible and format characters: soft hyphen, joiners, direction marks
/// and overrides, line and paragraph separators, word joiners, Hangul fillers,
/// variation selectors, the byte-order mark, interlinear annotation and tag
/// characters.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(e.body_text())
    }
}

/// The content type of `bytes`, sniffed from their first bytes (magic
/// numbers), never taken from the client: 413 above `max_bytes`, 415 when it
/// is not one of `allowed` or disagrees with the `declared` one.
pub fn content_type(
    bytes: &[u8],
    declared: Option<&str>,
    allowed: &[&str],
    max_bytes: usize,
) -> Result<String, ApiError> {
    if bytes.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge);
    }
    let sniffed = infer::get(bytes).map(|t| t.mime_type());
    match sniffed {
        Some(real) if allowed.contains(&real) => match declared {
            Some(d) if !d.eq_ignore_ascii_case(real) => Err(ApiError::UnsupportedMediaType(
                format!("the content is {real}, not the declared {d}"),
            )),
            _ => Ok(real.to_string()),
        },
        Some(real) => Err(ApiError::UnsupportedMediaType(format!(
            "the content is {real}; accepted: {}",
            allowed.join(", ")
        ))),
        None => Err(ApiError::UnsupportedMediaType(format!(
            "the content is of no recognized type; accepted: {}",
            allowed.join(", ")
        ))),
    }
}

/// A stored file as a download route loads it.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredFile {
    pub id: Uuid,
    pub record_version: i32,
    pub content_type: String,
    pub file_name: Option<String>,
    pub bytes: Vec<u8>,
    pub owner: Option<Uuid>,
}

impl StoredFile {
    /// Stored files never change in place, so the row's version names the bytes.
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.id.simple(), self.record_version)
    }

    /// The bytes with their type, length and caching headers; 304 when the
    /// client's `If-None-Match` already names them.
    pub fn into_response(self, request: &HeaderMap, cache_control: &'static str) -> Response {
        let etag = self.etag();
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        if let Ok(v) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, v);
        }
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        if let Ok(v) = HeaderValue::from_str(&self.content_type) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.bytes.len()));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_DISPOSITION,
            disposition(self.file_name.as_deref()),
        );
        (StatusCode::OK, headers, Body::from(self.bytes)).into_response()
    }
}

/// `inline` with the file's own name, cleaned again (rows may predate the
/// cleaning): a quoted ASCII `filename` (other characters, `"` and `\` as
/// `_`) and, when that lost something, the exact name as RFC 6266/5987
/// `filename*` (UTF-8, percent-encoded).
fn disposition(file_name: Option<&str>) -> HeaderValue {
    let Some(name) = file_name.and_then(safe_file_name) else {
        return HeaderValue::from_static("inline");
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut value = format!("inline; filename=\"{ascii}\"");
    if ascii != name {
        value.push_str("; filename*=UTF-8''");
        for b in name.bytes() {
            // RFC 5987 attr-char passes; every other byte is percent-encoded.
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                value.push(char::from(b));
            } else {
                value.push_str(&format!("%{b:02X}"));
            }
        }
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("inline"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(
            safe_file_name("../../../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            safe_file_name("C:\\Users\\ann\\me.png").as_deref(),
            Some("me.png")
        );
        assert_eq!(
            safe_file_name("a\r\n\u{0}b\u{202E}gnp.exe").as_deref(),
            Some("abgnp.exe")
        );
        assert_eq!(safe_file_name(" me.png ").as_deref(), Some("me.png"));
        assert_eq!(
            safe_file_name("x\u{2044}..\u{2044}etc\u{2215}passwd").as_deref(),
            Some("passwd")
        );
        for slash in [
            '\u{2044}', '\u{2215}', '\u{FF0F}', '\u{FF3C}', '\u{29F8}', '\u{29F9}',
        ] {
            assert_eq!(
                safe_file_name(&format!("x{slash}..{slash}y.png")).as_deref(),
                Some("y.png"),
                "{slash:?}"
            );
        }
        assert_eq!(safe_file_name("a\u{2028}b.png").as_deref(), Some("ab.png"));
        assert_eq!(
            safe_file_name("a\u{00AD}b\u{2060}c\u{180E}.png").as_deref(),
            Some("abc.png")
        );
        let hidden = "\u{034F}\u{061C}\u{115F}\u{1160}\u{17B4}\u{17B5}\u{200B}\u{2029}\u{206F}\u{3164}\u{FE0F}\u{FEFF}\u{FFA0}\u{FFFB}\u{E0041}";
        assert_eq!(
            safe_file_name(&format!("me{hidden}.png")).as_deref(),
            Some("me.png")
        );
        assert_eq!(safe_file_name("..a.png").as_deref(), Some("..a.png"));
        for nothing in [
            "",
            "../",
            "..",
            "...",
            ". .",
            "a/.",
            "\u{7}",
            "dir\\",
            "x\u{FF0F}",
            "\u{200B}\u{00AD}",
            ".\u{200B}.",
        ] {
            assert_eq!(safe_file_name(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn disposition_quotes_safely() {
        let header = |n: &str| {
            disposition(Some(n))
                .to_str()
                .map(str::to_string)
                .unwrap_or_default()
        };
        assert_eq!(header("me.png"), "inline; filename=\"me.png\"");
        assert_eq!(header("a\"b\\c.png"), "inline; filename=\"c.png\"");
        assert_eq!(
            header("a\"b;c.png"),
            "inline; filename=\"a_b;c.png\"; filename*=UTF-8''a%22b%3Bc.png"
        );
        assert_eq!(
            header("été.png"),
            "inline; filename=\"_t_.png\"; filename*=UTF-8''%C3%A9t%C3%A9.png"
        );
        assert_eq!(header("../"), "inline");
        assert_eq!(disposition(None), "inline");
    }

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const GIF: &[u8] = b"GIF89a\x01\0\x01\0";
    const IMAGES: &[&str] = &["image/png", "image/jpeg"];

    #[test]
    fn content_types_are_sniffed_never_taken_from_the_client() {
        assert_eq!(
            content_type(PNG, None, IMAGES, 64).ok().as_deref(),
            Some("image/png")
        );
        assert_eq!(
            content_type(PNG, Some("IMAGE/PNG"), IMAGES, 64)
                .ok()
                .as_deref(),
            Some("image/png")
        );
        let refused = |r: Result<String, ApiError>| match r {
            Err(ApiError::UnsupportedMediaType(message)) => message,
            other => panic!("expected 415, got {other:?}"),
        };
        assert_eq!(
            refused(content_type(PNG, Some("image/jpeg"), IMAGES, 64)),
            "the content is image/png, not the declared image/jpeg"
        );
        assert_eq!(
            refused(content_type(GIF, None, IMAGES, 64)),
            "the content is image/gif; accepted: image/png, image/jpeg"
        );
        assert_eq!(
            refused(content_type(b"just text", Some("image/png"), IMAGES, 64)),
            "the content is of no recognized type; accepted: image/png, image/jpeg"
        );
        assert!(matches!(
            content_type(PNG, None, IMAGES, PNG.len() - 1),
            Err(ApiError::PayloadTooLarge)
        ));
    }

    fn stored(file_name: Option<&str>) -> StoredFile {
        StoredFile {
            id: Uuid::nil(),
            record_version: 3,
            content_type: "image/png".into(),
            file_name: file_name.map(str::to_string),
            bytes: PNG.to_vec(),
            owner: None,
        }
    }

    #[test]
    fn downloads_carry_caching_headers_and_answer_304_when_fresh() {
        let etag = "\"00000000000000000000000000000000-3\"";
        assert_eq!(stored(None).etag(), etag);
        let res = stored(Some("dir/me.png")).into_response(&HeaderMap::new(), "public, max-age=60");
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h[header::ETAG], etag);
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=60");
        assert_eq!(h[header::CONTENT_TYPE], "image/png");
        assert_eq!(h[header::CONTENT_LENGTH], PNG.len().to_string().as_str());
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(
            h[header::CONTENT_DISPOSITION],
            "inline; filename=\"me.png\""
        );
        for given in [
            etag,
            "\"other\", \"00000000000000000000000000000000-3\"",
            "*",
        ] {
            let mut request = HeaderMap::new();
            request.insert(header::IF_NONE_MATCH, HeaderValue::from_static(given));
            let res = stored(None).into_response(&request, "no-cache");
            assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{given}");
            assert_eq!(res.headers()[header::ETAG], etag);
            assert!(res.headers().get(header::CONTENT_TYPE).is_none());
        }
        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x-2\""));
        assert_eq!(
            stored(None).into_response(&stale, "no-cache").status(),
            StatusCode::OK
        );
    }

    /// A form with a file, its name and a JSON field, with small limits.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Form {
        #[serde(default, deserialize_with = "crate::validation::blob::option")]
        file: Option<Vec<u8>>,
        #[serde(default, rename = "fileName")]
        file_name: Option<String>,
        #[serde(default)]
        meta: Option<serde_json::Value>,
    }

    impl FileForm for Form {
        const FILE_FIELD: &'static str = "file";
        const JSON_FIELDS: &'static [&'static str] = &["meta"];
        const MAX_BYTES: usize = 16;
        const TEXT_BYTES: usize = 32;

        fn attach(&mut self, bytes: Vec<u8>, file_name: Option<String>) {
            self.file = Some(bytes);
            if self.file_name.is_none() {
                self.file_name = file_name;
            }
        }

        fn name_slot(&mut self) -> Option<(&'static str, &mut Option<String>)> {
            Some(("fileName", &mut self.file_name))
        }
    }

    /// A `multipart/form-data` request of `(name, part file name, content)` parts.
    fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Request {
        let mut body = Vec::new();
        for (name, file_name, content) in parts {
            body.extend_from_slice(b"--XyZ\r\n");
            let file = file_name
                .map(|f| format!("; filename=\"{f}\""))
                .unwrap_or_default();
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        axum::http::Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
            .body(Body::from(body))
            .unwrap_or_default()
    }

    async fn upload(req: Request) -> Result<Form, ApiError> {
        Upload::<Form>::from_request(req, &())
            .await
            .map(|Upload(form)| form)
    }

    #[tokio::test]
    async fn multipart_forms_attach_the_file_and_clean_its_name() {
        let form = upload(multipart(&[
            ("meta", None, b"{\"a\":1}"),
            ("file", Some("../../me.png"), PNG),
        ]))
        .await;
        let form = form.expect("a valid form");
        assert_eq!(form.file.as_deref(), Some(PNG));
        assert_eq!(form.file_name.as_deref(), Some("me.png"));
        assert_eq!(form.meta, Some(serde_json::json!({ "a": 1 })));
        let named = upload(multipart(&[
            ("fileName", None, b"C:\\x\\given.png"),
            ("file", Some("part.png"), PNG),
        ]))
        .await;
        assert_eq!(
            named.ok().and_then(|f| f.file_name).as_deref(),
            Some("given.png")
        );
    }

    #[tokio::test]
    async fn json_bodies_carry_the_file_in_base64() {
        let req = axum::http::Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"file":"aGk=","fileName":"a/b.txt"}"#))
            .unwrap_or_default();
        let form = upload(req).await.expect("a valid body");
        assert_eq!(
            (form.file.as_deref(), form.file_name.as_deref()),
            (Some(&b"hi"[..]), Some("b.txt"))
        );
    }

    #[tokio::test]
    async fn multipart_forms_are_refused_past_their_limits_or_with_repeated_fields() {
        let big_file = [0u8; 17];
        assert!(matches!(
            upload(multipart(&[("file", None, &big_file)])).await,
            Err(ApiError::PayloadTooLarge)
        ));
        let long_text = [b'a'; 33];
        assert!(matches!(
            upload(multipart(&[("fileName", None, &long_text)])).await,
            Err(ApiError::PayloadTooLarge)
        ));
        let field_errors = |r: Result<Form, ApiError>| match r {
            Err(ApiError::Validation(errors)) => errors
                .into_iter()
                .map(|e| (e.field, e.message))
                .collect::<Vec<_>>(),
            other => panic!("expected field errors, got {other:?}"),
        };
        assert_eq!(
            field_errors(upload(multipart(&[("file", None, PNG), ("file", None, PNG)])).await),
            [("file".to_string(), "is given twice".to_string())]
        );
        assert_eq!(
            field_errors(upload(multipart(&[("meta", None, b"{not json")])).await),
            [("meta".to_string(), "is not valid JSON".to_string())]
        );
        assert!(matches!(
            upload(multipart(&[("fileName", None, b"a\0b")])).await,
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            upload(multipart(&[("fileName", None, b"../..")])).await,
            Err(ApiError::Validation(_))
        ));
    }
}
