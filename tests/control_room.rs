//! The control room's API: logins and sessions (with CSRF), the media gallery, OBS settings
//! and key regeneration, the fallback by gallery name, and the `changed` notifications. The
//! page itself is tested in a browser (tests/ui).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const PASSWORD: &str = "correct horse battery";

fn add_user(onair: &Onair, name: &str, password: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(onair_bin())
        .args(["user", "add", name, "-c"])
        .arg(onair.dir.path().join("onair.toml"))
        .current_dir(onair.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("onair user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password");
    child.wait_with_output().expect("wait")
}

/// A browser-like client: a cookie jar and the session's CSRF token.
struct Client {
    base: String,
    jar: String,
    csrf: Option<String>,
}

impl Client {
    fn new(onair: &Onair, name: &str) -> Client {
        Client {
            base: format!("http://127.0.0.1:{}", onair.http_port),
            jar: onair
                .dir
                .path()
                .join(format!("{name}.jar"))
                .display()
                .to_string(),
            csrf: None,
        }
    }

    /// (status, JSON body or null)
    fn req(&self, method: &str, path: &str, extra: &[&str]) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let mut args = vec!["-X", method, "-b", &self.jar, "-c", &self.jar];
        let csrf = self.csrf.as_ref().map(|c| format!("X-CSRF-Token: {c}"));
        if let Some(h) = &csrf {
            args.extend(["-H", h]);
        }
        args.extend(extra);
        args.push(&url);
        let (code, body) = curl(&args);
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    fn json(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        self.req(
            method,
            path,
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ],
        )
    }

    fn login(&mut self, name: &str, password: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({ "name": name, "password": password }).to_string();
        let r = self.json("POST", "/api/login", &body);
        if r.0 == 200 {
            self.csrf = r.1["csrf"].as_str().map(str::to_string);
        }
        r
    }

    fn upload(&self, name: &str, file: &Path) -> (u16, serde_json::Value) {
        let data = format!("@{}", file.display());
        self.req(
            "POST",
            &format!("/api/media?name={name}"),
            &[
                "--data-binary",
                &data,
                "-H",
                "Content-Type: application/octet-stream",
            ],
        )
    }
}

