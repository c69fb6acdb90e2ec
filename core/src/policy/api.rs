//! The Lua API: every `onair.*` name is defined in this file, and [`register`] lists them all.
//! Functions are thin translations: an action function pushes one [`Action`]; the rest read
//! state or schedule work. `docs/lua-api.md` documents each entry; `scripts/types/onair.lua`
//! annotates them for editors.

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlua::{Function, Lua, LuaSerdeExt, Table, Value};

use super::ctx::{
    CALLBACKS, CoreApi, Ctx, HANDLERS, HttpResponse, Job, ROUTES, Reply, RouteDecl, RouteRequest,
    RouteResponse, Services, TIMERS, Timer,
};
use crate::action::{Action, Layer, LayerSource};
use crate::event::{Event, Source};

type Shared = Arc<Mutex<Ctx>>;

/// How Rust values become Lua: `None` becomes nil, not a null sentinel.
pub(crate) fn ser_options() -> mlua::serde::SerializeOptions {
    mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
}

fn rt_err(msg: String) -> mlua::Error {
    mlua::Error::runtime(msg)
}

/// The whole API, one module per line.
pub(crate) fn register(lua: &Lua, ctx: &Shared, services: &Arc<Services>) -> mlua::Result<()> {
    let onair = lua.create_table()?;
    register_events(lua, &onair)?;
    register_actions(lua, &onair, ctx)?;
    register_destinations(lua, &onair, ctx, services)?;
    register_status(lua, &onair, ctx, services)?;
    register_channels(lua, &onair, ctx, services)?;
    register_time(lua, &onair, ctx)?;
    register_http(lua, &onair, ctx, services)?;
    register_obs(lua, &onair, ctx, services)?;
    register_store(lua, &onair, services)?;
    register_log(lua, &onair, ctx)?;
    register_routes(lua, &onair, ctx)?;
    register_overlay(lua, &onair, ctx)?;
    register_require(lua, services)?;
    let g = lua.globals();
    // the base library's file loaders would reach outside the sandbox
    g.set("dofile", Value::Nil)?;
    g.set("loadfile", Value::Nil)?;
    text_chunks_only(lua)?;
    g.set("onair", onair)
}

/// Lua 5.4 runs precompiled bytecode without verifying it, and crafted bytecode reads and
/// writes memory outside the sandbox (native code inside onair, with its keys and sockets). So
/// `load` takes text only (its `mode` argument is always "t": a binary chunk returns nil and
/// "attempt to load a binary chunk (mode is 't')"), and `string.dump`, which makes bytecode, is
/// gone. Script files and `require`d modules are loaded as text too (`ChunkMode::Text`).
fn text_chunks_only(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    let string: Table = g.get("string")?;
    string.set("dump", Value::Nil)?;
    lua.load(
        r##"
        local raw_load, select = ...
        -- an env argument given as nil is not the same as none (it sets _ENV to nil)
        load = function(chunk, name, _mode, ...)
          if select("#", ...) > 0 then return raw_load(chunk, name, "t", (...)) end
          return raw_load(chunk, name, "t")
        end
        "##,
    )
    .set_name("=onair sandbox")
    .set_mode(mlua::chunk::ChunkMode::Text)
    .call::<()>((g.get::<Function>("load")?, g.get::<Function>("select")?))
}

