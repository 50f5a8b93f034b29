//! Accounts: sign up, sign in (throttled), sign out and change password. Passwords are kept
//! as argon2id hashes (PHC strings) in a `user-credentials` document beside the `user`
//! resource, which the management API serves without them.
//!
//! Each argon2 hash takes about 19 MiB and a core for a moment, so at most
//! [`CONCURRENT_HASHES`] run at once, process-wide; others wait their turn (a bounded number,
//! for a bounded time) and are otherwise told the portal is busy (503). Accounts and passwords are not configuration: writing them
//! bumps no revision, so no gateway refetches for a sign-up.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use gatehouse_model::resources::{Resource, User, UserState, email_key};
use gatehouse_store::records::{EmailOwner, UserCredentials};
use minijinja::context;
use serde::Deserialize;

use crate::Portal;
use crate::error::{PortalError, PortalResult};
use crate::session::{Posted, Visitor, random_hex};

type Shared = State<Arc<Portal>>;

pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 256;

/// Password hashes computed at once, at most (each needs 19 MiB of argon2 memory).
pub const CONCURRENT_HASHES: usize = 2;
/// How long a request waits for its turn to hash before the portal says it is busy.
const HASH_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Requests waiting for a hashing slot, at most; more are told at once that the portal is busy.
const MAX_HASH_WAITERS: usize = 64;

static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_HASHES);
static HASH_WAITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A hashing job, given its thread's argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The threads that hash: always the same [`CONCURRENT_HASHES`] ones, started on first use,
/// each with one argon2 memory it reuses. Fresh 19 MiB per hash, freed after, is what the
/// allocator keeps growing on (about 19 MiB more resident per sign-up with glibc).
fn hashers() -> PortalResult<&'static std::sync::Mutex<std::sync::mpsc::Sender<Job>>> {
    type Queue = std::sync::Mutex<std::sync::mpsc::Sender<Job>>;
    static HASHERS: OnceLock<Option<Queue>> = OnceLock::new();
    HASHERS
        .get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::channel::<Job>();
            let receiver = Arc::new(std::sync::Mutex::new(receiver));
            for i in 0..CONCURRENT_HASHES {
                let receiver = receiver.clone();
                let started = std::thread::Builder::new()
                    .name(format!("portal-hash-{i}"))
                    .spawn(move || {
                        let mut memory = Vec::new();
                        loop {
                            let job = match receiver.lock() {
                                Ok(r) => r.recv(),
                                Err(_) => return,
                            };
                            match job {
                                Ok(job) => job(&mut memory),
                                Err(_) => return,
                            }
                        }
                    });
                if let Err(e) = started {
                    tracing::error!(error = %e, "cannot start a password hashing thread");
                    return None;
                }
            }
            Some(std::sync::Mutex::new(sender))
        })
        .as_ref()
        .ok_or_else(|| PortalError::Internal("no password hashing threads".into()))
}

/// Runs one argon2 computation on a hashing thread, once a slot is free.
async fn hashing<T: Send + 'static>(
    work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
) -> PortalResult<T> {
    /// Counts a waiting request for as long as it waits, even if it is dropped meanwhile.
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            HASH_WAITERS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let waiting = Waiting;
    if HASH_WAITERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= MAX_HASH_WAITERS {
        return Err(PortalError::Busy);
    }
    let permit = tokio::time::timeout(HASH_QUEUE_WAIT, HASHING.acquire())
        .await
        .map_err(|_| PortalError::Busy)?
        .map_err(|_| PortalError::Busy)?;
    drop(waiting);
    let (done, result) = tokio::sync::oneshot::channel();
    // The slot is given back when the work ends, not when the request does: a request dropped
    // while its hash runs must not let another hash start beside it.
    let job: Job = Box::new(move |memory| {
        let _ = done.send(work(memory));
        drop(permit);
    });
    hashers()?
        .lock()
        .map_err(|_| PortalError::Internal("the password hashing queue is unusable".into()))?
        .send(job)
        .map_err(|_| PortalError::Internal("the password hashing threads stopped".into()))?;
    result
        .await
        .map_err(|_| PortalError::Internal("password hashing failed".into()))
}

