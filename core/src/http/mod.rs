//! The HTTP server (warp).
//!
//! Built-in: `GET /preview.flv` (the primary channel's output as HTTP-FLV), `GET /api/status`,
//! `POST /api/switch`, `/api/channels` (list, create, get, patch, delete, start, stop, switch,
//! destinations, preview), `GET /api/scripts`, `GET /api/plugins`, `GET /api/events`
//! (Server-Sent Events). Everything else goes to one
//! catch-all that looks the request up in the scripts' route table, which the policy host swaps
//! on every reload. `/api/*` and every script route not declared `{auth=false}` need a
//! control-room login or `Authorization: Bearer <http.admin_token>`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use warp::Filter;
use warp::http::{StatusCode, header};

use crate::action::Action;
use crate::auth::constant_time_eq;
use crate::channel::{Channel, ChannelError};
use crate::config::{DestinationConfig, HttpConfig};
use crate::engine::Core;
use crate::event::Source;
use crate::media::output::fanout::FanOut;
use crate::policy::{Policy, RouteRequest};
use bodies::{CreateDestination, FallbackBody, PatchDestination, SwitchBody};

mod bodies;
mod gallery;
mod gate;
pub mod openapi;
pub mod serve;
mod streamers;
mod ui;

pub use gate::{Access, CSRF_HEADER, Denied, Gate};

fn json_response(status: StatusCode, v: &serde_json::Value) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(v.to_string().into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: &str) -> warp::reply::Response {
    json_response(status, &serde_json::json!({ "error": msg }))
}

/// An API error answer: `{"error"}`, plus `field` and `message` for a 400 that names the field.
fn api_error(
    status: StatusCode,
    e: &dyn std::fmt::Display,
    invalid: Option<(&str, &str)>,
) -> warp::reply::Response {
    match invalid {
        Some((field, message)) => json_response(
            status,
            &serde_json::json!({ "error": e.to_string(), "field": field, "message": message }),
        ),
        None => error(status, &e.to_string()),
    }
}

/// The errors of the channel and destination stores, which share their shape: `Invalid` (400,
/// naming the field), `NotFound` (404), `Exists` and `OwnedByFile` (409), `Db` (500).
trait StoreError: std::fmt::Display {
    fn status(&self) -> StatusCode;
    fn invalid(&self) -> Option<(&'static str, &str)>;
}

macro_rules! store_error {
    ($t:path) => {
        impl StoreError for $t {
            fn status(&self) -> StatusCode {
                use $t as E;
                match self {
                    E::Invalid { .. } => StatusCode::BAD_REQUEST,
                    E::NotFound(_) => StatusCode::NOT_FOUND,
                    E::Exists(_) | E::OwnedByFile { .. } => StatusCode::CONFLICT,
                    E::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
            fn invalid(&self) -> Option<(&'static str, &str)> {
                use $t as E;
                match self {
                    E::Invalid { field, message } => Some((*field, message.as_str())),
                    _ => None,
                }
            }
        }
    };
}
store_error!(ChannelError);
store_error!(crate::channel::destinations::DestinationError);

/// The API answer for a channel or destination store error.
fn store_error(e: &impl StoreError) -> warp::reply::Response {
    api_error(e.status(), e, e.invalid())
}

/// A JSON body, or a 400 that names what is wrong (serde's message names the field).
fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, Box<warp::reply::Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &format!("body: {e}"))))
}

