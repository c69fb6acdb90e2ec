//! Copy mode (`output.mode = "copy"`) end to end: ffmpeg publishes a pre-encoded stream with
//! `-c copy` (so its exact packets are known), nginx-rtmp is the platform, and an ffmpeg
//! reader records everything the platform got. The promise: the publisher's packets arrive
//! byte for byte, the fallback is spliced in and out on keyframes over one platform
//! connection, and the whole recording decodes with zero errors.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const SWITCH: Duration = Duration::from_secs(10);

/// One FLV audio (8) or video (9) tag: type, timestamp (ms), body.
struct Tag {
    kind: u8,
    ts: u32,
    body: Vec<u8>,
}

/// The audio and video tags of an FLV file (FLV v10.1 annex E: 9-byte header, then tags each
/// followed by a 4-byte size).
fn flv_tags(path: &Path) -> Vec<Tag> {
    let d = std::fs::read(path).expect("read flv");
    let mut at = 13;
    let mut out = Vec::new();
    while at + 11 <= d.len() {
        let len = (d[at + 1] as usize) << 16 | (d[at + 2] as usize) << 8 | d[at + 3] as usize;
        let ts = u32::from_be_bytes([d[at + 7], d[at + 4], d[at + 5], d[at + 6]]);
        let Some(body) = d.get(at + 11..at + 11 + len) else {
            break;
        };
        if matches!(d[at], 8 | 9) && !body.is_empty() {
            out.push(Tag {
                kind: d[at],
                ts,
                body: body.to_vec(),
            });
        }
        at += 11 + len + 4;
    }
    out
}

/// Whether a tag body is a sequence header (AVC packet type 0 / AAC packet type 0).
fn is_header(t: &Tag) -> bool {
    t.body.len() > 1 && t.body[1] == 0
}

/// A video tag body with any SPS (7) and PPS (8) NAL units taken out (4-byte lengths): the
/// copy path puts the publisher's parameter sets in front of its IDRs.
fn without_parameter_sets(body: &[u8]) -> Vec<u8> {
    let mut out = body[..5.min(body.len())].to_vec();
    let mut at = 5;
    while at + 4 <= body.len() {
        let len = u32::from_be_bytes(body[at..at + 4].try_into().expect("4")) as usize;
        let Some(nal) = body.get(at + 4..at + 4 + len) else {
            return body.to_vec();
        };
        if !matches!(nal.first().map(|b| b & 0x1f), Some(7 | 8)) {
            out.extend_from_slice(&body[at..at + 4 + len]);
        }
        at += 4 + len;
    }
    out
}

/// A 640x360@30 publisher file: x264 (1 s GOP, B-frames, SPS id 0), AAC-LC 48 kHz stereo.
fn publisher_file(dir: &Path, seconds: u32, size: &str) -> PathBuf {
    let path = dir.join(format!("pub-{size}.flv"));
    make_media(
        &path,
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=s={size}:r=30:d={seconds}"),
            "-f",
            "lavfi",
            "-i",
            &format!("sine=f=440:r=48000:d={seconds}"),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            "30",
            "-b:v",
            "600k",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-f",
            "flv",
        ],
    );
    path
}

