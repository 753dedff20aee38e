//! One error type that is the HTTP answer.
//!
//! Database and internal errors are logged and answered without details;
//! constraint violations name the field they concern (the envelope looks the
//! constraint up in the service's [`ServiceInfo`](crate::route::ServiceInfo)). An unreachable
//! database is a 503 (`SERVICE_UNAVAILABLE`), never a 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A problem with one field of the request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body or query broke the model's rules.
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    /// 400: the request could not be read (bad JSON, bad id, bad query).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid token, or its session has ended; wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller's role or ownership does not allow the route.
    #[error("the route's rule does not allow this caller")]
    Forbidden,
    /// 403 for a stated reason (an unconfirmed account, a missing CSRF token).
    #[error("{message}")]
    Denied { code: &'static str, message: String },
    /// 400: a one-time code is wrong, expired, used or void.
    #[error("{0}")]
    CodeRejected(String),
    /// 429: throttled; retry after the given seconds.
    #[error("too many attempts; retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// 404: no such (active) row.
    #[error("not found")]
    NotFound,
    /// 404: no such route.
    #[error("no route for this path")]
    RouteNotFound,
    /// 409: the client's recordVersion is not the current one.
    #[error("the row was changed by someone else (current recordVersion {current})")]
    StaleVersion { current: i32 },
    /// 409: a unique value is taken, or the row is still referenced.
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<&'static str>,
    },
    /// 413: the body is larger than the model allows.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 415: an uploaded file's real type is not one the model accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: a referenced row does not exist.
    #[error("{message}")]
    Unprocessable {
        message: String,
        field: Option<&'static str>,
    },
    /// 409 or 422: the database refused a write by a named constraint.
    #[error("{}", .0.message(None))]
    Violated(Violation),
    /// 501: a custom route whose hand-written body is still the generated stub.
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    /// 500: logged, never detailed to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// 503: the database cannot be reached (down, restarting, no connection in
    /// time); the client may retry later.
    #[error("the database is unavailable; retry later")]
    ServiceUnavailable(#[source] sqlx::Error),
    /// 503: something the service needs is not there yet (a trusting
    /// service before it has the issuer's keys); the client may retry later.
    #[error("{0}; retry later")]
    Unavailable(&'static str),
    /// 409: a consumer ran a route for an event that already took effect
    /// (its inbox row exists); the consumer counts it as done.
    #[error("this event was already consumed")]
    AlreadyConsumed,
}

/// How a write broke a constraint of the migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// A unique value is already taken (409).
    Unique,
    /// A referenced row does not exist (422).
    ForeignKey,
}

/// A constraint violation; the constraint's name says which field it guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub constraint: Option<String>,
}

impl Violation {
    /// The answer's message, naming `field` when the constraint guards one.
    pub fn message(&self, field: Option<&str>) -> String {
        match (self.kind, field) {
            (ViolationKind::Unique, Some(f)) => format!("{f} is already taken"),
            (ViolationKind::Unique, None) => "a unique value is already taken".to_string(),
            (ViolationKind::ForeignKey, Some(f)) => {
                format!("{f} refers to a row that does not exist")
            }
            (ViolationKind::ForeignKey, None) => "a referenced row does not exist".to_string(),
        }
    }
}

/// What the envelope middleware needs to write an error answer.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    /// Left for the envelope to name the field, which only the service knows.
    pub violation: Option<Violation>,
}

impl ErrorInfo {
    /// Names the field a violated constraint guards, given the service's
    /// table of constraints.
    pub fn name_field(&mut self, field_of: impl Fn(&str) -> Option<&'static str>) {
        let Some(v) = self.violation.take() else {
            return;
        };
        if let Some(field) = v.constraint.as_deref().and_then(field_of) {
            self.message = v.message(Some(field));
            self.details = vec![FieldError::new(field, self.message.clone())];
        }
    }
}