/// The destinations routes, under `/api/channels/:id/destinations`.
fn destination_routes(
    with_core: impl Filter<Extract = (Arc<Core>,), Error = Infallible> + Clone + Send + Sync + 'static,
    admin: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let channel = warp::path!("api" / "channels" / String / "destinations" / ..)
        .and(admin)
        .and(with_core)
        .and_then(find_channel);
    let list = channel
        .clone()
        .and(warp::path::end())
        .and(warp::get())
        .map(|c: Arc<Channel>| {
            json_response(StatusCode::OK, &serde_json::json!(c.destinations.list()))
        });
    let create = channel
        .clone()
        .and(warp::path::end())
        .and(warp::post())
        .and(body_up_to(API_BODY_MAX))
        .map(|c: Arc<Channel>, body: Bytes| {
            let req: CreateDestination = match parse_body(&body) {
                Ok(r) => r,
                Err(resp) => return *resp,
            };
            match tokio::task::block_in_place(|| {
                c.destinations.create(DestinationConfig {
                    name: req.name.clone(),
                    url: req.url,
                    enabled: req.enabled,
                    profile: req.profile,
                    segment_minutes: req.segment_minutes,
                    max_total_gib: req.max_total_gib,
                })
            })
            .and_then(|()| c.destinations.get(&req.name))
            {
                Ok(v) => {
                    c.changed("destinations");
                    json_response(StatusCode::CREATED, &serde_json::json!(v))
                }
                Err(e) => store_error(&e),
            }
        });
    let one = channel.clone().and(warp::path::param::<String>());
    let get =
        one.clone()
            .and(warp::path::end())
            .and(warp::get())
            .map(
                |c: Arc<Channel>, name: String| match c.destinations.get(&name) {
                    Ok(v) => json_response(StatusCode::OK, &serde_json::json!(v)),
                    Err(e) => store_error(&e),
                },
            );
    let patch = one
        .clone()
        .and(warp::path::end())
        .and(warp::patch())
        .and(body_up_to(API_BODY_MAX))
        .map(|c: Arc<Channel>, name: String, body: Bytes| {
            let req: PatchDestination = match parse_body(&body) {
                Ok(r) => r,
                Err(resp) => return *resp,
            };
            match tokio::task::block_in_place(|| {
                c.destinations.update(
                    &name,
                    crate::channel::destinations::Change {
                        url: req.url.as_deref(),
                        profile: req.profile.as_deref(),
                        enabled: req.enabled,
                        segment_minutes: req.segment_minutes,
                        max_total_gib: req.max_total_gib,
                    },
                )
            })
            .and_then(|()| c.destinations.get(&name))
            {
                Ok(v) => {
                    c.changed("destinations");
                    json_response(StatusCode::OK, &serde_json::json!(v))
                }
                Err(e) => store_error(&e),
            }
        });
    let delete = one.clone().and(warp::path::end()).and(warp::delete()).map(
        |c: Arc<Channel>, name: String| match tokio::task::block_in_place(|| {
            c.destinations.delete(&name)
        }) {
            Ok(()) => {
                c.changed("destinations");
                let mut r = warp::reply::Response::new(Vec::new().into());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Err(e) => store_error(&e),
        },
    );
    let toggle = one.and(warp::path!(String)).and(warp::post()).map(
        |c: Arc<Channel>, name: String, what: String| {
            let enabled = match what.as_str() {
                "enable" => true,
                "disable" => false,
                _ => return error(StatusCode::NOT_FOUND, "not found: use /enable or /disable"),
            };
            match tokio::task::block_in_place(|| {
                c.destinations.update(
                    &name,
                    crate::channel::destinations::Change::enabled(enabled),
                )
            })
            .and_then(|()| c.destinations.get(&name))
            {
                Ok(v) => {
                    c.changed("destinations");
                    json_response(StatusCode::OK, &serde_json::json!(v))
                }
                Err(e) => store_error(&e),
            }
        },
    );
    list.or(create)
        .unify()
        .or(get)
        .unify()
        .or(patch)
        .unify()
        .or(delete)
        .unify()
        .or(toggle)
        .unify()
}

/// `/api/channels` and `/api/channels/:id[/start|/stop|/switch]`.
fn channel_routes(
    with_core: impl Filter<Extract = (Arc<Core>,), Error = Infallible> + Clone + Send + Sync + 'static,
    admin: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let list = warp::path!("api" / "channels")
        .and(warp::get())
        .and(admin.clone())
        .and(with_core.clone())
        .map(|c: Arc<Core>| {
            let views: Vec<_> = c.channels.all().iter().map(|ch| ch.view()).collect();
            json_response(StatusCode::OK, &serde_json::json!(views))
        });
    let create = warp::path!("api" / "channels")
        .and(warp::post())
        .and(admin.clone())
        .and(with_core.clone())
        .and(body_up_to(API_BODY_MAX))
        .map(|c: Arc<Core>, body: Bytes| {
            let req: crate::channel::NewChannel = match parse_body(&body) {
                Ok(r) => r,
                Err(resp) => return *resp,
            };
            match tokio::task::block_in_place(|| c.channels.create(req)) {
                Ok((ch, keys)) => {
                    ch.changed("channels");
                    let mut v = serde_json::json!(ch.view());
                    v["stream_keys"] = serde_json::json!(keys);
                    json_response(StatusCode::CREATED, &v)
                }
                Err(e) => store_error(&e),
            }
        });
    let one = warp::path!("api" / "channels" / String)
        .and(admin.clone())
        .and(with_core.clone());
    let get = one
        .clone()
        .and(warp::get())
        .and_then(find_channel)
        .map(|ch: Arc<Channel>| json_response(StatusCode::OK, &serde_json::json!(ch.view())));
    let patch = one
        .clone()
        .and(warp::patch())
        .and(body_up_to(API_BODY_MAX))
        .map(|id: String, c: Arc<Core>, body: Bytes| {
            let req: crate::channel::ChannelPatch = match parse_body(&body) {
                Ok(r) => r,
                Err(resp) => return *resp,
            };
            match tokio::task::block_in_place(|| c.channels.update(&id, req)) {
                Ok(ch) => {
                    ch.changed("channels");
                    json_response(StatusCode::OK, &serde_json::json!(ch.view()))
                }
                Err(e) => store_error(&e),
            }
        });
    let delete = one.and(warp::delete()).map(|id: String, c: Arc<Core>| {
        match tokio::task::block_in_place(|| c.channels.delete(&id)) {
            Ok(()) => {
                c.changed("channels", Some(&id));
                let mut r = warp::reply::Response::new(Vec::new().into());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Err(e) => store_error(&e),
        }
    });
    let verb = warp::path!("api" / "channels" / String / String)
        .and(warp::post())
        .and(admin.clone())
        .and(with_core.clone())
        .and(body_up_to(API_BODY_MAX))
        .and_then(|id: String, verb: String, c: Arc<Core>, body: Bytes| async move {
            let ch = find_channel(id, c.clone()).await?;
            Ok::<_, warp::Rejection>(match verb.as_str() {
                "start" | "stop" => {
                    ch.submit_start(verb == "start");
                    json_response(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({ "id": ch.id, "state": if verb == "start" { "starting" } else { "stopping" } }),
                    )
                }
                "switch" => {
                    let reason = format!("POST /api/channels/{}/switch", ch.id);
                    switch_reply(&c, &ch.id, &body, &reason)
                }
                "fallback" => fallback_reply(&c, &ch, &body),
                _ => return Err(warp::reject::not_found()),
            })
        });
    let obs = warp::path!("api" / "channels" / String / "obs")
        .and(warp::get())
        .and(admin.clone())
        .and(with_core.clone())
        .and(warp::header::optional::<String>("host"))
        .and_then(
            |id: String, c: Arc<Core>, host: Option<String>| async move {
                let ch = find_channel(id, c.clone()).await?;
                Ok::<_, warp::Rejection>(json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "server": obs_server(&c, host.as_deref()),
                        "stream_keys": ch.spec().keys,
                        "can_regenerate": ch.owner == crate::channel::Owner::Database,
                    }),
                ))
            },
        );
    let regenerate = warp::path!("api" / "channels" / String / "keys" / "regenerate")
        .and(warp::post())
        .and(admin)
        .and(with_core.clone())
        .map(|id: String, c: Arc<Core>| {
            let key = match crate::secrets::generate("live_") {
                Ok(k) => k,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            };
            let patch = crate::channel::ChannelPatch {
                keys: Some(vec![key.clone()]),
                ..Default::default()
            };
            match tokio::task::block_in_place(|| c.channels.update(&id, patch)) {
                Ok(ch) => {
                    tracing::info!(channel = %ch.id, key = %crate::redact::key(&key), "stream key regenerated: the old key no longer publishes");
                    ch.changed("channels");
                    json_response(StatusCode::OK, &serde_json::json!({ "stream_keys": [key] }))
                }
                Err(e) => store_error(&e),
            }
        });
    list.or(create)
        .unify()
        .or(get)
        .unify()
        .or(patch)
        .unify()
        .or(delete)
        .unify()
        .or(verb)
        .unify()
        .or(obs)
        .unify()
        .or(regenerate)
        .unify()
}

