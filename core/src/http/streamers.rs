//! Streamer accounts over HTTP.
//!
//! For streamers (their own cookie, [`crate::streamers::COOKIE`], and `X-CSRF-Token` on
//! changes): `POST /api/streamer/signup` (when `accounts.signup` is on), `POST
//! /api/streamer/login`, `POST /api/streamer/logout`, `GET /api/streamer/me` (the account, OBS
//! settings and whether it is publishing), `POST /api/streamer/key` (a new key; the old one
//! stops working and its publish is ended).
//!
//! For admins: `GET /api/streamers`, `POST /api/streamers`, `PATCH /api/streamers/{name}`
//! (`enabled`, `channel`), `DELETE /api/streamers/{name}`, `POST /api/streamers/{name}/key`.
//! Disabling, deleting, moving or re-keying an account ends its publish at once.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode, header};

use super::gate::{CSRF_HEADER, changes_state, cookie, login_refused, named_cookie, with_cookie};
use super::{
    API_BODY_MAX, Route, api_error, body_up_to, constant_time_eq, error, json_response, parse_body,
};
use crate::auth::{AuthError, Session};
use crate::engine::Core;
use crate::streamers::{Account, COOKIE, WithKey};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignUp {
    name: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    password: String,
    /// None: `accounts.channel`.
    channel: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    enabled: Option<bool>,
    channel: Option<String>,
}

/// 400 naming `channel`: an account must publish to a channel that exists.
fn no_channel(channel: &str) -> warp::reply::Response {
    let e = format!("channel: no channel named {channel:?}");
    api_error(
        StatusCode::BAD_REQUEST,
        &e,
        Some(("channel", "no such channel")),
    )
}

fn auth_error(e: &AuthError) -> warp::reply::Response {
    match e {
        AuthError::Invalid { field, message } => {
            api_error(StatusCode::BAD_REQUEST, e, Some((field, message)))
        }
        AuthError::NotFound(n) => error(
            StatusCode::NOT_FOUND,
            &format!("no streamer account named {n:?}"),
        ),
        AuthError::Exists(n) => error(
            StatusCode::CONFLICT,
            &format!("a streamer account named {n:?} exists"),
        ),
        e => {
            tracing::error!(error = %e, "streamer accounts");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "streamer accounts failed: see the log",
            )
        }
    }
}

/// The account, whether it publishes and is on air, and OBS's settings.
fn account_json(c: &Core, a: &Account, host: Option<&str>) -> serde_json::Value {
    let sessions: Vec<_> = c
        .ingest
        .sessions(Some(&a.channel))
        .into_iter()
        .filter(|s| s.account.as_deref() == Some(a.name.as_str()))
        .collect();
    let mut v = serde_json::json!(a);
    v["publishing"] = serde_json::json!(!sessions.is_empty());
    v["on_air"] = serde_json::json!(sessions.iter().any(|s| s.on_air));
    v["session"] = serde_json::json!(sessions.first().map(|s| s.session));
    v["obs"] = serde_json::json!({
        "service": "Custom...",
        "server": super::obs_server(c, host),
    });
    v
}

fn with_key_json(c: &Core, k: &WithKey, host: Option<&str>) -> serde_json::Value {
    let mut v = account_json(c, &k.account, host);
    v["key"] = serde_json::json!(k.key);
    v
}

fn host(h: &HeaderMap) -> Option<&str> {
    h.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// The streamer session of a request, or the 401/403 to answer.
fn streamer(c: &Core, m: &Method, h: &HeaderMap) -> Result<Session, Box<warp::reply::Response>> {
    let s = cookie(h, COOKIE)
        .and_then(|t| c.streamers.auth().session(t))
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::UNAUTHORIZED,
                "log in on the streamer page",
            ))
        })?;
    if changes_state(m) {
        let given = h.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), s.csrf.as_bytes())) {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "missing or wrong X-CSRF-Token header",
            )));
        }
    }
    Ok(s)
}

/// `f`'s answer for the logged-in streamer, or the 401/403 of [`streamer`].
fn as_streamer(
    c: &Core,
    m: &Method,
    h: &HeaderMap,
    f: impl FnOnce(Session) -> warp::reply::Response,
) -> warp::reply::Response {
    match streamer(c, m, h) {
        Ok(s) => f(s),
        Err(r) => *r,
    }
}

/// `a` with the session's CSRF token, and the cookie that logs the streamer in.
fn logged_in(
    s: crate::auth::NewSession,
    a: &serde_json::Value,
    status: StatusCode,
    h: &HeaderMap,
) -> warp::reply::Response {
    let mut v = a.clone();
    v["csrf"] = serde_json::json!(s.session.csrf);
    with_cookie(
        json_response(status, &v),
        named_cookie(COOKIE, &s.token, s.max_age_s, h),
    )
}

/// Ends the publish of account `name`, saying why in the log.
fn kick(c: &Core, name: &str, why: &str) {
    let n = c.ingest.kick_account(name);
    if n > 0 {
        tracing::info!(streamer = name, sessions = n, "publish ended: {why}");
    }
}

