//! The Elasticsearch (or OpenSearch) mirror of the search indexes, used when
//! `ELASTICSEARCH_URL` is set: documents are sent with the `_bulk` API, fed
//! from the outbox (each index event names documents to send again, so the
//! mirror catches up after an outage), and search routes query `_search`.
//! PostgreSQL stays the source of the documents.

use crate::envelope::Filter;
use crate::error::ApiError;
use crate::search::{Search, SearchIndex};
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// An Elasticsearch endpoint.
#[derive(Debug, Clone)]
pub struct Elastic {
    client: reqwest::Client,
    url: String,
}

/// One search request, before it becomes a `_search` body.
#[derive(Debug)]
pub struct Query<'a> {
    pub index: &'a str,
    pub keyword: &'a str,
    /// Searchable fields with their boosts, e.g. `email^3`.
    pub fields: &'a [&'a str],
    /// Equality filters the route applied.
    pub filters: &'a [Filter],
    /// Only documents this account owns.
    pub owner: Option<(&'a str, Uuid)>,
    /// `{"field": "asc"}` when the client chose an order; by score otherwise.
    pub sort: Option<Value>,
    pub from: i64,
    pub size: i64,
}

impl Elastic {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            client,
            url: url.trim_end_matches('/').to_string(),
        })
    }

    /// Sends a `_bulk` body; fails unless every action succeeded (a delete of
    /// a document that is not there counts as done).
    pub async fn bulk(&self, body: String) -> anyhow::Result<()> {
        let res = self
            .client
            .post(format!("{}/_bulk", self.url))
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await?;
        let status = res.status();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("_bulk answered {status}: {answer}");
        }
        if bulk_failed(&answer) {
            anyhow::bail!("_bulk reported failed items: {answer}");
        }
        Ok(())
    }

    /// Runs a search: the hits' documents (with `_score`) and the total.
    pub async fn search(&self, q: &Query<'_>) -> Result<(Vec<Map<String, Value>>, i64), ApiError> {
        let res = self
            .client
            .post(format!("{}/{}/_search", self.url, q.index))
            .json(&search_body(q))
            .send()
            .await
            .map_err(ApiError::internal)?;
        let status = res.status();
        let answer: Value = res.json().await.map_err(ApiError::internal)?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok((Vec::new(), 0));
        }
        if !status.is_success() {
            return Err(ApiError::internal(anyhow::anyhow!(
                "_search answered {status}: {answer}"
            )));
        }
        let total = answer["hits"]["total"]["value"].as_i64().unwrap_or(0);
        let hits = answer["hits"]["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| {
                let mut doc = h["_source"].as_object()?.clone();
                doc.insert("_score".into(), h["_score"].clone());
                Some(doc)
            })
            .collect();
        Ok((hits, total))
    }
}

/// Whether a `_bulk` answer reports an action that did not succeed; a delete
/// of a document that is not there counts as done.
fn bulk_failed(answer: &Value) -> bool {
    if answer["errors"] != true {
        return false;
    }
    answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_object()?.values().next())
        .any(|action| {
            let code = action["status"].as_u64().unwrap_or(500);
            let done =
                (200..300).contains(&code) || (code == 404 && action["result"] == "not_found");
            !done
        })
}

/// The `_search` body: every word of the keyword must begin a word of one of
/// the fields (`multi_match` of type `bool_prefix`, operator `and`), the
/// route's filters as exact `term`s (text on its `.keyword` sub-field), ranked
/// by score with the id breaking ties so that pages never overlap.
pub fn search_body(q: &Query<'_>) -> Value {
    let mut filter: Vec<Value> = q
        .filters
        .iter()
        .map(|f| {
            let field = if f.value.is_string() {
                format!("{}.keyword", f.field)
            } else {
                f.field.to_string()
            };
            json!({ "term": { field: f.value } })
        })
        .collect();
    if let Some((field, owner)) = q.owner {
        filter.push(json!({ "term": { format!("{field}.keyword"): owner.to_string() } }));
    }
    let mut sort = Vec::new();
    match &q.sort {
        Some(s) => sort.push(s.clone()),
        None => sort.push(json!({ "_score": "desc" })),
    }
    sort.push(json!({ "id.keyword": "asc" }));
    json!({
        "from": q.from,
        "size": q.size,
        "track_total_hits": true,
        "query": { "bool": {
            "must": [{ "multi_match": { "query": q.keyword, "type": "bool_prefix", "operator": "and", "fields": q.fields } }],
            "filter": filter,
        } },
        "sort": sort,
    })
}

