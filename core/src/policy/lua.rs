//! The Lua policy host (mlua, Lua 5.4).
//!
//! A script subscribes with `onair.on(name, fn)` and acts with `onair.switch(...)`,
//! `onair.reject(...)` and friends; each Lua function is a thin translation into one
//! [`Action`]. The whole Lua API is registered in one place, [`register`], one line per module.
//!
//! Sandbox: only the `table`, `string`, `math`, `utf8` and `coroutine` libraries are opened (no
//! `io`, `os`, `debug`, `package`, `load*`/`dofile` from disk, no C modules); memory is capped at
//! [`MEMORY_LIMIT`]; every handler call (and the script's top level) is aborted by an instruction
//! hook after [`TIME_LIMIT`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlua::{Function, HookTriggers, Lua, LuaOptions, LuaSerdeExt, StdLib, Table, Value, VmState};

use crate::action::Action;
use crate::event::{Event, SessionId, Source};

/// Memory a script may use, in bytes (64 MiB).
pub const MEMORY_LIMIT: usize = 64 << 20;
/// Wall time one handler call (or the script's top level) may run.
pub const TIME_LIMIT: Duration = Duration::from_millis(100);
/// Instructions between two deadline checks.
const HOOK_EVERY: u32 = 1000;
const HANDLERS: &str = "onair.handlers";

/// A script that failed to load or a handler that failed. Messages carry `file:line`.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("{0}")]
    Lua(String),
}

/// What the Lua functions see of the dispatch in progress.
#[derive(Default)]
struct Dispatch {
    actions: Vec<Action>,
    /// The session of the `publish` event being handled, for `onair.reject`.
    publishing: Option<SessionId>,
    event: &'static str,
}

