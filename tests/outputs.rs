//! Outputs: per-destination encoding profiles and recordings. ffmpeg publishes, nginx-rtmp is
//! the platform, ffprobe checks what arrived (resolution, frame rate, bitrate, keyframes) and
//! what was written to disk.

mod support;

use std::time::{Duration, Instant};

use support::*;

const SWITCH: Duration = Duration::from_secs(15);

/// What ffprobe saw of a stream's video over `seconds`: (width, height, frames per second,
/// video kbit/s, keyframe times).
struct Probe {
    width: u64,
    height: u64,
    fps: f64,
    kbps: f64,
    keyframes: Vec<f64>,
}

fn probe(url: &str, seconds: u32) -> Probe {
    let info = ffprobe_json(
        url,
        &[
            "-select_streams",
            "v",
            "-show_streams",
            "-show_packets",
            "-read_intervals",
            &format!("%+{seconds}"),
            "-show_entries",
            "stream=width,height:packet=pts_time,size,flags",
        ],
    );
    let s = &info["streams"][0];
    let packets: Vec<(f64, u64, bool)> = info["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter_map(|p| {
            Some((
                p["pts_time"].as_str()?.parse().ok()?,
                p["size"].as_str()?.parse().ok()?,
                p["flags"].as_str().unwrap_or("").starts_with('K'),
            ))
        })
        .collect();
    assert!(packets.len() > 30, "too few packets from {url}: {info}");
    // from the first keyframe on: ffprobe may start mid-GOP
    let first_key = packets.iter().position(|p| p.2).expect("a keyframe");
    let packets = &packets[first_key..];
    let span = packets.last().expect("packets").0 - packets[0].0;
    let bytes: u64 = packets[..packets.len() - 1].iter().map(|p| p.1).sum();
    Probe {
        width: s["width"].as_u64().unwrap_or(0),
        height: s["height"].as_u64().unwrap_or(0),
        fps: (packets.len() - 1) as f64 / span,
        kbps: bytes as f64 * 8.0 / span / 1000.0,
        keyframes: packets.iter().filter(|p| p.2).map(|p| p.0).collect(),
    }
}

fn assert_keyframes_every(p: &Probe, seconds: f64, what: &str) {
    assert!(
        p.keyframes.len() >= 3,
        "{what}: keyframes {:?}",
        p.keyframes
    );
    for w in p.keyframes.windows(2) {
        assert!(
            (w[1] - w[0] - seconds).abs() < 0.05,
            "{what}: keyframe interval {} s, want {seconds} s: {:?}",
            w[1] - w[0],
            p.keyframes
        );
    }
}

/// Connection ages on nginx's `app`: exactly one, at least `since` old (never re-opened).
fn assert_one_connection_since(nginx: &Nginx, app: &str, since: Instant) {
    let pubs = nginx.publishers(app);
    assert_eq!(pubs.len(), 1, "publish sessions on {app}: {pubs:?}");
    let age_ms = since.elapsed().as_millis() as u64;
    assert!(
        pubs[0] + 500 >= age_ms,
        "the output connection on {app} was re-opened: {} ms old, test ran {age_ms} ms",
        pubs[0]
    );
}

