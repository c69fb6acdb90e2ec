//! One script: a fresh, sandboxed Lua 5.4 state (mlua) with the onair API, its handlers, timers
//! and routes. A reload builds a new `Script` and swaps it in; the old one, and everything it
//! registered, is dropped whole.
//!
//! Sandbox: only `table`, `string`, `math`, `utf8` and `coroutine` are opened (no `io`, `os`,
//! `debug`, `package`, no file loaders, no C modules); `require` loads modules from `scripts.dir`
//! only; memory is capped per script; every call into Lua (top level, handler, timer, route,
//! callback) is aborted by an instruction hook when it runs past the time limit.
//!
//! The time limit cannot be caught: once a call is past it, every hook tick raises the error
//! again, and `pcall`, `xpcall`, `coroutine.resume` and `coroutine.close` re-raise it instead of
//! returning it, so `while true do pcall(f) end` ends like any runaway. Lua code running outside
//! a call (a `__gc` finalizer when the state closes) is stopped at its first hook tick.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mlua::{Function, HookTriggers, Lua, LuaOptions, LuaSerdeExt, StdLib, Table, Value, VmState};

use super::api;
use super::ctx::{
    CALLBACKS, Ctx, HANDLERS, ROUTES, Reply, RouteDecl, RouteRequest, RouteResponse, Services,
    TIMERS, Timer, read_source,
};
use crate::action::Action;
use crate::event::{Event, SessionId};

/// Memory one script may use, in bytes (64 MiB).
pub const MEMORY_LIMIT: usize = 64 << 20;
/// Wall time one call into a script may run.
pub const TIME_LIMIT: Duration = Duration::from_millis(100);
/// Instructions between two deadline checks.
const HOOK_EVERY: u32 = 1000;

/// A script that failed to load, or a call into it that failed. Messages carry `file:line`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScriptError {
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("{0}")]
    Lua(String),
}

/// One line: the Lua message with its `file:line`, without the traceback.
pub(crate) fn describe(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => describe(cause),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        other => other.to_string(),
    }
    .lines()
    .next()
    .unwrap_or_default()
    .to_string()
}

fn lua_err(e: mlua::Error) -> ScriptError {
    ScriptError::Lua(describe(&e))
}

pub struct Script {
    pub name: String,
    pub path: PathBuf,
    pub generation: u64,
    pub loaded_at: SystemTime,
    lua: Lua,
    ctx: Arc<Mutex<Ctx>>,
    deadline: Arc<Mutex<Option<Instant>>>,
    /// Set by the hook when the call in progress went past its time limit.
    expired: Arc<AtomicBool>,
    time_limit: Duration,
    /// Actions the top level asked for while loading, in order. The host applies them right
    /// after it swaps this generation in (never when the load fails).
    load_actions: Vec<Action>,
}

impl Script {
    /// Loads the script file at `path` as generation `generation`.
    pub fn load(
        path: &Path,
        generation: u64,
        services: &Arc<Services>,
    ) -> Result<Script, ScriptError> {
        let source = read_source(path).map_err(|message| ScriptError::Read {
            path: path.display().to_string(),
            message,
        })?;
        Self::from_source(path, &source, generation, services)
    }

