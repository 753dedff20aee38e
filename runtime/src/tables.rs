//! The tables the runtime reads and writes, declared once: the generator
//! reads this file to write the migrations that create them (it includes it
//! by path: the file has no imports), and the runtime names them from here.
//! The model's own tables are declared by the model.

/// A column: name, SQL type, `NOT NULL`, default, primary key.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    pub name: &'static str,
    pub ty: &'static str,
    pub not_null: bool,
    pub default: Option<&'static str>,
    pub primary_key: bool,
}

/// An index over `columns` (SQL text), with an optional partial `WHERE`
/// clause (`" WHERE ..."`) and access method (`" USING gin"`).
#[derive(Debug, Clone, Copy)]
pub struct IndexDef {
    pub name: &'static str,
    pub unique: bool,
    pub columns: &'static str,
    pub partial: &'static str,
    pub using: &'static str,
}

/// A foreign key from `column` to the primary key of `target`
/// ([`ACCOUNTS`] stands for the model's account table).
#[derive(Debug, Clone, Copy)]
pub struct ForeignKeyDef {
    pub name: &'static str,
    pub column: &'static str,
    pub target: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [ColumnDef],
    pub indexes: &'static [IndexDef],
    pub foreign_keys: &'static [ForeignKeyDef],
}

impl TableDef {
    /// `CREATE TABLE` with its columns (not its indexes or foreign keys):
    /// for tests that need the table as the migrations create it.
    pub fn create_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| column_sql(c.name, c.ty, c.primary_key, c.not_null, c.default))
            .collect();
        format!("CREATE TABLE {} ({})", self.name, columns.join(", "))
    }
}

/// A column as `CREATE TABLE` and `ADD COLUMN` declare it; the migration
/// generator writes its columns with it too.
pub fn column_sql(
    name: &str,
    ty: &str,
    primary_key: bool,
    not_null: bool,
    default: Option<&str>,
) -> String {
    let mut d = format!("{name} {ty}");
    if primary_key {
        d.push_str(" PRIMARY KEY");
    } else if not_null {
        d.push_str(" NOT NULL");
    }
    if let Some(v) = default {
        d.push_str(" DEFAULT ");
        d.push_str(v);
    }
    d
}

/// Stands for the model's account table in a foreign key.
pub const ACCOUNTS: &str = "{accounts}";

const fn col(name: &'static str, ty: &'static str, not_null: bool) -> ColumnDef {
    ColumnDef {
        name,
        ty,
        not_null,
        default: None,
        primary_key: false,
    }
}

const fn col_default(name: &'static str, ty: &'static str, default: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        ty,
        not_null: true,
        default: Some(default),
        primary_key: false,
    }
}

const fn key(name: &'static str, ty: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        ty,
        not_null: false,
        default: None,
        primary_key: true,
    }
}

const fn index(name: &'static str, columns: &'static str, partial: &'static str) -> IndexDef {
    IndexDef {
        name,
        unique: false,
        columns,
        partial,
        using: "",
    }
}

/// The transactional outbox: events written with the change, drained by the relay.
pub const OUTBOX: TableDef = TableDef {
    name: "event_outbox",
    columns: &[
        key("id", "bigserial"),
        col("event_id", "uuid", true),
        col("topic", "text", true),
        col("event_key", "text", true),
        col("lane", "integer", true),
        col("payload", "text", true),
        col("request_id", "text", false),
        col_default("created_at", "timestamptz", "now()"),
        col("delivered_at", "timestamptz", false),
        // When the search mirror (Elasticsearch) took the event's documents.
        col("search_synced_at", "timestamptz", false),
        // The W3C trace context of the write, sent on as Kafka headers.
        col("traceparent", "text", false),
        col("tracestate", "text", false),
    ],
    indexes: &[
        // The relay reads pending events in id order, a batch at a time, with
        // every lane it holds; by (lane, id) it walked the delivered rows.
        index(
            "event_outbox_pending_idx",
            "id",
            " WHERE delivered_at IS NULL",
        ),
        // What the search mirror has still to send (when Elasticsearch is used).
        index(
            "event_outbox_search_pending_idx",
            "id",
            " WHERE search_synced_at IS NULL",
        ),
        index(
            "event_outbox_delivered_idx",
            "delivered_at",
            " WHERE delivered_at IS NOT NULL",
        ),
    ],
    foreign_keys: &[],
};

/// Search documents of every index: the aggregated document as jsonb, what
/// other services added under `extends`, and the keywords as a tsvector
/// under a GIN index.
pub const SEARCH_DOCUMENTS: TableDef = TableDef {
    name: "search_documents",
    columns: &[
        col("index_name", "text", true),
        col("id", "uuid", true),
        col("doc", "jsonb", true),
        col_default("extends", "jsonb", "'{}'::jsonb"),
        col("search", "tsvector", true),
        col_default("updated_at", "timestamptz", "now()"),
    ],
    indexes: &[
        IndexDef {
            unique: true,
            ..index("search_documents_key", "index_name, id", "")
        },
        IndexDef {
            using: " USING gin",
            ..index("search_documents_search_idx", "search", "")
        },
        IndexDef {
            using: " USING gin",
            ..index("search_documents_doc_idx", "doc jsonb_path_ops", "")
        },
    ],
    foreign_keys: &[],
};

