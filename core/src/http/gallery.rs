//! `/api/media`: the media gallery (list, upload, file, thumbnail, delete).

use std::path::Path;
use std::sync::Arc;

use warp::Filter;
use warp::http::{StatusCode, header};

use super::{error, json_response};
use crate::engine::Core;
use crate::gallery::{Gallery, GalleryError};

fn gallery_error(e: &GalleryError) -> warp::reply::Response {
    use GalleryError as E;
    let status = match e {
        E::BadName(_) | E::NotMedia { .. } | E::Interrupted(_) => StatusCode::BAD_REQUEST,
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::Exists(_) | E::InUse { .. } => StatusCode::CONFLICT,
        E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        E::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "media gallery");
    }
    error(status, &e.to_string())
}

/// The channels whose fallback is `path`.
pub(crate) fn used_by(core: &Core) -> impl Fn(&Path) -> Vec<String> + '_ {
    move |path: &Path| {
        let want = std::fs::canonicalize(path).ok();
        core.channels
            .all()
            .iter()
            .filter(|c| {
                c.spec()
                    .fallback
                    .media
                    .and_then(|m| std::fs::canonicalize(m).ok())
                    .is_some_and(|m| Some(m) == want)
            })
            .map(|c| c.id.clone())
            .collect()
    }
}

/// Reads a request body into an upload, chunk by chunk.
async fn upload<S, B>(
    gallery: &Gallery,
    name: &str,
    length: Option<u64>,
    body: S,
) -> Result<crate::gallery::MediaItem, GalleryError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures_util::TryStreamExt;
    if length.is_some_and(|l| l > gallery.max_upload_bytes()) {
        return Err(GalleryError::TooLarge {
            limit_mib: gallery.max_upload_bytes() / (1024 * 1024),
        });
    }
    let mut claim = gallery.begin_upload(name)?;
    let mut body = std::pin::pin!(body);
    while let Some(mut chunk) = body
        .try_next()
        .await
        .map_err(|e| GalleryError::Interrupted(e.to_string()))?
    {
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            tokio::task::block_in_place(|| claim.write(part))?;
            chunk.advance(n);
        }
    }
    if length.is_some_and(|l| l != claim.written()) {
        return Err(GalleryError::Interrupted(format!(
            "{} of {} bytes arrived",
            claim.written(),
            length.unwrap_or_default()
        )));
    }
    tokio::task::block_in_place(|| claim.finish())
}

fn file_reply(bytes: Vec<u8>, content_type: &str) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(bytes.into());
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

/// The file as a streamed body (videos can be large).
async fn stream_file(path: std::path::PathBuf, kind: &str) -> warp::reply::Response {
    use tokio::io::AsyncReadExt;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return error(StatusCode::NOT_FOUND, &e.to_string()),
    };
    let body = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
        }
    });
    let mut r = warp::reply::Reply::into_response(warp::reply::stream(body));
    let mime = content_type_of(&path, kind);
    if let Ok(v) = header::HeaderValue::from_str(&mime) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

/// A content type from the extension, within the probed kind (an `.exe` that probed as a video
/// is still served as a video, never as something a browser would run).
fn content_type_of(path: &Path, kind: &str) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let guess = match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        _ => "",
    };
    if guess.starts_with(kind) {
        guess.to_string()
    } else {
        "application/octet-stream".into()
    }
}

pub fn routes(
    with_core: impl Filter<Extract = (Arc<Core>,), Error = std::convert::Infallible>
    + Clone
    + Send
    + Sync
    + 'static,
    gate: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let base = warp::path!("api" / "media" / ..);
    let list = base
        .and(warp::path::end())
        .and(warp::get())
        .and(gate.clone())
        .and(with_core.clone())
        .map(|c: Arc<Core>| {
            let items = tokio::task::block_in_place(|| c.gallery.list(&used_by(&c)));
            json_response(StatusCode::OK, &serde_json::json!(items))
        });
    let create =
        base.and(warp::path::end())
            .and(warp::post())
            .and(gate.clone())
            .and(with_core.clone())
            .and(warp::query::<std::collections::HashMap<String, String>>())
            .and(warp::header::optional::<u64>("content-length"))
            .and(warp::body::stream())
            .and_then(
                |c: Arc<Core>,
                 q: std::collections::HashMap<String, String>,
                 len: Option<u64>,
                 body| async move {
                    let Some(name) = q.get("name") else {
                        return Ok::<_, warp::Rejection>(error(
                            StatusCode::BAD_REQUEST,
                            "name: the file name is missing (?name=FILE)",
                        ));
                    };
                    Ok(match upload(&c.gallery, name, len, body).await {
                        Ok(item) => {
                            c.changed("media", None);
                            json_response(StatusCode::CREATED, &serde_json::json!(item))
                        }
                        Err(e) => {
                            tracing::warn!(media = %name, error = %e, "upload refused");
                            gallery_error(&e)
                        }
                    })
                },
            );
    let one = base
        .and(warp::path::param::<String>())
        .and(gate.clone())
        .and(with_core.clone());
    let file = one
        .clone()
        .and(warp::path::end())
        .and(warp::get())
        .and_then(|name: String, c: Arc<Core>| async move {
            let found = tokio::task::block_in_place(|| {
                c.gallery
                    .get(&name, &|_| Vec::new())
                    .and_then(|item| Ok((c.gallery.path_of(&name)?, item.kind)))
            });
            Ok::<_, warp::Rejection>(match found {
                Ok((path, kind)) => stream_file(path, &kind).await,
                Err(e) => gallery_error(&e),
            })
        });
    let thumbnail = one
        .clone()
        .and(warp::path!("thumbnail.png"))
        .and(warp::get())
        .map(|name: String, c: Arc<Core>| {
            let r = tokio::task::block_in_place(|| {
                let p = c.gallery.thumbnail(&name)?;
                std::fs::read(&p).map_err(|source| GalleryError::Io { path: p, source })
            });
            match r {
                Ok(b) => file_reply(b, "image/png"),
                Err(e) => gallery_error(&e),
            }
        });
    let delete =
        one.and(warp::path::end())
            .and(warp::delete())
            .map(|name: String, c: Arc<Core>| {
                match tokio::task::block_in_place(|| c.gallery.delete(&name, &used_by(&c))) {
                    Ok(()) => {
                        c.changed("media", None);
                        let mut r = warp::reply::Response::new(Vec::new().into());
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r
                    }
                    Err(e) => gallery_error(&e),
                }
            });
    list.or(create)
        .unify()
        .or(file)
        .unify()
        .or(thumbnail)
        .unify()
        .or(delete)
        .unify()
}
