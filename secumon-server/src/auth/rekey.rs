//! Rotating the server's secret key: every value the store keeps sealed under it (the
//! token signing key, the agents' CA keys, users' second-factor secrets) is opened with
//! the old key and sealed again under a fresh one, all in one transaction, and the key
//! file is replaced. Every server of the installation must be stopped meanwhile: one
//! still running would seal new values under the old key.
//!
//! Sealed values are found by what they are, not by field name: any JSON string of a
//! record of [`SEALED_KINDS`] that reads as a sealed value (`v1:` + base64 of at least a
//! nonce and a tag). One that does not open with the old key stops the rotation before
//! anything is written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secumon_store::{RecordSwap, Store};
use serde_json::Value;

use super::agents::KIND_CA;
use super::crypto::random_bytes;
use super::{AuthError, KIND_SIGNING_KEY, KIND_USER, SYSTEM, SecretBox};

/// The kinds of records that hold sealed values.
pub const SEALED_KINDS: &[&str] = &[KIND_SIGNING_KEY, KIND_CA, KIND_USER];

const PAGE: u32 = 500;

/// What a rotation re-sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resealed {
    /// Records rewritten.
    pub records: usize,
    /// Sealed values in them.
    pub values: usize,
}

/// Seals every sealed value of the store under `new` instead of `old`, in one transaction.
/// Nothing changes if one of them does not open with `old`, or if a record changed
/// meanwhile (a server still running).
pub async fn reseal_store(store: &dyn Store, old: &SecretBox, new: &SecretBox) -> Result<Resealed, AuthError> {
    let mut swaps = Vec::new();
    let mut resealed = Resealed::default();
    for kind in SEALED_KINDS {
        let mut after: Option<String> = None;
        loop {
            let page = store.list_records(SYSTEM, kind, after.as_deref(), PAGE).await?;
            for record in &page {
                let mut body: Value = serde_json::from_str(&record.body)?;
                let mut values = 0;
                reseal_value(&mut body, old, new, &mut values)
                    .map_err(|e| AuthError::SecretKey(format!("{kind} {}: {e}", record.id)))?;
                if values > 0 {
                    resealed.records += 1;
                    resealed.values += values;
                    swaps.push(RecordSwap {
                        kind: (*kind).to_string(),
                        id: record.id.clone(),
                        expected: record.body.clone(),
                        body: serde_json::to_string(&body)?,
                    });
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id.clone()),
                _ => break,
            }
        }
    }
    if !swaps.is_empty() && !store.swap_records(SYSTEM, &swaps).await? {
        return Err(AuthError::SecretKey(
            "the store changed while it was being re-sealed (is a server still running?); nothing was changed".into(),
        ));
    }
    Ok(resealed)
}

/// Re-seals the sealed strings within `value`, counting them.
fn reseal_value(value: &mut Value, old: &SecretBox, new: &SecretBox, count: &mut usize) -> Result<(), AuthError> {
    match value {
        Value::String(text) if looks_sealed(text) => {
            *text = new.seal(&old.open(text)?);
            *count += 1;
        }
        Value::Array(items) => items.iter_mut().try_for_each(|item| reseal_value(item, old, new, count))?,
        Value::Object(fields) => fields.values_mut().try_for_each(|field| reseal_value(field, old, new, count))?,
        _ => {}
    }
    Ok(())
}

/// Whether `text` has the form of [`SecretBox::seal`]'s output: a 12-byte nonce and a
/// 16-byte tag at least.
fn looks_sealed(text: &str) -> bool {
    text.strip_prefix("v1:").and_then(|b| STANDARD.decode(b).ok()).is_some_and(|bytes| bytes.len() >= 28)
}

/// Whether `key` opens the store's sealed values: `None` when the store holds none.
pub async fn opens_store(store: &dyn Store, key: &SecretBox) -> Result<Option<bool>, AuthError> {
    for kind in SEALED_KINDS {
        for record in store.list_records(SYSTEM, kind, None, PAGE).await? {
            if let Some(sealed) = first_sealed(&serde_json::from_str(&record.body)?) {
                return Ok(Some(key.open(&sealed).is_ok()));
            }
        }
    }
    Ok(None)
}

