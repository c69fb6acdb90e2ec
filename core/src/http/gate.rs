//! Who may use the API: the bearer token (`http.admin_token`, for scripts and curl) or a
//! control-room login (session cookie, plus `X-CSRF-Token` on anything that changes state).
//! With neither a token nor a user everything is closed, except the first-start setup
//! (`POST /api/setup` with the one-time token onair prints as a link), unless `http.open_local`
//! opens a loopback onair to requests made on this machine (never the default: behind a reverse
//! proxy on the same machine every request looks local).
//!
//! Also the login, logout, session and setup routes.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode, header};

use super::{API_BODY_MAX, body_up_to, constant_time_eq, error, json_response};
use crate::auth::{Auth, COOKIE, LoginError, NewSession, Session, SetupError};

/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How a request is let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `http.open_local`, with no token and no user.
    Open,
    /// The bearer token.
    Token,
    /// A control-room login.
    Session(Session),
}

/// Why a request is not let in.
#[derive(Debug)]
pub enum Denied {
    /// 401, with what to do.
    Unauthorized(&'static str),
    /// 403: a logged-in request that changes state without the session's CSRF token.
    Csrf,
}

impl warp::reject::Reject for Denied {}

impl Denied {
    pub fn reply(&self) -> warp::reply::Response {
        match self {
            Denied::Unauthorized(m) => error(StatusCode::UNAUTHORIZED, m),
            Denied::Csrf => error(
                StatusCode::FORBIDDEN,
                "missing or wrong X-CSRF-Token header",
            ),
        }
    }
}

#[derive(Clone)]
pub struct Gate {
    token: Option<Arc<str>>,
    auth: Option<Arc<Auth>>,
    /// `http.open_local` with a loopback `http.listen`.
    open_local: bool,
}

/// The value of cookie `name` in the request's `Cookie` headers: its `__Host-` form (set behind
/// HTTPS, see [`named_cookie`]) first, else the plain one.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let pairs = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
    };
    let host = format!("__Host-{name}");
    let found = pairs().find(|(k, _)| *k == host);
    // behind HTTPS only the __Host- form counts: a plain one may have been planted by a
    // sibling subdomain (session fixation)
    if found.is_some() || behind_https(headers) {
        return found.map(|(_, v)| v);
    }
    pairs().find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// Whether the request came through a TLS-terminating proxy (`X-Forwarded-Proto: https`).
fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// Whether a request may use the open mode: it comes from this machine itself, not through a
/// proxy (which would make every outside client look local), by a local host name (not a
/// DNS-rebound one), and a browser's state-changing request comes from a page of this onair
/// (its `Origin`), not from another site.
fn local_request(
    method: &Method,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(), &'static str> {
    const WHY: &str = "this onair has no user and no token, and http.open_local only answers requests made on this machine to localhost, not through a proxy: create a user with `onair user add NAME`, or set http.admin_token";
    if peer.is_some_and(|p| !p.ip().is_loopback()) {
        return Err(WHY);
    }
    if ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h))
    {
        return Err(WHY);
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let host_name = |h: &str| -> String {
        match h.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
            _ => h.to_string(),
        }
        .to_ascii_lowercase()
    };
    if let Some(h) = host {
        let name = host_name(h);
        let local = name == "localhost"
            || name == "[::1]"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !local {
            return Err(WHY);
        }
    }
    if changes_state(method)
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| {
                o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
            })
            .is_some_and(|o| Some(o) == host);
        if !same {
            return Err("a request from another site's page (Origin) is refused");
        }
    }
    Ok(())
}

