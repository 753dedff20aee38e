//! The response envelope of the seed's REST API, for answers and errors alike.

use crate::error::{ApiError, ErrorInfo};
use crate::event::{Consumed, Event, Watcher};
use crate::route::{RouteInfo, ServiceInfo};
use crate::trace::TraceContext;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// When the request arrived and which service answers it; set by
/// [`errors_in_envelope`].
#[derive(Clone, Copy)]
struct Arrival {
    started: Instant,
    service: &'static ServiceInfo,
}

/// Stands in for the service outside [`errors_in_envelope`] (a handler
/// called directly in a unit test).
static UNNAMED: ServiceInfo = ServiceInfo {
    app_version: "",
    body_limit_bytes: 0,
    constraints: &[],
};

/// Per-request facts every answer carries.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub started: Instant,
    pub service: &'static ServiceInfo,
    pub user_id: Option<Uuid>,
    pub session_id: Option<String>,
    /// Hears of this request's events before they commit (the live-session
    /// cache marks ended sessions), when the service has one.
    pub watcher: Option<Arc<dyn Watcher>>,
    /// Set when a consumer runs a route for an event (see [`Consumed`]).
    pub consumed: Option<Arc<Consumed>>,
    /// Where the request sits in its trace: its events carry it on.
    pub trace: TraceContext,
}

impl RequestContext {
    fn from_parts(parts: &Parts) -> Self {
        let arrival = parts.extensions.get::<Arrival>();
        Self {
            request_id: request_id(parts),
            started: arrival.map_or_else(Instant::now, |a| a.started),
            service: arrival.map_or(&UNNAMED, |a| a.service),
            user_id: None,
            session_id: None,
            watcher: parts.extensions.get::<Arc<dyn Watcher>>().cloned(),
            consumed: None,
            trace: parts
                .extensions
                .get::<TraceContext>()
                .cloned()
                .unwrap_or_else(TraceContext::fresh),
        }
    }
    /// The same request, as made by a signed-in caller.
    pub fn signed_in(&self, user_id: Uuid, session_id: Uuid) -> Self {
        Self {
            user_id: Some(user_id),
            session_id: Some(session_id.to_string()),
            ..self.clone()
        }
    }
    /// The same request, acting for an account that proved itself another way
    /// (a one-time code) rather than with a session.
    pub fn acting_for(&self, user_id: Uuid) -> Self {
        Self {
            user_id: Some(user_id),
            ..self.clone()
        }
    }
    /// Work the service does by itself (expiry sweeps): a trace of its own.
    pub fn system(service: &'static ServiceInfo) -> Self {
        Self {
            request_id: format!("system-{}", Uuid::new_v4()),
            started: Instant::now(),
            service,
            user_id: None,
            session_id: None,
            watcher: None,
            consumed: None,
            trace: TraceContext::fresh(),
        }
    }
    /// Work a consumer does for an event: the event's request id (or its
    /// own id) continues as the request id, and `consumed` records it in the
    /// inbox with the route's first outbox write; `trace` continues the
    /// event's trace.
    pub fn consuming(
        service: &'static ServiceInfo,
        request_id: String,
        consumed: Option<Arc<Consumed>>,
        trace: TraceContext,
    ) -> Self {
        Self {
            request_id,
            started: Instant::now(),
            service,
            user_id: None,
            session_id: None,
            watcher: None,
            consumed,
            trace,
        }
    }
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    /// An answer carrying one object under the route's dataName.
    pub fn reply<T: Serialize>(
        &self,
        route: &'static RouteInfo,
        status: StatusCode,
        data: &T,
    ) -> Result<Reply, ApiError> {
        self.render(route, status, 1, data, None)
    }
    /// An answer carrying a page of rows.
    pub fn reply_list<T: Serialize>(
        &self,
        route: &'static RouteInfo,
        rows: &[T],
        list: &ListMeta,
    ) -> Result<Reply, ApiError> {
        self.render(route, StatusCode::OK, rows.len(), &rows, Some(list))
    }
    fn render<T: Serialize>(
        &self,
        route: &'static RouteInfo,
        status: StatusCode,
        row_count: usize,
        data: &T,
        list: Option<&ListMeta>,
    ) -> Result<Reply, ApiError> {
        let body = Body {
            ctx: self,
            route,
            status,
            row_count,
            data,
            list,
        };
        let json = serde_json::to_string(&body).map_err(ApiError::internal)?;
        Ok(Reply { status, json })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}

fn request_id(parts: &Parts) -> String {
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned)
}

