//! The Lua policy host through its public API: real chunks from `tests/lua/` assert inside
//! themselves; actions round-trip; script routes answer through `warp::test`; reloads swap
//! generations; a runaway handler is cut off and the built-in default decides.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onair::action::Action;
use onair::event::*;
use onair::policy::host::ScriptInfo;
use onair::policy::{CoreApi, Policy, PolicyOptions};
use support::wait_until;

struct Fixture {
    dir: tempfile::TempDir,
    policy: Policy,
    actions: tokio::sync::mpsc::UnboundedReceiver<Vec<Action>>,
    rt: tokio::runtime::Runtime,
}

fn fixture(files: &[(&str, &str)], memory_mib: usize, time_ms: u64) -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        let p = dir.path().join("scripts").join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write script");
    }
    std::fs::create_dir_all(dir.path().join("scripts")).expect("mkdir");
    let core: onair::policy::CoreCell = Arc::default();
    let _ = core.set(Arc::new(FakeCore));
    let (tx, actions) = tokio::sync::mpsc::unbounded_channel();
    let (policy, _errors) = Policy::start(PolicyOptions {
        dir: dir.path().join("scripts"),
        db: Some(Arc::new(
            onair::db::Db::open(&dir.path().join("data")).expect("database"),
        )),
        store_import: None,
        core,
        actions: Some(tx),
        runtime: Some(rt.handle().clone()),
        watch: true,
        memory_limit: memory_mib << 20,
        time_limit: Duration::from_millis(time_ms),
        plugins: None,
        metrics: None,
    });
    Fixture {
        dir,
        policy,
        actions,
        rt,
    }
}

impl Fixture {
    fn script(&self, name: &str) -> Option<ScriptInfo> {
        self.policy.scripts().into_iter().find(|s| s.name == name)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("scripts").join(name)
    }
    /// `onair.store` as the database holds it (read through a second connection).
    fn store(&self) -> serde_json::Value {
        onair::db::Db::open(&self.dir.path().join("data"))
            .ok()
            .and_then(|db| onair::policy::store::load(&db).ok())
            .map(|m| serde_json::json!(m))
            .unwrap_or_default()
    }
    fn decide(&self, ev: Event) -> Vec<Action> {
        self.rt.block_on(self.policy.decide(ev))
    }
    /// Waits for the script to set `done` in the store, failing on its first error.
    fn wait_done(&self, name: &str) {
        let ok = wait_until(Duration::from_secs(10), || {
            self.store()["done"] == true
                || self.script(name).is_some_and(|s| s.last_error.is_some())
        });
        let info = self.script(name);
        assert!(
            info.as_ref().is_some_and(|s| s.last_error.is_none()),
            "{name}: {info:?}"
        );
        assert!(
            ok && self.store()["done"] == true,
            "{name} did not finish: {info:?}"
        );
    }
}

fn sample_events() -> Vec<Event> {
    vec![
        Event::Publish(Publish {
            channel: "default".into(),
            session: 3,
            key: "k…y".into(),
            account: Some("alice".into()),
            addr: "203.0.113.5:50000".into(),
        }),
        Event::Unpublish(Unpublish {
            channel: "default".into(),
            session: 2,
            key: "k…y".into(),
            reason: "disconnected".into(),
            on_air: false,
        }),
        Event::Stall(Stall {
            channel: "default".into(),
            session: 3,
            key: "k…y".into(),
            silent_ms: 1000,
            on_air: true,
        }),
        Event::Resume(Resume {
            channel: "default".into(),
            session: 3,
            key: "k…y".into(),
            stalled_ms: 1500,
            on_air: true,
        }),
        Event::Switched(Switched {
            channel: "default".into(),
            from: Source::Live,
            to: Source::Fallback,
            reason: "r".into(),
            session: None,
        }),
        Event::DestinationUp(DestinationUp {
            channel: "default".into(),
            name: "a".into(),
            url: "rtmp://h/app/…".into(),
            attempt: 1,
        }),
        Event::DestinationDown(DestinationDown {
            channel: "default".into(),
            name: "a".into(),
            error: "refused".into(),
        }),
        Event::DestinationRetry(DestinationRetry {
            channel: "default".into(),
            name: "a".into(),
            attempt: 2,
            delay_ms: 1000,
        }),
    ]
}

