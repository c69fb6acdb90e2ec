//! End-to-end: ffmpeg publishes as OBS would, nginx-rtmp is the platform, ffmpeg/ffprobe watch
//! what arrived. Tests run one at a time (two cores are shared).

mod support;

use std::time::{Duration, Instant};

use support::*;

const SWITCH: Duration = Duration::from_secs(10);

/// Destination TOML for `app` on `nginx`.
fn destination(name: &str, nginx: &Nginx, app: &str) -> String {
    format!(
        "[[destination]]\nname = \"{name}\"\nurl = \"{}\"\n",
        nginx.url(app, "out")
    )
}

#[test]
fn relay_survives_publisher_faults_on_one_output_connection() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start(&format!(
        "[fallback]\nstall_timeout_ms = 500\n{}",
        destination("platform", &nginx, "app")
    ));

    // The fallback reaches the platform within 2 s of start-up, nobody publishing.
    assert!(
        wait_until(Duration::from_secs(2), || !nginx
            .publishers("app")
            .is_empty()),
        "no output reached nginx within 2 s of start-up:\n{}",
        onair.log_text()
    );
    let connected = Instant::now();
    let viewer = Viewer::start(&nginx.url("app", "out"));
    assert!(
        viewer.wait_for(connected, SWITCH, |f| !f.is_red()),
        "no fallback frames at the viewer"
    );

    // publish → live
    let t = Instant::now();
    let mut p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        viewer.wait_for(t, SWITCH, Frame::is_red),
        "publish did not go live"
    );
    assert!(!onair.log_lines(&["switched", "to=\"live\""]).is_empty());

    // a second publisher on the same key is rejected; the first keeps streaming
    let mut second = Publisher::start(&onair.publish_url("test-key-123"), "blue");
    assert_eq!(
        second.wait_exit(SWITCH),
        Some(false),
        "second publisher was not refused"
    );
    assert!(
        onair.wait_log("is already publishing", SWITCH),
        "no log line for the duplicate publish"
    );
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(1)); // an observation window
    let after: Vec<Frame> = viewer.frames().into_iter().filter(|f| f.at >= t).collect();
    assert!(
        after.len() > 10 && after.iter().all(Frame::is_red),
        "the duplicate publish disturbed the live feed ({} frames seen)",
        after.len()
    );

    // kill -9 → fallback
    let t = Instant::now();
    p.kill9();
    assert!(
        viewer.wait_for(t, SWITCH, |f| !f.is_red()),
        "kill did not fall back"
    );
    assert!(
        wait_until(SWITCH, || !onair
            .log_lines(&[" unpublish channel=default session="])
            .is_empty()),
        "no unpublish for the killed publisher"
    );

    // publish again → live; kill -STOP → fallback after the stall timeout
    let t = Instant::now();
    let p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        viewer.wait_for(t, SWITCH, Frame::is_red),
        "re-publish did not go live"
    );
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    p.stop();
    assert!(
        viewer.wait_for(t, SWITCH, |f| !f.is_red()),
        "stall did not fall back"
    );
    assert!(onair.wait_log("publisher stalled", SWITCH));
    let stall_lines = onair.log_lines(&["switched", "to=\"fallback\"", "stall of session"]);
    assert!(
        !stall_lines.is_empty(),
        "the switch log line does not say why"
    );

    // SIGCONT → resume → live again, cut on one of its keyframes
    let t = Instant::now();
    p.cont();
    assert!(onair.wait_log("publisher resumed", SWITCH), "no resume");
    assert!(
        viewer.wait_for(t, SWITCH, Frame::is_red),
        "resume did not go live"
    );
    assert!(
        !onair
            .log_lines(&["switched", "to=\"live\"", "resume of session"])
            .is_empty()
    );
    drop(p);

    // publish again → live
    let t = Instant::now();
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        viewer.wait_for(t, SWITCH, Frame::is_red),
        "third publish did not go live"
    );
    std::thread::sleep(Duration::from_secs(1));

    // Through it all: one publish session from onair at nginx, never re-opened, and a
    // continuous output timeline (generous bounds: behaviour, not speed).
    assert_one_connection_since(&nginx, "app", connected);
    let (vmax, vback) = viewer.video_pts_gaps();
    let (amax, aback) = viewer.audio_pts_gaps();
    assert_eq!(vback, 0, "video PTS went backwards");
    assert_eq!(aback, 0, "audio PTS went backwards");
    assert!(vmax < 250.0, "video timeline hole of {vmax} ms");
    assert!(amax < 250.0, "audio timeline hole of {amax} ms");
    assert!(viewer.max_arrival_gap_ms() < 2000.0, "delivery paused");

    let status = onair.status();
    assert_eq!(status["on_air"], "live");
    assert_eq!(status["destinations"][0]["state"], "up");
    assert_eq!(status["destinations"][0]["attempts"], 1);
    // stream keys never appear in the API or the log
    assert!(!status.to_string().contains("test-key-123"));
    assert!(!onair.log_text().contains("test-key-123"));
}

