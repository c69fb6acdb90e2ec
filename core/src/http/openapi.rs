//! The OpenAPI 3 document of onair's built-in HTTP API, served at `GET /api/openapi.json`.
//! Schemas are derived from the Rust types the routes read and answer (`utoipa::ToSchema`);
//! each route of `http/` has its entry below (a function that only carries the attribute).
//! `tests/channels.rs` calls every documented operation and checks the status it answers is
//! documented, and that every `warp::path!` in `http/` is documented.
//!
//! To add a route: its `#[utoipa::path]` entry here and its name in [`ApiDoc`]'s `paths(…)`.

#![allow(dead_code)] // the functions exist for their attributes

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::bodies::{CreateDestination, FallbackBody, PatchDestination, SwitchBody};
use crate::channel::destinations::DestinationView;
use crate::channel::{ChannelPatch, ChannelView, NewChannel};
use crate::engine::Status;
use crate::gallery::MediaItem;
use crate::policy::host::ScriptInfo;
use crate::wasm::PluginInfo;

/// Every error answer: `error` in words; for a 400, `field` names the wrong field and `message`
/// says what is wrong with it.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub field: Option<String>,
    pub message: Option<String>,
}

/// `POST /api/login`.
#[derive(ToSchema)]
pub struct LoginBody {
    pub name: String,
    pub password: String,
}

/// A login: the user and the CSRF token to send back in `X-CSRF-Token` on every request that
/// changes something (the session itself travels in the `onair_session` cookie: HttpOnly,
/// SameSite=Strict).
#[derive(ToSchema)]
pub struct LoginAnswer {
    pub user: String,
    pub csrf: String,
}

/// `POST /api/setup`: the first admin, with the one-time token of the setup link onair prints
/// on stdout while no user exists (`http://HOST/#setup=TOKEN`).
#[derive(ToSchema)]
pub struct SetupBody {
    /// 32 hex digits, from the setup link.
    pub token: String,
    pub name: String,
    /// At least 8 characters.
    pub password: String,
}

/// `GET /api/session`: how this request got in. `auth`: `session` (a login), `token` (the
/// bearer token) or `open` (`http.open_local = true`, with no token and no user).
#[derive(ToSchema)]
pub struct SessionAnswer {
    pub user: Option<String>,
    pub csrf: Option<String>,
    pub auth: String,
}

/// OBS → Settings → Stream for a streamer account: the key is the account's own.
#[derive(ToSchema)]
pub struct StreamerObs {
    /// `Custom...`
    pub service: String,
    /// OBS's "Server": `rtmp://HOST:PORT/APP`.
    pub server: String,
}

/// A streamer account as the API shows it. `key` only at creation and regeneration (shown this
/// once: only its SHA-256 is kept); `csrf` only to the streamer themselves.
#[derive(ToSchema)]
pub struct StreamerView {
    pub name: String,
    /// The channel the account's key publishes to.
    pub channel: String,
    pub enabled: bool,
    /// The key redacted (`live_…a9f3`).
    pub key_hint: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether the account's key is publishing now.
    pub publishing: bool,
    pub on_air: bool,
    /// Its publish session, when publishing.
    pub session: Option<u64>,
    pub obs: StreamerObs,
    pub key: Option<String>,
    pub csrf: Option<String>,
}

/// `POST /api/streamers` (admin). `channel`: default `accounts.channel`.
#[derive(ToSchema)]
pub struct StreamerCreate {
    pub name: String,
    pub password: String,
    pub channel: Option<String>,
}

/// `PATCH /api/streamers/{name}`: disabling ends the account's publish and refuses its key.
#[derive(ToSchema)]
pub struct StreamerPatch {
    pub enabled: Option<bool>,
    pub channel: Option<String>,
}

/// OBS → Settings → Stream for a channel.
#[derive(ToSchema)]
pub struct ObsSettings {
    /// OBS's "Server": `rtmp://HOST:PORT/APP`.
    pub server: String,
    /// OBS's "Stream Key", in full: any of these.
    pub stream_keys: Vec<String>,
    /// Whether `POST …/keys/regenerate` works (run-time channels; config keys live in the file).
    pub can_regenerate: bool,
}