fn media_files(onair: &Onair) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(onair.dir.path().join("onair-data/media"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn logins_sessions_and_csrf_guard_the_api_and_the_sixth_failed_login_is_refused() {
    let _s = serial();
    let onair = Onair::start("");
    let mut browser = Client::new(&onair, "browser");
    // without a login: every route of the API answers 401, the page itself loads
    for (m, p) in [
        ("GET", "/api/channels"),
        ("GET", "/api/media"),
        ("GET", "/api/channels/default/obs"),
        ("POST", "/api/channels/default/keys/regenerate"),
        ("POST", "/api/channels/default/fallback"),
        ("GET", "/api/events"),
    ] {
        assert_eq!(browser.req(m, p, &[]).0, 401, "{m} {p}");
    }
    let (code, page) = curl(&[&format!("{}/", browser.base)]);
    assert_eq!(code, 200);
    assert!(
        page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"),
        "{page}"
    );
    let (code, s) = browser.req("GET", "/api/session", &[]);
    assert_eq!((code, s["users"].as_u64()), (401, Some(0)), "{s}");
    assert!(
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("onair user add")),
        "{s}"
    );

    // users: a short password is refused with the reason, a good one is added
    let out = add_user(&onair, "ops", "short");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password: at least 8 characters"));
    let out = add_user(&onair, "ops", PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // a wrong password: 401 and no session cookie
    let (code, body) = browser.login("ops", "wrong password");
    assert_eq!(
        (code, body["error"].as_str()),
        (401, Some("wrong name or password"))
    );
    let jar = std::fs::read_to_string(&browser.jar).unwrap_or_default();
    assert!(!jar.contains("onair_session"), "{jar}");
    assert_eq!(browser.req("GET", "/api/channels", &[]).0, 401);

    // the right one: the cookie is HttpOnly and SameSite=Strict, the session works
    let headers = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
        ])
        .arg(serde_json::json!({ "name": "ops", "password": PASSWORD }).to_string())
        .arg(format!("{}/api/login", browser.base))
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&headers.stdout).to_ascii_lowercase();
    let set_cookie = headers
        .lines()
        .find(|l| l.starts_with("set-cookie: onair_session="))
        .unwrap_or_default();
    assert!(
        set_cookie.contains("httponly")
            && set_cookie.contains("samesite=strict")
            && set_cookie.contains("path=/"),
        "{headers}"
    );
    let (code, _) = browser.login("ops", PASSWORD);
    assert_eq!(code, 200);
    let jar = std::fs::read_to_string(&browser.jar).expect("jar");
    assert!(
        jar.contains("#HttpOnly_127.0.0.1") && jar.contains("onair_session"),
        "{jar}"
    );
    let (code, s) = browser.req("GET", "/api/session", &[]);
    assert_eq!(
        (code, s["user"].as_str(), s["auth"].as_str()),
        (200, Some("ops"), Some("session"))
    );
    assert_eq!(browser.req("GET", "/api/channels", &[]).0, 200);

    // changing state needs the CSRF token: without it 403 and nothing happens
    let csrf = browser.csrf.take();
    let (code, body) = browser.json("POST", "/api/channels/default/stop", "{}");
    assert_eq!(code, 403, "{body}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(onair.get_json("/api/channels/default")["state"], "started");
    browser.csrf = csrf;
    assert_eq!(
        browser
            .json(
                "POST",
                "/api/channels/default/switch",
                r#"{"source":"fallback"}"#
            )
            .0,
        202
    );

    // the bearer token keeps working for scripts
    assert_eq!(onair.call("GET", "/api/media", "").0, 200);

    // logout ends the session on the server, not only in the browser
    let session_cookie = jar
        .lines()
        .find(|l| l.contains("onair_session"))
        .and_then(|l| l.split('\t').next_back())
        .expect("cookie")
        .to_string();
    assert_eq!(browser.req("POST", "/api/logout", &[]).0, 204);
    let replay = format!("Cookie: onair_session={session_cookie}");
    let (code, _) = curl(&["-H", &replay, &format!("{}/api/channels", browser.base)]);
    assert_eq!(code, 401, "a logged-out session still works");

    // five wrong passwords in a minute from one address (the browser's one above counts),
    // then even the right one is refused
    let mut attacker = Client::new(&onair, "attacker");
    for i in 0..4 {
        assert_eq!(attacker.login("ops", &format!("guess {i}")).0, 401);
    }
    let (code, body) = attacker.login("ops", PASSWORD);
    assert_eq!(code, 429, "{body}");
    let head = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
        ])
        .arg(r#"{"name":"ops","password":"x"}"#)
        .arg(format!("{}/api/login", attacker.base))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {head}"));
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many failed logins")),
        "{body}"
    );
    assert!(
        onair
            .log_text()
            .contains("login refused: too many failed logins")
    );
}

