//! Users' e-mail addresses: optional, unique across the installation like user names, and
//! usable in place of the name to log in. An index record per address (`user_email`, keyed
//! by the address in lowercase) names its user; inserting it is what claims the address, so
//! two users racing for one address cannot both get it.

use super::{Accounts, AuthError, KIND_USER, SYSTEM, UserView};

const KIND_USER_EMAIL: &str = "user_email";
/// RFC 5321's limit on a forward path.
const MAX_EMAIL_BYTES: usize = 254;

/// An address in the form it is stored and compared in (trimmed, lowercase), if its shape
/// is that of an address: `local@domain.tld`, no spaces or control characters, one `@`.
pub fn normalize_email(text: &str) -> Result<String, AuthError> {
    let email = text.trim().to_lowercase();
    let invalid = || AuthError::Invalid(format!("e-mail address {text:?}: expected name@example.com"));
    if email.len() > MAX_EMAIL_BYTES || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty() && !label.starts_with('-') && !label.ends_with('-') && !label.contains(['@', '[', ']'])
    });
    if local.is_empty() || local.len() > 64 || local.contains(['"', '<', '>', ',', ';']) {
        return Err(invalid());
    }
    if !domain.contains('.') || !labels_ok || domain.contains(['"', '<', '>', ',', ';', '(', ')']) {
        return Err(invalid());
    }
    Ok(email)
}

impl Accounts {
    /// The name of the user with this e-mail address, if any.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<String>, AuthError> {
        let Ok(email) = normalize_email(email) else { return Ok(None) };
        Ok(self.store.get_record(SYSTEM, KIND_USER_EMAIL, &email).await?.and_then(|body| {
            serde_json::from_str::<serde_json::Value>(&body).ok()?["user"].as_str().map(str::to_string)
        }))
    }

    /// The user a login names: with `by_email`, the user whose address it is; else a user
    /// name, or, when no user has that name, a user's address. What names nobody comes back
    /// as something no user is named, so the login does the same work for it as for a
    /// wrong password.
    pub async fn login_name(&self, identifier: &str, by_email: bool) -> Result<String, AuthError> {
        if !by_email
            && (self.store.get_record(SYSTEM, KIND_USER, identifier).await?.is_some() || !identifier.contains('@'))
        {
            return Ok(identifier.to_string());
        }
        // With a space no user can be named so; one per address, so the per-account login
        // limit treats unknown addresses as it treats unknown names.
        Ok(self.user_by_email(identifier).await?.unwrap_or_else(|| format!("no such user {identifier}")))
    }

    /// Adds a user as [`Accounts::add_user`] does, with an e-mail address; `Conflict` if
    /// the address belongs to another user, and then no user is added.
    pub async fn add_user_with_email(
        &self,
        name: &str,
        password: &str,
        tenant: &str,
        role: super::Role,
        super_admin: bool,
        email: Option<&str>,
    ) -> Result<UserView, AuthError> {
        let Some(email) = email else { return self.add_user(name, password, tenant, role, super_admin).await };
        let email = normalize_email(email)?;
        super::tenant_users::validate_stored_user_name(name)?;
        self.claim_email(&email, name).await?;
        match self.add_user(name, password, tenant, role, super_admin).await {
            Ok(_) => {}
            Err(error) => {
                self.release_email(&email, name).await;
                return Err(error);
            }
        }
        let stored = email.clone();
        self.update_user(name, move |user| {
            user.email = Some(stored);
            Ok(())
        })
        .await
        .map(|user| user.view())
    }

    /// Gives `name` the address `email` (an empty one removes it), releasing the old one.
    pub async fn set_email(&self, name: &str, email: &str) -> Result<UserView, AuthError> {
        let email = if email.trim().is_empty() { None } else { Some(normalize_email(email)?) };
        let Some(user) = self.load_user(name).await? else {
            return Err(AuthError::NotFound(format!("no user {name:?}")));
        };
        if user.email == email {
            return Ok(user.view());
        }
        if let Some(email) = &email {
            self.claim_email(email, name).await?;
        }
        let new = email.clone();
        let updated = self
            .update_user(name, move |user| {
                user.email = new;
                Ok(())
            })
            .await;
        match (&updated, &user.email) {
            (Ok(_), Some(old)) => self.release_email(old, name).await,
            (Err(_), _) => {
                if let Some(email) = &email {
                    self.release_email(email, name).await;
                }
            }
            _ => {}
        }
        updated.map(|user| user.view())
    }

    /// Claims `email` for `name`; `Conflict` if another user has it.
    async fn claim_email(&self, email: &str, name: &str) -> Result<(), AuthError> {
        let body = serde_json::json!({"user": name}).to_string();
        if self.store.insert_record(SYSTEM, KIND_USER_EMAIL, email, &body).await? {
            return Ok(());
        }
        match self.user_by_email(email).await? {
            Some(owner) if owner == name => Ok(()),
            _ => Err(AuthError::Conflict(format!("the e-mail address {email:?} belongs to another user"))),
        }
    }

    /// Frees `email` if `name` holds it (never another user's claim).
    pub(super) async fn release_email(&self, email: &str, name: &str) {
        let owned = matches!(self.user_by_email(email).await, Ok(Some(owner)) if owner == name);
        if owned && let Err(error) = self.store.delete_record(SYSTEM, KIND_USER_EMAIL, email).await {
            tracing::error!(%error, user = %name, "cannot free the user's e-mail address");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn addresses_are_checked_for_shape_and_kept_lowercase() {
        assert_eq!(normalize_email(" Ada.Lovelace@Example.COM ").unwrap(), "ada.lovelace@example.com");
        assert_eq!(normalize_email("ops+alerts@mail.example.co.uk").unwrap(), "ops+alerts@mail.example.co.uk");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@example..com",
            "ada@-example.com",
            "ada@exa\nmple.com",
            "<ada@example.com>",
            "ada@exa\u{7}mple.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(normalize_email(&format!("a@{}.com", "b".repeat(250))).is_err());
    }
}
