//! The baselines: minimal hand-written axum + sqlx handlers doing the same SQL
//! as the generated routes (and, for create, the same argon2id hash). The bare
//! ones answer the rows alone: no envelope, no events, no auth. The
//! contract-equivalent ones ([`contract_router`]) also do what the contract
//! asks of every read, written the plain way a hand-written service would.

use airbnb_auth_service::auth::IDENTITY;
use airbnb_auth_service::config::Config;
use airbnb_auth_service::spec::{KAFKA, SERVICE};
use airbnb_auth_service::user::{User, GET_USER, LIST_USERS, SELECT};
use anyhow::Context;
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{DecodingKey, Validation};
use rdkafka::producer::FutureProducer;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use svcgen_runtime::kafka::RecordMeta;
use svcgen_runtime::route::RouteInfo;
use uuid::Uuid;

pub fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).unwrap_or_default(),
    )
}

pub fn router(db: PgPool) -> Router {
    Router::new()
        .route("/users/{id}", get(get_user))
        .route("/users", get(list_users).post(create_user))
        .with_state(db)
}

async fn get_user(
    State(db): State<PgPool>,
    Path(id): Path<Uuid>,
) -> Result<Json<User>, StatusCode> {
    sqlx::query_as(&format!(
        "SELECT {SELECT} FROM users AS t WHERE t.id = $1 AND t.is_active"
    ))
    .bind(id)
    .fetch_optional(&db)
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
    .map(Json)
    .ok_or(StatusCode::NOT_FOUND)
}

