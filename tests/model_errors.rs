//! Bad models: each must fail with every error located (file:line:column, key path).
//!
//! Every case is the valid `tests/models/library.yaml` with one snippet
//! replaced, so the case shows exactly what is wrong. The full message is
//! snapshotted, and each error's line:column is also checked against the
//! mutated text: it must point at the offending key or value.

use generator::check_model;

/// The workspace root, where the models `uses:` names are read from.
fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The name the model is reported under, exactly as passed to `check_model`.
const FILE: &str = "tests/models/library.yaml";
const BASE: &str = include_str!("models/library.yaml");

/// The base model with `find` (which must occur exactly once) replaced.
fn mutate(find: &str, replace: &str) -> String {
    mutate_all(&[(find, replace)])
}

/// The base model with several replacements, applied in order.
fn mutate_all(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_string();
    for (find, replace) in edits {
        let n = text.matches(find).count();
        assert_eq!(
            n, 1,
            "{find:?} occurs {n} times in the model, expected once"
        );
        text = text.replacen(find, replace, 1);
    }
    text
}

/// Checks `text`, which must be rejected, and returns the full message after
/// asserting that the i-th error's line:column is where `points_at[i]` starts.
fn rejected(text: &str, points_at: &[&str]) -> String {
    rejected_in(FILE, text, points_at)
}

/// [`rejected`], for a model reported as `file`.
fn rejected_in(file: &str, text: &str, points_at: &[&str]) -> String {
    let msg = match generator::check_model_in(&workspace(), file, text) {
        Ok(_) => panic!("the model should have been rejected:\n{text}"),
        Err(e) => e.to_string(),
    };
    let lines: Vec<&str> = msg.lines().collect();
    let (summary, errors) = lines.split_last().expect("a message");
    let n = errors.len();
    let s = if n == 1 { "" } else { "s" };
    assert_eq!(*summary, format!("{n} error{s} in the model"), "{msg}");
    assert_eq!(n, points_at.len(), "wrong number of errors:\n{msg}");
    for (error, expected) in errors.iter().zip(points_at) {
        let rest = error
            .strip_prefix(file)
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or_else(|| panic!("error does not start with {file}: {error}"));
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next().unwrap().parse().expect("a line");
        let column: usize = parts.next().unwrap().parse().expect("a column");
        let source_line = text.lines().nth(line - 1).unwrap_or("");
        let at: String = source_line.chars().skip(column - 1).collect();
        assert!(
            at.starts_with(expected),
            "{error}\npoints at line {line}, column {column}: {at:?}, expected {expected:?}"
        );
    }
    msg
}

#[test]
fn valid_models_pass() {
    if let Err(e) = check_model(FILE, BASE) {
        panic!("{e}");
    }
    let auth = include_str!("../model/auth-service.yaml");
    if let Err(e) = check_model("model/auth-service.yaml", auth) {
        panic!("{e}");
    }
}

#[test]
fn mutate_requires_exactly_one_match() {
    let twice = std::panic::catch_unwind(|| mutate("object: book", "object: loan"));
    assert!(
        twice.is_err(),
        "a snippet that occurs many times is refused"
    );
    let never = std::panic::catch_unwind(|| mutate("object: nothing", "object: loan"));
    assert!(never.is_err(), "a snippet that does not occur is refused");
}

// ---- Load errors: YAML syntax and schema (serde) ----

#[test]
fn yaml_syntax_error() {
    // Indented one space too far, `title` continues the value of `name`.
    let text = mutate("  title: Library service", "   title: Library service");
    let msg = rejected(&text, &[": Library service"]);
    insta::assert_snapshot!("yaml_syntax_error", msg);
}

#[test]
fn unknown_key_nested() {
    let text = mutate(
        "      pages:\n        type: Integer",
        "      pages:\n        type: Integer\n        minimum: 1",
    );
    let msg = rejected(&text, &["minimum"]);
    insta::assert_snapshot!("unknown_key_nested", msg);
}

#[test]
fn unknown_key_in_route() {
    let text = mutate(
        "    event: book-fetched",
        "    event: book-fetched\n    cache: true",
    );
    let msg = rejected(&text, &["cache"]);
    insta::assert_snapshot!("unknown_key_in_route", msg);
}

#[test]
fn missing_required_key() {
    let text = mutate("    table: loans\n", "");
    let msg = rejected(&text, &["loan:"]);
    insta::assert_snapshot!("missing_required_key", msg);
}

#[test]
fn duplicate_field_key() {
    let text = mutate(
        "      details:\n        type: Object",
        "      details:\n        type: Object\n      pages:\n        type: Text",
    );
    // The second `pages`, not the first or the enclosing mapping.
    let msg = rejected(&text, &["pages:"]);
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "      pages:")
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap();
    assert!(msg.contains(&format!(":{second}:7: ")), "{msg}");
    insta::assert_snapshot!("duplicate_field_key", msg);
}

#[test]
fn duplicate_key_in_field() {
    let text = mutate(
        "        type: Integer",
        "        type: Integer\n        type: Text",
    );
    let msg = rejected(&text, &["type: Text"]);
    insta::assert_snapshot!("duplicate_key_in_field", msg);
}

