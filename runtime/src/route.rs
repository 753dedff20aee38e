//! Facts about the service and its routes that the model decides and every
//! layer above reads: the bottom of the runtime, with no imports of its own.

/// What the service says about itself, and what its migrations name.
#[derive(Debug)]
pub struct ServiceInfo {
    /// The version every response reports as `appVersion`.
    pub app_version: &'static str,
    /// Request bodies above this size are answered 413.
    pub body_limit_bytes: usize,
    /// Each named constraint of the migrations and the request field it guards,
    /// so a violation is answered as that field's error.
    pub constraints: &'static [(&'static str, &'static str)],
}

impl ServiceInfo {
    /// The field a named constraint guards, if the model names one.
    pub fn constraint_field(&self, constraint: &str) -> Option<&'static str> {
        self.constraints
            .iter()
            .find(|(name, _)| *name == constraint)
            .map(|(_, field)| *field)
    }
}

/// The role of the system caller: work that no user started (a consumer of
/// another service's events running a route). A rule lets it in by naming this
/// role (`system: true` in the model, where no role may have this name), and no
/// token can carry it: the caller extractor refuses one that does.
pub const SYSTEM_ROLE: &str = "system";

/// Who may call a route.
#[derive(Debug)]
pub enum Access {
    Public,
    /// Any signed-in caller.
    Login,
    /// Callers with one of `roles` (the system caller where they include
    /// [`SYSTEM_ROLE`]); when `owner`, also the owner of the row.
    Rule {
        roles: &'static [&'static str],
        owner: bool,
    },
}

/// What a route reports about itself in every answer.
#[derive(Debug)]
pub struct RouteInfo {
    /// The model's operation name, e.g. `getOrder`.
    pub name: &'static str,
    pub data_name: &'static str,
    pub method: &'static str,
    pub action: &'static str,
    /// The topic of the route event, if the route publishes one.
    pub topic: Option<&'static str>,
    /// Who may call the route.
    pub access: Access,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_name_their_field() {
        let info = ServiceInfo {
            app_version: "1.0.0",
            body_limit_bytes: 1024,
            constraints: &[
                ("users_email_key", "email"),
                ("loans_book_id_fkey", "bookId"),
            ],
        };
        assert_eq!(info.constraint_field("loans_book_id_fkey"), Some("bookId"));
        assert_eq!(info.constraint_field("users_pkey"), None);
    }
}