/// `params.block_count()` blocks of `memory`, grown if needed.
fn blocks<'a>(memory: &'a mut Vec<Block>, params: &Params) -> &'a mut [Block] {
    let n = params.block_count();
    if memory.len() < n {
        memory.resize(n, Block::default());
    }
    &mut memory[..n]
}

/// argon2id with the default parameters, as a PHC string.
fn hash_with(memory: &mut Vec<Block>, password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "the random generator failed".to_owned())?;
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(password, &salt, &mut out, blocks(memory, &params))
        .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches a PHC string of argon2 (any variant and parameters).
fn verify_with(memory: &mut Vec<Block>, password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm.as_str()),
        Params::try_from(&parsed),
        parsed.salt.as_ref(),
        parsed.hash.as_ref(),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    argon
        .hash_password_into_with_memory(password, salt, &mut out, blocks(memory, &params))
        .is_ok()
        && aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok()
}

async fn hash_password(password: String) -> PortalResult<String> {
    hashing(move |memory| hash_with(memory, password.as_bytes()))
        .await?
        .map_err(|e| PortalError::Internal(format!("cannot hash a password: {e}")))
}

/// Checks `password` against a PHC hash. `None` checks against a dummy hash, so an unknown
/// email costs as much time as a wrong password.
async fn verify_password(password: String, hash: Option<String>) -> PortalResult<bool> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    hashing(move |memory| {
        let hash = match hash {
            Some(h) => h,
            None => {
                match DUMMY.get_or_init(|| hash_with(memory, b"not a password anyone has").ok()) {
                    Some(d) => d.clone(),
                    None => return false,
                }
            }
        };
        verify_with(memory, password.as_bytes(), &hash)
    })
    .await
}

fn check_new_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(format!(
            "Choose a password of at least {MIN_PASSWORD} characters."
        ));
    }
    if n > MAX_PASSWORD {
        return Err(format!(
            "Choose a password of at most {MAX_PASSWORD} characters."
        ));
    }
    Ok(())
}

impl Portal {
    /// The user with this email, through the email index.
    async fn user_by_email(&self, email: &str) -> PortalResult<Option<User>> {
        let index = self.store.repo::<EmailOwner>().lenient();
        let Some(EmailOwner(id)) = index.get("", &email_key(email)).await? else {
            return Ok(None);
        };
        Ok(self
            .load_opt::<User>(&id)
            .await?
            .filter(|u| email_key(&u.email) == email_key(email)))
    }

    async fn password_hash(&self, user_id: &str) -> PortalResult<Option<String>> {
        // Credentials that do not read are as good as none: the password does not match.
        let credentials = self.store.repo::<UserCredentials>().lenient();
        let stored = credentials.get("", user_id).await?;
        Ok(stored.map(|c| c.password_hash))
    }

    async fn save_password(
        &self,
        tx: &mut gatehouse_store::Tx,
        user_id: &str,
        hash: String,
    ) -> PortalResult<()> {
        let credentials = UserCredentials {
            password_hash: hash,
        };
        tx.repo::<UserCredentials>()
            .put_unversioned("", user_id, &credentials)
            .await?;
        Ok(())
    }
}

/// Where to go after signing in: a portal page, never another site.
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/portal/")
                && !n.starts_with("//")
                && !n.contains(['\\', '\r', '\n'])
                && !n.starts_with("/portal/signin")
                && !n.starts_with("/portal/signout") =>
        {
            n.to_owned()
        }
        _ => "/portal/profile".to_owned(),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct SigninQuery {
    next: Option<String>,
    registered: Option<String>,
}