    /// Like [`Self::load`], with the text given; `path` names the chunk in messages.
    pub fn from_source(
        path: &Path,
        source: &str,
        generation: u64,
        services: &Arc<Services>,
    ) -> Result<Script, ScriptError> {
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE,
            LuaOptions::default(),
        )
        .map_err(lua_err)?;
        lua.set_memory_limit(services.memory_limit)
            .map_err(lua_err)?;
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let expired: Arc<AtomicBool> = Arc::default();
        let (d, x) = (deadline.clone(), expired.clone());
        let limit_ms = services.time_limit.as_millis();
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, _| match *d.lock() {
                Some(t) if Instant::now() > t => {
                    x.store(true, Ordering::Relaxed);
                    Err(mlua::Error::runtime(format!(
                        "time limit of {limit_ms} ms exceeded"
                    )))
                }
                Some(_) => Ok(VmState::Continue),
                None => Err(mlua::Error::runtime(
                    "Lua code may only run inside a handler, timer, route or the top level",
                )),
            },
        )
        .map_err(lua_err)?;
        *deadline.lock() = Some(Instant::now() + services.time_limit);
        let hardened = harden_protected_calls(&lua, expired.clone());
        *deadline.lock() = None;
        hardened.map_err(lua_err)?;
        bound_patterns(&lua).map_err(lua_err)?;
        for t in [HANDLERS, TIMERS, ROUTES, CALLBACKS] {
            lua.set_named_registry_value(t, lua.create_table().map_err(lua_err)?)
                .map_err(lua_err)?;
        }
        let ctx = Arc::new(Mutex::new(Ctx {
            script: name.clone(),
            generation,
            actions: Vec::new(),
            publishing: None,
            event_channel: None,
            target: None,
            running: "load".into(),
            timers: Vec::new(),
            routes: Vec::new(),
            next_id: 1,
            loading: true,
        }));
        api::register(&lua, &ctx, services).map_err(lua_err)?;
        let mut script = Script {
            name,
            path: path.to_path_buf(),
            generation,
            loaded_at: SystemTime::now(),
            lua,
            ctx,
            deadline,
            expired,
            time_limit: services.time_limit,
            load_actions: Vec::new(),
        };
        let chunk_name = format!("@{}", path.display());
        let ((), actions) = script.call("load", None, |lua| {
            lua.load(source)
                .set_name(chunk_name)
                .set_mode(mlua::chunk::ChunkMode::Text)
                .exec()
        })?;
        script.load_actions = actions;
        script.ctx.lock().loading = false;
        Ok(script)
    }

    /// The actions the top level asked for while loading (once: later calls return nothing).
    pub fn take_load_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.load_actions)
    }

    /// Runs `f` with the deadline armed and the call's context set. Returns its result and the
    /// actions it asked for; on an error, the actions are dropped.
    fn call<T>(
        &self,
        running: &str,
        publishing: Option<SessionId>,
        f: impl FnOnce(&Lua) -> mlua::Result<T>,
    ) -> Result<(T, Vec<Action>), ScriptError> {
        self.call_on(running, publishing, None, f)
    }

    /// [`Self::call`] for an event of channel `channel`.
    fn call_on<T>(
        &self,
        running: &str,
        publishing: Option<SessionId>,
        channel: Option<&str>,
        f: impl FnOnce(&Lua) -> mlua::Result<T>,
    ) -> Result<(T, Vec<Action>), ScriptError> {
        {
            let mut c = self.ctx.lock();
            c.actions.clear();
            c.publishing = publishing;
            c.event_channel = channel.map(str::to_string);
            c.target = None;
            c.running = running.to_string();
        }
        self.expired.store(false, Ordering::Relaxed);
        *self.deadline.lock() = Some(Instant::now() + self.time_limit);
        let r = f(&self.lua);
        *self.deadline.lock() = None;
        let actions = std::mem::take(&mut self.ctx.lock().actions);
        r.map(|v| (v, actions)).map_err(lua_err)
    }

    /// Whether the last call ran past its time limit (and was aborted).
    pub fn timed_out(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// Runs this script's handlers for `event`, in registration order. Returns the actions and
    /// whether a handler returned `false` (stop: no later handler runs).
    pub fn dispatch(&self, event: &Event) -> Result<(Vec<Action>, bool), ScriptError> {
        let publishing = match event {
            Event::Publish(p) => Some(p.session),
            _ => None,
        };
        let (stop, actions) =
            self.call_on(event.name(), publishing, Some(event.channel()), |lua| {
                let handlers: Table = lua.named_registry_value(HANDLERS)?;
                let Some(list) = handlers.get::<Option<Table>>(event.name())? else {
                    return Ok(false);
                };
                let payload = lua.to_value_with(event, api::ser_options())?;
                for f in list.sequence_values::<Function>() {
                    if f?.call::<Value>(payload.clone())? == Value::Boolean(false) {
                        return Ok(true);
                    }
                }
                Ok(false)
            })?;
        Ok((actions, stop))
    }

    /// Whether this script has a handler for `event`.
    pub fn handles(&self, event: &str) -> bool {
        self.lua
            .named_registry_value::<Table>(HANDLERS)
            .and_then(|h| h.get::<Option<Table>>(event))
            .is_ok_and(|l| l.is_some_and(|l| l.raw_len() > 0))
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.ctx.lock().timers.iter().map(|t| t.due).min()
    }

    /// Fires every timer due at `now`. Returns the actions of those that succeeded and the
    /// errors of those that failed, each with whether it ran past the time limit (a failing
    /// `every` timer keeps running).
    pub fn fire_due(&self, now: Instant) -> (Vec<Action>, Vec<(ScriptError, bool)>) {
        let due: Vec<Timer> = {
            let mut c = self.ctx.lock();
            let due: Vec<Timer> = c.timers.iter().filter(|t| t.due <= now).cloned().collect();
            c.timers.retain(|t| t.due > now || t.every.is_some());
            for t in c.timers.iter_mut().filter(|t| t.due <= now) {
                if let Some(every) = t.every {
                    t.due = now + every;
                }
            }
            due
        };
        let mut actions = Vec::new();
        let mut errors = Vec::new();
        for t in due {
            let r = self.call("timer", None, |lua| {
                let timers: Table = lua.named_registry_value(TIMERS)?;
                let Some(f) = timers.get::<Option<Function>>(t.id)? else {
                    return Ok(());
                };
                if t.every.is_none() {
                    timers.set(t.id, Value::Nil)?;
                }
                f.call::<()>(())
            });
            match r {
                Ok(((), a)) => actions.extend(a),
                Err(e) => errors.push((e, self.timed_out())),
            }
        }
        (actions, errors)
    }

    /// Delivers the result of request number `id` (`onair.http.request`, an `onair.obs`
    /// request) to its callback.
    pub fn callback(&self, id: u64, result: Reply) -> Result<Vec<Action>, ScriptError> {
        let (_, actions) = self.call("callback", None, |lua| {
            let callbacks: Table = lua.named_registry_value(CALLBACKS)?;
            let Some(f) = callbacks.get::<Option<Function>>(id)? else {
                return Ok(());
            };
            callbacks.set(id, Value::Nil)?;
            match result {
                Reply::Http(Ok(resp)) => {
                    f.call::<()>((api::http_response_table(lua, &resp)?, Value::Nil))
                }
                Reply::Obs(Ok(resp)) => {
                    f.call::<()>((api::obs_response_table(lua, &resp)?, Value::Nil))
                }
                Reply::Http(Err(e)) | Reply::Obs(Err(e)) => f.call::<()>((Value::Nil, e)),
            }
        })?;
        Ok(actions)
    }

    /// Runs route handler `index` for `req`. A handler error or a nonsense answer is an error.
    pub fn route(
        &self,
        index: usize,
        req: &RouteRequest,
    ) -> Result<(RouteResponse, Vec<Action>), ScriptError> {
        self.call("route", None, |lua| {
            let routes: Table = lua.named_registry_value(ROUTES)?;
            let f: Function = routes.get(index)?;
            let ret: Value = f.call(api::route_request_table(lua, req)?)?;
            api::route_response(lua, ret)
        })
    }

    /// The routes declared at load.
    pub fn routes(&self) -> Vec<RouteDecl> {
        self.ctx.lock().routes.clone()
    }
}