/// Paging of a list answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Paging {
    pub page_number: u32,
    pub page_row_count: u32,
    pub total_row_count: i64,
    pub page_count: i64,
}

impl Paging {
    /// The paging of page `page_number` of `page_row_count` rows, out of
    /// `total_row_count` (`page_row_count` is at least 1: see
    /// [`crate::validation::page`]).
    pub fn new(page_number: u32, page_row_count: u32, total_row_count: i64) -> Self {
        let rows = i64::from(page_row_count.max(1));
        Self {
            page_number,
            page_row_count,
            total_row_count,
            page_count: (total_row_count + rows - 1) / rows,
        }
    }

    /// The rows before this page, for `OFFSET`.
    pub fn offset(page_number: u32, page_row_count: u32) -> i64 {
        i64::from(page_number.saturating_sub(1)) * i64::from(page_row_count)
    }
}

/// A filter a list answer applied.
#[derive(Debug, Clone, Serialize)]
pub struct Filter {
    pub field: &'static str,
    pub op: &'static str,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct ListMeta {
    pub paging: Paging,
    pub filters: Vec<Filter>,
    /// The object's routes the caller may use.
    pub ui_permissions: Vec<&'static str>,
}

/// A successful answer, rendered once: the same JSON is the HTTP body and
/// the payload of the route event.
#[derive(Debug)]
pub struct Reply {
    status: StatusCode,
    json: String,
}

impl Reply {
    pub fn json(&self) -> &str {
        &self.json
    }
    /// The route event that carries this answer, if the route publishes one.
    pub fn event(&self, route: &'static RouteInfo, key: impl ToString) -> Option<Event> {
        route
            .topic
            .map(|topic| Event::raw(topic, key, self.json.clone()))
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.json,
        )
            .into_response()
    }
}

/// The envelope around an answer's data, in the seed's key order.
struct Body<'a, T> {
    ctx: &'a RequestContext,
    route: &'static RouteInfo,
    status: StatusCode,
    row_count: usize,
    data: &'a T,
    list: Option<&'a ListMeta>,
}

impl<T: Serialize> Serialize for Body<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", "OK")?;
        m.serialize_entry("statusCode", self.status.as_str())?;
        m.serialize_entry("elapsedMs", &self.ctx.elapsed_ms())?;
        m.serialize_entry("ssoTime", &None::<u64>)?;
        m.serialize_entry("source", "db")?;
        m.serialize_entry("cacheKey", &None::<String>)?;
        m.serialize_entry("userId", &self.ctx.user_id)?;
        m.serialize_entry("sessionId", &self.ctx.session_id)?;
        m.serialize_entry("requestId", &self.ctx.request_id)?;
        m.serialize_entry("dataName", self.route.data_name)?;
        m.serialize_entry("method", self.route.method)?;
        m.serialize_entry("action", self.route.action)?;
        m.serialize_entry("appVersion", self.ctx.service.app_version)?;
        m.serialize_entry("rowCount", &self.row_count)?;
        m.serialize_entry(self.route.data_name, self.data)?;
        if let Some(list) = self.list {
            m.serialize_entry("paging", &list.paging)?;
            m.serialize_entry("filters", &list.filters)?;
            m.serialize_entry("uiPermissions", &list.ui_permissions)?;
        }
        m.end()
    }
}

/// Answers an unknown path in the envelope.
pub async fn not_found() -> ApiError {
    ApiError::RouteNotFound
}

/// Stamps every request with its start time and puts every error answer,
/// including those of the framework (405, 413), into the envelope. Mounted
/// with `middleware::from_fn_with_state(&SERVICE, errors_in_envelope)`.
pub async fn errors_in_envelope(
    State(service): State<&'static ServiceInfo>,
    mut req: Request,
    next: Next,
) -> Response {
    req.extensions_mut().insert(Arrival {
        started: Instant::now(),
        service,
    });
    let (parts, body) = req.into_parts();
    let ctx = RequestContext::from_parts(&parts);
    let res = next.run(Request::from_parts(parts, body)).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let mut info = match res.extensions().get::<ErrorInfo>() {
        Some(info) => info.clone(),
        None => ErrorInfo::from_status(status),
    };
    info.name_field(|c| service.constraint_field(c));
    let mut out = (
        status,
        Json(ErrorEnvelope {
            ctx: &ctx,
            status,
            info: &info,
        }),
    )
        .into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = res.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

struct ErrorEnvelope<'a> {
    ctx: &'a RequestContext,
    status: StatusCode,
    info: &'a ErrorInfo,
}