#[test]
fn unknown_key_in_auth_rule() {
    // `auth` is a keyword or a rule; the rule's own error is reported.
    let text = mutate(
        "auth: { roles: [librarian], owner: true }",
        "auth: { roles: [librarian], owners: true }",
    );
    let msg = rejected(&text, &["owners"]);
    insta::assert_snapshot!("unknown_key_in_auth_rule", msg);
}

#[test]
fn auth_of_wrong_shape() {
    let text = mutate(
        "auth: { roles: [librarian], owner: true }",
        "auth: [librarian]",
    );
    let msg = rejected(&text, &["[librarian]"]);
    insta::assert_snapshot!("auth_of_wrong_shape", msg);
}

#[test]
fn computed_of_wrong_shape() {
    let text = mutate(
        "      details:\n        type: Object",
        "      details:\n        type: Object\n      size:\n        type: Integer\n        computed: { lengthOf: details }",
    );
    let msg = rejected(&text, &["lengthOf"]);
    insta::assert_snapshot!("computed_of_wrong_shape", msg);
}

#[test]
fn negative_count() {
    let text = mutate("partitions: 1", "partitions: -1");
    let msg = rejected(&text, &["-1"]);
    insta::assert_snapshot!("negative_count", msg);
}

#[test]
fn deploy_settings_out_of_bounds() {
    let text = mutate_all(&[
        (
            "deploy:\n  replicas: 3\n",
            "deploy:\n  httpPort: 80\n  replicas: 3\n",
        ),
        ("minAvailable: 2", "minAvailable: 3"),
        ("maxReplicas: 8", "maxReplicas: 2"),
        ("memoryLimit: 768Mi", "memoryLimit: 768MB"),
    ]);
    let msg = rejected(&text, &["80", "3", "2", "768MB"]);
    insta::assert_snapshot!("deploy_settings_out_of_bounds", msg);
}

#[test]
fn deploy_unknown_log_format() {
    let text = mutate("  logFormat: text", "  logFormat: xml");
    let msg = rejected(&text, &["xml"]);
    insta::assert_snapshot!("deploy_unknown_log_format", msg);
}

#[test]
fn deploy_unknown_key() {
    let text = mutate("  maxReplicas: 8", "  maxReplica: 8");
    let msg = rejected(&text, &["maxReplica"]);
    insta::assert_snapshot!("deploy_unknown_key", msg);
}

#[test]
fn wrong_value_type() {
    let text = mutate("bodyLimitBytes: 65536", "bodyLimitBytes: 64k");
    let msg = rejected(&text, &["64k"]);
    insta::assert_snapshot!("wrong_value_type", msg);
}

// ---- Data objects and fields ----