/// `ffmpeg -re -i FILE -c copy -f flv URL`: the file's own packets, at their pace.
fn publish_file(file: &Path, url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

/// Records what the platform serves, `-c copy`, into `out`.
fn record(url: &str, out: &Path) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i", url])
        .args(["-c", "copy", "-f", "flv"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

fn signal(child: &Child, which: &str) {
    let _ = Command::new("kill")
        .args([which, &child.id().to_string()])
        .status();
}

fn interrupt(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn copy_status(onair: &Onair) -> serde_json::Value {
    onair.get_json("/api/channels/default")["output"]["copy"].clone()
}

fn sending(onair: &Onair) -> String {
    copy_status(onair)["sending"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Decoding errors in the whole file (`ffmpeg -v error -xerror`), every frame at its own
/// timestamp (the null muxer's 1/30 s time base would merge frames whose millisecond phase a
/// splice moved, a complaint about the output, not the stream).
fn decode_errors(path: &Path) -> (bool, String) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-xerror", "-i"])
        .arg(path)
        .args([
            "-fps_mode",
            "passthrough",
            "-enc_time_base:v",
            "1:1000",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn copy_mode_forwards_the_publishers_packets_and_splices_the_fallback_on_one_connection() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start(&format!(
        "[output]\nwidth = 640\nheight = 360\nfps = 30\nmode = \"copy\"\n\
         [fallback]\nstall_timeout_ms = 500\n\
         [[destination]]\nname = \"platform\"\nurl = \"{}\"\n",
        nginx.url("app", "out")
    ));
    let work = tempfile::tempdir().expect("tempdir");
    let file = publisher_file(work.path(), 12, "640x360");

    assert!(
        wait_until(SWITCH, || !nginx.publishers("app").is_empty()),
        "the fallback never reached the platform:\n{}",
        onair.log_text()
    );
    let connected = Instant::now();
    let view = onair.get_json("/api/channels/default");
    assert_eq!(view["output"]["mode"], "copy", "{view}");
    assert!(
        wait_until(SWITCH, || sending(&onair) == "fallback"),
        "{}",
        copy_status(&onair)
    );
    let capture = work.path().join("platform.flv");
    let mut recorder = record(&nginx.url("app", "out"), &capture);
    std::thread::sleep(Duration::from_secs(2));

    // live, fallback (the publisher killed), live again, a stall and back, fallback: two
    // publishes of the same file
    for round in 0..2 {
        let mut publisher = publish_file(&file, &onair.publish_url("test-key-123"));
        assert!(
            wait_until(SWITCH, || sending(&onair) == "live"),
            "round {round}: the publisher never went out: {}\n{}",
            copy_status(&onair),
            onair.log_text()
        );
        std::thread::sleep(Duration::from_secs(3));
        if round == 1 {
            // a stall (SIGSTOP: the connection stays open, nothing arrives) falls back; the
            // same session resuming goes back to live on its next IDR
            signal(&publisher, "-STOP");
            assert!(
                wait_until(SWITCH, || sending(&onair) == "fallback"),
                "no fallback on a stall: {}",
                copy_status(&onair)
            );
            std::thread::sleep(Duration::from_secs(1));
            signal(&publisher, "-CONT");
            assert!(
                wait_until(SWITCH, || sending(&onair) == "live"),
                "not back to live after the stall: {}",
                copy_status(&onair)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
        let _ = publisher.kill();
        let _ = publisher.wait();
        let killed = Instant::now();
        assert!(
            wait_until(SWITCH, || sending(&onair) == "fallback"),
            "round {round}: no fallback after the publisher was killed: {}",
            copy_status(&onair)
        );
        eprintln!(
            "round {round}: fallback sent {} ms after the kill (stall timeout 500 ms)",
            killed.elapsed().as_millis()
        );
        if round == 0 {
            // a script or the control room changes the fallback while it is on air: the new
            // still is encoded once and follows on its own IDR, on the same connection
            let media = onair.dir.path().join("media");
            std::fs::create_dir_all(&media).expect("media dir");
            let image = media.join("red.png");
            make_media(
                &image,
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "color=c=red:s=320x240",
                    "-frames:v",
                    "1",
                ],
            );
            let (code, body) = onair.call(
                "POST",
                "/api/channels/default/fallback",
                &serde_json::json!({ "media": image }).to_string(),
            );
            assert_eq!(code, 200, "{body}");
            assert!(
                onair.wait_log("the new fallback is encoded", SWITCH),
                "{}",
                onair.log_text()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    interrupt(&mut recorder);
    assert_one_connection_since(&nginx, "app", connected);

    // the whole recording decodes with zero errors
    let (clean, errors) = decode_errors(&capture);
    assert!(
        clean && errors.trim().is_empty(),
        "the platform's stream has decode errors:\n{errors}"
    );

    // the publisher's packets arrived untouched (IDRs with its SPS/PPS in front): counted in
    // the recording, and whatever is not the publisher's is a fallback GOP (60 frames of video
    // looped, silence), not a publisher packet changed on the way
    let sent = flv_tags(&file);
    let got = flv_tags(&capture);
    let payload = |t: &Tag| {
        if t.kind == 9 {
            without_parameter_sets(&t.body)
        } else {
            t.body.clone()
        }
    };
    for (kind, what, at_least, others_at_most) in
        [(9u8, "video", 200, 60), (8u8, "audio", 300, 100)]
    {
        let published: std::collections::HashSet<Vec<u8>> = sent
            .iter()
            .filter(|t| t.kind == kind && !is_header(t))
            .map(payload)
            .collect();
        let arrived: Vec<Vec<u8>> = got
            .iter()
            .filter(|t| t.kind == kind && !is_header(t))
            .map(payload)
            .collect();
        let same = arrived.iter().filter(|b| published.contains(*b)).count();
        let others: std::collections::HashSet<&Vec<u8>> =
            arrived.iter().filter(|b| !published.contains(*b)).collect();
        // live stretches of ~4 s and ~5 s at 30 fps and ~47 AAC frames a second
        assert!(
            same >= at_least,
            "{what}: {same} of the publisher's packets arrived byte for byte (at least {at_least} expected; {} recorded)",
            arrived.len()
        );
        assert!(
            others.len() <= others_at_most,
            "{what}: {} distinct packets are neither the publisher's nor the fallback's loop",
            others.len()
        );
        eprintln!(
            "{what}: {same} of {} recorded packets are the publisher's byte for byte; {} distinct others (the fallback's)",
            arrived.len(),
            others.len()
        );
    }
    // one sequence header per track for the whole connection, timestamps never going back
    let headers = got.iter().filter(|t| is_header(t)).count();
    assert_eq!(headers, 2, "sequence headers in the recording: {headers}");
    for kind in [8u8, 9] {
        let ts: Vec<u32> = got
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.ts)
            .collect();
        assert!(
            ts.windows(2).all(|w| w[1] >= w[0]),
            "track {kind}: a timestamp went back"
        );
    }
    assert!(
        !onair.log_lines(&["copy mode"]).is_empty(),
        "no copy mode log line"
    );
}

#[test]
fn a_publisher_that_does_not_fit_the_connection_stays_off_air_and_the_status_says_why() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = Onair::start(&format!(
        "[output]\nwidth = 640\nheight = 360\nfps = 30\nmode = \"copy\"\n\
         [[destination]]\nname = \"platform\"\nurl = \"{}\"\n",
        nginx.url("app", "out")
    ));
    let work = tempfile::tempdir().expect("tempdir");
    let file = publisher_file(work.path(), 6, "320x180");
    let mut publisher = publish_file(&file, &onair.publish_url("test-key-123"));
    assert!(
        wait_until(SWITCH, || copy_status(&onair)["refused"]
            .as_str()
            .is_some_and(|r| r.contains("320x180"))),
        "no refusal in the status: {}\n{}",
        copy_status(&onair),
        onair.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sending(&onair), "fallback", "{}", copy_status(&onair));
    let view = onair.get_json("/api/channels/default");
    assert_eq!(view["on_air"], "fallback", "{view}");
    let lines = onair.log_lines(&["does not fit"]);
    assert_eq!(lines.len(), 1, "one log line per reason: {lines:?}");
    let _ = publisher.kill();
    let _ = publisher.wait();
}

#[test]
fn a_profile_may_not_be_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("onair.toml");
    std::fs::write(&cfg, "[profile.p]\nmode = \"copy\"\n").expect("write");
    let out = Command::new(onair_bin())
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .expect("onair check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("profile.p.mode"), "the key is named: {text}");
}

/// In copy mode a recording without a profile is refused with a reason (an MP4 cannot switch
/// between the fallback's and the publisher's parameter sets yet); one with a profile records
/// the encode of the program, live and fallback, in a file that decodes whole with zero errors.
#[test]
fn a_copy_mode_recording_needs_a_profile_and_then_decodes_clean() {
    let _serial = serial();
    let rec = tempfile::tempdir().expect("tempdir");
    let onair = Onair::start(&format!(
        "[output]\nwidth = 640\nheight = 360\nfps = 30\nmode = \"copy\"\n\
         [fallback]\nstall_timeout_ms = 500\n\
         [profile.p360]\nwidth = 640\nheight = 360\nvideo_bitrate_kbps = 800\n\
         [[destination]]\nname = \"raw\"\nurl = \"file://{dir}/raw-{{utc}}.mp4\"\n\
         [[destination]]\nname = \"rec\"\nurl = \"file://{dir}/{{utc}}.mp4\"\nprofile = \"p360\"\n",
        dir = rec.path().display()
    ));
    let work = tempfile::tempdir().expect("tempdir");
    let file = publisher_file(work.path(), 8, "640x360");
    let raw_error = || {
        onair.get_json("/api/channels/default")["destinations"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["name"] == "raw").cloned())
            .map(|d| d["last_error"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert!(
        wait_until(SWITCH, || raw_error().contains("needs a profile")),
        "the raw recording's error: {:?}\n{}",
        raw_error(),
        onair.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut publisher = publish_file(&file, &onair.publish_url("test-key-123"));
    assert!(
        wait_until(SWITCH, || sending(&onair) == "live"),
        "{}",
        copy_status(&onair)
    );
    std::thread::sleep(Duration::from_secs(4));
    let _ = publisher.kill();
    let _ = publisher.wait();
    assert!(wait_until(SWITCH, || sending(&onair) == "fallback"));
    std::thread::sleep(Duration::from_secs(3));
    let (code, _) = onair.call("POST", "/api/channels/default/destinations/rec/disable", "");
    assert_eq!(code, 200);
    assert!(
        wait_until(SWITCH, || !onair
            .log_lines(&["recording: file complete"])
            .is_empty()),
        "the file is ended on the stop:\n{}",
        onair.log_text()
    );
    let files: Vec<PathBuf> = std::fs::read_dir(rec.path())
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}:\n{}", onair.log_text());
    let (clean, errors) = decode_errors(&files[0]);
    assert!(
        clean && errors.trim().is_empty(),
        "recording: {errors}\n{}",
        onair.log_text()
    );
    let probe = ffprobe_json(
        files[0].to_str().expect("utf-8"),
        &["-show_entries", "format=duration"],
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    assert!(duration >= 8.0, "recorded {duration} s of about 10");
}