#[test]
fn destination_rejoins_after_the_platform_restarts_without_disturbing_another() {
    let _serial = serial();
    let mut platform_a = Nginx::start();
    let platform_b = Nginx::start();
    let onair = Onair::start(&format!(
        "{}{}",
        destination("a", &platform_a, "app"),
        destination("b", &platform_b, "app2")
    ));
    assert!(wait_until(SWITCH, || platform_b.publishers("app2").len() == 1));
    let b_connected = Instant::now();
    let viewer_b = Viewer::start(&platform_b.url("app2", "out"));
    assert!(
        viewer_b.wait_for(b_connected, SWITCH, |_| true),
        "no frames on b"
    );
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(viewer_b.wait_for(b_connected, SWITCH, Frame::is_red));

    platform_a.stop();
    assert!(
        onair.wait_log("destination down channel=default destination=a", SWITCH),
        "destination a did not notice its platform stopping"
    );
    std::thread::sleep(Duration::from_secs(3));
    platform_a.restart();
    assert!(
        wait_until(Duration::from_secs(40), || platform_a
            .publishers("app")
            .len()
            == 1),
        "onair did not re-join platform a:\n{}",
        onair.log_text()
    );
    assert!(onair.wait_log(
        "destination up channel=default destination=a attempt=",
        SWITCH
    ));
    assert!(!onair.log_lines(&["retrying", "delay_ms="]).is_empty());

    // b never noticed
    std::thread::sleep(Duration::from_secs(1));
    assert_one_connection_since(&platform_b, "app2", b_connected);
    let gap = viewer_b.max_arrival_gap_ms();
    assert!(
        gap < 1000.0,
        "destination b paused {gap} ms while a was down"
    );
    let (vmax, vback) = viewer_b.video_pts_gaps();
    assert!(
        vmax < 250.0 && vback == 0,
        "b's timeline: max step {vmax} ms, {vback} backwards"
    );
    let st = onair.status();
    let a = &st["destinations"][0];
    assert_eq!(a["state"], "up", "{st}");
    assert!(a["attempts"].as_u64().unwrap_or(0) >= 2, "{st}");
}