/// Every route above, tried in this order. Boxed: each is its own type, which keeps the compile
/// time of the whole route tree down.
pub fn routes(
    with_core: impl Filter<Extract = (Arc<Core>,), Error = std::convert::Infallible>
    + Clone
    + Send
    + Sync
    + 'static,
    admin: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
) -> Route {
    let [signup, rest @ ..] = streamer_routes(with_core.clone());
    rest.into_iter()
        .chain(account_routes(with_core, admin))
        .fold(signup, |all, r| all.or(r).unify().boxed())
}

/// The streamer's own routes, under `/api/streamer/`: sign-up, login, logout, me, key.
fn streamer_routes(
    with_core: impl Filter<Extract = (Arc<Core>,), Error = std::convert::Infallible>
    + Clone
    + Send
    + Sync
    + 'static,
) -> [Route; 5] {
    let request = warp::method()
        .and(warp::header::headers_cloned())
        .and(super::serve::remote());
    [
        warp::path!("api" / "streamer" / "signup")
            .and(warp::post())
            .and(with_core.clone())
            .and(request)
            .and(body_up_to(API_BODY_MAX))
            .map(signup)
            .boxed(),
        warp::path!("api" / "streamer" / "login")
            .and(warp::post())
            .and(with_core.clone())
            .and(request)
            .and(body_up_to(API_BODY_MAX))
            .map(login)
            .boxed(),
        warp::path!("api" / "streamer" / "logout")
            .and(warp::post())
            .and(with_core.clone())
            .and(request)
            .map(logout)
            .boxed(),
        warp::path!("api" / "streamer" / "me")
            .and(warp::get())
            .and(with_core.clone())
            .and(request)
            .map(me)
            .boxed(),
        warp::path!("api" / "streamer" / "key")
            .and(warp::post())
            .and(with_core)
            .and(request)
            .map(own_key)
            .boxed(),
    ]
}

/// The admins' routes, under `/api/streamers`: list, create, update, delete, key.
fn account_routes(
    with_core: impl Filter<Extract = (Arc<Core>,), Error = std::convert::Infallible>
    + Clone
    + Send
    + Sync
    + 'static,
    admin: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
) -> [Route; 5] {
    let one = warp::path!("api" / "streamers" / String)
        .and(admin.clone())
        .and(with_core.clone());
    [
        warp::path!("api" / "streamers")
            .and(warp::get())
            .and(admin.clone())
            .and(with_core.clone())
            .and(warp::header::headers_cloned())
            .map(list)
            .boxed(),
        warp::path!("api" / "streamers")
            .and(warp::post())
            .and(admin.clone())
            .and(with_core.clone())
            .and(warp::header::headers_cloned())
            .and(body_up_to(API_BODY_MAX))
            .map(create)
            .boxed(),
        one.clone()
            .and(warp::patch())
            .and(warp::header::headers_cloned())
            .and(body_up_to(API_BODY_MAX))
            .map(update)
            .boxed(),
        one.and(warp::delete()).map(delete).boxed(),
        warp::path!("api" / "streamers" / String / "key")
            .and(warp::post())
            .and(admin)
            .and(with_core)
            .and(warp::header::headers_cloned())
            .map(rekey)
            .boxed(),
    ]
}

/// `POST /api/streamer/signup`: a new account on `accounts.channel`, logged in.
fn signup(
    c: Arc<Core>,
    _m: Method,
    h: HeaderMap,
    addr: Option<SocketAddr>,
    body: Bytes,
) -> warp::reply::Response {
    if !c.streamers.signup_open {
        return error(
            StatusCode::FORBIDDEN,
            "sign-up is closed on this onair (accounts.signup = false): ask the operator for an account",
        );
    }
    let req: SignUp = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let channel = c.streamers.default_channel.clone();
    if c.channels.get(&channel).is_none() {
        tracing::error!(%channel, "sign-up refused: accounts.channel names no channel");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "sign-up is not set up: accounts.channel {channel:?} is not a channel of this onair"
            ),
        );
    }
    let ip = super::gate::client_ip(addr, &h, &c.trusted_proxies);
    let made = tokio::task::block_in_place(|| {
        c.streamers.create(Some(ip), &req.name, &req.password, None)
    });
    match made {
        Ok(k) => {
            let v = with_key_json(&c, &k, host(&h));
            match c.streamers.auth().open_session(&k.account.name) {
                Ok(s) => logged_in(s, &v, StatusCode::CREATED, &h),
                Err(e) => {
                    tracing::error!(error = %e, "no session after sign-up");
                    json_response(StatusCode::CREATED, &v)
                }
            }
        }
        Err(e) => login_refused(e, ip, "sign-up"),
    }
}

/// `POST /api/streamer/login`.
fn login(
    c: Arc<Core>,
    _m: Method,
    h: HeaderMap,
    addr: Option<SocketAddr>,
    body: Bytes,
) -> warp::reply::Response {
    let req: SignUp = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let ip = super::gate::client_ip(addr, &h, &c.trusted_proxies);
    match tokio::task::block_in_place(|| c.streamers.login(ip, &req.name, &req.password)) {
        Ok(s) => match c.streamers.get(&req.name) {
            Ok(Some(a)) => {
                let v = account_json(&c, &a, host(&h));
                logged_in(s, &v, StatusCode::OK, &h)
            }
            Ok(None) => error(StatusCode::UNAUTHORIZED, "wrong name or password"),
            Err(e) => auth_error(&e),
        },
        Err(e) => login_refused(e, ip, "streamer login"),
    }
}

