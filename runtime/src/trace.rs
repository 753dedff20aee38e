//! W3C trace context (`traceparent`, `tracestate`): what a request or an
//! event says about the trace it belongs to, carried from an HTTP request
//! into the outbox, onto Kafka records, and from a consumed record into the
//! consumer's work.
//!
//! Every request and every consumed event has one, whether or not spans are
//! exported: the incoming context's trace continued, or a fresh trace. With
//! OpenTelemetry on (the `telemetry` module), the ids are those of the
//! current span, so what goes out names the span that sent it. With it
//! off, nothing is recorded and the ids cost two random numbers a request:
//! logs, events and the session events' `traceId` still join up across
//! services that do trace.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans (an OpenTelemetry layer is installed).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Said once, by `telemetry::init`, when it installs the exporter.
pub(crate) fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// One position in a trace: the trace, the span that is the parent of what
/// comes next, whether the trace is sampled, and the vendors' `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    pub state: Option<Arc<str>>,
}

impl TraceContext {
    /// A new trace, sampled (a sampler upstream of it would have said otherwise).
    pub fn fresh() -> Self {
        let trace = uuid::Uuid::new_v4().into_bytes();
        Self {
            trace_id: trace,
            span_id: new_span_id(),
            sampled: true,
            state: None,
        }
    }

    /// The same trace, one span further.
    pub fn child(&self) -> Self {
        Self {
            span_id: new_span_id(),
            ..self.clone()
        }
    }

    /// Reads a `traceparent` (version `00`, or a later version's first four
    /// fields) and its `tracestate`; `None` for anything malformed or with an
    /// all-zero id, which the W3C spec says to ignore.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let _: [u8; 1] = hex(version)?;
        let trace_id: [u8; 16] = hex(trace)?;
        let span_id: [u8; 8] = hex(span)?;
        let [flags]: [u8; 1] = hex(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let state = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .map(Arc::from);
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            state,
        })
    }

    /// `00-<trace>-<span>-<flags>`.
    pub fn traceparent(&self) -> String {
        // Written straight into one buffer: every read event carries one.
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.span_id);
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }

    /// The trace id as 32 lowercase hex digits (the session events' `traceId`).
    pub fn trace_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    pub fn span_hex(&self) -> String {
        to_hex(&self.span_id)
    }

    /// As OpenTelemetry's remote parent of a span.
    pub fn otel_parent(&self) -> opentelemetry::Context {
        let state = self
            .state
            .as_deref()
            .and_then(|s| TraceState::from_str(s).ok())
            .unwrap_or_default();
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let span = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            flags,
            true,
            state,
        );
        opentelemetry::Context::new().with_remote_span_context(span)
    }

    /// Makes this the remote parent of `span` (an event's producer or
    /// consumer span), which must not have started yet.
    pub fn adopt(&self, span: &tracing::Span) {
        // Only fails when no exporter is installed or the span is disabled:
        // then there is nothing to parent.
        let _ = span.set_parent(self.otel_parent());
    }

    /// The OpenTelemetry span of `span`, when spans are exported and it has one.
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        if !exporting() || span.is_disabled() {
            return None;
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return None;
        }
        let state = sc.trace_state().header();
        Some(Self {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            sampled: sc.is_sampled(),
            state: (!state.is_empty()).then(|| Arc::from(state)),
        })
    }

    /// Where what happens now sits in the trace: the current span when spans
    /// are exported (so an event names the span that wrote it), else `self`.
    pub fn here(&self) -> Self {
        Self::of_span(&tracing::Span::current()).unwrap_or_else(|| self.clone())
    }
}

fn new_span_id() -> [u8; 8] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut id = [0; 8];
    id.copy_from_slice(&bytes[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// Lowercase hex of exactly `N` bytes (W3C ids are lowercase).
fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips_with_its_state() {
        let t = TraceContext::parse(PARENT, Some("congo=t61rcWkgMzE")).expect("valid");
        assert_eq!(t.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_hex(), "00f067aa0ba902b7");
        assert!(t.sampled);
        assert_eq!(t.state.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(t.traceparent(), PARENT);
        let unsampled = TraceContext::parse(&PARENT.replace("-01", "-00"), None).expect("valid");
        assert!(!unsampled.sampled);
        assert!(unsampled.traceparent().ends_with("-00"));
    }

    #[test]
    fn malformed_or_zero_ids_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
        }
        // A later version may add fields after the four it shares with 00.
        assert!(TraceContext::parse(&format!("01{}-later", &PARENT[2..]), None).is_some());
    }

    #[test]
    fn a_child_keeps_the_trace_and_takes_a_new_span() {
        let t = TraceContext::parse(PARENT, None).expect("valid");
        let c = t.child();
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.span_id, t.span_id);
        let fresh = TraceContext::fresh();
        assert_ne!(fresh.trace_id, t.trace_id);
        assert_eq!(fresh.trace_hex().len(), 32);
        assert!(TraceContext::parse(&fresh.traceparent(), None).is_some());
    }

    #[test]
    fn without_an_exporter_the_context_is_the_one_given() {
        let t = TraceContext::parse(PARENT, None).expect("valid");
        assert_eq!(t.here(), t);
    }
}
