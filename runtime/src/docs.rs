//! The service's contracts and docs, generated with it from the model and
//! served as files: OpenAPI, AsyncAPI, the protobuf schema of session events,
//! the event guide, and an interactive API page that needs no network.

use axum::http::header;
use axum::routing::get;
use axum::Router;

/// The texts of a service's contracts, embedded by the generated crate.
#[derive(Debug)]
pub struct Docs {
    /// `openapi.json`, generated beside the crate's code so the two cannot drift.
    pub openapi: &'static str,
    /// `asyncapi.json`: every topic, its messages, headers and keys.
    pub asyncapi: &'static str,
    /// `proto/session.proto`: the schema of the session events, when the
    /// service issues them (a trusting service only reads its issuer's).
    pub session_proto: Option<&'static str>,
    /// `docs/event-guide.md`: what each topic carries and when it fires.
    pub event_guide: &'static str,
    /// `docs/index.html`: the interactive API page.
    pub page: &'static str,
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const MARKDOWN: &str = "text/markdown; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Serves `docs` at `/openapi.json`, `/asyncapi.json`, `/session.proto`
/// (when there is one), `/docs/event-guide.md` and `/docs`.
pub fn router<S: Clone + Send + Sync + 'static>(docs: &'static Docs) -> Router<S> {
    let file = |content_type: &'static str, text: &'static str| {
        get(move || async move { ([(header::CONTENT_TYPE, content_type)], text) })
    };
    let router = Router::new()
        .route("/openapi.json", file(JSON, docs.openapi))
        .route("/asyncapi.json", file(JSON, docs.asyncapi))
        .route("/docs/event-guide.md", file(MARKDOWN, docs.event_guide))
        .route("/docs", file(HTML, docs.page));
    match docs.session_proto {
        Some(proto) => router.route("/session.proto", file(TEXT, proto)),
        None => router,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::extract::Request;
    use tower::ServiceExt;

    static DOCS: Docs = Docs {
        openapi: "{\"openapi\":\"3.1.0\"}",
        asyncapi: "{}",
        session_proto: Some("syntax = \"proto3\";"),
        event_guide: "# Events",
        page: "<html></html>",
    };

    #[tokio::test]
    async fn each_document_is_served_with_its_type() {
        for (path, kind, text) in [
            ("/openapi.json", JSON, DOCS.openapi),
            ("/session.proto", TEXT, "syntax = \"proto3\";"),
            ("/docs/event-guide.md", MARKDOWN, DOCS.event_guide),
            ("/docs", HTML, DOCS.page),
        ] {
            let req = Request::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request");
            let res = router::<()>(&DOCS).oneshot(req).await.expect("infallible");
            assert_eq!(res.headers()[header::CONTENT_TYPE], kind, "{path}");
            let body = to_bytes(res.into_body(), 1 << 16).await.expect("body");
            assert_eq!(body, text.as_bytes(), "{path}");
        }
    }
}