#[test]
fn bad_input_is_refused_with_a_reason_and_the_stream_keeps_going() {
    use std::io::{Read, Write};
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start(&destination("platform", &nginx, "app"));
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let connected = Instant::now();
    let viewer = Viewer::start(&nginx.url("app", "out"));
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(viewer.wait_for(connected, SWITCH, Frame::is_red));

    // garbage bytes: an HTTP request on the RTMP port
    let mut s = std::net::TcpStream::connect(("127.0.0.1", onair.rtmp_port)).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink); // returns once onair closes it
    assert!(
        onair.wait_log("not an RTMP client", SWITCH),
        "garbage not reported"
    );

    // a truncated handshake: C0 and half of C1, then close
    let mut s = std::net::TcpStream::connect(("127.0.0.1", onair.rtmp_port)).expect("connect");
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 700));
    s.write_all(&c0c1).expect("write");
    drop(s);
    assert!(
        onair.wait_log("truncated handshake", SWITCH),
        "truncated handshake not reported"
    );

    // a wrong stream key, and a wrong application
    let mut wrong = Publisher::start(&onair.publish_url("not-the-key"), "blue");
    assert_eq!(
        wrong.wait_exit(SWITCH),
        Some(false),
        "wrong key was accepted"
    );
    assert!(
        onair.wait_log("unknown stream key", SWITCH),
        "wrong key not reported"
    );
    let mut wrong_app = Publisher::start(
        &format!("rtmp://127.0.0.1:{}/nope/test-key-123", onair.rtmp_port),
        "blue",
    );
    assert_eq!(wrong_app.wait_exit(SWITCH), Some(false));
    assert!(
        onair.wait_log("wrong application \"nope\"", SWITCH),
        "wrong application not reported"
    );

    // a codec onair cannot ingest (MP3 audio)
    let mut mp3 = Publisher::start_codec(
        &onair.publish_url("test-key-456"),
        "blue",
        true,
        "libmp3lame",
    );
    assert!(
        onair.wait_log("unsupported audio codec MP3", SWITCH),
        "MP3 not reported"
    );
    let _ = mp3.wait_exit(SWITCH);
    drop(mp3);

    // none of it touched the stream
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let after: Vec<Frame> = viewer.frames().into_iter().filter(|f| f.at >= t).collect();
    assert!(
        after.len() > 10 && after.iter().all(Frame::is_red),
        "live feed disturbed"
    );
    assert_one_connection_since(&nginx, "app", connected);
    assert!(
        onair.status()["counters"]["refused_connections"]
            .as_u64()
            .unwrap_or(0)
            >= 4
    );
    // the wrong key is not logged in full either
    assert!(!onair.log_text().contains("not-the-key"));
}

#[test]
fn output_is_h264_high_420_8bit_with_2s_gop_and_aac_lc_48k_stereo() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start(&destination("platform", &nginx, "app"));
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    let info = ffprobe_json(
        &nginx.url("app", "out"),
        &[
            "-show_streams",
            "-show_packets",
            "-read_intervals",
            "%+9",
            "-show_entries",
            "stream=codec_name,profile,pix_fmt,bits_per_raw_sample,sample_rate,channels,codec_type:packet=codec_type,pts_time,flags",
        ],
    );
    let streams = info["streams"].as_array().expect("streams");
    let v = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("video stream");
    let a = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("audio stream");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["profile"], "High");
    assert_eq!(v["pix_fmt"], "yuv420p");
    assert_eq!(v["bits_per_raw_sample"], "8");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["profile"], "LC");
    assert_eq!(a["sample_rate"], "48000");
    assert_eq!(a["channels"], 2);
    let keyframes: Vec<f64> = info["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter(|p| {
            p["codec_type"] == "video" && p["flags"].as_str().unwrap_or("").starts_with('K')
        })
        .filter_map(|p| p["pts_time"].as_str().and_then(|t| t.parse().ok()))
        .collect();
    assert!(keyframes.len() >= 3, "keyframes: {keyframes:?}");
    for w in keyframes.windows(2) {
        let d = w[1] - w[0];
        assert!(
            (d - 2.0).abs() < 0.05,
            "keyframe interval {d} s, want 2 s: {keyframes:?}"
        );
    }
}

#[test]
fn publisher_timestamps_track_wall_time() {
    // Regression for RTMP type-3 chunk timestamps (scuffle-rtmp 0.2.3 ran ffmpeg's video at
    // ~0.7x): after 8 s of publishing, tag time and wall time agree.
    let _serial = serial();
    let onair = Onair::start("");
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(onair.wait_log("publish accepted", SWITCH));
    std::thread::sleep(Duration::from_secs(8));
    let st = onair.status();
    let drift = st["sessions"][0]["timestamp_drift_ms"]
        .as_i64()
        .expect("drift");
    assert!(
        drift.abs() < 600,
        "video timestamps drifted {drift} ms from wall time in 8 s: {st}"
    );
    assert!(onair.log_lines(&["timestamps drifted"]).is_empty());
}

