//! The WASM plugin host (wasmtime 48, component model, WIT packages `onair:plugin@0.3.0`,
//! `@0.2.0` and `@0.1.0` side by side, one file each: [`wit`]).
//!
//! - One `Store` per plugin instance. Calls run with an epoch deadline (default 100 ms: a ticker
//!   thread advances the engine's epoch every [`EPOCH_TICK`] while guest code runs, and sleeps
//!   when none does) and a memory cap (a
//!   `ResourceLimiter`, default 64 MiB). A call that traps (deadline, memory, panic) fails
//!   cleanly; the instance is then rebuilt from its component for the next call.
//! - WASI is linked because guests built for `wasm32-wasip2` import it, but grants nothing:
//!   no filesystem, network, environment or arguments, unless `[plugins.grants]` grants a
//!   [`Capability`] to that plugin, in one place: [`wasi_ctx`].
//! - Actions that reach outside onair need a grant too: `destination-add` (a platform anywhere
//!   is network egress, a recording writes files) only with `destinations`, else it is refused,
//!   logged with the plugin's name and shown as its last error ([`refuse_ungranted`]). Paths in
//!   actions are checked where actions run, for every caller ([`crate::roots`]).
//! - Loading is build → validate → swap: a new or changed `.wasm` is compiled, checked for the
//!   WIT version and world, and instantiated before it replaces the old one. A broken or
//!   incompatible file leaves the previous version running and records the error.
//! - Calls come from the policy thread (policy plugins) and the engine (overlay renders), never
//!   from a GStreamer streaming thread.

pub mod wit;

use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::media::image::{Image, MAX_IMAGE_SIDE, image_is_sound};

use serde::Serialize;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::action::Action;
use crate::event::Event;
use wit::{WIT_VERSION, WIT_VERSIONS};

/// How often the engine's epoch advances: the resolution of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine's epoch ticker: a thread that advances the epoch every [`EPOCH_TICK`] while guest
/// code may run (a call or an instantiation holds a [`Ticking`]) and is parked otherwise, so an
/// idle host does not wake a hundred times a second. A deadline counts ticks from its call's
/// start, so the ticks missed while parked change nothing.
struct Ticker {
    /// Calls and instantiations under way.
    running: Arc<AtomicUsize>,
    /// Epoch advances so far (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    ticks: Arc<AtomicU64>,
    thread: std::thread::Thread,
}

/// Held while guest code may run: the epoch advances.
struct Ticking<'a>(&'a Ticker);

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Ticker> {
        let running = Arc::new(AtomicUsize::new(0));
        let ticks = Arc::new(AtomicU64::new(0));
        let (count, ticked) = (running.clone(), ticks.clone());
        let handle = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                loop {
                    // an unpark between the check and the park makes the park return at once
                    if count.load(Ordering::Acquire) == 0 {
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    ticked.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        Ok(Ticker {
            running,
            ticks,
            thread: handle.thread().clone(),
        })
    }

    fn ticking(&self) -> Ticking<'_> {
        if self.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Ticking(self)
    }
}

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The variables the `env` grant passes: locale and time zone, nothing that can hold a secret.
pub const ENV_ALLOWLIST: &[&str] = &[
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_NUMERIC",
    "LC_TIME",
    "LC_MESSAGES",
];

/// A capability a plugin can be granted in `[plugins.grants]`: WASI's, or an action's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// `env`: the locale and time zone variables of [`ENV_ALLOWLIST`] only (the whole
    /// environment would hand over `ONAIR_HTTP__ADMIN_TOKEN` and whatever else it holds).
    Env,
    /// `env:NAME`: that one variable (not an `ONAIR_…` one: those are onair's own settings).
    EnvVar(String),
    /// `network`: TCP/UDP sockets and name lookup.
    Network,
    /// `dir:PATH`: read-only access to one host folder, seen as `/data` by the guest.
    ReadDir(PathBuf),
    /// `destinations`: the `destination-add` action (a platform at any address, or a recording
    /// under `recording.roots`).
    Destinations,
}