impl ErrorInfo {
    /// For answers the framework made without an [`ApiError`].
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("ROUTE_NOT_FOUND", "no route for this path"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "METHOD_NOT_ALLOWED",
                "this method is not allowed on this path",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "UNSUPPORTED_MEDIA_TYPE",
                "expected Content-Type: application/json",
            ),
            StatusCode::SERVICE_UNAVAILABLE => (
                "SERVICE_UNAVAILABLE",
                "the service is unavailable; retry later",
            ),
            s if s.is_server_error() => ("INTERNAL_ERROR", "internal error"),
            _ => ("BAD_REQUEST", "the request could not be read"),
        };
        Self {
            code,
            message: message.to_string(),
            details: Vec::new(),
            violation: None,
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest(_) | Self::CodeRejected(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::StaleVersion { .. } | Self::Conflict { .. } | Self::AlreadyConsumed => {
                StatusCode::CONFLICT
            }
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Violated(v) => match v.kind {
                ViolationKind::Unique => StatusCode::CONFLICT,
                ViolationKind::ForeignKey => StatusCode::UNPROCESSABLE_ENTITY,
            },
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "VALIDATION_FAILED",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::Denied { code, .. } => code,
            Self::CodeRejected(_) => "CODE_REJECTED",
            Self::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
            Self::NotFound => "NOT_FOUND",
            Self::RouteNotFound => "ROUTE_NOT_FOUND",
            Self::StaleVersion { .. } => "STALE_RECORD_VERSION",
            Self::Conflict { .. } | Self::AlreadyConsumed => "CONFLICT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::Unprocessable { .. } => "UNPROCESSABLE",
            Self::Violated(v) => match v.kind {
                ViolationKind::Unique => "CONFLICT",
                ViolationKind::ForeignKey => "UNPROCESSABLE",
            },
            Self::NotImplemented(_) => "NOT_IMPLEMENTED",
            Self::Internal(_) => "INTERNAL_ERROR",
            Self::ServiceUnavailable(_) | Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
        }
    }
    fn details(&self) -> Vec<FieldError> {
        match self {
            Self::Validation(errors) => errors.clone(),
            Self::Conflict {
                field: Some(f),
                message,
            }
            | Self::Unprocessable {
                field: Some(f),
                message,
            } => {
                vec![FieldError::new(*f, message.clone())]
            }
            _ => Vec::new(),
        }
    }
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }
    /// A write that names a row of a replica (a copy of another service's
    /// object, kept from its events) which is not here yet: the foreign key
    /// `constraint` failed, and the row may arrive with the next event, so
    /// the answer is 503 with Retry-After rather than 422.
    pub fn or_pending(self, constraint: &str, what: &'static str) -> Self {
        match &self {
            Self::Violated(Violation {
                kind: ViolationKind::ForeignKey,
                constraint: Some(c),
            }) if c == constraint => Self::Unavailable(what),
            _ => self,
        }
    }
    /// Maps a database error from a DELETE: a row still referenced is a conflict.
    pub fn on_delete(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::Conflict {
                message: "the row is still referenced by other rows".to_string(),
                field: None,
            },
            _ => Self::from(e),
        }
    }
}

