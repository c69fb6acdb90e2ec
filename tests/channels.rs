//! Many channels in one onair: independent on air, created and changed at run time, kept in the
//! database across a restart (and a kill -9), started and stopped. ffmpeg publishes, nginx-rtmp
//! is the platform, ffmpeg watches what arrived there.

mod support;

use std::time::{Duration, Instant};

use support::*;

const SWITCH: Duration = Duration::from_secs(15);

fn two_channels(nginx: &Nginx) -> String {
    format!(
        "[[channel]]\nid = \"court-a\"\nname = \"Court A\"\nkeys = [\"key-a\"]\n\
         [[channel.destination]]\nname = \"yt\"\nurl = \"{}\"\n\
         [[channel]]\nid = \"court-b\"\nkeys = [\"key-b\"]\n\
         [[channel.destination]]\nname = \"yt\"\nurl = \"{}\"\n",
        nginx.url("app", "a"),
        nginx.url("app2", "b"),
    )
}

/// The publishing connection's age at nginx, in ms, when there is exactly one.
fn one_publisher(nginx: &Nginx, app: &str) -> Option<u64> {
    match nginx.publishers(app).as_slice() {
        [t] => Some(*t),
        _ => None,
    }
}

#[test]
fn two_channels_are_independent_a_fault_on_one_never_touches_the_other() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start(&two_channels(&nginx));
    assert!(wait_until(SWITCH, || one_publisher(&nginx, "app")
        .is_some()
        && one_publisher(&nginx, "app2").is_some()));

    let list = onair.get_json("/api/channels");
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["court-a", "court-b"], "{list}");
    assert_eq!(list[0]["name"], "Court A");
    assert_eq!(list[1]["name"], "court-b", "the name defaults to the id");
    assert_eq!(list[0]["owner"], "config");

    let mut pub_a = Publisher::start(&onair.publish_url("key-a"), "red");
    let _pub_b = Publisher::start(&onair.publish_url("key-b"), "green");
    let view_a = Viewer::start(&nginx.url("app", "a"));
    let view_b = Viewer::start(&nginx.url("app2", "b"));
    let t0 = Instant::now();
    assert!(view_a.wait_for(t0, SWITCH, Frame::is_red), "channel A live");
    assert!(
        view_b.wait_for(t0, SWITCH, Frame::is_green),
        "channel B live"
    );
    // each key feeds its own channel only
    let a = onair.get_json("/api/channels/court-a");
    let b = onair.get_json("/api/channels/court-b");
    assert_eq!(a["on_air"], "live", "{a}");
    assert_eq!(b["on_air"], "live", "{b}");
    assert_eq!(a["sessions"].as_array().map(Vec::len), Some(1), "{a}");
    assert_eq!(b["sessions"][0]["channel"], "court-b", "{b}");
    let b_switches = b["counters"]["switches"].as_u64().expect("counter");
    let (age_a, age_b) = (
        one_publisher(&nginx, "app").expect("one"),
        one_publisher(&nginx, "app2").expect("one"),
    );

    // kill channel A's publisher: A falls back, B does not notice
    let cut = Instant::now();
    let frames_b_before = view_b.frames().len();
    pub_a.kill9();
    assert!(
        view_a.wait_for(cut, SWITCH, |f| !f.is_red()),
        "channel A shows its fallback"
    );
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<Frame> = view_b.frames()[frames_b_before..].to_vec();
    assert!(after.len() > 60, "B kept playing: {} frames", after.len());
    assert!(
        after.iter().all(Frame::is_green),
        "B stayed on its live feed"
    );
    let max_step = after
        .windows(2)
        .map(|w| (w[1].pts - w[0].pts) * 1000.0)
        .fold(0.0, f64::max);
    assert!(
        max_step <= 100.0,
        "B's video has a {max_step:.0} ms gap while A switched"
    );
    let b = onair.get_json("/api/channels/court-b");
    assert_eq!(b["on_air"], "live");
    assert_eq!(
        b["counters"]["switches"].as_u64(),
        Some(b_switches),
        "B never switched: {b}"
    );
    assert_eq!(
        onair.get_json("/api/channels/court-a")["on_air"],
        "fallback"
    );
    assert!(
        onair
            .log_lines(&["switched", "court-b", "to=\"fallback\""])
            .is_empty()
            && onair.log_lines(&["switched", "court-b"]).len() == 1,
        "B switched once (to live) only:\n{}",
        onair.log_lines(&["switched"]).join("\n")
    );
    // both platform connections are the ones opened at the start
    let elapsed = age_a.min(age_b);
    let (now_a, now_b) = (
        one_publisher(&nginx, "app").expect("A still connected"),
        one_publisher(&nginx, "app2").expect("B still connected"),
    );
    assert!(
        now_a > age_a && now_b > age_b && elapsed > 0,
        "connections re-opened"
    );
    // the old single-channel routes act on the primary channel (here the first by id)
    assert_eq!(onair.status()["channel"], "court-a");
}

