//! Accounts against a real (temporary) SQLite store.

use super::*;
use secumon_store::SqliteStore;

async fn accounts() -> (Accounts, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
    let accounts = Accounts::open(store, SecretBox::new(crypto::random_bytes())).await.unwrap();
    (accounts, dir)
}

fn session(outcome: LoginOutcome) -> Session {
    match outcome {
        LoginOutcome::Session(session) => session,
        LoginOutcome::MfaRequired { .. } => panic!("MFA was not expected"),
    }
}

fn current_code(enrolment: &MfaEnrolment, offset_steps: i64) -> String {
    let secret = totp_rs::Secret::Encoded(enrolment.secret.clone()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, "x".into()).unwrap();
    totp.generate((unix_seconds() as i64 + offset_steps * 30) as u64)
}

#[tokio::test]
async fn a_login_gives_tokens_that_name_user_tenant_and_role() {
    let (accounts, _dir) = accounts().await;
    accounts.add_user("ada", "long enough password", "acme", Role::Operator, false).await.unwrap();
    let session = session(accounts.login("ada", "long enough password", None).await.unwrap());
    assert_eq!((session.tenant.as_str(), session.role), ("acme", Role::Operator));
    let caller = accounts.authenticate(&session.access_token).await.unwrap();
    assert_eq!(
        caller,
        Caller { subject: "ada".into(), tenant: "acme".into(), role: Role::Operator, super_admin: false }
    );
    assert!(caller.require(Role::Viewer).is_ok() && caller.require(Role::Admin).is_err());
    assert!(matches!(
        accounts.login("ada", "long enough password", Some("globex")).await,
        Err(AuthError::Forbidden(_))
    ));
    assert!(accounts.authenticate(&session.refresh_token).await.is_err(), "a refresh token is not an access token");
}

#[tokio::test]
async fn bad_passwords_and_names_are_refused_alike_and_lock_the_account() {
    let (accounts, _dir) = accounts().await;
    accounts.add_user("ada", "long enough password", "acme", Role::Admin, false).await.unwrap();
    let unknown = accounts.login("bob", "long enough password", None).await.unwrap_err().to_string();
    let wrong = accounts.login("ada", "wrong password!", None).await.unwrap_err().to_string();
    assert_eq!(unknown, wrong);
    assert!(unknown.starts_with("wrong user name"), "{unknown}");
    for _ in 1..LOCKOUT_AFTER - 1 {
        assert!(matches!(accounts.login("ada", "wrong password!", None).await, Err(AuthError::Unauthenticated(_))));
    }
    // Locking and being locked answer like a wrong password: nothing tells which names exist.
    let locking = accounts.login("ada", "wrong password!", None).await.unwrap_err().to_string();
    assert_eq!(locking, unknown);
    let right_but_locked = accounts.login("ada", "long enough password", None).await.unwrap_err().to_string();
    assert_eq!(right_but_locked, unknown, "the right password does not open a locked account");
    assert!(accounts.user("ada", None).await.unwrap().locked);
    // A super-admin logs in to tenants that exist only.
    accounts.add_user("root", "long enough password", "default", Role::Admin, true).await.unwrap();
    for tenant in ["_system", "nowhere"] {
        let refused = accounts.login("root", "long enough password", Some(tenant)).await;
        assert!(matches!(refused, Err(AuthError::Forbidden(_))), "{tenant}: {refused:?}");
    }
    session(accounts.login("root", "long enough password", Some("acme")).await.unwrap());
    accounts.reset_mfa("ada", None, true).await.unwrap();
    session(accounts.login("ada", "long enough password", None).await.unwrap());
}