#[test]
fn each_destination_gets_its_profile_and_a_new_one_starts_without_disturbing_the_others() {
    let _serial = serial();
    let nginx = Nginx::start();
    // the channel encodes 640x360@30 at 800 kbit/s with 2 s keyframes; "small" is 320x180@15
    // at 300 kbit/s with 1 s keyframes
    let onair = Onair::start(&format!(
        "[profile.small]\nwidth = 320\nheight = 180\nfps = 15\nvideo_bitrate_kbps = 300\n\
         audio_bitrate_kbps = 64\nkeyframe_interval_s = 1\n\
         [profile.tiny]\nwidth = 256\nheight = 144\nfps = 10\nvideo_bitrate_kbps = 200\n\
         [[destination]]\nname = \"main\"\nurl = \"{}\"\n\
         [[destination]]\nname = \"small\"\nurl = \"{}\"\nprofile = \"small\"\n",
        nginx.url("app", "main"),
        nginx.url("app2", "small"),
    ));
    assert!(
        wait_until(SWITCH, || nginx.publishers("app").len() == 1
            && nginx.publishers("app2").len() == 1),
        "both destinations up:\n{}",
        onair.log_text()
    );
    let since = Instant::now();
    let status = onair.status();
    let dests = &status["channels"][0]["destinations"];
    assert_eq!(dests[1]["profile"], "small", "{status}");
    assert!(dests[0]["profile"].is_null(), "{status}");

    let main = probe(&nginx.url("app", "main"), 9);
    let small = probe(&nginx.url("app2", "small"), 9);
    assert_eq!((main.width, main.height), (640, 360));
    assert_eq!((small.width, small.height), (320, 180));
    assert!((main.fps - 30.0).abs() < 1.0, "main fps {}", main.fps);
    assert!((small.fps - 15.0).abs() < 0.6, "small fps {}", small.fps);
    for (p, want, what) in [(&main, 800.0, "main"), (&small, 300.0, "small")] {
        assert!(
            (p.kbps - want).abs() <= want * 0.10,
            "{what}: {:.0} kbit/s, want {want} ± 10 %",
            p.kbps
        );
    }
    assert_keyframes_every(&main, 2.0, "main");
    assert_keyframes_every(&small, 1.0, "small");

    // a switch shows on both
    let viewers = [
        Viewer::start(&nginx.url("app", "main")),
        Viewer::start(&nginx.url("app2", "small")),
    ];
    let t = Instant::now();
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    for v in &viewers {
        assert!(v.wait_for(t, SWITCH, Frame::is_red), "live on both");
    }
    let (code, _) = onair.call(
        "POST",
        "/api/channels/default/switch",
        r#"{"source": "fallback"}"#,
    );
    assert_eq!(code, 202);
    let t = Instant::now();
    for v in &viewers {
        assert!(v.wait_for(t, SWITCH, |f| !f.is_red()), "fallback on both");
    }

    // a destination with a third profile, added while both run: its encode starts, the
    // others go on (same connection, no delivery pause)
    let before = viewers.iter().map(|v| v.frames().len()).collect::<Vec<_>>();
    let (code, body) = onair.call(
        "POST",
        "/api/channels/default/destinations",
        &format!(
            r#"{{"name": "tiny", "url": "{}", "profile": "tiny"}}"#,
            nginx.url("app", "tiny")
        ),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["profile"], "tiny");
    assert!(
        wait_until(SWITCH, || nginx.publishers("app").len() == 2),
        "the tiny destination connects:\n{}",
        onair.log_text()
    );
    let tiny = probe(&nginx.url("app", "tiny"), 5);
    assert_eq!((tiny.width, tiny.height), (256, 144));
    std::thread::sleep(Duration::from_secs(2));
    for (i, v) in viewers.iter().enumerate() {
        let frames: Vec<Frame> = v.frames().into_iter().skip(before[i]).collect();
        let gap = frames
            .windows(2)
            .map(|w| (w[1].at - w[0].at).as_secs_f64() * 1000.0)
            .fold(0.0, f64::max);
        assert!(
            frames.len() > 20 && gap < 400.0,
            "viewer {i} while the encode was added: {} frames, largest arrival gap {gap:.0} ms",
            frames.len()
        );
    }
    assert!(
        nginx.publishers("app2").len() == 1
            && nginx.publishers("app2")[0] + 500 >= since.elapsed().as_millis() as u64,
        "the small destination was not re-opened"
    );
    let main_pubs = nginx.publishers("app");
    assert!(
        main_pubs
            .iter()
            .max()
            .is_some_and(|age| age + 500 >= since.elapsed().as_millis() as u64),
        "the main destination was re-opened: {main_pubs:?}"
    );

    // bad profiles are refused with the field named; nothing is added
    let (code, body) = onair.call(
        "POST",
        "/api/channels/default/destinations",
        &format!(
            r#"{{"name": "x", "url": "{}", "profile": "nope"}}"#,
            nginx.url("app", "x")
        ),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["field"], "profile", "{body}");
    // the built-in profiles are listed
    let profiles = onair.get_json("/api/profiles");
    assert_eq!(profiles["twitch-720p60"]["fps"], 60, "{profiles}");
    assert_eq!(profiles["small"]["width"], 320, "{profiles}");

    // removing the last user of a profile removes its encode; the others stay
    let (code, _) = onair.call("DELETE", "/api/channels/default/destinations/tiny", "");
    assert_eq!(code, 204);
    assert!(
        onair.wait_log("encode removed", SWITCH),
        "the tiny encode is removed:\n{}",
        onair.log_text()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_one_connection_since(&nginx, "app2", since);
    assert_eq!(nginx.publishers("app").len(), 1);
    let t = Instant::now();
    assert!(
        viewers[1].wait_for(t, SWITCH, |_| true),
        "small still flows"
    );
}