#[test]
fn a_channel_created_over_the_api_goes_live_grows_a_destination_and_survives_a_restart() {
    let _serial = serial();
    let nginx = Nginx::start();
    let mut onair = Onair::start("");

    // bad input names the field; config-owned channels refuse edits
    for (body, field) in [
        (r#"{"id": "Court 2"}"#, "id"),
        (r#"{"id": "c2", "keys": ["test-key-123"]}"#, "keys"),
        (r#"{"id": "c2", "output": {"width": 641}}"#, "output"),
        (
            r#"{"id": "c2", "destinations": [{"name": "x", "url": "http://nope"}]}"#,
            "destinations",
        ),
    ] {
        let (code, v) = onair.call("POST", "/api/channels", body);
        assert_eq!(
            (code, v["field"].as_str()),
            (400, Some(field)),
            "{body}: {v}"
        );
    }
    let (code, v) = onair.call("POST", "/api/channels", r#"{"id": "c2", "colour": 1}"#);
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("colour")),
        "{v}"
    );
    for method in ["PATCH", "DELETE"] {
        let (code, v) = onair.call(method, "/api/channels/default", r#"{"name": "x"}"#);
        assert_eq!(code, 409, "{method}: {v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("onair.toml")),
            "{v}"
        );
    }
    assert_eq!(onair.call("DELETE", "/api/channels/nope", "").0, 404);

    let body = format!(
        r#"{{"id": "court-2", "name": "Court 2", "keys": ["court-2-key"],
            "destinations": [{{"name": "first", "url": "{}"}}]}}"#,
        nginx.url("app", "c2")
    );
    let (code, made) = onair.call("POST", "/api/channels", &body);
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["stream_keys"][0], "court-2-key");
    assert_eq!(made["owner"], "runtime");
    assert_eq!(
        onair.call("POST", "/api/channels", &body).0,
        409,
        "same id twice"
    );
    assert!(wait_until(SWITCH, || one_publisher(&nginx, "app").is_some()));

    let publisher = Publisher::start(&onair.publish_url("court-2-key"), "red");
    let viewer = Viewer::start(&nginx.url("app", "c2"));
    let t0 = Instant::now();
    assert!(
        viewer.wait_for(t0, SWITCH, Frame::is_red),
        "live at its platform"
    );
    let first_age = one_publisher(&nginx, "app").expect("one");

    // a second destination joins without disturbing the first
    let (code, v) = onair.call(
        "POST",
        "/api/channels/court-2/destinations",
        &format!(
            r#"{{"name": "second", "url": "{}"}}"#,
            nginx.url("app2", "c2")
        ),
    );
    assert_eq!(code, 201, "{v}");
    assert!(wait_until(SWITCH, || one_publisher(&nginx, "app2").is_some()));
    assert!(
        one_publisher(&nginx, "app").is_some_and(|age| age > first_age),
        "the first destination was re-opened"
    );
    let (max_step, _) = viewer.video_pts_gaps();
    assert!(
        max_step <= 100.0,
        "{max_step:.0} ms gap at the first platform"
    );
    // a generated key when none is given, shown once
    let (code, gen_made) = onair.call(
        "POST",
        "/api/channels",
        r#"{"id": "spare", "start": false}"#,
    );
    assert_eq!(code, 201, "{gen_made}");
    let generated = gen_made["stream_keys"][0]
        .as_str()
        .expect("key")
        .to_string();
    assert!(
        generated.starts_with("live_") && generated.len() > 30,
        "{generated}"
    );
    let shown = onair.get_json("/api/channels/spare");
    assert!(
        !shown.to_string().contains(&generated),
        "GET shows the key redacted: {shown}"
    );
    assert_eq!(shown["state"], "stopped");

    drop(publisher);
    drop(viewer);
    onair.kill9_and_restart();
    let back = onair.get_json("/api/channels/court-2");
    assert_eq!(back["state"], "started", "{back}");
    assert_eq!(back["name"], "Court 2");
    let names: Vec<&str> = back["destinations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["first", "second"], "{back}");
    assert_eq!(onair.get_json("/api/channels/spare")["state"], "stopped");
    assert!(wait_until(SWITCH, || one_publisher(&nginx, "app")
        .is_some()
        && one_publisher(&nginx, "app2").is_some()));
    let _publisher = Publisher::start(&onair.publish_url("court-2-key"), "blue");
    let viewer = Viewer::start(&nginx.url("app2", "c2"));
    assert!(
        viewer.wait_for(Instant::now(), SWITCH, Frame::is_blue),
        "on air after the restart"
    );

    // a renamed run-time channel, then deleted: its key is refused
    let (code, v) = onair.call(
        "PATCH",
        "/api/channels/court-2",
        r#"{"name": "Centre Court"}"#,
    );
    assert_eq!(
        (code, v["name"].as_str()),
        (200, Some("Centre Court")),
        "{v}"
    );
    assert_eq!(onair.call("DELETE", "/api/channels/court-2", "").0, 204);
    assert!(wait_until(SWITCH, || nginx.publishers("app").is_empty()));
    assert_eq!(onair.call("GET", "/api/channels/court-2", "").0, 404);
    assert!(
        RawPublisher::publish(onair.rtmp_port, "live", "court-2-key").is_err(),
        "a deleted channel's key is refused"
    );
    assert!(onair.wait_log("unknown stream key …", SWITCH));
}

#[test]
fn stopping_a_channel_ends_its_platform_stream_refuses_its_key_and_frees_its_cpu() {
    let _serial = serial();
    let nginx = Nginx::start();
    let mut onair = Onair::start(&two_channels(&nginx));
    assert!(wait_until(SWITCH, || one_publisher(&nginx, "app")
        .is_some()
        && one_publisher(&nginx, "app2").is_some()));
    // a moving picture: channel B's decode and encode are most of the process's CPU
    let mut publisher =
        Publisher::start_video(&onair.publish_url("key-b"), "testsrc2=s=640x360:r=30");
    assert!(wait_until(SWITCH, || onair
        .get_json("/api/channels/court-b")["on_air"]
        == "live"));

    let cpu = |o: &Onair| {
        let (c0, t0) = (o.cpu_seconds(), Instant::now());
        std::thread::sleep(Duration::from_secs(4));
        (o.cpu_seconds() - c0) / t0.elapsed().as_secs_f64()
    };
    std::thread::sleep(Duration::from_secs(2));
    let both = cpu(&onair);

    let (code, v) = onair.call("POST", "/api/channels/court-b/stop", "");
    assert_eq!(code, 202, "{v}");
    assert!(
        wait_until(SWITCH, || nginx.publishers("app2").is_empty()),
        "the platform saw the publisher leave"
    );
    assert_eq!(
        publisher.wait_exit(SWITCH),
        Some(false),
        "the channel's publisher was disconnected"
    );
    let b = onair.get_json("/api/channels/court-b");
    assert_eq!(b["state"], "stopped", "{b}");
    assert_eq!(b["destinations"][0]["state"], "stopped", "{b}");
    assert!(
        RawPublisher::publish(onair.rtmp_port, "live", "key-b").is_err(),
        "a stopped channel's key is refused"
    );
    assert!(onair.wait_log("channel \"court-b\" is stopped", SWITCH));
    let (code, _) = http_get(
        onair.http_port,
        &format!("/api/channels/court-b/preview.flv?key={PREVIEW_KEY}"),
    )
    .expect("answers");
    assert_eq!(code, 409, "no preview of a stopped channel");
    assert!(one_publisher(&nginx, "app").is_some(), "A untouched");

    std::thread::sleep(Duration::from_secs(2));
    let one = cpu(&onair);
    println!("CPU: idle A + live B {both:.2} cores, after stopping B {one:.2} cores");
    assert!(
        one < both * 0.6,
        "stopping the live channel should free most of the CPU: {both:.2} → {one:.2} cores"
    );

    // stopped is kept across a restart; start opens a new connection
    onair.kill9_and_restart();
    assert_eq!(onair.get_json("/api/channels/court-b")["state"], "stopped");
    assert!(onair.wait_log("channel stays stopped", SWITCH));
    assert_eq!(onair.call("POST", "/api/channels/court-b/start", "").0, 202);
    assert!(wait_until(SWITCH, || one_publisher(&nginx, "app2").is_some()));
    assert_eq!(onair.get_json("/api/channels/court-b")["state"], "started");
    assert!(RawPublisher::publish(onair.rtmp_port, "live", "key-b").is_ok());
}

#[test]
fn every_acknowledged_write_survives_a_kill_9_in_the_middle_of_a_burst() {
    let _serial = serial();
    let mut onair = Onair::start("");
    let port = onair.http_port;
    let writer = std::thread::spawn(move || {
        let auth = format!("Bearer {TOKEN}");
        let mut acknowledged = Vec::new();
        for i in 0..100 {
            let body = format!(
                r#"{{"name": "d{i}", "url": "rtmp://127.0.0.1:9/app/k{i}", "enabled": false}}"#
            );
            match http_request(
                port,
                "POST",
                "/api/channels/default/destinations",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                &body,
            ) {
                Some((201, _)) => acknowledged.push(format!("d{i}")),
                _ => break,
            }
        }
        acknowledged
    });
    // kill in the middle of the burst
    assert!(wait_until(SWITCH, || onair
        .log_lines(&["destination created"])
        .len()
        >= 30));
    onair.kill9_and_restart();
    let acknowledged = writer.join().expect("writer");
    assert!(
        (30..100).contains(&acknowledged.len()),
        "the kill came mid-burst: {} acknowledged",
        acknowledged.len()
    );
    let list = onair.get_json("/api/channels/default/destinations");
    let kept: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for name in &acknowledged {
        assert!(
            kept.contains(&name.as_str()),
            "{name} was acknowledged and lost"
        );
    }
    println!(
        "acknowledged {} writes before the kill, {} kept",
        acknowledged.len(),
        kept.len()
    );
}

/// The route patterns of `core/src/http/*.rs`: each `warp::path!(…)` that starts at the root,
/// as segments (`{}` for a parameter), and whether it ends in `..` (a prefix).
fn routes_in_source() -> Vec<(Vec<String>, bool)> {
    let dir = repo_root().join("core/src/http");
    let mut src = String::new();
    for e in std::fs::read_dir(&dir).expect("core/src/http") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "rs") {
            src.push_str(&std::fs::read_to_string(&p).expect("source"));
        }
    }
    src.split("warp::path!(")
        .skip(1)
        .filter_map(|rest| {
            let args = rest.split(')').next()?;
            let segs: Vec<String> = args
                .split('/')
                .map(|s| s.trim())
                .map(|s| match s {
                    "String" => "{}".to_string(),
                    s => s.trim_matches('"').to_string(),
                })
                .collect();
            let prefix = segs.last().is_some_and(|s| s == "..");
            let segs: Vec<String> = segs.into_iter().filter(|s| s != "..").collect();
            // fragments mounted under another filter (`warp::path!(String)`) are not roots
            matches!(
                segs.first().map(String::as_str),
                Some("api" | "preview.flv" | "metrics")
            )
            .then_some((segs, prefix))
        })
        .collect()
}

