//! Each example in `examples/` runs in a real onair with ffmpeg publishing and nginx-rtmp as the
//! platform.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const SWITCH: Duration = Duration::from_secs(10);

fn example(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples").join(rel)).expect("example exists")
}

/// onair with `scripts` (name, text) in its own scripts folder and a destination on `nginx` app.
fn start(
    nginx: &Nginx,
    extra: &str,
    scripts: &[(&str, String)],
    prepare: impl FnOnce(&Path),
) -> Onair {
    let scripts: Vec<(String, String)> = scripts
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    Onair::start_with(
        &format!(
            "[scripts]\ndir = \"s\"\nstore = \"store.json\"\n{extra}[[destination]]\nname = \"p\"\nurl = \"{}\"\n",
            nginx.url("app", "out")
        ),
        move |dir| {
            std::fs::create_dir_all(dir.join("s")).expect("mkdir");
            for (n, t) in scripts {
                std::fs::write(dir.join("s").join(n), t).expect("write script");
            }
            prepare(dir);
        },
    )
}

#[test]
fn flap_guard_returns_to_live_only_after_the_feed_is_stable() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = start(
        &nginx,
        "",
        &[("failover.lua", example("flap-guard/failover.lua"))],
        |_| {},
    );
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let viewer = Viewer::start(&nginx.url("app", "out"));
    assert!(viewer.wait_for(Instant::now(), SWITCH, |_| true));
    let t = Instant::now();
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    std::thread::sleep(Duration::from_millis(3500));
    let early: Vec<Frame> = viewer.frames().into_iter().filter(|f| f.at >= t).collect();
    assert!(
        early.len() > 30 && !early.iter().any(Frame::is_red),
        "went live before the feed was stable for 5 s"
    );
    assert!(viewer.wait_for(t, SWITCH, Frame::is_red), "never went live");
    assert!(
        !onair
            .log_lines(&["switched", "healthy for 5000 ms"])
            .is_empty()
    );
}

#[test]
fn low_bitrate_falls_back_and_a_good_feed_stays_live() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = start(
        &nginx,
        "",
        &[("failover.lua", example("low-bitrate/failover.lua"))],
        |_| {},
    );
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let viewer = Viewer::start(&nginx.url("app", "out"));
    assert!(
        viewer.wait_for(Instant::now(), SWITCH, |_| true),
        "no output at the viewer"
    );

    // a flat red picture compresses to ~10 kbit/s: far below 800 kbit/s
    let t = Instant::now();
    let mut p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        viewer.wait_for(t, SWITCH, Frame::is_red),
        "publish did not go live"
    );
    let t = Instant::now();
    assert!(
        viewer.wait_for(t, SWITCH, |f| !f.is_red()),
        "low bitrate did not fall back"
    );
    assert!(!onair.log_lines(&["switched", "low bitrate"]).is_empty());
    p.kill9();

    // a noisy picture at ~2.5 Mbit/s stays live
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=640x360:r=30,noise=alls=30:allf=t",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        "30",
        "-b:v",
        "2500k",
        "-maxrate",
        "2500k",
        "-bufsize",
        "1250k",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "flv",
    ])
    .arg(onair.publish_url("test-key-123"))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut good = cmd.spawn().expect("ffmpeg");
    let t = Instant::now();
    assert!(
        viewer.wait_for(t, SWITCH, Frame::is_red),
        "a good feed did not go live"
    );
    std::thread::sleep(Duration::from_secs(5));
    let kbps = onair.status()["sessions"][0]["kbps"].as_u64().unwrap_or(0);
    let _ = good.kill();
    let _ = good.wait();
    assert!(kbps >= 1500, "the noisy publisher measured {kbps} kbit/s");
    let recent: Vec<Frame> = viewer
        .frames()
        .into_iter()
        .filter(|f| f.at >= t + Duration::from_secs(2))
        .collect();
    assert!(
        !recent.is_empty() && recent.iter().all(Frame::is_red),
        "a good feed fell back"
    );
}