fn first_sealed(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if looks_sealed(text) => Some(text.clone()),
        Value::Array(items) => items.iter().find_map(first_sealed),
        Value::Object(fields) => fields.values().find_map(first_sealed),
        _ => None,
    }
}

/// A configuration file's text (rules file, single sign-on file) with each `sealed:v1:…`
/// value that opens with `old` sealed under `new` instead, and how many. Values that open
/// with `new` already are left as they are, so running it again after a crash is harmless;
/// one that opens with neither is an error.
pub fn reseal_config_text(text: &str, old: &SecretBox, new: &SecretBox) -> Result<(String, usize), AuthError> {
    const MARK: &str = "sealed:v1:";
    let is_base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let (mut out, mut rest, mut count) = (String::with_capacity(text.len()), text, 0);
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let value_start = at + "sealed:".len();
        let end = rest[at + MARK.len()..].find(|c: char| !is_base64(c)).map_or(rest.len(), |n| at + MARK.len() + n);
        let sealed = &rest[value_start..end];
        out.push_str("sealed:");
        if new.open(sealed).is_ok() {
            out.push_str(sealed);
        } else {
            let plain = old.open(sealed).map_err(|_| {
                AuthError::SecretKey(format!("{}: opens with neither the old nor the new key", line_of(text, rest, at)))
            })?;
            out.push_str(&new.seal(&plain));
            count += 1;
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok((out, count))
}

/// "line N" of the position `at` of `rest`, a suffix of `text`.
fn line_of(text: &str, rest: &str, at: usize) -> String {
    let offset = text.len() - rest.len() + at;
    format!("line {}", text[..offset].matches('\n').count() + 1)
}

/// The key file and the two beside it that a rotation writes.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// `secret.key`: what the server reads.
    pub current: PathBuf,
    /// `secret.key.new`: the next key, there only while a rotation runs (or was cut short).
    pub next: PathBuf,
    /// `secret.key.old`: the key before the last rotation, for backups made before it.
    pub old: PathBuf,
}

impl KeyFiles {
    /// The three files for the key file `current` (`secret.key`).
    pub fn new(current: &Path) -> Self {
        let beside = |suffix: &str| {
            let mut name = current.file_name().unwrap_or_default().to_os_string();
            name.push(suffix);
            current.with_file_name(name)
        };
        Self { current: current.to_path_buf(), next: beside(".new"), old: beside(".old") }
    }
}

/// How [`rotate_key_file`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRotation {
    /// A fresh key now seals the store.
    Rotated(Resealed),
    /// A rotation cut short after its transaction was found committed; its files were put
    /// in place, and no new key made.
    Finished,
}

/// Rotates the key in the file `files.current` and every value the store keeps sealed
/// under it. The caller makes sure no server runs (see [`crate::data_lock`]).
///
/// The order makes every crash leave a pair that works, or one this function completes
/// when run again:
/// 1. the new key is written to `secret.key.new` (fsync'd); a crash now leaves the store
///    and `secret.key` untouched, and the stray file is replaced on the next run;
/// 2. the store is re-sealed in one transaction; a crash before its commit changes
///    nothing, after it the store opens with `secret.key.new` only;
/// 3. `secret.key` is copied to `secret.key.old`, then `secret.key.new` renamed over
///    `secret.key` (atomic). A crash before the rename leaves `secret.key.new` opening the
///    store: the next run sees that and only finishes step 3 (a server started meanwhile
///    refuses to start, its sealed values not opening, and names this command).
pub async fn rotate_key_file(store: &dyn Store, files: &KeyFiles) -> Result<KeyRotation, AuthError> {
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| AuthError::SecretKey(format!("{path}: {e}"))
    };
    let old_text = std::fs::read_to_string(&files.current).map_err(failed(&files.current))?;
    let old = SecretBox::from_base64(&old_text)?;
    match std::fs::read_to_string(&files.next) {
        Ok(text) => {
            if let Ok(pending) = SecretBox::from_base64(&text)
                && opens_store(store, &pending).await? == Some(true)
            {
                put_in_place(files, &old_text)?;
                return Ok(KeyRotation::Finished);
            }
            // The earlier run stopped before its commit: its key sealed nothing.
            std::fs::remove_file(&files.next).map_err(failed(&files.next))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(&files.next)(e)),
    }
    if opens_store(store, &old).await? == Some(false) {
        return Err(AuthError::SecretKey(format!(
            "the store's sealed values do not open with {}: wrong key file or wrong store",
            files.current.display()
        )));
    }
    let key = random_bytes::<32>();
    write_private(&files.next, &format!("{}\n", STANDARD.encode(key)))?;
    let resealed = reseal_store(store, &old, &SecretBox::new(key)).await?;
    put_in_place(files, &old_text)?;
    Ok(KeyRotation::Rotated(resealed))
}