#[test]
fn the_openapi_document_covers_every_route_and_each_answers_as_documented() {
    let _serial = serial();
    let onair = Onair::start(
        "[[destination]]\nname = \"doc-test\"\nurl = \"rtmp://127.0.0.1:9/app/k\"\nenabled = false\n",
    );
    let (code, text) = http_get(onair.http_port, "/api/openapi.json").expect("answers");
    assert_eq!(code, 200, "served without the token: {text}");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    assert!(
        doc["components"]["schemas"]["ChannelView"].is_object(),
        "schemas derived from the code"
    );

    // every route in the source is documented
    let documented: Vec<Vec<&str>> = paths
        .keys()
        .map(|p| p.trim_start_matches('/').split('/').collect())
        .collect();
    let routes = routes_in_source();
    assert!(routes.len() >= 10, "{routes:?}");
    for (segs, prefix) in &routes {
        let matches = |d: &Vec<&str>| {
            (if *prefix {
                d.len() > segs.len()
            } else {
                d.len() == segs.len()
            }) && segs.iter().zip(d).all(|(s, d)| s == "{}" || s == d)
        };
        assert!(
            documented.iter().any(matches),
            "route /{} is not in /api/openapi.json",
            segs.join("/")
        );
    }

    // every documented operation answers with a documented status
    let auth = format!("Authorization: Bearer {TOKEN}");
    let mut ops: Vec<(usize, String, String, serde_json::Value)> = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("operations") {
            let order = ["get", "post", "patch", "delete"]
                .iter()
                .position(|m| m == method)
                .unwrap_or(9);
            ops.push((order, method.clone(), path.clone(), op.clone()));
        }
    }
    ops.sort_by_key(|o| o.0);
    let mut checked = 0;
    for (_, method, path, op) in ops {
        let url = format!(
            "http://127.0.0.1:{}{}?key={PREVIEW_KEY}",
            onair.http_port,
            path.replace("{id}", "default")
                .replace("{name}", "doc-test")
        );
        let body = op["requestBody"]["content"]["application/json"]["example"].to_string();
        let verb = method.to_uppercase();
        let mut args = vec!["-X", verb.as_str(), "-H", auth.as_str(), "--max-time", "2"];
        if op["requestBody"].is_object() {
            args.extend(["-H", "Content-Type: application/json", "-d", body.as_str()]);
        }
        args.push(url.as_str());
        let (status, answer) = curl(&args);
        let allowed: Vec<&String> = op["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .collect();
        assert!(
            allowed.iter().any(|a| **a == status.to_string()),
            "{} {path} answered {status} (documented: {allowed:?}): {answer}",
            method.to_uppercase()
        );
        // the bearer token is sent: a protected operation answering 401 means the token broke
        // (most operations document 401, so the check above would let it pass)
        let public = op["security"].as_array().is_some_and(|s| {
            s.iter()
                .any(|x| x.as_object().is_some_and(|o| o.is_empty()))
        });
        assert!(
            public || status != 401,
            "{} {path} refused the bearer token: {answer}",
            method.to_uppercase()
        );
        checked += 1;
    }
    assert!(checked >= 20, "{checked} operations");
    println!(
        "{checked} documented operations answered as documented; {} routes in core/src/http documented",
        routes.len()
    );
}

