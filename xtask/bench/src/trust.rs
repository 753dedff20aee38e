//! The listing service, which trusts the auth service's tokens: a get route
//! that verifies the caller's token (offline, against the JWKS, and the
//! revocations read from the session topic) beside the same generated get
//! handler without auth, in one run against one broker and database server.

use crate::load::{pair, start_service, wrk};
use crate::{free_port, fresh_database, wait_port, Proc};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub async fn trust_figures() -> Result<()> {
    let http = reqwest::Client::new();
    // The auth service with its broker and database, its superadmin signed in.
    let (auth, session) = start_service(&http).await?;
    let token = session["session"]["accessToken"]
        .as_str()
        .context("login at the auth service")?
        .to_string();
    let listing_port = free_port();
    let _listing = Proc(
        Command::new(
            std::env::var("BENCH_LISTING_BIN")
                .context("BENCH_LISTING_BIN: run through `cargo xtask bench`")?,
        )
        .env("DATABASE_URL", fresh_database().await?)
        .env("HTTP_ADDR", format!("127.0.0.1:{listing_port}"))
        .env("KAFKA_BROKERS", &auth.brokers)
        .env(
            "JWKS_URL",
            format!("{}/v1/.well-known/jwks.json", auth.base),
        )
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .context("starting the listing service")?,
    );
    wait_port(listing_port).await?;
    let listing = format!("http://127.0.0.1:{listing_port}");
    // Until it has the keys and has read the session topic, it answers 503.
    let deadline = Instant::now() + Duration::from_secs(30);
    let created: Value = loop {
        let res = http
            .post(format!("{listing}/v1/listings"))
            .bearer_auth(&token)
            .json(&json!({ "title": "Bench flat", "city": "Lisbon", "pricePerNight": 100, "maxGuests": 2 }))
            .send()
            .await?;
        if res.status().is_success() {
            break res.json().await?;
        }
        if Instant::now() > deadline {
            bail!(
                "the listing service did not trust the auth service: {}",
                res.status()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = created["listing"]["id"].as_str().context("listing id")?;
    let ours = wrk(
        &format!("{listing}/v1/my/listings/{id}"),
        16,
        Some(&token),
        None,
    )
    .await?;
    let bare = wrk(&format!("{listing}/v1/listings/{id}"), 16, None, None).await?;
    pair(
        "getListing: verified token vs the same get without auth",
        &ours,
        &bare,
        0.8,
    );
    Ok(())
}