#[test]
fn ip_filter_refuses_private_publishers_unless_loopback_is_allowed() {
    let _serial = serial();
    let nginx = Nginx::start();
    let scripts = [
        (
            "failover.lua",
            std::fs::read_to_string(repo_root().join("scripts/failover.lua")).expect("read"),
        ),
        ("ip-filter.lua", example("ip-filter/ip-filter.lua")),
    ];
    let onair = start(&nginx, "", &scripts, |_| {});
    let mut p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert_eq!(
        p.wait_exit(SWITCH),
        Some(false),
        "a loopback publisher was accepted"
    );
    assert!(onair.wait_log("private address 127.0.0.1", SWITCH));
    assert!(
        onair.log_lines(&["switched"]).is_empty(),
        "a refused publish went live"
    );
    drop(onair);

    let onair = start(&nginx, "", &scripts, |dir| {
        std::fs::write(
            dir.join("store.json"),
            r#"{"ip_filter.allow_loopback": true}"#,
        )
        .expect("store");
    });
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        onair.wait_log("switched", SWITCH),
        "an allowed loopback publisher did not go live"
    );
}

/// Collects the JSON bodies POSTed to it.
fn webhook_receiver() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let g = got.clone();
    let port = http_server(move |_, body| {
        if let Ok(v) = serde_json::from_slice(body) {
            g.lock().expect("lock").push(v);
        }
        (204, "text/plain".into(), Vec::new())
    });
    (port, got)
}

#[test]
fn webhook_posts_publish_switch_and_unpublish() {
    let _serial = serial();
    let nginx = Nginx::start();
    let (port, got) = webhook_receiver();
    let hook = example("webhook/webhook.lua").replace(
        "http://127.0.0.1:9000/onair",
        &format!("http://127.0.0.1:{port}/hook"),
    );
    let scripts = [
        (
            "failover.lua",
            std::fs::read_to_string(repo_root().join("scripts/failover.lua")).expect("read"),
        ),
        ("webhook.lua", hook),
    ];
    let onair = start(&nginx, "", &scripts, |_| {});
    let mut p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(onair.wait_log("switched", SWITCH));
    p.kill9();
    let has = |event: &str, to: Option<&str>| {
        got.lock().expect("lock").iter().any(|v| {
            v["event"] == event && to.is_none_or(|t| v["to"] == t) && v["sent_at"].is_i64()
        })
    };
    assert!(
        wait_until(SWITCH, || has("publish", None)
            && has("switched", Some("live"))
            && has("unpublish", None)
            && has("switched", Some("fallback"))),
        "webhooks received: {:?}",
        got.lock().expect("lock")
    );
    let all = got.lock().expect("lock").clone();
    assert!(
        all.iter().all(|v| !v.to_string().contains("test-key-123")),
        "a stream key leaked into a webhook"
    );
}

#[test]
fn rest_api_of_seed_000_over_onair_actions() {
    let _serial = serial();
    let nginx = Nginx::start();
    let scripts = [
        (
            "failover.lua",
            std::fs::read_to_string(repo_root().join("scripts/failover.lua")).expect("read"),
        ),
        ("rest-api.lua", example("rest-api/rest-api.lua")),
    ];
    let onair = start(&nginx, "", &scripts, |dir| {
        std::fs::create_dir_all(dir.join("media")).expect("mkdir");
        make_media(
            &dir.join("media/green.png"),
            &[
                "-f",
                "lavfi",
                "-i",
                "color=c=green:s=320x180",
                "-frames:v",
                "1",
            ],
        );
    });
    let base = format!("http://127.0.0.1:{}", onair.http_port);
    let auth = format!("Authorization: Bearer {TOKEN}");
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));

    assert_eq!(curl(&["-X", "POST", &format!("{base}/api/stop")]).0, 401);
    assert_eq!(
        curl(&["-X", "POST", "-H", &auth, &format!("{base}/api/stop")]).0,
        202
    );
    assert!(
        wait_until(SWITCH, || nginx.publishers("app").is_empty()),
        "stop did not disconnect the platform"
    );
    let (_, body) = curl(&["-H", &auth, &format!("{base}/api/stream")]);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["running"], false, "{v}");

    assert_eq!(
        curl(&["-X", "POST", "-H", &auth, &format!("{base}/api/start")]).0,
        202
    );
    assert!(
        wait_until(SWITCH, || nginx.publishers("app").len() == 1),
        "start did not reconnect"
    );

    let (code, _) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-d",
        r#"{"type":"image","filename":"../etc/x.png"}"#,
        &format!("{base}/api/set_fallback"),
    ]);
    assert_eq!(code, 400);
    let (code, _) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-d",
        r#"{"type":"image","filename":"green.png"}"#,
        &format!("{base}/api/set_fallback"),
    ]);
    assert_eq!(code, 202);
    assert!(wait_until(SWITCH, || onair.status()["fallback"]
        == "image media/green.png"));
    let viewer = Viewer::start(&nginx.url("app", "out"));
    assert!(
        viewer.wait_for(Instant::now(), SWITCH, Frame::is_green),
        "the new fallback is not on the output"
    );
}