pub struct LuaHost {
    lua: Lua,
    path: PathBuf,
    dispatch: Arc<Mutex<Dispatch>>,
    deadline: Arc<Mutex<Option<Instant>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Turns an mlua error into one line: the Lua message with its `file:line`, without traceback.
fn describe(e: &mlua::Error) -> String {
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

impl LuaHost {
    /// Loads and runs the script at `path` in a fresh sandboxed state.
    pub fn load(path: &Path) -> Result<LuaHost, ScriptError> {
        let source = std::fs::read_to_string(path).map_err(|e| ScriptError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_source(path, &source)
    }

    /// Like [`Self::load`], with the script text given (`path` names it in messages).
    pub fn from_source(path: &Path, source: &str) -> Result<LuaHost, ScriptError> {
        let lua_err = |e: mlua::Error| ScriptError::Lua(describe(&e));
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE,
            LuaOptions::default(),
        )
        .map_err(lua_err)?;
        lua.set_memory_limit(MEMORY_LIMIT).map_err(lua_err)?;
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let d = deadline.clone();
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, _| match *lock(&d) {
                Some(t) if Instant::now() > t => Err(mlua::Error::runtime(format!(
                    "time limit of {} ms exceeded",
                    TIME_LIMIT.as_millis()
                ))),
                _ => Ok(VmState::Continue),
            },
        )
        .map_err(lua_err)?;
        let host = LuaHost {
            lua,
            path: path.to_path_buf(),
            dispatch: Arc::default(),
            deadline,
        };
        register(&host.lua, &host.script_name(), &host.dispatch).map_err(lua_err)?;
        host.with_deadline(|| {
            host.lua
                .load(source)
                .set_name(format!("@{}", path.display()))
                .exec()
        })
        .map_err(lua_err)?;
        Ok(host)
    }

    fn script_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn with_deadline<T>(&self, f: impl FnOnce() -> mlua::Result<T>) -> mlua::Result<T> {
        *lock(&self.deadline) = Some(Instant::now() + TIME_LIMIT);
        let r = f();
        *lock(&self.deadline) = None;
        r
    }

    /// Runs every handler registered for `event`, in registration order, until one returns
    /// `false`. Returns the actions they asked for. On an error, no action of this dispatch is
    /// kept and the error (with file:line) is returned.
    pub fn dispatch(&mut self, event: &Event) -> Result<Vec<Action>, ScriptError> {
        let lua_err = |e: mlua::Error| ScriptError::Lua(describe(&e));
        *lock(&self.dispatch) = Dispatch {
            actions: Vec::new(),
            publishing: match event {
                Event::Publish(p) => Some(p.session),
                _ => None,
            },
            event: event.name(),
        };
        let handlers: Table = self.lua.named_registry_value(HANDLERS).map_err(lua_err)?;
        let list: Option<Table> = handlers.get(event.name()).map_err(lua_err)?;
        if let Some(list) = list {
            let payload = self
                .lua
                .to_value_with(
                    event,
                    mlua::serde::SerializeOptions::new()
                        .serialize_none_to_null(false)
                        .serialize_unit_to_null(false),
                )
                .map_err(lua_err)?;
            for f in list.sequence_values::<Function>() {
                let f = f.map_err(lua_err)?;
                let ret: Value = self
                    .with_deadline(|| f.call(payload.clone()))
                    .map_err(lua_err)?;
                if ret == Value::Boolean(false) {
                    break;
                }
            }
        }
        Ok(std::mem::take(&mut lock(&self.dispatch).actions))
    }
}

/// The Lua API, one module per line. Every `onair.*` name is defined here and only here.
fn register(lua: &Lua, script: &str, dispatch: &Arc<Mutex<Dispatch>>) -> mlua::Result<()> {
    let onair = lua.create_table()?;
    lua.set_named_registry_value(HANDLERS, lua.create_table()?)?;
    register_events(lua, &onair)?;
    register_actions(lua, &onair, dispatch)?;
    register_log(lua, &onair, script)?;
    // the base library's file loaders would reach outside the sandbox
    lua.globals().set("dofile", Value::Nil)?;
    lua.globals().set("loadfile", Value::Nil)?;
    lua.globals().set("onair", onair)
}

/// `onair.on(name, fn)`: subscribe `fn(event_table)` to an event. Errors on an unknown name.
fn register_events(lua: &Lua, onair: &Table) -> mlua::Result<()> {
    let on = lua.create_function(|lua, (name, f): (String, Function)| {
        if !Event::NAMES.contains(&name.as_str()) {
            return Err(mlua::Error::runtime(format!(
                "onair.on: unknown event {name:?}; events are: {}",
                Event::NAMES.join(", ")
            )));
        }
        let handlers: Table = lua.named_registry_value(HANDLERS)?;
        let list: Table = match handlers.get::<Option<Table>>(name.as_str())? {
            Some(t) => t,
            None => {
                let t = lua.create_table()?;
                handlers.set(name.as_str(), &t)?;
                t
            }
        };
        list.push(f)
    })?;
    onair.set("on", on)
}

/// `onair.switch(source, {media=, reason=})` and `onair.reject(reason)`.
fn register_actions(lua: &Lua, onair: &Table, dispatch: &Arc<Mutex<Dispatch>>) -> mlua::Result<()> {
    let d = dispatch.clone();
    let switch = lua.create_function(move |_, (source, opts): (String, Option<Table>)| {
        let to: Source = source
            .parse()
            .map_err(|e: String| mlua::Error::runtime(format!("onair.switch: {e}")))?;
        let media: Option<String> = opts.as_ref().map(|o| o.get("media")).transpose()?.flatten();
        let reason: Option<String> = opts
            .as_ref()
            .map(|o| o.get("reason"))
            .transpose()?
            .flatten();
        let mut d = lock(&d);
        let reason = reason.unwrap_or_else(|| format!("{} (policy script)", d.event));
        d.actions.push(Action::Switch {
            to,
            media: media.map(PathBuf::from),
            reason,
        });
        Ok(())
    })?;
    onair.set("switch", switch)?;

    let d = dispatch.clone();
    let reject = lua.create_function(move |_, reason: String| {
        let mut d = lock(&d);
        let Some(session) = d.publishing else {
            return Err(mlua::Error::runtime(
                "onair.reject: only a publish handler can reject a publish",
            ));
        };
        d.actions.push(Action::RejectPublish { session, reason });
        Ok(())
    })?;
    onair.set("reject", reject)
}

/// `onair.log.info/warn/error(message)`, through tracing, tagged with the script name.
fn register_log(lua: &Lua, onair: &Table, script: &str) -> mlua::Result<()> {
    let log = lua.create_table()?;
    for level in ["info", "warn", "error"] {
        let script = script.to_string();
        let f = lua.create_function(move |_, msg: String| {
            match level {
                "info" => tracing::info!(script = %script, "{msg}"),
                "warn" => tracing::warn!(script = %script, "{msg}"),
                _ => tracing::error!(script = %script, "{msg}"),
            }
            Ok(())
        })?;
        log.set(level, f)?;
    }
    onair.set("log", log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Publish, Stall};

    fn host(src: &str) -> Result<LuaHost, ScriptError> {
        LuaHost::from_source(Path::new("test.lua"), src)
    }

    fn stall() -> Event {
        Event::Stall(Stall {
            session: 7,
            key: "k…".into(),
            silent_ms: 1200,
            on_air: true,
        })
    }

    fn publish() -> Event {
        Event::Publish(Publish {
            session: 3,
            key: "k…".into(),
            addr: "127.0.0.1:5000".into(),
        })
    }

    #[test]
    fn shipped_failover_script_matches_the_builtin_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/failover.lua");
        let mut h = LuaHost::load(&path).expect("shipped script loads");
        for ev in [publish(), stall()] {
            let got = h.dispatch(&ev).expect("dispatch");
            let want = super::super::builtin::decide(&ev);
            let targets = |v: &[Action]| -> Vec<Source> {
                v.iter()
                    .filter_map(|a| match a {
                        Action::Switch { to, .. } => Some(*to),
                        _ => None,
                    })
                    .collect()
            };
            assert_eq!(targets(&got), targets(&want), "{}", ev.name());
        }
    }