/// The `_bulk` body (NDJSON): an `index` action with the document for each
/// document that exists, a `delete` for each that does not.
pub fn bulk_body(actions: &[(&str, Uuid, Option<Value>)]) -> String {
    let mut out = String::new();
    for (index, id, doc) in actions {
        match doc {
            Some(doc) => {
                out.push_str(&json!({ "index": { "_index": index, "_id": id } }).to_string());
                out.push('\n');
                out.push_str(&doc.to_string());
            }
            None => out.push_str(&json!({ "delete": { "_index": index, "_id": id } }).to_string()),
        }
        out.push('\n');
    }
    out
}

/// The current documents (with their extends) of `ids` in `index`.
async fn documents(
    db: &PgPool,
    index: &SearchIndex,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Value)>, sqlx::Error> {
    let rows: Vec<(Uuid, sqlx::types::Json<Value>)> = sqlx::query_as(
        "SELECT id, doc || jsonb_build_object('extends', extends) FROM search_documents WHERE index_name = $1 AND id = ANY($2)",
    )
    .bind(index.name)
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(id, doc)| (id, doc.0)).collect())
}

/// Sends the documents of `ids` (deletes for those gone).
async fn send(db: &PgPool, es: &Elastic, index: &SearchIndex, ids: &[Uuid]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let found = documents(db, index, ids).await?;
    let actions: Vec<(&str, Uuid, Option<Value>)> = ids
        .iter()
        .map(|id| {
            (
                index.name,
                *id,
                found.iter().find(|(f, _)| f == id).map(|(_, d)| d.clone()),
            )
        })
        .collect();
    es.bulk(bulk_body(&actions)).await
}

/// Mirrors the index events of `search` not yet mirrored, oldest first; returns how many
/// were handled. One replica at a time (an advisory lock); events are marked
/// only after Elasticsearch accepted their documents.
pub async fn sync_once(
    db: &PgPool,
    es: &Elastic,
    search: &Search,
    batch: i64,
) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let mine: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('search_mirror'))")
            .fetch_one(&mut *tx)
            .await?;
    if !mine {
        return Ok(0);
    }
    let topics: Vec<&str> = search.topics.iter().map(|(t, _)| *t).collect();
    let events: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT id, topic, payload FROM event_outbox WHERE search_synced_at IS NULL AND topic = ANY($1) ORDER BY id LIMIT $2",
    )
    .bind(&topics)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    if events.is_empty() {
        return Ok(0);
    }
    let mut wanted: Vec<(&'static SearchIndex, Vec<Uuid>)> = Vec::new();
    for (_, topic, payload) in &events {
        let Some(object) = search.object_of_topic(topic) else {
            continue;
        };
        let row: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        for (index, ids) in search.touched(&mut tx, object, &[&row]).await? {
            match wanted.iter_mut().find(|(i, _)| std::ptr::eq(*i, index)) {
                Some((_, all)) => all.extend(ids),
                None => wanted.push((index, ids)),
            }
        }
    }
    for (index, ids) in &mut wanted {
        ids.sort_unstable();
        ids.dedup();
        send(db, es, index, ids).await?;
    }
    let ids: Vec<i64> = events.iter().map(|(id, _, _)| *id).collect();
    sqlx::query("UPDATE event_outbox SET search_synced_at = now() WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(events.len())
}

/// Keeps the mirror of `search` in step until `stop`, backing off while Elasticsearch
/// is unreachable.
pub async fn run_sync(
    db: PgPool,
    es: Arc<Elastic>,
    search: &'static Search,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        let wait = match sync_once(&db, &es, search, 500).await {
            Ok(0) => Duration::from_millis(200),
            Ok(_) => {
                backoff = Duration::from_millis(100);
                continue;
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = backoff.as_millis() as u64,
                    "search mirror failed; backing off"
                );
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {},
            _ = stop.changed() => {},
        }
    }
}

