//! Avatar files end to end: multipart uploads streamed with the model's size
//! limit, types sniffed from the bytes, downloads by id and by access key.

use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::{auth_service, expect, Api, TestDb};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const MAX_BYTES: usize = 2 * 1024 * 1024;

/// A file that sniffs as PNG: the signature, then `len` more bytes that are
/// not all alike (so that a byte lost or moved shows).
fn png(len: usize) -> Vec<u8> {
    let mut bytes = PNG_MAGIC.to_vec();
    bytes.extend((0..len).map(|i| (i * 31 % 251) as u8));
    bytes
}

/// Registers and signs in an account with role `user`.
async fn member(api: &Api, email: &str) -> (Api, String) {
    let (status, body) = api
        .anonymous()
        .post(
            "/v1/register",
            json!({ "email": email, "password": "a decent secret", "fullname": "M" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["user"]["id"].as_str().unwrap().to_string();
    (api.as_user(email, "a decent secret").await, id)
}

/// POSTs a multipart form to the upload route.
async fn upload(api: &Api, form: Form) -> (StatusCode, Value) {
    let mut req = api
        .client
        .post(format!("{}/v1/useravatarsfiles", api.base))
        .multipart(form);
    if let Some(t) = &api.token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("upload");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn file_part(bytes: Vec<u8>, name: &str) -> Part {
    Part::bytes(bytes).file_name(name.to_string())
}

/// GETs a download route: status, headers and the raw bytes.
async fn download(
    api: &Api,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = api.client.get(format!("{}{path}", api.base));
    if let Some(t) = &api.token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("download");
    let (status, h) = (res.status(), res.headers().clone());
    (status, h, res.bytes().await.expect("body").to_vec())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn outbox_rows(db: &TestDb) -> i64 {
    db.count("event_outbox").await
}

#[tokio::test]
async fn multipart_upload_round_trips_byte_for_byte() {
    let (server, _db) = auth_service().await;
    let (owner, owner_id) = member(&server, "own@x.io").await;
    // Larger than one chunk of the stream, well under the limit.
    let bytes = png(600 * 1024);
    let form = Form::new()
        .text("metadata", r#"{"w": 64, "h": 64}"#)
        .part("fileData", file_part(bytes.clone(), "me.png"));
    let created = expect(StatusCode::CREATED, &upload(&owner, form).await);
    let file = &created["userAvatarsFile"];
    let id = file["id"].as_str().unwrap();
    assert_eq!(file["fileName"], "me.png", "taken from the part");
    assert_eq!(file["mimeType"], "image/png", "sniffed from the bytes");
    assert_eq!(file["fileSize"], bytes.len());
    assert_eq!(file["metadata"], json!({ "w": 64, "h": 64 }));
    assert_eq!(file["userId"], owner_id.as_str(), "bound to the caller");
    assert_eq!(file["ownerId"], owner_id.as_str());
    let href = format!("/v1/useravatarsfiles/{id}/file");
    assert_eq!(file["fileData"], json!({ "omitted": true, "href": href }));

    let (status, h, got) = download(&owner, &href, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, bytes, "byte for byte");
    assert_eq!(header(&h, "content-type"), "image/png");
    assert_eq!(header(&h, "content-length"), bytes.len().to_string());
    assert_eq!(header(&h, "cache-control"), "private, no-cache");
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(&h, "content-disposition"),
        "inline; filename=\"me.png\""
    );
    let etag = header(&h, "etag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let (status, h, body) = download(&owner, &href, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(header(&h, "etag"), etag);

    // Publicly, by the unguessable key, cacheable.
    let key = file["accessKey"].as_str().unwrap();
    let (status, h, got) = download(
        &server.anonymous(),
        &format!("/v1/useravatarsfiles/key/{key}"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, bytes);
    assert_eq!(header(&h, "cache-control"), "public, max-age=86400");
    assert_eq!(header(&h, "content-type"), "image/png");

    // The JSON path still works, and both kinds of body store the same way.
    let small = png(100);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&small);
    let json_created = expect(
        StatusCode::CREATED,
        &owner
            .post(
                "/v1/useravatarsfiles",
                json!({ "fileName": "j.png", "fileData": b64 }),
            )
            .await,
    );
    let jid = json_created["userAvatarsFile"]["id"].as_str().unwrap();
    let (_, h, got) = download(&owner, &format!("/v1/useravatarsfiles/{jid}/file"), &[]).await;
    assert_eq!(got, small);
    assert_eq!(header(&h, "content-type"), "image/png");
}

#[tokio::test]
async fn a_stranger_cannot_fetch_a_private_file() {
    let (server, _db) = auth_service().await;
    let (owner, _) = member(&server, "own@x.io").await;
    let (stranger, _) = member(&server, "str@x.io").await;
    let admin = server.admin().await;
    let bytes = png(1000);
    let created = expect(
        StatusCode::CREATED,
        &upload(
            &owner,
            Form::new().part("fileData", file_part(bytes.clone(), "p.png")),
        )
        .await,
    );
    let id = created["userAvatarsFile"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = created["userAvatarsFile"]["accessKey"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/useravatarsfiles/{id}/file");

    let (status, _, body) = download(&stranger, &path, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let envelope: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(envelope["errCode"], "FORBIDDEN", "errors keep the envelope");
    assert_eq!(
        download(&server.anonymous(), &path, &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, got) = download(&admin, &path, &[]).await;
    assert_eq!((status, got), (StatusCode::OK, bytes));
    // A guessed key finds nothing.
    let wrong = format!("/v1/useravatarsfiles/key/{}", "0".repeat(64));
    assert_eq!(
        download(&server.anonymous(), &wrong, &[]).await.0,
        StatusCode::NOT_FOUND
    );

    // Deleted: gone by id and by key.
    expect(
        StatusCode::OK,
        &owner.delete(&format!("/v1/useravatarsfiles/{id}")).await,
    );
    assert_eq!(download(&owner, &path, &[]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        download(
            &server.anonymous(),
            &format!("/v1/useravatarsfiles/key/{key}"),
            &[]
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn oversize_and_disguised_files_are_refused_and_leave_nothing() {
    let (server, db) = auth_service().await;
    let (owner, _) = member(&server, "own@x.io").await;
    let before = outbox_rows(&db).await;

    // One byte over the limit, streamed: 413 in the envelope.
    let (status, body) = upload(
        &owner,
        Form::new().part(
            "fileData",
            file_part(png(MAX_BYTES + 1 - PNG_MAGIC.len()), "big.png"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["errCode"], "PAYLOAD_TOO_LARGE");
    assert_eq!(body["status"], "ERR");
    // Far over: refused while streaming, before the whole body arrives.
    let (status, _) = upload(
        &owner,
        Form::new().part("fileData", file_part(png(8 * MAX_BYTES), "huge.png")),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let pdf = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n".to_vec();
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00;".to_vec();
    let text = b"just some text pretending to be a picture".to_vec();
    for (bytes, declared, why) in [
        (
            pdf.clone(),
            Some("image/png"),
            "a PDF named and declared a PNG",
        ),
        (pdf, None, "a PDF: not an accepted type"),
        (gif, Some("image/png"), "a GIF declared a PNG"),
        (text, None, "no recognizable type"),
    ] {
        let mut form = Form::new();
        if let Some(d) = declared {
            form = form.text("mimeType", d);
        }
        form = form.part("fileData", file_part(bytes, "a.png"));
        let (status, body) = upload(&owner, form).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{why}: {body}");
        assert_eq!(body["errCode"], "UNSUPPORTED_MEDIA_TYPE", "{why}");
    }
    // The same checks hold for the JSON body.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4\n%%EOF\n");
    let (status, _) = owner
        .post(
            "/v1/useravatarsfiles",
            json!({ "fileName": "a.png", "mimeType": "image/png", "fileData": b64 }),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    assert_eq!(
        db.count("user_avatars_files").await,
        0,
        "no row left behind"
    );
    assert_eq!(outbox_rows(&db).await, before, "no event left behind");
}

#[tokio::test]
async fn non_admins_upload_only_for_themselves() {
    let (server, _db) = auth_service().await;
    let (owner, owner_id) = member(&server, "own@x.io").await;
    let (_, other_id) = member(&server, "oth@x.io").await;
    let admin = server.admin().await;
    for field in ["userId", "ownerId"] {
        let (status, body) = upload(
            &owner,
            Form::new()
                .text(field, other_id.clone())
                .part("fileData", file_part(png(10), "a.png")),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{field}: {body}");
    }
    // Naming oneself is fine.
    let own = expect(
        StatusCode::CREATED,
        &upload(
            &owner,
            Form::new()
                .text("userId", owner_id.clone())
                .part("fileData", file_part(png(10), "a.png")),
        )
        .await,
    );
    assert_eq!(own["userAvatarsFile"]["userId"], owner_id.as_str());
    // An admin may upload for anyone.
    let theirs = expect(
        StatusCode::CREATED,
        &upload(
            &admin,
            Form::new()
                .text("userId", other_id.clone())
                .part("fileData", file_part(png(10), "a.png")),
        )
        .await,
    );
    assert_eq!(theirs["userAvatarsFile"]["userId"], other_id.as_str());
}

#[tokio::test]
async fn an_upload_becomes_its_users_avatar_until_deleted() {
    let (server, db) = auth_service().await;
    let (owner, owner_id) = member(&server, "own@x.io").await;
    let bytes = png(500);
    let created = expect(
        StatusCode::CREATED,
        &upload(
            &owner,
            Form::new().part("fileData", file_part(bytes.clone(), "a.png")),
        )
        .await,
    );
    let file = &created["userAvatarsFile"];
    let href = format!(
        "/v1/useravatarsfiles/key/{}",
        file["accessKey"].as_str().unwrap()
    );
    let me = expect(
        StatusCode::OK,
        &owner.get(&format!("/v1/users/{owner_id}")).await,
    );
    assert_eq!(me["user"]["avatar"], href.as_str());
    assert_eq!(me["user"]["recordVersion"], 2, "the user row was updated");
    let (status, _, got) = download(&server.anonymous(), &href, &[]).await;
    assert_eq!((status, got), (StatusCode::OK, bytes));
    // The search document follows, and the update was published.
    let mut conn = db.connect().await;
    let (avatar,): (Option<String>,) = sqlx::query_as(
        "SELECT doc->>'avatar' FROM search_documents WHERE index_name = 'airbnb_user' AND id = $1::uuid",
    )
    .bind(&owner_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(avatar.as_deref(), Some(href.as_str()));
    let (updates,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM event_outbox WHERE topic = 'airbnb3-auth-service-dbevent-user-updated' AND event_key = $1",
    )
    .bind(&owner_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(updates, 1);

    // A newer upload takes over; deleting the older one leaves it alone.
    let newer = expect(
        StatusCode::CREATED,
        &upload(
            &owner,
            Form::new().part("fileData", file_part(png(20), "b.png")),
        )
        .await,
    );
    let newer_href = format!(
        "/v1/useravatarsfiles/key/{}",
        newer["userAvatarsFile"]["accessKey"].as_str().unwrap()
    );
    expect(
        StatusCode::OK,
        &owner
            .delete(&format!(
                "/v1/useravatarsfiles/{}",
                file["id"].as_str().unwrap()
            ))
            .await,
    );
    let me = expect(
        StatusCode::OK,
        &owner.get(&format!("/v1/users/{owner_id}")).await,
    );
    assert_eq!(me["user"]["avatar"], newer_href.as_str());
    // Deleting the shown file clears the avatar.
    expect(
        StatusCode::OK,
        &owner
            .delete(&format!(
                "/v1/useravatarsfiles/{}",
                newer["userAvatarsFile"]["id"].as_str().unwrap()
            ))
            .await,
    );
    let me = expect(
        StatusCode::OK,
        &owner.get(&format!("/v1/users/{owner_id}")).await,
    );
    assert_eq!(me["user"]["avatar"], Value::Null);
}

#[tokio::test]
async fn file_names_keep_only_their_own_name() {
    let (server, db) = auth_service().await;
    let (owner, _) = member(&server, "own@x.io").await;
    let disposition_of = |id: String| {
        let owner = owner.clone();
        async move {
            let (status, h, _) =
                download(&owner, &format!("/v1/useravatarsfiles/{id}/file"), &[]).await;
            assert_eq!(status, StatusCode::OK);
            header(&h, "content-disposition").to_string()
        }
    };

    // The part's name loses its path before it is stored and echoed.
    let created = expect(
        StatusCode::CREATED,
        &upload(
            &owner,
            Form::new().part("fileData", file_part(png(100), "../../../../etc/passwd")),
        )
        .await,
    );
    let file = &created["userAvatarsFile"];
    assert_eq!(file["fileName"], "passwd");
    assert_eq!(
        disposition_of(file["id"].as_str().unwrap().to_string()).await,
        "inline; filename=\"passwd\""
    );

    // A given name too: Windows separators, control and direction characters.
    let created = expect(
        StatusCode::CREATED,
        &upload(
            &owner,
            Form::new()
                .text("fileName", "..\\..\\evil\r\n\u{202E}gnp.exe")
                .part("fileData", file_part(png(100), "p.png")),
        )
        .await,
    );
    assert_eq!(created["userAvatarsFile"]["fileName"], "evilgnp.exe");

    // Look-alike slashes separate too; invisible and format characters go.
    for (given, kept) in [
        ("x\u{2044}..\u{2044}etc\u{2215}passwd", "passwd"),
        ("x\u{ff0f}..\u{ff0f}y.png", "y.png"),
        ("x\u{ff3c}..\u{29f9}z.png", "z.png"),
        ("a\u{2028}b.png", "ab.png"),
        ("a\u{00ad}b\u{2060}c\u{180e}.png", "abc.png"),
    ] {
        let created = expect(
            StatusCode::CREATED,
            &upload(
                &owner,
                Form::new()
                    .text("fileName", given)
                    .part("fileData", file_part(png(100), "p.png")),
            )
            .await,
        );
        assert_eq!(created["userAvatarsFile"]["fileName"], kept, "{given:?}");
    }

    // Nothing left is refused, naming the field; nothing is written.
    let files = db.count("user_avatars_files").await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(100));
    for name in [
        "../",
        "/etc/..",
        "\u{7}",
        "C:\\",
        "...",
        ". .",
        "x\u{2215}",
        "\u{00ad}\u{2060}",
    ] {
        let bad = expect(
            StatusCode::BAD_REQUEST,
            &owner
                .post(
                    "/v1/useravatarsfiles",
                    json!({ "fileName": name, "fileData": b64 }),
                )
                .await,
        );
        assert_eq!(tests::error_fields(&bad), ["fileName"], "{name:?}: {bad}");
    }
    let bad = expect(
        StatusCode::BAD_REQUEST,
        &upload(
            &owner,
            Form::new().part("fileData", file_part(png(100), "../")),
        )
        .await,
    );
    assert_eq!(tests::error_fields(&bad), ["fileName"], "{bad}");
    assert_eq!(db.count("user_avatars_files").await, files);

    // Quotes and non-ASCII: a safe quoted fallback and the exact name in filename*.
    let created = expect(
        StatusCode::CREATED,
        &owner
            .post(
                "/v1/useravatarsfiles",
                json!({ "fileName": "été \"1\";.png", "fileData": b64 }),
            )
            .await,
    );
    let file = &created["userAvatarsFile"];
    assert_eq!(file["fileName"], "été \"1\";.png");
    let id = file["id"].as_str().unwrap().to_string();
    assert_eq!(
        disposition_of(id.clone()).await,
        "inline; filename=\"_t_ _1_;.png\"; filename*=UTF-8''%C3%A9t%C3%A9%20%221%22%3B.png"
    );

    // A name stored before the cleaning is cleaned on the way out.
    sqlx::query("UPDATE user_avatars_files SET file_name = $1 WHERE id = $2::uuid")
        .bind("../../../../etc/passwd")
        .bind(&id)
        .execute(&mut db.connect().await)
        .await
        .unwrap();
    assert_eq!(disposition_of(id).await, "inline; filename=\"passwd\"");
}