/// An HTTP server that answers every request with `{"method": M, "body": B}`.
fn echo_server() -> u16 {
    support::http_server(|method, body| {
        let out = serde_json::json!({"method": method, "body": String::from_utf8_lossy(body)})
            .to_string();
        (200, "application/json".into(), out.into_bytes())
    })
}

fn lua_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/lua")
}

#[test]
fn lua_chunks_pass_their_own_asserts() {
    let port = echo_server();
    let mut files: Vec<PathBuf> = std::fs::read_dir(lua_dir())
        .expect("tests/lua")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "lua"))
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let env = format!("return {{ port = {port} }}");
        let fx = fixture(
            &[
                ("test.lua", &text),
                ("testenv.lua", &env),
                (
                    "lib/util.lua",
                    "return { double = function(x) return 2 * x end }",
                ),
            ],
            8,
            2000,
        );
        let info = fx.script("test.lua");
        assert!(
            info.as_ref().is_some_and(|i| i.loaded),
            "{}: {info:?}",
            f.display()
        );
        for ev in sample_events() {
            fx.decide(ev);
        }
        fx.wait_done("test.lua");
    }
}

#[test]
fn every_lua_action_maps_onto_one_core_action() {
    let fx = fixture(
        &[(
            "failover.lua",
            r##"
            onair.on("publish", function(ev) onair.reject("closed today") end)
            onair.on("stall", function(ev)
              onair.switch("fallback", { media = "brb.mp4", reason = "stalled" })
              onair.kick(ev.session, "too many stalls")
              onair.set_fallback("img.png")
              onair.destinations.add("yt", "rtmp://a.rtmp.youtube.com/live2/k")
              onair.destinations.add("rec", "file:///r/{utc}.mp4", { profile = "small", segment_minutes = 30, max_total_gib = 1.5 })
              onair.destinations.disable("yt")
              onair.destinations.enable("yt")
              onair.destinations.remove("yt")
              onair.overlay.set("score", { plugin = "scoreboard", data = { a = 1 }, x = 10, y = 20, z = 2, live_only = true })
              onair.overlay.text("name", "Hi", { size = 40, color = "#ffcc00", font = "fonts/Title.ttf" })
              onair.overlay.hide("score")
            end)
            onair.on("resume", function(ev)
              -- a session goes with "live" only
              assert(not pcall(onair.switch, "fallback", { session = ev.session }))
              onair.switch("live", { session = ev.session })
            end)"##,
        )],
        64,
        100,
    );
    let evs = sample_events();
    assert_eq!(
        fx.decide(evs[0].clone()),
        vec![Action::RejectPublish {
            session: 3,
            reason: "closed today".into()
        }]
    );
    assert_eq!(
        fx.decide(evs[2].clone()),
        vec![
            Action::Switch {
                to: Source::Fallback,
                media: Some("brb.mp4".into()),
                reason: "stalled".into(),
                session: None,
            },
            Action::Kick {
                session: 3,
                reason: "too many stalls".into()
            },
            Action::SetFallback {
                media: Some("img.png".into())
            },
            Action::DestinationAdd {
                name: "yt".into(),
                url: "rtmp://a.rtmp.youtube.com/live2/k".into(),
                profile: None,
                segment_minutes: None,
                max_total_gib: None,
            },
            Action::DestinationAdd {
                name: "rec".into(),
                url: "file:///r/{utc}.mp4".into(),
                profile: Some("small".into()),
                segment_minutes: Some(30),
                max_total_gib: Some(1.5),
            },
            Action::DestinationDisable { name: "yt".into() },
            Action::DestinationEnable { name: "yt".into() },
            Action::DestinationRemove { name: "yt".into() },
            Action::OverlaySet {
                layer: onair::action::Layer {
                    name: "score".into(),
                    source: onair::action::LayerSource::Plugin {
                        plugin: "scoreboard".into(),
                        data: r#"{"a":1}"#.into()
                    },
                    x: 10,
                    y: 20,
                    width: 0,
                    height: 0,
                    z: 2,
                    live_only: true,
                }
            },
            Action::OverlaySet {
                layer: onair::action::Layer {
                    name: "name".into(),
                    source: onair::action::LayerSource::Text {
                        text: "Hi".into(),
                        size_px: 40,
                        color: 0xffcc00ff,
                        font: Some("fonts/Title.ttf".into()),
                    },
                    x: 0,
                    y: 0,
                    width: 0,
                    height: 0,
                    z: 0,
                    live_only: false,
                }
            },
            Action::OverlayHide {
                name: "score".into()
            },
        ]
    );
    assert_eq!(
        fx.decide(evs[3].clone()),
        vec![Action::Switch {
            to: Source::Live,
            media: None,
            reason: "resume (failover.lua)".into(),
            session: Some(evs[3].session().expect("resume has a session")),
        }]
    );
    // no handler → no action; the policy script is running, so no built-in default either
    assert!(fx.decide(evs[1].clone()).is_empty());
}