/// `200` of a key regeneration: the new key, shown this once in full.
#[derive(ToSchema)]
pub struct NewKeys {
    pub stream_keys: Vec<String>,
}

/// `202` of a switch: the source asked for.
#[derive(ToSchema)]
pub struct SwitchAccepted {
    /// `live` or `fallback`.
    pub source: String,
}

/// `202` of a start or stop: `starting` or `stopping`.
#[derive(ToSchema)]
pub struct StateAccepted {
    pub id: String,
    pub state: String,
}

/// `201` of `POST /api/channels`: the channel plus its stream keys in full (the only time the
/// API shows them).
#[derive(ToSchema, serde::Serialize)]
pub struct CreatedChannel {
    #[serde(flatten)]
    pub channel: ChannelView,
    pub stream_keys: Vec<String>,
}

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("http.admin_token"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "onair",
        description = "Keeps a live stream on air: channels, their destinations, switching, preview and the media gallery. \
                       Every /api/ route needs `Authorization: Bearer <http.admin_token>` or a control-room login \
                       (the `onair_session` cookie from POST /api/login, plus `X-CSRF-Token` on requests that change state); \
                       with neither a token nor a user everything answers 401 except POST /api/setup (the one-time setup link) \
                       unless http.open_local opens it to requests made on the machine itself."
    ),
    paths(
        status, switch, channels_list, channels_create, channel_get, channel_patch, channel_delete,
        channel_start, channel_stop, channel_switch, channel_preview, destinations_list,
        destinations_create, destination_get, destination_patch, destination_delete,
        destination_enable, destination_disable, scripts, plugins, events, preview, openapi_json,
        metrics, channel_fallback, channel_obs, channel_keys_regenerate, media_list, media_upload,
        media_file, media_thumbnail, media_delete, login, setup, logout, session, profiles,
        streamer_signup, streamer_login, streamer_logout, streamer_me, streamer_key,
        streamers_list, streamers_create, streamer_patch, streamer_delete, streamer_rekey
    ),
    components(schemas(ErrorBody, SwitchAccepted, StateAccepted, CreatedChannel, LoginBody, SetupBody,
        LoginAnswer, SessionAnswer, ObsSettings, NewKeys, StreamerView, StreamerCreate,
        StreamerPatch, StreamerObs)),
    modifiers(&BearerToken),
    security(("admin_token" = []))
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

#[utoipa::path(get, path = "/api/status", tag = "status",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
fn status() {}

/// The encoding profiles a destination can name (`profile`): the built-in ones, named after the
/// platform rule each follows (`twitch-720p60`, `youtube-1080p30`, …), and `[profile.NAME]`.
#[utoipa::path(get, path = "/api/profiles", tag = "destinations",
    responses((status = 200, body = std::collections::BTreeMap<String, crate::config::OutputConfig>),
        (status = 401, body = ErrorBody)))]
fn profiles() {}

#[utoipa::path(post, path = "/api/switch", tag = "channels",
    request_body(content = SwitchBody, example = json!({"source": "fallback"})),
    responses((status = 202, body = SwitchAccepted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn switch() {}

#[utoipa::path(get, path = "/api/channels", tag = "channels",
    responses((status = 200, body = Vec<ChannelView>), (status = 401, body = ErrorBody)))]
fn channels_list() {}

#[utoipa::path(post, path = "/api/channels", tag = "channels",
    request_body(content = NewChannel, example = json!({"id": "court-9", "name": "Court 9", "start": false})),
    responses((status = 201, body = CreatedChannel), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
fn channels_create() {}

#[utoipa::path(get, path = "/api/channels/{id}", tag = "channels",
    params(("id" = String, Path, description = "channel id")),
    responses((status = 200, body = ChannelView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn channel_get() {}

#[utoipa::path(patch, path = "/api/channels/{id}", tag = "channels",
    params(("id" = String, Path, description = "channel id")),
    request_body(content = ChannelPatch, example = json!({"name": "Centre Court"})),
    responses((status = 200, body = ChannelView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "defined in the config file", body = ErrorBody)))]
fn channel_patch() {}

#[utoipa::path(delete, path = "/api/channels/{id}", tag = "channels",
    params(("id" = String, Path, description = "channel id")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "defined in the config file", body = ErrorBody)))]
