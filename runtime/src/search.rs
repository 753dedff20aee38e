//! Search indexes kept in PostgreSQL: each document (the row's visible fields
//! and the model's aggregates, plus what other services added under
//! `extends`) is rebuilt from the tables inside the transaction of every
//! change, and searched by keyword with ranks (tsvector, GIN index).
//!
//! The model decides the indexes; a generated crate hands them over as a
//! [`Search`] of statics: each [`SearchIndex`]'s SQL, and for each object
//! whose changes touch documents, a [`Follow`] saying which.

use crate::error::{ApiError, FieldError};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeSet;
use uuid::Uuid;

/// One index: the SQL that builds its documents from the tables.
#[derive(Debug)]
pub struct SearchIndex {
    /// `airbnb_user`: the index's name, in `search_documents` and Elasticsearch.
    pub name: &'static str,
    /// Builds the documents of the rows whose ids are `$1` (an array).
    pub upsert: &'static str,
    /// Removes the documents of `$1` whose rows are gone or inactive.
    pub prune: &'static str,
    /// Builds every document from the tables.
    pub rebuild: &'static str,
}

/// The documents a change of one object touches.
#[derive(Debug)]
pub struct Follow {
    /// The changed object's model name, as its events name it.
    pub object: &'static str,
    pub steps: &'static [FollowStep],
}

/// One set of documents a change touches: the ids under `field` of the
/// changed rows (as events carry them), or, with `link`, the ids that query
/// finds from those (bound as `$1`).
#[derive(Debug)]
pub struct FollowStep {
    pub index: &'static SearchIndex,
    pub field: &'static str,
    pub link: Option<&'static str>,
}

/// A model's search: its indexes, which documents each change touches, the
/// index event topics the Elasticsearch mirror follows, and the bounds of a
/// keyword.
#[derive(Debug)]
pub struct Search {
    pub indexes: &'static [&'static SearchIndex],
    pub follows: &'static [Follow],
    /// Index event topics, and the object whose rows (or, for -extended,
    /// whose documents) they carry.
    pub topics: &'static [(&'static str, &'static str)],
    /// Words a keyword may hold (the model's `service.search.maxWords`).
    pub max_words: usize,
    /// Characters a word may hold (`service.search.maxWordLength`).
    pub max_word_length: usize,
}

impl SearchIndex {
    /// Rebuilds the documents of `ids` from their rows and removes those whose
    /// rows are gone or inactive; `extends` is kept.
    pub async fn refresh(&self, tx: &mut PgConnection, ids: &[Uuid]) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(self.upsert).bind(ids).execute(&mut *tx).await?;
        sqlx::query(self.prune).bind(ids).execute(&mut *tx).await?;
        Ok(())
    }

    /// Rebuilds the whole index from the tables in one transaction; returns
    /// how many documents it holds afterwards.
    pub async fn rebuild(&self, db: &PgPool) -> Result<i64, ApiError> {
        let mut tx = db.begin().await?;
        sqlx::query(self.rebuild).execute(&mut *tx).await?;
        let held: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM search_documents WHERE index_name = $1")
                .bind(self.name)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query(self.prune)
            .bind(&held)
            .execute(&mut *tx)
            .await?;
        let count =
            sqlx::query_scalar("SELECT count(*) FROM search_documents WHERE index_name = $1")
                .bind(self.name)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(count)
    }
}