/// Sends every document of `index` (after a rebuild, or an outage longer
/// than the outbox keeps its events).
pub async fn push_all(db: &PgPool, es: &Elastic, index: &SearchIndex) -> anyhow::Result<()> {
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM search_documents WHERE index_name = $1 ORDER BY id")
            .bind(index.name)
            .fetch_all(db)
            .await?;
    for chunk in ids.chunks(500) {
        send(db, es, index, chunk).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query<'a>(
        filters: &'a [Filter],
        owner: Option<(&'a str, Uuid)>,
        sort: Option<Value>,
    ) -> Query<'a> {
        Query {
            index: "airbnb_user",
            keyword: "ann lee",
            fields: &["email^3", "fullname^2"],
            filters,
            owner,
            sort,
            from: 25,
            size: 25,
        }
    }

    #[test]
    fn a_search_matches_every_word_as_a_prefix_ranked_with_the_id_breaking_ties() {
        assert_eq!(
            search_body(&query(&[], None, None)),
            json!({
                "from": 25,
                "size": 25,
                "track_total_hits": true,
                "query": { "bool": {
                    "must": [{ "multi_match": { "query": "ann lee", "type": "bool_prefix", "operator": "and", "fields": ["email^3", "fullname^2"] } }],
                    "filter": [],
                } },
                "sort": [{ "_score": "desc" }, { "id.keyword": "asc" }],
            })
        );
    }

    #[test]
    fn filters_are_exact_terms_text_on_its_keyword_field_and_the_owner_last() {
        let me = Uuid::new_v4();
        let filters = [
            Filter {
                field: "roleId",
                op: "eq",
                value: json!("admin"),
            },
            Filter {
                field: "emailVerified",
                op: "eq",
                value: json!(true),
            },
            Filter {
                field: "rank",
                op: "eq",
                value: json!(3),
            },
        ];
        let body = search_body(&query(
            &filters,
            Some(("_owner", me)),
            Some(json!({ "createdAt": "desc" })),
        ));
        assert_eq!(
            body["query"]["bool"]["filter"],
            json!([
                { "term": { "roleId.keyword": "admin" } },
                { "term": { "emailVerified": true } },
                { "term": { "rank": 3 } },
                { "term": { "_owner.keyword": me.to_string() } },
            ])
        );
        assert_eq!(
            body["sort"],
            json!([{ "createdAt": "desc" }, { "id.keyword": "asc" }]),
            "the client's order, then the id"
        );
    }

    #[test]
    fn a_bulk_body_indexes_documents_that_exist_and_deletes_the_others() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let body = bulk_body(&[
            (
                "airbnb_user",
                a,
                Some(json!({ "id": a, "fullname": "Ann" })),
            ),
            ("airbnb_user", b, None),
        ]);
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect();
        assert_eq!(
            lines,
            [
                json!({ "index": { "_index": "airbnb_user", "_id": a } }),
                json!({ "id": a, "fullname": "Ann" }),
                json!({ "delete": { "_index": "airbnb_user", "_id": b } }),
            ]
        );
        assert!(body.ends_with('\n'), "NDJSON ends with a newline");
        assert_eq!(bulk_body(&[]), "");
    }

    #[test]
    fn a_bulk_answer_fails_only_for_items_not_done() {
        assert!(!bulk_failed(&json!({ "errors": false, "items": [] })));
        let missing_delete = json!({ "errors": true, "items": [
            { "index": { "status": 201, "result": "created" } },
            { "delete": { "status": 404, "result": "not_found" } },
        ] });
        assert!(
            !bulk_failed(&missing_delete),
            "deleting what is not there is done"
        );
        let refused = json!({ "errors": true, "items": [
            { "index": { "status": 201, "result": "created" } },
            { "index": { "status": 429, "error": { "type": "es_rejected_execution_exception" } } },
        ] });
        assert!(bulk_failed(&refused));
        assert!(
            bulk_failed(&json!({ "errors": true, "items": [{ "index": {} }] })),
            "no status is no success"
        );
    }
}