/// Sessions. The model's device fields (text columns) go at
/// [`SESSION_DEVICE_COLUMNS_AT`], after `user_id`.
pub const SESSIONS: TableDef = TableDef {
    name: "sessions",
    columns: &[
        key("id", "uuid"),
        col("user_id", "uuid", true),
        col("client_address", "text", false),
        col_default("created_at", "timestamptz", "now()"),
        col("refreshed_at", "timestamptz", false),
        col("expires_at", "timestamptz", true),
        col("revoked_at", "timestamptz", false),
        col("revoked_reason", "text", false),
    ],
    indexes: &[
        index(
            "sessions_user_id_idx",
            "user_id",
            " WHERE revoked_at IS NULL",
        ),
        index(
            "sessions_expires_at_idx",
            "expires_at",
            " WHERE revoked_at IS NULL",
        ),
    ],
    foreign_keys: &[ForeignKeyDef {
        name: "sessions_user_id_fkey",
        column: "user_id",
        target: ACCOUNTS,
    }],
};

/// Where the model's device columns go in [`SESSIONS`].
pub const SESSION_DEVICE_COLUMNS_AT: usize = 2;

/// Rotating refresh tokens, stored as hashes.
pub const REFRESH_TOKENS: TableDef = TableDef {
    name: "refresh_tokens",
    columns: &[
        key("token_hash", "text"),
        col("session_id", "uuid", true),
        col_default("created_at", "timestamptz", "now()"),
        col("expires_at", "timestamptz", true),
        col("spent_at", "timestamptz", false),
        // The pair a spent token was exchanged for, sealed under a key derived
        // from the spent token: a reuse inside the grace window answers it.
        col("successor", "bytea", false),
    ],
    indexes: &[index("refresh_tokens_session_id_idx", "session_id", "")],
    foreign_keys: &[ForeignKeyDef {
        name: "refresh_tokens_session_id_fkey",
        column: "session_id",
        target: "sessions",
    }],
};

/// Throttling counters every replica shares.
pub const THROTTLE_BUCKETS: TableDef = TableDef {
    name: "throttle_buckets",
    columns: &[
        key("bucket", "text"),
        col("window_start", "timestamptz", true),
        col("hits", "integer", true),
    ],
    indexes: &[],
    foreign_keys: &[],
};

/// The key ring: every signing key's public half and when a newer key
/// replaced it; the private half only of the development key (a configured
/// key's stays in the configuration).
pub const SIGNING_KEYS: TableDef = TableDef {
    name: "signing_keys",
    columns: &[
        key("kid", "text"),
        col("private_pkcs8", "bytea", false),
        col("public_key", "bytea", true),
        col_default("created_at", "timestamptz", "now()"),
        col("replaced_at", "timestamptz", false),
    ],
    indexes: &[],
    foreign_keys: &[],
};

/// The inbox of a service that consumes events: one row per event and
/// consumer that took effect (or was dead-lettered), written in the effect's
/// transaction, so that a redelivered event takes effect once.
pub const INBOX: TableDef = TableDef {
    name: "consumer_inbox",
    columns: &[
        col("consumer", "text", true),
        col("event_id", "text", true),
        col("topic", "text", true),
        col("kafka_partition", "integer", true),
        col("kafka_offset", "bigint", true),
        col_default("dead_lettered", "boolean", "false"),
        col_default("consumed_at", "timestamptz", "now()"),
    ],
    indexes: &[
        IndexDef {
            name: "consumer_inbox_key",
            unique: true,
            columns: "consumer, event_id",
            partial: "",
            using: "",
        },
        index("consumer_inbox_consumed_at_idx", "consumed_at", ""),
    ],
    foreign_keys: &[],
};

/// One-time codes, stored only as keyed digests. A second-factor code also
/// keeps the sign-in it completes (device facts, address, cookie wish).
pub const VERIFICATION_CODES: TableDef = TableDef {
    name: "verification_codes",
    columns: &[
        key("id", "uuid"),
        col("user_id", "uuid", true),
        col("purpose", "text", true),
        col("code_digest", "text", true),
        col_default("attempts", "integer", "0"),
        col("pending_sign_in", "jsonb", false),
        col_default("created_at", "timestamptz", "now()"),
        col("expires_at", "timestamptz", true),
        col("used_at", "timestamptz", false),
    ],
    indexes: &[
        index(
            "verification_codes_user_id_idx",
            "user_id, purpose",
            " WHERE used_at IS NULL",
        ),
        index("verification_codes_expires_at_idx", "expires_at", ""),
    ],
    foreign_keys: &[ForeignKeyDef {
        name: "verification_codes_user_id_fkey",
        column: "user_id",
        target: ACCOUNTS,
    }],
};

/// Every table the runtime may own; a model may not declare one of these.
pub const ALL: &[&TableDef] = &[
    &OUTBOX,
    &SEARCH_DOCUMENTS,
    &SESSIONS,
    &REFRESH_TOKENS,
    &THROTTLE_BUCKETS,
    &SIGNING_KEYS,
    &VERIFICATION_CODES,
    &INBOX,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_sql_declares_each_column() {
        assert_eq!(
            THROTTLE_BUCKETS.create_sql(),
            "CREATE TABLE throttle_buckets (bucket text PRIMARY KEY, \
             window_start timestamptz NOT NULL, hits integer NOT NULL)"
        );
    }

    #[test]
    fn every_table_has_one_primary_key_or_a_unique_key() {
        for t in ALL {
            let keys = t.columns.iter().filter(|c| c.primary_key).count();
            let unique = t.indexes.iter().any(|i| i.unique);
            assert!(keys == 1 || (keys == 0 && unique), "{}", t.name);
        }
    }

    #[test]
    fn names_are_unique_and_indexes_name_their_table() {
        let mut names: Vec<&str> = ALL.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for t in ALL {
            for i in t.indexes {
                assert!(i.name.starts_with(t.name), "{} on {}", i.name, t.name);
            }
            for f in t.foreign_keys {
                assert!(t.columns.iter().any(|c| c.name == f.column), "{}", f.name);
            }
        }
    }
}