/// The default channel's overlay layer names (sorted) and its fallback, as the API shows them.
fn layers_and_fallback(o: &Onair) -> (Vec<String>, String) {
    let c = o.get_json("/api/channels/default");
    let mut layers: Vec<String> = c["overlay"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    layers.sort();
    (layers, c["fallback"].as_str().unwrap_or("").to_string())
}

#[test]
fn the_chosen_fallback_and_overlay_layers_are_back_after_a_restart() {
    let _serial = serial();
    let script = r#"
        onair.route("POST", "/t/set", function()
          onair.overlay.text("banner", "HELLO", { size = 30, x = 20, y = 20 })
          onair.set_fallback("media/brb.png")
          return { json = {} }
        end, { auth = true })
        onair.route("POST", "/t/clear", function()
          onair.overlay.hide("banner")
          onair.set_fallback(nil)
          return { json = {} }
        end, { auth = true })
    "#;
    let mut onair = Onair::start_with("[scripts]\ndir = \"s\"\nstore = \"store.json\"\n", |dir| {
        std::fs::create_dir_all(dir.join("s")).expect("mkdir");
        std::fs::write(dir.join("s/routes.lua"), script).expect("script");
        std::fs::create_dir_all(dir.join("media")).expect("mkdir");
        make_media(
            &dir.join("media/brb.png"),
            &[
                "-f",
                "lavfi",
                "-i",
                "color=c=purple:s=640x360",
                "-frames:v",
                "1",
            ],
        );
    });
    let state = layers_and_fallback;
    assert_eq!(state(&onair), (vec![], "slate".to_string()));
    assert_eq!(onair.call("POST", "/t/set", "").0, 200);
    let chosen = |o: &Onair| {
        let (layers, fallback) = state(o);
        layers == ["banner"] && fallback.starts_with("image") && fallback.ends_with("brb.png")
    };
    assert!(wait_until(SWITCH, || chosen(&onair)), "{:?}", state(&onair));

    onair.kill9_and_restart();
    assert!(
        wait_until(SWITCH, || chosen(&onair)),
        "not back after the restart: {:?}",
        state(&onair)
    );

    assert_eq!(onair.call("POST", "/t/clear", "").0, 200);
    assert!(wait_until(SWITCH, || state(&onair) == (vec![], "slate".to_string())));
    onair.kill9_and_restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        state(&onair),
        (vec![], "slate".to_string()),
        "a cleared choice stays cleared"
    );
}