impl std::str::FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "env" => Ok(Capability::Env),
            "network" => Ok(Capability::Network),
            "destinations" => Ok(Capability::Destinations),
            d if d.starts_with("dir:") && d.len() > 4 => {
                Ok(Capability::ReadDir(PathBuf::from(&d[4..])))
            }
            e if e.starts_with("env:") && e.len() > 4 => {
                let name = &e[4..];
                if name.to_ascii_uppercase().starts_with("ONAIR_") {
                    return Err(format!(
                        "{e:?}: ONAIR_ variables are onair's own settings (the admin token among them) and are never passed to a plugin"
                    ));
                }
                Ok(Capability::EnvVar(name.to_string()))
            }
            other => Err(format!(
                "unknown capability {other:?}: expected env, env:NAME, network, destinations or dir:PATH"
            )),
        }
    }
}

/// The capability `action` needs, if any (looking inside `on-channel`): the capability, its
/// spelling in `[plugins.grants]`, and the action as a log shows it.
fn needs(action: &Action) -> Option<(Capability, &'static str, String)> {
    match action {
        Action::DestinationAdd { name, .. } => Some((
            Capability::Destinations,
            "destinations",
            format!("destination-add {name:?}"),
        )),
        Action::OnChannel { action, .. } => needs(action),
        _ => None,
    }
}

/// The one place action grants are enforced: drops the actions of plugin `name` that need a
/// capability `grants` lacks, and returns why, one message each.
fn refuse_ungranted(
    name: &str,
    grants: &[Capability],
    actions: Vec<Action>,
) -> (Vec<Action>, Vec<String>) {
    let mut refused = Vec::new();
    let kept = actions
        .into_iter()
        .filter(|a| match needs(a) {
            Some((cap, grant, what)) if !grants.contains(&cap) => {
                refused.push(format!(
                    "{what} refused: plugin {name:?} has no {grant:?} grant ([plugins.grants] {name} = [\"{grant}\"])"
                ));
                false
            }
            _ => true,
        })
        .collect();
    (kept, refused)
}

/// The one place WASI capabilities are granted: nothing unless listed.
fn wasi_ctx(grants: &[Capability]) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    for g in grants {
        match g {
            // an action's, not WASI's: see [`refuse_ungranted`]
            Capability::Destinations => {}
            Capability::Env => {
                for name in ENV_ALLOWLIST {
                    if let Ok(v) = std::env::var(name) {
                        b.env(name, &v);
                    }
                }
            }
            Capability::EnvVar(name) => {
                if let Ok(v) = std::env::var(name) {
                    b.env(name, &v);
                }
            }
            Capability::Network => {
                b.inherit_network();
                b.allow_ip_name_lookup(true);
            }
            Capability::ReadDir(p) => {
                if let Err(e) = b.preopened_dir(p, "/data", wasmtime_wasi::FsPerms::ReadOnly) {
                    tracing::warn!(dir = %p.display(), error = %e, "plugin grant: cannot open folder");
                }
            }
        }
    }
    b.build()
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Policy,
    Overlay,
}

/// One plugin's state, for `GET /api/plugins`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginInfo {
    /// File name without `.wasm`.
    pub name: String,
    pub world: Option<World>,
    /// The WIT package version it was built for (when loaded).
    pub version: Option<&'static str>,
    pub loaded: bool,
    /// The running generation, from 1; 0 when none ever loaded.
    pub generation: u64,
    /// Seconds since the Unix epoch.
    pub loaded_at: Option<f64>,
    /// The last load or call error. Cleared by a successful load.
    pub last_error: Option<String>,
}

struct Limiter {
    max_memory: usize,
    denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

pub struct PluginState {
    name: String,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct Plugin {
    world: World,
    /// The WIT package version it was built for.
    version: &'static str,
    component: Component,
    store: Store<PluginState>,
    instance: wit::Instance,
}

/// Limits and grants for the plugins.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Wall time per call.
    pub deadline: Duration,
    /// Memory per instance, bytes.
    pub memory: usize,
    /// Capabilities by plugin name.
    pub grants: BTreeMap<String, Vec<Capability>>,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            memory: 64 << 20,
            grants: BTreeMap::new(),
        }
    }
}