#[test]
fn channel_handles_address_their_channel_and_unqualified_calls_stay_unaddressed() {
    let fx = fixture(
        &[(
            "failover.lua",
            r##"
            onair.on("stall", function(ev)
              assert(ev.channel == "default")
              -- unqualified: the engine sends these to the event's channel
              onair.switch("fallback", { reason = "own" })
              local b = onair.channel("b")
              assert(b.id == "b")
              b:switch("live", { reason = "method call" })
              b.destinations.disable("yt")
              b.overlay.hide("score")
              b:stop()
              b.start()
              b:delete()
              assert(b:status().channel == "b", "a handle's status is its channel's")
              assert(b.destinations.list()[1].name == "fixture-b")
              assert(onair.status().channel == "default", "the event's channel outside the handle")
              local ok, err = pcall(onair.channel, "nope")
              assert(not ok and tostring(err):find('no channel named "nope"'), tostring(err))
              local list = onair.channels()
              assert(#list == 2 and list[1].id == "b")
              local made = onair.channel_create({ id = "court-3", name = "Court 3" })
              assert(made.id == "court-3" and made.stream_keys[1] == "live_x")
              ok, err = pcall(onair.channel_create, { id = "b" })
              assert(not ok and tostring(err):find("onair.channel_create: a channel named it exists"), tostring(err))
            end)"##,
        )],
        64,
        1000,
    );
    let on = |channel: &str, action: Action| Action::OnChannel {
        channel: channel.into(),
        action: Box::new(action),
    };
    let info = fx.script("failover.lua");
    assert!(info.as_ref().is_some_and(|i| i.loaded), "{info:?}");
    let got = fx.decide(sample_events()[2].clone());
    assert_eq!(
        got,
        vec![
            Action::Switch {
                to: Source::Fallback,
                media: None,
                reason: "own".into(),
                session: None,
            },
            on(
                "b",
                Action::Switch {
                    to: Source::Live,
                    media: None,
                    reason: "method call".into(),
                    session: None,
                }
            ),
            on("b", Action::DestinationDisable { name: "yt".into() }),
            on(
                "b",
                Action::OverlayHide {
                    name: "score".into()
                }
            ),
            on("b", Action::ChannelStop),
            on("b", Action::ChannelStart),
            on("b", Action::ChannelDelete),
        ]
    );
    let info = fx.script("failover.lua");
    assert!(
        info.as_ref().is_some_and(|i| i.last_error.is_none()),
        "{info:?}"
    );
}

#[test]
fn timer_actions_reach_the_engine_channel() {
    let mut fx = fixture(
        &[(
            "t.lua",
            "onair.after(30, function() onair.switch('fallback', {reason = 'timer'}) end)",
        )],
        64,
        100,
    );
    let got = fx
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), fx.actions.recv()).await });
    assert_eq!(
        got.ok().flatten(),
        Some(vec![Action::Switch {
            to: Source::Fallback,
            media: None,
            reason: "timer".into(),
            session: None,
        }])
    );
}

/// Real Lua 5.4 bytecode (a function returning 42), made outside any sandbox.
fn bytecode() -> Vec<u8> {
    let lua = mlua::Lua::new();
    let f = lua.load("return 42").into_function().expect("compile");
    let b = f.dump(false);
    assert!(b.starts_with(b"\x1bLua"), "{:02x?}", &b[..8]);
    b
}

