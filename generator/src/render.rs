//! Render: one askama template per kind of generated file.

use crate::action::Revokes;
use crate::plan::RouteKind;
use crate::plan::{ObjectPlan, Plan};
use askama::Template;

/// A rendered file before formatting, named by the template that made it.
pub struct Rendered {
    pub path: String,
    pub template: &'static str,
    pub text: String,
    /// Hand-written once the stub exists: created when absent, never
    /// overwritten, and carrying no generated marker.
    pub once: bool,
}

macro_rules! templates {
    ($($ty:ident => $file:literal),* $(,)?) => {
        $(
            #[derive(Template)]
            #[template(path = $file, escape = "none")]
            struct $ty<'a> {
                plan: &'a Plan,
            }
        )*
    };
}

templates! {
    CargoToml => "Cargo.toml.j2",
    MainRs => "main.rs.j2",
    LibRs => "lib.rs.j2",
    ConfigRs => "config.rs.j2",
    AppRs => "app.rs.j2",
    SearchRs => "search.rs.j2",
    EventGuide => "event-guide.md.j2",
    DocsHtml => "docs.html.j2",
    TopicsRs => "topics.rs.j2",
    SpecRs => "spec.rs.j2",
    StateRs => "state.rs.j2",
    HooksRs => "hooks.rs.j2",
}

#[derive(Template)]
#[template(path = "session.proto.j2", escape = "none")]
struct SessionProto<'a> {
    plan: &'a Plan,
    id: &'a crate::plan::IdentityPlan,
}

#[derive(Template)]
#[template(path = "auth.rs.j2", escape = "none")]
struct AuthRs<'a> {
    id: &'a crate::plan::IdentityPlan,
}

#[derive(Template)]
#[template(path = "trust.rs.j2", escape = "none")]
struct TrustRs<'a> {
    t: &'a crate::plan::TrustPlan,
}

#[derive(Template)]
#[template(path = "verification.rs.j2", escape = "none")]
struct VerificationRs<'a> {
    id: &'a crate::plan::IdentityPlan,
    f: &'a crate::plan::FlowsPlan,
}

#[derive(Template)]
#[template(path = "migration.sql.j2", escape = "none")]
struct MigrationSql<'a> {
    m: &'a crate::migrate::MigrationPlan,
}

/// Renders one migration file.
pub fn migration(
    path: String,
    m: &crate::migrate::MigrationPlan,
) -> Result<Rendered, askama::Error> {
    Ok(Rendered {
        path,
        template: "migration.sql.j2",
        text: MigrationSql { m }.render()?,
        once: false,
    })
}

#[derive(Template)]
#[template(path = "object.rs.j2", escape = "none")]
struct ObjectRs<'a> {
    plan: &'a Plan,
    o: &'a ObjectPlan,
}

/// Every crate's build script: the one file that does not depend on the
/// model (cargo needs it, since `sqlx::migrate!` embeds the migrations).
const BUILD_RS: &str = r#"//! `sqlx::migrate!` embeds the migrations: a new one must rebuild the crate.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
"#;

/// What the image's build context (the workspace) holds that the build
/// does not need; Docker reads it beside the Dockerfile.
const DOCKERIGNORE: &str = "**/target\n.git\n";

