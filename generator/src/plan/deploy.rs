//! Deployment decisions: the container image and the Kubernetes objects of
//! a generated service, from the model's `deploy:` (with its defaults), and
//! the settings they pass it: the ones the rendered `config.rs` reads
//! ([`crate::settings`]), known only once it is rendered.

use super::Plan;
use crate::model::Deploy;
use crate::settings::Setting;

/// Kubernetes kills the pod this long after the drain and the shutdown limit.
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
    pub replicas: u32,
    pub min_available: u32,
    pub max_replicas: u32,
    pub cpu_utilization: u32,
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub drain_secs: u32,
    pub shutdown_timeout_secs: u32,
    pub grace_secs: u32,
    /// `LOG_FORMAT` in the ConfigMap.
    pub log_format: &'static str,
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

/// The deployment of `plan`'s service as its model says, passing `settings`.
pub fn deploy(plan: &Plan, settings: Vec<Setting>) -> DeployPlan {
    let model: &Deploy = &plan.deploy;
    let chosen = |name: &str| -> Option<String> {
        Some(match name {
            "HTTP_ADDR" => format!("0.0.0.0:{}", model.http_port),
            "METRICS_ADDR" => format!("0.0.0.0:{}", model.metrics_port),
            "SHUTDOWN_DRAIN_SECS" => model.drain_seconds.to_string(),
            "SHUTDOWN_TIMEOUT_SECS" => model.shutdown_timeout_seconds.to_string(),
            "LOG_FORMAT" => model.log_format.as_str().to_string(),
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
    let (context, locked) = context(&plan.runtime.path);
    DeployPlan {
        package: plan.service.name.clone(),
        context,
        locked,
        http_port: model.http_port,
        metrics_port: model.metrics_port,
        replicas: model.replicas,
        min_available: model.min_available,
        max_replicas: model.max_replicas,
        cpu_utilization: model.cpu_utilization,
        cpu_request: model.cpu_request.clone(),
        cpu_limit: model.cpu_limit.clone(),
        memory_request: model.memory_request.clone(),
        memory_limit: model.memory_limit.clone(),
        drain_secs: model.drain_seconds,
        shutdown_timeout_secs: model.shutdown_timeout_seconds,
        grace_secs: model.drain_seconds + model.shutdown_timeout_seconds + GRACE_MARGIN_SECS,
        log_format: model.log_format.as_str(),
        config,
        secrets,
    }
}

/// The build context from the crate's runtime path, and whether the
/// workspace's Cargo.lock pins the build: `../runtime` is `..`, a copy in
/// the crate is the crate itself.
fn context(runtime: &str) -> (String, bool) {
    match runtime.strip_suffix("/runtime") {
        Some(root) if runtime != crate::runtime::COPY_DIR => (root.to_string(), true),
        _ => (".".to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_build_context_is_the_workspace_or_the_crate_with_its_copy() {
        assert_eq!(super::context("../runtime"), ("..".to_string(), true));
        assert_eq!(super::context("../../runtime"), ("../..".to_string(), true));
        assert_eq!(super::context("svcgen-runtime"), (".".to_string(), false));
    }
}
