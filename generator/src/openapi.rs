//! The OpenAPI 3.1 document of the routes the service serves, built from the
//! plan as data (a JSON document is data, not code, so it is not a template).

use crate::action::{Action, Auth, Family};
use crate::plan::{DownloadPlan, FieldPlan, IdentityPlan, ObjectPlan, Plan, RouteKind, RoutePlan};
use serde_json::{json, Map, Value};

/// The document, with `marker` as its `x-generated` note.
pub fn document(plan: &Plan, marker: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("Paging".into(), paging());
    schemas.insert("Filter".into(), filter());
    schemas.insert("FieldError".into(), field_error());
    schemas.insert("ErrorResponse".into(), error_response());
    for o in &plan.objects {
        schemas.insert(o.struct_name.clone(), object_schema(&o.visible));
        if let Some(v) = &o.public_view {
            schemas.insert(v.struct_name.clone(), object_schema(&v.fields));
        }
        if o.narrowed {
            schemas.insert(narrowed(o), narrowed_schema(&o.visible, &o.public_fields));
        }
        for i in &o.includes {
            let schema = if i.sight.is_empty() {
                object_schema(&i.fields)
            } else {
                narrowed_schema(&i.fields, &i.public_fields)
            };
            schemas.insert(i.struct_name.clone(), schema);
        }
        for r in &o.routes {
            operation(plan, o, r, &mut paths, &mut schemas);
        }
    }
    if let Some(id) = &plan.identity {
        auth_operations(plan, id, &mut paths, &mut schemas);
    }
    if plan.realtime.served {
        realtime_operation(plan, &mut paths);
    }
    let mut doc = json!({
        "x-generated": marker,
        "openapi": "3.1.0",
        "info": {
            "title": plan.service.title,
            "version": plan.service.version,
            "description": format!("{}. Every answer is wrapped in the response envelope; errors carry status \"ERR\".", plan.service.description),
        },
        "paths": {},
        "components": {
            "schemas": {},
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
            }
        }
    });
    // Moved in rather than interpolated: json! would copy them value by value.
    doc["paths"] = paths.into();
    doc["components"]["schemas"] = schemas.into();
    doc
}

pub(crate) fn field_schema(f: &FieldPlan) -> Value {
    if f.descriptor {
        return json!({
            "type": "object",
            "description": "The bytes are never sent in JSON: fetch the row at href.",
            "properties": { "omitted": { "const": true }, "href": { "type": ["string", "null"] } },
            "required": ["omitted", "href"],
        });
    }
    let mut s = Map::new();
    let ty = Value::String(f.json_type.to_string());
    s.insert(
        "type".into(),
        if f.nullable { json!([ty, "null"]) } else { ty },
    );
    if let Some(fmt) = f.json_format {
        s.insert("format".into(), json!(fmt));
    }
    if let Some(n) = f.min_length {
        s.insert("minLength".into(), json!(n));
    }
    if let Some(n) = f.max_length {
        s.insert("maxLength".into(), json!(n));
    }
    if !f.allowed_values.is_empty() {
        let mut values: Vec<Value> = f.allowed_values.iter().map(|v| json!(v)).collect();
        if f.nullable {
            values.push(Value::Null);
        }
        s.insert("enum".into(), Value::Array(values));
    }
    if f.secret {
        s.insert("writeOnly".into(), json!(true));
    }
    Value::Object(s)
}

pub(crate) fn object_schema(fields: &[FieldPlan]) -> Value {
    let props: Map<String, Value> = fields
        .iter()
        .map(|f| (f.name.clone(), field_schema(f)))
        .collect();
    let required: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    json!({ "type": "object", "properties": props, "required": required })
}

/// The schema of rows a view narrows: every field may be there, only the
/// public ones always are.
fn narrowed_schema(fields: &[FieldPlan], public: &[String]) -> Value {
    let mut s = object_schema(fields);
    s["required"] = json!(public);
    s["description"] =
        json!("Fields that are not public appear only to callers the route's view shows them to");
    s
}

/// The name of an object's narrowed schema, e.g. `UserNarrowed`.
fn narrowed(o: &ObjectPlan) -> String {
    format!("{}Narrowed", o.struct_name)
}