#[test]
fn fallback_media_image_video_loop_and_missing_file() {
    let _serial = serial();
    let nginx = Nginx::start();
    // an image: green, 4:3, so it is letterboxed
    let onair = Onair::start_with(
        &format!(
            "[fallback]\nmedia = \"green.png\"\n{}",
            destination("p", &nginx, "app")
        ),
        |dir| {
            make_media(
                &dir.join("green.png"),
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "color=c=green:s=320x240",
                    "-frames:v",
                    "1",
                ],
            )
        },
    );
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let viewer = Viewer::start(&nginx.url("app", "out"));
    assert!(
        viewer.wait_for(Instant::now(), SWITCH, Frame::is_green),
        "image fallback not shown"
    );
    assert_eq!(onair.status()["fallback"], "image green.png");
    // letterboxed, not stretched: the 4:3 picture is 480 px wide in the 640x360 output, with
    // black bars of 80 px left and right
    let rgb = grab_rgb(&nginx.url("app", "out"), 640, 360);
    let px = |x: usize, y: usize| {
        let i = (y * 640 + x) * 3;
        (rgb[i], rgb[i + 1], rgb[i + 2])
    };
    let black = |(r, g, b): (u8, u8, u8)| r < 30 && g < 30 && b < 30;
    let green = |(r, g, b): (u8, u8, u8)| g > 100 && r < 60 && b < 60;
    for y in [20, 180, 340] {
        for x in [10, 60, 580, 630] {
            assert!(
                black(px(x, y)),
                "({x}, {y}) is {:?}: no letterbox bar",
                px(x, y)
            );
        }
        for x in [100, 320, 540] {
            assert!(
                green(px(x, y)),
                "({x}, {y}) is {:?}: not the picture",
                px(x, y)
            );
        }
    }
    drop(viewer);
    drop(onair);

    // a 2 s clip with audio, looped: blue picture, and a continuous timeline across loops
    let onair = Onair::start_with(
        &format!(
            "[fallback]\nmedia = \"clip.mp4\"\n{}",
            destination("p", &nginx, "app2")
        ),
        |dir| {
            make_media(
                &dir.join("clip.mp4"),
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "color=c=blue:s=320x180:r=25:d=2",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=f=880:sample_rate=44100:d=2",
                    "-c:v",
                    "libx264",
                    "-pix_fmt",
                    "yuv420p",
                    "-c:a",
                    "aac",
                    "-shortest",
                ],
            )
        },
    );
    assert!(wait_until(SWITCH, || nginx.publishers("app2").len() == 1));
    let t = Instant::now();
    let viewer = Viewer::start(&nginx.url("app2", "out"));
    assert!(
        viewer.wait_for(t, SWITCH, Frame::is_blue),
        "video fallback not shown"
    );
    std::thread::sleep(Duration::from_secs(7)); // several loops
    let frames: Vec<Frame> = viewer.frames();
    assert!(
        frames.iter().filter(|f| f.is_blue()).count() > 100,
        "loop stopped"
    );
    let (vmax, vback) = viewer.video_pts_gaps();
    let (amax, aback) = viewer.audio_pts_gaps();
    assert!(
        vmax < 250.0 && vback == 0,
        "video across loops: {vmax} ms, {vback} backwards"
    );
    assert!(
        amax < 250.0 && aback == 0,
        "audio across loops: {amax} ms, {aback} backwards"
    );
    assert!(
        viewer.max_arrival_gap_ms() < 1000.0,
        "delivery paused across loops"
    );
    drop(viewer);
    drop(onair);

    // a missing file: the slate, and the error logged once
    let onair = Onair::start("[fallback]\nmedia = \"nope.png\"\n");
    assert!(onair.wait_log("fallback media unusable", SWITCH));
    assert_eq!(onair.log_lines(&["fallback media unusable"]).len(), 1);
    assert_eq!(onair.status()["fallback"], "slate");
}