/// `onair.on(name, fn)`.
fn register_events(lua: &Lua, onair: &Table) -> mlua::Result<()> {
    let on = lua.create_function(|lua, (name, f): (String, Function)| {
        if !Event::NAMES.contains(&name.as_str()) {
            return Err(rt_err(format!(
                "onair.on: unknown event {name:?}; events are: {}",
                Event::NAMES.join(", ")
            )));
        }
        let handlers: Table = lua.named_registry_value(HANDLERS)?;
        let list = match handlers.get::<Option<Table>>(name.as_str())? {
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

/// Queues an action of the call in progress. Inside a channel handle's method it is addressed
/// to that channel (a reject stays with the publish it answers).
fn push(ctx: &Shared, a: Action) {
    let mut c = ctx.lock();
    let a = match (&c.target, a) {
        (Some(channel), a) if !matches!(a, Action::RejectPublish { .. }) => Action::OnChannel {
            channel: channel.clone(),
            action: Box::new(a),
        },
        (_, a) => a,
    };
    c.actions.push(a);
}

/// `onair.switch`, `onair.reject`, `onair.kick`, `onair.set_fallback`.
fn register_actions(lua: &Lua, onair: &Table, ctx: &Shared) -> mlua::Result<()> {
    let c = ctx.clone();
    let switch = lua.create_function(move |_, (source, opts): (String, Option<Table>)| {
        let to: Source = source
            .parse()
            .map_err(|e: String| rt_err(format!("onair.switch: {e}")))?;
        let media: Option<String> = opts.as_ref().map(|o| o.get("media")).transpose()?.flatten();
        let reason: Option<String> = opts
            .as_ref()
            .map(|o| o.get("reason"))
            .transpose()?
            .flatten();
        let session: Option<u64> = opts
            .as_ref()
            .map(|o| o.get("session"))
            .transpose()?
            .flatten();
        if session.is_some() && to != Source::Live {
            return Err(rt_err(
                "onair.switch: opts.session goes with \"live\" only".into(),
            ));
        }
        let reason = reason.unwrap_or_else(|| {
            let c = c.lock();
            format!("{} ({})", c.running, c.script)
        });
        push(
            &c,
            Action::Switch {
                to,
                media: media.map(PathBuf::from),
                reason,
                session,
            },
        );
        Ok(())
    })?;
    onair.set("switch", switch)?;

    let c = ctx.clone();
    let reject = lua.create_function(move |_, reason: String| {
        let session = c.lock().publishing.ok_or_else(|| {
            rt_err("onair.reject: only a publish handler can reject a publish".into())
        })?;
        push(&c, Action::RejectPublish { session, reason });
        Ok(())
    })?;
    onair.set("reject", reject)?;

    let c = ctx.clone();
    let kick = lua.create_function(move |_, (session, reason): (u64, Option<String>)| {
        push(
            &c,
            Action::Kick {
                session,
                reason: reason.unwrap_or_else(|| "kicked by policy".into()),
            },
        );
        Ok(())
    })?;
    onair.set("kick", kick)?;

    let c = ctx.clone();
    let set_fallback = lua.create_function(move |_, path: Option<String>| {
        push(
            &c,
            Action::SetFallback {
                media: path.map(PathBuf::from),
            },
        );
        Ok(())
    })?;
    onair.set("set_fallback", set_fallback)
}

/// The core, for `what` (an `onair.*` name in the error while onair starts).
fn core_api<'a>(services: &'a Services, what: &str) -> mlua::Result<&'a Arc<dyn CoreApi>> {
    services
        .core
        .get()
        .ok_or_else(|| rt_err(format!("{what}: not available while onair starts")))
}

/// The status as `GET /api/status` gives it, focused on the channel in scope: a handle's, else
/// the event's, else the primary channel.
fn status_value(services: &Services, ctx: &Shared) -> mlua::Result<serde_json::Value> {
    let core = core_api(services, "onair.status")?;
    let channel = {
        let c = ctx.lock();
        c.target.clone().or_else(|| c.event_channel.clone())
    };
    match channel {
        Some(id) => core
            .status(Some(&id))
            .ok_or_else(|| rt_err(format!("no channel named {id:?}"))),
        None => Ok(core.status(None).unwrap_or_default()),
    }
}

/// `onair.destinations.list/add/remove/enable/disable`.
fn register_destinations(
    lua: &Lua,
    onair: &Table,
    ctx: &Shared,
    services: &Arc<Services>,
) -> mlua::Result<()> {
    let d = lua.create_table()?;
    let s = services.clone();
    let c = ctx.clone();
    d.set(
        "list",
        lua.create_function(move |lua, ()| {
            let st = status_value(&s, &c)?;
            lua.to_value_with(&st["destinations"], ser_options())
        })?,
    )?;
    let c = ctx.clone();
    d.set(
        "add",
        lua.create_function(
            move |_, (name, url, opts): (String, String, Option<Table>)| {
                if let Err(e) = crate::config::DestinationUrl::parse(&url) {
                    return Err(rt_err(format!("onair.destinations.add: {e}")));
                }
                let (profile, segment_minutes, max_total_gib) = match &opts {
                    Some(t) => (
                        t.get("profile")?,
                        t.get("segment_minutes")?,
                        t.get("max_total_gib")?,
                    ),
                    None => (None, None, None),
                };
                push(
                    &c,
                    Action::DestinationAdd {
                        name,
                        url,
                        profile,
                        segment_minutes,
                        max_total_gib,
                    },
                );
                Ok(())
            },
        )?,
    )?;
    for (fname, make) in [
        (
            "remove",
            (|name| Action::DestinationRemove { name }) as fn(String) -> Action,
        ),
        ("enable", |name| Action::DestinationEnable { name }),
        ("disable", |name| Action::DestinationDisable { name }),
    ] {
        let c = ctx.clone();
        d.set(
            fname,
            lua.create_function(move |_, name: String| {
                push(&c, make(name));
                Ok(())
            })?,
        )?;
    }
    onair.set("destinations", d)
}

/// `onair.status()`: the same data as `GET /api/status`, focused on the channel in scope.
fn register_status(
    lua: &Lua,
    onair: &Table,
    ctx: &Shared,
    services: &Arc<Services>,
) -> mlua::Result<()> {
    let s = services.clone();
    let c = ctx.clone();
    let status = lua
        .create_function(move |lua, ()| lua.to_value_with(&status_value(&s, &c)?, ser_options()))?;
    onair.set("status", status)
}

/// What a channel handle offers: these `onair.*` entries, acting on its channel.
const CHANNEL_METHODS: &[&str] = &[
    "switch",
    "set_fallback",
    "kick",
    "reject",
    "status",
    "destinations",
    "overlay",
];

/// `onair.channels()`, `onair.channel(id)` and `onair.channel_create{…}`.
fn register_channels(
    lua: &Lua,
    onair: &Table,
    ctx: &Shared,
    services: &Arc<Services>,
) -> mlua::Result<()> {
    let s = services.clone();
    let channels = lua.create_function(move |lua, ()| {
        let core = core_api(&s, "onair.channels")?;
        let st = core.status(None).unwrap_or_default();
        lua.to_value_with(&st["channels"], ser_options())
    })?;
    onair.set("channels", channels)?;

    let s = services.clone();
    let create = lua.create_function(move |lua, spec: Value| {
        let core = core_api(&s, "onair.channel_create")?;
        let body: serde_json::Value = lua.from_value(spec)?;
        let created = core
            .create_channel(body)
            .map_err(|e| rt_err(format!("onair.channel_create: {e}")))?;
        lua.to_value_with(&created, ser_options())
    })?;
    onair.set("channel_create", create)?;

    let s = services.clone();
    let c = ctx.clone();
    let onair_weak = onair.clone();
    let channel = lua.create_function(move |lua, id: String| {
        let core = core_api(&s, "onair.channel")?;
        if !core.has_channel(&id) {
            return Err(rt_err(format!("onair.channel: no channel named {id:?}")));
        }
        channel_handle(lua, &onair_weak, &c, id)
    })?;
    onair.set("channel", channel)
}

/// A handle on channel `id`: a table whose methods are the `onair.*` entries in
/// [`CHANNEL_METHODS`] (and `start`, `stop`, `delete`), run with the channel as their target.
/// Both `ch:switch("fallback")` and `ch.switch("fallback")` work.
fn channel_handle(lua: &Lua, onair: &Table, ctx: &Shared, id: String) -> mlua::Result<Table> {
    let h = lua.create_table()?;
    h.set("id", id.clone())?;
    for name in CHANNEL_METHODS {
        let v: Value = onair.get(*name)?;
        h.set(*name, scoped(lua, v, &h, ctx, &id)?)?;
    }
    for (name, action) in [
        ("start", Action::ChannelStart),
        ("stop", Action::ChannelStop),
        ("delete", Action::ChannelDelete),
    ] {
        let c = ctx.clone();
        let id = id.clone();
        h.set(
            name,
            lua.create_function(move |_, _: mlua::MultiValue| {
                c.lock().actions.push(Action::OnChannel {
                    channel: id.clone(),
                    action: Box::new(action.clone()),
                });
                Ok(())
            })?,
        )?;
    }
    Ok(h)
}

/// `v` (a function, or a table of functions) wrapped to run with `ctx.target = id`. A first
/// argument that is the handle itself (a `:` call) is dropped.
fn scoped(lua: &Lua, v: Value, handle: &Table, ctx: &Shared, id: &str) -> mlua::Result<Value> {
    match v {
        Value::Function(f) => {
            let c = ctx.clone();
            let id = id.to_string();
            let me = handle.clone();
            let wrapped = lua.create_function(move |_, mut args: mlua::MultiValue| {
                if let Some(Value::Table(t)) = args.front()
                    && t.equals(&me)?
                {
                    args.pop_front();
                }
                let previous = c.lock().target.replace(id.clone());
                let r = f.call::<mlua::MultiValue>(args);
                c.lock().target = previous;
                r
            })?;
            Ok(Value::Function(wrapped))
        }
        Value::Table(t) => {
            let out = lua.create_table()?;
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                out.set(k, scoped(lua, v, &out, ctx, id)?)?;
            }
            Ok(Value::Table(out))
        }
        other => Ok(other),
    }
}

fn add_timer(
    lua: &Lua,
    ctx: &Shared,
    ms: f64,
    f: Function,
    every: bool,
    name: &str,
) -> mlua::Result<u64> {
    if !ms.is_finite() || ms < 0.0 || (every && ms < 10.0) {
        return Err(rt_err(format!(
            "onair.{name}: {ms} ms is not a valid delay{}",
            if every { " (minimum 10 ms)" } else { "" }
        )));
    }
    let d = Duration::from_secs_f64(ms / 1000.0);
    let id = {
        let mut c = ctx.lock();
        let id = c.next_id;
        c.next_id += 1;
        c.timers.push(Timer {
            id,
            due: Instant::now() + d,
            every: every.then_some(d),
        });
        id
    };
    lua.named_registry_value::<Table>(TIMERS)?.set(id, f)?;
    Ok(id)
}

/// `onair.after(ms, fn)`, `onair.every(ms, fn)`, `onair.cancel(id)`, `onair.now()`.
fn register_time(lua: &Lua, onair: &Table, ctx: &Shared) -> mlua::Result<()> {
    let c = ctx.clone();
    onair.set(
        "after",
        lua.create_function(move |lua, (ms, f): (f64, Function)| {
            add_timer(lua, &c, ms, f, false, "after")
        })?,
    )?;
    let c = ctx.clone();
    onair.set(
        "every",
        lua.create_function(move |lua, (ms, f): (f64, Function)| {
            add_timer(lua, &c, ms, f, true, "every")
        })?,
    )?;
    let c = ctx.clone();
    onair.set(
        "cancel",
        lua.create_function(move |lua, id: u64| {
            let mut ctx = c.lock();
            let before = ctx.timers.len();
            ctx.timers.retain(|t| t.id != id);
            let found = ctx.timers.len() != before;
            drop(ctx);
            lua.named_registry_value::<Table>(TIMERS)?
                .set(id, Value::Nil)?;
            Ok(found)
        })?,
    )?;
    onair.set(
        "array",
        lua.create_function(|lua, t: Option<Table>| {
            let t = match t {
                Some(t) => t,
                None => lua.create_table()?,
            };
            t.set_metatable(Some(lua.array_metatable()))?;
            Ok(t)
        })?,
    )?;
    onair.set(
        "now",
        lua.create_function(|_, ()| {
            Ok(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0))
        })?,
    )
}