#[tokio::test]
async fn mfa_enrolment_then_login_needs_a_fresh_code_or_a_recovery_code() {
    let (accounts, _dir) = accounts().await;
    accounts.add_user("ada", "long enough password", "acme", Role::Admin, false).await.unwrap();
    assert!(matches!(accounts.enroll_mfa("ada", "not her password").await, Err(AuthError::Unauthenticated(_))));
    let enrolment = accounts.enroll_mfa("ada", "long enough password").await.unwrap();
    assert!(enrolment.otpauth_uri.starts_with("otpauth://totp/SecuMon:ada?"));
    assert!(matches!(accounts.confirm_mfa("ada", "12345x").await, Err(AuthError::Invalid(_))));
    // Confirm with the previous step's code, so that the current one is still unused.
    let recovery = accounts.confirm_mfa("ada", &current_code(&enrolment, -1)).await.unwrap();
    assert_eq!(recovery.len(), mfa::RECOVERY_CODES);

    let LoginOutcome::MfaRequired { mfa_token } = accounts.login("ada", "long enough password", None).await.unwrap()
    else {
        panic!("MFA is on")
    };
    assert!(accounts.authenticate(&mfa_token).await.is_err(), "the half-way token opens nothing");
    let code = current_code(&enrolment, 0);
    let session = accounts.verify_mfa(&mfa_token, &code).await.unwrap();
    assert_eq!(accounts.authenticate(&session.access_token).await.unwrap().subject, "ada");
    assert!(
        matches!(accounts.verify_mfa(&mfa_token, &code).await, Err(AuthError::Unauthenticated(_))),
        "a code is accepted once"
    );
    accounts.verify_mfa(&mfa_token, &recovery[0]).await.unwrap();
    assert!(accounts.verify_mfa(&mfa_token, &recovery[0]).await.is_err(), "a recovery code is used once");

    let stored = accounts.store.get_record(SYSTEM, KIND_USER, "ada").await.unwrap().unwrap();
    assert!(!stored.contains(&enrolment.secret) && !stored.contains(&recovery[1]), "secrets are not stored readable");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_can_be_revoked() {
    let (accounts, _dir) = accounts().await;
    accounts.add_user("ada", "long enough password", "acme", Role::Viewer, false).await.unwrap();
    let first = session(accounts.login("ada", "long enough password", None).await.unwrap());
    let second = accounts.refresh(&first.refresh_token).await.unwrap();
    assert!(accounts.refresh(&first.refresh_token).await.is_err(), "a refresh token is used once");
    assert!(accounts.logout(&second.refresh_token).await.unwrap());
    assert!(accounts.refresh(&second.refresh_token).await.is_err(), "revoked");
    let forged = format!("{}x", &second.refresh_token);
    assert!(accounts.refresh(&forged).await.is_err());
}

#[tokio::test]
async fn api_keys_act_in_their_tenant_with_their_role_until_revoked() {
    let (accounts, _dir) = accounts().await;
    let (view, secret) = accounts.create_api_key("acme", "backup script", Role::Viewer, "ada").await.unwrap();
    let caller = accounts.authenticate(&secret).await.unwrap();
    assert_eq!((caller.tenant.as_str(), caller.role), ("acme", Role::Viewer));
    assert_eq!(accounts.api_keys("acme").await.unwrap(), vec![view.clone()]);
    assert!(accounts.api_keys("globex").await.unwrap().is_empty());
    let stored = accounts.store.get_record(SYSTEM, KIND_API_KEY, &view.id).await.unwrap().unwrap();
    assert!(!stored.contains(secret.split_once('.').unwrap().1), "only a digest is stored");
    assert!(!accounts.revoke_api_key("globex", &view.id).await.unwrap(), "another tenant cannot revoke it");
    assert!(accounts.revoke_api_key("acme", &view.id).await.unwrap());
    assert!(accounts.authenticate(&secret).await.is_err());
}

#[tokio::test]
async fn names_and_passwords_are_checked() {
    let (accounts, _dir) = accounts().await;
    assert!(matches!(accounts.add_user("ada", "short", "acme", Role::Admin, false).await, Err(AuthError::Invalid(_))));
    assert!(matches!(
        accounts.add_user("a:b", "long enough password", "acme", Role::Admin, false).await,
        Err(AuthError::Invalid(_))
    ));
    assert!(matches!(
        accounts.add_user("ada", "long enough password", "_system", Role::Admin, false).await,
        Err(AuthError::Invalid(_))
    ));
    accounts.add_user("ada", "long enough password", "acme", Role::Admin, false).await.unwrap();
    assert!(matches!(
        accounts.add_user("ada", "long enough password", "acme", Role::Admin, false).await,
        Err(AuthError::Conflict(_))
    ));
    assert_eq!(accounts.tenants(None, 10).await.unwrap(), ["acme", "default"]);
}

/// 19 wrong passwords and the right one at once: never a session on an account that ends
/// locked, and no more guesses checked than failures were left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_logins_cannot_outguess_the_lock() {
    let (accounts, _dir) = accounts().await;
    let accounts = std::sync::Arc::new(accounts);
    accounts.add_user("ada", "long enough password", "acme", Role::Admin, false).await.unwrap();
    let logins: Vec<_> = (0..20)
        .map(|i| {
            let accounts = std::sync::Arc::clone(&accounts);
            let password = if i == 10 { "long enough password".to_string() } else { format!("wrong password {i}") };
            tokio::spawn(async move { accounts.login("ada", &password, None).await })
        })
        .collect();
    let mut sessions = 0;
    for login in logins {
        match login.await.unwrap() {
            Ok(_) => sessions += 1,
            Err(AuthError::Unauthenticated(_)) => {}
            Err(other) => panic!("{other}"),
        }
    }
    let locked = accounts.user("ada", None).await.unwrap().locked;
    assert!(!(sessions == 1 && locked), "a session was granted on an account that ended locked");
}