#[test]
fn broken_policy_script_falls_back_to_the_builtin_default() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start_with(
        &format!(
            "[scripts]\ndir = \"s\"\n{}",
            destination("p", &nginx, "app")
        ),
        |dir| {
            std::fs::create_dir_all(dir.join("s")).expect("mkdir");
            std::fs::write(
                dir.join("s/failover.lua"),
                "onair.on('publish', function(ev)\n  onair.switch(\n",
            )
            .expect("write");
        },
    );
    assert!(
        onair.wait_log("failover.lua:", SWITCH),
        "load error without file:line"
    );
    let st = onair.status();
    let script = &st["scripts"][0];
    assert_eq!(script["name"], "failover.lua", "{st}");
    assert_eq!(script["loaded"], false, "{st}");
    assert!(
        script["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("failover.lua:"),
        "{st}"
    );
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let viewer = Viewer::start(&nginx.url("app", "out"));
    let t = Instant::now();
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        viewer.wait_for(t, SWITCH, Frame::is_red),
        "built-in default did not go live"
    );
    assert!(!onair.log_lines(&["built-in policy"]).is_empty());
}

#[test]
fn publisher_without_audio_gets_silence_and_preview_serves_flv() {
    let _serial = serial();
    let onair = Onair::start("");
    let _p = Publisher::start_args(&onair.publish_url("test-key-123"), "red", false);
    assert!(
        onair.wait_log("switched", SWITCH),
        "video-only publish did not go live"
    );
    let t = Instant::now();
    let viewer = Viewer::start(&onair.preview_url());
    assert!(
        viewer.wait_for(t, SWITCH, Frame::is_red),
        "preview shows no live picture"
    );
    std::thread::sleep(Duration::from_secs(2));
    let (amax, aback) = viewer.audio_pts_gaps();
    assert!(
        viewer.audio.lock().expect("lock").len() > 50,
        "no audio on the output"
    );
    assert!(
        amax < 250.0 && aback == 0,
        "audio timeline {amax} ms / {aback} backwards"
    );
    assert_eq!(onair.status()["counters"]["preview_viewers"], 1);
}

#[test]
fn check_validates_and_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[fallback]\nstall_timeout_ms = 50\n").expect("write");
    let out = std::process::Command::new(onair_bin())
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fallback.stall_timeout_ms: 50 is below the minimum 300"),
        "{err}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[scripts]\ndir = \"{}\"\n[[destination]]\nname = \"twitch\"\nurl = \"rtmp://live.twitch.tv/app/live_123456_abcdef\"\n",
            repo_root().join("scripts").display()
        ),
    )
    .expect("write");
    let out = std::process::Command::new(onair_bin())
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .expect("run check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("destination twitch: rtmp://live.twitch.tv/app/…cdef"),
        "{text}"
    );
    assert!(!text.contains("live_123456_abcdef"));

    // a script that does not load makes `check` fail (and only `check`: `run` starts anyway)
    let scripts = dir.path().join("s");
    std::fs::create_dir_all(&scripts).expect("mkdir");
    std::fs::write(
        scripts.join("failover.lua"),
        "onair.on('stall', function()\n",
    )
    .expect("write");
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        format!("[scripts]\ndir = \"{}\"\n", scripts.display()),
    )
    .expect("write");
    let out = std::process::Command::new(onair_bin())
        .args(["check", "-c"])
        .arg(&broken)
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failover.lua:2"), "{err}");

    // environment variables layer over the file and are validated the same way
    let out = std::process::Command::new(onair_bin())
        .args(["check", "-c"])
        .arg(&good)
        .env("ONAIR_FALLBACK__STALL_TIMEOUT_MS", "120")
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fallback.stall_timeout_ms: 120 is below the minimum 300"),
        "{err}"
    );
    assert!(
        text.contains("rtmp://<this machine's address>:1935/live"),
        "{text}"
    );
}

/// A policy script: the default behaviour plus a route that reports which version runs.
fn policy_version(n: u32) -> String {
    format!(
        r#"-- version {n}
onair.on("publish", function(ev) onair.switch("live") end)
onair.on("resume", function(ev) onair.switch("live") end)
onair.on("unpublish", function(ev) if ev.on_air then onair.switch("fallback") end end)
onair.on("stall", function(ev) if ev.on_air then onair.switch("fallback") end end)
onair.route("GET", "/policy", function() return {{ json = {{ version = {n} }} }} end, {{ auth = false }})
"#
    )
}

