//! What a script's API functions, the script, the host and the policy thread share: the Lua
//! context of one script ([`Ctx`], with the registry keys its functions live under), the
//! services every script reaches ([`Services`]), the core as scripts see it ([`CoreApi`]), and
//! the messages to the policy thread ([`Job`], [`Reply`], route requests and answers). It
//! depends on nothing else of the policy host but [`super::obs`]'s result and [`super::store`],
//! so `api` (the Lua functions), `script` (one Lua state) and `host` (every script) all build on
//! it without depending on each other in a circle.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::obs;
use super::store::Store;
use crate::action::Action;
use crate::event::{Event, SessionId};

/// Registry tables that hold a script's Lua functions; Rust keeps only their keys.
pub(crate) const HANDLERS: &str = "onair.handlers";
pub(crate) const TIMERS: &str = "onair.timers";
pub(crate) const ROUTES: &str = "onair.routes";
pub(crate) const CALLBACKS: &str = "onair.callbacks";

/// What every script shares: owned by the host, handed to each script's API functions.
pub struct Services {
    /// `scripts.dir`: where scripts and `require`d modules live.
    pub dir: PathBuf,
    pub store: Mutex<Option<Store>>,
    pub core: CoreCell,
    /// The policy thread's queue, for HTTP responses arriving later.
    pub jobs: crossbeam_channel::Sender<Job>,
    /// Where `onair.http.request` runs (none in unit tests without a runtime).
    pub runtime: Option<tokio::runtime::Handle>,
    pub http: reqwest::Client,
    pub memory_limit: usize,
    pub time_limit: Duration,
}

/// The text of a script or module file. `Err` says why not: unreadable, precompiled Lua
/// bytecode (loaded as text only: Lua does not verify bytecode, and crafted bytecode escapes
/// the sandbox), or not UTF-8.
pub(crate) fn read_source(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.starts_with(b"\x1bLua") {
        return Err(
            "precompiled Lua bytecode is refused: scripts and modules load as source text only"
                .into(),
        );
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))
}

/// A pending timer of this script.
#[derive(Debug, Clone)]
pub(crate) struct Timer {
    pub id: u64,
    pub due: Instant,
    pub every: Option<Duration>,
}

/// A route this script declared at load.
#[derive(Debug, Clone)]
pub struct RouteDecl {
    pub method: String,
    pub path: String,
    pub auth: bool,
    pub index: usize,
}

/// State shared between a script and its API functions.
pub(crate) struct Ctx {
    pub script: String,
    pub generation: u64,
    /// Actions asked for by the call in progress.
    pub actions: Vec<Action>,
    /// The session of the `publish` event being handled, for `onair.reject`.
    pub publishing: Option<SessionId>,
    /// The channel of the event being handled: what `onair.status()` describes.
    pub event_channel: Option<String>,
    /// Set while a channel handle's method runs (`onair.channel(id):switch(…)`): its actions
    /// go to that channel.
    pub target: Option<String>,
    /// What is being run, for messages: an event name, `timer`, `route`, `load`…
    pub running: String,
    pub timers: Vec<Timer>,
    pub routes: Vec<RouteDecl>,
    pub next_id: u64,
    pub loading: bool,
}

/// What scripts read from the core, and the channel creation they may ask for directly (it
/// answers at once with the new channel or the error).
pub trait CoreApi: Send + Sync {
    /// `GET /api/status` as JSON, with `channel`'s state at the top level (the primary
    /// channel's with `None`); `None` when no such channel exists.
    fn status(&self, channel: Option<&str>) -> Option<serde_json::Value>;
    /// Whether channel `id` exists.
    fn has_channel(&self, id: &str) -> bool {
        self.status(Some(id)).is_some()
    }
    /// Creates a run-time channel from a `POST /api/channels` body. Returns the channel as
    /// `GET /api/channels/ID` shows it plus `stream_keys`, or the error in words.
    fn create_channel(&self, body: serde_json::Value) -> Result<serde_json::Value, String>;
}

/// Set once the core exists (the policy starts before it).
pub type CoreCell = Arc<OnceLock<Arc<dyn CoreApi>>>;

/// An HTTP response for `onair.http.request`, or the error that replaced it.
pub type HttpResult = Result<HttpResponse, String>;

/// What arrives for a script's callback: an `onair.http.request` response or an `onair.obs`
/// request's.
#[derive(Debug)]
pub enum Reply {
    Http(HttpResult),
    Obs(obs::ObsResult),
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub json: Option<serde_json::Value>,
}

/// A request for a script route, as the HTTP server parsed it.
#[derive(Debug, Clone, Default)]
pub struct RouteRequest {
    pub method: String,
    pub path: String,
    pub params: HashMap<String, String>,
    pub query: HashMap<String, String>,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A route handler's answer.
#[derive(Debug, Clone)]
pub struct RouteResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl RouteResponse {
    /// A JSON error answer, `{"error": message}`, with no stack trace.
    pub fn error(status: u16, message: &str) -> RouteResponse {
        RouteResponse {
            status,
            headers: Vec::new(),
            content_type: "application/json".into(),
            body: serde_json::json!({ "error": message })
                .to_string()
                .into_bytes(),
        }
    }
}

/// Work for the policy thread's control lane (events first, always).
pub enum Job {
    Event {
        event: Event,
        reply: oneshot::Sender<Vec<Action>>,
        /// After this, the core has applied the built-in default: skip it.
        due: Instant,
    },
    Changed(Vec<PathBuf>),
    /// A callback's result (`onair.http.request`, `onair.obs` requests).
    Callback {
        script: String,
        generation: u64,
        id: u64,
        result: Reply,
    },
}