fn channel_delete() {}

#[utoipa::path(post, path = "/api/channels/{id}/start", tag = "channels",
    params(("id" = String, Path, description = "channel id")),
    responses((status = 202, body = StateAccepted), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn channel_start() {}

#[utoipa::path(post, path = "/api/channels/{id}/stop", tag = "channels",
    params(("id" = String, Path, description = "channel id")),
    responses((status = 202, body = StateAccepted), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn channel_stop() {}

#[utoipa::path(post, path = "/api/channels/{id}/switch", tag = "channels",
    params(("id" = String, Path, description = "channel id")),
    request_body(content = SwitchBody, example = json!({"source": "fallback"})),
    responses((status = 202, body = SwitchAccepted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn channel_switch() {}

#[utoipa::path(get, path = "/api/channels/{id}/preview.flv", tag = "preview",
    params(("id" = String, Path, description = "channel id"),
        ("key" = Option<String>, Query, description = "http.preview_key (or the bearer token)")),
    responses((status = 200, description = "the channel's output as an endless HTTP-FLV stream", content_type = "video/x-flv"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the channel is stopped", body = ErrorBody),
        (status = 503, description = "http.preview_max_viewers reached", body = ErrorBody)))]
fn channel_preview() {}

#[utoipa::path(get, path = "/api/channels/{id}/destinations", tag = "destinations",
    params(("id" = String, Path, description = "channel id")),
    responses((status = 200, body = Vec<DestinationView>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn destinations_list() {}

#[utoipa::path(post, path = "/api/channels/{id}/destinations", tag = "destinations",
    params(("id" = String, Path, description = "channel id")),
    request_body(content = CreateDestination,
        example = json!({"name": "doc-example", "url": "rtmp://127.0.0.1:9/app/key", "enabled": false})),
    responses((status = 201, body = DestinationView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
fn destinations_create() {}

#[utoipa::path(get, path = "/api/channels/{id}/destinations/{name}", tag = "destinations",
    params(("id" = String, Path, description = "channel id"), ("name" = String, Path, description = "destination name")),
    responses((status = 200, body = DestinationView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn destination_get() {}

#[utoipa::path(patch, path = "/api/channels/{id}/destinations/{name}", tag = "destinations",
    params(("id" = String, Path, description = "channel id"), ("name" = String, Path, description = "destination name")),
    request_body(content = PatchDestination, example = json!({"enabled": false})),
    responses((status = 200, body = DestinationView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "its URL is defined in the config file", body = ErrorBody)))]
fn destination_patch() {}

#[utoipa::path(delete, path = "/api/channels/{id}/destinations/{name}", tag = "destinations",
    params(("id" = String, Path, description = "channel id"), ("name" = String, Path, description = "destination name")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "defined in the config file", body = ErrorBody)))]
fn destination_delete() {}

#[utoipa::path(post, path = "/api/channels/{id}/destinations/{name}/enable", tag = "destinations",
    params(("id" = String, Path, description = "channel id"), ("name" = String, Path, description = "destination name")),
    responses((status = 200, body = DestinationView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn destination_enable() {}

#[utoipa::path(post, path = "/api/channels/{id}/destinations/{name}/disable", tag = "destinations",
    params(("id" = String, Path, description = "channel id"), ("name" = String, Path, description = "destination name")),
    responses((status = 200, body = DestinationView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn destination_disable() {}

#[utoipa::path(get, path = "/api/scripts", tag = "scripts",
    responses((status = 200, body = Vec<ScriptInfo>), (status = 401, body = ErrorBody)))]
fn scripts() {}

#[utoipa::path(get, path = "/api/plugins", tag = "plugins",
    responses((status = 200, body = Vec<PluginInfo>), (status = 401, body = ErrorBody)))]
fn plugins() {}

#[utoipa::path(get, path = "/api/events", tag = "events",
    responses((status = 200, description = "Server-Sent Events: one per core event (docs/events.md), named by the event, its JSON as data", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody),
        (status = 503, description = "http.max_sse_clients reached", body = ErrorBody)))]
fn events() {}

#[utoipa::path(get, path = "/preview.flv", tag = "preview",
    params(("key" = Option<String>, Query, description = "http.preview_key (or the bearer token)")),
    responses((status = 200, description = "the primary channel's output as an endless HTTP-FLV stream", content_type = "video/x-flv"),
        (status = 401, body = ErrorBody), (status = 404, description = "no channels", body = ErrorBody),
        (status = 409, description = "the channel is stopped", body = ErrorBody),
        (status = 503, description = "http.preview_max_viewers reached", body = ErrorBody)))]