#[test]
fn unknown_field_type() {
    let text = mutate("        type: Integer", "        type: Strng");
    let msg = rejected(&text, &["Strng"]);
    assert!(
        msg.contains(r#"expected one of "ID", "String", "Text""#),
        "{msg}"
    );
    insta::assert_snapshot!("unknown_field_type", msg);
}

#[test]
fn reference_to_unknown_object() {
    let text = mutate("references: book", "references: books");
    let msg = rejected(&text, &["books"]);
    insta::assert_snapshot!("reference_to_unknown_object", msg);
}

#[test]
fn reserved_word_as_field_name() {
    let text = mutate(
        "      pages:",
        "      type:\n        type: String\n      pages:",
    );
    let msg = rejected(&text, &["type:"]);
    insta::assert_snapshot!("reserved_word_as_field_name", msg);
}

#[test]
fn reserved_word_as_table_name() {
    let text = mutate("table: loans", "table: user");
    let msg = rejected(&text, &["user"]);
    insta::assert_snapshot!("reserved_word_as_table_name", msg);
}

#[test]
fn system_field_declared() {
    let text = mutate(
        "      details:\n        type: Object",
        "      details:\n        type: Object\n      isActive:\n        type: Boolean",
    );
    let msg = rejected(&text, &["isActive:"]);
    insta::assert_snapshot!("system_field_declared", msg);
}

#[test]
fn field_collides_with_system_field() {
    let text = mutate(
        "      dueAt:",
        "      createdAT:\n        type: Date\n      dueAt:",
    );
    let msg = rejected(&text, &["createdAT:"]);
    insta::assert_snapshot!("field_collides_with_system_field", msg);
}

#[test]
fn fields_collide_after_snake_case() {
    let text = mutate(
        "      pickupCode:",
        "      readerEMAIL:\n        type: String\n      pickupCode:",
    );
    let msg = rejected(&text, &["readerEMAIL:"]);
    insta::assert_snapshot!("fields_collide_after_snake_case", msg);
}

#[test]
fn default_of_wrong_type() {
    let text = mutate("default: fiction", "default: 3");
    let msg = rejected(&text, &["3"]);
    insta::assert_snapshot!("default_of_wrong_type", msg);
}

#[test]
fn default_not_an_allowed_value() {
    let text = mutate("default: fiction", "default: poetry");
    let msg = rejected(&text, &["poetry"]);
    insta::assert_snapshot!("default_not_an_allowed_value", msg);
}

#[test]
fn min_length_greater_than_max_length() {
    let text = mutate("maxLength: 17", "maxLength: 17\n        minLength: 20");
    let msg = rejected(&text, &["20"]);
    insta::assert_snapshot!("min_length_greater_than_max_length", msg);
}

// ---- Topics and roles ----

#[test]
fn topic_pattern_missing_object() {
    let text = mutate(
        r#"dbEvent: "{topicPrefix}.db.{object}.{change}""#,
        r#"dbEvent: "{topicPrefix}.db.{change}""#,
    );
    let msg = rejected(&text, &[r#""{topicPrefix}.db.{change}""#]);
    insta::assert_snapshot!("topic_pattern_missing_object", msg);
}

#[test]
fn topic_pattern_unknown_placeholder() {
    let text = mutate(
        r#"routeEvent: "{topicPrefix}.route.{event}""#,
        r#"routeEvent: "{prefix}.route.{event}""#,
    );
    let msg = rejected(&text, &[r#""{prefix}.route.{event}""#]);
    insta::assert_snapshot!("topic_pattern_unknown_placeholder", msg);
}

#[test]
fn unknown_admin_role() {
    let text = mutate("admin: [librarian]", "admin: [librarian, curator]");
    let msg = rejected(&text, &["curator"]);
    insta::assert_snapshot!("unknown_admin_role", msg);
}

// ---- Routes ----

#[test]
fn route_names_unknown_object() {
    let text = mutate(
        "    object: loan\n    action: create",
        "    object: lone\n    action: create",
    );
    let msg = rejected(&text, &["lone"]);
    insta::assert_snapshot!("route_names_unknown_object", msg);
}

#[test]
fn route_fields_name_unknown_field() {
    let text = mutate("fields: [dueAt]", "fields: [dueAt, pickedUpAt]");
    let msg = rejected(&text, &["pickedUpAt"]);
    insta::assert_snapshot!("route_fields_name_unknown_field", msg);
}

#[test]
fn duplicate_route_event() {
    let text = mutate("event: books-found", "event: books-listed");
    let msg = rejected(&text, &["books-listed"]);
    insta::assert_snapshot!("duplicate_route_event", msg);
}

#[test]
fn two_routes_on_same_method_and_path() {
    let text = mutate("path: /books/search", "path: /books");
    let msg = rejected(&text, &["/books"]);
    insta::assert_snapshot!("two_routes_on_same_method_and_path", msg);
}

#[test]
fn get_route_path_without_id() {
    let text = mutate(
        "    path: /books/{id}\n    event: book-fetched",
        "    path: /books/latest\n    event: book-fetched",
    );
    let msg = rejected(&text, &["/books/latest"]);
    insta::assert_snapshot!("get_route_path_without_id", msg);
}

#[test]
fn wrong_method_for_action() {
    let text = mutate(
        "    method: PATCH\n    path: /loans/{id}",
        "    method: POST\n    path: /loans/{id}",
    );
    let msg = rejected(&text, &["POST"]);
    insta::assert_snapshot!("wrong_method_for_action", msg);
}

#[test]
fn unknown_action() {
    let text = mutate(
        "    action: delete\n    method: DELETE\n    path: /books/{id}",
        "    action: archive\n    method: DELETE\n    path: /books/{id}",
    );
    let msg = rejected(&text, &["archive"]);
    insta::assert_snapshot!("unknown_action", msg);
}

#[test]
fn unknown_role_in_auth_rule() {
    let text = mutate(
        "auth: { roles: [librarian], owner: true }",
        "auth: { roles: [librarian, reader], owner: true }",
    );
    let msg = rejected(&text, &["reader"]);
    insta::assert_snapshot!("unknown_role_in_auth_rule", msg);
}

#[test]
fn unknown_auth_keyword() {
    let text = mutate(
        "    event: books-listed\n    auth: public",
        "    event: books-listed\n    auth: anyone",
    );
    let msg = rejected(&text, &["anyone"]);
    insta::assert_snapshot!("unknown_auth_keyword", msg);
}

#[test]
fn create_route_omits_required_field() {
    let text = mutate(
        "fields: [bookId, readerEmail, pickupCode, dueAt]",
        "fields: [bookId, readerEmail, dueAt]",
    );
    let msg = rejected(&text, &["[bookId, readerEmail, dueAt]"]);
    insta::assert_snapshot!("create_route_omits_required_field", msg);
}

#[test]
fn include_via_non_reference_field() {
    let text = mutate("via: bookId", "via: readerEmail");
    let msg = rejected(&text, &["readerEmail"]);
    insta::assert_snapshot!("include_via_non_reference_field", msg);
}

// ---- Views: what reading routes show ----

#[test]
fn views_misused() {
    let text = mutate_all(&[
        (
            "    view: public\n    hooks: [query]\n    auth: public",
            "    view: everyone\n    hooks: [query]\n    auth: public",
        ),
        (
            "    event: book-added\n",
            "    event: book-added\n    view: full\n",
        ),
        (
            "    event: book-fetched\n",
            "    event: book-fetched\n    view: owner\n",
        ),
        ("    table: books\n", "    table: books\n    view: mine\n"),
    ]);
    let msg = rejected(&text, &["mine", "full", "owner", "everyone"]);
    assert!(
        msg.contains("view applies to get, list and custom routes, not create"),
        "{msg}"
    );
    assert!(msg.contains("cannot tell the owner"), "{msg}");
    insta::assert_snapshot!("views_misused", msg);
}

#[test]
fn narrowing_views_need_public_fields() {
    // Without public fields, others would see only a row's id and isActive.
    let text = mutate_all(&[
        (
            "        filterable: true\n        public: true\n",
            "        filterable: true\n",
        ),
        (
            "        sortable: true\n        public: true\n",
            "        sortable: true\n",
        ),
        (
            "        type: Date\n        public: true\n",
            "        type: Date\n",
        ),
        ("    table: books\n", "    table: books\n    view: owner\n"),
    ]);
    let msg = rejected(
        &text,
        &[
            "owner",
            "getBook",
            "listBooks",
            "findBooks",
            "public",
            "owner",
        ],
    );
    assert!(msg.contains("loan has none"), "{msg}");
    insta::assert_snapshot!("narrowing_views_need_public_fields", msg);
}

#[test]
fn narrowed_searches_match_only_public_fields() {
    // findBooks under the public view: its keyword may match only public
    // searchable fields, and fields sharing a search weight must agree.
    let text = mutate_all(&[
        (
            "        maxLength: 17\n",
            "        maxLength: 17\n        public: true\n",
        ),
        (
            "    event: books-found\n",
            "    event: books-found\n    view: public\n",
        ),
    ]);
    let msg = rejected(&text, &["public"]);
    assert!(msg.contains("no searchable field of book is"), "{msg}");
    insta::assert_snapshot!("narrowed_search_without_public_searchable_field", msg);
    let text = mutate_all(&[
        (
            "        searchable: true\n        sortable: true\n",
            "        searchable: true\n        sortable: true\n        public: true\n      subtitle:\n        type: String\n        searchable: true\n      blurb:\n        type: Text\n        searchable: true\n        public: true\n      notes:\n        type: Text\n        searchable: true\n",
        ),
        (
            "    event: books-found\n",
            "    event: books-found\n    view: public\n",
        ),
    ]);
    let msg = rejected(&text, &["true"]);
    assert!(msg.contains("share one search weight"), "{msg}");
    insta::assert_snapshot!("narrowed_search_fields_share_a_weight", msg);
}

#[test]
fn joined_rows_under_a_narrowing_view_need_a_public_field() {
    let text = mutate_all(&[
        (
            "        searchable: true\n        sortable: true\n",
            "        searchable: true\n        sortable: true\n        public: true\n",
        ),
        ("    table: books\n", "    table: books\n    view: public\n"),
        ("fields: [title, isbn] }", "fields: [isbn] }"),
    ]);
    let msg = rejected(&text, &["[isbn]"]);
    assert!(msg.contains("book rows follow view public"), "{msg}");
    insta::assert_snapshot!(
        "joined_rows_under_a_narrowing_view_need_a_public_field",
        msg
    );
}

// ---- Everything at once ----

#[test]
fn several_errors_reported_together_in_document_order() {
    // Made in reverse document order, so the output order proves the sorting.
    let text = mutate_all(&[
        (
            "auth: { roles: [librarian], owner: true }",
            "auth: { roles: [clerk], owner: true }",
        ),
        ("event: books-found", "event: books-listed"),
        ("table: loans", "table: user"),
        ("        type: Integer", "        type: Number"),
        (
            r#""{topicPrefix}.route.{event}""#,
            r#""{topicPrefix}.route""#,
        ),
        ("version: 0.3.1", "version: three"),
    ]);
    let msg = rejected(
        &text,
        &[
            "three",
            r#""{topicPrefix}.route""#,
            "Number",
            "user",
            "books-listed",
            "clerk",
        ],
    );
    insta::assert_snapshot!("several_errors_in_document_order", msg);
}

#[test]
fn file_download_and_caller_keys_misused() {
    let text = mutate_all(&[
        (
            "        maxLength: 300\n        searchable: true",
            "        maxLength: 300\n        maxBytes: 10\n        searchable: true",
        ),
        (
            "    fields: [title, isbn, pages, shelf, details]\n",
            "    fields: [title, isbn, pages, shelf, details]\n    callerFields: [title]\n",
        ),
        (
            "  getBook:\n",
            "  bookCover:\n    object: book\n    action: download\n    by: isbn\n    method: GET\n    path: /books/{isbn}/cover\n    auth: public\n  getBook:\n",
        ),
    ]);
    let msg = rejected(&text, &["10", "title", "book", "isbn"]);
    insta::assert_snapshot!("file_download_and_caller_keys_misused", msg);
}

#[test]
fn search_index_keys_misused() {
    let text = mutate(
        "searchIndexes:\n  book: {}\n",
        "searchIndexes:\n  book:\n    lists:\n      loans: { through: loan, from: readerEmail, to: bookId, fields: [dueAt, pickupCode] }\n    counts:\n      title: { of: loan, by: dueAt }\n  shelf: {}\n",
    );
    let msg = rejected(
        &text,
        &[
            "readerEmail",
            "dueAt",
            "pickupCode",
            "title",
            "dueAt",
            "shelf",
        ],
    );
    insta::assert_snapshot!("search_index_keys_misused", msg);
}

#[test]
fn public_event_stream() {
    let text = mutate(
        "  getBook:\n",
        "  feed:\n    action: subscribe\n    method: GET\n    path: /feed/{id}\n    auth: public\n  getBook:\n",
    );
    let msg = rejected(&text, &["/feed/{id}", "public"]);
    insta::assert_snapshot!("public_event_stream", msg);
}

#[test]
fn pointer_to_a_non_text_field_without_a_public_download() {
    let text = mutate(
        "    table: loans\n    softDelete: false\n",
        "    table: loans\n    softDelete: false\n    pointedBy: { via: bookId, field: pages }\n",
    );
    let msg = rejected(&text, &["pointedBy", "pages"]);
    insta::assert_snapshot!("pointer_to_a_non_text_field_without_a_public_download", msg);
}

#[test]
fn confirm_current_outside_a_secret_update() {
    let text = mutate(
        "    event: book-fetched",
        "    event: book-fetched\n    confirmCurrent: true",
    );
    let msg = rejected(&text, &["true"]);
    assert!(msg.contains("can ask for the caller's current"), "{msg}");
    insta::assert_snapshot!("confirm_current_outside_a_secret_update", msg);
}

#[test]
fn confirm_current_on_a_delete_of_another_object() {
    // Only deleting the account itself asks for the caller's secret.
    let text = mutate(
        "    event: book-archived\n",
        "    event: book-archived\n    confirmCurrent: true\n",
    );
    let msg = rejected(&text, &["true"]);
    assert!(msg.contains("routes.archiveBook.confirmCurrent"), "{msg}");
    insta::assert_snapshot!("confirm_current_on_a_delete_of_another_object", msg);
}

#[test]
fn token_header_and_cookie_settings_are_checked() {
    let text = mutate(
        "  superAdminRole: librarian\n",
        "  superAdminRole: librarian\n  tokenHeader: Bad Header\n  cookies:\n    access: a\n    refresh: a\n    csrf: c\n    csrfHeader: x-csrf\n    sameSite: Sometimes\n",
    );
    let msg = rejected(&text, &["Bad Header", "a", "Sometimes"]);
    assert!(msg.contains("not a usable header name"), "{msg}");
    assert!(msg.contains("cookie \"a\" is named twice"), "{msg}");
    assert!(msg.contains("unknown SameSite"), "{msg}");
    insta::assert_snapshot!("token_header_and_cookie_settings_are_checked", msg);
}

#[test]
fn own_session_routes_need_a_signed_in_caller_and_end_one_by_id() {
    let text = mutate(
        "  keys:\n    action: publicKeys\n",
        "  mySessions:\n    action: listSessions\n    method: GET\n    path: /sessions\n    auth: public\n  endMine:\n    action: endSession\n    method: DELETE\n    path: /sessions/mine\n    auth: login\n  keys:\n    action: publicKeys\n",
    );
    let msg = rejected(&text, &["public", "/sessions/mine"]);
    insta::assert_snapshot!(
        "own_session_routes_need_a_signed_in_caller_and_end_one_by_id",
        msg
    );
}

#[test]
fn session_limits_are_checked() {
    // A lifetime shorter than the access token, an idle limit past the lifetime.
    let text = mutate(
        "  refreshGraceSeconds: 5\n",
        "  refreshGraceSeconds: 5\n  sessionLifetimeSeconds: 300\n  sessionIdleSeconds: 7200\n",
    );
    let msg = rejected(&text, &["300", "7200"]);
    insta::assert_snapshot!("session_limits_are_checked", msg);
}

#[test]
fn a_key_overlap_shorter_than_the_access_token_is_refused() {
    let text = mutate(
        "  refreshGraceSeconds: 5\n",
        "  refreshGraceSeconds: 5\n  keyOverlapSeconds: 60\n",
    );
    let msg = rejected(&text, &["60"]);
    insta::assert_snapshot!("key_overlap_is_checked", msg);
}

#[test]
fn verification_settings_are_checked() {
    let text = mutate(
        "  superAdminRole: librarian\n",
        "  superAdminRole: librarian\n  verification:\n    verifiedField: email\n    secondFactor: sometimes\n    codeDigits: 3\n    codeTtlSeconds: 600\n    maxAttempts: 5\n    requestsPerAccount: 5\n    requestsPerAddress: 30\n    checksPerAccount: 0\n    deliveryTopic: library.sessions\n",
    );
    let msg = rejected(
        &text,
        &[
            "email",
            "sometimes",
            "3",
            "0",
            "library.sessions",
            "routes",
            "routes",
            "routes",
            "routes",
            "routes",
        ],
    );
    assert!(
        msg.contains("must be an optional Boolean field of librarian"),
        "{msg}"
    );
    assert!(
        msg.contains("no route serves the verifyStart action"),
        "{msg}"
    );
    insta::assert_snapshot!("verification_settings_are_checked", msg);
}

#[test]
fn verification_needs_an_email_login() {
    let text = mutate_all(&[
        (
            "        unique: true\n        format: email\n        maxLength: 200\n",
            "        unique: true\n        maxLength: 200\n",
        ),
        (
            "      role:\n        type: String\n        required: true\n        allowedValues: [librarian, member]\n",
            "      confirmed:\n        type: Boolean\n        default: false\n      role:\n        type: String\n        required: true\n        allowedValues: [librarian, member]\n",
        ),
        (
            "  superAdminRole: librarian\n",
            "  superAdminRole: librarian\n  verification:\n    verifiedField: confirmed\n    secondFactor: \"off\"\n    codeDigits: 6\n    codeTtlSeconds: 600\n    maxAttempts: 5\n    requestsPerAccount: 5\n    requestsPerAddress: 30\n    checksPerAccount: 10\n    deliveryTopic: library.codes\n",
        ),
        (
            "  keys:\n    action: publicKeys\n",
            "  startCheck:\n    action: verifyStart\n    method: POST\n    path: /check/start\n    auth: public\n  completeCheck:\n    action: verifyComplete\n    method: POST\n    path: /check/complete\n    auth: public\n  startReset:\n    action: resetStart\n    method: POST\n    path: /reset/start\n    auth: public\n  completeReset:\n    action: resetComplete\n    method: POST\n    path: /reset/complete\n    auth: public\n  keys:\n    action: publicKeys\n",
        ),
    ]);
    let msg = rejected(&text, &["email"]);
    assert!(msg.contains("needs format: email"), "{msg}");
    insta::assert_snapshot!("verification_needs_an_email_login", msg);
}

#[test]
fn upload_quota_is_checked() {
    let text = mutate(
        "    publicWritesPerAddress: 10\n",
        "    publicWritesPerAddress: 10\n    uploadsPerUser: 0\n",
    );
    let msg = rejected(&text, &["0"]);
    assert!(msg.contains("auth.throttle.uploadsPerUser"), "{msg}");
    // A model whose create route takes a file must bound uploads per user.
    let auth = include_str!("../model/auth-service.yaml");
    let quota = "    uploadsPerUser: 10\n";
    assert_eq!(auth.matches(quota).count(), 1);
    let Err(err) = check_model("model/auth-service.yaml", &auth.replacen(quota, "", 1)) else {
        panic!("uploads without a quota pass");
    };
    let err = err.to_string();
    assert!(
        err.contains("auth.throttle.uploadsPerUser: is required"),
        "{err}"
    );
    insta::assert_snapshot!("upload_quota_is_checked", format!("{msg}\n{err}"));
}

#[test]
fn role_ranks_are_checked() {
    let text = mutate_all(&[
        (
            "  ranks: { librarian: 2, member: 1 }\n  peerWrites: [librarian]",
            "  ranks: { librarian: 2, clerk: 1 }\n  peerWrites: [curator]",
        ),
        (
            "    fields: [email, secret]\n",
            "    fields: [email, secret, role]\n",
        ),
    ]);
    let msg = rejected(
        &text,
        &["{ librarian", "1 }", "curator", "[email, secret, role]"],
    );
    assert!(msg.contains("role \"member\" has no rank"), "{msg}");
    assert!(msg.contains("unknown role \"clerk\""), "{msg}");
    assert!(
        msg.contains("a public route cannot set librarian.role"),
        "{msg}"
    );
    insta::assert_snapshot!("role_ranks_are_checked", msg);
}

#[test]
fn top_role_must_outrank_the_others() {
    let text = mutate(
        "  ranks: { librarian: 2, member: 1 }",
        "  ranks: { librarian: 2, member: 2 }",
    );
    let msg = rejected(&text, &["librarian"]);
    assert!(msg.contains("must outrank every other role"), "{msg}");
    insta::assert_snapshot!("top_role_must_outrank_the_others", msg);
}

#[test]
fn formats_and_search_bounds_are_checked() {
    let text = mutate_all(&[
        (
            "    maxPageRowCount: 50\n",
            "    maxPageRowCount: 50\n  search: { maxWords: 0, maxWordLength: 1000 }\n",
        ),
        (
            "        format: email\n        maxLength: 200",
            "        format: uri\n        maxLength: 200",
        ),
        (
            "        type: Integer\n        filterable: true",
            "        type: Integer\n        format: url\n        filterable: true",
        ),
    ]);
    let msg = rejected(&text, &["0", "1000", "uri", "url"]);
    insta::assert_snapshot!("formats_and_search_bounds_are_checked", msg);
}

#[test]
fn hooks_are_checked_against_their_route() {
    let text = mutate_all(&[
        // A delete has no input to hook; `afterCommit` is no hook point.
        (
            "    hooks: [before, committed]",
            "    hooks: [before, afterCommit, before]",
        ),
        (
            "    hooks: [before]\n    auth: { roles: [librarian] }",
            "    hooks: [input]\n    auth: { roles: [librarian] }",
        ),
        // A search list is answered by the Elasticsearch mirror, hook-free.
        (
            "    event: books-found\n",
            "    event: books-found\n    hooks: [query]\n",
        ),
        // A session route has no hook points.
        (
            "    path: /sign-in\n",
            "    path: /sign-in\n    hooks: [before]\n",
        ),
    ]);
    let msg = rejected(
        &text,
        &["[before]", "[query]", "input", "afterCommit", "before"],
    );
    assert!(
        msg.contains("unknown hook \"afterCommit\" for a create route; expected one of \"input\", \"before\", \"after\", \"committed\""),
        "{msg}"
    );
    assert!(msg.contains("hook \"before\" is listed twice"), "{msg}");
    assert!(msg.contains("a search list takes no hooks"), "{msg}");
    insta::assert_snapshot!("hooks_are_checked_against_their_route", msg);
}

#[test]
fn custom_routes_are_checked() {
    let text = mutate_all(&[
        (
            "    publishes: [loan-returned]",
            "    publishes: [loan_returned, book-returned, book-lent]",
        ),
        ("    answer: object", "    answer: list"),
        (
            "    path: /loans/{id}/return",
            "    path: /loans/{loanId}/return",
        ),
        // Only a custom route says what it publishes or answers.
        (
            "    event: loan-extended\n",
            "    event: loan-extended\n    answer: object\n",
        ),
    ]);
    let msg = rejected(
        &text,
        &[
            "object",
            "/loans/{loanId}",
            "loan_returned",
            "book-returned",
            "book-lent",
            "list",
        ],
    );
    assert!(msg.contains("answer applies to custom routes"), "{msg}");
    assert!(
        msg.contains("names one row by {id}, or takes no parameters"),
        "{msg}"
    );
    assert!(
        msg.contains("is already published by route \"lendBook\""),
        "{msg}"
    );
    insta::assert_snapshot!("custom_routes_are_checked", msg);
}

#[test]
fn no_role_may_be_the_system_callers() {
    let text = mutate_all(&[
        (
            "  values: [librarian, member]",
            "  values: [librarian, member, system]",
        ),
        (
            "  ranks: { librarian: 2, member: 1 }",
            "  ranks: { librarian: 2, member: 1, system: 1 }",
        ),
    ]);
    let msg = rejected(&text, &["system"]);
    assert!(
        msg.contains("\"system\" is the system caller's role"),
        "{msg}"
    );
    insta::assert_snapshot!("no_role_may_be_the_system_callers", msg);
}

/// The trusting listing service's model, for the `trusts` cases.
const LISTING_FILE: &str = "tests/models/listing.yaml";
const LISTING: &str = include_str!("models/listing.yaml");

/// The listing model with each `find` (once each) replaced.
fn listing_with(edits: &[(&str, &str)]) -> String {
    let mut text = LISTING.to_string();
    for (find, replace) in edits {
        assert_eq!(text.matches(find).count(), 1, "{find:?} must occur once");
        text = text.replacen(find, replace, 1);
    }
    text
}

#[test]
fn the_trusts_section_is_checked() {
    let text = listing_with(&[
        ("  issuer: airbnb-auth-service", "  issuer: \"airbnb auth\""),
        (
            "  jwksUrl: http://airbnb-auth-service/v1/.well-known/jwks.json",
            "  jwksUrl: auth-service/jwks.json",
        ),
        (
            "  sessionTopic: session",
            "  sessionTopic: \"session events\"",
        ),
        ("  maxTokenTtlSeconds: 900", "  maxTokenTtlSeconds: 0"),
        (
            "  tokenHeader: airbnb-auth-service-access-token",
            "  tokenHeader: Authorization",
        ),
    ]);
    let msg = rejected_in(
        LISTING_FILE,
        &text,
        &[
            "\"airbnb auth\"",
            "auth-service/jwks.json",
            "\"session events\"",
            "0",
            "Authorization",
            "[hostId]",
        ],
    );
    assert!(msg.contains("is not an http(s) URL with a host"), "{msg}");
    insta::assert_snapshot!("the_trusts_section_is_checked", msg);
}

#[test]
fn a_trusting_service_signs_no_one_in_and_keeps_no_secrets() {
    let text = listing_with(&[
        (
            "  listingPermissions:",
            "  signIn:\n    action: login\n    method: POST\n    path: /login\n    auth: public\n  listingPermissions:",
        ),
        (
            "    table: listings\n",
            "    table: listings\n    ownerIsSelf: true\n",
        ),
        (
            "      checkInNotes:\n        type: String\n",
            "      checkInNotes:\n        type: String\n        secret: true\n        hash: argon2id\n",
        ),
        (
            "    callerFields: [hostId]\n    auth: login",
            "    callerFields: [hostId]\n    auth: public",
        ),
    ]);
    let msg = rejected_in(
        LISTING_FILE,
        &text,
        &["true", "argon2id", "public", "login"],
    );
    assert!(msg.contains("needs an auth section"), "{msg}");
    insta::assert_snapshot!(
        "a_trusting_service_signs_no_one_in_and_keeps_no_secrets",
        msg
    );
}

#[test]
fn a_service_issues_identities_or_trusts_an_issuer() {
    let both = mutate(
        "decisions:\n",
        "trusts:\n  issuer: a\n  audience: b\n  jwksUrl: http://a/jwks\n  sessionTopic: s\n  maxTokenTtlSeconds: 60\ndecisions:\n",
    );
    let msg = rejected(&both, &["trusts"]);
    assert!(msg.contains("not both"), "{msg}");
    let start = LISTING.find("trusts:\n").expect("trusts");
    let end = LISTING.find("# The auth service's model").expect("uses");
    let neither = format!("{}{}", &LISTING[..start], &LISTING[end..]);
    let msg2 = rejected_in(LISTING_FILE, &neither, &["service"]);
    assert!(msg2.contains("needs an auth section"), "{msg2}");
    insta::assert_snapshot!(
        "a_service_issues_identities_or_trusts_an_issuer",
        format!("{msg}\n{msg2}")
    );
}

#[test]
fn consumers_are_checked_against_the_model_that_publishes_their_events() {
    let text = listing_with(&[
        ("  maxAttempts: 4", "  maxAttempts: 0"),
        (
            "  deadLetter: \"{topicPrefix}-{consumer}-dead-letter\"",
            "  deadLetter: \"{topicPrefix}-dead-letters\"",
        ),
        (
            "    from: auth\n    object: user\n",
            "    from: auth\n    object: account\n",
        ),
        ("    event: user.deleted", "    event: user.removed"),
        ("    kind: hook", "    kind: webhook"),
        (
            "    auth: { roles: [admin, superAdmin], system: true }\n  listingPermissions:",
            "    auth: { roles: [admin, superAdmin] }\n  listingPermissions:",
        ),
    ]);
    let msg = rejected_in(
        LISTING_FILE,
        &text,
        &["0", "\"{topicPrefix}", "account", "user.removed", "webhook"],
    );
    assert!(msg.contains("has no object \"account\""), "{msg}");
    assert!(msg.contains("must contain {consumer}"), "{msg}");
    insta::assert_snapshot!(
        "consumers_are_checked_against_the_model_that_publishes_their_events",
        msg
    );
}

#[test]
fn a_route_consumer_runs_a_writing_route_the_system_caller_may_use_with_inputs_it_takes() {
    let text = listing_with(&[
        (
            "    auth: { roles: [admin, superAdmin], system: true }\n  listingPermissions:",
            "    auth: { roles: [admin, superAdmin] }\n  listingPermissions:",
        ),
        (
            "    input: { id: id }",
            "    input: { id: id, title: email2 }",
        ),
        ("    fields: [id, city]", "    fields: [id, town]"),
    ]);
    let msg = rejected_in(
        LISTING_FILE,
        &text,
        &["retireHost", "title", "email2", "town"],
    );
    assert!(msg.contains("add system: true"), "{msg}");
    insta::assert_snapshot!(
        "a_route_consumer_runs_a_writing_route_the_system_caller_may_use",
        msg
    );
}

#[test]
fn a_replica_keeps_fields_the_source_publishes_with_their_types_and_is_never_written() {
    let text = listing_with(&[
        (
            "      avatar:\n        type: String\n        maxLength: 2048\n        public: true\n",
            "      avatar:\n        type: Integer\n        public: true\n      password:\n        type: String\n      nickname:\n        type: String\n        unique: true\n",
        ),
        (
            "  listingPermissions:",
            "  renameHost:\n    object: host\n    action: update\n    method: PATCH\n    path: /hosts/{id}\n    event: host-renamed\n    fields: [fullname]\n    auth: { roles: [admin] }\n  listingPermissions:",
        ),
    ]);
    let msg = rejected_in(
        LISTING_FILE,
        &text,
        &["Integer", "password", "nickname", "true", "update"],
    );
    assert!(msg.contains("a secret of airbnb-auth-service"), "{msg}");
    insta::assert_snapshot!("a_replica_keeps_fields_the_source_publishes", msg);
}

#[test]
fn a_used_model_must_be_readable_and_valid() {
    let text = listing_with(&[(
        "  auth: ../../model/auth-service.yaml",
        "  auth: ../../model/no-such-service.yaml",
    )]);
    let msg = rejected_in(LISTING_FILE, &text, &["../../model/no-such-service.yaml"]);
    assert!(
        msg.contains("cannot read model/no-such-service.yaml"),
        "{msg}"
    );
    let text = listing_with(&[(
        "    from: auth\n    object: user",
        "    from: payments\n    object: user",
    )]);
    let msg2 = rejected_in(LISTING_FILE, &text, &["payments"]);
    assert!(msg2.contains("unknown service \"payments\""), "{msg2}");
    insta::assert_snapshot!(
        "a_used_model_must_be_readable_and_valid",
        format!("{msg}\n{msg2}")
    );
}