/// The largest response body `onair.http.request` hands to a script (4 MiB): what a script
/// may parse or pattern-match in one call stays bounded. Larger answers are an error.
pub const HTTP_RESPONSE_MAX: usize = 4 << 20;

/// `onair.http.request(opts, callback)`: runs on the async runtime, never on the policy thread;
/// `callback(response, error)` runs later on the policy thread.
fn register_http(
    lua: &Lua,
    onair: &Table,
    ctx: &Shared,
    services: &Arc<Services>,
) -> mlua::Result<()> {
    let http = lua.create_table()?;
    let c = ctx.clone();
    let s = services.clone();
    let request = lua.create_function(move |lua, (opts, callback): (Table, Function)| {
        let url: String = opts
            .get::<Option<String>>("url")?
            .ok_or_else(|| rt_err("onair.http.request: opts.url is required".into()))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(rt_err(format!(
                "onair.http.request: {url:?} is not an http(s) URL"
            )));
        }
        let method: String = opts
            .get::<Option<String>>("method")?
            .unwrap_or_else(|| "GET".into());
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| rt_err(format!("onair.http.request: bad method {method:?}")))?;
        let timeout_ms: u64 = opts.get::<Option<u64>>("timeout_ms")?.unwrap_or(5000);
        let decode_json: bool = opts.get::<Option<bool>>("decode_json")?.unwrap_or(false);
        let mut headers = Vec::new();
        if let Some(h) = opts.get::<Option<Table>>("headers")? {
            for pair in h.pairs::<String, String>() {
                headers.push(pair?);
            }
        }
        let body: Option<Vec<u8>> = match (
            opts.get::<Value>("json")?,
            opts.get::<Option<mlua::LuaString>>("body")?,
        ) {
            (Value::Nil, None) => None,
            (Value::Nil, Some(b)) => Some(b.as_bytes().to_vec()),
            (json, _) => {
                let v: serde_json::Value = lua.from_value(json)?;
                headers.push(("content-type".into(), "application/json".into()));
                Some(serde_json::to_vec(&v).map_err(|e| rt_err(e.to_string()))?)
            }
        };
        let runtime = s
            .runtime
            .clone()
            .ok_or_else(|| rt_err("onair.http.request: no network in this context".into()))?;
        let (script, generation, id) = {
            let mut ctx = c.lock();
            let id = ctx.next_id;
            ctx.next_id += 1;
            (ctx.script.clone(), ctx.generation, id)
        };
        lua.named_registry_value::<Table>(CALLBACKS)?
            .set(id, callback)?;
        let client = s.http.clone();
        let jobs = s.jobs.clone();
        runtime.spawn(async move {
            let mut rb = client
                .request(method, &url)
                .timeout(Duration::from_millis(timeout_ms));
            for (k, v) in headers {
                rb = rb.header(k, v);
            }
            if let Some(b) = body {
                rb = rb.body(b);
            }
            let result = async {
                let resp = rb.send().await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let headers: Vec<(String, String)> = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let mut resp = resp;
                let mut raw: Vec<u8> = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                    if raw.len() + chunk.len() > HTTP_RESPONSE_MAX {
                        return Err(format!(
                            "response body over {} MiB (the onair.http.request limit)",
                            HTTP_RESPONSE_MAX >> 20
                        ));
                    }
                    raw.extend_from_slice(&chunk);
                }
                let body = String::from_utf8_lossy(&raw).into_owned();
                let json = if decode_json {
                    Some(
                        serde_json::from_str(&body)
                            .map_err(|e| format!("response is not JSON: {e}"))?,
                    )
                } else {
                    None
                };
                Ok(HttpResponse {
                    status,
                    headers,
                    body,
                    json,
                })
            }
            .await;
            let _ = jobs.send(Job::Callback {
                script,
                generation,
                id,
                result: Reply::Http(result),
            });
        });
        Ok(id)
    })?;
    http.set("request", request)?;
    onair.set("http", http)
}

