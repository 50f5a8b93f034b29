//! Accounts: sign up, sign in (throttled), sign out and change password. Passwords are kept
//! as argon2id hashes (PHC strings) in a `user-credentials` document beside the `user`
//! resource, which the management API serves without them.

use std::sync::{Arc, OnceLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use gatehouse_model::resources::{Resource, USER_CREDENTIALS, User, UserState};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::Portal;
use crate::error::{PortalError, PortalResult};
use crate::session::{Posted, Visitor, random_hex};

type Shared = State<Arc<Portal>>;

pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 256;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    password_hash: String,
}

async fn hash_password(password: String) -> PortalResult<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| PortalError::Internal(format!("cannot hash a password: {e}")))
    })
    .await
    .map_err(|e| PortalError::Internal(format!("password hashing failed: {e}")))?
}

/// Checks `password` against a PHC hash. `None` checks against a dummy hash, so an unknown
/// email costs as much time as a wrong password.
async fn verify_password(password: String, hash: Option<String>) -> bool {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let hash = match hash {
            Some(h) => h,
            None => match DUMMY.get_or_init(|| {
                Argon2::default()
                    .hash_password(b"not a password anyone has")
                    .ok()
                    .map(|h| h.to_string())
            }) {
                Some(d) => d.clone(),
                None => return false,
            },
        };
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .unwrap_or(false)
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
    async fn user_by_email(&self, email: &str) -> PortalResult<Option<User>> {
        let email = email.trim();
        Ok(self
            .load_all::<User>("")
            .await?
            .into_iter()
            .find(|u| u.email.eq_ignore_ascii_case(email)))
    }

    async fn password_hash(&self, user_id: &str) -> PortalResult<Option<String>> {
        match self.store.get(USER_CREDENTIALS, "", user_id).await? {
            Some(body) => Ok(serde_json::from_str::<Credentials>(&body)
                .ok()
                .map(|c| c.password_hash)),
            None => Ok(None),
        }
    }

    async fn save_password(
        &self,
        tx: &mut gatehouse_store::Tx,
        user_id: &str,
        hash: String,
    ) -> PortalResult<()> {
        let body = serde_json::to_string(&Credentials {
            password_hash: hash,
        })
        .map_err(|e| PortalError::Internal(format!("cannot encode credentials: {e}")))?;
        tx.put(USER_CREDENTIALS, "", user_id, &body).await?;
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
    portal
        .limiter
        .check(&email, &visitor.ip)
        .map_err(PortalError::TooManyAttempts)?;
    let user = portal.user_by_email(&email).await?;
    let hash = match &user {
        Some(u) => portal.password_hash(&u.id).await?,
        None => None,
    };
    let known = hash.is_some();
    let verified = verify_password(form.password, hash).await && known;
    let Some(user) = user.filter(|_| verified) else {
        portal.limiter.failed(&email, &visitor.ip);
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
    portal.limiter.succeeded(&email);
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
        let ctx = context! {
            error => problem,
            email => user.email,
            first_name => user.first_name,
            last_name => user.last_name,
            min_password => MIN_PASSWORD,
        };
        let mut response = portal.render(&visitor, "signup.html", ctx).await?;
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    let hash = hash_password(form.password).await?;
    let mut tx = portal.store.begin().await?;
    let body = serde_json::to_string(&user)
        .map_err(|e| PortalError::Internal(format!("cannot encode a user: {e}")))?;
    tx.put(User::KIND, "", &user.id, &body).await?;
    portal.save_password(&mut tx, &user.id, hash).await?;
    portal.backend.commit(tx).await?;
    tracing::info!(user = %user.id, "portal account created");
    Ok(Redirect::to("/portal/signin?registered=1").into_response())
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
        .limiter
        .check(&user.email, &visitor.ip)
        .map_err(PortalError::TooManyAttempts)?;
    let hash = portal.password_hash(&user.id).await?;
    if !verify_password(form.current, hash).await {
        portal.limiter.failed(&user.email, &visitor.ip);
        return Err(PortalError::BadRequest(
            "The current password is wrong; the password was not changed.".into(),
        ));
    }
    check_new_password(&form.new_password).map_err(PortalError::BadRequest)?;
    let hash = hash_password(form.new_password).await?;
    let mut tx = portal.store.begin().await?;
    portal.save_password(&mut tx, &user.id, hash).await?;
    portal.backend.commit(tx).await?;
    Ok(Redirect::to("/portal/profile?notice=password").into_response())
}