    #[test]
    fn handlers_see_the_payload_and_return_actions() {
        let mut h = host(
            r#"
            onair.on("stall", function(ev)
              assert(ev.event == "stall" and ev.session == 7 and ev.silent_ms == 1200 and ev.on_air == true)
              onair.switch("fallback", {media = "brb.mp4", reason = "stalled"})
            end)"#,
        )
        .expect("loads");
        let actions = h.dispatch(&stall()).expect("dispatch");
        assert_eq!(
            actions,
            vec![Action::Switch {
                to: Source::Fallback,
                media: Some(PathBuf::from("brb.mp4")),
                reason: "stalled".into()
            }]
        );
        assert!(h.dispatch(&publish()).expect("no handler").is_empty());
    }

    #[test]
    fn returning_false_stops_later_handlers() {
        let mut h = host(
            r#"
            onair.on("stall", function() onair.switch("fallback"); return false end)
            onair.on("stall", function() onair.switch("live") end)"#,
        )
        .expect("loads");
        assert_eq!(h.dispatch(&stall()).expect("dispatch").len(), 1);
    }

    #[test]
    fn reject_only_inside_publish() {
        let mut h = host(
            r#"
            onair.on("publish", function(ev) onair.reject("closed for today") end)
            onair.on("stall", function(ev) onair.reject("nope") end)"#,
        )
        .expect("loads");
        assert_eq!(
            h.dispatch(&publish()).expect("dispatch"),
            vec![Action::RejectPublish {
                session: 3,
                reason: "closed for today".into()
            }]
        );
        let e = h.dispatch(&stall()).expect_err("reject outside publish");
        assert!(e.to_string().contains("only a publish handler"), "{e}");
    }

    #[test]
    fn errors_carry_file_and_line() {
        let e = host("onair.on('stall', function() end)\nlocal x = = 1\n")
            .err()
            .expect("syntax");
        assert!(e.to_string().contains("test.lua:2"), "{e}");
        let mut h = host("onair.on('stall', function()\n  error('boom')\nend)\n").expect("loads");
        let e = h.dispatch(&stall()).expect_err("runtime");
        assert!(
            e.to_string().contains("test.lua:2") && e.to_string().contains("boom"),
            "{e}"
        );
    }

    #[test]
    fn bad_arguments_give_clear_errors() {
        let e = host("onair.on('stalled', function() end)")
            .err()
            .expect("unknown event");
        assert!(e.to_string().contains("unknown event \"stalled\""), "{e}");
        let mut h =
            host("onair.on('stall', function() onair.switch('backup') end)").expect("loads");
        let e = h.dispatch(&stall()).expect_err("bad source");
        assert!(
            e.to_string().contains("expected \"live\" or \"fallback\""),
            "{e}"
        );
        let e = host("onair.on('stall', 42)").err().expect("not a function");
        assert!(e.to_string().contains("bad argument"), "{e}");
    }

    #[test]
    fn runaway_handler_is_aborted_within_the_limit() {
        let mut h = host("onair.on('stall', function() while true do end end)").expect("loads");
        let t = Instant::now();
        let e = h.dispatch(&stall()).expect_err("runaway");
        assert!(e.to_string().contains("time limit"), "{e}");
        // generous bound: the limit is 100 ms; this only proves the loop was cut, not speed
        assert!(t.elapsed() < Duration::from_secs(5));
        // the host stays usable
        assert!(h.dispatch(&publish()).is_ok());
    }

    #[test]
    fn sandbox_has_no_io_os_or_loaders() {
        let h = host(
            r#"
            assert(io == nil and os == nil and debug == nil and package == nil and require == nil)
            assert(dofile == nil or not pcall(dofile, "/etc/passwd"))
            assert(loadfile == nil or not pcall(loadfile, "/etc/passwd"))"#,
        );
        assert!(h.is_ok(), "{:?}", h.err());
    }
}