/// A connection made by `onair.obs.connect`: requests go to its task; dropping the last
/// handle (the script reloads) ends it.
struct ObsHandle {
    tx: tokio::sync::mpsc::UnboundedSender<super::obs::ObsRequest>,
    ctx: Shared,
    jobs: crossbeam_channel::Sender<Job>,
}

impl mlua::UserData for ObsHandle {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        // obs:request(type, data?, callback?) → id
        methods.add_method(
            "request",
            |lua, this, (request_type, data, callback): (String, Value, Option<Function>)| {
                let data = match data {
                    Value::Nil => None,
                    v => Some(lua.from_value::<serde_json::Value>(v)?),
                };
                let (script, generation, id) = {
                    let mut ctx = this.ctx.lock();
                    let id = ctx.next_id;
                    ctx.next_id += 1;
                    (ctx.script.clone(), ctx.generation, id)
                };
                let reply: Box<dyn FnOnce(super::obs::ObsResult) + Send> = match callback {
                    Some(f) => {
                        lua.named_registry_value::<Table>(CALLBACKS)?.set(id, f)?;
                        let jobs = this.jobs.clone();
                        Box::new(move |result| {
                            let _ = jobs.send(Job::Callback {
                                script,
                                generation,
                                id,
                                result: Reply::Obs(result),
                            });
                        })
                    }
                    None => {
                        let what = request_type.clone();
                        Box::new(move |result| match result {
                            Ok(r) if !r.ok => tracing::warn!(%script, request = %what, code = r.code, comment = r.comment.as_deref().unwrap_or(""), "obs-websocket request failed"),
                            Err(e) => tracing::warn!(%script, request = %what, "obs-websocket request failed: {e}"),
                            Ok(_) => {}
                        })
                    }
                };
                let req = super::obs::ObsRequest { request_type, data, reply };
                if let Err(e) = this.tx.send(req) {
                    (e.0.reply)(Err("the OBS connection is closed".into()));
                }
                Ok(id)
            },
        );
    }
}

