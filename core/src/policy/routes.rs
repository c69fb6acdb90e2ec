//! The table of HTTP routes that scripts declare with `onair.route(method, path, fn)`. The HTTP
//! server's one catch-all looks requests up here; the policy host swaps the table after every
//! (re)load, so a route goes away with its script. Also what a route's answer may not carry
//! ([`OWNED_HEADERS`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Paths served by onair itself; scripts cannot take them.
pub const RESERVED: &[&str] = &[
    "/api/status",
    "/api/switch",
    "/api/scripts",
    "/api/plugins",
    "/api/events",
    "/preview.flv",
];

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    Param(String),
}

/// Response headers that belong to onair, never to a script: a script route's answer is served
/// on the control room's origin, so these would reach the admin's browser as onair's own. Names
/// are lower-case; an entry ending in `*` is a prefix. onair drops them from a script's `headers`
/// (logged once per route, header and script generation).
/// - the session: `set-cookie` (`onair_session`, `onair_streamer`), `set-cookie2`,
///   `clear-site-data` (would log the admin out);
/// - the origin's security policy, which onair sets itself: `content-security-policy` (the
///   sandbox), `content-security-policy-report-only`, `x-content-type-options` (nosniff),
///   `x-frame-options`, `strict-transport-security` (pins the whole host to HTTPS);
/// - who may read the answer: `access-control-*` (CORS; onair answers `*` on public routes only);
/// - the framing, which hyper writes: `content-length`, `transfer-encoding`, `connection` (a wrong
///   length would desynchronise a proxy's connection to onair).
pub const OWNED_HEADERS: &[&str] = &[
    "set-cookie",
    "set-cookie2",
    "clear-site-data",
    "content-security-policy",
    "content-security-policy-report-only",
    "x-content-type-options",
    "x-frame-options",
    "strict-transport-security",
    "access-control-*",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// The entry of [`OWNED_HEADERS`] that the response header `name` falls under, if any.
pub fn owned_header(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    OWNED_HEADERS
        .iter()
        .copied()
        .find(|owned| match owned.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *owned,
        })
}

/// One declared route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Upper-case HTTP method.
    pub method: String,
    /// The path pattern as declared, e.g. `/queue/:id`.
    pub pattern: String,
    segs: Vec<Seg>,
    /// The script that owns it, and the handler's index in that script.
    pub script: String,
    pub index: usize,
    /// Requires a control-room login or the admin bearer token: the default, and always under
    /// `/api/`; false only when the script declared `{auth = false}`.
    pub auth: bool,
    /// The [`OWNED_HEADERS`] already logged as dropped from this route's answers, one bit per
    /// entry; a reload builds new routes, so the next generation logs again.
    dropped_logged: Arc<AtomicU32>,
}

/// Why a route cannot be declared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("route path {0:?} must start with '/' and have no empty, '.' or '..' segments")]
    BadPath(String),
    #[error("route method {0:?} is not one of GET, POST, PUT, PATCH, DELETE")]
    BadMethod(String),
    #[error("route {method} {path} is served by onair itself")]
    Reserved { method: String, path: String },
    #[error(
        "route {method} {path}: paths under /api/ always need the login or the token; drop {{auth = false}} or choose another path"
    )]
    PublicApi { method: String, path: String },
}

/// A path's segments; one trailing `/` is ignored (`/update-block-toggle/` is
/// `/update-block-toggle`), as it is in requests.
fn parse(path: &str) -> Option<Vec<Seg>> {
    let rest = path.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Vec::new());
    }
    rest.split('/')
        .map(|s| match s {
            "" | "." | ".." => None,
            p if p.starts_with(':') && p.len() > 1 => Some(Seg::Param(p[1..].to_string())),
            lit => Some(Seg::Lit(lit.to_string())),
        })
        .collect()
}

impl Route {
    /// Validates a declaration; `auth` is false only for an explicit `{auth = false}`.
    pub fn new(
        method: &str,
        path: &str,
        script: &str,
        index: usize,
        auth: bool,
    ) -> Result<Route, RouteError> {
        let method = method.to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            return Err(RouteError::BadMethod(method));
        }
        let segs = parse(path).ok_or_else(|| RouteError::BadPath(path.into()))?;
        if RESERVED.contains(&path) {
            return Err(RouteError::Reserved {
                method,
                path: path.into(),
            });
        }
        if !auth && path.starts_with("/api/") {
            return Err(RouteError::PublicApi {
                method,
                path: path.into(),
            });
        }
        Ok(Route {
            auth,
            method,
            pattern: path.into(),
            segs,
            script: script.into(),
            index,
            dropped_logged: Arc::default(),
        })
    }

    /// True the first time `owned` (an entry of [`OWNED_HEADERS`]) is dropped from this route's
    /// answers, so the log says it once per route, header and generation.
    pub fn first_drop(&self, owned: &str) -> bool {
        let Some(i) = OWNED_HEADERS.iter().position(|o| *o == owned) else {
            return false;
        };
        let bit = 1u32 << i;
        self.dropped_logged.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Two routes clash when a request could match both: same method, same shape.
    pub fn clashes(&self, other: &Route) -> bool {
        self.method == other.method
            && self.segs.len() == other.segs.len()
            && self
                .segs
                .iter()
                .zip(&other.segs)
                .all(|(a, b)| match (a, b) {
                    (Seg::Lit(x), Seg::Lit(y)) => x == y,
                    _ => true,
                })
    }

    fn matches(&self, method: &str, path: &str) -> Option<HashMap<String, String>> {
        if self.method != method {
            return None;
        }
        let path = path.trim_start_matches('/');
        let parts: Vec<&str> = path.strip_suffix('/').unwrap_or(path).split('/').collect();
        let parts: Vec<&str> = if parts == [""] { Vec::new() } else { parts };
        if parts.len() != self.segs.len() {
            return None;
        }
        let mut params = HashMap::new();
        for (seg, part) in self.segs.iter().zip(parts) {
            match seg {
                Seg::Lit(l) if l == part => {}
                Seg::Lit(_) => return None,
                Seg::Param(name) => {
                    params.insert(name.clone(), percent_decode(part));
                }
            }
        }
        Some(params)
    }
}

