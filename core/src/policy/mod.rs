//! The policy host: events in, actions out. The core decides nothing itself.
//!
//! Scripts run on their own thread ("policy"), never on a GStreamer streaming thread or the
//! async runtime, so nothing a script does can block the media. For every event the handlers of
//! every script run (in script name order); if `failover.lua` is missing, failed to load, raised
//! an error or ran past its time limit, the error is logged with file:line and event name and
//! the built-in default ([`builtin::decide`], the same behaviour as the shipped
//! `scripts/failover.lua`) applies. Timers, HTTP callbacks and route handlers run on the same
//! thread; the actions they ask for go to the engine on the `actions` channel.
//!
//! Failover never waits on a script. Every decision has a deadline ([`Policy::deadline`], the
//! script time limit + 50 ms); a decision that is late, or asked while the policy thread has
//! been busy past that deadline, gets the built-in default at once (logged and counted in
//! [`Policy::late_decisions`]), and the thread skips the stale event when it gets to it. Script
//! routes wait in their own bounded lane ([`ROUTE_QUEUE`], answered 503 when full) that the
//! thread serves only when no event waits, so HTTP traffic cannot delay a switch.

pub mod api;
pub mod builtin;
pub mod ctx;
pub mod host;
pub mod obs;
pub mod routes;
pub mod script;
pub mod store;

use parking_lot::RwLock;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;

use tokio::sync::oneshot;

use crate::action::Action;
use crate::event::Event;
use ctx::Services;
pub use ctx::{
    CoreApi, CoreCell, HttpResponse, HttpResult, Job, Reply, RouteRequest, RouteResponse,
};
pub use host::FAILOVER_SCRIPT;
use host::{Host, ScriptInfo};
use routes::RouteTable;

/// Script route requests that may wait for the policy thread; more are answered 503 at once.
pub const ROUTE_QUEUE: usize = 64;
/// How long a script route request may wait for its handler (queue plus run) before it is
/// answered 503.
pub const ROUTE_WAIT: Duration = Duration::from_secs(5);
/// What the deadline adds to the script time limit: the hop to the policy thread and back.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// A script route request, in its own bounded lane.
pub struct RouteJob {
    script: String,
    index: usize,
    req: RouteRequest,
    reply: oneshot::Sender<Option<RouteResponse>>,
    due: Instant,
}

/// How to start the policy host.
pub struct PolicyOptions {
    /// `scripts.dir`.
    pub dir: PathBuf,
    /// The database behind `onair.store` (`None`: the store is unavailable).
    pub db: Option<Arc<crate::db::Db>>,
    /// `scripts.store`: a JSON file from older onair, imported once into the database.
    pub store_import: Option<PathBuf>,
    /// Filled in once the core exists.
    pub core: CoreCell,
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
    /// Where the scripts' and plugins' call times and errors are counted (`GET /metrics`).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// When the policy thread started its current job, for "is it stuck?" without asking it.
#[derive(Default)]
struct Busy {
    epoch: OnceLock<Instant>,
    /// Milliseconds since `epoch` + 1 when the current job started; 0 when idle.
    since: AtomicU64,
}

impl Busy {
    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }
    fn start(&self) {
        let ms = self.epoch().elapsed().as_millis() as u64 + 1;
        self.since.store(ms, Ordering::Relaxed);
    }
    fn stop(&self) {
        self.since.store(0, Ordering::Relaxed);
    }
    /// How long the current job has been running, if there is one.
    fn busy_for(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.epoch()
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }
}

/// Handle to the policy thread.
#[derive(Clone)]
pub struct Policy {
    tx: cb::Sender<Job>,
    routes_tx: cb::Sender<RouteJob>,
    /// Script routes, swapped by the host on every (re)load.
    pub routes: Arc<RwLock<RouteTable>>,
    scripts: Arc<RwLock<Vec<ScriptInfo>>>,
    scripts_version: Arc<tokio::sync::watch::Sender<u64>>,
    busy: Arc<Busy>,
    deadline: Duration,
    late: Arc<AtomicU64>,
    routes_refused: Arc<AtomicU64>,
}