/// The plugins of one folder. Every method takes `&self` and is safe to call from any thread.
///
/// Locks (order: `loading` → `plugins` → a plugin's own lock is never taken while `plugins` is
/// held; `info` and `hashes` are leaves held for a copy or an insert only):
/// - `plugins`: the name → instance map, held only to look up or swap an entry, never across a
///   compile or a guest call;
/// - each plugin's own `Mutex`, held across its guest calls (a wasmtime `Store` is used by one
///   call at a time): a slow guest delays only calls to itself;
/// - `info`: the snapshot `/api/plugins` and `/api/status` read, never waiting on a guest;
/// - `loading`: serialises loads (compiles run under it, and only loads wait for it).
pub struct PluginHost {
    engine: Engine,
    ticker: Ticker,
    policy_linker: Linker<PluginState>,
    overlay_linker: Linker<PluginState>,
    dir: PathBuf,
    limits: PluginLimits,
    plugins: RwLock<BTreeMap<String, Arc<Mutex<Plugin>>>>,
    info: RwLock<BTreeMap<String, PluginInfo>>,
    /// Bumped at every change of `info`.
    info_version: tokio::sync::watch::Sender<u64>,
    /// Content hash of the file last loaded or tried, by plugin name.
    hashes: Mutex<BTreeMap<String, u64>>,
    loading: Mutex<()>,
}

/// Shared handle: the policy thread, the engine and the HTTP API use the same host.
pub type SharedHost = Arc<PluginHost>;

