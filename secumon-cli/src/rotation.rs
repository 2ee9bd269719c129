//! `secumon secret-key rotate` and `secumon ca rotate|status|retire-old`: the operator's
//! side of rotating the server's secret key and the agents' CA. The work is in
//! `secumon_server::auth` (`rekey`, `agents`); this parses arguments, takes the data
//! directory's lock (so nothing runs beside a server) and reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use secumon_server::auth::rekey::{KeyFiles, KeyRotation, reseal_config_text, rotate_key_file};
use secumon_server::auth::{SecretBox, ca_status, retire_old_ca, rotate_ca};
use secumon_server::data_lock::DataDirLock;

use crate::users::{StoreArgs, open_store, secret_key};

#[derive(Args)]
pub struct SecretKeyArgs {
    #[command(subcommand)]
    command: SecretKeyCommand,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum SecretKeyCommand {
    /// Seal everything the store keeps sealed under a fresh key, in one transaction, and
    /// replace DATA_DIR/secret.key (the old key is kept as secret.key.old). Every server
    /// must be stopped. Run it again if it was interrupted: it finishes or starts over.
    ///
    /// Example: secumon secret-key rotate --data-dir /var/lib/secumon --config /etc/secumon/rules.yaml
    Rotate {
        /// A configuration file whose `sealed:v1:` values (rules file, single sign-on file)
        /// are sealed again under the new key, in place; repeat for each file.
        #[arg(long, value_name = "FILE")]
        config: Vec<PathBuf>,
    },
}

#[derive(Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Make a new agent CA; the current one stays trusted. Every server must be stopped;
    /// when they start again, each connected agent renews once and receives a certificate
    /// from the new CA.
    ///
    /// Example: secumon ca rotate --data-dir /var/lib/secumon
    Rotate,
    /// The agent CAs and which one each enrolled agent's certificate is from.
    ///
    /// Example: secumon ca status --data-dir /var/lib/secumon
    Status,
    /// Stop trusting the CA a rotation replaced, once every agent has moved (see `status`).
    /// Every server must be stopped.
    ///
    /// Example: secumon ca retire-old --data-dir /var/lib/secumon
    RetireOld {
        /// Retire it even though some agents still use its certificates: they are shut out
        /// until enrolled again.
        #[arg(long)]
        force: bool,
    },
}

pub async fn secret_key_command(args: SecretKeyArgs) -> anyhow::Result<ExitCode> {
    let SecretKeyCommand::Rotate { config } = args.command;
    if std::env::var_os("SECUMON_SECRET_KEY").is_some() {
        bail!(
            "SECUMON_SECRET_KEY is set: a rotation replaces a key file, not a variable. Write the current key to \
             {} (mode 0600), unset SECUMON_SECRET_KEY, rotate, and install the new key from that file where the \
             variable is set",
            args.store.data_dir.join("secret.key").display()
        );
    }
    let files = KeyFiles::new(&args.store.data_dir.join("secret.key"));
    if !files.current.exists() {
        bail!("{} does not exist (see --data-dir)", files.current.display());
    }
    let _lock = DataDirLock::exclusive(&args.store.data_dir)?;
    let store = open_store(&args.store).await?;
    let rotated = rotate_key_file(&*store, &files).await;
    store.close().await;
    match rotated? {
        KeyRotation::Rotated(resealed) => println!(
            "secret key rotated: {} sealed value(s) in {} record(s) sealed again; the old key is in {}",
            resealed.values,
            resealed.records,
            files.old.display()
        ),
        KeyRotation::Finished => println!(
            "an interrupted rotation was finished: {} holds the key that seals the store, the one before it is in {}",
            files.current.display(),
            files.old.display()
        ),
    }
    // After the key file: a crash in between leaves these to the next run, which takes
    // values under the old key (secret.key.old) and leaves those under the new one.
    let (old, new) = (SecretBox::load_or_create(&files.old)?, SecretBox::load_or_create(&files.current)?);
    for path in &config {
        let count = reseal_file(path, &old, &new)?;
        println!("{}: {count} sealed value(s) sealed again", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Rewrites the sealed values of one configuration file, atomically, keeping its mode.
fn reseal_file(path: &Path, old: &SecretBox, new: &SecretBox) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (resealed, count) = reseal_config_text(&text, old, new).with_context(|| path.display().to_string())?;
    if count > 0 {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let temporary = path.with_file_name(name);
        let permissions = std::fs::metadata(path)?.permissions();
        std::fs::write(&temporary, resealed)
            .and_then(|()| std::fs::set_permissions(&temporary, permissions))
            .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(count)
}

pub async fn ca_command(args: CaArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CaCommand::Status => {
            let store = open_store(&args.store).await?;
            let status = ca_status(&*store).await;
            store.close().await;
            let status = status?;
            println!("signing CA   sha256:{}", status.current_sha256);
            match &status.replaced_sha256 {
                Some(old) => println!("replaced CA  sha256:{old} (still trusted: rotation under way)"),
                None => println!("replaced CA  none (no rotation under way)"),
            }
            println!("{:<24} {:<12} {:<24} {:<18} STATE", "AGENT", "TENANT", "HOST", "CA");
            for agent in &status.agents {
                let state = match (agent.revoked, agent.on_current_ca) {
                    (true, _) => "revoked",
                    (false, true) => "current CA",
                    (false, false) => "old CA (moves at its next connection)",
                };
                let ca: String = agent.ca_sha256.chars().take(16).collect();
                println!("{:<24} {:<12} {:<24} {:<18} {state}", agent.agent_id, agent.tenant, agent.host, ca);
            }
            let pending = status.pending().len();
            if status.replaced_sha256.is_some() {
                if pending == 0 {
                    println!("every agent is on the new CA: `secumon ca retire-old` may run (servers stopped)");
                } else {
                    println!("{pending} agent(s) still on the old CA");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Rotate => {
            let _lock = DataDirLock::exclusive(&args.store.data_dir)?;
            let store = open_store(&args.store).await?;
            let rotated = rotate_ca(&*store, &secret_key(&args.store.data_dir)?).await;
            store.close().await;
            println!(
                "new agent CA sha256:{}; the old one stays trusted. Start the servers: every agent renews once and \
                 moves to the new CA; follow with `secumon ca status`, then `secumon ca retire-old`",
                rotated?
            );
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::RetireOld { force } => {
            let _lock = DataDirLock::exclusive(&args.store.data_dir)?;
            let store = open_store(&args.store).await?;
            let retired = retire_old_ca(&*store, force).await;
            store.close().await;
            let shut_out = retired?;
            for agent in &shut_out {
                println!("shut out until enrolled again: {} ({})", agent.agent_id, agent.host);
            }
            println!("the old agent CA is no longer trusted; start the servers");
            Ok(ExitCode::SUCCESS)
        }
    }
}