/// A match API: answers GET with the current JSON, or 503 while there is none.
fn match_api() -> (u16, Arc<Mutex<Option<String>>>) {
    let data: Arc<Mutex<Option<String>>> = Arc::default();
    let d = data.clone();
    let port = http_server(move |_, _| match d.lock().expect("lock").clone() {
        Some(j) => (200, "application/json".into(), j.into_bytes()),
        None => (503, "text/plain".into(), Vec::new()),
    });
    (port, data)
}

fn scoreboard_wasm() -> std::path::PathBuf {
    let p = repo_root().join("target/plugins/wasm32-wasip2/release/scoreboard.wasm");
    assert!(p.exists(), "run plugins/build.sh first");
    p
}

/// The scoreboard plugin in a host of its own, to render the pixels the output must show.
fn reference_scoreboard() -> (tempfile::TempDir, onair::wasm::PluginHost) {
    let reference = onair::wasm::PluginHost::new(
        Path::new("/nonexistent"),
        onair::wasm::PluginLimits {
            deadline: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .expect("host");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(scoreboard_wasm(), dir.path().join("scoreboard.wasm")).expect("copy");
    reference
        .load(&dir.path().join("scoreboard.wasm"))
        .expect("load");
    (dir, reference)
}

/// Mean absolute RGB error over the layer's rectangle between `frame` and the reference image
/// blended over `background` (both full output frames).
fn mae_vs_reference(
    frame: &[u8],
    background: &[u8],
    reference: &onair::wasm::Image,
    x0: usize,
    y0: usize,
    fw: usize,
) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in 0..reference.height as usize {
        for x in 0..reference.width as usize {
            let r = &reference.pixels[y * reference.stride as usize + x * 4..][..4];
            let a = u32::from(r[3]);
            let i = ((y0 + y) * fw + x0 + x) * 3;
            for c in 0..3 {
                let want = (u32::from(r[c]) * a + u32::from(background[i + c]) * (255 - a)) / 255;
                sum += u64::from(want.abs_diff(u32::from(frame[i + c])));
                n += 1;
            }
        }
    }
    sum as f64 / n as f64
}

fn mae_region(a: &[u8], b: &[u8], x0: usize, y0: usize, w: usize, h: usize, fw: usize) -> f64 {
    let mut sum = 0u64;
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            let i = (y * fw + x) * 3;
            for c in 0..3 {
                sum += u64::from(a[i + c].abs_diff(b[i + c]));
            }
        }
    }
    sum as f64 / (w * h * 3) as f64
}

