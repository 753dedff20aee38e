//! The baselines: minimal hand-written axum + sqlx handlers doing the same SQL
//! as the generated routes (and, for create, the same argon2id hash), with no
//! envelope, no events and no auth.

use airbnb_auth_service::user::{User, SELECT};
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use sqlx::PgPool;
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