#[test]
fn paths_outside_the_roots_are_refused_where_actions_run() {
    let _serial = serial();
    // a script asks for files outside the media roots (the working directory is not one: only
    // media/, the gallery and the scripts folder are), one through a symlink in media/
    let script = r#"
        onair.route("POST", "/t/good", function()
          onair.set_fallback("media/brb.png")
          onair.overlay.set("pic", { png = "media/brb.png", width = 64, height = 36 })
          return { json = {} }
        end, { auth = true })
        onair.route("POST", "/t/bad", function()
          onair.set_fallback("outside.png")
          onair.set_fallback("media/link.png")
          onair.switch("fallback", { media = "onair-data/outside.png", reason = "bad media" })
          onair.overlay.set("spy", { png = "outside.png" })
          onair.overlay.text("font", "x", { font = "outside.png" })
          return { json = {} }
        end, { auth = true })
    "#;
    let onair = Onair::start_with("[scripts]\ndir = \"s\"\nstore = \"store.json\"\n", |dir| {
        std::fs::create_dir_all(dir.join("s")).expect("mkdir");
        std::fs::write(dir.join("s/routes.lua"), script).expect("script");
        std::fs::create_dir_all(dir.join("media")).expect("mkdir");
        std::fs::create_dir_all(dir.join("onair-data")).expect("mkdir");
        let png = |p: &std::path::Path, colour: &str| {
            make_media(
                p,
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    &format!("color=c={colour}:s=640x360"),
                    "-frames:v",
                    "1",
                ],
            )
        };
        png(&dir.join("media/brb.png"), "purple");
        // valid pictures: today's onair would put them on air
        png(&dir.join("outside.png"), "red");
        png(&dir.join("onair-data/outside.png"), "red");
        std::os::unix::fs::symlink(dir.join("outside.png"), dir.join("media/link.png"))
            .expect("symlink");
    });
    let state = layers_and_fallback;
    assert_eq!(onair.call("POST", "/t/good", "").0, 200);
    let good = |o: &Onair| {
        let (layers, fallback) = state(o);
        layers == ["pic"] && fallback.ends_with("media/brb.png")
    };
    assert!(wait_until(SWITCH, || good(&onair)), "{:?}", state(&onair));

    assert_eq!(onair.call("POST", "/t/bad", "").0, 200);
    // the channel's worker runs them in order: the font is the last
    assert!(
        wait_until(SWITCH, || onair
            .log_lines(&["overlay layer not shown", "font folders"])
            .len()
            == 1),
        "{}",
        onair.log_text()
    );
    let refused = |needle: &str| onair.log_lines(&[needle, "media.roots"]).len();
    assert_eq!(
        refused("fallback media refused, the fallback is unchanged"),
        3,
        "{}",
        onair.log_text()
    );
    assert_eq!(refused("(the switch goes ahead)"), 1);
    assert_eq!(refused("overlay layer not shown"), 2);
    let (layers, fallback) = state(&onair);
    assert_eq!(layers, ["pic"], "a refused layer was shown");
    assert!(
        fallback.ends_with("media/brb.png"),
        "fallback changed: {fallback}"
    );

    // the API's fallback choice passes the same gate
    let outside = onair.dir.path().join("outside.png");
    let (code, body) = onair.call(
        "POST",
        "/api/channels/default/fallback",
        &serde_json::json!({ "media": outside }).to_string(),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["field"], "media", "{body}");
    assert!(
        state(&onair).1.ends_with("media/brb.png"),
        "{:?}",
        state(&onair)
    );

    // a recording added at run time outside recording.roots: 400 naming the key, nothing kept
    let (code, body) = onair.call(
        "POST",
        "/api/channels/default/destinations",
        r#"{"name": "rec", "url": "file:///etc/onair-test/{utc}.mp4"}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["field"], "url", "{body}");
    assert!(
        body.to_string().contains("recording.roots"),
        "the error names the key: {body}"
    );
    assert!(!std::path::Path::new("/etc/onair-test").exists());
    let rec = onair.dir.path().join("onair-data/recordings");
    let (code, body) = onair.call(
        "POST",
        "/api/channels/default/destinations",
        &serde_json::json!({ "name": "rec", "url": format!("file://{}/{{utc}}.mp4", rec.display()) })
            .to_string(),
    );
    assert_eq!(code, 201, "data_dir/recordings is a root: {body}");
}