#[test]
fn the_gallery_keeps_only_playable_media_within_its_limit_and_refuses_deleting_what_is_on_air() {
    let _s = serial();
    let onair = Onair::start("[media]\nmax_upload_mib = 2\n");
    let dir = onair.dir.path();
    let png = dir.join("magenta.png");
    make_media(
        &png,
        &[
            "-f",
            "lavfi",
            "-i",
            "color=magenta:s=640x360",
            "-frames:v",
            "1",
        ],
    );
    let clip = dir.join("clip.mp4");
    make_media(
        &clip,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=30:d=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    let text = dir.join("text.png");
    std::fs::write(&text, "this is not a picture\n").expect("write");
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![7u8; 4 * 1024 * 1024]).expect("write");

    let mut ui = Client::new(&onair, "ui");
    let out = add_user(&onair, "ops", PASSWORD);
    assert!(out.status.success());
    assert_eq!(ui.login("ops", PASSWORD).0, 200);

    // a logged-in upload or delete without the CSRF token: 403, nothing written
    let csrf = ui.csrf.take();
    assert_eq!(ui.upload("forged.png", &png).0, 403);
    ui.csrf = csrf;
    assert!(media_files(&onair).is_empty());
    let (code, item) = ui.upload("be%20right%20back.png", &png);
    assert_eq!(code, 201, "{item}");
    assert_eq!(item["name"], "be-right-back.png");
    assert_eq!(
        (
            item["kind"].as_str(),
            item["width"].as_u64(),
            item["height"].as_u64()
        ),
        (Some("image"), Some(640), Some(360))
    );
    let (code, item) = ui.upload("loop.mp4", &clip);
    assert_eq!(code, 201, "{item}");
    assert_eq!(item["kind"], "video");
    let d = item["duration_s"].as_f64().expect("duration");
    assert!((1.8..=2.2).contains(&d), "{d}");

    // the same name again: 409, the first file kept
    assert_eq!(ui.upload("loop.mp4", &png).0, 409);
    // not media, whatever its name says: 400, no file left
    let (code, body) = ui.upload("x.png", &text);
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an image or a video")),
        "{body}"
    );
    // twice the limit: 413 naming the setting, before the body is read; no file left
    let (code, body) = ui.upload("big.mp4", &big);
    assert_eq!(code, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("media.max_upload_mib")),
        "{body}"
    );
    // the same without a length (chunked): stopped while streaming
    let data = format!("@{}", big.display());
    let (code, _) = ui.req(
        "POST",
        "/api/media?name=big2.mp4",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", &data],
    );
    assert_eq!(code, 413);
    // names never leave the folder
    for bad in ["../escape.png", "..", ".hidden.png"] {
        let (code, body) = ui.upload(&bad.replace('/', "%2F"), &png);
        assert_eq!(code, 400, "{bad}: {body}");
    }
    assert_eq!(media_files(&onair), vec!["be-right-back.png", "loop.mp4"]);

    // the list, thumbnails (320x180 PNG) and the file itself
    let (code, list) = ui.req("GET", "/api/media", &[]);
    assert_eq!(code, 200);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["be-right-back.png", "loop.mp4"]);
    let thumb = dir.join("thumb.png");
    let got = Command::new("curl")
        .args(["-s", "-f", "-b", &ui.jar, "-o"])
        .arg(&thumb)
        .arg(format!("{}/api/media/loop.mp4/thumbnail.png", ui.base))
        .status()
        .expect("curl");
    assert!(got.success());
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&thumb).expect("thumb"),
    ));
    let info = decoder.read_info().expect("a PNG").info().clone();
    assert_eq!((info.width, info.height), (320, 180));

    // use as fallback: a bad name names the field; a good one shows on the channel
    let (code, body) = ui.json(
        "POST",
        "/api/channels/default/fallback",
        r#"{"media":"nope.png"}"#,
    );
    assert_eq!(
        (code, body["field"].as_str()),
        (400, Some("media")),
        "{body}"
    );
    let (code, body) = ui.json(
        "POST",
        "/api/channels/default/fallback",
        r#"{"media":"be-right-back.png","x":1}"#,
    );
    assert_eq!(code, 400, "{body}");
    let (code, view) = ui.json(
        "POST",
        "/api/channels/default/fallback",
        r#"{"media":"be-right-back.png"}"#,
    );
    assert_eq!(
        (code, view["id"].as_str()),
        (200, Some("default")),
        "{view}"
    );
    // in use from the moment the choice is answered, not once the channel got to it
    assert_eq!(ui.req("DELETE", "/api/media/be-right-back.png", &[]).0, 409);
    assert!(wait_until(Duration::from_secs(5), || onair
        .get_json("/api/channels/default")["fallback"]
        .as_str()
        .is_some_and(
            |f| f.starts_with("image ") && f.ends_with("be-right-back.png")
        )));
    let (_, list) = ui.req("GET", "/api/media", &[]);
    assert_eq!(list[0]["used_by"], serde_json::json!(["default"]));

    // deleting what a channel uses is refused with the reason; the other goes
    let csrf = ui.csrf.take();
    assert_eq!(ui.req("DELETE", "/api/media/loop.mp4", &[]).0, 403);
    ui.csrf = csrf;
    let (code, body) = ui.req("DELETE", "/api/media/be-right-back.png", &[]);
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"default\"")),
        "{body}"
    );
    assert_eq!(ui.req("DELETE", "/api/media/loop.mp4", &[]).0, 204);
    assert_eq!(media_files(&onair), vec!["be-right-back.png"]);
    assert_eq!(ui.req("GET", "/api/media/loop.mp4", &[]).0, 404);
}

