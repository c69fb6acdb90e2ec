//! Destinations changed at run time over the API: they connect without disturbing the others,
//! the config file keeps what it owns (409), bad input names the field (400), and every change
//! is back after a restart. nginx-rtmp is the platform.

mod support;

use std::time::{Duration, Instant};

use support::*;

const SWITCH: Duration = Duration::from_secs(15);
const BASE: &str = "/api/channels/default/destinations";

fn call(onair: &Onair, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {TOKEN}");
    let (code, text) = http_request(
        onair.http_port,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .expect("answers");
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn destinations_change_at_run_time_and_come_back_after_a_restart() {
    let _serial = serial();
    let nginx = Nginx::start();
    let mut onair = Onair::start(&format!(
        "[[destination]]\nname = \"a\"\nurl = \"{}\"\n",
        nginx.url("app", "out")
    ));
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let a_since = Instant::now();

    // the one channel, as the channels API shows it
    let (code, list) = call(&onair, "GET", "/api/channels", "");
    assert_eq!(code, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], "default");
    assert_eq!(list[0]["on_air"], "fallback");
    assert_eq!(list[0]["destinations"][0]["name"], "a", "{list}");
    assert_eq!(
        call(&onair, "GET", "/api/channels/default", "").1["id"],
        "default"
    );
    assert_eq!(call(&onair, "GET", "/api/channels/nope", "").0, 404);
    let (code, _) = call(
        &onair,
        "POST",
        "/api/channels/default/switch",
        r#"{"source": "fallback"}"#,
    );
    assert_eq!(code, 202);
    assert_eq!(
        call(
            &onair,
            "POST",
            "/api/channels/nope/switch",
            r#"{"source": "fallback"}"#
        )
        .0,
        404
    );
    let frame = grab_rgb(
        &format!(
            "http://127.0.0.1:{}/api/channels/default/preview.flv?key={PREVIEW_KEY}",
            onair.http_port
        ),
        640,
        360,
    );
    // the slate: its background (0x161a24) on most of the picture, and its white text
    let px: Vec<&[u8]> = frame.chunks_exact(3).collect();
    let near = |p: &[u8], c: [i32; 3]| p.iter().zip(c).all(|(&v, c)| (i32::from(v) - c).abs() < 20);
    let background = px.iter().filter(|p| near(p, [0x16, 0x1a, 0x24])).count();
    let text = px.iter().filter(|p| p.iter().all(|&v| v > 200)).count();
    assert!(
        !px.is_empty() && background * 2 > px.len() && text * 500 > px.len(),
        "the channel preview does not show the slate: {background} background and {text} white of {} pixels",
        px.len()
    );

    // add one during the show: it connects, "a" is not disturbed
    let (code, body) = call(
        &onair,
        "POST",
        BASE,
        &format!(r#"{{"name": "b", "url": "{}"}}"#, nginx.url("app2", "out")),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["owner"], "runtime");
    assert!(
        !body["url"].as_str().unwrap_or("").contains("/out"),
        "the key is redacted: {body}"
    );
    assert!(
        wait_until(SWITCH, || nginx.publishers("app2").len() == 1),
        "b never connected"
    );
    let pubs = nginx.publishers("app");
    assert!(
        pubs.len() == 1 && pubs[0] + 500 >= a_since.elapsed().as_millis() as u64,
        "a was re-opened: {pubs:?}"
    );

    // bad input names the field; unknown names and channels are 404; taken names 409
    let (code, body) = call(&onair, "POST", BASE, r#"{"name": "c"}"#);
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap_or("").contains("url"),
        "{body}"
    );
    let (code, body) = call(
        &onair,
        "POST",
        BASE,
        r#"{"name": "c", "url": "http://x/y"}"#,
    );
    assert_eq!((code, body["field"].as_str()), (400, Some("url")), "{body}");
    let (code, body) = call(
        &onair,
        "POST",
        BASE,
        r#"{"name": "c d", "url": "rtmp://x/a/k"}"#,
    );
    assert_eq!(
        (code, body["field"].as_str()),
        (400, Some("name")),
        "{body}"
    );
    let (code, body) = call(
        &onair,
        "POST",
        BASE,
        r#"{"name": "c", "url": "rtmp://x/a/k", "enabeld": false}"#,
    );
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap_or("").contains("enabeld"),
        "{body}"
    );
    let (code, _) = call(
        &onair,
        "POST",
        BASE,
        &format!(r#"{{"name": "b", "url": "{}"}}"#, nginx.url("app2", "x")),
    );
    assert_eq!(code, 409);
    assert_eq!(call(&onair, "GET", &format!("{BASE}/nope"), "").0, 404);
    assert_eq!(
        call(&onair, "GET", "/api/channels/nope/destinations", "").0,
        404
    );
    assert_eq!(
        call(&onair, "GET", BASE, "").1.as_array().map(Vec::len),
        Some(2),
        "nothing was created by the refused requests"
    );

    // the file owns "a": edits and deletes are refused naming the file; disable works
    let (code, body) = call(
        &onair,
        "PATCH",
        &format!("{BASE}/a"),
        r#"{"url": "rtmp://x/a/k"}"#,
    );
    assert_eq!(code, 409);
    assert!(
        body["error"].as_str().unwrap_or("").contains("onair.toml"),
        "{body}"
    );
    assert_eq!(call(&onair, "DELETE", &format!("{BASE}/a"), "").0, 409);
    let (code, body) = call(&onair, "POST", &format!("{BASE}/a/disable"), "");
    assert_eq!(
        (code, body["enabled"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
    assert!(
        wait_until(SWITCH, || nginx.publishers("app").is_empty()),
        "a still publishes after disable"
    );
    // without a token: 401
    let (code, _) = http_request(onair.http_port, "GET", BASE, &[], "").expect("answers");
    assert_eq!(code, 401);

    // a restart (even a kill -9) brings back b, and a stays disabled
    onair.kill9_and_restart();
    assert!(
        wait_until(SWITCH, || nginx.publishers("app2").len() == 1),
        "b did not come back:\n{}",
        onair.log_text()
    );
    let list = call(&onair, "GET", BASE, "").1;
    let find = |n: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|d| d["name"] == n).cloned())
            .unwrap_or_default()
    };
    assert_eq!(find("a")["enabled"], false, "{list}");
    assert_eq!(find("b")["enabled"], true, "{list}");
    std::thread::sleep(Duration::from_secs(2)); // an observation window
    assert!(
        nginx.publishers("app").is_empty(),
        "a reconnected after the restart"
    );

    // delete b: it disconnects, and stays gone after a restart
    let (code, _) = call(&onair, "DELETE", &format!("{BASE}/b"), "");
    assert_eq!(code, 204);
    assert!(wait_until(SWITCH, || nginx.publishers("app2").is_empty()));
    onair.kill9_and_restart();
    let list = call(&onair, "GET", BASE, "").1;
    assert_eq!(
        list.as_array()
            .map(|l| l.iter().map(|d| d["name"].clone()).collect::<Vec<_>>()),
        Some(vec![serde_json::json!("a")]),
        "{list}"
    );
}
