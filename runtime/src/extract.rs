//! Extractors whose rejections are answered in the envelope, with the field at fault.

use crate::error::{ApiError, FieldError};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON body; a type or unknown-field error names the field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(ApiError::BadRequest(
                "expected Content-Type: application/json".to_string(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        if has_nul_escape(&bytes) {
            return Err(ApiError::BadRequest(
                "strings may not contain NUL characters".to_string(),
            ));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(ApiJson)
            .map_err(deserialize_error)
    }
}

/// A body that does not fit its type: a syntax error is a 400, a field of the
/// wrong type or an unknown field a 400 that names the field.
pub fn deserialize_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let field = e.path().to_string();
    let inner = e.into_inner();
    let message = strip_position(&inner.to_string());
    if field == "." || inner.is_syntax() || inner.is_eof() {
        ApiError::BadRequest(format!("invalid JSON body: {message}"))
    } else {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }
}

/// Whether a JSON text escapes a NUL (`\u0000`). Each backslash escapes the
/// character after it, so an escaped backslash followed by `u0000` is the
/// text `\u0000`, not a NUL.
fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
        } else if bytes.get(i + 1..i + 6) == Some(b"u0000".as_slice()) {
            return true;
        } else {
            i += 2;
        }
    }
    false
}

fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(e.body_text())
    }
}

/// serde_json appends " at line 1 column 9"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Path parameters; a malformed id is a 400.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// Query parameters; an unknown or malformed parameter is a 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(ApiError::BadRequest(
                "query values may not contain NUL characters".to_string(),
            ));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// The recordVersion a client read, from an `If-Match` header (`"3"` or `3`).
pub struct IfMatch(pub Option<i32>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        raw.to_str()
            .ok()
            .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|v| v.parse::<i32>().ok())
            .map(|v| IfMatch(Some(v)))
            .ok_or_else(|| {
                ApiError::Validation(vec![FieldError::new(
                    "If-Match",
                    "expected the recordVersion, e.g. \"3\"",
                )])
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        #[allow(dead_code)]
        name: String,
    }

    async fn json(content_type: &str, body: &'static str) -> Result<Input, ApiError> {
        let req = HttpRequest::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("a request");
        ApiJson::<Input>::from_request(req, &()).await.map(|j| j.0)
    }

    #[tokio::test]
    async fn a_body_must_be_declared_json() {
        assert!(json("application/json; charset=utf-8", r#"{"name":"a"}"#)
            .await
            .is_ok());
        match json("text/plain", r#"{"name":"a"}"#).await {
            Err(ApiError::BadRequest(m)) => assert!(m.contains("application/json")),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_field_of_the_wrong_type_or_unknown_is_named() {
        match json("application/json", r#"{"name": 5}"#).await {
            Err(ApiError::Validation(errors)) => {
                assert_eq!(errors[0].field, "name");
                assert!(
                    !errors[0].message.contains(" at line "),
                    "{}",
                    errors[0].message
                );
            }
            other => panic!("{other:?}"),
        }
        match json("application/json", r#"{"name": "a", "role": "admin"}"#).await {
            Err(ApiError::Validation(errors)) => assert!(errors[0].message.contains("role")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            json("application/json", r#"{"name": "#).await,
            Err(ApiError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn nul_characters_are_refused_but_escaped_backslashes_are_not() {
        assert!(matches!(
            json("application/json", r#"{"name": "a\u0000b"}"#).await,
            Err(ApiError::BadRequest(_))
        ));
        assert!(json("application/json", r#"{"name": "a\\u0000b"}"#)
            .await
            .is_ok());
    }

    async fn if_match(value: &str) -> Result<Option<i32>, ApiError> {
        let (mut parts, ()) = HttpRequest::builder()
            .header(header::IF_MATCH, value)
            .body(())
            .expect("a request")
            .into_parts();
        IfMatch::from_request_parts(&mut parts, &())
            .await
            .map(|m| m.0)
    }

    #[tokio::test]
    async fn if_match_takes_a_quoted_or_weak_record_version() {
        assert_eq!(if_match("\"3\"").await.unwrap(), Some(3));
        assert_eq!(if_match("W/\"4\"").await.unwrap(), Some(4));
        assert_eq!(if_match("5").await.unwrap(), Some(5));
        assert!(matches!(
            if_match("abc").await,
            Err(ApiError::Validation(_))
        ));
    }
}