/// However many logins race, no more passwords are checked at once than failures are left
/// before the lock (before the fix every guess was checked).
#[tokio::test]
async fn password_checks_in_progress_never_outnumber_the_failures_left() {
    let (accounts, _dir) = accounts().await;
    accounts.add_user("ada", "long enough password", "acme", Role::Admin, false).await.unwrap();
    accounts
        .update_user("ada", |user| {
            user.failed_logins = 2;
            Ok(())
        })
        .await
        .unwrap();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        match accounts.begin_attempt("ada").await {
            Ok(Some(attempt)) => admitted.push(attempt),
            Err(AuthError::TooManyAttempts) => refused += 1,
            other => panic!("{:?}", other.map(|a| a.is_some())),
        }
    }
    assert_eq!((admitted.len(), refused), (LOCKOUT_AFTER as usize - 2, 20 - (LOCKOUT_AFTER as usize - 2)));
    drop(admitted);
    assert!(accounts.begin_attempt("ada").await.unwrap().is_some(), "finished attempts free their place");
}

#[tokio::test]
async fn a_tenant_admin_cannot_reset_a_super_admin_or_a_user_of_other_tenants() {
    let (accounts, _dir) = accounts().await;
    accounts.add_user("root", "long enough password", "default", Role::Admin, true).await.unwrap();
    accounts.add_user("ada", "long enough password", "default", Role::Viewer, false).await.unwrap();
    let refused = accounts.reset_mfa("root", Some("default"), false).await;
    assert!(matches!(refused, Err(AuthError::Forbidden(_))), "{refused:?}");
    accounts.reset_mfa("ada", Some("default"), false).await.unwrap();
    accounts.reset_mfa("root", Some("default"), true).await.unwrap();
}

#[tokio::test]
async fn with_shared_limits_password_checks_in_progress_are_counted_across_processes() {
    let prefix = crate::shared_limits::tests::unique_prefix("attempts");
    let (Some(first), Some(second)) = (
        crate::shared_limits::tests::test_redis(&prefix).await,
        crate::shared_limits::tests::test_redis(&prefix).await,
    ) else {
        return;
    };
    // Two API processes on one store and one Redis.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
    let key = SecretBox::new(crypto::random_bytes());
    let a = Accounts::open(store.clone(), key.clone()).await.unwrap().with_shared_limits(first);
    let b = Accounts::open(store, key).await.unwrap().with_shared_limits(second);
    a.add_user("ada", "long enough password", "acme", Role::Admin, false).await.unwrap();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for i in 0..20 {
        let process = if i % 2 == 0 { &a } else { &b };
        match process.begin_attempt("ada").await {
            Ok(Some(attempt)) => admitted.push(attempt),
            Err(AuthError::TooManyAttempts) => refused += 1,
            other => panic!("{:?}", other.map(|a| a.is_some())),
        }
    }
    assert_eq!((admitted.len(), refused), (LOCKOUT_AFTER as usize, 20 - LOCKOUT_AFTER as usize));
    drop(admitted);
    // The uncounting runs in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match b.begin_attempt("ada").await {
            Ok(Some(_)) => break,
            _ => assert!(std::time::Instant::now() < deadline, "finished attempts free their place"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // A lockout made through one process holds in the other.
    for _ in 0..LOCKOUT_AFTER {
        assert!(a.login("ada", "wrong password!", None).await.is_err());
    }
    assert!(b.login("ada", "long enough password", None).await.is_err(), "locked in b too");
    assert!(b.user("ada", None).await.unwrap().locked);
}