fn name_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl PluginHost {
    /// Creates the engine (with epoch interruption and its ticker thread) and the linkers.
    pub fn new(dir: &Path, limits: PluginLimits) -> anyhow::Result<PluginHost> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let ticker = Ticker::start(engine.clone())?;
        let mut policy_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut policy_linker)?;
        let mut overlay_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut overlay_linker)?;
        wit::Instance::add_to_linkers(&mut policy_linker, &mut overlay_linker)?;
        Ok(PluginHost {
            engine,
            ticker,
            policy_linker,
            overlay_linker,
            dir: dir.to_path_buf(),
            limits,
            plugins: RwLock::default(),
            info: RwLock::default(),
            info_version: tokio::sync::watch::channel(0).0,
            hashes: Mutex::default(),
            loading: Mutex::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every `.wasm` in the folder, in name order.
    pub fn load_all(&self) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for f in files {
            let _ = self.load(&f);
        }
    }

    /// What `[plugins.grants]` gives plugin `name`.
    fn grants(&self, name: &str) -> &[Capability] {
        self.limits
            .grants
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn new_store(&self, name: &str) -> Store<PluginState> {
        let grants = self.grants(name);
        let mut store = Store::new(
            &self.engine,
            PluginState {
                name: name.to_string(),
                wasi: wasi_ctx(grants),
                table: ResourceTable::new(),
                limits: Limiter {
                    max_memory: self.limits.memory,
                    denied: false,
                },
            },
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store
    }

    fn deadline_ticks(&self) -> u64 {
        (self.limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }

    /// The world of a compiled component and the WIT versions to try, from the versions of
    /// the `onair:plugin/…` interfaces it imports (every version this host runs when it
    /// imports none of them). Errors: a version this host does not run, or neither world.
    fn classify(&self, component: &Component) -> Result<(World, Vec<&'static str>), String> {
        let ty = component.component_type();
        let mut versions: Vec<&'static str> = Vec::new();
        for (name, _) in ty.imports(&self.engine) {
            if let Some(rest) = name.strip_prefix("onair:plugin/")
                && let Some((_, version)) = rest.split_once('@')
            {
                match WIT_VERSIONS.iter().find(|v| **v == version) {
                    Some(v) if !versions.contains(v) => versions.push(v),
                    Some(_) => {}
                    None => {
                        return Err(format!(
                            "built for onair:plugin@{version}, but this onair runs onair:plugin@{}: rebuild it against wit/onair-plugin@{WIT_VERSION}",
                            WIT_VERSIONS.join(" and @")
                        ));
                    }
                }
            }
        }
        if versions.len() > 1 {
            return Err(format!(
                "imports onair:plugin@{}: one component must use one version",
                versions.join(" and @")
            ));
        }
        if versions.is_empty() {
            versions = WIT_VERSIONS.to_vec();
        }
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        if exports.iter().any(|e| e == "on-event") {
            Ok((World::Policy, versions))
        } else if exports.iter().any(|e| e == "render") {
            Ok((World::Overlay, versions))
        } else {
            Err(format!(
                "exports neither on-event (policy world) nor render (overlay world) of onair:plugin; it exports: {}",
                exports.join(", ")
            ))
        }
    }

    /// Instantiates `component` as `world` of the first of `versions` whose types it matches.
    fn instantiate(
        &self,
        name: &str,
        world: World,
        versions: &[&'static str],
        component: &Component,
    ) -> Result<(Store<PluginState>, wit::Instance, &'static str), String> {
        let linker = match world {
            World::Policy => &self.policy_linker,
            World::Overlay => &self.overlay_linker,
        };
        let mut last = String::new();
        for &version in versions {
            let mut store = self.new_store(name);
            let _ticking = self.ticker.ticking();
            store.set_epoch_deadline(self.deadline_ticks());
            let instance =
                wit::Instance::instantiate(version, world, &mut store, component, linker);
            match instance {
                Ok(i) => return Ok((store, i, version)),
                Err(e) => last = format!("cannot instantiate: {e:#}"),
            }
        }
        Err(last)
    }

    /// (Re)loads one plugin file: build → validate → swap.
    pub fn load(&self, path: &Path) -> Result<(), String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"));
        self.load_bytes(path, bytes)
    }

    fn load_bytes(&self, path: &Path, bytes: Result<Vec<u8>, String>) -> Result<(), String> {
        let _loading = self.loading.lock();
        let name = name_of(path);
        match &bytes {
            Ok(b) => self
                .hashes
                .lock()
                .insert(name.clone(), crate::watch::content_hash(b)),
            Err(_) => self.hashes.lock().remove(&name),
        };
        // compile and instantiate with no lock that calls or status readers need
        let result = bytes.and_then(|bytes| {
            Component::from_binary(&self.engine, &bytes)
                .map_err(|e| format!("not a valid WebAssembly component: {e}"))
                .and_then(|component| {
                    let (world, versions) = self.classify(&component)?;
                    let (store, instance, version) =
                        self.instantiate(&name, world, &versions, &component)?;
                    Ok((component, world, version, store, instance))
                })
        });
        let previous = self.info.read().get(&name).map(|i| i.generation);
        match result {
            Ok((component, world, version, store, instance)) => {
                let generation = previous.unwrap_or(0) + 1;
                let loaded_at = SystemTime::now();
                self.plugins.write().insert(
                    name.clone(),
                    Arc::new(Mutex::new(Plugin {
                        world,
                        version,
                        component,
                        store,
                        instance,
                    })),
                );
                self.info.write().insert(
                    name.clone(),
                    PluginInfo {
                        name: name.clone(),
                        world: Some(world),
                        version: Some(version),
                        loaded: true,
                        generation,
                        loaded_at: loaded_at
                            .duration_since(UNIX_EPOCH)
                            .ok()
                            .map(|d| d.as_secs_f64()),
                        last_error: None,
                    },
                );
                self.info_changed();
                tracing::info!(plugin = %name, world = ?world, wit = version, generation, "plugin loaded");
                Ok(())
            }
            Err(e) => {
                let message = format!("{}: {e}", path.display());
                let running = self.plugins.read().contains_key(&name);
                match previous {
                    Some(g) if running => {
                        tracing::error!(plugin = %name, error = %message, "plugin reload failed: generation {g} stays active")
                    }
                    _ => tracing::error!(plugin = %name, error = %message, "plugin not loaded"),
                }
                {
                    let mut info = self.info.write();
                    let info = info.entry(name.clone()).or_insert_with(|| PluginInfo {
                        name: name.clone(),
                        world: None,
                        version: None,
                        loaded: false,
                        generation: 0,
                        loaded_at: None,
                        last_error: None,
                    });
                    info.last_error = Some(message.clone());
                }
                self.info_changed();
                Err(message)
            }
        }
    }

    pub fn unload(&self, name: &str) {
        let _loading = self.loading.lock();
        if self.plugins.write().remove(name).is_some() {
            tracing::info!(plugin = %name, "plugin unloaded");
        }
        self.info.write().remove(name);
        self.info_changed();
        self.hashes.lock().remove(name);
    }

    /// Files changed in the plugins folder. A plugin reloads only if its file's content differs
    /// from the last one loaded (or tried).
    pub fn changed(&self, paths: &[PathBuf]) {
        let mut seen: Vec<&PathBuf> = Vec::new();
        for p in paths {
            if p.extension().is_none_or(|e| e != "wasm") || seen.contains(&p) {
                continue;
            }
            seen.push(p);
            match std::fs::read(p) {
                Ok(bytes) => {
                    let hash = crate::watch::content_hash(&bytes);
                    if self.hashes.lock().get(&name_of(p)) == Some(&hash) {
                        tracing::debug!(plugin = %name_of(p), "plugin unchanged: not reloaded");
                        continue;
                    }
                    let _ = self.load_bytes(p, Ok(bytes));
                }
                Err(_) if !p.exists() => self.unload(&name_of(p)),
                Err(e) => {
                    let _ = self.load_bytes(p, Err(format!("cannot read: {e}")));
                }
            }
        }
    }

    /// Changes whenever [`PluginHost::info`] does.
    pub fn watch_info(&self) -> tokio::sync::watch::Receiver<u64> {
        self.info_version.subscribe()
    }

    fn info_changed(&self) {
        self.info_version.send_modify(|v| *v += 1);
    }

    /// Every plugin's state, from a snapshot: never waits for a guest or a compile.
    pub fn info(&self) -> Vec<PluginInfo> {
        self.info.read().values().cloned().collect()
    }

    /// The plugin named `name`, to lock and call (the map lock is released on return).
    fn get(&self, name: &str) -> Option<Arc<Mutex<Plugin>>> {
        self.plugins.read().get(name).cloned()
    }

    /// Turns a failed call into one message, and rebuilds the instance (a trapped instance
    /// cannot be called again). `p` is the plugin's locked state.
    fn call_failed(
        &self,
        name: &str,
        plugin: &Arc<Mutex<Plugin>>,
        p: &mut Plugin,
        e: wasmtime::Error,
    ) -> String {
        let limits = &self.limits;
        let message = if p.store.data().limits.denied {
            format!("memory cap of {} MiB reached", limits.memory >> 20)
        } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            format!("deadline of {} ms exceeded", limits.deadline.as_millis())
        } else {
            format!("{e:#}")
        };
        tracing::error!(plugin = %name, error = %message, "plugin call failed");
        if let Some(i) = self.info.write().get_mut(name) {
            i.last_error = Some(message.clone());
        }
        self.info_changed();
        match self.instantiate(name, p.world, &[p.version], &p.component.clone()) {
            Ok((store, instance, _)) => {
                p.store = store;
                p.instance = instance;
            }
            Err(e) => {
                tracing::error!(plugin = %name, error = %e, "plugin could not be restarted: unloaded");
                // only if the map still holds this instance (not a newer load)
                let mut plugins = self.plugins.write();
                if plugins.get(name).is_some_and(|a| Arc::ptr_eq(a, plugin)) {
                    plugins.remove(name);
                }
            }
        }
        message
    }

    /// Calls every policy plugin, in name order, and returns their actions.
    pub fn on_event(&self, event: &Event) -> Vec<Action> {
        let wit_event = wit::newest::event(event);
        let ticks = self.deadline_ticks();
        let mut actions = Vec::new();
        let list: Vec<(String, Arc<Mutex<Plugin>>)> = self
            .plugins
            .read()
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        for (name, plugin) in list {
            let mut p = plugin.lock();
            let result = {
                let Plugin {
                    store, instance, ..
                } = &mut *p;
                let _ticking = self.ticker.ticking();
                store.set_epoch_deadline(ticks);
                match instance.on_event(store, &wit_event) {
                    Some(result) => result,
                    None => continue,
                }
            };
            match result {
                Ok(list) => {
                    let (list, refused) = refuse_ungranted(&name, self.grants(&name), list);
                    for message in &refused {
                        tracing::warn!(plugin = %name, event = event.name(), "{message}");
                    }
                    if let Some(last) = refused.last().cloned() {
                        if let Some(i) = self.info.write().get_mut(&name) {
                            i.last_error = Some(last);
                        }
                        self.info_changed();
                    }
                    actions.extend(list);
                }
                Err(e) => {
                    self.call_failed(&name, &plugin, &mut p, e);
                }
            }
        }
        actions
    }

    /// Calls overlay plugin `name`'s `render`. Errors: no such overlay plugin, the plugin's own
    /// error, a trap (deadline, memory), or an image whose size does not match its pixels.
    pub fn render(&self, name: &str, width: u32, height: u32, data: &str) -> Result<Image, String> {
        let ticks = self.deadline_ticks();
        let plugin = self
            .get(name)
            .ok_or_else(|| format!("no overlay plugin named {name:?} is loaded"))?;
        let mut p = plugin.lock();
        let result = {
            let Plugin {
                store, instance, ..
            } = &mut *p;
            let _ticking = self.ticker.ticking();
            store.set_epoch_deadline(ticks);
            match instance.render(store, width, height, data) {
                Some(result) => result,
                None => {
                    return Err(format!(
                        "plugin {name:?} is a policy plugin, not an overlay"
                    ));
                }
            }
        };
        match result {
            Ok(Ok(img)) => {
                if !image_is_sound(&img) {
                    return Err(format!(
                        "plugin {name:?} returned a malformed image: {}x{} stride {} with {} bytes (at most {MAX_IMAGE_SIDE} px a side)",
                        img.width,
                        img.height,
                        img.stride,
                        img.pixels.len()
                    ));
                }
                Ok(img)
            }
            Ok(Err(e)) => Err(format!("plugin {name:?}: {e}")),
            Err(e) => Err(self.call_failed(name, &plugin, &mut p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_env_grant_passes_an_allowlist_and_never_onairs_own_settings() {
        use super::{Capability, ENV_ALLOWLIST};
        assert_eq!("env".parse::<Capability>(), Ok(Capability::Env));
        assert_eq!(
            "env:MATCH_API_URL".parse::<Capability>(),
            Ok(Capability::EnvVar("MATCH_API_URL".into()))
        );
        let e = "env:ONAIR_HTTP__ADMIN_TOKEN"
            .parse::<Capability>()
            .expect_err("refused");
        assert!(e.contains("admin token"), "{e}");
        assert!(
            ENV_ALLOWLIST
                .iter()
                .all(|v| !v.contains("TOKEN") && !v.starts_with("ONAIR"))
        );
    }

    #[test]
    fn an_image_whose_row_size_overflows_u32_is_malformed() {
        use super::{Image, MAX_IMAGE_SIDE, image_is_sound};
        let img = |width, height, stride, len| Image {
            width,
            height,
            stride,
            pixels: vec![0; len],
        };
        assert!(image_is_sound(&img(2, 2, 8, 16)));
        // 0x4000_0001 * 4 wraps to 4 in u32: the old check let it through
        assert!(!image_is_sound(&img(0x4000_0001, 1, 4, 4)));
        assert!(!image_is_sound(&img(
            MAX_IMAGE_SIDE + 1,
            1,
            (MAX_IMAGE_SIDE + 1) * 4,
            40_000
        )));
        assert!(!image_is_sound(&img(2, 2, 8, 15)));
        assert!(!image_is_sound(&img(0, 2, 8, 16)));
    }
    use super::*;

    #[test]
    fn destination_add_needs_the_destinations_grant() {
        let add = |name: &str, url: &str| Action::DestinationAdd {
            name: name.into(),
            url: url.into(),
            profile: None,
            segment_minutes: None,
            max_total_gib: None,
        };
        let stop = Action::ChannelStop;
        let actions = vec![
            add("exfil", "rtmp://203.0.113.9/app/x"),
            stop.clone(),
            Action::OnChannel {
                channel: "b".into(),
                action: Box::new(add("wipe", "file:///home/{utc}.mp4")),
            },
            Action::DestinationEnable { name: "yt".into() },
        ];
        let (kept, refused) = refuse_ungranted("sneaky", &[Capability::Network], actions.clone());
        assert_eq!(
            kept,
            vec![stop, Action::DestinationEnable { name: "yt".into() }]
        );
        assert_eq!(refused.len(), 2);
        assert!(
            refused[0].contains("destination-add \"exfil\"")
                && refused[0].contains("plugin \"sneaky\"")
                && refused[0].contains("destinations"),
            "{}",
            refused[0]
        );
        let (kept, refused) =
            refuse_ungranted("trusted", &[Capability::Destinations], actions.clone());
        assert_eq!((kept, refused.len()), (actions, 0));
        assert_eq!("destinations".parse(), Ok(Capability::Destinations));
    }

    #[test]
    fn the_epoch_ticks_only_while_guest_code_may_run() {
        let ticker = Ticker::start(Engine::default()).expect("ticker");
        let ticks = || ticker.ticks.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(ticks(), 0, "idle from the start");
        {
            let _a = ticker.ticking();
            let _b = ticker.ticking();
            std::thread::sleep(Duration::from_millis(150));
        }
        let during = ticks();
        assert!(during > 0, "no tick during a call");
        // a tick under way when the call ended may still land
        std::thread::sleep(Duration::from_millis(200));
        let after = ticks();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            ticks(),
            after,
            "ticking on while idle (from {during} during the call)"
        );
        // and wakes for the next call
        let _c = ticker.ticking();
        std::thread::sleep(Duration::from_millis(150));
        assert!(ticks() > after, "not woken by the next call");
    }
}