async fn list_users(State(db): State<PgPool>) -> Result<Json<Vec<User>>, StatusCode> {
    sqlx::query_as(&format!(
        "SELECT {SELECT} FROM users AS t WHERE t.is_active ORDER BY t.created_at DESC, t.id DESC LIMIT 20"
    ))
    .fetch_all(&db)
    .await
    .map(Json)
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

async fn create_user(
    State(db): State<PgPool>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<User>), StatusCode> {
    let field = |k: &str| {
        body[k]
            .as_str()
            .map(str::to_owned)
            .ok_or(StatusCode::BAD_REQUEST)
    };
    let (email, password, fullname) = (field("email")?, field("password")?, field("fullname")?);
    let hash = tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .map(|h| h.to_string())
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let id = Uuid::new_v4();
    let row: User = sqlx::query_as(&format!(
        "INSERT INTO users AS t (id, email, password, fullname, _owner) VALUES ($1, $2, $3, $4, $1) RETURNING {SELECT}"
    ))
    .bind(id)
    .bind(email)
    .bind(hash)
    .bind(fullname)
    .fetch_one(&db)
    .await
    .map_err(|_| StatusCode::CONFLICT)?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Verifications per second that argon2id alone allows with `workers` at once.
pub async fn verify_rate(workers: usize, seconds: u64) -> f64 {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let hash = argon2()
        .hash_password(b"correct horse battery", &SaltString::generate(&mut OsRng))
        .map(|h| h.to_string())
        .unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let hash = hash.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut n = 0u64;
            while std::time::Instant::now() < deadline {
                if let Ok(h) = PasswordHash::new(&hash) {
                    if argon2()
                        .verify_password(b"correct horse battery", &h)
                        .is_ok()
                    {
                        n += 1;
                    }
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / seconds as f64
}

/// What a hand-written service must do on a read besides its SQL: check the
/// bearer token (EdDSA against the issuer's JWKS key, issuer, audience and
/// expiry; a verified token is remembered until it expires, as ours does),
/// answer in the seed's envelope, and produce the route event carrying that
/// envelope on the same broker with the same producer settings and
/// CloudEvents headers. What it leaves out, ours also does: the live-session
/// check, role rules, metrics, traces, the request-id header.
pub struct Contract {
    db: PgPool,
    key: DecodingKey,
    validation: Validation,
    verified: Mutex<HashMap<String, Claims>>,
    producer: FutureProducer,
}

/// A read's start, checked caller and request id.
struct Asked {
    started: Instant,
    caller: Claims,
    request_id: String,
}

#[derive(Clone, serde::Deserialize)]
struct Claims {
    sub: Uuid,
    sid: Uuid,
    exp: i64,
}

/// The seed's envelope around one route's data, in the seed's key order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T> {
    status: &'static str,
    status_code: &'static str,
    elapsed_ms: u64,
    sso_time: Option<u64>,
    source: &'static str,
    cache_key: Option<String>,
    user_id: Uuid,
    session_id: Uuid,
    request_id: &'a str,
    data_name: &'static str,
    method: &'static str,
    action: &'static str,
    app_version: &'static str,
    row_count: usize,
    #[serde(flatten)]
    data: T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    page_number: u32,
    page_row_count: u32,
    total_row_count: i64,
    page_count: i64,
}

#[derive(sqlx::FromRow)]
struct CountedUser {
    #[sqlx(flatten)]
    user: User,
    total_row_count: i64,
}

impl Contract {
    /// Reads the issuer's one key from `jwks_url`; produces to `brokers` as
    /// the service's read-event producer is configured by default.
    pub async fn new(db: PgPool, jwks_url: &str, brokers: &str) -> anyhow::Result<Arc<Self>> {
        let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(jwks_url).await?.json().await?;
        let jwk = jwks.keys.first().context("the JWKS has no key")?;
        let mut validation = Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.set_issuer(&[IDENTITY.tokens.issuer]);
        validation.set_audience(&[IDENTITY.tokens.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        let settings = &Config::from_lookup(|k| match k {
            "KAFKA_BROKERS" => Some(brokers.into()),
            // Required by the config, never used: only its Kafka settings are read.
            "DATABASE_URL" => Some("postgres://unused".into()),
            _ => None,
        })?
        .kafka;
        let producer = settings.publisher_config(&KAFKA, brokers).create()?;
        Ok(Arc::new(Self {
            db,
            key: DecodingKey::from_jwk(jwk)?,
            validation,
            verified: Mutex::default(),
            producer,
        }))
    }

    /// The request's start, its checked caller and its request id.
    fn admit(&self, headers: &HeaderMap) -> Result<Asked, StatusCode> {
        let started = Instant::now();
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
        let now = chrono::Utc::now().timestamp();
        let mut verified = self
            .verified
            .lock()
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        let caller = match verified.get(token).filter(|c| c.exp > now) {
            Some(claims) => claims.clone(),
            None => {
                let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
                    .map_err(|_| StatusCode::UNAUTHORIZED)?
                    .claims;
                verified.insert(token.to_owned(), claims.clone());
                claims
            }
        };
        Ok(Asked {
            started,
            caller,
            request_id,
        })
    }

    /// Answers `data` in the envelope and produces it as the route's event.
    fn answer<T: Serialize>(
        &self,
        route: &RouteInfo,
        asked: &Asked,
        row_count: usize,
        data: T,
        key: &str,
    ) -> Result<Response, StatusCode> {
        let Asked {
            started,
            caller,
            request_id,
        } = asked;
        let body = serde_json::to_string(&Envelope {
            status: "OK",
            status_code: "200",
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            sso_time: None,
            source: "db",
            cache_key: None,
            user_id: caller.sub,
            session_id: caller.sid,
            request_id,
            data_name: route.data_name,
            method: route.method,
            action: route.action,
            app_version: SERVICE.app_version,
            row_count,
            data,
        })
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        let traceparent = svcgen_runtime::trace::TraceContext::fresh().traceparent();
        let time = chrono::Utc::now().to_rfc3339();
        let topic = route.topic.ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
        let record = svcgen_runtime::kafka::record(
            KAFKA.source,
            Uuid::new_v4(),
            topic,
            key,
            &body,
            &RecordMeta {
                request_id: Some(request_id),
                traceparent: Some(&traceparent),
                tracestate: None,
                time: &time,
            },
        );
        // As ours: a read never waits for the broker; a full queue drops the event.
        let _ = self.producer.send_result(record);
        Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}

pub fn contract_router(contract: Arc<Contract>) -> Router {
    Router::new()
        .route("/users/{id}", get(contract_get_user))
        .route("/users", get(contract_list_users))
        .with_state(contract)
}

async fn contract_get_user(
    State(c): State<Arc<Contract>>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, StatusCode> {
    let asked = c.admit(&headers)?;
    let row: User = sqlx::query_as(&format!(
        "SELECT {SELECT} FROM users AS t WHERE t.id = $1 AND t.is_active"
    ))
    .bind(id)
    .fetch_optional(&c.db)
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
    .ok_or(StatusCode::NOT_FOUND)?;
    #[derive(Serialize)]
    struct Data {
        user: User,
    }
    c.answer(&GET_USER, &asked, 1, Data { user: row }, &id.to_string())
}

async fn contract_list_users(
    State(c): State<Arc<Contract>>,
    headers: HeaderMap,
) -> Result<Response, StatusCode> {
    let asked = c.admit(&headers)?;
    let rows: Vec<CountedUser> = sqlx::query_as(&format!(
        "SELECT {SELECT}, count(*) OVER () AS total_row_count FROM users AS t WHERE t.is_active ORDER BY t.created_at DESC, t.id DESC LIMIT 20 OFFSET 0"
    ))
    .fetch_all(&c.db)
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let total = rows.first().map_or(0, |r| r.total_row_count);
    let users: Vec<User> = rows.into_iter().map(|r| r.user).collect();
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        users: Vec<User>,
        paging: Page,
        filters: [(); 0],
        ui_permissions: &'static [&'static str],
    }
    let data = Data {
        paging: Page {
            page_number: 1,
            page_row_count: 20,
            total_row_count: total,
            page_count: (total + 19) / 20,
        },
        users,
        filters: [],
        ui_permissions: &[],
    };
    let row_count = data.users.len();
    let key = Uuid::new_v4().to_string();
    c.answer(&LIST_USERS, &asked, row_count, data, &key)
}
