//! `secumon backup` and `secumon restore`: a server's data directory copied while it runs
//! (the embedded store through `VACUUM INTO`, the secret key that opens the sealed agent CA,
//! token signing key and MFA secrets, and the CLI token), with a manifest of SHA-256 sums
//! that a restore checks before it puts anything in place.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The files of a data directory a backup carries besides the database; all optional.
const KEY_FILES: [&str; 2] = ["secret.key", "cli.token"];
const DATABASE: &str = "secumon.db";
const MANIFEST: &str = "MANIFEST.json";

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The server's data directory (the server may keep running).
    #[arg(long, default_value = "./secumon-data", env = "SECUMON_DATA_DIR")]
    data_dir: PathBuf,
    /// A new directory to write the backup into.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A directory `secumon backup` wrote.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The data directory to restore into: it must hold no database (stop the server first;
    /// move an old directory away yourself).
    #[arg(long, env = "SECUMON_DATA_DIR")]
    data_dir: PathBuf,
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    if args.to.exists() {
        bail!("{} already exists: a backup goes into a new directory", args.to.display());
    }
    let database = args.data_dir.join(DATABASE);
    std::fs::create_dir_all(&args.to).with_context(|| format!("cannot create {}", args.to.display()))?;
    restrict(&args.to, 0o700)?;
    secumon_store::backup::backup_sqlite(&database, &args.to.join(DATABASE))
        .await
        .with_context(|| format!("cannot back up {}", database.display()))?;
    let mut files = vec![DATABASE];
    for name in KEY_FILES {
        let source = args.data_dir.join(name);
        if source.exists() {
            std::fs::copy(&source, args.to.join(name)).with_context(|| format!("cannot copy {}", source.display()))?;
            restrict(&args.to.join(name), 0o600)?;
            files.push(name);
        }
    }
    let mut listed = serde_json::Map::new();
    for name in &files {
        listed.insert(name.to_string(), describe(&args.to.join(name))?);
    }
    let manifest = json!({
        "secumon": env!("CARGO_PKG_VERSION"),
        "created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "files": listed,
    });
    std::fs::write(args.to.join(MANIFEST), serde_json::to_string_pretty(&manifest)? + "\n")?;
    println!("backed up {} into {} ({})", args.data_dir.display(), args.to.display(), files.join(", "));
    if !files.contains(&"secret.key") {
        println!(
            "no secret.key in {}: the server's key comes from SECUMON_SECRET_KEY; keep it with this backup, the \
             database's sealed secrets open only with it",
            args.data_dir.display()
        );
    }
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let manifest_path = args.from.join(MANIFEST);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&manifest_path).with_context(|| format!("cannot read {}", manifest_path.display()))?,
    )
    .with_context(|| format!("{} is not a backup manifest", manifest_path.display()))?;
    let Some(files) = manifest["files"].as_object().filter(|files| files.contains_key(DATABASE)) else {
        bail!("{} lists no {DATABASE}", manifest_path.display());
    };
    for (name, expected) in files {
        if name != DATABASE && !KEY_FILES.contains(&name.as_str()) {
            bail!("{}: unexpected file {name}", manifest_path.display());
        }
        let found = describe(&args.from.join(name))?;
        if &found != expected {
            bail!("{name} in {} does not match its manifest (changed or damaged): refusing", args.from.display());
        }
    }
    secumon_store::backup::check_sqlite(&args.from.join(DATABASE)).await?;
    let target = args.data_dir.join(DATABASE);
    if target.exists() {
        bail!("{} exists: stop the server and move its data directory away first", target.display());
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    for name in files.keys() {
        let destination = args.data_dir.join(name);
        if destination.exists() {
            bail!("{} exists: restore into an empty data directory", destination.display());
        }
        // Copied beside, then renamed: a restore cut short leaves no half file in place.
        let partial = args.data_dir.join(format!(".{name}.restoring"));
        std::fs::copy(args.from.join(name), &partial).with_context(|| format!("cannot write {}", partial.display()))?;
        restrict(&partial, if name == DATABASE { 0o640 } else { 0o600 })?;
        std::fs::rename(&partial, &destination)?;
    }
    println!(
        "restored {} (taken {}) into {}; start the server on it",
        args.from.display(),
        manifest["created"].as_str().unwrap_or("at an unknown time"),
        args.data_dir.display()
    );
    Ok(())
}

/// Size and SHA-256 of a file, as the manifest lists it.
fn describe(path: &Path) -> anyhow::Result<Value> {
    use std::io::Read;
    // Streamed: a store can be many gigabytes.
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let read = file.read(&mut buffer).with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
        bytes += read as u64;
    }
    let hex: String = context.finish().as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(json!({"bytes": bytes, "sha256": hex}))
}

fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}
