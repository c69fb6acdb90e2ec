//! The control room's page: `web/public/` and the npm libraries it uses, embedded into the
//! binary (rust-embed; a debug build reads the files from disk, so a page edit needs no rebuild).
//! The page itself is public; everything it shows comes from the API behind the gate.

use rust_embed::RustEmbed;
use warp::Filter;
use warp::http::{StatusCode, header};

#[derive(RustEmbed)]
#[folder = "../web/public/"]
struct Page;

/// From npm (web/package.json), served under `/vendor/`.
#[derive(RustEmbed)]
#[folder = "../web/node_modules/mpegts.js/dist/"]
#[include = "mpegts.js"]
struct Vendor;

/// What the page may load: only from onair itself (the preview plays from a blob URL).
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(file: Option<rust_embed::EmbeddedFile>, path: &str) -> Option<warp::reply::Response> {
    let file = file?;
    let mime = file.metadata.mimetype().to_string();
    let mut r = warp::reply::Response::new(file.data.into_owned().into());
    let h = r.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    // revalidated on every load, so a new onair's page is never mixed with an old one's
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    if path.ends_with(".html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_FRAME_OPTIONS,
            header::HeaderValue::from_static("DENY"),
        );
        h.insert(
            header::REFERRER_POLICY,
            header::HeaderValue::from_static("same-origin"),
        );
    }
    *r.status_mut() = StatusCode::OK;
    Some(r)
}

/// `GET /` (the page) and `GET /FILE` for the page's files; `GET /vendor/FILE` for libraries.
pub fn routes() -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone
{
    // GET and HEAD only, rejected as "not found" otherwise: it is the last route tried, and a
    // 405 from here would outrank an earlier route's own rejection (a 413, a 401)
    warp::method().and(warp::path::full()).and_then(
        |m: warp::http::Method, p: warp::path::FullPath| async move {
            if m != warp::http::Method::GET && m != warp::http::Method::HEAD {
                return Err(warp::reject::not_found());
            }
            let path = p.as_str().trim_start_matches('/');
            let found = match path {
                "" => asset(Page::get("index.html"), "index.html"),
                p if p.starts_with("api/") => None,
                p => match p.strip_prefix("vendor/") {
                    Some(v) => asset(Vendor::get(v), v),
                    None => asset(Page::get(p), p),
                },
            };
            found.ok_or_else(warp::reject::not_found)
        },
    )
}
