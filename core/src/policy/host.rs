//! The script host: every top-level `*.lua` of `scripts.dir`, loaded in name order, each in its
//! own Lua state. Runs on the policy thread only.
//!
//! Reload is build → validate → swap: the new generation is loaded into a fresh state and its
//! routes checked against the other scripts'; only then does it replace the old generation, whose
//! handlers, timers, routes and pending callbacks go with it. A failed reload leaves the old
//! generation running and records the error (file:line) for `GET /api/scripts`.
//!
//! Quarantine: a script whose calls run past the time limit [`QUARANTINE_AFTER`] times within
//! [`QUARANTINE_WINDOW`] is switched off (no handlers, timers, callbacks or routes; for
//! `failover.lua` the built-in default decides) until its file changes. `GET /api/scripts` shows
//! `quarantined: true`.

use parking_lot::RwLock;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::Serialize;

use super::ctx::{Reply, RouteRequest, RouteResponse, Services};
use super::routes::{Route, RouteTable};
use super::script::{Script, ScriptError};
use super::{api, builtin};
use crate::action::Action;
use crate::event::Event;
use crate::watch::content_hash;

/// The script that holds the switching policy, inside `scripts.dir`.
pub const FAILOVER_SCRIPT: &str = "failover.lua";

/// One script's state, for `GET /api/scripts`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScriptInfo {
    pub name: String,
    /// Whether a generation of it is running.
    pub loaded: bool,
    /// The running generation (1 for the first load), 0 if none ever loaded.
    pub generation: u64,
    /// When the running generation was loaded, seconds since the Unix epoch.
    pub loaded_at: Option<f64>,
    /// The last load or handler error, with file:line. Cleared by a successful load.
    pub last_error: Option<String>,
    /// `METHOD /path` of each route it serves.
    pub routes: Vec<String>,
    /// Calls of the running generation aborted at the time limit.
    pub time_limit_trips: u64,
    /// Switched off after running past its time limit too often; a change to the file loads it
    /// again.
    pub quarantined: bool,
}

/// Time-limit trips that quarantine a script…
pub const QUARANTINE_AFTER: usize = 3;
/// …within this window.
pub const QUARANTINE_WINDOW: Duration = Duration::from_secs(300);

pub struct Host {
    services: Arc<Services>,
    scripts: BTreeMap<String, Script>,
    info: BTreeMap<String, ScriptInfo>,
    routes: Arc<RwLock<RouteTable>>,
    snapshot: Arc<RwLock<Vec<ScriptInfo>>>,
    /// Bumped at every change of `snapshot`.
    version: Arc<tokio::sync::watch::Sender<u64>>,
    plugins: Option<crate::wasm::SharedHost>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Content hash of the source last loaded or tried, by script name.
    hashes: BTreeMap<String, u64>,
    /// Recent time-limit trips of the running generation, by script name.
    trips: BTreeMap<String, Vec<Instant>>,
    quarantined: BTreeSet<String>,
}