/// Replaces `pcall`, `xpcall`, `coroutine.resume` and `coroutine.close` with versions that
/// re-raise an error instead of returning it once the call in progress is past its time limit.
fn harden_protected_calls(lua: &Lua, expired: Arc<AtomicBool>) -> mlua::Result<()> {
    let is_expired = lua.create_function(move |_, ()| Ok(expired.load(Ordering::Relaxed)))?;
    let g = lua.globals();
    let co: Table = g.get("coroutine")?;
    lua.load(
        r#"
        local raw_pcall, raw_xpcall, raw_resume, raw_close, expired, error, coroutine = ...
        local function pass(ok, ...)
          if not ok and expired() then error((...), 0) end
          return ok, ...
        end
        pcall = function(f, ...) return pass(raw_pcall(f, ...)) end
        xpcall = function(f, handler, ...) return pass(raw_xpcall(f, handler, ...)) end
        coroutine.resume = function(co, ...) return pass(raw_resume(co, ...)) end
        coroutine.close = function(co) return pass(raw_close(co)) end
        "#,
    )
    .set_name("=onair sandbox")
    .call::<()>((
        g.get::<Function>("pcall")?,
        g.get::<Function>("xpcall")?,
        co.get::<Function>("resume")?,
        co.get::<Function>("close")?,
        is_expired,
        g.get::<Function>("error")?,
        co,
    ))
}

