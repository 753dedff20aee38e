//! The service's own settings: `service`, `topics`, `roles` and `decisions`.

use super::names::{is_kebab, is_lower_camel};
use super::{known_roles, placeholders};
use crate::diag::{one_of, Diagnostics};
use crate::model::Model;
use std::collections::BTreeSet;

/// Upper bounds of `service.search`: a model cannot make search unbounded.
const SEARCH_MAX_WORDS: u32 = 64;
const SEARCH_MAX_WORD_LENGTH: u32 = 256;

pub(super) fn service(m: &Model, d: &mut Diagnostics) {
    let s = &m.service;
    if !is_kebab(&s.name) {
        d.at("service.name", format!("\"{}\" is not a kebab-case name; expected lower-case words joined by '-', e.g. \"auth-service\"", s.name));
    }
    let parts: Vec<&str> = s.version.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        d.at(
            "service.version",
            format!(
                "\"{}\" is not a version; expected MAJOR.MINOR.PATCH, e.g. \"1.0.0\"",
                s.version
            ),
        );
    }
    if !s.api_base.starts_with('/') || s.api_base.ends_with('/') || s.api_base.contains('{') {
        d.at("service.apiBase", format!("\"{}\" is not a base path; expected a path that starts with '/' and does not end with one, e.g. \"/v1\"", s.api_base));
    }
    if s.body_limit_bytes < 1024 {
        d.at("service.bodyLimitBytes", "must be at least 1024 bytes");
    }
    let p = &s.paging;
    if p.default_page_row_count == 0 || p.default_page_row_count > p.max_page_row_count {
        d.at(
            "service.paging.defaultPageRowCount",
            format!(
                "must be between 1 and maxPageRowCount ({})",
                p.max_page_row_count
            ),
        );
    }
    let bounds = [
        ("maxWords", s.search.max_words, SEARCH_MAX_WORDS),
        (
            "maxWordLength",
            s.search.max_word_length,
            SEARCH_MAX_WORD_LENGTH,
        ),
    ];
    for (key, value, max) in bounds {
        if value == 0 || value > max {
            d.at(
                format!("service.search.{key}"),
                format!("{value} is out of range; expected 1 to {max}"),
            );
        }
    }
}

/// The placeholders each topic pattern must and may use.
pub(super) fn topics(m: &Model, d: &mut Diagnostics) {
    let t = &m.topics;
    let checks = [
        ("dbEvent", &t.db_event, &["object", "change"][..]),
        ("indexEvent", &t.index_event, &["object", "change"][..]),
        ("routeEvent", &t.route_event, &["event"][..]),
    ];
    for (key, pattern, required) in checks {
        let path = format!("topics.{key}");
        let mut allowed = vec!["topicPrefix", "searchIndexPrefix"];
        allowed.extend_from_slice(required);
        let used = placeholders(pattern);
        for p in &used {
            if !allowed.contains(&p.as_str()) {
                d.at(
                    &path,
                    format!("unknown placeholder {{{p}}}; {}", one_of(&allowed)),
                );
            }
        }
        for r in required {
            if !used.iter().any(|u| u == r) {
                d.at(
                    &path,
                    format!("pattern must contain {{{r}}}, or its topics would collide"),
                );
            }
        }
    }
    for (key, value) in [
        ("topicPrefix", &t.topic_prefix),
        ("searchIndexPrefix", &t.search_index_prefix),
    ] {
        if value.is_empty()
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            d.at(
                format!("topics.{key}"),
                "a topic name part may contain only letters, digits, '-', '_' and '.'",
            );
        }
    }
    if t.partitions == 0 {
        d.at("topics.partitions", "must be at least 1");
    }
    if t.replication_factor == 0 {
        d.at("topics.replicationFactor", "must be at least 1");
    }
}