pub(super) fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Gate {
    /// `token`: `http.admin_token`; `auth`: the users (none in unit tests of script routes);
    /// `open_local`: `http.open_local` and `http.listen` is a loopback address.
    pub fn new(token: Option<String>, auth: Option<Arc<Auth>>, open_local: bool) -> Gate {
        Gate {
            token: token.map(Into::into),
            auth,
            open_local,
        }
    }

    fn has_users(&self) -> bool {
        self.auth.as_ref().is_some_and(|a| a.has_users())
    }

    /// Lets a request in, or says why not.
    /// `peer`: the client's address (`None` only for in-process test requests).
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Access, Denied> {
        if let Some(want) = &self.token {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "));
            if let Some(given) = bearer {
                return if constant_time_eq(given.as_bytes(), want.as_bytes()) {
                    Ok(Access::Token)
                } else {
                    Err(Denied::Unauthorized(
                        "wrong bearer token (http.admin_token)",
                    ))
                };
            }
        }
        if let (Some(auth), Some(t)) = (&self.auth, cookie(headers, COOKIE))
            && let Some(s) = auth.session(t)
        {
            if changes_state(method) {
                let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), s.csrf.as_bytes())) {
                    return Err(Denied::Csrf);
                }
            }
            return Ok(Access::Session(s));
        }
        let no_users = !self.has_users();
        if self.token.is_none() && self.open_local && no_users {
            return match local_request(method, headers, peer) {
                Ok(()) => Ok(Access::Open),
                Err(why) => Err(Denied::Unauthorized(why)),
            };
        }
        Err(Denied::Unauthorized(if no_users {
            "no admin user yet: open the one-time setup link onair printed at start, or run `onair user add NAME` on the server, then log in (scripts and curl: the bearer token, http.admin_token)"
        } else {
            "log in to the control room, or send the bearer token (http.admin_token)"
        }))
    }

    /// A filter that lets the request in or rejects it with [`Denied`].
    pub fn filter(
        &self,
    ) -> impl Filter<Extract = (Access,), Error = warp::Rejection> + Clone + use<> {
        let gate = self.clone();
        warp::method()
            .and(warp::header::headers_cloned())
            .and(super::serve::remote())
            .and_then(move |m: Method, h: HeaderMap, peer: Option<SocketAddr>| {
                let r = gate.check(&m, &h, peer).map_err(warp::reject::custom);
                async move { r }
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
}

/// `POST /api/setup`: the first admin, made with the one-time setup token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    token: String,
    name: String,
    password: String,
}

fn session_cookie(value: &str, max_age_s: u64, headers: &HeaderMap) -> String {
    named_cookie(COOKIE, value, max_age_s, headers)
}

/// A `Set-Cookie` value for a login cookie: HttpOnly, SameSite=Strict; behind TLS also Secure
/// and named `__Host-NAME` (RFC 6265bis §4.1.3.2: a browser takes it only from a secure origin,
/// for this host alone and Path=/, so a sibling subdomain or a plain-HTTP page cannot plant or
/// overwrite it). Over plain HTTP (a LAN, a laptop) a Secure cookie would not be kept: the
/// plain name.
pub(super) fn named_cookie(name: &str, value: &str, max_age_s: u64, headers: &HeaderMap) -> String {
    // behind a TLS-terminating proxy the cookie must not travel over plain HTTP
    if behind_https(headers) {
        format!(
            "__Host-{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}; Secure"
        )
    } else {
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}")
    }
}

/// The answer to a login (or the setup that made the first admin): the user and CSRF token,
/// and the session cookie.
fn logged_in(status: StatusCode, s: &NewSession, headers: &HeaderMap) -> warp::reply::Response {
    with_cookie(
        json_response(
            status,
            &serde_json::json!({ "user": s.session.user, "csrf": s.session.csrf }),
        ),
        session_cookie(&s.token, s.max_age_s, headers),
    )
}

pub(super) fn with_cookie(mut r: warp::reply::Response, cookie: String) -> warp::reply::Response {
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The answer to a refused login or sign-up (`what`, for the log and the message): 401 wrong
/// name or password, 429 with `Retry-After` when throttled, 503 when too many run at once,
/// 400/409 for a sign-up's invalid field or taken name, 500 otherwise.
pub(super) fn login_refused(
    e: LoginError,
    ip: std::net::IpAddr,
    what: &str,
) -> warp::reply::Response {
    use crate::auth::AuthError;
    match e {
        LoginError::Wrong => error(StatusCode::UNAUTHORIZED, "wrong name or password"),
        e @ LoginError::Throttled { retry_in_s } => {
            let why = if what.ends_with("login") {
                "too many failed logins"
            } else {
                "too many attempts from this address"
            };
            tracing::warn!(client = %ip, "{what} refused: {why}");
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, &e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_in_s.into());
            r
        }
        e @ LoginError::AccountThrottled { retry_in_s } => {
            tracing::warn!(client = %ip, "{what} refused: too many failed logins for the account");
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, &e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_in_s.into());
            r
        }
        e @ LoginError::Busy => {
            tracing::warn!(client = %ip, "{what} refused: too many {what}s at once");
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        LoginError::Auth(e @ AuthError::Invalid { .. }) => {
            error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        LoginError::Auth(e @ AuthError::Exists(_)) => error(
            StatusCode::CONFLICT,
            &e.to_string().replace("user", "account"),
        ),
        LoginError::Auth(e) => {
            tracing::error!(error = %e, "{what} failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{what} failed: see the log"),
            )
        }
    }
}