impl Search {
    /// The index called `name`.
    pub fn index(&self, name: &str) -> Option<&'static SearchIndex> {
        self.indexes.iter().copied().find(|i| i.name == name)
    }

    /// Refreshes the documents that a change of `object` touches. `rows` are
    /// the changed rows as events carry them, before and after the change, so
    /// that a document the row left is refreshed as well as the one it joined.
    pub async fn follow(
        &self,
        tx: &mut PgConnection,
        object: &str,
        rows: &[&Value],
    ) -> Result<(), ApiError> {
        for (index, ids) in self.touched(tx, object, rows).await? {
            index.refresh(tx, &ids).await?;
        }
        Ok(())
    }

    /// The documents a change of `object` touches, index by index.
    pub async fn touched(
        &self,
        tx: &mut PgConnection,
        object: &str,
        rows: &[&Value],
    ) -> Result<Vec<(&'static SearchIndex, Vec<Uuid>)>, ApiError> {
        let mut out = Vec::new();
        let Some(follow) = self.follows.iter().find(|f| f.object == object) else {
            return Ok(out);
        };
        for step in follow.steps {
            let ids = ids(rows, step.field);
            let ids = match step.link {
                None => ids,
                Some(link) => {
                    let linked: Vec<Option<Uuid>> = sqlx::query_scalar(link)
                        .bind(ids)
                        .fetch_all(&mut *tx)
                        .await?;
                    linked.into_iter().flatten().collect()
                }
            };
            out.push((step.index, ids));
        }
        Ok(out)
    }

    /// The object of an index event topic.
    pub fn object_of_topic(&self, topic: &str) -> Option<&'static str> {
        self.topics
            .iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, o)| *o)
    }

    /// A keyword as a tsquery in which every word must begin some indexed
    /// word: `ann lee` becomes `ann:* & lee:*`; with `weights` (e.g. `B`), only
    /// words of the fields of those weights count: `ann:*B & lee:*B`. Only
    /// letters and digits pass, so the client cannot write tsquery syntax.
    /// Checked before either backend sees the keyword (PostgreSQL or
    /// Elasticsearch), each word costing a prefix scan: a 400 naming `q` when
    /// it has no word, too many, or one too long.
    pub fn prefix_query(&self, keyword: &str, weights: &str) -> Result<String, ApiError> {
        let words: Vec<&str> = keyword
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let refuse = |message: String| ApiError::Validation(vec![FieldError::new("q", message)]);
        if words.is_empty() {
            return Err(refuse(
                "is required: a keyword with letters or digits to search for".to_string(),
            ));
        }
        if words.len() > self.max_words {
            return Err(refuse(format!(
                "has {} words; at most {} are searched for",
                words.len(),
                self.max_words
            )));
        }
        if words
            .iter()
            .any(|w| w.chars().count() > self.max_word_length)
        {
            return Err(refuse(format!(
                "has a word longer than {} characters",
                self.max_word_length
            )));
        }
        Ok(words
            .iter()
            .map(|w| format!("{}:*{weights}", w.to_lowercase()))
            .collect::<Vec<_>>()
            .join(" & "))
    }

    /// Builds the indexes that hold no document yet (a new index, a database
    /// migrated from before it, rows written outside the routes), at start-up.
    pub async fn build_empty(&self, db: &PgPool) -> Result<(), ApiError> {
        for i in self.indexes {
            let any: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM search_documents WHERE index_name = $1)",
            )
            .bind(i.name)
            .fetch_one(db)
            .await?;
            if !any {
                let count = i.rebuild(db).await?;
                tracing::info!(index = i.name, count, "built the search index");
            }
        }
        Ok(())
    }

    /// Rebuilds the named indexes (all when none is named), for the `reindex`
    /// command; returns them.
    pub async fn reindex(
        &self,
        db: &PgPool,
        names: &[String],
    ) -> anyhow::Result<Vec<&'static SearchIndex>> {
        let chosen = self.chosen(names)?;
        for i in &chosen {
            let count = i
                .rebuild(db)
                .await
                .map_err(|e| anyhow::anyhow!("rebuilding {}: {e}", i.name))?;
            println!("{}: {count} documents", i.name);
        }
        Ok(chosen)
    }

    /// The indexes called `names`, or all when none is named.
    fn chosen(&self, names: &[String]) -> anyhow::Result<Vec<&'static SearchIndex>> {
        if names.is_empty() {
            return Ok(self.indexes.to_vec());
        }
        names
            .iter()
            .map(|n| {
                self.index(n).ok_or_else(|| {
                    let known: Vec<&str> = self.indexes.iter().map(|i| i.name).collect();
                    anyhow::anyhow!("unknown index {n:?}; expected one of {}", known.join(", "))
                })
            })
            .collect()
    }
}