/// Issue 26, hole 2: Lua 5.4 does not verify bytecode, so a chunk from `string.dump` (or a
/// crafted one) ran inside onair. `load` now takes text only whatever mode is asked,
/// `string.dump` is gone, and a precompiled script file or `require`d module is refused.
#[test]
fn the_sandbox_loads_text_only() {
    let bc = bytecode();
    let escaped: String = bc.iter().map(|b| format!("\\{b}")).collect();
    let script = format!(
        r#"
        local bc = "{escaped}"
        assert(string.dump == nil and ("").dump == nil, "string.dump is gone")
        for _, args in ipairs({{ {{}}, {{ "x", "b" }}, {{ "x", "bt" }}, {{ "x", "bt", {{}} }} }}) do
          local f, err = load(bc, table.unpack(args))
          assert(f == nil and tostring(err):find("binary chunk"), tostring(err))
        end
        local chunks = {{ bc }}
        local f, err = load(function() return table.remove(chunks, 1) end)
        assert(f == nil and tostring(err):find("binary chunk"), "reader: " .. tostring(err))
        -- text still loads, with and without an environment
        assert(load("return 1 + 1")() == 2)
        assert(load("return x", "c", "t", {{ x = 5 }})() == 5)
        assert(load("return x", "c", "b", {{ x = 6 }})() == 6)
        onair.store.set("done", true)
        "#
    );
    let fx = fixture(&[("test.lua", &script)], 8, 2000);
    fx.wait_done("test.lua");
    // a precompiled script dropped into scripts.dir, and a precompiled module
    std::fs::write(fx.path("zz_pre.lua"), &bc).expect("write");
    std::fs::create_dir_all(fx.path("lib")).expect("mkdir");
    std::fs::write(fx.path("lib/pre.lua"), &bc).expect("write");
    std::fs::write(
        fx.path("zz_req.lua"),
        r#"local ok, err = pcall(require, "lib.pre")
        assert(not ok and tostring(err):find("bytecode"), tostring(err))
        onair.store.set("required", true)"#,
    )
    .expect("write");
    let refused = |name: &str| {
        fx.script(name).is_some_and(|s| {
            !s.loaded
                && s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("bytecode"))
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || refused("zz_pre.lua")),
        "{:?}",
        fx.script("zz_pre.lua")
    );
    assert!(
        wait_until(Duration::from_secs(10), || fx.store()["required"] == true),
        "{:?}",
        fx.script("zz_req.lua")
    );
    // still refused 3 s later (no reload turned it into a load)
    std::thread::sleep(Duration::from_secs(3));
    assert!(refused("zz_pre.lua"), "{:?}", fx.script("zz_pre.lua"));
}

#[test]
fn script_routes_through_warp() {
    let text = std::fs::read_to_string(lua_dir().join("status_routes_sandbox.lua")).expect("read");
    let fx = fixture(&[("routes.lua", &text)], 8, 2000);
    assert!(
        fx.script("routes.lua")
            .is_some_and(|s| s.loaded && s.routes.len() == 8),
        "{:?}",
        fx.script("routes.lua")
    );
    let token = "0123456789abcdef-token";
    let filter = onair::http::script_routes(
        fx.policy.clone(),
        onair::http::Gate::new(Some(token.into()), None, true),
    );
    fx.rt.block_on(async {
        let r = warp::test::request()
            .method("GET")
            .path("/queue/7?verbose=1")
            .header("x-test", "yes")
            .reply(&filter)
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.body());
        let v: serde_json::Value = serde_json::from_slice(r.body()).expect("json");
        assert_eq!(v, serde_json::json!({"id": 7, "n": 0}));

        let r = warp::test::request()
            .method("POST")
            .path("/echo")
            .body(r#"{"a":[1,2],"b":"x"}"#)
            .reply(&filter)
            .await;
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = serde_json::from_slice(r.body()).expect("json");
        assert_eq!(v, serde_json::json!({"a": [1, 2], "b": "x"}));

        let r = warp::test::request().path("/boom").reply(&filter).await;
        assert_eq!(r.status(), 500);
        let body = String::from_utf8_lossy(r.body()).to_string();
        assert!(
            !body.contains("kaboom") && !body.contains("routes.lua"),
            "trace leaked: {body}"
        );
        // the 500's cause is in /api/scripts and the log, with file:line
        let err = fx
            .script("routes.lua")
            .and_then(|s| s.last_error)
            .unwrap_or_default();
        assert!(
            err.contains("routes.lua:") && err.contains("kaboom"),
            "{err}"
        );

        let r = warp::test::request().path("/nonsense").reply(&filter).await;
        assert_eq!(r.status(), 500, "a nonsense answer is a 500");

        let r = warp::test::request().path("/page").reply(&filter).await;
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.body().as_ref(), b"<h1>hi</h1>");

        for path in ["/api/secret", "/closed"] {
            let r = warp::test::request().path(path).reply(&filter).await;
            assert_eq!(r.status(), 401, "{path} without a token");
            let r = warp::test::request()
                .path(path)
                .header("authorization", "Bearer wrong-token-000000")
                .reply(&filter)
                .await;
            assert_eq!(r.status(), 401, "{path} with a wrong token");
            let r = warp::test::request()
                .path(path)
                .header("authorization", format!("Bearer {token}"))
                .reply(&filter)
                .await;
            assert_eq!(r.status(), 200, "{path} with the token");
        }
        let r = warp::test::request()
            .path("/api/secret")
            .header("authorization", format!("Bearer {token}"))
            .reply(&filter)
            .await;
        assert_eq!(r.headers()["x-a"], "b");
        let r = warp::test::request().path("/open").reply(&filter).await;
        assert_eq!(r.status(), 200);
        let r = warp::test::request().path("/nowhere").reply(&filter).await;
        assert_eq!(r.status(), 404);
    });
    // the last error is the nonsense answer's
    let err = fx
        .script("routes.lua")
        .and_then(|s| s.last_error)
        .unwrap_or_default();
    assert!(err.contains("instead of a table"), "{err}");
}