#[test]
fn match_overlay_scoreboard_reaches_the_platform_and_follows_the_score() {
    let _serial = serial();
    let nginx = Nginx::start();
    let (port, data) = match_api();
    let script = example("match-overlay/match.lua")
        .replace(
            "http://127.0.0.1:9000/match",
            &format!("http://127.0.0.1:{port}/match"),
        )
        .replace("local POLL_MS = 2000", "local POLL_MS = 500");
    let scripts = [
        (
            "failover.lua",
            std::fs::read_to_string(repo_root().join("scripts/failover.lua")).expect("read"),
        ),
        ("match.lua", script),
    ];
    // a roomy deadline: a fresh instance's first render parses the font (35-90 ms on a busy 2-core machine)
    let onair = start(
        &nginx,
        "[plugins]\ndir = \"plugins\"\ndeadline_ms = 1000\n",
        &scripts,
        |dir| {
            std::fs::create_dir_all(dir.join("plugins")).expect("mkdir");
            std::fs::copy(scoreboard_wasm(), dir.join("plugins/scoreboard.wasm"))
                .expect("copy plugin");
        },
    );
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let connected = Instant::now();
    let url = nginx.url("app", "out");
    let (fw, fh) = (640usize, 360usize);
    let before = grab_rgb(&url, fw, fh);

    let m1 = r#"{"home":{"name":"IND","score":"187/4"},"away":{"name":"AUS","score":154},"clock":"18.3 ov","title":"2nd T20I"}"#;
    *data.lock().expect("lock") = Some(m1.to_string());
    let auth = format!("Bearer {TOKEN}");
    let api_match = || {
        http_request(
            onair.http_port,
            "GET",
            "/api/match",
            &[("Authorization", &auth)],
            "",
        )
        .map(|(_, b)| b)
        .unwrap_or_default()
    };
    assert!(
        wait_until(SWITCH, || api_match().contains("187/4")),
        "the script never got the match data"
    );
    assert!(wait_until(SWITCH, || !onair.status()["overlay"]
        .as_array()
        .is_none_or(|a| a.is_empty())));

    let (_dir, reference) = reference_scoreboard();
    let ref1 = reference.render("scoreboard", 0, 0, m1).expect("render");
    let (w, h) = (ref1.width as usize, ref1.height as usize);
    // wait for the layer to reach the platform (a frame is encoded, sent and decoded)
    let mut with1 = before.clone();
    let mut changed = 0.0;
    assert!(
        wait_until(SWITCH, || {
            with1 = grab_rgb(&url, fw, fh);
            changed = mae_region(&with1, &before, 40, 40, w, h, fw);
            changed > 20.0 && mae_vs_reference(&with1, &before, &ref1, 40, 40, fw) < 12.0
        }),
        "the scoreboard did not reach the output as the plugin draws it (region MAE {changed:.1})"
    );
    let err1 = mae_vs_reference(&with1, &before, &ref1, 40, 40, fw);
    assert!(
        err1 < 12.0,
        "the output differs from the plugin's own rendering (MAE {err1:.1})"
    );

    // the score changes → the pixels change, and still match the reference
    let m2 = m1.replace("187/4", "193/5");
    *data.lock().expect("lock") = Some(m2.clone());
    assert!(wait_until(SWITCH, || api_match().contains("193/5")));
    let changed_pixels = |a: &[u8], b: &[u8]| -> usize {
        (40..40 + h)
            .flat_map(|y| (40..40 + w).map(move |x| (y * fw + x) * 3))
            .filter(|&i| (0..3).any(|c| a[i + c].abs_diff(b[i + c]) > 40))
            .count()
    };
    let mut with2 = with1.clone();
    let mut diff = 0;
    assert!(
        wait_until(SWITCH, || {
            with2 = grab_rgb(&url, fw, fh);
            diff = changed_pixels(&with1, &with2);
            diff > 50
        }),
        "only {diff} pixels changed with the score"
    );
    let ref2 = reference.render("scoreboard", 0, 0, &m2).expect("render");
    let err2 = mae_vs_reference(&with2, &before, &ref2, 40, 40, fw);
    assert!(
        err2 < 12.0,
        "after the score change the output differs from the plugin (MAE {err2:.1})"
    );

    // a new build of the plugin reloads while streaming: the output connection stays (the same
    // component plus a custom section, id 0 named "v", stands for a rebuild)
    let mut rebuilt = std::fs::read(scoreboard_wasm()).expect("read plugin");
    rebuilt.extend_from_slice(&[0, 3, 1, b'v', b'2']);
    std::fs::write(onair.dir.path().join("plugins/scoreboard.wasm"), rebuilt)
        .expect("replace plugin");
    let (_, plugins) = http_request(
        onair.http_port,
        "GET",
        "/api/plugins",
        &[("Authorization", &auth)],
        "",
    )
    .expect("plugins");
    let gen2 = wait_until(SWITCH, || {
        http_request(
            onair.http_port,
            "GET",
            "/api/plugins",
            &[("Authorization", &auth)],
            "",
        )
        .is_some_and(|(_, b)| b.contains("\"generation\":2"))
    });
    assert!(gen2, "the plugin did not reload: {plugins}");
    std::thread::sleep(Duration::from_secs(1));
    let pubs = nginx.publishers("app");
    assert_eq!(pubs.len(), 1, "{pubs:?}");
    assert!(
        pubs[0] + 500 >= connected.elapsed().as_millis() as u64,
        "the output reconnected"
    );
    eprintln!(
        "scoreboard vs reference MAE: {err1:.2} then {err2:.2}; region change {changed:.1}; {diff} pixels changed with the score"
    );
}