pub(super) fn roles(m: &Model, d: &mut Diagnostics) {
    let r = &m.roles;
    if r.values.is_empty() {
        d.at("roles.values", "at least one role is needed");
    }
    for (i, v) in r.values.iter().enumerate() {
        if !is_lower_camel(v) {
            d.at(
                format!("roles.values[{i}]"),
                format!("role \"{v}\" must be lowerCamelCase"),
            );
        } else if v == "system" {
            d.at(
                format!("roles.values[{i}]"),
                "\"system\" is the system caller's role, which no account may hold; a rule lets it in with `system: true`",
            );
        }
    }
    known_roles(r, "roles.admin", &r.admin, d);
    if !r.values.contains(&r.default) {
        d.at(
            "roles.default",
            format!("unknown role \"{}\"; {}", r.default, one_of(&r.values)),
        );
    }
    for role in r.ranks.keys().filter(|k| !r.values.contains(k)) {
        d.at(
            format!("roles.ranks.{role}"),
            format!("unknown role \"{role}\"; {}", one_of(&r.values)),
        );
    }
    for role in r.values.iter().filter(|v| !r.ranks.contains_key(*v)) {
        d.at(
            "roles.ranks",
            format!("role \"{role}\" has no rank; give every role in roles.values a rank (a higher number outranks a lower one)"),
        );
    }
    known_roles(r, "roles.peerWrites", &r.peer_writes, d);
}

pub(super) fn decisions(m: &Model, d: &mut Diagnostics) {
    let mut seen = BTreeSet::new();
    for (i, dec) in m.decisions.iter().enumerate() {
        if !seen.insert(dec.id.as_str()) {
            d.at(
                format!("decisions[{i}].id"),
                format!("decision \"{}\" is listed twice", dec.id),
            );
        }
    }
}

/// `deploy:`: ports a non-root user can bind, replicas the budget and the
/// autoscaler can work with, Kubernetes quantities, shutdown times.
pub(super) fn deploy(m: &Model, d: &mut Diagnostics) {
    let k = &m.deploy;
    for (key, port) in [("httpPort", k.http_port), ("metricsPort", k.metrics_port)] {
        if port < 1024 {
            d.at(
                format!("deploy.{key}"),
                format!("{port} is a privileged port; expected 1024 to 65535, as the image runs without root"),
            );
        }
    }
    if k.http_port == k.metrics_port {
        d.at(
            "deploy.metricsPort",
            "must differ from httpPort: metrics are never served on the public port",
        );
    }
    if k.replicas == 0 {
        d.at("deploy.replicas", "must be at least 1");
    }
    if k.min_available >= k.replicas.max(1) {
        d.at(
            "deploy.minAvailable",
            format!(
                "must be below replicas ({}), or no node could ever be drained",
                k.replicas
            ),
        );
    }
    if k.max_replicas < k.replicas {
        d.at(
            "deploy.maxReplicas",
            format!("must be at least replicas ({})", k.replicas),
        );
    }
    if k.cpu_utilization == 0 || k.cpu_utilization > 100 {
        d.at(
            "deploy.cpuUtilization",
            format!(
                "{} is out of range; expected 1 to 100 (percent of the CPU request)",
                k.cpu_utilization
            ),
        );
    }
    let quantities = [
        ("cpuRequest", &k.cpu_request, &["m", ""][..]),
        ("cpuLimit", &k.cpu_limit, &["m", ""][..]),
        (
            "memoryRequest",
            &k.memory_request,
            &["Ki", "Mi", "Gi", "K", "M", "G", ""][..],
        ),
        (
            "memoryLimit",
            &k.memory_limit,
            &["Ki", "Mi", "Gi", "K", "M", "G", ""][..],
        ),
    ];
    for (key, value, units) in quantities {
        let number = units.iter().find_map(|u| value.strip_suffix(u));
        let ok = number.is_some_and(|n| {
            n.chars().all(|c| c.is_ascii_digit() || c == '.')
                && n.parse::<f64>().is_ok_and(|v| v > 0.0)
        });
        if !ok {
            let units: Vec<&str> = units.iter().filter(|u| !u.is_empty()).copied().collect();
            d.at(
                format!("deploy.{key}"),
                format!(
                    "\"{value}\" is not a Kubernetes quantity; expected a positive number, bare or with a unit ({})",
                    units.join(", ")
                ),
            );
        }
    }
    if k.shutdown_timeout_seconds == 0 {
        d.at("deploy.shutdownTimeoutSeconds", "must be at least 1");
    }
}