/// OBS's Server field: `rtmp://HOST:PORT/APP`, HOST the address the ingest listens on, or the
/// name the browser reached onair by when it listens on all addresses.
fn obs_server(c: &Core, host_header: Option<&str>) -> String {
    let listen = c.ingest_listen;
    let host = if listen.ip().is_unspecified() {
        host_header
            .map(|h| match h.rsplit_once(':') {
                // "[::1]:8080" and "name:8080" lose the port; a bare IPv6 "[::1]" keeps it whole
                Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
                _ => h,
            })
            .unwrap_or("HOST")
            .to_string()
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    format!("rtmp://{host}:{}/{}", listen.port(), c.ingest_app)
}

/// A fallback media given by gallery name (`brb.png`) or by path.
fn media_path(c: &Core, media: &str) -> std::path::PathBuf {
    if !media.contains('/')
        && let Ok(p) = c.gallery.path_of(media)
    {
        return p;
    }
    media.into()
}

fn fallback_reply(c: &Core, ch: &Channel, body: &[u8]) -> warp::reply::Response {
    let req: FallbackBody = match parse_body(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let media = req.media.as_deref().map(|m| media_path(c, m));
    // outside the media roots: refused before the file is opened at all
    if let Some(Err(e)) = media.as_deref().map(|p| ch.check_media(p)) {
        return api_error(StatusCode::BAD_REQUEST, &e, Some(("media", &e.to_string())));
    }
    // no gallery delete between the check that the file plays and the choice being kept
    let held = tokio::task::block_in_place(|| {
        let _held = c.gallery.hold();
        if let Some(p) = &media {
            crate::media::fallback::probe(p)?;
        }
        ch.choose_fallback(media);
        Ok::<_, crate::media::MediaError>(())
    });
    if let Err(e) = held {
        return api_error(StatusCode::BAD_REQUEST, &e, Some(("media", &e.to_string())));
    }
    json_response(StatusCode::OK, &serde_json::json!(ch.view()))
}

#[derive(Debug)]
struct NoChannel(String);
impl warp::reject::Reject for NoChannel {}

/// The channel named `id`, or a rejection answered 404 "no channel named …".
async fn find_channel(id: String, c: Arc<Core>) -> Result<Arc<Channel>, warp::Rejection> {
    c.channels
        .get(&id)
        .ok_or_else(|| warp::reject::custom(NoChannel(id)))
}

/// `POST /api/switch` and `POST /api/channels/:id/switch`: `{"source": "live"|"fallback",
/// "media"?: PATH, "session"?: N}` → 202, or 400 saying what is wrong.
fn switch_reply(c: &Core, channel: &str, body: &[u8], reason: &str) -> warp::reply::Response {
    let req: SwitchBody = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"source\": \"live\"|\"fallback\"}}: {e}"),
            );
        }
    };
    let to: Source = match req.source.parse() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    if to == Source::Fallback && req.session.is_some() {
        let m = "only with \"source\": \"live\" (a session is put on air; the fallback has none)";
        return api_error(
            StatusCode::BAD_REQUEST,
            &format!("session: {m}"),
            Some(("session", m)),
        );
    }
    let action = Action::OnChannel {
        channel: channel.to_string(),
        action: Box::new(Action::Switch {
            to,
            media: req.media.as_deref().map(|m| media_path(c, m)),
            reason: reason.into(),
            session: req.session,
        }),
    };
    if c.commands.send(vec![action]).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "engine stopped");
    }
    json_response(StatusCode::ACCEPTED, &serde_json::json!({ "source": to }))
}

