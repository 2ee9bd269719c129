//! Which parts of the server one process runs (`secumon server --role gateway,ingest`):
//! gateways take agents' pushes, ingest workers write them to the store, alert processes
//! evaluate rules, API processes serve operators. [`Roles::all`] is the single process of
//! old; any other set is one piece of a scale-out over NATS JetStream and PostgreSQL, and
//! [`Roles::check_deployment`] says so when either is missing.

use std::fmt;
use std::str::FromStr;

/// One part of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Terminates agents' gRPC (mTLS, enrollment, sessions, revocation) and publishes their
    /// batches to JetStream, acknowledging each once JetStream has it.
    Gateway,
    /// Consumes the batches from JetStream and commits them to the store.
    Ingest,
    /// Evaluates alert rules and sends notifications.
    Alert,
    /// Serves the REST API, the WebSocket stream and `/metrics`.
    Api,
}

impl Role {
    /// Every role, in the order they are printed.
    pub const ALL: [Role; 4] = [Role::Gateway, Role::Ingest, Role::Alert, Role::Api];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Ingest => "ingest",
            Role::Alert => "alert",
            Role::Api => "api",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The roles one process runs: a non-empty set of [`Role`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    /// Every role in one process: today's single server (`--role all`, the default).
    pub fn all() -> Self {
        Role::ALL.into_iter().collect()
    }

    /// Whether this is every role.
    pub fn is_all(self) -> bool {
        self == Self::all()
    }

    /// Whether `role` is among them.
    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// A process that runs only some roles is one piece of a cluster: it needs NATS
    /// (`nats_url`) to hand batches between gateways and ingest workers, and a store every
    /// process shares (PostgreSQL, `postgres_url`). Every role together needs neither.
    pub fn check_deployment(self, nats_url: Option<&str>, postgres_url: Option<&str>) -> Result<(), RolesError> {
        if self.is_all() {
            return Ok(());
        }
        if nats_url.is_none() {
            return Err(RolesError::NeedsNats(self));
        }
        if !postgres_url.is_some_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(RolesError::NeedsPostgres(self));
        }
        Ok(())
    }
}

impl Default for Roles {
    fn default() -> Self {
        Self::all()
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        Self(roles.into_iter().fold(0, |bits, role| bits | role.bit()))
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("all");
        }
        let names: Vec<_> = Role::ALL.into_iter().filter(|role| self.has(*role)).map(Role::name).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Roles({self})")
    }
}

impl FromStr for Roles {
    type Err = RolesError;

    /// `all`, or a comma-separated list of `gateway`, `ingest`, `alert`, `api`.
    fn from_str(text: &str) -> Result<Self, RolesError> {
        let mut roles = Roles(0);
        for word in text.split(',').map(str::trim) {
            if word == "all" {
                roles = Self::all();
                continue;
            }
            let role = Role::ALL
                .into_iter()
                .find(|role| role.name() == word)
                .ok_or_else(|| RolesError::Unknown(word.to_string()))?;
            roles.0 |= role.bit();
        }
        Ok(roles)
    }
}

/// A role list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolesError {
    /// A word that names no role (an empty list gives an empty word).
    #[error("unknown role `{0}`: expected all, or a comma-separated list of gateway, ingest, alert, api")]
    Unknown(String),
    /// Some roles without NATS.
    #[error("--role {0} needs NATS JetStream (--nats nats://HOST:4222): only `all` runs without it")]
    NeedsNats(Roles),
    /// Some roles without PostgreSQL.
    #[error(
        "--role {0} needs the store every process shares (--store postgres://…): only `all` runs on the embedded store"
    )]
    NeedsPostgres(Roles),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_into_sets_and_print_back() {
        let roles: Roles = "gateway, ingest".parse().unwrap();
        assert!(roles.has(Role::Gateway) && roles.has(Role::Ingest));
        assert!(!roles.has(Role::Alert) && !roles.has(Role::Api) && !roles.is_all());
        assert_eq!(roles.to_string(), "gateway,ingest");
        assert_eq!("api,gateway,api".parse::<Roles>().unwrap().to_string(), "gateway,api");
        assert!("all".parse::<Roles>().unwrap().is_all());
        assert_eq!("gateway,ingest,alert,api".parse::<Roles>().unwrap().to_string(), "all");
        assert_eq!(Roles::default(), Roles::all());
    }

    #[test]
    fn unknown_and_empty_roles_are_named() {
        let error = "gateway,worker".parse::<Roles>().unwrap_err();
        assert_eq!(error, RolesError::Unknown("worker".into()));
        assert!(error.to_string().contains("gateway, ingest, alert, api"), "{error}");
        assert_eq!("".parse::<Roles>().unwrap_err(), RolesError::Unknown(String::new()));
        assert_eq!("ingest,".parse::<Roles>().unwrap_err(), RolesError::Unknown(String::new()));
    }

    #[test]
    fn a_piece_of_a_cluster_needs_nats_and_postgres() {
        let pg = Some("postgres://secumon@db/secumon");
        assert_eq!(Roles::all().check_deployment(None, None), Ok(()));
        let gateway: Roles = "gateway".parse().unwrap();
        let error = gateway.check_deployment(None, pg).unwrap_err();
        assert!(error.to_string().contains("--role gateway needs NATS JetStream (--nats"), "{error}");
        let error = gateway.check_deployment(Some("nats://n:4222"), None).unwrap_err();
        assert!(error.to_string().contains("--store postgres://"), "{error}");
        assert!(gateway.check_deployment(Some("nats://n:4222"), Some("sqlite:x.db")).is_err());
        assert_eq!(gateway.check_deployment(Some("nats://n:4222"), pg), Ok(()));
    }
}