/// The longest subject `string.find/match/gmatch/gsub` take with a pattern (1 MiB). Pattern
/// matching runs in C, where the instruction hook cannot stop it.
pub const PATTERN_SUBJECT_MAX: usize = 1 << 20;
/// The most backtracking quantifiers (`*`, `+`, `-`) one pattern may hold: each can multiply
/// the work by the subject's length.
pub const PATTERN_QUANTIFIERS_MAX: usize = 4;
/// The most matcher steps a pattern call may take by [`pattern_work`]'s worst-case estimate,
/// which counts every pattern item at every expansion (an over-count for simple items): the
/// worst case it allows, `.-b` on 4 470 bytes without a `b`, takes about the default 100 ms
/// handler time limit, which cannot interrupt C code.
pub const PATTERN_WORK_MAX: u128 = 80_000_000;

/// One single-character class of a Lua pattern (Lua 5.4 manual §6.4.1).
#[derive(Debug, Clone, Copy)]
enum CharClass<'p> {
    Any,
    Literal(u8),
    /// `%a`, `%D`, … (the letter as written).
    Escape(u8),
    /// The inside of `[...]`, without the brackets.
    Set(&'p [u8]),
}

fn escape_matches(letter: u8, b: u8) -> bool {
    let m = match letter.to_ascii_lowercase() {
        b'a' => b.is_ascii_alphabetic(),
        b'c' => b.is_ascii_control(),
        b'd' => b.is_ascii_digit(),
        b'g' => b.is_ascii_graphic(),
        b'l' => b.is_ascii_lowercase(),
        b'p' => b.is_ascii_punctuation(),
        b's' => matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b'u' => b.is_ascii_uppercase(),
        b'w' => b.is_ascii_alphanumeric(),
        b'x' => b.is_ascii_hexdigit(),
        _ => return letter == b, // `%.`: the character itself
    };
    if letter.is_ascii_uppercase() { !m } else { m }
}

impl CharClass<'_> {
    fn matches(&self, b: u8) -> bool {
        match *self {
            CharClass::Any => true,
            CharClass::Literal(c) => c == b,
            CharClass::Escape(l) => escape_matches(l, b),
            CharClass::Set(set) => {
                let (negate, set) = match set {
                    [b'^', rest @ ..] => (true, rest),
                    all => (false, all),
                };
                let mut i = 0;
                let mut found = false;
                while i < set.len() {
                    if set[i] == b'%' && i + 1 < set.len() {
                        found |= escape_matches(set[i + 1], b);
                        i += 2;
                    } else if i + 2 < set.len() && set[i + 1] == b'-' {
                        found |= (set[i]..=set[i + 2]).contains(&b);
                        i += 3;
                    } else {
                        found |= set[i] == b;
                        i += 1;
                    }
                }
                found != negate
            }
        }
    }

    /// The longest run of bytes of `subject` this class matches.
    fn longest_run(&self, subject: &[u8]) -> usize {
        let (mut best, mut run) = (0, 0);
        for &b in subject {
            run = if self.matches(b) { run + 1 } else { 0 };
            best = best.max(run);
        }
        best
    }
}

/// The end of the `[...]` set starting at `i` (the index after `]`), as Lua's `classEnd` reads it.
fn set_end(p: &[u8], mut i: usize) -> usize {
    i += 1; // '['
    if p.get(i) == Some(&b'^') {
        i += 1;
    }
    // a ']' right at the start is a member
    if p.get(i) == Some(&b']') {
        i += 1;
    }
    while i < p.len() && p[i] != b']' {
        i += if p[i] == b'%' { 2 } else { 1 };
    }
    (i + 1).min(p.len())
}