/// A `Write` into a shared buffer, for the log lines a test asserts on.
#[derive(Clone, Default)]
struct LogBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn script_routes_need_auth_by_default_and_answer_sandboxed_without_onairs_headers() {
    let script = r#"
onair.route("GET", "/private", function() return { json = { ok = true } } end)
onair.route("GET", "/public", function() return { json = { ok = true } } end, { auth = false })
onair.route("GET", "/cookie", function()
  return { body = "c", headers = {
    ["Set-Cookie"] = "onair_session=x; Path=/",
    ["Content-Security-Policy"] = "none",
    ["Access-Control-Allow-Credentials"] = "true",
    ["X-Kept"] = "yes",
  } }
end, { auth = false })
onair.route("GET", "/page", function() return { html = "<script>fetch('/api/status')</script>" } end)
local ok, err = pcall(onair.route, "GET", "/api/open", function() end, { auth = false })
assert(not ok and tostring(err):find("always need the login or the token"), tostring(err))
"#;
    let fx = fixture(&[("sandboxed.lua", script)], 8, 2000);
    assert!(
        fx.script("sandboxed.lua")
            .is_some_and(|s| s.loaded && s.routes.len() == 4),
        "{:?}",
        fx.script("sandboxed.lua")
    );
    let token = "0123456789abcdef-token";
    let filter = onair::http::script_routes(
        fx.policy.clone(),
        onair::http::Gate::new(Some(token.into()), None, false),
    );
    let bearer = format!("Bearer {token}");
    let log = LogBuf::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        fx.rt.block_on(async {
            // no opts: the login or the token
            let r = warp::test::request().path("/private").reply(&filter).await;
            assert_eq!(r.status(), 401, "a route without opts is public");
            let r = warp::test::request()
                .path("/private")
                .header("authorization", &bearer)
                .reply(&filter)
                .await;
            assert_eq!(r.status(), 200, "{:?}", r.body());
            assert!(
                !r.headers().contains_key("access-control-allow-origin"),
                "a route behind the login is readable from other origins"
            );
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");

            // {auth = false}: anyone, and any origin may read it (without credentials)
            let r = warp::test::request().path("/public").reply(&filter).await;
            assert_eq!(r.status(), 200, "{:?}", r.body());
            assert_eq!(r.headers()["access-control-allow-origin"], "*");
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");

            // the session cookie and the security headers are onair's
            let r = warp::test::request().path("/cookie").reply(&filter).await;
            assert_eq!(r.status(), 200);
            assert!(
                r.headers().get("set-cookie").is_none(),
                "a script set {:?}",
                r.headers().get("set-cookie")
            );
            let csp: Vec<_> = r
                .headers()
                .get_all("content-security-policy")
                .iter()
                .collect();
            assert_eq!(csp, ["sandbox allow-scripts allow-forms"]);
            assert!(
                r.headers()
                    .get("access-control-allow-credentials")
                    .is_none()
            );
            assert_eq!(r.headers()["access-control-allow-origin"], "*");
            assert_eq!(r.headers()["x-kept"], "yes", "other headers pass");

            // a page runs sandboxed, in an opaque origin
            let r = warp::test::request()
                .path("/page")
                .header("authorization", &bearer)
                .reply(&filter)
                .await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
            assert_eq!(
                r.headers()["content-security-policy"],
                "sandbox allow-scripts allow-forms"
            );
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");
            // a second answer logs nothing new
            warp::test::request().path("/cookie").reply(&filter).await;
        })
    });
    let text =
        String::from_utf8_lossy(&log.0.lock().unwrap_or_else(|p| p.into_inner())).to_string();
    let dropped: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("a header onair owns was dropped"))
        .collect();
    assert_eq!(
        dropped.len(),
        3,
        "one WARN per header, once per route:\n{text}"
    );
    for header in [
        "Set-Cookie",
        "Content-Security-Policy",
        "Access-Control-Allow-Credentials",
    ] {
        assert!(
            dropped.iter().any(|l| l.contains("WARN")
                && l.contains("script=sandboxed.lua")
                && l.contains("GET /cookie")
                && l.contains(&format!("header={header}"))),
            "{header}:\n{text}"
        );
    }
}