/// Whether `e` means the database cannot be reached (down, restarting,
/// refusing connections, or the pool found no connection in time), rather
/// than that the request itself failed: pool timeouts, I/O and TLS errors,
/// and SQLSTATE classes 08 (connection exception) and 57P (admin or crash
/// shutdown, cannot connect now).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if matches!(e, sqlx::Error::PoolTimedOut) {
            // Every request's error passes here, whichever call timed out.
            ::metrics::counter!(crate::measure::DB_ACQUIRE_TIMEOUTS).increment(1);
        }
        if is_unavailable(&e) {
            return Self::ServiceUnavailable(e);
        }
        match &e {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(db) => {
                let constraint = db.constraint().map(str::to_string);
                if db.is_unique_violation() {
                    Self::Violated(Violation {
                        kind: ViolationKind::Unique,
                        constraint,
                    })
                } else if db.is_foreign_key_violation() {
                    Self::Violated(Violation {
                        kind: ViolationKind::ForeignKey,
                        constraint,
                    })
                } else if db.is_check_violation() {
                    Self::BadRequest("a value breaks a rule of the model".to_string())
                } else {
                    Self::Internal(e.into())
                }
            }
            _ => Self::Internal(e.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error")
            }
            Self::ServiceUnavailable(e) => {
                tracing::warn!(error = format!("{e:#}"), "the database is unavailable")
            }
            _ => {}
        }
        let info = ErrorInfo {
            code: self.code(),
            message: self.to_string(),
            details: self.details(),
            violation: match &self {
                Self::Violated(v) => Some(v.clone()),
                _ => None,
            },
        };
        let mut res = status.into_response();
        match &self {
            Self::Unauthorized(_) => {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::TooManyRequests { retry_after } => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Self::ServiceUnavailable(_) | Self::Unavailable(_) => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res.extensions_mut().insert(info);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_of(e: ApiError) -> (StatusCode, ErrorInfo) {
        let res = e.into_response();
        let info = res.extensions().get::<ErrorInfo>().cloned();
        (
            res.status(),
            info.expect("every ApiError answer carries its ErrorInfo"),
        )
    }

    #[test]
    fn a_violation_names_the_field_its_constraint_guards() {
        let taken = ApiError::Violated(Violation {
            kind: ViolationKind::Unique,
            constraint: Some("users_email_key".to_string()),
        });
        let (status, mut info) = info_of(taken);
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(info.message, "a unique value is already taken");
        info.name_field(|c| (c == "users_email_key").then_some("email"));
        assert_eq!(info.message, "email is already taken");
        assert_eq!(
            info.details,
            vec![FieldError::new("email", "email is already taken")]
        );
    }

    #[test]
    fn an_unknown_constraint_keeps_the_general_message() {
        let missing = ApiError::Violated(Violation {
            kind: ViolationKind::ForeignKey,
            constraint: Some("other_fkey".to_string()),
        });
        let (status, mut info) = info_of(missing);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        info.name_field(|_| None);
        assert_eq!(info.code, "UNPROCESSABLE");
        assert_eq!(info.message, "a referenced row does not exist");
        assert!(info.details.is_empty());
    }

    #[test]
    fn an_unfinished_custom_route_says_so() {
        let (status, info) = info_of(ApiError::NotImplemented("returnBook"));
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(info.code, "NOT_IMPLEMENTED");
        assert_eq!(info.message, "returnBook is not implemented yet");
    }

    #[test]
    fn throttling_and_unauthorized_answers_carry_their_headers() {
        let res = ApiError::TooManyRequests { retry_after: 7 }.into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
        let res = ApiError::Unauthorized("no token".into()).into_response();
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn a_service_not_ready_yet_answers_503_with_retry_after() {
        let e = ApiError::Unavailable("the issuer's keys are not known yet");
        let res = e.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let info = res.extensions().get::<ErrorInfo>().expect("info");
        assert_eq!(info.code, "SERVICE_UNAVAILABLE");
        assert_eq!(
            info.message,
            "the issuer's keys are not known yet; retry later"
        );
    }

    #[test]
    fn a_missing_replica_row_is_retryable_and_other_violations_are_not() {
        let fk = |c: &str| {
            ApiError::Violated(Violation {
                kind: ViolationKind::ForeignKey,
                constraint: Some(c.to_string()),
            })
        };
        let pending = fk("listings_host_id_fkey")
            .or_pending("listings_host_id_fkey", "this host is not known here yet");
        let res = pending.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let other = fk("listings_city_id_fkey").or_pending("listings_host_id_fkey", "x");
        assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            ApiError::NotFound.or_pending("c", "x").status(),
            StatusCode::NOT_FOUND
        );
    }
}