impl Host {
    pub fn new(
        services: Arc<Services>,
        routes: Arc<RwLock<RouteTable>>,
        snapshot: Arc<RwLock<Vec<ScriptInfo>>>,
        version: Arc<tokio::sync::watch::Sender<u64>>,
        plugins: Option<crate::wasm::SharedHost>,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Host {
        Host {
            services,
            scripts: BTreeMap::new(),
            info: BTreeMap::new(),
            routes,
            snapshot,
            version,
            plugins,
            metrics,
            hashes: BTreeMap::new(),
            trips: BTreeMap::new(),
            quarantined: BTreeSet::new(),
        }
    }

    /// Loads every script of the folder. Returns the load errors, by script name, and the actions
    /// the scripts' top levels asked for, in load order (the caller applies them).
    pub fn load_all(&mut self) -> (Vec<(String, ScriptError)>, Vec<Action>) {
        let mut errors = Vec::new();
        let mut actions = Vec::new();
        for path in api::script_files(&self.services.dir) {
            match self.load(&path) {
                Ok(a) => actions.extend(a),
                Err(e) => errors.push((file_name(&path), e)),
            }
        }
        if !self.scripts.contains_key(FAILOVER_SCRIPT)
            && !errors.iter().any(|(n, _)| n == FAILOVER_SCRIPT)
        {
            tracing::warn!(dir = %self.services.dir.display(), "no {FAILOVER_SCRIPT}: the built-in default policy runs");
        }
        (errors, actions)
    }

    fn record_error(&mut self, name: &str, e: &ScriptError) {
        let info = self
            .info
            .entry(name.to_string())
            .or_insert_with(|| ScriptInfo {
                name: name.to_string(),
                loaded: false,
                generation: 0,
                loaded_at: None,
                last_error: None,
                routes: Vec::new(),
                time_limit_trips: 0,
                quarantined: false,
            });
        info.last_error = Some(e.to_string());
        self.publish_info();
    }

    /// (Re)loads one script: build → validate → swap. Returns the actions its top level asked
    /// for, to apply now that it is swapped in; a failed load applies none.
    pub fn load(&mut self, path: &Path) -> Result<Vec<Action>, ScriptError> {
        match read_source(path) {
            Ok(source) => self.load_source(path, &source),
            Err(e) => {
                let name = file_name(path);
                tracing::error!(script = %name, error = %e, "script not loaded");
                self.hashes.remove(&name);
                self.record_error(&name, &e);
                Err(e)
            }
        }
    }

    fn load_source(&mut self, path: &Path, source: &str) -> Result<Vec<Action>, ScriptError> {
        let name = file_name(path);
        self.hashes
            .insert(name.clone(), content_hash(source.as_bytes()));
        let generation = self.scripts.get(&name).map_or(0, |s| s.generation) + 1;
        let result = Script::from_source(path, source, generation, &self.services).and_then(|s| {
            self.check_routes(&s)?;
            Ok(s)
        });
        match result {
            Ok(mut script) => {
                let actions = script.take_load_actions();
                let routes = script
                    .routes()
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect();
                self.info.insert(
                    name.clone(),
                    ScriptInfo {
                        name: name.clone(),
                        loaded: true,
                        generation,
                        loaded_at: script
                            .loaded_at
                            .duration_since(UNIX_EPOCH)
                            .ok()
                            .map(|d| d.as_secs_f64()),
                        last_error: None,
                        routes,
                        time_limit_trips: 0,
                        quarantined: false,
                    },
                );
                self.scripts.insert(name.clone(), script);
                self.trips.remove(&name);
                if self.quarantined.remove(&name) {
                    tracing::info!(script = %name, "script out of quarantine: a new version loaded");
                }
                self.rebuild_routes();
                tracing::info!(script = %name, generation, actions = actions.len(), "script loaded");
                Ok(actions)
            }
            Err(e) => {
                let keeps = self.scripts.get(&name).map(|s| s.generation);
                match keeps {
                    Some(g) => {
                        tracing::error!(script = %name, error = %e, "script reload failed: generation {g} stays active")
                    }
                    None if name == FAILOVER_SCRIPT => {
                        tracing::error!(script = %name, error = %e, "policy script not loaded: the built-in default policy runs")
                    }
                    None => tracing::error!(script = %name, error = %e, "script not loaded"),
                }
                self.record_error(&name, &e);
                Err(e)
            }
        }
    }

    /// A script's routes may not clash with another script's.
    fn check_routes(&self, s: &Script) -> Result<(), ScriptError> {
        for d in s.routes() {
            let mine = Route::new(&d.method, &d.path, &s.name, d.index, d.auth)
                .map_err(|e| ScriptError::Lua(e.to_string()))?;
            for (other_name, other) in &self.scripts {
                if *other_name == s.name {
                    continue;
                }
                for o in other.routes() {
                    let theirs = Route::new(&o.method, &o.path, other_name, o.index, o.auth)
                        .map_err(|e| ScriptError::Lua(e.to_string()))?;
                    if mine.clashes(&theirs) {
                        return Err(ScriptError::Lua(format!(
                            "{}: duplicate route {} {}: already served by {other_name} as {} {}",
                            s.path.display(),
                            mine.method,
                            d.path,
                            theirs.method,
                            o.path
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn unload(&mut self, name: &str) {
        if self.scripts.remove(name).is_some() {
            tracing::info!(script = %name, "script unloaded");
        }
        self.info.remove(name);
        self.hashes.remove(name);
        self.trips.remove(name);
        self.quarantined.remove(name);
        self.rebuild_routes();
    }

    /// Files changed under the scripts folder. A script whose own file changed is reloaded only
    /// if its content differs from the last one loaded (or tried); when a module under the folder
    /// changed, every script reloads (any may `require` it). Returns the actions of the new
    /// generations' top levels, in load order.
    pub fn changed(&mut self, paths: &[PathBuf]) -> Vec<Action> {
        let dir = &self.services.dir;
        let mut reload_all = false;
        let mut todo: Vec<PathBuf> = Vec::new();
        for p in paths {
            if p.extension().is_none_or(|e| e != "lua") {
                continue;
            }
            if p.parent() == Some(dir.as_path()) {
                if !todo.contains(p) {
                    todo.push(p.clone());
                }
            } else if p.starts_with(dir) {
                reload_all = true; // a module changed: scripts that require it must reload
            }
        }
        if reload_all {
            for name in self.scripts.keys().cloned().collect::<Vec<_>>() {
                let p = dir.join(&name);
                if !todo.contains(&p) {
                    todo.push(p);
                }
            }
        }
        todo.sort();
        let mut actions = Vec::new();
        for p in todo {
            let name = file_name(&p);
            match read_source(&p) {
                Ok(source) => {
                    if !reload_all
                        && self.hashes.get(&name) == Some(&content_hash(source.as_bytes()))
                    {
                        tracing::debug!(script = %name, "script unchanged: not reloaded");
                        continue;
                    }
                    if let Ok(a) = self.load_source(&p, &source) {
                        actions.extend(a);
                    }
                }
                Err(_) if !p.exists() => self.unload(&name),
                Err(e) => {
                    tracing::error!(script = %name, error = %e, "script reload failed: cannot read it");
                    self.record_error(&name, &e);
                }
            }
        }
        actions
    }

    fn rebuild_routes(&mut self) {
        let mut table = RouteTable::default();
        for (name, s) in &self.scripts {
            for d in s.routes() {
                if let Ok(r) = Route::new(&d.method, &d.path, name, d.index, d.auth) {
                    table.routes.push(r);
                }
            }
        }
        *self.routes.write() = table;
        self.publish_info();
    }

    fn publish_info(&self) {
        *self.snapshot.write() = self.info.values().cloned().collect();
        self.version.send_modify(|v| *v += 1);
    }

    /// Records a failed call; `timed_out`: it ran past the time limit (counts towards
    /// quarantine).
    fn handler_error(&mut self, script: &str, what: &str, e: &ScriptError, timed_out: bool) {
        tracing::error!(script = %script, event = what, error = %e, "script handler failed");
        if let Some(m) = &self.metrics {
            m.script_error(script);
        }
        let mut quarantine = false;
        if timed_out {
            let now = Instant::now();
            let trips = self.trips.entry(script.to_string()).or_default();
            trips.retain(|t| now.duration_since(*t) < QUARANTINE_WINDOW);
            trips.push(now);
            quarantine = trips.len() >= QUARANTINE_AFTER && self.quarantined.insert(script.into());
        }
        if let Some(i) = self.info.get_mut(script) {
            i.last_error = Some(e.to_string());
            if timed_out {
                i.time_limit_trips += 1;
            }
            i.quarantined = self.quarantined.contains(script);
        }
        if quarantine {
            tracing::error!(
                script = %script,
                trips = QUARANTINE_AFTER,
                window_s = QUARANTINE_WINDOW.as_secs(),
                "script quarantined: it ran past its time limit {QUARANTINE_AFTER} times within {} s; its handlers, timers and routes are off until the file changes{}",
                QUARANTINE_WINDOW.as_secs(),
                if script == FAILOVER_SCRIPT { " (the built-in default policy runs)" } else { "" }
            );
        }
        self.publish_info();
    }

    /// Whether `name` is loaded and not quarantined.
    fn active(&self, name: &str) -> bool {
        self.scripts.contains_key(name) && !self.quarantined.contains(name)
    }

    /// Runs every script's handlers for `event` in script name order, until one returns `false`.
    /// When `failover.lua` is not running or its handler failed, the built-in default decides.
    pub fn dispatch(&mut self, event: &Event) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut policy_ok = self.active(FAILOVER_SCRIPT);
        let mut failed = Vec::new();
        let lua = Instant::now();
        for (name, s) in &self.scripts {
            if self.quarantined.contains(name) {
                continue;
            }
            match s.dispatch(event) {
                Ok((a, stop)) => {
                    actions.extend(a);
                    if stop {
                        break;
                    }
                }
                Err(e) => {
                    if name == FAILOVER_SCRIPT {
                        policy_ok = false;
                    }
                    failed.push((name.clone(), e, s.timed_out()));
                }
            }
        }
        if let Some(m) = &self.metrics {
            m.lua_call(lua.elapsed());
        }
        for (name, e, timed_out) in failed {
            self.handler_error(&name, event.name(), &e, timed_out);
        }
        if let Some(p) = &self.plugins {
            let wasm = Instant::now();
            actions.extend(p.on_event(event));
            if let Some(m) = &self.metrics {
                m.wasm_call(wasm.elapsed());
            }
        }
        if !policy_ok {
            let builtin = builtin::decide(event);
            if !builtin.is_empty() {
                tracing::warn!(event = event.name(), "applying the built-in default policy");
            }
            actions.extend(builtin);
        }
        actions
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.scripts
            .iter()
            .filter(|(n, _)| !self.quarantined.contains(*n))
            .filter_map(|(_, s)| s.next_due())
            .min()
    }

    /// Runs the timers that are due. Returns their actions.
    pub fn fire_timers(&mut self) -> Vec<Action> {
        let now = Instant::now();
        let mut actions = Vec::new();
        let mut failed = Vec::new();
        for (name, s) in &self.scripts {
            if self.quarantined.contains(name) {
                continue;
            }
            if s.next_due().is_some_and(|d| d <= now) {
                let (a, errors) = s.fire_due(now);
                actions.extend(a);
                failed.extend(errors.into_iter().map(|(e, t)| (name.clone(), e, t)));
            }
        }
        for (name, e, timed_out) in failed {
            self.handler_error(&name, "timer", &e, timed_out);
        }
        actions
    }

    /// Delivers a callback's result to the script generation that asked for it.
    pub fn callback(
        &mut self,
        script: &str,
        generation: u64,
        id: u64,
        result: Reply,
    ) -> Vec<Action> {
        let Some(s) = self
            .scripts
            .get(script)
            .filter(|s| s.generation == generation && !self.quarantined.contains(script))
        else {
            return Vec::new(); // that generation is gone (or switched off)
        };
        let what = match result {
            Reply::Http(_) => "http callback",
            Reply::Obs(_) => "obs callback",
        };
        match s.callback(id, result) {
            Ok(a) => a,
            Err(e) => {
                let timed_out = s.timed_out();
                self.handler_error(script, what, &e, timed_out);
                Vec::new()
            }
        }
    }

    /// Runs the route handler for a request the HTTP server matched. `None`: no such route (it
    /// went away with its script meanwhile).
    pub fn route(
        &mut self,
        script: &str,
        index: usize,
        req: &RouteRequest,
    ) -> Option<(RouteResponse, Vec<Action>)> {
        let s = self.scripts.get(script)?;
        if self.quarantined.contains(script) {
            return Some((
                RouteResponse::error(
                    503,
                    "script quarantined: it ran past its time limit too often",
                ),
                Vec::new(),
            ));
        }
        match s.route(index, req) {
            Ok(r) => Some(r),
            Err(e) => {
                let what = format!("route {} {}", req.method, req.path);
                let timed_out = s.timed_out();
                self.handler_error(script, &what, &e, timed_out);
                Some((RouteResponse::error(500, "script error"), Vec::new()))
            }
        }
    }

    pub fn info(&self) -> Vec<ScriptInfo> {
        self.info.values().cloned().collect()
    }
}

fn read_source(path: &Path) -> Result<String, ScriptError> {
    super::ctx::read_source(path).map_err(|message| ScriptError::Read {
        path: path.display().to_string(),
        message,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}