#[test]
fn duplicate_routes_are_reported_and_routes_go_with_their_script() {
    let fx = fixture(
        &[
            (
                "a.lua",
                "onair.route('GET', '/queue', function() return {body='a'} end)",
            ),
            (
                "b.lua",
                "onair.route('GET', '/queue', function() return {body='b'} end)",
            ),
        ],
        64,
        100,
    );
    let b = fx.script("b.lua").expect("b listed");
    assert!(!b.loaded);
    assert!(
        b.last_error
            .as_deref()
            .unwrap_or("")
            .contains("duplicate route GET /queue: already served by a.lua"),
        "{b:?}"
    );
    let filter =
        onair::http::script_routes(fx.policy.clone(), onair::http::Gate::new(None, None, true));
    let get = |f: &_| {
        fx.rt
            .block_on(warp::test::request().path("/queue").reply(f))
    };
    assert_eq!(get(&filter).body().as_ref(), b"a");

    std::fs::remove_file(fx.path("a.lua")).expect("rm");
    assert!(
        wait_until(Duration::from_secs(5), || fx.script("a.lua").is_none()),
        "a.lua not unloaded"
    );
    assert_eq!(get(&filter).status(), 404, "the route outlived its script");
}

#[test]
fn reload_swaps_generations_and_a_broken_save_keeps_the_old_one() {
    let v = |n: u32| {
        format!("onair.on('stall', function() onair.switch('fallback', {{reason = 'v{n}'}}) end)")
    };
    let fx = fixture(&[("failover.lua", &v(1))], 64, 100);
    let stall = sample_events()[2].clone();
    let reason = |fx: &Fixture| match fx.decide(stall.clone()).first() {
        Some(Action::Switch { reason, .. }) => reason.clone(),
        other => format!("{other:?}"),
    };
    assert_eq!(reason(&fx), "v1");
    let mut times = Vec::new();
    for n in 2..=4 {
        let t = Instant::now();
        std::fs::write(fx.path("failover.lua"), v(n)).expect("write");
        assert!(
            wait_until(Duration::from_secs(5), || fx
                .script("failover.lua")
                .is_some_and(|s| s.generation == u64::from(n))),
            "generation {n} never loaded"
        );
        times.push(t.elapsed().as_millis());
        assert_eq!(reason(&fx), format!("v{n}"));
        // a broken save: the old generation stays, the error names file:line
        std::fs::write(
            fx.path("failover.lua"),
            "onair.on('stall', function()\n  oops(\n",
        )
        .expect("write");
        assert!(wait_until(Duration::from_secs(5), || fx
            .script("failover.lua")
            .is_some_and(|s| s.last_error.is_some())));
        let info = fx.script("failover.lua").expect("info");
        assert_eq!(info.generation, u64::from(n));
        assert!(
            info.last_error
                .as_deref()
                .unwrap_or("")
                .contains("failover.lua:3"),
            "{info:?}"
        );
        assert_eq!(
            reason(&fx),
            format!("v{n}"),
            "the broken save replaced the policy"
        );
    }
    eprintln!("save → new generation: {times:?} ms");
}