/// A value that satisfies the field's rules, for the document's examples.
fn example(f: &FieldPlan) -> Value {
    if let Some(v) = f.allowed_values.first() {
        return json!(v);
    }
    match (f.json_type, f.json_format) {
        (_, Some("email")) => json!("someone@example.com"),
        (_, Some("uri-reference")) => json!("https://example.com/picture.png"),
        (_, Some("uuid")) => json!("3fa85f64-5717-4562-b3fc-2c963f66afa6"),
        (_, Some("date-time")) => json!("2026-01-01T00:00:00Z"),
        (_, Some("byte")) => json!("aGVsbG8="),
        ("boolean", _) => json!(false),
        ("integer", _) => json!(1),
        ("object", _) => json!({}),
        _ => {
            let min = f.min_length.unwrap_or(1) as usize;
            let max = f.max_length.map_or(usize::MAX, |m| m as usize);
            let text = if min > 8 {
                "a long example value".repeat(min / 20 + 1)
            } else {
                "example value".to_string()
            };
            json!(text.chars().take(max.max(min)).collect::<String>())
        }
    }
}

fn input_schema(r: &RoutePlan) -> Value {
    let mut props: Map<String, Value> = r
        .inputs()
        .iter()
        .map(|f| {
            let mut s = field_schema(f);
            s["examples"] = json!([example(f)]);
            (f.name.clone(), s)
        })
        .collect();
    let required: Vec<&str> = if matches!(
        r.action,
        Action::Create | Action::Custom | Action::Delete
    ) {
        r.inputs()
            .iter()
            .filter(|f| f.required && f.default_rust.is_none())
            .map(|f| f.name.as_str())
            .collect()
    } else {
        props.insert("recordVersion".into(), json!({ "type": "integer", "description": "The recordVersion the client read; a stale one is answered 409." }));
        Vec::new()
    };
    let mut required = required;
    if !r.confirm_field().is_empty() {
        let when = if r.confirm_always() {
            required.push(r.confirm_field());
            "which the change must prove"
        } else {
            "which switching the second factor off must prove"
        };
        props.insert(r.confirm_field().to_string(), json!({ "type": "string", "writeOnly": true, "description": format!("The caller's current value, {when}") }));
    }
    let mut s = json!({ "type": "object", "properties": props, "additionalProperties": false });
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    if r.action == Action::Update {
        s["minProperties"] = json!(1);
    }
    s
}

pub(crate) fn envelope(data_name: &str, data: Value, list: bool) -> Value {
    let mut props = json!({
        "status": { "const": "OK" },
        "statusCode": { "type": "string" },
        "elapsedMs": { "type": "integer" },
        "ssoTime": { "type": ["integer", "null"] },
        "source": { "type": "string" },
        "cacheKey": { "type": ["string", "null"] },
        "userId": { "type": ["string", "null"], "format": "uuid" },
        "sessionId": { "type": ["string", "null"] },
        "requestId": { "type": "string" },
        "dataName": { "const": data_name },
        "method": { "type": "string" },
        "action": { "type": "string" },
        "appVersion": { "type": "string" },
        "rowCount": { "type": "integer" },
    });
    props[data_name] = data;
    let mut required = vec![
        "status",
        "statusCode",
        "elapsedMs",
        "requestId",
        "dataName",
        "method",
        "action",
        "appVersion",
        "rowCount",
        data_name,
    ];
    if list {
        props["paging"] = json!({ "$ref": "#/components/schemas/Paging" });
        props["filters"] =
            json!({ "type": "array", "items": { "$ref": "#/components/schemas/Filter" } });
        props["uiPermissions"] = json!({ "type": "array", "items": { "type": "string" } });
        required.extend(["paging", "filters", "uiPermissions"]);
    }
    json!({ "type": "object", "properties": props, "required": required })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema_ref("ErrorResponse") } } })
}

/// The answer of an operation that needs the database while it cannot be reached.
fn unavailable() -> Value {
    error("The database cannot be reached (errCode SERVICE_UNAVAILABLE); retry later")
}