/// `GET /metrics` with the token, parsed by a Prometheus text parser.
fn scrape(onair: &Onair) -> prometheus_parse::Scrape {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let url = format!("http://127.0.0.1:{}/metrics", onair.http_port);
    let (code, body) = curl(&["-H", &auth, &url]);
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

/// The value of `name` (with or without `_total`) with these labels; a histogram's count.
fn sample(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus_parse::Value;
    s.samples
        .iter()
        .filter(|x| x.metric == name || x.metric == format!("{name}_total"))
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_follow_the_run_and_parse_as_prometheus_text() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start(&two_channels(&nginx));
    let a = [("channel", "court-a")];
    let a_yt = [("channel", "court-a"), ("destination", "yt")];
    assert!(wait_until(SWITCH, || sample(
        &scrape(&onair),
        "onair_destination_up",
        &a_yt
    ) == Some(1.0)));
    let s0 = scrape(&onair);
    assert_eq!(
        sample(
            &s0,
            "onair_on_air",
            &[("channel", "court-a"), ("source", "fallback")]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&s0, "onair_channel_started", &a), Some(1.0));
    assert_eq!(
        sample(&s0, "onair_publishes", &a),
        None,
        "nothing published yet"
    );
    assert!(sample(&s0, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 1e6));
    assert!(sample(&s0, "process_cpu_seconds", &[]).is_some_and(|v| v > 0.0));
    let out0 = sample(&s0, "onair_output_bytes", &a_yt).unwrap_or(0.0);

    let mut publisher = Publisher::start(&onair.publish_url("key-a"), "red");
    assert!(wait_until(SWITCH, || {
        sample(
            &scrape(&onair),
            "onair_on_air",
            &[("channel", "court-a"), ("source", "live")],
        ) == Some(1.0)
    }));
    std::thread::sleep(Duration::from_secs(2));
    let s1 = scrape(&onair);
    assert_eq!(sample(&s1, "onair_publishes", &a), Some(1.0));
    assert_eq!(sample(&s1, "onair_publish_sessions", &a), Some(1.0));
    assert_eq!(
        sample(
            &s1,
            "onair_switches",
            &[
                ("channel", "court-a"),
                ("to", "live"),
                ("reason", "publish")
            ]
        ),
        Some(1.0)
    );
    assert!(sample(&s1, "onair_ingest_bytes", &a).is_some_and(|v| v > 10_000.0));
    assert!(sample(&s1, "onair_ingest_bits_per_second", &a).is_some_and(|v| v > 50_000.0));
    assert!(sample(&s1, "onair_output_bytes", &a_yt).is_some_and(|v| v > out0));
    // x264 with tune zerolatency holds a frame for its encode time only: well under a second
    let latency = sample(
        &s1,
        "onair_encode_latency_seconds",
        &[("channel", "court-a"), ("profile", "")],
    );
    assert!(
        latency.is_some_and(|v| v > 0.0 && v < 1.0),
        "encode latency {latency:?}"
    );
    assert_eq!(
        sample(
            &s1,
            "onair_on_air",
            &[("channel", "court-b"), ("source", "fallback")]
        ),
        Some(1.0),
        "the other channel is still on its fallback"
    );

    publisher.kill9();
    assert!(wait_until(SWITCH, || {
        sample(
            &scrape(&onair),
            "onair_on_air",
            &[("channel", "court-a"), ("source", "fallback")],
        ) == Some(1.0)
    }));
    let s2 = scrape(&onair);
    assert_eq!(
        sample(
            &s2,
            "onair_switches",
            &[
                ("channel", "court-a"),
                ("to", "fallback"),
                ("reason", "unpublish")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&s2, "onair_unpublishes", &a), Some(1.0));
    assert_eq!(sample(&s2, "onair_publish_sessions", &a), Some(0.0));
    let live_s = sample(
        &s2,
        "onair_on_air_seconds",
        &[("channel", "court-a"), ("source", "live")],
    );
    assert!(live_s.is_some_and(|v| v > 1.5), "time live: {live_s:?}");
    let ingest2 = sample(&s2, "onair_ingest_bytes", &a).unwrap_or(0.0);
    assert!(
        ingest2 >= sample(&s1, "onair_ingest_bytes", &a).unwrap_or(f64::MAX),
        "a counter never goes down"
    );
    assert!(
        sample(&s2, "onair_policy_decision_seconds", &[]).is_some_and(|n| n >= 2.0),
        "decisions timed"
    );
    for h in ["onair_lua_call_seconds", "onair_wasm_call_seconds"] {
        assert!(sample(&s2, h, &[]).is_some_and(|n| n >= 2.0), "{h} timed");
    }

    let url = format!("http://127.0.0.1:{}/metrics", onair.http_port);
    assert_eq!(curl(&[&url]).0, 401, "the admin token guards /metrics");
}

/// `http.metrics_token` opens `GET /metrics` and nothing else (a scraper need not hold the admin
/// token); a wrong one is refused.
#[test]
fn the_metrics_token_reads_metrics_only() {
    let _serial = serial();
    let reader = "metrics-reader-token-0123";
    let onair = Onair::start_tables("", &format!("metrics_token = \"{reader}\""), "", |_| {});
    let base = format!("http://127.0.0.1:{}", onair.http_port);
    let bearer = format!("Authorization: Bearer {reader}");
    let (code, body) = curl(&["-H", &bearer, &format!("{base}/metrics")]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("# EOF"), "{body}");
    for path in ["/api/status", "/api/channels", "/api/channels/default/obs"] {
        assert_eq!(
            curl(&["-H", &bearer, &format!("{base}{path}")]).0,
            401,
            "{path}"
        );
    }
    let (code, _) = curl(&["-X", "POST", "-H", &bearer, &format!("{base}/api/switch")]);
    assert_eq!(code, 401, "the metrics token switched");
    let wrong = "Authorization: Bearer metrics-reader-token-XXXX";
    assert_eq!(curl(&["-H", wrong, &format!("{base}/metrics")]).0, 401);
    let admin = format!("Authorization: Bearer {TOKEN}");
    assert_eq!(curl(&["-H", &admin, &format!("{base}/metrics")]).0, 200);
}

/// The onair process's thread count.
fn threads(onair: &Onair) -> usize {
    std::fs::read_to_string(format!("/proc/{}/status", onair.pid()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn lifecycle_races_leave_nothing_running_and_keys_can_be_revoked() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start("");

    // create and delete at once: the queued start must not bring a pipeline back
    let body = format!(
        r#"{{"id": "blink", "keys": ["blink-key-1"], "destinations": [{{"name": "p", "url": "{}"}}]}}"#,
        nginx.url("app", "blink")
    );
    assert_eq!(onair.call("POST", "/api/channels", &body).0, 201);
    assert_eq!(onair.call("DELETE", "/api/channels/blink", "").0, 204);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        nginx.publishers("app").is_empty(),
        "a deleted channel connected to its platform"
    );
    assert!(onair.log_lines(&["channel started", "blink"]).len() <= 1);

    // stop/start cycles free their threads
    let body = format!(
        r#"{{"id": "cycle", "keys": ["cycle-key-1"], "destinations": [{{"name": "p", "url": "{}"}}]}}"#,
        nginx.url("app2", "cycle")
    );
    assert_eq!(onair.call("POST", "/api/channels", &body).0, 201);
    assert!(wait_until(SWITCH, || nginx.publishers("app2").len() == 1));
    std::thread::sleep(Duration::from_secs(1));
    let base = threads(&onair);
    for _ in 0..4 {
        assert_eq!(onair.call("POST", "/api/channels/cycle/stop", "").0, 202);
        assert!(wait_until(SWITCH, || nginx.publishers("app2").is_empty()));
        assert_eq!(onair.call("POST", "/api/channels/cycle/start", "").0, 202);
        assert!(wait_until(SWITCH, || nginx.publishers("app2").len() == 1));
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = threads(&onair);
    println!("threads: {base} after the first start, {after} after 4 stop/start cycles");
    assert!(
        after <= base + 3,
        "threads grew from {base} to {after} over 4 stop/start cycles"
    );

    // a key taken away from a channel disconnects its publisher at once
    let mut publisher = Publisher::start(&onair.publish_url("cycle-key-1"), "red");
    assert!(wait_until(SWITCH, || onair.get_json("/api/channels/cycle")
        ["on_air"]
        == "live"));
    let (code, v) = onair.call(
        "PATCH",
        "/api/channels/cycle",
        r#"{"keys": ["cycle-key-2"]}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert!(
        publisher.wait_exit(SWITCH).is_some(),
        "the revoked key kept publishing"
    );
    assert!(RawPublisher::publish(onair.rtmp_port, "live", "cycle-key-1").is_err());
    assert!(RawPublisher::publish(onair.rtmp_port, "live", "cycle-key-2").is_ok());
}

#[test]
fn several_publishers_share_a_channel_only_the_one_on_air_is_decoded_and_a_session_is_chosen() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start(&format!(
        "[[destination]]\nname = \"yt\"\nurl = \"{}\"\n",
        nginx.url("app", "s")
    ));
    let viewer = Viewer::start(&nginx.url("app", "s"));
    let _red = Publisher::start(&onair.publish_url("test-key-123"), "red");
    let t0 = Instant::now();
    assert!(viewer.wait_for(t0, SWITCH, Frame::is_red), "red on air");
    let since = Instant::now();
    // a second publisher on the same channel: the built-in policy puts the newest on air
    let _green = Publisher::start(&onair.publish_url("test-key-456"), "green");
    assert!(
        viewer.wait_for(since, SWITCH, Frame::is_green),
        "green on air"
    );
    // the one no longer on air stays connected but is not decoded
    assert!(
        wait_until(Duration::from_secs(5), || {
            onair.status()["sessions"].as_array().is_some_and(|s| {
                s.len() == 2 && s.iter().filter(|x| x["decoding"] == true).count() == 1
            })
        }),
        "two sessions, one decoded: {}",
        onair.status()["sessions"]
    );
    let sessions = onair.status()["sessions"].clone();
    let list = sessions.as_array().expect("sessions");
    let (red_id, green_id) = (
        list[0]["session"].as_u64().expect("id"),
        list[1]["session"].as_u64().expect("id"),
    );
    assert_eq!(
        list[0]["decoding"], false,
        "red waits undecoded: {sessions}"
    );
    assert_eq!(
        list[1]["decoding"], true,
        "green on air is decoded: {sessions}"
    );
    assert_eq!(list[1]["on_air"], true, "{sessions}");

    // choose the waiting session by id: it is decoded again and goes on air at its keyframe
    let cut = Instant::now();
    let (code, _) = onair.call(
        "POST",
        "/api/switch",
        &format!("{{\"source\": \"live\", \"session\": {red_id}}}"),
    );
    assert_eq!(code, 202);
    assert!(
        viewer.wait_for(cut, SWITCH, Frame::is_red),
        "red back on air"
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            let s = onair.status()["sessions"].clone();
            s[0]["decoding"] == true && s[1]["decoding"] == false && s[0]["on_air"] == true
        }),
        "red decoded, green waiting: {}",
        onair.status()["sessions"]
    );
    // an unknown session is refused with a log line, and nothing switches
    let (code, _) = onair.call(
        "POST",
        "/api/switch",
        "{\"source\": \"live\", \"session\": 999999}",
    );
    assert_eq!(code, 202);
    // a session with the fallback is a mistake, named
    let (code, v) = onair.call(
        "POST",
        "/api/switch",
        "{\"source\": \"fallback\", \"session\": 1}",
    );
    assert_eq!((code, v["field"].as_str()), (400, Some("session")), "{v}");
    assert!(onair.wait_log(
        "no such session publishes to this channel",
        Duration::from_secs(5)
    ));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(onair.status()["sessions"][0]["on_air"], true);
    assert_eq!(
        onair.status()["sessions"][1]["session"].as_u64(),
        Some(green_id),
        "the waiting publisher is still connected"
    );
    // the platform saw one connection and a continuous picture throughout
    assert_one_connection_since(&nginx, "app", t0);
    let (max_step, backwards) = viewer.video_pts_gaps();
    println!("two publishers, two cuts: largest video PTS step {max_step:.0} ms");
    assert!(max_step <= 100.0, "video PTS gap {max_step:.0} ms at a cut");
    assert_eq!(backwards, 0);
}

/// Context switches (voluntary + involuntary) so far of each of `onair`'s threads named `name`.
fn thread_switches(onair: &Onair, name: &str) -> Vec<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", onair.pid())).expect("/proc");
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| {
            std::fs::read_to_string(t.path().join("status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .collect()
}

#[test]
fn idle_helper_threads_do_not_poll() {
    // The slate has no audio (the program's silence fills in): its audio feeder has nothing to
    // do and must not wake for it (it polled every 20 ms: 149 wake-ups in 3 s). The file
    // watchers' debouncers look for settled events every 150 ms, not every 37.5 ms (27 a second).
    let _serial = serial();
    let onair = Onair::start("");
    assert!(
        wait_until(SWITCH, || thread_switches(&onair, "fallback-audio").len()
            == 1),
        "one fallback-audio thread expected:\n{}",
        onair.log_text()
    );
    let watchers = thread_switches(&onair, "notify-rs debou").len();
    assert!(watchers >= 1, "no file watcher thread");
    std::thread::sleep(Duration::from_secs(1));
    let names = ["fallback-audio", "notify-rs debou", "fallback-video"];
    let before: Vec<Vec<u64>> = names.iter().map(|n| thread_switches(&onair, n)).collect();
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<Vec<u64>> = names.iter().map(|n| thread_switches(&onair, n)).collect();
    let woke = |i: usize| -> Vec<u64> {
        before[i]
            .iter()
            .zip(&after[i])
            .map(|(b, a)| a - b)
            .collect()
    };
    eprintln!(
        "wake-ups in 3 s: fallback-audio {:?}, watchers {:?}, fallback-video {:?}",
        woke(0),
        woke(1),
        woke(2)
    );
    for i in 0..names.len() {
        assert!(!woke(i).is_empty(), "no {} thread to measure", names[i]);
    }
    assert!(
        woke(0).iter().all(|w| *w <= 2),
        "the idle audio feeder woke {:?} times in 3 s",
        woke(0)
    );
    // 20 ticks in 3 s, and a wake-up or two of their own
    assert!(
        woke(1).iter().all(|w| *w <= 30),
        "a file watcher woke {:?} times in 3 s",
        woke(1)
    );
    // the video feeder of the same fallback does work meanwhile: the count sees wake-ups
    assert!(
        woke(2).iter().all(|w| *w > 30),
        "the video feeder's switches did not move: {:?}",
        woke(2)
    );
}