#[test]
fn a_runaway_handler_is_cut_off_and_the_builtin_default_decides() {
    let fx = fixture(
        &[(
            "failover.lua",
            "onair.on('stall', function() while true do end end)",
        )],
        64,
        100,
    );
    let t = Instant::now();
    let actions = fx.decide(sample_events()[2].clone());
    let took = t.elapsed();
    assert!(
        matches!(
            actions.as_slice(),
            [Action::Switch {
                to: Source::Fallback,
                ..
            }]
        ),
        "{actions:?}"
    );
    assert!(took < Duration::from_secs(5), "the runaway ran {took:?}");
    let err = fx
        .script("failover.lua")
        .and_then(|s| s.last_error)
        .unwrap_or_default();
    assert!(err.contains("time limit of 100 ms exceeded"), "{err}");
    // the host keeps working: the next stall is cut off again and decided the same way
    let again = fx.decide(sample_events()[2].clone());
    assert!(
        matches!(
            again.as_slice(),
            [Action::Switch {
                to: Source::Fallback,
                ..
            }]
        ),
        "{again:?}"
    );
}

fn is_fallback(actions: &[Action]) -> bool {
    matches!(
        actions,
        [Action::Switch {
            to: Source::Fallback,
            ..
        }]
    )
}

#[test]
fn the_time_limit_cannot_be_caught_and_repeat_offenders_are_quarantined() {
    // every way to catch an error in Lua 5.4, each around a loop that never ends
    let runaway = r#"
onair.on('stall', function()
  while true do pcall(function() while true do end end) end
end)
onair.on('unpublish', function()
  while true do
    xpcall(function() while true do end end, function(e) return e end)
    local co = coroutine.create(function() while true do end end)
    coroutine.resume(co)
  end
end)
onair.on('publish', function() onair.switch('live', { reason = 'script' }) end)
"#;
    let fx = fixture(&[("failover.lua", runaway)], 64, 100);
    let stall = sample_events()[2].clone();
    let unpublish = Event::Unpublish(Unpublish {
        channel: "default".into(),
        session: 3,
        key: "k…y".into(),
        reason: "disconnected".into(),
        on_air: true,
    });
    let trips = || fx.script("failover.lua").map_or(0, |s| s.time_limit_trips);
    for (i, ev) in [stall.clone(), unpublish.clone()].into_iter().enumerate() {
        // whether the handler's end or the decision deadline answers first, it is the fallback
        let actions = fx.decide(ev);
        assert!(is_fallback(&actions), "decision {i}: {actions:?}");
        // the handler does end: the limit was not caught
        assert!(
            wait_until(Duration::from_secs(5), || trips() == i as u64 + 1),
            "handler {i} never ended: {:?}",
            fx.script("failover.lua")
        );
        assert!(!fx.script("failover.lua").expect("listed").quarantined);
    }
    // the third trip quarantines it; the built-in default decides from then on
    assert!(is_fallback(&fx.decide(stall.clone())));
    assert!(wait_until(Duration::from_secs(5), || fx
        .script("failover.lua")
        .is_some_and(|s| s.quarantined && s.time_limit_trips == 3)));
    assert!(is_fallback(&fx.decide(stall.clone())));
    std::thread::sleep(Duration::from_millis(300)); // long enough for a handler to trip again
    assert_eq!(trips(), 3, "a quarantined handler ran");
    // a publish goes live by the built-in rule, not through the quarantined script
    let live = fx.decide(sample_events()[0].clone());
    assert!(
        matches!(live.as_slice(), [Action::Switch { to: Source::Live, reason, .. }] if reason != "script"),
        "{live:?}"
    );

    // a fixed version takes it out of quarantine
    std::fs::write(
        fx.path("failover.lua"),
        "onair.on('stall', function() onair.switch('fallback', { reason = 'fixed' }) end)",
    )
    .expect("write");
    assert!(wait_until(Duration::from_secs(5), || {
        fx.script("failover.lua")
            .is_some_and(|s| s.generation == 2 && !s.quarantined)
    }));
    let fixed = fx.decide(stall);
    assert!(
        matches!(fixed.as_slice(), [Action::Switch { reason, .. }] if reason == "fixed"),
        "{fixed:?}"
    );
}