fn operation(
    plan: &Plan,
    o: &ObjectPlan,
    r: &RoutePlan,
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
) {
    if let RouteKind::Download(d) = &r.kind {
        download_operation(o, r, d, paths);
        return;
    }
    let mut params = Vec::new();
    if r.path.contains("{id}") {
        params.push(json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }));
    }
    let data = if r.action == Action::List {
        let row = format!("{}Row", r.type_prefix);
        let mut parts = vec![schema_ref(&shown(o, r))];
        if r.searches() {
            // Narrowed hits keep only their rank beyond the public fields.
            let required = if r.sight().is_empty() {
                json!(["_score", "extends"])
            } else {
                json!(["_score"])
            };
            parts.push(json!({ "type": "object", "description": "The hit's index document: the row, the model's aggregates and extends", "properties": { "_score": { "type": "number" }, "extends": { "type": "object" } }, "required": required }));
        }
        if !r.includes().is_empty() {
            let props: Map<String, Value> = r
                .includes()
                .iter()
                .map(|i| {
                    (
                        i.name.clone(),
                        json!({ "oneOf": [schema_ref(&i.struct_name), { "type": "null" }] }),
                    )
                })
                .collect();
            parts.push(json!({ "type": "object", "properties": props }));
        }
        schemas.insert(row.clone(), json!({ "allOf": parts }));
        params.push(query(
            "pageNumber",
            json!({ "type": "integer", "minimum": 1, "default": 1 }),
        ));
        params.push(query(
            "pageRowCount",
            json!({ "type": "integer", "minimum": 1, "maximum": plan.service.max_page_row_count, "default": plan.service.default_page_row_count }),
        ));
        let sorts: Vec<&str> = o.sorts.iter().map(|s| s.key.as_str()).collect();
        params.push(query(
            "sort",
            json!({ "type": "string", "enum": sorts, "default": o.default_sort }),
        ));
        if r.searches() {
            let mut q = query(
                "q",
                json!({
                    "type": "string",
                    "minLength": 1,
                    "description": format!(
                        "Words (runs of letters or digits), each matched as a prefix: at most {} words of at most {} characters each.",
                        plan.service.search_max_words, plan.service.search_max_word_length
                    ),
                }),
            );
            q["required"] = json!(true);
            params.push(q);
        }
        for f in &o.filters {
            let mut s = field_schema(f);
            s["type"] = json!(f.json_type);
            params.push(query(&f.name, s));
        }
        json!({ "type": "array", "items": schema_ref(&row) })
    } else if r.action == Action::Extend {
        json!({ "allOf": [schema_ref(&o.struct_name), { "type": "object", "properties": { "extends": { "type": "object" } }, "required": ["extends"] }] })
    } else if r.public_view() {
        schema_ref(
            &o.public_view
                .as_ref()
                .map(|v| v.struct_name.clone())
                .unwrap_or_default(),
        )
    } else {
        schema_ref(&shown(o, r))
    };
    let response = format!("{}Response", r.type_prefix);
    schemas.insert(
        response.clone(),
        envelope(&r.data_name, data, r.action == Action::List),
    );
    let mut responses = Map::new();
    responses.insert(
        r.success_status.to_string(),
        json!({ "description": "Success, in the response envelope", "content": { "application/json": { "schema": schema_ref(&response) } } }),
    );
    responses.insert(
        "400".into(),
        error("Validation failed, or the request could not be read"),
    );
    if r.path.contains("{id}") {
        responses.insert("404".into(), error("No such active row"));
    }
    if r.action.changes_rows() {
        responses.insert("409".into(), error("A unique value is taken, the recordVersion is stale, or the row is still referenced"));
    }
    if r.action == Action::Custom || r.hooks.any() {
        responses
            .entry("409")
            .or_insert_with(|| error("The route's business rules refused the request"));
    }
    if r.action == Action::Custom {
        responses.insert(
            "501".into(),
            error("The route's hand-written body is still the generated stub"),
        );
    }
    // A delete takes a body only to prove the caller's secret.
    let takes_body = (r.action.writes_fields()
        && !(r.action == Action::Custom && r.inputs().is_empty()))
        || !r.confirm_field().is_empty();
    if takes_body {
        responses.insert(
            "413".into(),
            error("The body is larger than the service accepts"),
        );
    }
    if r.action == Action::Create {
        responses.insert("422".into(), error("A referenced row does not exist"));
    }
    if let Some(u) = r.upload() {
        responses.insert(
            "413".into(),
            error(&format!(
                "The file is larger than {} bytes, or the body than the service accepts",
                u.max_bytes
            )),
        );
        responses.insert(
            "415".into(),
            error("The file's real type (sniffed from its bytes) is not accepted or disagrees with the declared one"),
        );
    }
    if !r.caller_fields().is_empty() {
        responses.insert(
            "403".into(),
            error("A caller without an admin role named another account"),
        );
    }
    add_auth_responses(r, &mut responses);
    // Every route of an object reads or writes its table.
    responses.insert("503".into(), unavailable());
    let mut op = json!({
        "x-access": access(r),
        "operationId": r.name,
        "summary": format!("{} {}", r.action, r.data_name),
        "tags": [o.name],
        "description": description(r),
        "parameters": params,
        "responses": responses,
        "security": if r.auth.is_public() { json!([]) } else { json!([{ "bearerAuth": [] }]) },
    });
    if takes_body {
        let input = format!("{}Input", r.type_prefix);
        schemas.insert(input.clone(), input_schema(r));
        op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema_ref(&input) } } });
        if let Some(u) = r.upload() {
            let mut form = input_schema(r);
            form["properties"][&u.blob_name] = json!({ "type": "string", "contentMediaType": "application/octet-stream", "description": "The file's bytes (a file part)" });
            op["requestBody"]["content"]["multipart/form-data"] = json!({ "schema": form });
        }
    }
    if r.action == Action::Extend {
        op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
            "type": "object", "minProperties": 1, "additionalProperties": true,
            "description": "Data to add under the document's extends, e.g. {\"bookings\": [...], \"bookings_count\": 2}"
        } } } });
        op["description"] = json!(format!(
            "Allowed: {}. Publishes only what was added on the index's -extended topic.",
            r.auth.summary
        ));
    }
    let path = paths.entry(r.path.clone()).or_insert_with(|| json!({}));
    path[r.method.to_lowercase()] = op;
}