/// The distinct ids under `field` of `rows`.
fn ids(rows: &[&Value], field: &str) -> Vec<Uuid> {
    let set: BTreeSet<Uuid> = rows
        .iter()
        .filter_map(|r| r.get(field)?.as_str()?.parse().ok())
        .collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static BOOKS: SearchIndex = SearchIndex {
        name: "library_book",
        upsert: "",
        prune: "",
        rebuild: "",
    };
    static AUTHORS: SearchIndex = SearchIndex {
        name: "library_author",
        upsert: "",
        prune: "",
        rebuild: "",
    };
    static SEARCH: Search = Search {
        indexes: &[&BOOKS, &AUTHORS],
        follows: &[Follow {
            object: "book",
            steps: &[FollowStep {
                index: &BOOKS,
                field: "id",
                link: None,
            }],
        }],
        topics: &[
            ("library-book-index-created", "book"),
            ("library-book-index-extended", "book"),
        ],
        max_words: 3,
        max_word_length: 5,
    };

    fn refused(r: Result<String, ApiError>) -> Vec<(String, String)> {
        match r {
            Err(ApiError::Validation(errors)) => {
                errors.into_iter().map(|e| (e.field, e.message)).collect()
            }
            _ => Vec::new(),
        }
    }

    #[test]
    fn keywords_become_prefix_queries_of_letters_and_digits() {
        assert_eq!(
            SEARCH.prefix_query("Ann  lee", "").ok().as_deref(),
            Some("ann:* & lee:*")
        );
        assert_eq!(
            SEARCH.prefix_query("ann@x.io", "B").ok().as_deref(),
            Some("ann:*B & x:*B & io:*B")
        );
        assert_eq!(
            SEARCH.prefix_query("a:*|!b", "").ok().as_deref(),
            Some("a:* & b:*"),
            "tsquery syntax never passes"
        );
        assert_eq!(
            SEARCH.prefix_query("Étude", "").ok().as_deref(),
            Some("étude:*")
        );
    }

    #[test]
    fn keywords_without_words_with_too_many_or_too_long_are_refused_by_name() {
        for nothing in ["", "  ", "*:&|!"] {
            assert_eq!(
                refused(SEARCH.prefix_query(nothing, "")),
                [(
                    "q".to_string(),
                    "is required: a keyword with letters or digits to search for".to_string()
                )],
                "{nothing:?}"
            );
        }
        assert_eq!(
            refused(SEARCH.prefix_query("a b c d", "")),
            [(
                "q".to_string(),
                "has 4 words; at most 3 are searched for".to_string()
            )]
        );
        assert_eq!(
            refused(SEARCH.prefix_query("short toolong", "")),
            [(
                "q".to_string(),
                "has a word longer than 5 characters".to_string()
            )]
        );
        assert!(
            SEARCH.prefix_query("ééééé", "").is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn indexes_and_topics_are_found_by_name() {
        assert_eq!(
            SEARCH.index("library_author").map(|i| i.name),
            Some("library_author")
        );
        assert!(SEARCH.index("nope").is_none());
        assert_eq!(
            SEARCH.object_of_topic("library-book-index-extended"),
            Some("book")
        );
        assert_eq!(SEARCH.object_of_topic("library-book-created"), None);
    }

    #[test]
    fn reindex_chooses_the_named_indexes_or_all() {
        let names = |chosen: anyhow::Result<Vec<&SearchIndex>>| {
            chosen.map(|c| c.iter().map(|i| i.name).collect::<Vec<_>>())
        };
        assert_eq!(
            names(SEARCH.chosen(&[])).ok(),
            Some(vec!["library_book", "library_author"])
        );
        assert_eq!(
            names(SEARCH.chosen(&["library_author".into()])).ok(),
            Some(vec!["library_author"])
        );
        let unknown = names(SEARCH.chosen(&["nope".into()])).map_err(|e| e.to_string());
        assert_eq!(
            unknown,
            Err("unknown index \"nope\"; expected one of library_book, library_author".to_string())
        );
    }

    #[test]
    fn ids_are_the_distinct_uuids_under_a_field() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let before = json!({ "id": a.to_string(), "groupId": b.to_string() });
        let after = json!({ "id": a.to_string(), "groupId": null });
        let odd = json!({ "id": "not a uuid" });
        assert_eq!(ids(&[&before, &after, &odd], "id"), [a]);
        assert_eq!(ids(&[&before, &after], "groupId"), [b]);
        assert!(ids(&[&odd], "missing").is_empty());
    }
}
