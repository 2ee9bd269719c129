//! `secumon users add|list|reset-mfa|set-password|set-role|disable|enable|delete`: works on
//! the server's store directly (as the server's
//! operator, on the server's machine), so that it also serves when nobody can log in: the
//! first admin, a lost second factor, a locked account.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use secumon_server::auth::{Accounts, AuthError, Role, SecretBox, UserChange, generate_password};
use secumon_store::{PgStore, SqliteStore, Store};

#[derive(Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
    #[command(flatten)]
    store: StoreArgs,
}

/// Where the server keeps its data, as given to `secumon server`.
#[derive(Args)]
pub struct StoreArgs {
    #[arg(long, global = true, default_value = "./secumon-data", env = "SECUMON_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The server's PostgreSQL store, if it uses one.
    #[arg(long, global = true, value_name = "URL", env = "SECUMON_STORE")]
    pub store: Option<String>,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user with a role in a tenant; prints a generated password unless one is piped in.
    ///
    /// Example: secumon users add ada --tenant acme --role operator
    Add {
        name: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// May act in every tenant and manage tenants.
        #[arg(long)]
        super_admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// An e-mail address the user may also log in with (unique).
        #[arg(long)]
        email: Option<String>,
    },
    /// List users, of one tenant or all.
    ///
    /// Example: secumon users list --tenant acme --json
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a user's second factor (they enrol again at next login) and unlock the account.
    ///
    /// Example: secumon users reset-mfa ada
    ResetMfa {
        name: String,
    },
    /// Set a user's password (a generated one unless one is piped in); their sessions end.
    ///
    /// Example: printf '%s\n' "$NEW" | secumon users set-password ada --password-stdin
    SetPassword {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a user a role in a tenant; their sessions end.
    ///
    /// Example: secumon users set-role ada --tenant acme --role admin
    SetRole {
        name: String,
        #[arg(long)]
        tenant: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
    },
    /// Stop a user from logging in; their sessions end.
    ///
    /// Example: secumon users disable ada
    /// Set the e-mail address a user may also log in with ("" removes it).
    ///
    /// Example: secumon users set-email ada ada@example.com
    SetEmail {
        name: String,
        email: String,
    },
    Disable {
        name: String,
    },
    /// Let a disabled user log in again.
    ///
    /// Example: secumon users enable ada
    Enable {
        name: String,
    },
    /// Delete a user; their sessions end.
    ///
    /// Example: secumon users delete ada
    Delete {
        name: String,
    },
}

pub async fn run(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let accounts = open_accounts(&args.store).await?;
    let outcome = match args.command {
        UsersCommand::Add { name, tenant, role, super_admin, password_stdin, email } => {
            let role: Role = match role.parse() {
                Ok(role) => role,
                Err(error) => return usage(error.into()),
            };
            let (password, generated) = password(password_stdin)?;
            let added = accounts.add_user_with_email(&name, &password, &tenant, role, super_admin, email.as_deref());
            added.await.map(|user| {
                println!(
                    "added {} ({:?} in {tenant}{})",
                    user.name,
                    role,
                    if super_admin { ", super-admin" } else { "" }
                );
                if generated {
                    println!("password: {password}");
                }
            })
        }
        UsersCommand::List { tenant, json } => accounts.users(tenant.as_deref()).await.map(|users| {
            if json {
                println!("{}", serde_json::to_string_pretty(&users).unwrap_or_default());
                return;
            }
            println!("{:<24} {:<32} {:<36} {:<5} {:<6}", "NAME", "EMAIL", "ROLES", "MFA", "LOCKED");
            for user in users {
                let mut roles: Vec<String> = user.roles.iter().map(|(t, r)| format!("{t}:{r:?}")).collect();
                if user.super_admin {
                    roles.insert(0, "super-admin".into());
                }
                let yes = |b: bool| if b { "yes" } else { "no" };
                println!(
                    "{:<24} {:<32} {:<36} {:<5} {:<6}",
                    user.name,
                    user.email.as_deref().unwrap_or("-"),
                    roles.join(","),
                    yes(user.mfa_enabled),
                    yes(user.locked)
                );
            }
        }),
        UsersCommand::ResetMfa { name } => {
            accounts.reset_mfa(&name, None, true).await.map(|_| println!("{name}: MFA removed, account unlocked"))
        }
        UsersCommand::SetPassword { name, password_stdin } => {
            let (password, generated) = password(password_stdin)?;
            accounts.set_password(&name, &password).await.map(|()| {
                println!("{name}: password set; sessions ended");
                if generated {
                    println!("password: {password}");
                }
            })
        }
        UsersCommand::SetRole { name, tenant, role } => {
            let role: Role = match role.parse() {
                Ok(role) => role,
                Err(error) => return usage(error.into()),
            };
            let change = UserChange { role: Some(role), ..UserChange::default() };
            accounts
                .change_user(&name, Some(&tenant), true, change)
                .await
                .map(|_| println!("{name}: {role:?} in {tenant}; sessions ended"))
        }
        UsersCommand::SetEmail { name, email } => {
            accounts.set_email(&name, &email).await.map(|user| match user.email {
                Some(email) => println!("{name}: e-mail {email}"),
                None => println!("{name}: no e-mail address"),
            })
        }
        UsersCommand::Disable { name } => set_disabled(&accounts, &name, true).await,
        UsersCommand::Enable { name } => set_disabled(&accounts, &name, false).await,
        UsersCommand::Delete { name } => match accounts.delete_user(&name, None, true).await {
            Ok(true) => {
                println!("{name}: deleted");
                Ok(())
            }
            Ok(false) => Err(AuthError::NotFound(format!("no user {name:?}"))),
            Err(error) => Err(error),
        },
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error @ (AuthError::Invalid(_) | AuthError::Conflict(_) | AuthError::NotFound(_))) => usage(error),
        Err(error) => Err(error.into()),
    }
}