/// A worst-case estimate of the steps Lua's matcher takes for `pattern` over `subject` (every
/// start position, and at each the product of the lengths each backtracking item can take: the
/// longest run of the subject its class matches, or the whole subject for `%b`), saturating.
/// A quantified item that ends the pattern never backtracks and is not counted.
pub fn pattern_work(pattern: &[u8], subject: &[u8], anchor_works: bool) -> u128 {
    let n = subject.len() as u128;
    // `gmatch` tries every position: there `^` is a literal character (Lua 5.4 `gmatch_aux`)
    let (anchored, p) = match pattern {
        [b'^', rest @ ..] if anchor_works => (true, rest),
        all => (false, all),
    };
    // each item is a step at every expansion tried: a long literal costs its length
    let items = p.len() as u128 + 1;
    // per backtracking item: its factor, and where it ends (None: counted wherever it stands,
    // as `%b` scans to its closing character even when it ends the pattern)
    let mut factors: Vec<(u128, Option<usize>)> = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let (class, next) = match p[i] {
            b'(' | b')' => {
                i += 1;
                continue;
            }
            b'$' if i + 1 == p.len() => break,
            b'%' => match p.get(i + 1) {
                Some(b'b') => {
                    factors.push((n + 1, None));
                    i += 4;
                    continue;
                }
                Some(b'f') => {
                    i = set_end(p, i + 2);
                    continue;
                }
                Some(d) if d.is_ascii_digit() => {
                    // a back-reference compares as many bytes as its capture holds
                    factors.push((n + 1, None));
                    i += 2;
                    continue;
                }
                Some(&l) => (CharClass::Escape(l), i + 2),
                None => break,
            },
            b'[' => {
                let end = set_end(p, i);
                (
                    CharClass::Set(&p[(i + 1).min(end)..end.saturating_sub(1).max(i + 1)]),
                    end,
                )
            }
            b'.' => (CharClass::Any, i + 1),
            c => (CharClass::Literal(c), i + 1),
        };
        match p.get(next) {
            Some(b'*' | b'+' | b'-') => {
                factors.push((class.longest_run(subject) as u128 + 1, Some(next + 1)));
                i = next + 1;
            }
            Some(b'?') => {
                factors.push((2, Some(next + 1)));
                i = next + 1;
            }
            _ => i = next,
        }
    }
    // the rest after the last item is only captures closing: that item never backtracks
    let last_is_free = |end: usize| p[end.min(p.len())..].iter().all(|&c| c == b')');
    let per_start = factors
        .iter()
        .filter(|(_, end)| !end.is_some_and(last_is_free))
        .fold(1u128, |acc, (f, _)| acc.saturating_mul(*f));
    let starts = if anchored { 1 } else { n + 1 };
    starts.saturating_mul(per_start).saturating_mul(items)
}

/// Backtracking quantifiers in a Lua pattern (escapes and sets are skipped).
pub fn pattern_quantifiers(pattern: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < pattern.len() {
        // one single-char class
        match pattern[i] {
            b'%' => i += 2,
            b'[' => i = set_end(pattern, i),
            _ => i += 1,
        }
        if matches!(pattern.get(i), Some(b'*' | b'+' | b'-')) {
            n += 1;
            i += 1;
        }
    }
    n
}

/// Wraps `string.find`, `match`, `gmatch` and `gsub` (and so the `s:find(…)` methods) to refuse
/// a pattern over [`PATTERN_QUANTIFIERS_MAX`] or a subject over [`PATTERN_SUBJECT_MAX`]; a
/// plain `find` is not limited.
fn bound_patterns(lua: &Lua) -> mlua::Result<()> {
    let string: Table = lua.globals().get("string")?;
    for name in ["find", "match", "gmatch", "gsub"] {
        let original: Function = string.get(name)?;
        let wrapped = lua.create_function(move |_, args: mlua::MultiValue| {
            let plain = name == "find" && args.get(3).is_some_and(|v| v.as_boolean() == Some(true));
            if !plain {
                let len = |v: Option<&Value>| match v {
                    Some(Value::String(s)) => s.as_bytes().len(),
                    _ => 0,
                };
                let subject = len(args.front());
                if subject > PATTERN_SUBJECT_MAX {
                    return Err(mlua::Error::runtime(format!(
                        "string.{name}: a subject of {} KiB is over the {} KiB pattern limit (split it, or use string.find with plain = true)",
                        subject >> 10,
                        PATTERN_SUBJECT_MAX >> 10
                    )));
                }
                if let Some(Value::String(p)) = args.get(1) {
                    let p = p.as_bytes();
                    let q = pattern_quantifiers(&p);
                    if q > PATTERN_QUANTIFIERS_MAX {
                        return Err(mlua::Error::runtime(format!(
                            "string.{name}: the pattern has {q} repetitions (*, +, -); at most {PATTERN_QUANTIFIERS_MAX} are allowed"
                        )));
                    }
                    if let Some(Value::String(subject)) = args.front() {
                        let work = pattern_work(&p, &subject.as_bytes(), name != "gmatch");
                        if work > PATTERN_WORK_MAX {
                            return Err(mlua::Error::runtime(format!(
                                "string.{name}: this pattern may take up to {work} steps on a subject of {subject_len} bytes (the limit is {PATTERN_WORK_MAX}): anchor it with ^, narrow a repeated class (e.g. [^\"]* instead of .-), split the subject, or use string.find with plain = true",
                                subject_len = subject.as_bytes().len()
                            )));
                        }
                    }
                }
            }
            original.call::<mlua::MultiValue>(args)
        })?;
        string.set(name, wrapped)?;
    }
    Ok(())
}