/// The client's address: the TCP peer, or when the peer is one of `trusted` (the
/// `http.trusted_proxies`), the rightmost `X-Forwarded-For` entry that is not itself trusted
/// (proxies append the address they saw, so entries left of it may be forged). The unspecified
/// address when there is no peer (in-process requests).
pub(super) fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let peer = peer.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        // an entry that is not an address: nothing left of it can be told apart from a forgery
        let Ok(ip) = entry.trim().parse::<std::net::IpAddr>() else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// `POST /api/login`, `POST /api/logout`, `GET /api/session`. Login limits count per client
/// address ([`client_ip`] with `proxies`).
pub fn routes(
    gate: Gate,
    auth: Arc<Auth>,
    proxies: Arc<[ipnet::IpNet]>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let login = {
        let auth = auth.clone();
        let proxies = proxies.clone();
        warp::path!("api" / "login")
            .and(warp::post())
            .and(super::serve::remote())
            .and(warp::header::headers_cloned())
            .and(body_up_to(API_BODY_MAX))
            .map(
                move |addr: Option<SocketAddr>, headers: HeaderMap, body: Bytes| {
                    let req: Login = match serde_json::from_slice(&body) {
                        Ok(r) => r,
                        Err(e) => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                &format!("expected {{\"name\", \"password\"}}: {e}"),
                            );
                        }
                    };
                    let ip = client_ip(addr, &headers, &proxies);
                    match tokio::task::block_in_place(|| auth.login(ip, &req.name, &req.password)) {
                        Ok(s) => logged_in(StatusCode::OK, &s, &headers),
                        Err(e) => login_refused(e, ip, "login"),
                    }
                },
            )
    };
    // the first admin, in the browser: the setup link's token, then a login like /api/login's
    let setup = {
        let auth = auth.clone();
        let proxies = proxies.clone();
        warp::path!("api" / "setup")
            .and(warp::post())
            .and(super::serve::remote())
            .and(warp::header::headers_cloned())
            .and(body_up_to(API_BODY_MAX))
            .map(move |addr: Option<SocketAddr>, headers: HeaderMap, body: Bytes| {
                let req: Setup = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("expected {{\"token\", \"name\", \"password\"}}: {e}"),
                        );
                    }
                };
                let ip = client_ip(addr, &headers, &proxies);
                let made = tokio::task::block_in_place(|| {
                    auth.setup_first_admin(&req.token, &req.name, &req.password)
                });
                match made {
                    Ok(()) => tracing::info!(user = %req.name, client = %ip, "first admin user created with the setup link"),
                    Err(SetupError::Done) => {
                        return error(StatusCode::CONFLICT, &SetupError::Done.to_string());
                    }
                    Err(SetupError::WrongToken) => {
                        tracing::warn!(client = %ip, "setup refused: wrong or used setup token");
                        return error(StatusCode::FORBIDDEN, &SetupError::WrongToken.to_string());
                    }
                    Err(SetupError::Auth(e)) => return login_refused(e.into(), ip, "setup"),
                }
                // the password was just hashed for the new user: no second check to log in
                match auth.open_session(&req.name) {
                    Ok(s) => logged_in(StatusCode::CREATED, &s, &headers),
                    Err(e) => login_refused(e.into(), ip, "login"),
                }
            })
    };
    let logout = {
        let auth = auth.clone();
        warp::path!("api" / "logout")
            .and(warp::post())
            .and(gate.filter())
            .and(warp::header::headers_cloned())
            .map(move |access: Access, headers: HeaderMap| {
                if let (Access::Session(s), Some(t)) = (access, cookie(&headers, COOKIE)) {
                    if let Err(e) = auth.logout(t) {
                        tracing::error!(error = %e, "logout not kept in the database");
                    }
                    tracing::info!(user = %s.user, "logged out");
                }
                let mut r = warp::reply::Response::new(Vec::new().into());
                *r.status_mut() = StatusCode::NO_CONTENT;
                with_cookie(r, session_cookie("", 0, &headers))
            })
    };
    let session = warp::path!("api" / "session")
        .and(warp::get())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(super::serve::remote())
        .map(move |m: Method, h: HeaderMap, peer: Option<SocketAddr>| {
            match gate.check(&m, &h, peer) {
                Ok(Access::Session(s)) => json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "user": s.user, "csrf": s.csrf, "auth": "session" }),
                ),
                Ok(a) => json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "user": null,
                        "csrf": null,
                        "auth": if a == Access::Token { "token" } else { "open" },
                    }),
                ),
                Err(d) => {
                    let message = match d {
                        Denied::Unauthorized(m) => m,
                        Denied::Csrf => "missing or wrong X-CSRF-Token header",
                    };
                    json_response(
                        StatusCode::UNAUTHORIZED,
                        &serde_json::json!({
                            "error": message,
                            "users": auth.user_count(),
                            // a setup link is waiting (its token is never shown here)
                            "setup": !auth.has_users(),
                        }),
                    )
                }
            }
        });
    login
        .or(setup)
        .unify()
        .or(logout)
        .unify()
        .or(session)
        .unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_https_the_login_cookie_is_host_prefixed_and_read_first() {
        let https = headers(&[("x-forwarded-proto", "https")]);
        let c = named_cookie(COOKIE, "abc", 60, &https);
        assert!(
            c.starts_with("__Host-onair_session=abc; Path=/;") && c.ends_with("; Secure"),
            "{c}"
        );
        assert!(!c.contains("Domain"), "{c}");
        let plain = named_cookie(COOKIE, "abc", 60, &HeaderMap::new());
        assert!(
            plain.starts_with("onair_session=abc;") && !plain.contains("Secure"),
            "{plain}"
        );
        // a planted plain cookie does not shadow the __Host- one
        let h = headers(&[("cookie", "onair_session=planted; __Host-onair_session=real")]);
        assert_eq!(cookie(&h, COOKIE), Some("real"));
        let h = headers(&[("cookie", "onair_session=only")]);
        assert_eq!(cookie(&h, COOKIE), Some("only"));
        // behind HTTPS a plain one is not read at all
        let h = headers(&[
            ("cookie", "onair_session=planted"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(cookie(&h, COOKIE), None);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_names_it() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "127.0.0.1/32".parse().expect("range"),
            "10.0.0.0/8".parse().expect("range"),
        ];
        let peer = |ip: &str| Some(SocketAddr::new(ip.parse().expect("address"), 40000));
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("address");
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.2.3")]);
        // from a trusted proxy: the rightmost entry that is not a proxy (6.6.6.6 may be forged)
        assert_eq!(
            client_ip(peer("127.0.0.1"), &xff, &trusted),
            ip("203.0.113.7")
        );
        // from anyone else the header is ignored
        assert_eq!(
            client_ip(peer("198.51.100.1"), &xff, &trusted),
            ip("198.51.100.1")
        );
        // no proxies configured: always the peer
        assert_eq!(client_ip(peer("127.0.0.1"), &xff, &[]), ip("127.0.0.1"));
        // a trusted proxy without the header, or with garbage in it: the proxy itself
        assert_eq!(
            client_ip(peer("10.0.0.5"), &HeaderMap::new(), &trusted),
            ip("10.0.0.5")
        );
        let junk = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(peer("10.0.0.5"), &junk, &trusted), ip("10.0.0.5"));
        let junk_left = headers(&[("x-forwarded-for", "6.6.6.6, junk, 10.0.0.9")]);
        assert_eq!(
            client_ip(peer("10.0.0.5"), &junk_left, &trusted),
            ip("10.0.0.9")
        );
        // several headers count as one list, in order
        let two = headers(&[
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        assert_eq!(client_ip(peer("10.0.0.5"), &two, &trusted), ip("192.0.2.1"));
    }

    #[test]
    fn sessions_need_the_csrf_token_to_change_state_and_the_open_mode_ends_with_the_first_user() {
        let auth = Arc::new(Auth::new(
            Arc::new(crate::db::Db::memory().expect("db")),
            std::time::Duration::from_secs(60),
        ));
        let local = Gate::new(None, Some(auth.clone()), true);
        let remote = Gate::new(None, Some(auth.clone()), false);
        let none = HeaderMap::new();
        assert_eq!(
            local.check(&Method::POST, &none, None).ok(),
            Some(Access::Open)
        );
        assert!(
            matches!(remote.check(&Method::GET, &none, None), Err(Denied::Unauthorized(m)) if m.contains("onair user add"))
        );

        auth.add_user("ops", "correct horse").expect("user");
        assert!(matches!(
            local.check(&Method::GET, &none, None),
            Err(Denied::Unauthorized(_))
        ));
        let s = auth
            .login("127.0.0.1".parse().expect("ip"), "ops", "correct horse")
            .expect("login");
        let c = format!("theme=dark; {COOKIE}={}", s.token);
        let get = headers(&[("cookie", &c)]);
        assert!(matches!(
            local.check(&Method::GET, &get, None),
            Ok(Access::Session(_))
        ));
        assert!(matches!(
            local.check(&Method::POST, &get, None),
            Err(Denied::Csrf)
        ));
        let bad = headers(&[("cookie", &c), (CSRF_HEADER, "nope")]);
        assert!(matches!(
            local.check(&Method::DELETE, &bad, None),
            Err(Denied::Csrf)
        ));
        let good = headers(&[("cookie", &c), (CSRF_HEADER, &s.session.csrf)]);
        assert!(matches!(
            local.check(&Method::DELETE, &good, None),
            Ok(Access::Session(_))
        ));
        let forged = headers(&[("cookie", "onair_session=0000")]);
        assert!(matches!(
            local.check(&Method::GET, &forged, None),
            Err(Denied::Unauthorized(_))
        ));

        let token = Gate::new(Some("0123456789abcdef".into()), Some(auth.clone()), true);
        let right = headers(&[("authorization", "Bearer 0123456789abcdef")]);
        let wrong = headers(&[("authorization", "Bearer 0123456789abcdeX")]);
        assert_eq!(
            token.check(&Method::POST, &right, None).ok(),
            Some(Access::Token)
        );
        assert!(token.check(&Method::POST, &wrong, None).is_err());
        assert!(token.check(&Method::GET, &none, None).is_err());
    }

    #[test]
    fn the_open_mode_is_for_this_machine_only() {
        let auth = Arc::new(Auth::new(
            Arc::new(crate::db::Db::memory().expect("db")),
            std::time::Duration::from_secs(60),
        ));
        let g = Gate::new(None, Some(auth), true);
        let local: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
        let lan: SocketAddr = "192.168.1.20:50000".parse().expect("addr");
        let ok = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(
            g.check(&Method::GET, &ok, Some(local)).ok(),
            Some(Access::Open)
        );
        assert_eq!(
            g.check(
                &Method::GET,
                &headers(&[("host", "localhost:8080")]),
                Some(local)
            )
            .ok(),
            Some(Access::Open)
        );
        // another machine, a proxy in front, a DNS-rebound name
        assert!(g.check(&Method::GET, &ok, Some(lan)).is_err());
        let proxied = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert!(g.check(&Method::GET, &proxied, Some(local)).is_err());
        let rebound = headers(&[("host", "evil.example:8080")]);
        assert!(g.check(&Method::GET, &rebound, Some(local)).is_err());
        // a page of another site may not change state; this onair's own page may
        let cross = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert!(g.check(&Method::POST, &cross, Some(local)).is_err());
        assert!(g.check(&Method::GET, &cross, Some(local)).is_ok());
        let own = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(
            g.check(&Method::POST, &own, Some(local)).ok(),
            Some(Access::Open)
        );
    }
}