#[test]
fn seed_004_streams_start_as_channels_with_their_scoreboard_list_their_uptime_and_stop() {
    let _serial = serial();
    let nginx = Nginx::start();
    let (port, data) = match_api();
    let script = example("match-overlay/streams.lua")
        .replace(
            "http://127.0.0.1:9000/match/{stream}",
            &format!("http://127.0.0.1:{port}/match/{{stream}}"),
        )
        .replace("local POLL_MS = 2000", "local POLL_MS = 500");
    let onair = start(
        &nginx,
        "[plugins]\ndir = \"plugins\"\ndeadline_ms = 1000\n",
        &[("streams.lua", script)],
        |dir| {
            std::fs::create_dir_all(dir.join("plugins")).expect("mkdir");
            std::fs::copy(scoreboard_wasm(), dir.join("plugins/scoreboard.wasm"))
                .expect("copy plugin");
        },
    );
    let url = nginx.url("app2", "m1");
    let start_body = format!(r#"{{"youtube_url": "{url}", "stream_name": "m1"}}"#);
    for (body, code) in [
        (r#"{"stream_name": "m1"}"#.to_string(), 400),
        (r#"not json"#.to_string(), 400),
        (
            r#"{"youtube_url": "rtmp://127.0.0.1:1/app/k", "stream_name": "Bad Name"}"#.to_string(),
            400,
        ),
    ] {
        let (got, v) = onair.call("POST", "/start_stream", &body);
        assert_eq!(got, code, "{body}: {v}");
    }
    let (code, v) = onair.call("POST", "/start_stream", &start_body);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["message"], "Stream m1 started successfully");
    assert_eq!(v["youtube_url"], url.as_str());
    assert_eq!(onair.call("POST", "/start_stream", &start_body).0, 409);
    assert!(wait_until(SWITCH, || nginx.publishers("app2").len() == 1));
    // the camera publishes with the stream name as its key
    let _camera = Publisher::start(&onair.publish_url("m1"), "blue");
    assert!(wait_until(
        SWITCH,
        || onair.get_json("/api/channels/m1")["on_air"] == "live"
    ));
    assert_eq!(
        onair.get_json("/api/channels/default")["on_air"],
        "fallback",
        "the other channel is untouched"
    );
    let (fw, fh) = (640usize, 360usize);
    let before = grab_rgb(&url, fw, fh);

    let m1 = r#"{"home":{"name":"IND","score":"187/4"},"away":{"name":"AUS","score":154},"clock":"18.3 ov","title":"2nd T20I"}"#;
    *data.lock().expect("lock") = Some(m1.to_string());
    let (_dir, reference) = reference_scoreboard();
    let ref1 = reference.render("scoreboard", 0, 0, m1).expect("render");
    let (w, h) = (ref1.width as usize, ref1.height as usize);
    let mut err = f64::MAX;
    assert!(
        wait_until(SWITCH, || {
            let frame = grab_rgb(&url, fw, fh);
            err = mae_vs_reference(&frame, &before, &ref1, 40, 40, fw);
            mae_region(&frame, &before, 40, 40, w, h, fw) > 20.0 && err < 12.0
        }),
        "the scoreboard did not reach the stream's platform (MAE {err:.1})"
    );
    assert!(
        onair.get_json("/api/channels/default")["overlay"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "the scoreboard is on the stream's channel only"
    );

    std::thread::sleep(Duration::from_secs(1));
    let (code, list) = onair.call("GET", "/list_streams", "");
    assert_eq!(code, 200, "{list}");
    let uptime = list["m1"]["uptime"].as_f64().unwrap_or(0.0);
    assert!(uptime > 1.0, "{list}");
    assert!(
        list["m1"]["youtube_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("rtmp://127.0.0.1"))
    );

    for (body, code) in [(r#"{}"#, 400), (r#"{"stream_name": "nope"}"#, 404)] {
        assert_eq!(onair.call("POST", "/stop_stream", body).0, code, "{body}");
    }
    let (code, v) = onair.call("POST", "/stop_stream", r#"{"stream_name": "m1"}"#);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["message"], "Stream m1 stopped successfully");
    assert!(wait_until(SWITCH, || nginx.publishers("app2").is_empty()));
    assert_eq!(onair.call("GET", "/api/channels/m1", "").0, 404);
    assert_eq!(
        onair
            .call("POST", "/stop_stream", r#"{"stream_name": "m1"}"#)
            .0,
        404
    );
    let (_, list) = onair.call("GET", "/list_streams", "");
    assert!(list.get("m1").is_none(), "{list}");
    eprintln!("seed 004: scoreboard MAE {err:.2}, uptime {uptime:.1} s");
}