pub fn render(plan: &Plan) -> Result<Vec<Rendered>, askama::Error> {
    let mut out = Vec::new();
    let mut add = |path: &str, template: &'static str, text: String| {
        out.push(Rendered {
            path: path.to_string(),
            template,
            text,
            once: false,
        });
    };
    add("Cargo.toml", "Cargo.toml.j2", CargoToml { plan }.render()?);
    add("build.rs", "render.rs", BUILD_RS.to_string());
    let config_rs = ConfigRs { plan }.render()?;
    let (d, deploy_files) = deployment(plan, &config_rs)?;
    add(
        "README.md",
        "README.md.j2",
        Readme { plan, d: &d }.render()?,
    );
    add("src/main.rs", "main.rs.j2", MainRs { plan }.render()?);
    add("src/lib.rs", "lib.rs.j2", LibRs { plan }.render()?);
    add("src/config.rs", "config.rs.j2", config_rs);
    add("src/app.rs", "app.rs.j2", AppRs { plan }.render()?);
    if let Some(id) = &plan.identity {
        add("src/auth.rs", "auth.rs.j2", AuthRs { id }.render()?);
        if let Some(f) = &id.flows {
            add(
                "src/verification.rs",
                "verification.rs.j2",
                VerificationRs { id, f }.render()?,
            );
        }
        add(
            "proto/session.proto",
            "session.proto.j2",
            SessionProto { plan, id }.render()?,
        );
    }
    if let Some(t) = &plan.trust {
        add("src/auth.rs", "trust.rs.j2", TrustRs { t }.render()?);
    }
    if plan.search.is_used() {
        add("src/search.rs", "search.rs.j2", SearchRs { plan }.render()?);
    }
    add(
        "docs/event-guide.md",
        "event-guide.md.j2",
        EventGuide { plan }.render()?,
    );
    add(
        "docs/index.html",
        "docs.html.j2",
        DocsHtml { plan }.render()?,
    );
    add("src/topics.rs", "topics.rs.j2", TopicsRs { plan }.render()?);
    add("src/spec.rs", "spec.rs.j2", SpecRs { plan }.render()?);
    add("src/state.rs", "state.rs.j2", StateRs { plan }.render()?);
    for o in &plan.objects {
        add(
            &format!("src/{}.rs", o.module),
            "object.rs.j2",
            ObjectRs { plan, o }.render()?,
        );
    }
    if plan.has_hooks() {
        add("src/hooks.rs", "hooks.rs.j2", HooksRs { plan }.render()?);
    }
    if let Some(cs) = &plan.consumers {
        add(
            "src/consumers.rs",
            "consumers.rs.j2",
            ConsumersRs { cs }.render()?,
        );
        if cs.has_hooks {
            out.push(Rendered {
                path: "src/hooks/consumers.rs".into(),
                template: "hooks_consumers.rs.j2",
                text: HooksConsumers { cs }.render()?,
                once: true,
            });
        }
    }
    for o in &plan.objects {
        if let Some(h) = &o.hooks {
            out.push(Rendered {
                path: format!("src/hooks/{}.rs", o.module),
                template: "hooks_stub.rs.j2",
                text: HooksStub { o, h }.render()?,
                once: true,
            });
        }
    }
    out.extend(deploy_files);
    Ok(out)
}

#[derive(Template)]
#[template(path = "consumers.rs.j2", escape = "none")]
struct ConsumersRs<'a> {
    cs: &'a crate::plan::ConsumersPlan,
}

#[derive(Template)]
#[template(path = "hooks_consumers.rs.j2", escape = "none")]
struct HooksConsumers<'a> {
    cs: &'a crate::plan::ConsumersPlan,
}

#[derive(Template)]
#[template(path = "README.md.j2", escape = "none")]
struct Readme<'a> {
    plan: &'a Plan,
    d: &'a crate::plan::DeployPlan,
}

#[derive(Template)]
#[template(path = "Dockerfile.j2", escape = "none")]
struct Dockerfile<'a> {
    d: &'a crate::plan::DeployPlan,
}

#[derive(Template)]
#[template(path = "kubernetes.yaml.j2", escape = "none")]
struct Kubernetes<'a> {
    plan: &'a Plan,
    d: &'a crate::plan::DeployPlan,
}

/// The image and the Kubernetes objects, which pass every setting the
/// rendered `config.rs` reads.
fn deployment(
    plan: &Plan,
    config_rs: &str,
) -> Result<(crate::plan::DeployPlan, Vec<Rendered>), askama::Error> {
    let settings =
        crate::settings::read(config_rs).map_err(|e| askama::Error::Custom(Box::new(e)))?;
    let d = crate::plan::deploy(plan, settings);
    let file = |path: &str, template: &'static str, text: String| Rendered {
        path: path.to_string(),
        template,
        text,
        once: false,
    };
    let files = vec![
        file(
            "Dockerfile",
            "Dockerfile.j2",
            Dockerfile { d: &d }.render()?,
        ),
        file(
            "Dockerfile.dockerignore",
            "render.rs",
            DOCKERIGNORE.to_string(),
        ),
        file(
            "deploy/kubernetes.yaml",
            "kubernetes.yaml.j2",
            Kubernetes { plan, d: &d }.render()?,
        ),
    ];
    Ok((d, files))
}

#[derive(Template)]
#[template(path = "hooks_stub.rs.j2", escape = "none")]
struct HooksStub<'a> {
    o: &'a ObjectPlan,
    h: &'a crate::plan::ObjectHooks,
}