fn preview() {}

#[utoipa::path(get, path = "/api/openapi.json", tag = "status", security(()),
    responses((status = 200, description = "this document")))]
fn openapi_json() {}

#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text); docs/metrics.md lists them",
        content_type = "application/openmetrics-text"),
        (status = 401, body = ErrorBody)))]
fn metrics() {}

#[utoipa::path(post, path = "/api/channels/{id}/fallback", tag = "channels",
    params(("id" = String, Path, description = "channel id")),
    request_body(content = FallbackBody, example = json!({"media": null})),
    responses((status = 200, description = "chosen (kept at once; shown by the running fallback a moment later)", body = ChannelView),
        (status = 400, description = "the media cannot be played (field `media`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn channel_fallback() {}

#[utoipa::path(get, path = "/api/channels/{id}/obs", tag = "channels",
    params(("id" = String, Path, description = "channel id")),
    responses((status = 200, body = ObsSettings), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn channel_obs() {}

#[utoipa::path(post, path = "/api/channels/{id}/keys/regenerate", tag = "channels",
    params(("id" = String, Path, description = "channel id")),
    responses((status = 200, description = "the old keys stop working at once", body = NewKeys),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "defined in the config file", body = ErrorBody)))]
fn channel_keys_regenerate() {}

#[utoipa::path(get, path = "/api/media", tag = "media",
    responses((status = 200, body = Vec<MediaItem>), (status = 401, body = ErrorBody)))]
fn media_list() {}

#[utoipa::path(post, path = "/api/media", tag = "media",
    params(("name" = String, Query, description = "file name: letters, digits, '.', '_', '-' (spaces become '-')")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the file itself, streamed to disk; at most media.max_upload_mib"),
    responses((status = 201, body = MediaItem),
        (status = 400, description = "not an image or a video onair can play, or a bad name", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, description = "the name exists", body = ErrorBody),
        (status = 413, description = "over media.max_upload_mib; nothing is kept", body = ErrorBody)))]
fn media_upload() {}

#[utoipa::path(get, path = "/api/media/{name}", tag = "media",
    params(("name" = String, Path, description = "media name")),
    responses((status = 200, description = "the file"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn media_file() {}

#[utoipa::path(get, path = "/api/media/{name}/thumbnail.png", tag = "media",
    params(("name" = String, Path, description = "media name")),
    responses((status = 200, description = "320x180 PNG of the first frame", content_type = "image/png"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn media_thumbnail() {}

#[utoipa::path(delete, path = "/api/media/{name}", tag = "media",
    params(("name" = String, Path, description = "media name")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "a channel's fallback uses it", body = ErrorBody)))]
fn media_delete() {}

#[utoipa::path(post, path = "/api/login", tag = "session", security(()),
    request_body(content = LoginBody, example = json!({"name": "doc", "password": "not the password"})),
    responses((status = 200, description = "logged in; sets the onair_session cookie", body = LoginAnswer),
        (status = 400, body = ErrorBody),
        (status = 401, description = "wrong name or password", body = ErrorBody),
        (status = 429, description = "5 failed logins from this address in the last minute", body = ErrorBody)))]
fn login() {}

#[utoipa::path(post, path = "/api/setup", tag = "session", security(()),
    request_body(content = SetupBody, example = json!({"token": "0123456789abcdef0123456789abcdef", "name": "doc", "password": "not the password"})),
    responses((status = 201, description = "the first admin exists and is logged in; sets the onair_session cookie", body = LoginAnswer),
        (status = 400, description = "invalid name or password (the token stays valid)", body = ErrorBody),
        (status = 403, description = "wrong or used setup token", body = ErrorBody),
        (status = 409, description = "an admin user exists already", body = ErrorBody)))]
