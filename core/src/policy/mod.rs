//! The policy host: events in, actions out. The core decides nothing itself.
//!
//! Scripts run on their own thread ("policy"), never on a GStreamer streaming thread or the
//! async runtime, so nothing a script does can block the media. For every event the handlers of
//! every script run (in script name order); if `failover.lua` is missing, failed to load, raised
//! an error or ran past its time limit, the error is logged with file:line and event name and
//! the built-in default ([`builtin::decide`], the same behaviour as the shipped
//! `scripts/failover.lua`) applies. Timers, HTTP callbacks and route handlers run on the same
//! thread; the actions they ask for go to the engine on the `actions` channel.

pub mod api;
pub mod builtin;
pub mod host;
pub mod routes;
pub mod script;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::action::Action;
use crate::event::Event;
use host::{Host, ScriptInfo};
use routes::RouteTable;
use script::Services;

/// The script that holds the switching policy, inside `scripts.dir`.
pub const FAILOVER_SCRIPT: &str = "failover.lua";

/// Gives `onair.status()` the same JSON as `GET /api/status`.
pub type StatusFn = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

/// An HTTP response for `onair.http.request`, or the error that replaced it.
pub type HttpResult = Result<HttpResponse, String>;

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

/// Work for the policy thread.
pub enum Job {
    Event {
        event: Event,
        reply: oneshot::Sender<Vec<Action>>,
    },
    Route {
        script: String,
        index: usize,
        req: RouteRequest,
        reply: oneshot::Sender<Option<RouteResponse>>,
    },
    Changed(Vec<PathBuf>),
    HttpDone {
        script: String,
        generation: u64,
        id: u64,
        result: HttpResult,
    },
}

/// How to start the policy host.
pub struct PolicyOptions {
    /// `scripts.dir`.
    pub dir: PathBuf,
    /// `scripts.store`: the JSON file behind `onair.store`.
    pub store: PathBuf,
    /// Filled in once the core exists.
    pub status: Arc<OnceLock<StatusFn>>,
    /// Where timers', callbacks' and routes' actions go (to the engine).
    pub actions: Option<tokio::sync::mpsc::UnboundedSender<Vec<Action>>>,
    /// The async runtime for `onair.http.request`.
    pub runtime: Option<tokio::runtime::Handle>,
    /// Watch `dir` and reload scripts on change.
    pub watch: bool,
    pub memory_limit: usize,
    pub time_limit: Duration,
    /// WASM policy plugins, called after the scripts for every event.
    pub plugins: Option<crate::wasm::SharedHost>,
}

/// Handle to the policy thread.
#[derive(Clone)]
pub struct Policy {
    tx: mpsc::Sender<Job>,
    /// Script routes, swapped by the host on every (re)load.
    pub routes: Arc<RwLock<RouteTable>>,
    scripts: Arc<RwLock<Vec<ScriptInfo>>>,
}

impl Policy {
    /// Loads every script of `opts.dir` and starts the policy thread (and the watcher). Scripts
    /// that fail to load are reported (log and [`Policy::scripts`]); they never stop onair.
    /// Returns the handle and the load errors (fatal for `onair check` only).
    pub fn start(opts: PolicyOptions) -> (Policy, Vec<(String, String)>) {
        let (tx, rx) = mpsc::channel::<Job>();
        let dir = std::fs::canonicalize(&opts.dir).unwrap_or_else(|_| opts.dir.clone());
        let store = match store::Store::open(&opts.store) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "onair.store unavailable");
                None
            }
        };
        let services = Arc::new(Services {
            dir: dir.clone(),
            store: std::sync::Mutex::new(store),
            status: opts.status,
            jobs: tx.clone(),
            runtime: opts.runtime,
            http: reqwest::Client::new(),
            memory_limit: opts.memory_limit,
            time_limit: opts.time_limit,
        });
        let routes: Arc<RwLock<RouteTable>> = Arc::default();
        let scripts: Arc<RwLock<Vec<ScriptInfo>>> = Arc::default();
        let mut host = Host::new(services, routes.clone(), scripts.clone(), opts.plugins);
        let (errors, load_actions) = host.load_all();
        let errors: Vec<(String, String)> = errors
            .into_iter()
            .map(|(n, e)| (n, e.to_string()))
            .collect();
        if !load_actions.is_empty()
            && let Some(tx) = &opts.actions
        {
            // the engine applies them once it runs, before any event
            let _ = tx.send(load_actions);
        }
        let watcher = if opts.watch {
            let jobs = tx.clone();
            match crate::watch::watch(&dir, move |paths| {
                let _ = jobs.send(Job::Changed(paths));
            }) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "cannot watch scripts: hot reload is off");
                    None
                }
            }
        } else {
            None
        };
        let actions_tx = opts.actions;
        let spawned = thread::Builder::new().name("policy".into()).spawn(move || {
            let _watcher = watcher;
            run(host, rx, actions_tx);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the policy thread");
        }
        (
            Policy {
                tx,
                routes,
                scripts,
            },
            errors,
        )
    }

    /// Runs the handlers for `event` and returns the actions they asked for. If the policy thread
    /// is gone, the built-in default answers.
    pub async fn decide(&self, event: Event) -> Vec<Action> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Job::Event {
                event: event.clone(),
                reply,
            })
            .is_err()
        {
            return builtin::decide(&event);
        }
        rx.await.unwrap_or_else(|_| builtin::decide(&event))
    }

    /// Runs a script route. `None` when the route no longer exists.
    pub async fn route(
        &self,
        script: String,
        index: usize,
        req: RouteRequest,
    ) -> Option<RouteResponse> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Route {
                script,
                index,
                req,
                reply,
            })
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Every script's generation, load time and last error.
    pub fn scripts(&self) -> Vec<ScriptInfo> {
        self.scripts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells the host that files changed (the watcher does this by itself).
    pub fn changed(&self, paths: Vec<PathBuf>) {
        let _ = self.tx.send(Job::Changed(paths));
    }
}

fn run(
    mut host: Host,
    rx: mpsc::Receiver<Job>,
    actions: Option<tokio::sync::mpsc::UnboundedSender<Vec<Action>>>,
) {
    let send = |a: Vec<Action>| {
        if !a.is_empty()
            && let Some(tx) = &actions
        {
            let _ = tx.send(a);
        }
    };
    loop {
        let wait = host.next_due().map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok(Job::Event { event, reply }) => {
                let _ = reply.send(host.dispatch(&event));
            }
            Ok(Job::Route {
                script,
                index,
                req,
                reply,
            }) => {
                let (resp, a) = match host.route(&script, index, &req) {
                    Some((r, a)) => (Some(r), a),
                    None => (None, Vec::new()),
                };
                let _ = reply.send(resp);
                send(a);
            }
            Ok(Job::Changed(paths)) => send(host.changed(&paths)),
            Ok(Job::HttpDone {
                script,
                generation,
                id,
                result,
            }) => {
                send(host.http_done(&script, generation, id, result));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        send(host.fire_timers());
    }
}