/// `onair.obs.connect{host, port, password}` → a handle with `request(type, data?, callback?)`.
fn register_obs(
    lua: &Lua,
    onair: &Table,
    ctx: &Shared,
    services: &Arc<Services>,
) -> mlua::Result<()> {
    let obs = lua.create_table()?;
    let c = ctx.clone();
    let s = services.clone();
    let connect = lua.create_function(move |_, opts: Table| {
        let host: String = opts
            .get::<Option<String>>("host")?
            .unwrap_or_else(|| "127.0.0.1".into());
        let port: u16 = opts.get::<Option<u16>>("port")?.unwrap_or(4455);
        let password: Option<String> = opts.get("password")?;
        let script = c.lock().script.clone();
        let target = super::obs::ObsTarget {
            host,
            port,
            password,
        };
        let tx = match &s.runtime {
            Some(runtime) => super::obs::start(runtime, target, script),
            // no network here (a check of the script alone): requests fail, saying so
            None => tokio::sync::mpsc::unbounded_channel().0,
        };
        Ok(ObsHandle {
            tx,
            ctx: c.clone(),
            jobs: s.jobs.clone(),
        })
    })?;
    obs.set("connect", connect)?;
    onair.set("obs", obs)
}

/// The table an `onair.obs` request's callback receives: `ok`, `code`, `comment`, `data`.
pub(crate) fn obs_response_table(lua: &Lua, r: &super::obs::ObsResponse) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("ok", r.ok)?;
    t.set("code", r.code)?;
    t.set("comment", r.comment.as_deref())?;
    if let Some(d) = &r.data {
        t.set("data", lua.to_value_with(d, ser_options())?)?;
    }
    Ok(t)
}