#[test]
fn a_stuck_policy_thread_gets_the_builtin_default_at_its_deadline() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("scripts")).expect("mkdir");
    std::fs::write(
        dir.path().join("scripts/failover.lua"),
        "onair.on('stall', function() onair.switch('fallback', { reason = 'script' }) end)\n\
         onair.on('unpublish', function() onair.switch('fallback', { reason = 'script' }) end)",
    )
    .expect("write");
    // a policy plugin that spins on `stall` until its (here 1 s) deadline: it stands for
    // anything that keeps the policy thread from answering (C code the Lua hook cannot see, a
    // slow guest)
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("mkdir");
    std::fs::copy(
        support::repo_root().join("target/plugins/wasm32-wasip2/release/misbehave.wasm"),
        plugin_dir.join("misbehave.wasm"),
    )
    .expect("copy the misbehave fixture (plugins/build.sh)");
    let plugins: onair::wasm::SharedHost = Arc::new(
        onair::wasm::PluginHost::new(
            &plugin_dir,
            onair::wasm::PluginLimits {
                deadline: Duration::from_secs(1),
                ..Default::default()
            },
        )
        .expect("plugin host"),
    );
    plugins.load_all();
    let (policy, _) = Policy::start(PolicyOptions {
        dir: dir.path().join("scripts"),
        db: None,
        store_import: None,
        core: Arc::default(),
        actions: None,
        runtime: Some(rt.handle().clone()),
        watch: false,
        memory_limit: 64 << 20,
        time_limit: Duration::from_millis(100),
        plugins: Some(plugins.clone()),
        metrics: None,
    });
    assert_eq!(policy.deadline(), Duration::from_millis(150));
    let stall = sample_events()[2].clone();
    let reason = |a: &[Action]| match a {
        [
            Action::Switch {
                to: Source::Fallback,
                reason,
                ..
            },
        ] => reason.clone(),
        other => panic!("not one switch to fallback: {other:?}"),
    };
    // late: the thread is inside the plugin and cannot answer
    let first = rt.block_on(policy.decide(stall.clone()));
    assert!(reason(&first).contains("built-in policy"), "{first:?}");
    assert_eq!(policy.late_decisions(), 1);
    // busy past the deadline: the default applies without queueing behind it
    std::thread::sleep(Duration::from_millis(200));
    let second = rt.block_on(policy.decide(stall.clone()));
    assert!(reason(&second).contains("built-in policy"), "{second:?}");
    assert_eq!(policy.late_decisions(), 2);

    // an event the plugin answers at once: once the spin is cut off, the script decides again
    let unpublish = Event::Unpublish(Unpublish {
        channel: "default".into(),
        session: 3,
        key: "k…y".into(),
        reason: "disconnected".into(),
        on_air: true,
    });
    let by_script =
        |a: &[Action]| matches!(a, [Action::Switch { reason, .. }] if reason == "script");
    assert!(wait_until(Duration::from_secs(5), || by_script(
        &rt.block_on(policy.decide(unpublish.clone()))
    )));
    let late = policy.late_decisions();
    assert!(by_script(&rt.block_on(policy.decide(unpublish))));
    assert_eq!(policy.late_decisions(), late);
}

#[test]
fn every_example_in_the_lua_api_doc_loads() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/lua-api.md"))
            .expect("doc");
    let blocks: Vec<&str> = doc
        .split("```lua\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(blocks.len() >= 10, "only {} examples", blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let fx = fixture(&[("example.lua", block)], 64, 1000);
        let info = fx.script("example.lua");
        assert!(
            info.as_ref()
                .is_some_and(|s| s.loaded && s.last_error.is_none()),
            "example {i}:\n{block}\n{info:?}"
        );
    }
}

/// The core as the fixture's scripts see it: channels `default` and `b`.
struct FakeCore;

impl CoreApi for FakeCore {
    fn status(&self, channel: Option<&str>) -> Option<serde_json::Value> {
        let id = channel.unwrap_or("default");
        if id != "default" && id != "b" {
            return None;
        }
        Some(serde_json::json!({
            "channel": id,
            "on_air": "fallback",
            "destinations": [{"name": format!("fixture-{id}"), "state": "up"}],
            "channels": [{"id": "b"}, {"id": "default"}],
        }))
    }

    fn create_channel(&self, body: serde_json::Value) -> Result<serde_json::Value, String> {
        match body["id"].as_str() {
            Some("default") | Some("b") => Err("a channel named it exists".into()),
            Some(_) => Ok(serde_json::json!({"id": body["id"], "stream_keys": ["live_x"]})),
            None => Err("missing field `id`".into()),
        }
    }
}