/// The event stream: Server-Sent Events, not the envelope.
fn realtime_operation(plan: &Plan, paths: &mut Map<String, Value>) {
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": "Server-Sent Events: each has `id` (the outbox id, for Last-Event-ID), `event` (the topic) and `data` (the event's JSON payload). `event: resync` says events after Last-Event-ID are no longer kept.",
            "content": { "text/event-stream": { "schema": { "type": "string" } } },
        }),
    );
    responses.insert("400".into(), error("A malformed query or Last-Event-ID"));
    responses.insert(
        "401".into(),
        error("No valid bearer token, or its session has ended"),
    );
    responses.insert("503".into(), unavailable());
    let op = json!({
        "x-access": "login",
        "operationId": plan.realtime.name,
        "summary": "subscribe to events",
        "tags": ["realtime"],
        "description": "The events of the caller's own rows (admins: all), live, fed from the outbox of every replica; resumes after Last-Event-ID within the outbox's retention.",
        "parameters": [
            { "name": "topics", "in": "query", "required": false, "schema": { "type": "string" }, "description": "Comma-separated topics; all when absent" },
            { "name": "lastEventId", "in": "query", "required": false, "schema": { "type": "integer" }, "description": "Resume after this event id" },
            { "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "string" } }
        ],
        "responses": responses,
        "security": [{ "bearerAuth": [] }],
    });
    paths.insert(plan.realtime.path.clone(), json!({ "get": op }));
}