/// The table a `http.request` callback receives.
pub(crate) fn http_response_table(lua: &Lua, r: &HttpResponse) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("status", r.status)?;
    let h = lua.create_table()?;
    for (k, v) in &r.headers {
        h.set(k.as_str(), v.as_str())?;
    }
    t.set("headers", h)?;
    t.set("body", r.body.as_str())?;
    if let Some(j) = &r.json {
        t.set("json", lua.to_value_with(j, ser_options())?)?;
    }
    Ok(t)
}

/// `onair.store.get/set/delete`.
fn register_store(lua: &Lua, onair: &Table, services: &Arc<Services>) -> mlua::Result<()> {
    let store = lua.create_table()?;
    let s = services.clone();
    store.set(
        "get",
        lua.create_function(move |lua, key: String| {
            let guard = s.store.lock();
            let st = guard.as_ref().ok_or_else(|| {
                rt_err("onair.store: the store could not be opened (see the log)".into())
            })?;
            match st.get(&key) {
                Some(v) => lua.to_value_with(v, ser_options()),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    let s = services.clone();
    store.set(
        "set",
        lua.create_function(move |lua, (key, value): (String, Value)| {
            let v: Option<serde_json::Value> = match value {
                Value::Nil => None,
                Value::Function(_) | Value::Thread(_) | Value::UserData(_) | Value::LightUserData(_) => {
                    return Err(rt_err(format!("onair.store.set: {key:?}: only JSON-able values (nil, boolean, number, string, table)")));
                }
                v => Some(lua.from_value(v).map_err(|e| rt_err(format!("onair.store.set: {key:?}: {e}")))?),
            };
            let mut guard = s.store.lock();
            let st = guard.as_mut().ok_or_else(|| rt_err("onair.store: the store could not be opened (see the log)".into()))?;
            st.set(&key, v).map_err(|e| rt_err(format!("onair.store.set: {e}")))
        })?,
    )?;
    let s = services.clone();
    store.set(
        "delete",
        lua.create_function(move |_, key: String| {
            let mut guard = s.store.lock();
            let st = guard.as_mut().ok_or_else(|| {
                rt_err("onair.store: the store could not be opened (see the log)".into())
            })?;
            st.set(&key, None)
                .map_err(|e| rt_err(format!("onair.store.delete: {e}")))
        })?,
    )?;
    onair.set("store", store)
}

/// `onair.log.info/warn/error(message)`, through tracing, tagged with the script name.
fn register_log(lua: &Lua, onair: &Table, ctx: &Shared) -> mlua::Result<()> {
    let log = lua.create_table()?;
    for level in ["info", "warn", "error"] {
        let c = ctx.clone();
        let f = lua.create_function(move |_, msg: String| {
            let script = c.lock().script.clone();
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

/// Reads a colour: `"#RRGGBB"`, `"#RRGGBBAA"` or a number 0xRRGGBBAA.
fn color(v: Value) -> mlua::Result<u32> {
    match v {
        Value::Nil => Ok(0xffff_ffff),
        Value::Integer(n) => {
            u32::try_from(n).map_err(|_| rt_err(format!("color {n} is not 0xRRGGBBAA")))
        }
        Value::String(s) => {
            let s = s.to_str()?.to_string();
            let hex = s.strip_prefix('#').unwrap_or(&s);
            let n = u32::from_str_radix(hex, 16)
                .map_err(|_| rt_err(format!("color {s:?} is not #RRGGBB or #RRGGBBAA")))?;
            match hex.len() {
                6 => Ok((n << 8) | 0xff),
                8 => Ok(n),
                _ => Err(rt_err(format!("color {s:?} is not #RRGGBB or #RRGGBBAA"))),
            }
        }
        other => Err(rt_err(format!(
            "color must be a string or a number, not {}",
            other.type_name()
        ))),
    }
}

/// Position, size, z-order and live-only flag of a layer from an options table.
fn placement(name: String, source: LayerSource, o: &Option<Table>) -> mlua::Result<Layer> {
    let get_i = |k: &str| -> mlua::Result<i32> {
        Ok(o.as_ref()
            .map(|o| o.get::<Option<i32>>(k))
            .transpose()?
            .flatten()
            .unwrap_or(0))
    };
    let get_u = |k: &str| -> mlua::Result<u32> {
        Ok(o.as_ref()
            .map(|o| o.get::<Option<u32>>(k))
            .transpose()?
            .flatten()
            .unwrap_or(0))
    };
    Ok(Layer {
        name,
        source,
        x: get_i("x")?,
        y: get_i("y")?,
        width: get_u("width")?,
        height: get_u("height")?,
        z: get_i("z")?,
        live_only: o
            .as_ref()
            .map(|o| o.get::<Option<bool>>("live_only"))
            .transpose()?
            .flatten()
            .unwrap_or(false),
    })
}

/// `onair.overlay.set(name, opts)`, `onair.overlay.text(name, text, opts)`,
/// `onair.overlay.hide(name)`.
fn register_overlay(lua: &Lua, onair: &Table, ctx: &Shared) -> mlua::Result<()> {
    let overlay = lua.create_table()?;
    let c = ctx.clone();
    overlay.set(
        "set",
        lua.create_function(move |lua, (name, opts): (String, Table)| {
            let source = if let Some(plugin) = opts.get::<Option<String>>("plugin")? {
                let data: Value = opts.get("data")?;
                let json: serde_json::Value = if data.is_nil() { serde_json::Value::Null } else { lua.from_value(data)? };
                LayerSource::Plugin { plugin, data: json.to_string() }
            } else if let Some(png) = opts.get::<Option<String>>("png")? {
                LayerSource::Png { path: png.into() }
            } else {
                return Err(rt_err("onair.overlay.set: opts needs plugin= (with data=) or png=; for text use onair.overlay.text".into()));
            };
            let layer = placement(name, source, &Some(opts))?;
            push(&c, Action::OverlaySet { layer });
            Ok(())
        })?,
    )?;
    let c = ctx.clone();
    overlay.set(
        "text",
        lua.create_function(
            move |_, (name, text, opts): (String, String, Option<Table>)| {
                let size_px: u32 = opts
                    .as_ref()
                    .map(|o| o.get::<Option<u32>>("size"))
                    .transpose()?
                    .flatten()
                    .unwrap_or(32);
                let color = color(
                    opts.as_ref()
                        .map(|o| o.get::<Value>("color"))
                        .transpose()?
                        .unwrap_or(Value::Nil),
                )?;
                let font: Option<String> =
                    opts.as_ref().map(|o| o.get("font")).transpose()?.flatten();
                let layer = placement(
                    name,
                    LayerSource::Text {
                        text,
                        size_px,
                        color,
                        font: font.map(Into::into),
                    },
                    &opts,
                )?;
                push(&c, Action::OverlaySet { layer });
                Ok(())
            },
        )?,
    )?;
    let c = ctx.clone();
    overlay.set(
        "hide",
        lua.create_function(move |_, name: String| {
            push(&c, Action::OverlayHide { name });
            Ok(())
        })?,
    )?;
    onair.set("overlay", overlay)
}

/// `onair.route(method, path, fn, {auth=bool})`: only while the script loads. A route needs the
/// login or the token unless it says `{auth = false}`.
fn register_routes(lua: &Lua, onair: &Table, ctx: &Shared) -> mlua::Result<()> {
    let c = ctx.clone();
    let route = lua.create_function(
        move |lua, (method, path, f, opts): (String, String, Function, Option<Table>)| {
            let auth: bool = opts
                .map(|o| o.get::<Option<bool>>("auth"))
                .transpose()?
                .flatten()
                .unwrap_or(true);
            let mut ctx = c.lock();
            if !ctx.loading {
                return Err(rt_err(
                    "onair.route: routes are declared when the script loads, not from handlers"
                        .into(),
                ));
            }
            let index = ctx.routes.len() + 1;
            // validate now so the error points at this line
            let r = super::routes::Route::new(&method, &path, &ctx.script, index, auth)
                .map_err(|e| rt_err(format!("onair.route: {e}")))?;
            if let Some(d) = ctx.routes.iter().find(|d| {
                super::routes::Route::new(&d.method, &d.path, "", 0, d.auth)
                    .is_ok_and(|x| x.clashes(&r))
            }) {
                return Err(rt_err(format!(
                    "onair.route: {} {} is declared twice in this script (also {} {})",
                    r.method, path, d.method, d.path
                )));
            }
            ctx.routes.push(RouteDecl {
                method: r.method.clone(),
                path,
                auth: r.auth,
                index,
            });
            drop(ctx);
            lua.named_registry_value::<Table>(ROUTES)?.set(index, f)
        },
    )?;
    onair.set("route", route)
}

/// The request table a route handler receives.
pub(crate) fn route_request_table(lua: &Lua, req: &RouteRequest) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("method", req.method.as_str())?;
    t.set("path", req.path.as_str())?;
    for (name, map) in [
        ("params", &req.params),
        ("query", &req.query),
        ("headers", &req.headers),
    ] {
        let m = lua.create_table()?;
        for (k, v) in map {
            m.set(k.as_str(), v.as_str())?;
        }
        t.set(name, m)?;
    }
    t.set("body", lua.create_string(&req.body)?)?;
    if let Ok(j) = serde_json::from_slice::<serde_json::Value>(&req.body) {
        t.set("json", lua.to_value_with(&j, ser_options())?)?;
    }
    Ok(t)
}

/// Reads a route handler's answer: `{status=, json=}`, `{status=, html=}` or
/// `{status=, body=, headers=}`.
pub(crate) fn route_response(lua: &Lua, ret: Value) -> mlua::Result<RouteResponse> {
    let Value::Table(t) = ret else {
        return Err(rt_err(format!(
            "route handler returned {} instead of a table like {{status=200, json=...}}",
            ret.type_name()
        )));
    };
    let status: u16 = t.get::<Option<u16>>("status")?.unwrap_or(200);
    if !(100..=599).contains(&status) {
        return Err(rt_err(format!("route handler returned status {status}")));
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = t.get::<Option<Table>>("headers")? {
        for pair in h.pairs::<String, String>() {
            headers.push(pair?);
        }
    }
    let json: Value = t.get("json")?;
    let (content_type, body) = if !json.is_nil() {
        let v: serde_json::Value = lua.from_value(json)?;
        (
            "application/json".to_string(),
            serde_json::to_vec(&v).map_err(|e| rt_err(e.to_string()))?,
        )
    } else if let Some(html) = t.get::<Option<mlua::LuaString>>("html")? {
        (
            "text/html; charset=utf-8".to_string(),
            html.as_bytes().to_vec(),
        )
    } else if let Some(body) = t.get::<Option<mlua::LuaString>>("body")? {
        (
            "text/plain; charset=utf-8".to_string(),
            body.as_bytes().to_vec(),
        )
    } else {
        ("text/plain; charset=utf-8".to_string(), Vec::new())
    };
    Ok(RouteResponse {
        status,
        headers,
        content_type,
        body,
    })
}

/// `require(name)`: loads `<scripts.dir>/<name with dots as slashes>.lua`, once per script.
fn register_require(lua: &Lua, services: &Arc<Services>) -> mlua::Result<()> {
    let dir = services.dir.clone();
    let loaded = lua.create_table()?;
    lua.set_named_registry_value("onair.modules", loaded)?;
    let require = lua.create_function(move |lua, name: String| {
        let modules: Table = lua.named_registry_value("onair.modules")?;
        if let Some(v) = modules.get::<Option<Value>>(name.as_str())? {
            return Ok(v);
        }
        let ok = !name.is_empty()
            && name.split('.').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !ok {
            return Err(rt_err(format!(
                "require: {name:?} is not a module name (letters, digits, '_', '-', dots)"
            )));
        }
        let rel: PathBuf = name.split('.').collect::<PathBuf>().with_extension("lua");
        let path = dir.join(&rel);
        if !path.is_file() {
            return Err(rt_err(format!(
                "require: module {name:?} not found in {}",
                dir.display()
            )));
        }
        let src = super::ctx::read_source(&path)
            .map_err(|e| rt_err(format!("require: module {name:?}: {e}")))?;
        let v: Value = lua
            .load(src)
            .set_name(format!("@{}", path.display()))
            .set_mode(mlua::chunk::ChunkMode::Text)
            .call(name.as_str())?;
        let v = if v.is_nil() { Value::Boolean(true) } else { v };
        modules.set(name.as_str(), v.clone())?;
        Ok(v)
    })?;
    lua.globals().set("require", require)
}

/// Top-level scripts of `dir`, in name order (modules live in subfolders).
pub fn script_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "lua"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