/// A route's filter, boxed: a long chain of `or` makes a type whose checking time grows far
/// faster than the chain (minutes per route added), while boxes cost one call per request.
type Route = warp::filters::BoxedFilter<(warp::reply::Response,)>;

/// All routes, tried in the order listed: where two could answer a request (or reject it), the
/// first one listed wins.
pub fn routes(
    core: Arc<Core>,
    cfg: &HttpConfig,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + use<> {
    let gate = Gate::new(
        cfg.admin_token.clone(),
        Some(core.auth.clone()),
        cfg.open_local && cfg.listen.ip().is_loopback(),
    );
    let with_core = {
        let core = core.clone();
        warp::any().map(move || core.clone())
    };
    let admin = gate.filter().map(|_: Access| ()).untuple_one();
    // the filters most routes start from, cloned into each
    let (w, a) = (&with_core, &admin);
    let [status, rest @ ..] = [
        admin_json(warp::path!("api" / "status"), w.clone(), a.clone(), |c| {
            serde_json::to_value(c.status()).unwrap_or_default()
        }),
        switch_route(w.clone(), a.clone()),
        destination_routes(w.clone(), a.clone()).boxed(),
        channel_routes(w.clone(), a.clone()).boxed(),
        openapi_route(),
        metrics_route(cfg, w.clone(), a.clone()),
        admin_json(warp::path!("api" / "scripts"), w.clone(), a.clone(), |c| {
            serde_json::json!(c.policy.scripts())
        }),
        admin_json(warp::path!("api" / "plugins"), w.clone(), a.clone(), |c| {
            serde_json::json!(c.plugin_info())
        }),
        admin_json(warp::path!("api" / "profiles"), w.clone(), a.clone(), |c| {
            serde_json::json!(*c.channels.shared().profiles)
        }),
        events_route(cfg, w.clone(), a.clone()),
        preview_route(cfg, gate.clone(), w.clone()),
        gallery::routes(w.clone(), a.clone()).boxed(),
        gate::routes(
            gate.clone(),
            core.auth.clone(),
            core.trusted_proxies.clone(),
        )
        .boxed(),
        streamers::routes(w.clone(), a.clone()),
        script_routes(core.policy.clone(), gate.clone()).boxed(),
        ui::routes().boxed(),
    ];
    let all = rest
        .into_iter()
        .fold(status, |all, r| all.or(r).unify().boxed());
    let max_body = u64::from(cfg.max_body_kib) * 1024;
    body_cap(max_body, core.gallery.max_upload_bytes())
        .and(all)
        .recover(recover)
        .unify()
}

/// `GET <path>` for an admin: `what` the core says, as JSON (`/api/status`, `/api/scripts`, …).
fn admin_json(
    path: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    with_core: impl Filter<Extract = (Arc<Core>,), Error = Infallible> + Clone + Send + Sync + 'static,
    admin: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    what: fn(&Core) -> serde_json::Value,
) -> Route {
    path.and(warp::get())
        .and(admin)
        .and(with_core)
        .map(move |c: Arc<Core>| json_response(StatusCode::OK, &what(&c)))
        .boxed()
}

/// `POST /api/switch`: switches the primary channel.
fn switch_route(
    with_core: impl Filter<Extract = (Arc<Core>,), Error = Infallible> + Clone + Send + Sync + 'static,
    admin: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
) -> Route {
    warp::path!("api" / "switch")
        .and(warp::post())
        .and(admin)
        .and(with_core)
        .and(body_up_to(API_BODY_MAX))
        .map(|c: Arc<Core>, body: Bytes| match c.channels.primary() {
            Some(ch) => switch_reply(&c, &ch.id, &body, "POST /api/switch"),
            None => error(StatusCode::NOT_FOUND, "no channels"),
        })
        .boxed()
}

/// `GET /api/openapi.json`, open to all.
fn openapi_route() -> Route {
    warp::path!("api" / "openapi.json")
        .and(warp::get())
        .map(|| json_response(StatusCode::OK, &openapi::document()))
        .boxed()
}

/// `GET /metrics`, for an admin or a scraper holding `http.metrics_token`.
fn metrics_route(
    cfg: &HttpConfig,
    with_core: impl Filter<Extract = (Arc<Core>,), Error = Infallible> + Clone + Send + Sync + 'static,
    admin: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
) -> Route {
    // a scraper may hold `http.metrics_token` instead of the admin token: it opens /metrics only
    let metrics_token: Option<Arc<str>> = cfg.metrics_token.as_deref().map(Into::into);
    let metrics_reader =
        warp::header::optional::<String>("authorization").and_then(move |h: Option<String>| {
            let ok = match (
                &metrics_token,
                h.as_deref().and_then(|h| h.strip_prefix("Bearer ")),
            ) {
                (Some(want), Some(given)) => constant_time_eq(given.as_bytes(), want.as_bytes()),
                _ => false,
            };
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        });
    warp::path!("metrics")
        .and(warp::get())
        .and(metrics_reader.untuple_one().or(admin).unify())
        .and(with_core)
        .map(|c: Arc<Core>| {
            let mut r = warp::reply::Response::new(c.metrics.render(&c.metrics_snapshot()).into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        })
        .boxed()
}

/// `GET /api/events`: Server-Sent Events, at most `http.max_sse_clients` at once.
fn events_route(
    cfg: &HttpConfig,
    with_core: impl Filter<Extract = (Arc<Core>,), Error = Infallible> + Clone + Send + Sync + 'static,
    admin: impl Filter<Extract = (), Error = warp::Rejection> + Clone + Send + Sync + 'static,
) -> Route {
    let max_sse = u64::from(cfg.max_sse_clients);
    warp::path!("api" / "events")
        .and(warp::get())
        .and(admin)
        .and(with_core)
        .map(move |c: Arc<Core>| events_reply(&c, max_sse))
        .boxed()
}

fn events_reply(c: &Arc<Core>, max_sse: u64) -> warp::reply::Response {
    if c.sse_clients.load(Ordering::Relaxed) >= max_sse {
        tracing::warn!(
            limit = max_sse,
            "event client refused with 503: http.max_sse_clients reached"
        );
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("too many event clients: {max_sse} (http.max_sse_clients)"),
        );
    }
    let events = c.events.subscribe();
    let changes = c.channels.shared().changes.subscribe();
    c.sse_clients.fetch_add(1, Ordering::Relaxed);
    let client = Arc::new(SseClient(c.clone()));
    // policy events by their names; `changed` for what pages must refetch
    let events = sse_stream(events, client.clone(), |ev| {
        warp::sse::Event::default()
            .event(ev.name())
            .data(serde_json::to_string(ev).unwrap_or_default())
    });
    let changes = sse_stream(changes, client, |ch| {
        warp::sse::Event::default()
            .event("changed")
            .data(serde_json::to_string(ch).unwrap_or_default())
    });
    let stream = futures_util::stream::select(events, changes);
    warp::reply::Reply::into_response(warp::sse::reply(warp::sse::keep_alive().stream(stream)))
}

/// Who may watch the preview, and how many at once: from `[http]`.
#[derive(Clone)]
struct PreviewAccess {
    on: bool,
    key: Option<String>,
    max_viewers: u64,
    gate: Gate,
}

/// `GET /preview.flv` (the primary channel's) and `GET /api/channels/:id/preview.flv`.
fn preview_route(
    cfg: &HttpConfig,
    gate: Gate,
    with_core: impl Filter<Extract = (Arc<Core>,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> Route {
    let access = PreviewAccess {
        on: cfg.preview,
        key: cfg.preview_key.clone(),
        max_viewers: u64::from(cfg.preview_max_viewers),
        gate,
    };
    // `/preview.flv` is the shareable one: its key, or a login or the token (not the open
    // mode); under `/api/` it is part of the API: its key, or whatever lets one in there
    let preview_path = warp::path!("preview.flv")
        .and(with_core.clone())
        .map(|c: Arc<Core>| (c.channels.primary(), c, false))
        .untuple_one()
        .or(warp::path!("api" / "channels" / String / "preview.flv")
            .and(with_core)
            .and_then(|id: String, c: Arc<Core>| async move {
                let ch = find_channel(id, c.clone()).await?;
                Ok::<_, warp::Rejection>((Some(ch), c, true))
            })
            .untuple_one())
        .unify();
    preview_path
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(serve::remote())
        .and_then(
            move |channel: Option<Arc<Channel>>,
                  c: Arc<Core>,
                  api: bool,
                  q: HashMap<String, String>,
                  method: warp::http::Method,
                  headers: warp::http::HeaderMap,
                  peer: Option<std::net::SocketAddr>| {
                let answer = access.answer(channel, c, api, &q, &method, &headers, peer);
                async move { answer }
            },
        )
        .boxed()
}

impl PreviewAccess {
    /// The preview stream, or the answer that refuses it; rejected as not found when
    /// `http.preview` is off.
    #[allow(clippy::too_many_arguments)] // the request's parts, as warp's filters extract them
    fn answer(
        &self,
        channel: Option<Arc<Channel>>,
        c: Arc<Core>,
        api: bool,
        q: &HashMap<String, String>,
        method: &warp::http::Method,
        headers: &warp::http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<warp::reply::Response, warp::Rejection> {
        let f = channel.as_ref().and_then(|ch| ch.fanout());
        let key_ok = match (self.key.as_deref(), q.get("key")) {
            (None, _) => true,
            (Some(want), Some(given)) => constant_time_eq(given.as_bytes(), want.as_bytes()),
            (Some(_), None) => false,
        };
        let access_ok = match self.gate.check(method, headers, peer) {
            Ok(Access::Open) => api,
            Ok(_) => true,
            Err(_) => false,
        };
        if !self.on {
            return Err(warp::reject::not_found());
        }
        if !key_ok && !access_ok {
            return Ok(error(
                StatusCode::UNAUTHORIZED,
                "preview needs ?key=<http.preview_key> (printed at start, kept in data_dir/preview-key), a control-room login or the admin bearer token",
            ));
        }
        let max = self.max_viewers;
        if c.preview_viewers.load(Ordering::Relaxed) >= max {
            tracing::warn!(
                limit = max,
                "preview viewer refused with 503: http.preview_max_viewers reached"
            );
            return Ok(error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("preview is full: {max} viewers (http.preview_max_viewers)"),
            ));
        }
        let Some(f) = f else {
            return Ok(match channel {
                None => error(StatusCode::NOT_FOUND, "no channels"),
                Some(_) => error(
                    StatusCode::CONFLICT,
                    "the channel is stopped: start it to preview",
                ),
            });
        };
        Ok(preview_stream(c, f))
    }
}

/// Before authentication, routing or reading: a request whose declared body is over the limit
/// (`max_body`; `max_upload` for the media upload, which is streamed to disk) is refused.
fn body_cap(
    max_body: u64,
    max_upload: u64,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::path::full())
        .and(warp::method())
        .and_then(
            move |len: Option<u64>, path: warp::path::FullPath, method: warp::http::Method| async move {
                // the media upload is streamed to disk, under its own limit
                let (max_body, key) = if method == warp::http::Method::POST && path.as_str() == "/api/media" {
                    (max_upload, "media.max_upload_mib")
                } else {
                    (max_body, "http.max_body_kib")
                };
                if let Some(l) = len.filter(|l| *l > max_body) {
                    tracing::warn!(
                        path = path.as_str(),
                        content_length = l,
                        limit = max_body,
                        "request refused with 413: body over {key}"
                    );
                    Err(warp::reject::custom(BodyTooLarge(Some((key, max_body)))))
                } else {
                    Ok(())
                }
            },
        )
        .untuple_one()
}

async fn recover(rej: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    Ok(if let Some(NoChannel(id)) = rej.find::<NoChannel>() {
        error(StatusCode::NOT_FOUND, &format!("no channel named {id:?}"))
    } else if let Some(d) = rej.find::<Denied>() {
        d.reply()
    } else if rej.is_not_found() {
        error(StatusCode::NOT_FOUND, "not found")
    } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
        error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else if let Some(BodyTooLarge(Some((key, limit)))) = rej.find::<BodyTooLarge>() {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &if key.ends_with("_mib") {
                format!("the body is larger than {key} ({} MiB)", limit >> 20)
            } else {
                format!("the body is larger than {key} ({} KiB)", limit >> 10)
            },
        )
    } else if rej.find::<warp::reject::PayloadTooLarge>().is_some()
        || rej.find::<BodyTooLarge>().is_some()
    {
        error(StatusCode::PAYLOAD_TOO_LARGE, "body too large")
    } else if rej.find::<BodyUnreadable>().is_some() {
        error(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        )
    } else {
        error(StatusCode::BAD_REQUEST, "bad request")
    })
}

/// The largest request body a script route receives (1 MiB); larger requests are answered 413
/// without being read whole.
pub const SCRIPT_ROUTE_BODY_MAX: usize = 1 << 20;
/// The largest body of a built-in JSON API request (64 KiB).
pub const API_BODY_MAX: usize = 64 << 10;

#[derive(Debug)]
/// The setting and the limit in bytes, when known.
struct BodyTooLarge(Option<(&'static str, u64)>);
impl warp::reject::Reject for BodyTooLarge {}

#[derive(Debug)]
struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

/// The request body, read up to `max` bytes; a longer one is rejected as it arrives.
fn body_up_to(max: usize) -> impl Filter<Extract = (Bytes,), Error = warp::Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |len: Option<u64>, body| collect_up_to(len, body, max))
}

/// How long a request body (at most `http.max_body_kib`, 1 MiB) may take to arrive whole: 30 s
/// (35 KB/s for the largest). Uploads to the media gallery stream on their own route, unbounded
/// by this.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn collect_up_to<S, B>(
    len: Option<u64>,
    body: S,
    max: usize,
) -> Result<Bytes, warp::Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures_util::TryStreamExt;
    if let Some(l) = len.filter(|l| *l > max as u64) {
        tracing::warn!(
            content_length = l,
            limit = max,
            "request refused with 413: body over the route's limit"
        );
        return Err(warp::reject::custom(BodyTooLarge(None)));
    }
    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    // a body sent slowly holds its connection "in progress" (never closed for a newer one):
    // the whole of it must arrive within BODY_READ_TIMEOUT
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    while let Some(mut chunk) = tokio::time::timeout_at(deadline, body.try_next())
        .await
        .map_err(|_| {
            tracing::warn!(
                timeout_s = BODY_READ_TIMEOUT.as_secs(),
                "request refused: its body did not arrive in time"
            );
            warp::reject::custom(BodyUnreadable)
        })?
        .map_err(|_| warp::reject::custom(BodyUnreadable))?
    {
        if out.len() + chunk.remaining() > max {
            tracing::warn!(
                limit = max,
                "request refused with 413: body over the route's limit (stopped reading)"
            );
            return Err(warp::reject::custom(BodyTooLarge(None)));
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            out.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// The one catch-all for script routes: looks the request up in the policy's route table (swapped
/// on every reload) and runs the handler on the policy thread. Unknown paths are rejected as not
/// found (so a built-in route's own rejection, such as 401, wins), a missing token answers 401, a
/// failing handler 500 (the trace goes to the log).
pub fn script_routes(
    policy: Policy,
    gate: Gate,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(serve::remote())
        .and(warp::body::stream())
        .and_then(
            move |method: warp::http::Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: warp::http::HeaderMap,
                  peer: Option<std::net::SocketAddr>,
                  body| {
                let (policy, gate) = (policy.clone(), gate.clone());
                async move {
                    script_route(
                        &policy,
                        &gate,
                        method,
                        path.as_str(),
                        &query,
                        &headers,
                        peer,
                        body,
                    )
                    .await?
                    .ok_or_else(warp::reject::not_found)
                }
            },
        )
}

/// `a=1&b=x%20y` → {a: "1", b: "x y"}.
fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    crate::policy::routes::percent_decode(&s.replace('+', " "))
}

/// Looks the request up, checks the token, then reads the body (at most
/// [`SCRIPT_ROUTE_BODY_MAX`]): an unknown path or a missing token never costs a body read.
#[allow(clippy::too_many_arguments)] // the request's parts, as warp's filters extract them
async fn script_route<S, B>(
    policy: &Policy,
    gate: &Gate,
    method: warp::http::Method,
    path: &str,
    query: &str,
    headers: &warp::http::HeaderMap,
    peer: Option<std::net::SocketAddr>,
    body: S,
) -> Result<Option<warp::reply::Response>, warp::Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    let found = {
        let table = policy.routes.read();
        table
            .find(method.as_str(), path)
            .map(|(r, params)| (r.clone(), params))
    };
    let Some((route, params)) = found else {
        return Ok(None);
    };
    if route.auth
        && let Err(d) = gate.check(&method, headers, peer)
    {
        return Ok(Some(d.reply()));
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = collect_up_to(length, body, SCRIPT_ROUTE_BODY_MAX).await?;
    let req = RouteRequest {
        method: method.to_string(),
        path: path.to_string(),
        params,
        query: parse_query(query),
        // the credentials are onair's, not the script's: a script never sees the session
        // cookie, the CSRF token or the bearer token
        headers: headers
            .iter()
            .filter(|(k, _)| {
                *k != header::COOKIE && *k != header::AUTHORIZATION && k.as_str() != CSRF_HEADER
            })
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_string(), v.to_string()))
            })
            .collect(),
        body: body.to_vec(),
    };
    Ok(policy
        .route(route.script.clone(), route.index, req)
        .await
        .map(|r| script_reply(&route, r)))
}