/// Step 3 of [`rotate_key_file`]: the old key to `.old`, the new one over the current.
fn put_in_place(files: &KeyFiles, old_text: &str) -> Result<(), AuthError> {
    write_private(&files.old, old_text)?;
    std::fs::rename(&files.next, &files.current)
        .map_err(|e| AuthError::SecretKey(format!("{}: {e}", files.current.display())))?;
    sync_dir(&files.current)
}

/// Writes `text` to `path` (mode 0600) through a temporary file and a rename, fsync'd.
fn write_private(path: &Path, text: &str) -> Result<(), AuthError> {
    let failed = |e: std::io::Error| AuthError::SecretKey(format!("{}: {e}", path.display()));
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary).map_err(failed)?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<(), AuthError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuthError::SecretKey(format!("{}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use secumon_store::SqliteStore;

    use super::*;
    use crate::auth::{Accounts, AgentAuthority};

    async fn store(dir: &Path) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.join("secumon.db")).await.unwrap())
    }

    fn sealed_values(body: &str) -> Vec<String> {
        fn walk(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::String(text) if looks_sealed(text) => out.push(text.clone()),
                Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
                Value::Object(fields) => fields.values().for_each(|f| walk(f, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&serde_json::from_str(body).unwrap(), &mut out);
        out
    }

    #[tokio::test]
    async fn every_sealed_value_moves_to_the_new_key_and_the_old_key_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let files = KeyFiles::new(&dir.path().join("secret.key"));
        let old = SecretBox::load_or_create(&files.current).unwrap();
        Accounts::open(store.clone(), old.clone()).await.unwrap();
        AgentAuthority::open(store.clone(), &old).await.unwrap();
        let user = serde_json::json!({"name": "ada", "mfa": {"sealed_secret": old.seal(b"totp")}, "note": "v1:x"});
        store.put_record(SYSTEM, KIND_USER, "ada", &user.to_string()).await.unwrap();

        let rotation = rotate_key_file(&*store, &files).await.unwrap();
        assert_eq!(rotation, KeyRotation::Rotated(Resealed { records: 3, values: 3 }));
        let new = SecretBox::load_or_create(&files.current).unwrap();
        assert!(!files.next.exists());
        let kept = SecretBox::load_or_create(&files.old).unwrap();
        assert!(kept.open(&old.seal(b"x")).is_ok(), "secret.key.old holds the old key");
        use std::os::unix::fs::PermissionsExt;
        for path in [&files.current, &files.old] {
            assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600, "{path:?}");
        }
        for kind in SEALED_KINDS {
            for record in store.list_records(SYSTEM, kind, None, 100).await.unwrap() {
                for sealed in sealed_values(&record.body) {
                    assert!(new.open(&sealed).is_ok(), "{kind} {}", record.id);
                    assert!(old.open(&sealed).is_err(), "{kind} {}", record.id);
                }
            }
        }
        let ada: Value =
            serde_json::from_str(&store.get_record(SYSTEM, KIND_USER, "ada").await.unwrap().unwrap()).unwrap();
        assert_eq!(new.open(ada["mfa"]["sealed_secret"].as_str().unwrap()).unwrap(), b"totp");
        assert_eq!(ada["note"], "v1:x", "a string too short to be sealed is left alone");
        // The server's parts open with the new key.
        Accounts::open(store.clone(), new.clone()).await.unwrap();
        AgentAuthority::open(store.clone(), &new).await.unwrap();
        assert!(AgentAuthority::open(store.clone(), &old).await.is_err());
    }

    #[test]
    fn sealed_values_of_configuration_files_move_to_the_new_key_once() {
        let (old, new) = (SecretBox::new([1; 32]), SecretBox::new([2; 32]));
        let text = format!(
            "channels:\n  - password: {}\n    url: \"{}\"\n    note: sealed:v1 is how it reads\n",
            old.seal_config_value("hunter2"),
            old.seal_config_value("https://hooks.example/T0")
        );
        let (resealed, count) = reseal_config_text(&text, &old, &new).unwrap();
        assert_eq!(count, 2);
        assert_eq!(resealed.lines().count(), text.lines().count());
        assert!(resealed.contains("note: sealed:v1 is how it reads"));
        let values: Vec<&str> = resealed.split_whitespace().filter(|w| w.contains("sealed:v1:")).collect();
        assert_eq!(new.open_config_value(values[0]).unwrap().as_deref(), Some("hunter2"));
        assert_eq!(
            new.open_config_value(values[1].trim_matches('"')).unwrap().as_deref(),
            Some("https://hooks.example/T0")
        );
        assert_eq!(
            reseal_config_text(&resealed, &old, &new).unwrap(),
            (resealed.clone(), 0),
            "a second run changes nothing"
        );
        let foreign = format!("a: b\npassword: {}\n", SecretBox::new([3; 32]).seal_config_value("x"));
        assert!(reseal_config_text(&foreign, &old, &new).unwrap_err().to_string().contains("line 2"));
    }

    #[tokio::test]
    async fn a_value_that_does_not_open_stops_the_rotation_before_anything_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let files = KeyFiles::new(&dir.path().join("secret.key"));
        let old = SecretBox::load_or_create(&files.current).unwrap();
        Accounts::open(store.clone(), old.clone()).await.unwrap();
        let foreign = serde_json::json!({"mfa": {"sealed_secret": SecretBox::new([9; 32]).seal(b"totp")}});
        store.put_record(SYSTEM, KIND_USER, "zed", &foreign.to_string()).await.unwrap();
        let before = store.get_record(SYSTEM, KIND_SIGNING_KEY, "current").await.unwrap();

        let error = rotate_key_file(&*store, &files).await.unwrap_err().to_string();
        assert!(error.contains("user zed"), "{error}");
        assert_eq!(store.get_record(SYSTEM, KIND_SIGNING_KEY, "current").await.unwrap(), before);
        assert!(SecretBox::load_or_create(&files.current).unwrap().open(&old.seal(b"x")).is_ok());
    }

    #[tokio::test]
    async fn a_rotation_cut_short_is_finished_or_started_over_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let files = KeyFiles::new(&dir.path().join("secret.key"));
        let old = SecretBox::load_or_create(&files.current).unwrap();
        Accounts::open(store.clone(), old.clone()).await.unwrap();

        // Cut short after step 1: a stray new key that sealed nothing is replaced.
        std::fs::write(&files.next, format!("{}\n", STANDARD.encode([3u8; 32]))).unwrap();
        assert!(matches!(rotate_key_file(&*store, &files).await.unwrap(), KeyRotation::Rotated(_)));
        let second = SecretBox::load_or_create(&files.current).unwrap();
        assert!(second.open(&SecretBox::new([3; 32]).seal(b"x")).is_err(), "the stray key was not used");
        assert_eq!(opens_store(&*store, &second).await.unwrap(), Some(true));

        // Cut short after step 2: the store opens with secret.key.new only.
        let third = [4u8; 32];
        std::fs::write(&files.next, format!("{}\n", STANDARD.encode(third))).unwrap();
        reseal_store(&*store, &second, &SecretBox::new(third)).await.unwrap();
        assert_eq!(rotate_key_file(&*store, &files).await.unwrap(), KeyRotation::Finished);
        let now = SecretBox::load_or_create(&files.current).unwrap();
        assert!(now.open(&SecretBox::new(third).seal(b"x")).is_ok());
        assert_eq!(opens_store(&*store, &now).await.unwrap(), Some(true));
        assert!(SecretBox::load_or_create(&files.old).unwrap().open(&second.seal(b"x")).is_ok());
        assert!(!files.next.exists());
    }
}
