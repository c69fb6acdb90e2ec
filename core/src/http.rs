//! The HTTP server (warp): `GET /preview.flv` (the output as HTTP-FLV) and `GET /api/status`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use warp::Filter;
use warp::http::{StatusCode, header};

use crate::engine::Core;
use crate::media::fanout::FanOut;

/// All routes.
pub fn routes(
    core: Arc<Core>,
    fanout: Arc<FanOut>,
    preview: bool,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let c = core.clone();
    let status = warp::path!("api" / "status")
        .and(warp::get())
        .map(move || warp::reply::json(&c.status()));
    let c = core.clone();
    let preview_route = warp::path!("preview.flv")
        .and(warp::get())
        .and_then(move || {
            let (c, f) = (c.clone(), fanout.clone());
            async move {
                if !preview {
                    return Err(warp::reject::not_found());
                }
                Ok::<_, warp::Rejection>(preview_stream(c, f))
            }
        });
    status
        .or(preview_route)
        .recover(|rej: warp::Rejection| async move {
            let (code, msg) = if rej.is_not_found() {
                (StatusCode::NOT_FOUND, "not found")
            } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
                (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            } else {
                (StatusCode::BAD_REQUEST, "bad request")
            };
            Ok::<_, Infallible>(warp::reply::with_status(
                warp::reply::json(&serde_json::json!({ "error": msg })),
                code,
            ))
        })
}

/// Counts a preview viewer for as long as its stream lives.
struct Viewer {
    core: Arc<Core>,
    fanout: Arc<FanOut>,
    id: u64,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.fanout.unsubscribe(self.id);
        self.core.preview_viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

fn to_bytes(b: gst::Buffer) -> Bytes {
    match b.into_mapped_buffer_readable() {
        Ok(m) => Bytes::from_owner(m),
        Err(_) => Bytes::new(),
    }
}

type PreviewReply = warp::reply::WithHeader<warp::reply::WithHeader<Box<dyn warp::Reply>>>;

/// The output as an endless HTTP-FLV body: the FLV stream headers, then tags from a keyframe.
fn preview_stream(core: Arc<Core>, fanout: Arc<FanOut>) -> PreviewReply {
    let sub = fanout.subscribe("preview");
    core.preview_viewers.fetch_add(1, Ordering::Relaxed);
    let viewer = Viewer {
        core,
        fanout,
        id: sub.id,
    };
    let headers: std::collections::VecDeque<gst::Buffer> = sub.headers.into_iter().collect();
    let state = (viewer, headers, sub.rx);
    let body = futures_util::stream::unfold(state, |(viewer, mut headers, mut rx)| async move {
        let next = match headers.pop_front() {
            Some(h) => Some(h),
            None => rx.recv().await,
        };
        next.map(|b| (Ok::<_, Infallible>(to_bytes(b)), (viewer, headers, rx)))
    });
    let reply: Box<dyn warp::Reply> = Box::new(warp::reply::stream(body));
    warp::reply::with_header(
        warp::reply::with_header(reply, header::CONTENT_TYPE, "video/x-flv"),
        header::CACHE_CONTROL,
        "no-store",
    )
}