/// A download answers the file's bytes, not the envelope.
fn download_operation(
    o: &ObjectPlan,
    r: &RoutePlan,
    d: &DownloadPlan,
    paths: &mut Map<String, Value>,
) {
    let key = if d.key_type == "Uuid" {
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } })
    } else {
        let name = r
            .path
            .rsplit('{')
            .next()
            .unwrap_or_default()
            .trim_end_matches('}');
        json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
    };
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": format!("The file's bytes, with Content-Type, Content-Length, ETag and Cache-Control: {}", d.cache_control),
            "content": { "*/*": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } },
        }),
    );
    responses.insert(
        "304".into(),
        json!({ "description": "If-None-Match names the current ETag" }),
    );
    responses.insert("400".into(), error("The path parameter is malformed"));
    responses.insert("404".into(), error("No such file"));
    add_auth_responses(r, &mut responses);
    responses.insert("503".into(), unavailable());
    let op = json!({
        "x-access": access(r),
        "operationId": r.name,
        "summary": format!("download {}", o.name),
        "tags": [o.name],
        "description": format!("Allowed: {}. Publishes no event.", r.auth.summary),
        "parameters": [key, { "name": "If-None-Match", "in": "header", "required": false, "schema": { "type": "string" } }],
        "responses": responses,
        "security": if r.auth.is_public() { json!([]) } else { json!([{ "bearerAuth": [] }]) },
    });
    let path = paths.entry(r.path.clone()).or_insert_with(|| json!({}));
    path[r.method.to_lowercase()] = op;
}

/// The schema of the rows a route answers: whole, or as its view narrows them.
fn shown(o: &ObjectPlan, r: &RoutePlan) -> String {
    if r.sight().is_empty() {
        o.struct_name.clone()
    } else {
        narrowed(o)
    }
}

/// Who may call the route, what it shows, and what it publishes.
fn description(r: &RoutePlan) -> String {
    let mut text = format!("Allowed: {}.", r.auth.summary);
    if r.action.has_view() {
        text.push_str(&format!(" Shows: {}", r.view_doc()));
        if r.action == Action::List && !r.sight().is_empty() {
            // Filters and sorts must not tell hidden values apart.
            text.push_str("; filters and sorts on fields the caller does not see on every row are answered 400");
        }
        text.push('.');
    }
    let topic = r.topic.clone().unwrap_or_default();
    if r.sight().is_empty() && !r.includes().iter().any(|i| !i.sight.is_empty()) {
        text.push_str(&format!(" Publishes its route event on `{topic}`."));
    } else {
        text.push_str(&format!(
            " Publishes its route event on `{topic}`, carrying what the caller received."
        ));
    }
    if let RouteKind::Custom(c) = &r.kind {
        for p in &c.publishes {
            text.push_str(&format!(" Its body may also publish `{}`.", p.topic));
        }
    }
    text
}

fn query(name: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema })
}

fn paging() -> Value {
    json!({
        "type": "object",
        "properties": {
            "pageNumber": { "type": "integer" },
            "pageRowCount": { "type": "integer" },
            "totalRowCount": { "type": "integer" },
            "pageCount": { "type": "integer" }
        },
        "required": ["pageNumber", "pageRowCount", "totalRowCount", "pageCount"]
    })
}

fn filter() -> Value {
    json!({
        "type": "object",
        "properties": { "field": { "type": "string" }, "op": { "type": "string" }, "value": {} },
        "required": ["field", "op", "value"]
    })
}

fn field_error() -> Value {
    json!({
        "type": "object",
        "properties": { "field": { "type": "string" }, "message": { "type": "string" } },
        "required": ["field", "message"]
    })
}

fn error_response() -> Value {
    json!({
        "type": "object",
        "properties": {
            "status": { "const": "ERR" },
            "statusCode": { "type": "string" },
            "errCode": { "type": "string" },
            "message": { "type": "string" },
            "details": { "type": "array", "items": schema_ref("FieldError") },
            "elapsedMs": { "type": "integer" },
            "requestId": { "type": "string" },
            "appVersion": { "type": "string" }
        },
        "required": ["status", "statusCode", "errCode", "message", "details", "requestId"]
    })
}

/// The route's rule, machine-readable, for gateways and front ends.
fn access(r: &RoutePlan) -> Value {
    match &r.auth.rule {
        Auth::Public => json!("public"),
        Auth::Login => json!("login"),
        Auth::Rule(rule) => json!({ "roles": rule.roles, "owner": rule.owner }),
    }
}

fn add_auth_responses(r: &RoutePlan, responses: &mut Map<String, Value>) {
    if !r.auth.is_public() {
        responses.insert(
            "401".into(),
            error("No valid bearer token, or its session has ended"),
        );
    }
    if r.auth.rule.rule().is_some() {
        responses.insert(
            "403".into(),
            error("The caller's role or ownership does not allow the route"),
        );
    }
    // Uploads count against the user's quota (auth.throttle.uploadsPerUser).
    if r.throttled || r.action == Action::Login || r.upload().is_some() {
        responses.insert("429".into(), error("Too many attempts; see Retry-After"));
    }
}