impl Policy {
    /// Loads every script of `opts.dir` and starts the policy thread (and the watcher). Scripts
    /// that fail to load are reported (log and [`Policy::scripts`]); they never stop onair.
    /// Returns the handle and the load errors (fatal for `onair check` only).
    pub fn start(opts: PolicyOptions) -> (Policy, Vec<(String, String)>) {
        let (tx, rx) = cb::unbounded::<Job>();
        let (routes_tx, routes_rx) = cb::bounded::<RouteJob>(ROUTE_QUEUE);
        let busy: Arc<Busy> = Arc::default();
        busy.epoch();
        let dir = std::fs::canonicalize(&opts.dir).unwrap_or_else(|_| opts.dir.clone());
        let store = match opts.db.clone() {
            Some(db) => match store::Store::open(db, opts.store_import.as_deref()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "onair.store unavailable");
                    None
                }
            },
            None => None,
        };
        let services = Arc::new(Services {
            dir: dir.clone(),
            store: parking_lot::Mutex::new(store),
            core: opts.core,
            jobs: tx.clone(),
            runtime: opts.runtime,
            http: reqwest::Client::new(),
            memory_limit: opts.memory_limit,
            time_limit: opts.time_limit,
        });
        let routes: Arc<RwLock<RouteTable>> = Arc::default();
        let scripts: Arc<RwLock<Vec<ScriptInfo>>> = Arc::default();
        let scripts_version = Arc::new(tokio::sync::watch::channel(0u64).0);
        let mut host = Host::new(
            services,
            routes.clone(),
            scripts.clone(),
            scripts_version.clone(),
            opts.plugins,
            opts.metrics,
        );
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
        let thread_busy = busy.clone();
        let spawned = thread::Builder::new().name("policy".into()).spawn(move || {
            let _watcher = watcher;
            run(host, rx, routes_rx, actions_tx, &thread_busy);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the policy thread");
        }
        (
            Policy {
                tx,
                routes_tx,
                routes,
                scripts,
                scripts_version,
                busy,
                deadline: opts.time_limit + DEADLINE_MARGIN,
                late: Arc::default(),
                routes_refused: Arc::default(),
            },
            errors,
        )
    }

    /// How long a decision may take before the built-in default applies: the script time
    /// limit + [`DEADLINE_MARGIN`].
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Decisions that were late (or not asked because the policy thread was stuck) and got the
    /// built-in default instead.
    pub fn late_decisions(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Script route requests answered 503 because their lane was full or they waited too long.
    pub fn routes_refused(&self) -> u64 {
        self.routes_refused.load(Ordering::Relaxed)
    }

    fn late(&self, event: &Event, why: std::fmt::Arguments<'_>) -> Vec<Action> {
        self.late.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            event = event.name(),
            deadline_ms = self.deadline.as_millis() as u64,
            "policy decision late ({why}): applying the built-in default"
        );
        builtin::decide(event)
    }

    /// Runs the handlers for `event` and returns the actions they asked for, within
    /// [`Self::deadline`]. When the policy thread is stuck, the decision is late or the thread
    /// is gone, the built-in default answers instead.
    pub async fn decide(&self, event: Event) -> Vec<Action> {
        if let Some(busy) = self.busy.busy_for()
            && busy > self.deadline
        {
            return self.late(
                &event,
                format_args!(
                    "the policy thread has been busy for {} ms",
                    busy.as_millis()
                ),
            );
        }
        let (reply, rx) = oneshot::channel();
        let job = Job::Event {
            event: event.clone(),
            reply,
            due: Instant::now() + self.deadline,
        };
        if self.tx.send(job).is_err() {
            return builtin::decide(&event);
        }
        match tokio::time::timeout(self.deadline, rx).await {
            Ok(Ok(actions)) => actions,
            Ok(Err(_)) => builtin::decide(&event),
            Err(_) => self.late(&event, format_args!("no answer in time")),
        }
    }

    /// Runs a script route. `None` when the route no longer exists; a 503 answer when the route
    /// lane is full ([`ROUTE_QUEUE`]) or the handler did not answer within [`ROUTE_WAIT`].
    pub async fn route(
        &self,
        script: String,
        index: usize,
        req: RouteRequest,
    ) -> Option<RouteResponse> {
        let (reply, rx) = oneshot::channel();
        let job = RouteJob {
            script,
            index,
            req,
            reply,
            due: Instant::now() + ROUTE_WAIT,
        };
        match self.routes_tx.try_send(job) {
            Ok(()) => {}
            Err(cb::TrySendError::Full(job)) => {
                self.routes_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(script = %job.script, path = %job.req.path, "script route lane full: 503");
                return Some(RouteResponse::error(
                    503,
                    "busy: too many script route requests are waiting; try again",
                ));
            }
            Err(cb::TrySendError::Disconnected(_)) => return None,
        }
        match tokio::time::timeout(ROUTE_WAIT, rx).await {
            Ok(r) => r.ok().flatten(),
            Err(_) => {
                self.routes_refused.fetch_add(1, Ordering::Relaxed);
                Some(RouteResponse::error(
                    503,
                    "busy: the script did not answer in time; try again",
                ))
            }
        }
    }

    /// Every script's generation, load time and last error.
    pub fn scripts(&self) -> Vec<ScriptInfo> {
        self.scripts.read().clone()
    }

    /// Changes whenever [`Policy::scripts`] does (a load, a reload, an error, an unload).
    pub fn watch_scripts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.scripts_version.subscribe()
    }

    /// Tells the host that files changed (the watcher does this by itself).
    pub fn changed(&self, paths: Vec<PathBuf>) {
        let _ = self.tx.send(Job::Changed(paths));
    }
}

fn run(
    mut host: Host,
    rx: cb::Receiver<Job>,
    routes: cb::Receiver<RouteJob>,
    actions: Option<tokio::sync::mpsc::UnboundedSender<Vec<Action>>>,
    busy: &Busy,
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
        // events (the control lane) always before route requests
        cb::select_biased! {
            recv(rx) -> job => {
                let Ok(job) = job else { break };
                busy.start();
                match job {
                    Job::Event { event, reply, due } => {
                        if Instant::now() > due || reply.is_closed() {
                            tracing::debug!(event = event.name(), "event skipped: its decision was late and the built-in default applied");
                        } else {
                            let _ = reply.send(host.dispatch(&event));
                        }
                    }
                    Job::Changed(paths) => send(host.changed(&paths)),
                    Job::Callback { script, generation, id, result } => {
                        send(host.callback(&script, generation, id, result));
                    }
                }
                busy.stop();
            }
            recv(routes) -> job => {
                if let Ok(RouteJob { script, index, req, reply, due }) = job {
                    if Instant::now() > due || reply.is_closed() {
                        continue; // answered 503 already
                    }
                    busy.start();
                    let (resp, a) = match host.route(&script, index, &req) {
                        Some((r, a)) => (Some(r), a),
                        None => (None, Vec::new()),
                    };
                    busy.stop();
                    let _ = reply.send(resp);
                    send(a);
                }
            }
            default(wait) => {}
        }
        busy.start();
        send(host.fire_timers());
        busy.stop();
    }
}