/// Decodes `%XX` escapes; anything else (including a malformed escape) is kept as it is.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// All script routes, in script name order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// The route for a request, and its path parameters.
    pub fn find(&self, method: &str, path: &str) -> Option<(&Route, HashMap<String, String>)> {
        self.routes
            .iter()
            .find_map(|r| r.matches(method, path).map(|p| (r, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_literals() {
        let t = RouteTable {
            routes: vec![
                Route::new("get", "/queue/:id", "a.lua", 1, false).expect("ok"),
                Route::new("GET", "/queue", "a.lua", 2, false).expect("ok"),
            ],
        };
        let (r, p) = t.find("GET", "/queue/42%20x").expect("match");
        assert_eq!((r.index, p["id"].as_str()), (1, "42 x"));
        assert_eq!(t.find("GET", "/queue").expect("match").0.index, 2);
        assert!(t.find("POST", "/queue").is_none());
        assert!(t.find("GET", "/queue/1/2").is_none());
        // one trailing slash is ignored, in declarations and requests (seed 003's paths)
        assert_eq!(t.find("GET", "/queue/").expect("match").0.index, 2);
        let toggle = Route::new("GET", "/update-block-toggle/", "q.lua", 3, true).expect("ok");
        assert!(toggle.matches("GET", "/update-block-toggle").is_some());
        assert!(toggle.matches("GET", "/update-block-toggle/").is_some());
        assert!(Route::new("GET", "/a//b", "q.lua", 4, false).is_err());
    }

    #[test]
    fn api_routes_need_auth_and_reserved_paths_are_refused() {
        assert!(
            Route::new("GET", "/api/start", "s", 1, true)
                .expect("ok")
                .auth
        );
        assert!(matches!(
            Route::new("GET", "/api/start", "s", 1, false),
            Err(RouteError::PublicApi { .. })
        ));
        assert!(!Route::new("GET", "/queue", "s", 1, false).expect("ok").auth);
        assert!(matches!(
            Route::new("GET", "/api/status", "s", 1, false),
            Err(RouteError::Reserved { .. })
        ));
        assert!(Route::new("GET", "queue", "s", 1, false).is_err());
        assert!(Route::new("BREW", "/tea", "s", 1, false).is_err());
    }

    #[test]
    fn owned_headers_are_matched_in_any_case_and_logged_once_per_route() {
        assert_eq!(owned_header("Set-Cookie"), Some("set-cookie"));
        assert_eq!(
            owned_header("CONTENT-SECURITY-POLICY"),
            Some("content-security-policy")
        );
        assert_eq!(
            owned_header("Access-Control-Allow-Credentials"),
            Some("access-control-*")
        );
        assert_eq!(owned_header("content-type"), None);
        assert_eq!(owned_header("x-custom"), None);
        assert_eq!(owned_header("set-cookies"), None);
        assert!(OWNED_HEADERS.len() <= 32, "one bit each in dropped_logged");

        let r = Route::new("GET", "/page", "s", 1, false).expect("ok");
        assert!(r.first_drop("set-cookie"));
        assert!(!r.first_drop("set-cookie"));
        assert!(
            !r.clone().first_drop("set-cookie"),
            "clones share the record"
        );
        assert!(r.first_drop("access-control-*"));
        let reloaded = Route::new("GET", "/page", "s", 1, false).expect("ok");
        assert!(
            reloaded.first_drop("set-cookie"),
            "a new generation logs again"
        );
    }

    #[test]
    fn percent_decoding_survives_malformed_and_multibyte_input() {
        assert_eq!(percent_decode("a%20b%2F"), "a b/");
        assert_eq!(percent_decode("%aé%"), "%aé%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn clashes_cover_params() {
        let a = Route::new("GET", "/q/:id", "a", 1, false).expect("ok");
        let b = Route::new("GET", "/q/first", "b", 1, false).expect("ok");
        let c = Route::new("POST", "/q/first", "b", 2, false).expect("ok");
        assert!(a.clashes(&b));
        assert!(!a.clashes(&c));
    }
}