impl Serialize for ErrorEnvelope<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", "ERR")?;
        m.serialize_entry("statusCode", self.status.as_str())?;
        m.serialize_entry("errCode", self.info.code)?;
        m.serialize_entry("message", &self.info.message)?;
        m.serialize_entry("details", &self.info.details)?;
        m.serialize_entry("elapsedMs", &self.ctx.elapsed_ms())?;
        m.serialize_entry("requestId", &self.ctx.request_id)?;
        m.serialize_entry("appVersion", self.ctx.service.app_version)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Access;
    use axum::body::{to_bytes, Body as HttpBody};
    use axum::routing::get;
    use axum::{middleware, Router};
    use serde_json::Value;
    use tower::ServiceExt;

    static SERVICE: ServiceInfo = ServiceInfo {
        app_version: "2.1.0",
        body_limit_bytes: 64,
        constraints: &[("books_isbn_key", "isbn")],
    };

    static GET_BOOK: RouteInfo = RouteInfo {
        name: "getBook",
        data_name: "book",
        method: "GET",
        action: "get",
        topic: Some("library-service-book-retrived"),
        access: Access::Public,
    };

    async fn answer(app: Router, uri: &str) -> (StatusCode, Value) {
        let (status, text) = answer_text(app, uri).await;
        (status, serde_json::from_str(&text).expect("JSON"))
    }

    async fn answer_text(app: Router, uri: &str) -> (StatusCode, String) {
        let app = app
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(&SERVICE, errors_in_envelope));
        let req = Request::builder()
            .uri(uri)
            .header("x-request-id", "r-1")
            .body(HttpBody::empty())
            .expect("a valid request");
        let res = app.oneshot(req).await.expect("infallible");
        let status = res.status();
        let bytes = to_bytes(res.into_body(), 1 << 20).await.expect("a body");
        (status, String::from_utf8(bytes.to_vec()).expect("UTF-8"))
    }

    #[tokio::test]
    async fn an_answer_carries_the_seed_envelope_in_order() {
        let app = Router::new().route(
            "/book",
            get(|ctx: RequestContext| async move {
                ctx.reply(&GET_BOOK, StatusCode::OK, &serde_json::json!({"id": 7}))
            }),
        );
        let (status, text) = answer_text(app, "/book").await;
        assert_eq!(status, StatusCode::OK);
        let order = [
            "status",
            "statusCode",
            "elapsedMs",
            "ssoTime",
            "source",
            "cacheKey",
            "userId",
            "sessionId",
            "requestId",
            "dataName",
            "method",
            "action",
            "appVersion",
            "rowCount",
            "book",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|k| {
                text.find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("{k} in {text}"))
            })
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "keys out of order: {text}"
        );
        let body: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(body["requestId"], "r-1");
        assert_eq!(body["appVersion"], "2.1.0");
        assert_eq!(body["book"]["id"], 7);
    }

    #[tokio::test]
    async fn errors_name_the_field_of_a_violated_constraint() {
        let app = Router::new().route(
            "/book",
            get(|| async {
                Err::<(), _>(ApiError::Violated(crate::error::Violation {
                    kind: crate::error::ViolationKind::Unique,
                    constraint: Some("books_isbn_key".into()),
                }))
            }),
        );
        let (status, body) = answer(app, "/book").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["status"], "ERR");
        assert_eq!(body["errCode"], "CONFLICT");
        assert_eq!(body["message"], "isbn is already taken");
        assert_eq!(body["details"][0]["field"], "isbn");
        assert_eq!(body["appVersion"], "2.1.0");
    }

    #[test]
    fn paging_counts_whole_and_partial_pages() {
        assert_eq!(Paging::new(1, 20, 0).page_count, 0);
        assert_eq!(Paging::new(1, 20, 20).page_count, 1);
        assert_eq!(Paging::new(2, 20, 21).page_count, 2);
        assert_eq!(Paging::offset(3, 20), 40);
        assert_eq!(Paging::offset(1, 20), 0);
    }

    #[tokio::test]
    async fn an_unknown_path_is_answered_in_the_envelope() {
        let (status, body) = answer(Router::new(), "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["errCode"], "ROUTE_NOT_FOUND");
        assert_eq!(body["requestId"], "r-1");
    }
}