/// What every script route's answer carries: the page runs in an opaque origin (no access to
/// the control room's cookies, storage or same-origin API calls), with scripts and forms allowed
/// so overlay pages still work. Sent with every answer, whatever its content type claims:
/// only a document (HTML, SVG, XML) is affected, and a script cannot slip a page past it by
/// labelling it.
const SCRIPT_CSP: &str = "sandbox allow-scripts allow-forms";

/// A script route's answer as HTTP: the script's status, body and headers, minus the headers
/// onair owns ([`OWNED_HEADERS`](crate::policy::routes::OWNED_HEADERS), dropped with one WARN per
/// route, header and generation), plus the sandbox CSP and `nosniff`; a public route also lets
/// any origin read it (`Access-Control-Allow-Origin: *`, no credentials), which a sandboxed page
/// needs to fetch from onair at all.
fn script_reply(
    route: &crate::policy::routes::Route,
    r: crate::policy::RouteResponse,
) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(r.body.into());
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&r.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    for (k, v) in r.headers {
        if let Some(owned) = crate::policy::routes::owned_header(&k) {
            if route.first_drop(owned) {
                tracing::warn!(
                    script = %route.script,
                    route = format!("{} {}", route.method, route.pattern),
                    header = %k,
                    "script route answer: a header onair owns was dropped (logged once per route, header and reload)"
                );
            }
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            header::HeaderValue::from_str(&v),
        ) {
            h.insert(k, v);
        }
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(SCRIPT_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    if !route.auth {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::HeaderValue::from_static("*"),
        );
    }
    resp
}

/// A broadcast as SSE events; a client that falls behind skips what it missed.
fn sse_stream<T: Clone + Send + 'static>(
    rx: tokio::sync::broadcast::Receiver<T>,
    client: Arc<SseClient>,
    to_sse: fn(&T) -> warp::sse::Event,
) -> impl futures_util::Stream<Item = Result<warp::sse::Event, Infallible>> + Send + 'static {
    futures_util::stream::unfold((rx, client), move |(mut rx, client)| async move {
        loop {
            match rx.recv().await {
                Ok(item) => return Some((Ok(to_sse(&item)), (rx, client))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// Counts an SSE client for as long as its stream lives.
struct SseClient(Arc<Core>);

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
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

/// The output as an endless HTTP-FLV body: the FLV stream headers, then tags from a keyframe.
fn preview_stream(core: Arc<Core>, fanout: Arc<FanOut>) -> warp::reply::Response {
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
    let mut r = warp::reply::Reply::into_response(warp::reply::stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("video/x-flv"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}