fn setup() {}

#[utoipa::path(post, path = "/api/logout", tag = "session",
    responses((status = 204, description = "the session ended; the cookie is cleared"),
        (status = 401, body = ErrorBody), (status = 403, description = "no X-CSRF-Token", body = ErrorBody)))]
fn logout() {}

#[utoipa::path(get, path = "/api/session", tag = "session", security(()),
    responses((status = 200, body = SessionAnswer),
        (status = 401, description = "not logged in; `users` says whether any user exists", body = ErrorBody)))]
fn session() {}

#[utoipa::path(post, path = "/api/streamer/signup", tag = "streamers", security(()),
    request_body(content = LoginBody, example = json!({"name": "doc-streamer", "password": "doc password 1"})),
    responses((status = 201, description = "created and logged in (the onair_streamer cookie); `key` shown this once", body = StreamerView),
        (status = 400, body = ErrorBody),
        (status = 403, description = "sign-up is closed (accounts.signup = false)", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
        (status = 429, description = "5 sign-ups from this address in the last minute", body = ErrorBody),
        (status = 503, description = "accounts.channel is not a channel, or too many at once", body = ErrorBody)))]
fn streamer_signup() {}

#[utoipa::path(post, path = "/api/streamer/login", tag = "streamers", security(()),
    request_body(content = LoginBody, example = json!({"name": "doc", "password": "not the password"})),
    responses((status = 200, description = "logged in; sets the onair_streamer cookie", body = StreamerView),
        (status = 400, body = ErrorBody),
        (status = 401, description = "wrong name or password, or a disabled account", body = ErrorBody),
        (status = 429, description = "5 failed logins from this address in the last minute", body = ErrorBody)))]
fn streamer_login() {}

#[utoipa::path(post, path = "/api/streamer/logout", tag = "streamers", security(()),
    responses((status = 204, description = "the streamer's session ended; the cookie is cleared")))]
fn streamer_logout() {}

#[utoipa::path(get, path = "/api/streamer/me", tag = "streamers", security(()),
    responses((status = 200, description = "the logged-in streamer's account, with `csrf`", body = StreamerView),
        (status = 401, description = "no streamer login (the onair_streamer cookie)", body = ErrorBody)))]
fn streamer_me() {}

#[utoipa::path(post, path = "/api/streamer/key", tag = "streamers", security(()),
    responses((status = 200, description = "a new key, shown this once; the old one's publish ended", body = StreamerView),
        (status = 401, body = ErrorBody), (status = 403, description = "no X-CSRF-Token", body = ErrorBody)))]
fn streamer_key() {}

#[utoipa::path(get, path = "/api/streamers", tag = "streamers",
    responses((status = 200, body = Vec<StreamerView>), (status = 401, body = ErrorBody)))]
fn streamers_list() {}

#[utoipa::path(post, path = "/api/streamers", tag = "streamers",
    request_body(content = StreamerCreate, example = json!({"name": "doc-test", "password": "doc password 1"})),
    responses((status = 201, description = "created; `key` shown this once", body = StreamerView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody)))]
fn streamers_create() {}

#[utoipa::path(patch, path = "/api/streamers/{name}", tag = "streamers",
    params(("name" = String, Path, description = "account name")),
    request_body(content = StreamerPatch, example = json!({"enabled": false})),
    responses((status = 200, body = StreamerView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn streamer_patch() {}

#[utoipa::path(delete, path = "/api/streamers/{name}", tag = "streamers",
    params(("name" = String, Path, description = "account name")),
    responses((status = 204, description = "deleted; its publish ended"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
fn streamer_delete() {}

#[utoipa::path(post, path = "/api/streamers/{name}/key", tag = "streamers",
    params(("name" = String, Path, description = "account name")),
    responses((status = 200, description = "a new key, shown this once; the old one's publish ended", body = StreamerView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn streamer_rekey() {}
