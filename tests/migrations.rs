//! A changed model yields a new migration, never an edited old one, and the
//! old migrations plus the new one give the schema a fresh start would.

use generator::migrate::History;
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use tests::TestDb;

fn library() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/library.yaml")).unwrap()
}

/// The library model, changed the ways models change.
fn changed_library() -> String {
    let mut m = library();
    let edits = [
        // A new optional field and a new field with a default.
        ("      details:\n        type: Object\n", "      details:\n        type: Object\n      subtitle:\n        type: String\n        maxLength: 200\n      language:\n        type: String\n        default: en\n        filterable: true\n"),
        // A field leaves the model.
        ("      pages:\n        type: Integer\n        filterable: true\n", ""),
        ("fields: [title, isbn, pages, shelf, details]", "fields: [title, isbn, shelf, details, subtitle, language]"),
        // A default changes.
        ("        default: fiction\n", "        default: history\n"),
        // A new object that references an old one.
        ("  loan:\n", "  review:\n    description: A reader's review.\n    table: reviews\n    softDelete: false\n    fields:\n      bookId:\n        type: ID\n        required: true\n        references: book\n      stars:\n        type: Integer\n        required: true\n  loan:\n"),
    ];
    for (find, replace) in edits {
        assert_eq!(m.matches(find).count(), 1, "edit anchor {find:?}");
        m = m.replacen(find, replace, 1);
    }
    m
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "svcgen-migrations-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn generate_into(dir: &Path, model: &str) -> Vec<String> {
    let history = generator::write::read_history(dir).unwrap();
    let files = generator::generate_str("tests/models/library.yaml", model, &history, "../runtime")
        .unwrap();
    let report = generator::write::write(dir, &files).unwrap();
    report.written
}

fn migrations(dir: &Path) -> Vec<(String, String)> {
    generator::write::read_history(dir).unwrap().migrations
}

async fn apply(db: &TestDb, dir: &Path) {
    let mut conn = db.connect().await;
    for (_, sql) in migrations(dir) {
        sqlx::raw_sql(&sql)
            .execute(&mut conn)
            .await
            .expect("migration applies");
    }
}

/// Columns, indexes and constraints of the public schema, comparable as text.
async fn shape(db: &TestDb) -> Vec<String> {
    let mut conn: PgConnection = PgConnection::connect(&db.url).await.unwrap();
    let mut out: Vec<String> = sqlx::query_as::<_, (String, String, String, String, Option<String>)>(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text, column_default::text
         FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|r| format!("{r:?}"))
    .collect();
    out.extend(
        sqlx::query_as::<_, (String, String)>("SELECT indexname::text, indexdef::text FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{r:?}")),
    );
    out.extend(
        sqlx::query_as::<_, (String, String)>(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{r:?}")),
    );
    out
}

#[tokio::test]
async fn a_changed_model_adds_a_migration_that_converges_with_a_fresh_start() {
    let evolved = temp_dir("evolved");
    let written = generate_into(&evolved, &library());
    assert!(written.contains(&"migrations/0001_init.sql".to_string()));
    let first = migrations(&evolved);
    assert_eq!(first.len(), 1);

    assert!(
        generate_into(&evolved, &library()).is_empty(),
        "an unchanged model writes nothing"
    );

    let written = generate_into(&evolved, &changed_library());
    let after = migrations(&evolved);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0], first[0], "the old migration is not edited");
    assert!(written.contains(&after[1].0), "{written:?}");
    let change = &after[1].1;
    for expected in [
        "ALTER TABLE books ADD COLUMN subtitle text;",
        "ALTER TABLE books ADD COLUMN language text NOT NULL DEFAULT 'en';",
        "ALTER TABLE books DROP COLUMN pages;",
        "ALTER TABLE books ALTER COLUMN shelf SET DEFAULT 'history';",
        "CREATE TABLE reviews (",
        "ALTER TABLE reviews ADD CONSTRAINT reviews_book_id_fkey FOREIGN KEY (book_id) REFERENCES books (id);",
        "CREATE INDEX books_language_idx ON books (language) WHERE is_active;",
        "DROP INDEX books_pages_idx;",
    ] {
        assert!(change.contains(expected), "missing {expected:?} in:\n{change}");
    }
    assert!(
        generate_into(&evolved, &changed_library()).is_empty(),
        "the change is generated once"
    );

    let fresh = temp_dir("fresh");
    generate_into(&fresh, &changed_library());
    assert_eq!(migrations(&fresh).len(), 1);

    let (a, b) = (TestDb::create().await, TestDb::create().await);
    apply(&a, &evolved).await;
    apply(&b, &fresh).await;
    assert_eq!(
        shape(&a).await,
        shape(&b).await,
        "migrating gives the schema a fresh start gives"
    );
    for dir in [evolved, fresh] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_required_field_without_default_cannot_be_added_to_existing_rows() {
    let dir = temp_dir("required");
    generate_into(&dir, &library());
    let model = library()
        .replacen(
            "      details:\n        type: Object\n",
            "      details:\n        type: Object\n      edition:\n        type: Integer\n        required: true\n",
            1,
        )
        .replacen("fields: [title, isbn, pages, shelf, details]", "fields: [title, isbn, pages, shelf, details, edition]", 1);
    let history = generator::write::read_history(&dir).unwrap();
    let err = generator::generate_str("tests/models/library.yaml", &model, &history, "../runtime")
        .unwrap_err();
    assert!(err.to_string().contains("books.edition"), "{err}");
    assert!(
        err.to_string().contains("give the field a default"),
        "{err}"
    );
    let fresh = generator::generate_str(
        "tests/models/library.yaml",
        &model,
        &History::default(),
        "../runtime",
    );
    assert!(fresh.is_ok(), "without history the field is fine");
    std::fs::remove_dir_all(dir).unwrap();
}