pub async fn signin_page(
    State(portal): Shared,
    visitor: Visitor,
    Query(q): Query<SigninQuery>,
) -> PortalResult<Response> {
    if visitor.user.is_some() {
        return Ok(Redirect::to("/portal/profile").into_response());
    }
    let ctx = context! {
        next => local_next(q.next.as_deref()),
        notice => q.registered.map(|_| "Your account is ready. Sign in with your email and password."),
    };
    portal.render(&visitor, "signin.html", ctx).await
}

#[derive(Debug, Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn signin(
    State(portal): Shared,
    Posted { visitor, form }: Posted<SigninForm>,
) -> PortalResult<Response> {
    let email = form.email.trim().to_owned();
    // Counted before the password is checked, so concurrent guesses all count.
    let attempt = portal
        .limiter
        .reserve(&email, &visitor.ip)
        .map_err(PortalError::TooManyAttempts)?;
    let user = portal.user_by_email(&email).await?;
    let hash = match &user {
        Some(u) => portal.password_hash(&u.id).await?,
        None => None,
    };
    let known = hash.is_some();
    let verified = verify_password(form.password, hash).await? && known;
    let Some(user) = user.filter(|_| verified) else {
        tracing::info!(ip = %visitor.ip, "portal sign-in failed");
        let ctx = context! {
            email => email,
            next => local_next(form.next.as_deref()),
            error => "The email or the password is wrong.",
        };
        let mut response = portal.render(&visitor, "signin.html", ctx).await?;
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    };
    if user.state != UserState::Active {
        let ctx = context! {
            email => email,
            next => local_next(form.next.as_deref()),
            error => "This account is blocked. Contact the portal's administrators.",
        };
        let mut response = portal.render(&visitor, "signin.html", ctx).await?;
        *response.status_mut() = StatusCode::FORBIDDEN;
        return Ok(response);
    }
    portal.limiter.succeeded(&attempt);
    let cookie = visitor.sign_in(&portal, user.id()).await?;
    let mut response = Redirect::to(&local_next(form.next.as_deref())).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

pub async fn signup_page(State(portal): Shared, visitor: Visitor) -> PortalResult<Response> {
    if visitor.user.is_some() {
        return Ok(Redirect::to("/portal/profile").into_response());
    }
    let ctx = context! { min_password => MIN_PASSWORD };
    portal.render(&visitor, "signup.html", ctx).await
}

#[derive(Debug, Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
}