/// `POST /api/streamer/logout`: ends the session, if any, and clears the cookie.
fn logout(
    c: Arc<Core>,
    m: Method,
    h: HeaderMap,
    _addr: Option<SocketAddr>,
) -> warp::reply::Response {
    if let (Ok(_), Some(t)) = (streamer(&c, &m, &h), cookie(&h, COOKIE))
        && let Err(e) = c.streamers.auth().logout(t)
    {
        tracing::error!(error = %e, "streamer logout not kept in the database");
    }
    let mut r = warp::reply::Response::new(Vec::new().into());
    *r.status_mut() = StatusCode::NO_CONTENT;
    with_cookie(r, named_cookie(COOKIE, "", 0, &h))
}

/// `GET /api/streamer/me`.
fn me(c: Arc<Core>, m: Method, h: HeaderMap, _addr: Option<SocketAddr>) -> warp::reply::Response {
    as_streamer(&c, &m, &h, |s| match c.streamers.get(&s.user) {
        Ok(Some(a)) => {
            let mut v = account_json(&c, &a, host(&h));
            v["csrf"] = serde_json::json!(s.csrf);
            json_response(StatusCode::OK, &v)
        }
        Ok(None) => error(StatusCode::UNAUTHORIZED, "the account no longer exists"),
        Err(e) => auth_error(&e),
    })
}

/// `POST /api/streamer/key`: a new key for the streamer's own account.
fn own_key(
    c: Arc<Core>,
    m: Method,
    h: HeaderMap,
    _addr: Option<SocketAddr>,
) -> warp::reply::Response {
    as_streamer(&c, &m, &h, |s| match c.streamers.regenerate_key(&s.user) {
        Ok(k) => {
            kick(&c, &s.user, "the stream key was regenerated");
            json_response(StatusCode::OK, &with_key_json(&c, &k, host(&h)))
        }
        Err(e) => auth_error(&e),
    })
}

/// `GET /api/streamers`.
fn list(c: Arc<Core>, h: HeaderMap) -> warp::reply::Response {
    match c.streamers.list() {
        Ok(all) => {
            let v: Vec<_> = all.iter().map(|a| account_json(&c, a, host(&h))).collect();
            json_response(StatusCode::OK, &serde_json::json!(v))
        }
        Err(e) => auth_error(&e),
    }
}

/// `POST /api/streamers`.
fn create(c: Arc<Core>, h: HeaderMap, body: Bytes) -> warp::reply::Response {
    let req: Create = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let channel = req
        .channel
        .unwrap_or_else(|| c.streamers.default_channel.clone());
    if c.channels.get(&channel).is_none() {
        return no_channel(&channel);
    }
    match tokio::task::block_in_place(|| {
        c.streamers
            .create(None, &req.name, &req.password, Some(&channel))
    }) {
        Ok(k) => json_response(StatusCode::CREATED, &with_key_json(&c, &k, host(&h))),
        Err(e) => login_refused(
            e,
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            "account creation",
        ),
    }
}

/// `PATCH /api/streamers/{name}`: disabling or moving the account ends its publish.
fn update(name: String, c: Arc<Core>, h: HeaderMap, body: Bytes) -> warp::reply::Response {
    let req: Update = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if let Some(ch) = &req.channel
        && c.channels.get(ch).is_none()
    {
        return no_channel(ch);
    }
    let before = c.streamers.get(&name).ok().flatten();
    match c
        .streamers
        .update(&name, req.enabled, req.channel.as_deref())
    {
        Ok(a) => {
            if req.enabled == Some(false) {
                tracing::info!(streamer = %name, "streamer account disabled");
                kick(&c, &name, "the account was disabled");
            } else if before.is_some_and(|b| b.channel != a.channel) {
                kick(&c, &name, "the account moved to another channel");
            }
            json_response(StatusCode::OK, &account_json(&c, &a, host(&h)))
        }
        Err(e) => auth_error(&e),
    }
}

/// `DELETE /api/streamers/{name}`: ends its publish.
fn delete(name: String, c: Arc<Core>) -> warp::reply::Response {
    match c.streamers.delete(&name) {
        Ok(()) => {
            tracing::info!(streamer = %name, "streamer account deleted");
            kick(&c, &name, "the account was deleted");
            let mut r = warp::reply::Response::new(Vec::new().into());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(e) => auth_error(&e),
    }
}

/// `POST /api/streamers/{name}/key`: a new key; the old one's publish is ended.
fn rekey(name: String, c: Arc<Core>, h: HeaderMap) -> warp::reply::Response {
    match c.streamers.regenerate_key(&name) {
        Ok(k) => {
            kick(&c, &name, "the stream key was regenerated");
            json_response(StatusCode::OK, &with_key_json(&c, &k, host(&h)))
        }
        Err(e) => auth_error(&e),
    }
}