async fn set_disabled(accounts: &Accounts, name: &str, disabled: bool) -> Result<(), AuthError> {
    let change = UserChange { disabled: Some(disabled), ..UserChange::default() };
    accounts.change_user(name, None, true, change).await?;
    println!("{name}: {}", if disabled { "disabled; sessions ended" } else { "enabled" });
    Ok(())
}

/// The first line of standard input, or a generated password (`true`).
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((generate_password(), true));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password")?;
    Ok((line.trim_end_matches(['\r', '\n']).to_string(), false))
}

fn usage(error: AuthError) -> anyhow::Result<ExitCode> {
    eprintln!("secumon: {error}");
    Ok(ExitCode::from(2))
}

/// Opens the server's accounts with the server's own secret key.
pub async fn open_accounts(args: &StoreArgs) -> anyhow::Result<Accounts> {
    let store = open_store(args).await?;
    let secrets = secret_key(&args.data_dir)?;
    Ok(Accounts::open(store, secrets).await?)
}

/// The server's store, as `args` name it.
pub async fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &args.store {
        Some(url) => PgStore::connect(url).await?,
        None => {
            let path = args.data_dir.join("secumon.db");
            anyhow::ensure!(path.exists(), "no SecuMon data in {} (see --data-dir)", args.data_dir.display());
            Arc::new(SqliteStore::open(&path).await?)
        }
    })
}

/// The key that seals secrets at rest: `SECUMON_SECRET_KEY` (base64 of 32 bytes), else the
/// data directory's `secret.key`, created on first use.
/// `secumon secrets seal`: reads one secret from standard input and prints it sealed under
/// the server's key, to paste into the rules file (channel passwords, tokens, webhook URLs).
pub fn seal_secret(data_dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the secret")?;
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        eprintln!("secumon: nothing to seal: pipe the secret in, e.g. `printf %s \"$PASS\" | secumon secrets seal`");
        return Ok(ExitCode::from(2));
    }
    println!("{}", secret_key(data_dir)?.seal_config_value(secret));
    Ok(ExitCode::SUCCESS)
}

pub fn secret_key(data_dir: &std::path::Path) -> anyhow::Result<SecretBox> {
    match std::env::var("SECUMON_SECRET_KEY") {
        Ok(text) => Ok(SecretBox::from_base64(&text).context("SECUMON_SECRET_KEY")?),
        Err(_) => Ok(SecretBox::load_or_create(&data_dir.join("secret.key"))?),
    }
}