pub(crate) fn session_schema(id: &IdentityPlan) -> Value {
    let mut props = json!({
        "sessionId": { "type": "string", "format": "uuid" },
        "userId": { "type": "string", "format": "uuid" },
        "accessToken": { "type": ["string", "null"], "description": "EdDSA JWT; verify with the JWKS route" },
        "accessTokenExpiresAt": { "type": ["string", "null"], "format": "date-time" },
        "refreshToken": { "type": ["string", "null"], "description": "Opaque; spent on use" },
        "refreshTokenExpiresAt": { "type": "string", "format": "date-time" },
        "createdAt": { "type": "string", "format": "date-time" },
        "expiredAt": { "type": "string", "format": "date-time" },
    });
    for f in &id.device_fields {
        props[&f.name] = json!({ "type": ["string", "null"] });
    }
    json!({ "type": "object", "properties": props, "required": ["sessionId", "userId", "createdAt", "expiredAt"] })
}

/// An auth operation: its route, summary, request body and success answer.
type AuthEntry<'a> = (&'a RoutePlan, &'static str, Option<Value>, Value);

/// The routes on a user's own sessions the model serves, and their answers.
fn own_sessions<'a>(
    id: &'a IdentityPlan,
    schemas: &mut Map<String, Value>,
    entries: &mut Vec<AuthEntry<'a>>,
) {
    let ok = |schema: String| json!({ "description": "Success, in the response envelope", "content": { "application/json": { "schema": schema_ref(&schema) } } });
    let mut props = json!({
        "sessionId": { "type": "string", "format": "uuid" },
        "createdAt": { "type": "string", "format": "date-time" },
        "refreshedAt": { "type": ["string", "null"], "format": "date-time" },
        "expiredAt": { "type": "string", "format": "date-time" },
        "current": { "type": "boolean", "description": "The session of this request" },
    });
    for f in &id.device_fields {
        props[&f.name] = json!({ "type": ["string", "null"] });
    }
    schemas.insert(
        "OwnSession".into(),
        json!({ "type": "object", "description": "A session as its owner sees it: never a token", "properties": props,
            "required": ["sessionId", "createdAt", "refreshedAt", "expiredAt", "current"] }),
    );
    if let Some(r) = &id.list_sessions {
        let name = format!("{}Response", r.type_prefix);
        let list = json!({ "type": "array", "items": schema_ref("OwnSession") });
        schemas.insert(name.clone(), envelope(&r.data_name, list, false));
        entries.push((r, "the caller's live sessions", None, ok(name)));
    }
    if let Some(r) = &id.end_session {
        let name = format!("{}Response", r.type_prefix);
        schemas.insert(
            name.clone(),
            envelope(&r.data_name, schema_ref("OwnSession"), false),
        );
        entries.push((r, "end one of the caller's sessions", None, ok(name)));
    }
    if let Some(r) = &id.end_other_sessions {
        let name = format!("{}Response", r.type_prefix);
        let ended = json!({ "type": "object", "properties": { "ended": { "type": "integer" } }, "required": ["ended"] });
        schemas.insert(name.clone(), envelope(&r.data_name, ended, false));
        entries.push((r, "end every other session of the caller", None, ok(name)));
    }
}