#[test]
fn obs_settings_show_the_full_key_and_a_regenerated_key_replaces_the_old_one() {
    let _s = serial();
    let onair = Onair::start("");
    // a config channel: its keys, no regeneration (the file owns them)
    let (code, obs) = onair.call("GET", "/api/channels/default/obs", "");
    assert_eq!(code, 200);
    assert_eq!(
        obs["server"],
        format!("rtmp://127.0.0.1:{}/live", onair.rtmp_port)
    );
    assert_eq!(
        obs["stream_keys"],
        serde_json::json!(["test-key-123", "test-key-456"])
    );
    assert_eq!(obs["can_regenerate"], false);
    assert_eq!(
        onair
            .call("POST", "/api/channels/default/keys/regenerate", "")
            .0,
        409
    );

    // a run-time channel: regenerate, and only the new key publishes
    let (code, ch) = onair.call(
        "POST",
        "/api/channels",
        r#"{"id":"studio","keys":["studio-key-0001"],"start":false}"#,
    );
    assert_eq!(code, 201, "{ch}");
    let (code, keys) = onair.call("POST", "/api/channels/studio/keys/regenerate", "");
    assert_eq!(code, 200, "{keys}");
    let new_key = keys["stream_keys"][0].as_str().expect("key").to_string();
    assert!(
        new_key.starts_with("live_") && new_key.len() > 30,
        "{new_key}"
    );
    let (_, obs) = onair.call("GET", "/api/channels/studio/obs", "");
    assert_eq!(obs["stream_keys"], serde_json::json!([new_key]));
    assert_eq!(obs["can_regenerate"], true);
    assert_eq!(onair.call("POST", "/api/channels/studio/start", "").0, 202);
    assert!(wait_until(Duration::from_secs(10), || onair
        .get_json("/api/channels/studio")["state"]
        == "started"));
    assert!(
        RawPublisher::publish(onair.rtmp_port, "live", "studio-key-0001").is_err(),
        "the old key still publishes"
    );
    assert!(
        RawPublisher::publish(onair.rtmp_port, "live", &new_key).is_ok(),
        "{}",
        onair.log_text()
    );
}

#[test]
fn the_event_stream_tells_pages_what_changed() {
    let _s = serial();
    let onair = Onair::start("");
    let out = onair.dir.path().join("events.txt");
    let url = format!("http://127.0.0.1:{}/api/events", onair.http_port);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let mut sse = Command::new("curl")
        .args(["-s", "-N", "--max-time", "20", "-H", &auth, "-o"])
        .arg(&out)
        .arg(&url)
        .spawn()
        .expect("curl");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        onair
            .call(
                "POST",
                "/api/channels/default/destinations",
                r#"{"name":"x","url":"rtmp://127.0.0.1:9/app/k","enabled":false}"#
            )
            .0,
        201
    );
    assert_eq!(onair.call("POST", "/api/channels/default/stop", "").0, 202);
    let text = || std::fs::read_to_string(&out).unwrap_or_default();
    let seen = wait_until(Duration::from_secs(10), || {
        let t = text();
        t.contains(r#"data:{"what":"destinations","channel":"default"}"#)
            && t.contains(r#"data:{"what":"channels","channel":"default"}"#)
    });
    let _ = sse.kill();
    let _ = sse.wait();
    assert!(seen, "{}", text());
    assert!(text().contains("event:changed"));
}

#[test]
fn behind_a_trusted_proxy_login_limits_count_the_forwarded_client_and_forgeries_do_not_help() {
    let _serial = serial();
    let mut onair = Onair::start("");
    assert!(add_user(&onair, "ops", PASSWORD).status.success());
    // onair behind a proxy on this machine: `http.trusted_proxies = ["127.0.0.1"]`
    let path = onair.dir.path().join("onair.toml");
    let cfg = std::fs::read_to_string(&path).expect("config").replacen(
        "[http]\n",
        "[http]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        1,
    );
    std::fs::write(&path, cfg).expect("write config");
    onair.kill9_and_restart();
    let login = |forwarded_for: &str, password: &str| {
        let body = serde_json::json!({"name": "ops", "password": password}).to_string();
        let headers = [
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", forwarded_for),
        ];
        http_request(onair.http_port, "POST", "/api/login", &headers, &body).map_or(0, |r| r.0)
    };
    for i in 0..5 {
        assert_eq!(login("203.0.113.7", &format!("guess {i}")), 401);
    }
    assert_eq!(
        login("203.0.113.7", PASSWORD),
        429,
        "the guesser is throttled"
    );
    assert_eq!(
        login("198.51.100.2", PASSWORD),
        200,
        "another client behind the same proxy is not"
    );
    // an address the client put in front of the proxy's entry changes nothing
    assert_eq!(login("198.51.100.9, 203.0.113.7", PASSWORD), 429);
    assert!(
        onair
            .log_text()
            .lines()
            .any(|l| l.contains("too many failed logins") && l.contains("203.0.113.7")),
        "the log line names the client, not the proxy:\n{}",
        onair.log_text()
    );
}
