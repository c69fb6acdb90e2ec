//! Each example in `examples/` runs in a real onair with ffmpeg publishing and nginx-rtmp as the
//! platform.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
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

fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
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

/// Collects the bodies POSTed to it.
fn webhook_receiver() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream);
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice(&body) {
                g.lock().expect("lock").push(v);
            }
            let _ = r
                .into_inner()
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
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
