//! Deployment decisions: the container image and the Kubernetes objects of
//! a generated service, and the settings they pass it. Ports, resources,
//! replicas and shutdown times are this module's defaults; the settings are
//! the ones the rendered `config.rs` reads ([`crate::settings`]).

use super::Plan;
use crate::settings::Setting;

/// The port the container listens on (`HTTP_ADDR=0.0.0.0:8080`): unprivileged,
/// so that the non-root user can bind it.
const HTTP_PORT: u16 = 8080;
/// Where Prometheus will scrape (`METRICS_ADDR`, its own port so that metrics
/// are never public by accident); the exporter lands with the metrics work.
const METRICS_PORT: u16 = 9090;
/// `/readyz` says 503 this long before the listener closes: endpoints are
/// removed while the pod is told to stop, and proxies learn of it late.
const DRAIN_SECS: u32 = 5;
/// Requests in flight get this long once the listener closed.
const SHUTDOWN_TIMEOUT_SECS: u32 = 20;
/// Kubernetes kills the pod this long after the drain and the limit.
const GRACE_MARGIN_SECS: u32 = 10;

#[derive(Debug)]
pub struct DeployPlan {
    /// The Cargo package, which is also the binary's name.
    pub package: String,
    /// The Docker build context seen from the crate: the workspace root that
    /// holds the runtime (`..`), or the crate itself when it has a copy.
    pub context: String,
    /// The workspace has a `Cargo.lock` to build with (`--locked`).
    pub locked: bool,
    pub http_port: u16,
    pub metrics_port: u16,
    /// Two replicas at least, so that one can stop while the other serves;
    /// the PodDisruptionBudget keeps one.
    pub replicas: u32,
    pub min_available: u32,
    pub max_replicas: u32,
    /// The HorizontalPodAutoscaler's target of the CPU request.
    pub cpu_utilization: u32,
    /// Secret hashing (argon2, 19 MiB each) is what uses memory and CPU.
    pub cpu_request: &'static str,
    pub cpu_limit: &'static str,
    pub memory_request: &'static str,
    pub memory_limit: &'static str,
    pub drain_secs: u32,
    pub shutdown_timeout_secs: u32,
    pub grace_secs: u32,
    /// Every setting that is no secret, in the ConfigMap: a value where the
    /// deployment or the runtime's default gives one, else left unset.
    pub config: Vec<EnvValue>,
    /// Settings from the Secret (`secretKeyRef`); only the required ones
    /// must be in it.
    pub secrets: Vec<Setting>,
}

#[derive(Debug)]
pub struct EnvValue {
    pub name: String,
    pub value: Option<String>,
}

/// The deployment of `plan`'s service, which reads `settings`.
pub fn deploy(plan: &Plan, settings: Vec<Setting>) -> DeployPlan {
    let chosen = |name: &str| -> Option<String> {
        Some(match name {
            "HTTP_ADDR" => format!("0.0.0.0:{HTTP_PORT}"),
            "SHUTDOWN_DRAIN_SECS" => DRAIN_SECS.to_string(),
            "SHUTDOWN_TIMEOUT_SECS" => SHUTDOWN_TIMEOUT_SECS.to_string(),
            _ => return None,
        })
    };
    let (secrets, config): (Vec<Setting>, Vec<Setting>) =
        settings.into_iter().partition(|s| s.secret);
    let config = config
        .into_iter()
        .map(|s| EnvValue {
            value: chosen(&s.name).or(s.default),
            name: s.name,
        })
        .collect();
    let runtime = &plan.runtime.path;
    let in_workspace = runtime != crate::runtime::COPY_DIR;
    let context = match runtime.strip_suffix("/runtime") {
        Some(root) if in_workspace => root.to_string(),
        _ => ".".to_string(),
    };
    DeployPlan {
        package: plan.service.name.clone(),
        context,
        locked: in_workspace,
        http_port: HTTP_PORT,
        metrics_port: METRICS_PORT,
        replicas: 2,
        min_available: 1,
        max_replicas: 6,
        cpu_utilization: 70,
        cpu_request: "250m",
        cpu_limit: "1",
        memory_request: "256Mi",
        memory_limit: "512Mi",
        drain_secs: DRAIN_SECS,
        shutdown_timeout_secs: SHUTDOWN_TIMEOUT_SECS,
        grace_secs: DRAIN_SECS + SHUTDOWN_TIMEOUT_SECS + GRACE_MARGIN_SECS,
        config,
        secrets,
    }
}