#[test]
fn policy_reloads_on_save_under_a_live_stream_without_a_glitch() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start_with(
        &format!(
            "[scripts]\ndir = \"s\"\n{}",
            destination("p", &nginx, "app")
        ),
        |dir| {
            std::fs::create_dir_all(dir.join("s")).expect("mkdir");
            std::fs::write(dir.join("s/failover.lua"), policy_version(0)).expect("write");
        },
    );
    let script = onair.dir.path().join("s/failover.lua");
    let version = || {
        curl(&[&format!("http://127.0.0.1:{}/policy", onair.http_port)])
            .1
            .parse::<serde_json::Value>()
            .ok()
            .and_then(|v| v["version"].as_u64())
    };
    assert_eq!(version(), Some(0));
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let connected = Instant::now();
    let viewer = Viewer::start(&nginx.url("app", "out"));
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(viewer.wait_for(connected, SWITCH, Frame::is_red));
    let live_from = Instant::now();

    let mut took_ms = Vec::new();
    let mut current = 0;
    for i in 1..=10u32 {
        std::thread::sleep(Duration::from_secs(2));
        let t = Instant::now();
        if i % 2 == 1 {
            std::fs::write(&script, policy_version(i)).expect("write");
            assert!(
                wait_until(Duration::from_secs(5), || version() == Some(u64::from(i))),
                "version {i} never took effect"
            );
            took_ms.push(t.elapsed().as_millis());
            current = i;
        } else {
            let failures = onair.log_lines(&["script reload failed"]).len();
            std::fs::write(&script, "onair.on('stall', function(ev)\n  broken(\n").expect("write");
            assert!(
                wait_until(Duration::from_secs(5), || onair
                    .log_lines(&["script reload failed"])
                    .len()
                    > failures),
                "broken save {i} not reported"
            );
            assert_eq!(
                version(),
                Some(u64::from(current)),
                "a broken save replaced version {current}"
            );
        }
    }
    eprintln!("save → effect (ms): {took_ms:?}");
    let (code, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        &format!("http://127.0.0.1:{}/api/scripts", onair.http_port),
    ]);
    assert_eq!(code, 200);
    assert!(
        body.contains("failover.lua:3"),
        "the last broken save's error is visible: {body}"
    );

    // the stream never noticed
    assert_one_connection_since(&nginx, "app", connected);
    let during: Vec<Frame> = viewer
        .frames()
        .into_iter()
        .filter(|f| f.at >= live_from)
        .collect();
    assert!(
        during.len() > 300 && during.iter().all(Frame::is_red),
        "the output left the live feed during reloads ({} frames seen)",
        during.len()
    );
    let (vmax, vback) = viewer.video_pts_gaps();
    assert!(
        vmax <= 100.0 && vback == 0,
        "video max gap {vmax} ms, {vback} backwards"
    );
    assert!(onair.log_lines(&["switched", "to=\"fallback\""]).is_empty());
}

#[test]
fn a_runaway_stall_handler_is_aborted_and_the_stream_still_falls_back() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start_with(
        &format!(
            "[fallback]\nstall_timeout_ms = 500\n[scripts]\ndir = \"s\"\n{}",
            destination("p", &nginx, "app")
        ),
        |dir| {
            std::fs::create_dir_all(dir.join("s")).expect("mkdir");
            std::fs::write(
                dir.join("s/failover.lua"),
                "onair.on('publish', function() onair.switch('live') end)\nonair.on('stall', function() while true do end end)\n",
            )
            .expect("write");
        },
    );
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let viewer = Viewer::start(&nginx.url("app", "out"));
    let t = Instant::now();
    let p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(viewer.wait_for(t, SWITCH, Frame::is_red));
    let t = Instant::now();
    p.stop();
    assert!(
        viewer.wait_for(t, SWITCH, |f| !f.is_red()),
        "no fallback after a runaway stall handler"
    );
    assert!(onair.wait_log("time limit of 100 ms exceeded", SWITCH));
    assert!(
        !onair
            .log_lines(&["switched", "to=\"fallback\"", "built-in policy"])
            .is_empty()
    );
}