fn auth_operations(
    plan: &Plan,
    id: &IdentityPlan,
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
) {
    schemas.insert("Session".into(), session_schema(id));
    schemas.insert(
        "SessionResponse".into(),
        envelope("session", schema_ref("Session"), false),
    );
    let mut login_props = Map::new();
    login_props.insert(id.login_field.clone(), json!({ "type": "string" }));
    login_props.insert(
        id.password_field_name.clone(),
        json!({ "type": "string", "writeOnly": true }),
    );
    for f in &id.device_fields {
        // The runtime's bound (MAX_DEVICE_FACT_CHARS): longer is a 400.
        login_props.insert(
            f.name.clone(),
            json!({ "type": "string", "maxLength": 256 }),
        );
    }
    schemas.insert(
        "LoginInput".into(),
        json!({ "type": "object", "properties": login_props, "required": [id.login_field, id.password_field_name], "additionalProperties": false }),
    );
    schemas.insert(
        "RefreshInput".into(),
        json!({ "type": "object", "properties": { "refreshToken": { "type": "string" } }, "required": ["refreshToken"], "additionalProperties": false }),
    );
    let user = plan
        .objects
        .iter()
        .find(|o| o.module == id.user_module)
        .map(|o| o.struct_name.clone())
        .unwrap_or_default();
    schemas.insert(
        "CurrentUserResponse".into(),
        envelope(&id.current_user.data_name, schema_ref(&user), false),
    );
    let ok = |schema: &str| json!({ "description": "Success, in the response envelope", "content": { "application/json": { "schema": schema_ref(schema) } } });
    let body = |schema: &str| json!({ "required": true, "content": { "application/json": { "schema": schema_ref(schema) } } });
    let jwks = json!({
        "description": "The JSON Web Key Set that verifies access tokens",
        "content": { "application/json": { "schema": { "type": "object", "properties": { "keys": { "type": "array", "items": { "type": "object" } } }, "required": ["keys"] } } }
    });
    if id.cookies.is_some() {
        schemas["LoginInput"]["properties"]["setCookie"] = json!({ "type": "boolean", "description": "Also set httpOnly session cookies and a CSRF cookie" });
        schemas["RefreshInput"]["required"] = json!([]);
    }
    let mut entries = vec![
        (
            &id.sign_in,
            "log in",
            Some(body("LoginInput")),
            ok("SessionResponse"),
        ),
        (
            &id.refresh,
            "refresh the tokens",
            Some(body("RefreshInput")),
            ok("SessionResponse"),
        ),
        (&id.sign_out, "log out", None, ok("SessionResponse")),
        (
            &id.current_user,
            "the caller's account",
            None,
            ok("CurrentUserResponse"),
        ),
        (&id.public_keys, "public keys (JWKS)", None, jwks),
    ];
    if let Some(r) = &id.permissions {
        schemas.insert(
            format!("{}Response", r.type_prefix),
            envelope(
                &r.data_name,
                json!({
                    "type": "object",
                    "properties": {
                        "role": { "type": "string" },
                        "routes": { "type": "array", "items": { "type": "object", "properties": {
                            "name": { "type": "string" },
                            "method": { "type": "string" },
                            "path": { "type": "string" },
                            "object": { "type": "string" },
                            "access": { "enum": ["all", "own", "none"] },
                            "view": { "enum": ["full", "own", "public", "none"], "description": "What the caller sees of the rows: every field, every field of its own rows and the public fields of others, the public fields, or nothing (a route the caller cannot use)" }
                        }, "required": ["name", "method", "path", "object", "access", "view"] } }
                    },
                    "required": ["role", "routes"]
                }),
                false,
            ),
        );
        entries.push((
            r,
            "what the caller may do, per route",
            None,
            ok(&format!("{}Response", r.type_prefix)),
        ));
    }
    own_sessions(id, schemas, &mut entries);
    if let Some(f) = &id.flows {
        let text = json!({ "type": "string" });
        let input = |fields: &[(&str, &Value)]| {
            let props: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| (k.to_string(), (*v).clone()))
                .collect();
            let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
            json!({ "type": "object", "properties": props, "required": required, "additionalProperties": false })
        };
        let login = id.login_field.as_str();
        let secret = id.password_field_name.as_str();
        schemas.insert("StartInput".into(), input(&[(login, &text)]));
        schemas.insert(
            "CompleteInput".into(),
            input(&[(login, &text), ("code", &text)]),
        );
        schemas.insert(
            "ResetInput".into(),
            input(&[
                (login, &text),
                ("code", &text),
                (secret, &json!({ "type": "string", "writeOnly": true })),
            ]),
        );
        schemas.insert(
            "SecondFactorInput".into(),
            input(&[
                (
                    "challengeId",
                    &json!({ "type": "string", "format": "uuid" }),
                ),
                ("code", &text),
            ]),
        );
        let started = json!({
            "type": "object",
            "description": "The same whether or not the account exists",
            "properties": { "accepted": { "const": true }, "codeExpiresInSeconds": { "type": "integer" } },
            "required": ["accepted", "codeExpiresInSeconds"]
        });
        for r in [&f.verify_start, &f.reset_start] {
            schemas.insert(
                format!("{}Response", r.type_prefix),
                envelope(&r.data_name, started.clone(), false),
            );
        }
        for r in [&f.verify_complete, &f.reset_complete] {
            schemas.insert(
                format!("{}Response", r.type_prefix),
                envelope(&r.data_name, schema_ref(&user), false),
            );
        }
        let accepted = |schema: &str| json!({ "description": "Accepted: a code is sent when the account exists", "content": { "application/json": { "schema": schema_ref(schema) } } });
        entries.push((
            &f.verify_start,
            "send a code that confirms the address",
            Some(body("StartInput")),
            accepted(&format!("{}Response", f.verify_start.type_prefix)),
        ));
        entries.push((
            &f.verify_complete,
            "confirm the address with the code",
            Some(body("CompleteInput")),
            ok(&format!("{}Response", f.verify_complete.type_prefix)),
        ));
        entries.push((
            &f.reset_start,
            "send a reset code",
            Some(body("StartInput")),
            accepted(&format!("{}Response", f.reset_start.type_prefix)),
        ));
        entries.push((
            &f.reset_complete,
            "set a new secret with the code; ends every session",
            Some(body("ResetInput")),
            ok(&format!("{}Response", f.reset_complete.type_prefix)),
        ));
        if let Some(r) = &f.second_factor {
            entries.push((
                r,
                "complete a two-step login with the emailed code",
                Some(body("SecondFactorInput")),
                ok("SessionResponse"),
            ));
        }
    }
    for (r, summary, request, success) in entries {
        let mut responses = Map::new();
        let started = matches!(r.action, Action::VerifyStart | Action::ResetStart);
        let flow = r.action.family() == Family::Flow;
        responses.insert(if started { "202" } else { "200" }.into(), success);
        if request.is_some() {
            responses.insert(
                "400".into(),
                error("The body could not be read or lacks a field"),
            );
        }
        if r.action != Action::PublicKeys && !flow {
            responses.insert("401".into(), error("Wrong credentials, or no live session"));
        }
        add_auth_responses(r, &mut responses);
        responses.remove("403");
        if r.action == Action::Login && id.flows.is_some() {
            responses.insert(
                "202".into(),
                json!({ "description": "A second factor is required: a code was emailed; complete with the challenge", "content": { "application/json": { "schema": envelope("session", json!({
                    "type": "object",
                    "properties": {
                        "secondFactorRequired": { "const": true },
                        "challengeId": { "type": "string", "format": "uuid" },
                        "channel": { "const": "email" },
                        "expiresAt": { "type": "string", "format": "date-time" }
                    },
                    "required": ["secondFactorRequired", "challengeId", "channel", "expiresAt"]
                }), false) } } }),
            );
            responses.insert(
                "403".into(),
                error("The account's address is not confirmed (NOT_VERIFIED)"),
            );
        }
        if flow {
            if !started {
                responses.insert("400".into(), error("The body lacks a field, or the code is wrong, expired, used or void (CODE_REJECTED)"));
            }
            responses.insert("429".into(), error("Too many attempts; see Retry-After"));
        }
        if r.action != Action::PublicKeys {
            // Sessions and accounts live in the database; the keys are in memory.
            responses.insert("503".into(), unavailable());
        }
        if r.action == Action::EndSession {
            responses.insert("400".into(), error("The id is not a UUID"));
            responses.insert("404".into(), error("No such live session of the caller"));
        }
        let parameters = if r.path.contains("{id}") {
            json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }])
        } else {
            json!([])
        };
        let mut op = json!({
            "x-access": access(r),
            "operationId": r.name,
            "summary": summary,
            "tags": ["auth"],
            "parameters": parameters,
            "responses": responses,
            "security": if r.auth.is_public() { json!([]) } else { json!([{ "bearerAuth": [] }]) },
        });
        if let Some(b) = request {
            op["requestBody"] = b;
        }
        let path = paths.entry(r.path.clone()).or_insert_with(|| json!({}));
        path[r.method.to_lowercase()] = op;
    }
}