pub async fn signup(
    State(portal): Shared,
    Posted { visitor, form }: Posted<SignupForm>,
) -> PortalResult<Response> {
    let mut user = User {
        id: format!("u-{}", random_hex(8)?),
        email: form.email.trim().to_owned(),
        first_name: form.first_name.trim().to_owned(),
        last_name: form.last_name.trim().to_owned(),
        state: UserState::Active,
        note: None,
        registration_date: Some(
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        ),
    };
    let mut problem = user
        .normalize()
        .err()
        .map(|e| {
            e.details
                .iter()
                .map(|d| format!("{}: {}", d.target, d.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .or_else(|| check_new_password(&form.password).err());
    if problem.is_none() && portal.user_by_email(&user.email).await?.is_some() {
        problem = Some("An account with this email exists already. Sign in instead.".to_owned());
    }
    if let Some(problem) = problem {
        return signup_refused(&portal, &visitor, &user, problem).await;
    }
    portal
        .sign_ups
        .take(&visitor.ip)
        .map_err(PortalError::Throttled)?;
    let hash = hash_password(form.password).await?;
    let mut tx = portal.store.begin().await?;
    let owner = EmailOwner(user.id.clone());
    // The index entry is created first and only if absent: of two sign-ups with one email
    // racing each other, the second finds the first's.
    if !tx
        .repo::<EmailOwner>()
        .create_unversioned("", &email_key(&user.email), &owner)
        .await?
    {
        drop(tx);
        let problem = "An account with this email exists already. Sign in instead.".to_owned();
        return signup_refused(&portal, &visitor, &user, problem).await;
    }
    // A new active user with no subscriptions changes no gateway's configuration.
    tx.repo::<User>()
        .put_unversioned("", &user.id, &user)
        .await?;
    portal.save_password(&mut tx, &user.id, hash).await?;
    portal.backend.commit(tx).await?;
    tracing::info!(user = %user.id, "portal account created");
    Ok(Redirect::to("/portal/signin?registered=1").into_response())
}

async fn signup_refused(
    portal: &Portal,
    visitor: &Visitor,
    user: &User,
    problem: String,
) -> PortalResult<Response> {
    let ctx = context! {
        error => problem,
        email => user.email.clone(),
        first_name => user.first_name.clone(),
        last_name => user.last_name.clone(),
        min_password => MIN_PASSWORD,
    };
    let mut response = portal.render(visitor, "signup.html", ctx).await?;
    *response.status_mut() = StatusCode::BAD_REQUEST;
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn signout(
    State(portal): Shared,
    Posted { visitor, .. }: Posted<Empty>,
) -> PortalResult<Response> {
    let cookie = visitor.sign_out(&portal).await?;
    let mut response = Redirect::to("/portal/").into_response();
    if let Some(c) = cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new_password: String,
}

pub async fn change_password(
    State(portal): Shared,
    Posted { visitor, form }: Posted<PasswordForm>,
) -> PortalResult<Response> {
    let user = visitor.user()?.clone();
    portal
        .password_changes
        .take(&visitor.ip)
        .map_err(PortalError::Throttled)?;
    let attempt = portal
        .limiter
        .reserve(&user.email, &visitor.ip)
        .map_err(PortalError::TooManyAttempts)?;
    let hash = portal.password_hash(&user.id).await?;
    if !verify_password(form.current, hash).await? {
        return Err(PortalError::BadRequest(
            "The current password is wrong; the password was not changed.".into(),
        ));
    }
    portal.limiter.succeeded(&attempt);
    check_new_password(&form.new_password).map_err(PortalError::BadRequest)?;
    let hash = hash_password(form.new_password).await?;
    let mut tx = portal.store.begin().await?;
    portal.save_password(&mut tx, &user.id, hash).await?;
    portal.backend.commit(tx).await?;
    let cookie = visitor.rotate_after_password_change(&portal).await?;
    tracing::info!(user = %user.id, "portal password changed; every other session ended");
    let mut response = Redirect::to("/portal/profile?notice=password").into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_are_standard_phc_strings_both_ways() {
        let mut memory = Vec::new();
        let ours = hash_with(&mut memory, b"correct horse battery").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", ours.as_str())
                .is_ok()
        );
        // Hashes stored before the hashing threads verify, and only with their password.
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery")
            .unwrap()
            .to_string();
        assert!(verify_with(&mut memory, b"correct horse battery", &theirs));
        assert!(!verify_with(&mut memory, b"wrong horse battery", &theirs));
        assert!(!verify_with(&mut memory, b"wrong horse battery", &ours));
        assert!(!verify_with(&mut memory, b"x", "not a hash"));
        // One memory, reused.
        assert_eq!(memory.len(), Params::default().block_count());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn at_most_two_hashes_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let jobs: Vec<_> = (0..12)
            .map(|_| {
                tokio::spawn(hashing(|_memory| {
                    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                    MOST.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    RUNNING.fetch_sub(1, Ordering::SeqCst);
                    std::thread::current().name().map(str::to_owned)
                }))
            })
            .collect();
        for job in jobs {
            let thread = job.await.unwrap().unwrap().unwrap();
            assert!(thread.starts_with("portal-hash-"), "{thread}");
        }
        assert!(MOST.load(Ordering::SeqCst) <= CONCURRENT_HASHES);
    }
}