#[test]
fn http_api_and_script_routes_with_curl() {
    let _serial = serial();
    let onair = Onair::start_with("[scripts]\ndir = \"s\"\n", |dir| {
        std::fs::create_dir_all(dir.join("s")).expect("mkdir");
        std::fs::copy(
            repo_root().join("scripts/failover.lua"),
            dir.join("s/failover.lua"),
        )
        .expect("copy");
        std::fs::write(
            dir.join("s/api.lua"),
            r#"onair.route("GET", "/queue/:id", function(req)
  return { json = { id = req.params.id, q = req.query.q } }
end, { auth = false })
onair.route("POST", "/queue", function(req) return { status = 201, json = { got = req.json } } end, { auth = true })
onair.route("GET", "/fail", function() error("internal detail") end, { auth = false })
onair.route("POST", "/kick/:id", function(req) onair.kick(tonumber(req.params.id), "bye") return { status = 202, json = {} } end)
"#,
        )
        .expect("write");
        std::fs::write(
            dir.join("s/zz_dup.lua"),
            "onair.route('GET', '/queue/:x', function() end)\n",
        )
        .expect("write");
    });
    let base = format!("http://127.0.0.1:{}", onair.http_port);
    let auth = format!("Authorization: Bearer {TOKEN}");

    assert_eq!(curl(&[&format!("{base}/api/status")]).0, 401);
    assert_eq!(
        curl(&[
            "-H",
            "Authorization: Bearer nope-nope-nope-nope",
            &format!("{base}/api/status")
        ])
        .0,
        401
    );
    let (code, body) = curl(&["-H", &auth, &format!("{base}/api/status")]);
    assert_eq!(code, 200);
    assert!(body.contains("\"on_air\":\"fallback\""), "{body}");

    let (code, body) = curl(&[&format!("{base}/queue/42?q=x")]);
    assert_eq!((code, body.as_str()), (200, r#"{"id":"42","q":"x"}"#));
    assert_eq!(
        curl(&["-X", "POST", "-d", r#"{"a":1}"#, &format!("{base}/queue")]).0,
        401
    );
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-d",
        r#"{"a":1}"#,
        &format!("{base}/queue"),
    ]);
    assert_eq!((code, body.as_str()), (201, r#"{"got":{"a":1}}"#));
    let (code, body) = curl(&[&format!("{base}/fail")]);
    assert_eq!(code, 500);
    assert!(!body.contains("internal detail"), "{body}");
    assert!(
        onair.wait_log("internal detail", SWITCH),
        "the trace goes to the log"
    );

    let (_, scripts) = curl(&["-H", &auth, &format!("{base}/api/scripts")]);
    assert!(
        scripts.contains("duplicate route GET /queue/:x: already served by api.lua"),
        "{scripts}"
    );

    // SSE: a switch shows up as an event in the JSON Lua sees
    let sse = std::process::Command::new("curl")
        .args([
            "-s",
            "-N",
            "--max-time",
            "4",
            "-H",
            &auth,
            &format!("{base}/api/events"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    assert!(
        wait_until(SWITCH, || onair.status()["counters"]["sse_clients"] == 1),
        "the SSE client never connected"
    );
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(onair.wait_log("switched", SWITCH));
    let (code, _) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-d",
        r#"{"source":"fallback"}"#,
        &format!("{base}/api/switch"),
    ]);
    assert_eq!(code, 202);
    assert!(onair.wait_log("reason=POST /api/switch", SWITCH));
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            "-H",
            &auth,
            "-d",
            r#"{"source":"backup"}"#,
            &format!("{base}/api/switch")
        ])
        .0,
        400
    );
    let out = sse.wait_with_output().expect("sse output");
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events.contains("event:publish") && events.contains("event:switched"),
        "{events}"
    );
    assert!(
        events.contains(r#""to":"fallback""#) && events.contains(r#""reason":"POST /api/switch""#),
        "{events}"
    );

    // onair.kick from a route disconnects the publisher
    let session = onair.status()["sessions"][0]["session"]
        .as_u64()
        .expect("a session");
    assert_eq!(
        curl(&["-X", "POST", "-H", &auth, &format!("{base}/kick/{session}")]).0,
        202
    );
    assert!(
        onair.wait_log("reason=kicked", SWITCH),
        "kick did not end the session"
    );

    // a deleted script's routes vanish
    std::fs::remove_file(onair.dir.path().join("s/api.lua")).expect("rm");
    assert!(
        wait_until(SWITCH, || curl(&[&format!("{base}/queue/42")]).0 == 404),
        "route outlived its script"
    );
}

/// Video PTS (s) of every white frame after a dark one in the FLV file at `path`.
fn flashes(path: &std::path::Path) -> Vec<f64> {
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["frame=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    let pts: Vec<f64> = String::from_utf8_lossy(&probe.stdout)
        .split_whitespace()
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    let raw = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v", "-fps_mode", "passthrough", "-vf"])
        .args(["scale=32:18,format=gray", "-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg")
        .stdout;
    let mut out = Vec::new();
    let mut dark = true;
    for (t, frame) in pts.iter().zip(raw.chunks_exact(32 * 18)) {
        let mean = frame.iter().map(|&p| u32::from(p)).sum::<u32>() / (32 * 18);
        if mean > 128 && dark {
            out.push(*t);
        }
        dark = mean < 64;
    }
    out
}

/// Audio PTS (s, 1 ms steps) of every beep onset in the file at `path`: the first ms louder
/// than a quarter of full scale after 200 ms of quiet.
fn beeps(path: &std::path::Path) -> Vec<f64> {
    let raw = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:a",
            "-af",
            "aresample=async=1:first_pts=0",
            "-ac",
            "1",
        ])
        .args(["-ar", "48000", "-f", "s16le", "-"])
        .output()
        .expect("ffmpeg")
        .stdout;
    let mut out = Vec::new();
    let mut quiet = 1000;
    for (ms, block) in raw.chunks_exact(2 * 48).enumerate() {
        let peak = block
            .chunks_exact(2)
            .map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs())
            .max()
            .unwrap_or(0);
        if peak > 8000 {
            if quiet >= 200 {
                out.push(ms as f64 / 1000.0);
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    out
}

#[test]
fn picture_and_sound_reach_the_platform_in_sync() {
    // The publisher flashes a white frame and beeps (50 ms, 1 kHz) at every whole second, in
    // sync. At the platform each flash is paired with its beep: the sound may trail the picture
    // by less than one output frame (the output's frame grid falls anywhere against the
    // publisher's), never by an AAC encoder's priming on top (1024 samples, 21.3 ms).
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start(&destination("platform", &nginx, "app"));
    let _publisher = Publisher::start_av(
        &onair.publish_url("test-key-123"),
        "color=c=black:s=640x360:r=30,\
         drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t,1),0.02)'",
        "aevalsrc='if(lt(mod(t,1),0.05),0.8*sin(2*PI*1000*t),0)':s=48000",
    );
    assert!(
        onair.wait_log("to=\"live\"", SWITCH),
        "never went live:\n{}",
        onair.log_text()
    );
    let file = onair.dir.path().join("platform.flv");
    let recorded = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(nginx.url("app", "out"))
        .args(["-t", "7", "-c", "copy", "-f", "flv"])
        .arg(&file)
        .status()
        .expect("ffmpeg");
    assert!(recorded.success(), "recording the platform's stream failed");

    let (v, b) = (flashes(&file), beeps(&file));
    let offsets_ms: Vec<f64> = v
        .iter()
        .filter_map(|f| {
            let near = b
                .iter()
                .min_by(|x, y| (*x - f).abs().total_cmp(&(*y - f).abs()))?;
            ((near - f).abs() <= 0.3).then_some((near - f) * 1000.0)
        })
        .collect();
    assert!(
        offsets_ms.len() >= 4,
        "flashes and beeps did not pair: flashes {v:?}, beeps {b:?}"
    );
    eprintln!("sound against picture (ms, + = sound later): {offsets_ms:?}");
    // one output frame (33.3 ms), plus 5 ms for the beep detector's 1 ms steps and AAC's
    // pre-echo either way
    assert!(
        offsets_ms.iter().all(|o| (-5.0..=38.3).contains(o)),
        "sound against picture (ms, + = sound later): {offsets_ms:?}"
    );
}
