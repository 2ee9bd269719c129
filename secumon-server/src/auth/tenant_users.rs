//! User names per tenant. A user a tenant's admin creates through the API is stored as
//! `<tenant>/<name>`, so the name is unique in that tenant only: creating `bob` in one
//! tenant never collides with, and so never reveals, a `bob` of another tenant (user names
//! cannot hold `/`, so these never meet the installation-wide names either).
//!
//! Such a user logs in with the tenant (`{"username": "bob", "tenant": "acme"}`) or the
//! full name (`acme/bob`). Users made on the server's machine (`secumon users add`, the
//! first admin) keep installation-wide names. Inside a tenant, a name means the tenant's
//! own user first, then an installation-wide user with a role there.

use super::{Accounts, AuthError, Role, UserView, validate_tenant_name, validate_user_name};

/// The stored name of `name`, a user of `tenant`'s own.
pub fn tenant_user_name(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

/// `stored` as `tenant`'s admins call it: without the `<tenant>/` of the tenant's own users.
pub fn name_in_tenant<'a>(tenant: &str, stored: &'a str) -> &'a str {
    stored.strip_prefix(tenant).and_then(|rest| rest.strip_prefix('/')).unwrap_or(stored)
}

/// A stored user name: an installation-wide one, or `<tenant>/<name>`.
pub(super) fn validate_stored_user_name(stored: &str) -> Result<(), AuthError> {
    match stored.split_once('/') {
        Some((tenant, name)) => {
            validate_tenant_name(tenant)?;
            validate_user_name(name)
        }
        None => validate_user_name(stored),
    }
}

impl Accounts {
    /// The stored name `name` means in `tenant`: the tenant's own user of that name if there
    /// is one, else `name` as it is.
    pub async fn tenant_user(&self, tenant: &str, name: &str) -> Result<String, AuthError> {
        if name.contains('/') {
            return Ok(name.to_string());
        }
        let own = tenant_user_name(tenant, name);
        Ok(if self.load_user(&own).await?.is_some() { own } else { name.to_string() })
    }

    /// Adds `name` as a user of `tenant`'s own (see the module); `Conflict` only if the
    /// tenant has a user of that name already.
    pub async fn add_tenant_user(
        &self,
        name: &str,
        password: &str,
        tenant: &str,
        role: Role,
        email: Option<&str>,
    ) -> Result<UserView, AuthError> {
        validate_user_name(name)?;
        validate_tenant_name(tenant)?;
        let mut user = self
            .add_user_with_email(&tenant_user_name(tenant, name), password, tenant, role, false, email)
            .await
            .map_err(|error| match error {
                AuthError::Conflict(message) if !message.contains("e-mail") => {
                    AuthError::Conflict(format!("user {name:?} exists in this tenant"))
                }
                other => other,
            })?;
        user.name = name.to_string();
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_qualified_and_shown_without_the_tenant() {
        assert_eq!(tenant_user_name("acme", "bob"), "acme/bob");
        assert_eq!(name_in_tenant("acme", "acme/bob"), "bob");
        assert_eq!(name_in_tenant("acme", "globex/bob"), "globex/bob");
        assert_eq!(name_in_tenant("acme", "acmebob"), "acmebob");
        assert_eq!(name_in_tenant("acme", "bob"), "bob");
        assert!(validate_stored_user_name("acme/bob").is_ok());
        assert!(validate_stored_user_name("bob").is_ok());
        for bad in ["acme/", "/bob", "Acme/bob", "acme/b/ob", "acme/bo b"] {
            assert!(validate_stored_user_name(bad).is_err(), "{bad:?}");
        }
    }
}