/// Decoded HTTP request headers and query, lower-cased names.
pub type Params = HashMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        let lua = Lua::new();
        bound_patterns(&lua).expect("wrap");
        lua
    }

    /// Runs `code` (which returns a boolean) with `s` as the global `s`: `Ok(ms)` or the error.
    fn run(lua: &Lua, s: &[u8], code: &str) -> Result<f64, String> {
        lua.globals()
            .set("s", lua.create_string(s).expect("string"))
            .expect("set");
        let t = Instant::now();
        lua.load(code).exec().map_err(|e| e.to_string())?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }

    /// Issue 26: `s:find(".-b")` on a 1 MiB body passed the old limits (one quantifier) and held
    /// the policy thread for minutes. Patterns whose worst case is within the budget are let
    /// through, and take about what the budget promises even on subjects made to be bad for them.
    #[test]
    fn a_quadratic_pattern_on_a_large_subject_is_refused_before_it_runs() {
        let lua = lua();
        let mib = vec![b'a'; 1 << 20];
        let e = run(&lua, &mib, "s:find('.-b')").expect_err("refused");
        assert!(e.contains("steps"), "{e}");
        for code in [
            "s:match('(.*)x')",
            "s:gsub('a-b', '')",
            "for x in s:gmatch('a*b') do end",
            // review findings: ^ is no anchor in gmatch; a long literal; a back-reference
            "for x in s:gmatch('^.-b') do end",
            "s:match(('a'):rep(50000) .. 'b')",
            "s:find('(a*)%1b')",
        ] {
            let e = run(&lua, &mib, code).expect_err(code);
            assert!(e.contains("steps"), "{code}: {e}");
        }
        // common shapes on 1 MiB pass: a literal-led capture, splitting on a separator, anchored
        let mut json = b"{\"id\":42,".to_vec();
        json.extend(std::iter::repeat_n(b"\"k\":\"vvvvvvvv\",".as_slice(), 60_000).flatten());
        for code in [
            "assert(s:match('\"id\":(%d+)') == '42')",
            "local n = 0 for x in s:gmatch('[^,]+') do n = n + 1 end assert(n > 1000)",
            "assert(s:find('^{'))",
            "assert(s:find('vvvv', 1, true))",
        ] {
            let ms = run(&lua, &json, code).unwrap_or_else(|e| panic!("{code}: {e}"));
            eprintln!("{code}: {ms:.1} ms on {} bytes", json.len());
        }
        // the worst allowed: a quadratic pattern on a subject just under the budget
        // `.-b` counts 4 items a step
        let side = ((PATTERN_WORK_MAX / 4) as f64).sqrt() as usize - 2;
        let ms = run(&lua, &vec![b'a'; side], "assert(s:find('.-b') == nil)").expect("allowed");
        eprintln!(".-b on {side} bytes without a b (the budget's worst case): {ms:.1} ms");
        assert!(
            run(&lua, &vec![b'a'; side * 2], "s:find('.-b')").is_err(),
            "twice the side is over the budget"
        );
    }

    #[test]
    fn the_estimate_reads_classes_as_lua_does() {
        // (items + 1) x starts x the factors
        let w = |p: &str, s: &str| pattern_work(p.as_bytes(), s.as_bytes(), true);
        // a trailing repetition never backtracks
        assert_eq!(w("a.*", "aaaa"), 5 * 4);
        assert_eq!(w(".-b", "aaaa"), 25 * 4);
        assert_eq!(w("^.-b", "aaaa"), 5 * 4);
        assert_eq!(w("%d+x", "12a345"), 7 * 4 * 5);
        assert_eq!(w("[^,]+,", "ab,cde,f"), 9 * 4 * 7);
        assert_eq!(w("[%a]+1", "ab1"), 4 * 3 * 7);
        assert_eq!(w("(%s*)$", "   "), 4 * 4 * 7);
        assert_eq!(w("%bxy", "abc"), 4 * 4 * 5);
        // in gmatch a leading ^ is a literal: every position is tried
        assert_eq!(pattern_work(b"^.-b", b"aaaa", false), 5 * 5 * 5);
        // a back-reference may compare the whole subject
        assert_eq!(w("(a)%1", "aaa"), 4 * 4 * 6);
    }
}
