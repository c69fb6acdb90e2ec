//! Streamer accounts and the queue (`examples/queue/`): several streamers publish to one
//! channel, the front of the queue is on air, a time limit passes the channel on, a kicked
//! streamer is blocked for a while, and the queue survives a kill -9. ffmpeg publishes,
//! nginx-rtmp is the platform, an ffmpeg viewer checks what it shows.

mod support;

use std::time::{Duration, Instant};

use support::*;

const SWITCH: Duration = Duration::from_secs(10);

fn example(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples").join(rel)).expect("example exists")
}

/// onair with the queue example as its scripts, sign-up on, and a destination on `nginx`.
fn start(nginx: &Nginx) -> Onair {
    Onair::start_with(
        &format!(
            "[scripts]\ndir = \"s\"\nstore = \"store.json\"\n[accounts]\nsignup = true\n\
             [[destination]]\nname = \"p\"\nurl = \"{}\"\n",
            nginx.url("app", "out")
        ),
        |dir| {
            std::fs::create_dir_all(dir.join("s")).expect("mkdir");
            for f in ["queue.lua", "failover.lua"] {
                std::fs::write(dir.join("s").join(f), example(&format!("queue/{f}")))
                    .expect("write script");
            }
        },
    )
}

/// Creates streamer account `name` with the admin API; returns its stream key.
fn account(onair: &Onair, name: &str) -> String {
    let (code, v) = onair.call(
        "POST",
        "/api/streamers",
        &format!(r#"{{"name": "{name}", "password": "password-of-{name}"}}"#),
    );
    assert_eq!(code, 201, "{v}");
    v["key"].as_str().expect("key").to_string()
}

/// `GET path` on a script route with the admin token: status and JSON.
fn get(onair: &Onair, path: &str) -> (u16, serde_json::Value) {
    onair.call("GET", path, "")
}

/// The queue as `/queue-json` shows it: (name, state) in order.
fn queue(onair: &Onair) -> Vec<(String, String)> {
    let (code, v) = get(onair, "/queue-json");
    assert_eq!(code, 200, "{v}");
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_string(),
                e["state"].as_str().expect("state").to_string(),
            )
        })
        .collect()
}

fn q(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

/// `/queue-list` (HTML, no token needed): the names in the order the page lists them.
fn listed(onair: &Onair) -> Vec<String> {
    let (code, html) = http_get(onair.http_port, "/queue-list").expect("answers");
    assert_eq!(code, 200);
    let mut names: Vec<(usize, String)> = ["alice", "bob", "carol"]
        .iter()
        .filter_map(|n| {
            html.find(&format!("<td>{n}</td>"))
                .map(|i| (i, n.to_string()))
        })
        .collect();
    names.sort();
    names.into_iter().map(|(_, n)| n).collect()
}

fn wait_queue(onair: &Onair, want: &[(&str, &str)]) {
    let want = q(want);
    let ok = wait_until(SWITCH, || queue(onair) == want);
    assert!(ok, "queue is {:?}, want {want:?}", queue(onair));
}

#[test]
fn streamers_take_turns_at_the_time_limit_and_a_kicked_one_is_blocked_until_toggled() {
    let _serial = serial();
    let nginx = Nginx::start();
    let onair = start(&nginx);
    let keys: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| account(&onair, n))
        .collect();
    assert!(wait_until(SWITCH, || nginx.publishers("app").len() == 1));
    let since = Instant::now();
    let viewer = Viewer::start(&nginx.url("app", "out"));
    assert!(viewer.wait_for(Instant::now(), SWITCH, |_| true));

    let _alice = Publisher::start(&onair.publish_url(&keys[0]), "red");
    assert!(
        viewer.wait_for(Instant::now(), SWITCH, Frame::is_red),
        "alice never on air"
    );
    let _bob = Publisher::start(&onair.publish_url(&keys[1]), "green");
    wait_queue(&onair, &[("alice", "on-air"), ("bob", "waiting")]);
    let _carol = Publisher::start(&onair.publish_url(&keys[2]), "blue");
    wait_queue(
        &onair,
        &[
            ("alice", "on-air"),
            ("bob", "waiting"),
            ("carol", "waiting"),
        ],
    );
    assert_eq!(listed(&onair), ["alice", "bob", "carol"]);
    // waiting streamers stay connected and are not decoded; the publish event named the account
    let sessions = onair.status()["sessions"]
        .as_array()
        .expect("sessions")
        .clone();
    let decoding: Vec<_> = sessions
        .iter()
        .filter(|s| s["decoding"] == true)
        .map(|s| s["account"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!((sessions.len(), decoding), (3, vec!["alice".to_string()]));

    // the admin routes need the token; update-timer sets the time left
    let (code, _) = http_get(onair.http_port, "/update-timer/10?reset_time=true").expect("answers");
    assert_eq!(code, 401);
    let (code, v) = get(&onair, "/update-timer/10?reset_time=true");
    assert_eq!((code, v["time_limit_s"].as_i64()), (200, Some(10)), "{v}");
    assert!(
        v["time_left_s"]
            .as_i64()
            .is_some_and(|s| (9..=10).contains(&s)),
        "{v}"
    );
    let (code, v) = get(&onair, "/update-timer/0");
    assert_eq!(code, 400, "{v}");
    let left = get(&onair, "/queue-json").1[0]["time_left_s"]
        .as_i64()
        .expect("time left");
    assert!((8..=10).contains(&left), "time left {left}");

    // 10 s later alice is kicked and bob is on air within 1.5 s
    let mut limit_at = None;
    assert!(wait_until(Duration::from_secs(15), || {
        let seen = onair.log_text().contains("alice reached the time limit");
        if seen {
            limit_at = Some(Instant::now());
        }
        seen
    }));
    let limit_at = limit_at.expect("seen");
    assert!(
        viewer.wait_for(limit_at, SWITCH, Frame::is_green),
        "bob never on air"
    );
    let green = viewer
        .frames()
        .into_iter()
        .find(|f| f.at >= limit_at && f.is_green())
        .expect("green frame");
    let took = green.at.duration_since(limit_at);
    eprintln!(
        "time limit → next streamer on air at the platform: {} ms",
        took.as_millis()
    );
    assert!(
        took <= Duration::from_millis(1500),
        "bob on air {took:?} after the limit"
    );
    assert!(
        !viewer
            .frames()
            .iter()
            .any(|f| f.at > green.at + Duration::from_millis(200) && f.is_red()),
        "alice came back after bob"
    );
    wait_queue(&onair, &[("bob", "on-air"), ("carol", "waiting")]);
    assert!(wait_until(SWITCH, || {
        onair.status()["sessions"].as_array().map(Vec::len) == Some(2)
    }));
    assert!(!onair.log_lines(&["switched", "bob is next"]).is_empty());

    // alice is refused inside the block window, with the reason
    let mut again = Publisher::start(&onair.publish_url(&keys[0]), "red");
    assert_eq!(
        again.wait_exit(SWITCH),
        Some(false),
        "a blocked key was accepted"
    );
    assert!(
        !onair
            .log_lines(&[
                "rejected by policy",
                "alice reached the time limit: re-join in"
            ])
            .is_empty(),
        "{}",
        onair.log_text()
    );
    wait_queue(&onair, &[("bob", "on-air"), ("carol", "waiting")]);
    // toggled off, she is accepted and queued at the back
    let (code, v) = get(&onair, "/update-block-toggle/");
    assert_eq!((code, v["block"].as_bool()), (200, Some(false)), "{v}");
    let _alice_again = Publisher::start(&onair.publish_url(&keys[0]), "red");
    wait_queue(
        &onair,
        &[
            ("bob", "on-air"),
            ("carol", "waiting"),
            ("alice", "waiting"),
        ],
    );
    assert_eq!(listed(&onair), ["bob", "carol", "alice"]);

    let (max_step, backwards) = viewer.video_pts_gaps();
    eprintln!("largest video PTS step at the platform: {max_step:.0} ms");
    assert!(
        max_step <= 100.0,
        "video PTS step {max_step:.0} ms at the platform"
    );
    assert_eq!(backwards, 0);
    assert_one_connection_since(&nginx, "app", since);
}

#[test]
fn the_queue_keeps_its_order_across_a_kill_9_and_streamers_sign_up_and_are_disabled() {
    let _serial = serial();
    let nginx = Nginx::start();
    let mut onair = start(&nginx);

    // sign-up: a key shown once, logged in at once; the key publishes and is queued
    let (code, text) = http_request(
        onair.http_port,
        "POST",
        "/api/streamer/signup",
        &[("Content-Type", "application/json")],
        r#"{"name": "alice", "password": "password-of-alice"}"#,
    )
    .expect("answers");
    assert_eq!(code, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let alice_key = v["key"].as_str().expect("key").to_string();
    assert_eq!(
        v["obs"]["server"].as_str(),
        Some(format!("rtmp://127.0.0.1:{}/live", onair.rtmp_port).as_str())
    );
    let (code, _) = http_request(
        onair.http_port,
        "POST",
        "/api/streamer/signup",
        &[("Content-Type", "application/json")],
        r#"{"name": "alice", "password": "another-password"}"#,
    )
    .expect("answers");
    assert_eq!(code, 409, "a taken name");
    // the key is not kept: the list shows its hint only
    let list = onair.get_json("/api/streamers");
    assert!(!list.to_string().contains(&alice_key), "{list}");
    let bob_key = account(&onair, "bob");
    let carol_key = account(&onair, "carol");

    let mut alice = Publisher::start(&onair.publish_url(&alice_key), "red");
    wait_queue(&onair, &[("alice", "on-air")]);
    let mut bob = Publisher::start(&onair.publish_url(&bob_key), "green");
    wait_queue(&onair, &[("alice", "on-air"), ("bob", "waiting")]);
    let mut carol = Publisher::start(&onair.publish_url(&carol_key), "blue");
    wait_queue(
        &onair,
        &[
            ("alice", "on-air"),
            ("bob", "waiting"),
            ("carol", "waiting"),
        ],
    );

    onair.kill9_and_restart();
    for p in [&mut alice, &mut bob, &mut carol] {
        p.wait_exit(SWITCH);
    }
    // after the restart everyone is away until they reconnect: alice, then carol before bob
    wait_queue(
        &onair,
        &[("alice", "away"), ("bob", "away"), ("carol", "away")],
    );
    let _alice = Publisher::start(&onair.publish_url(&alice_key), "red");
    wait_queue(
        &onair,
        &[("alice", "on-air"), ("bob", "away"), ("carol", "away")],
    );
    let _carol = Publisher::start(&onair.publish_url(&carol_key), "blue");
    wait_queue(
        &onair,
        &[("alice", "on-air"), ("bob", "away"), ("carol", "waiting")],
    );
    let _bob = Publisher::start(&onair.publish_url(&bob_key), "green");
    wait_queue(
        &onair,
        &[
            ("alice", "on-air"),
            ("bob", "waiting"),
            ("carol", "waiting"),
        ],
    );

    // disabling carol ends her publish, and her key is then refused with the reason
    let (code, v) = onair.call("PATCH", "/api/streamers/carol", r#"{"enabled": false}"#);
    assert_eq!((code, v["enabled"].as_bool()), (200, Some(false)), "{v}");
    wait_queue(
        &onair,
        &[("alice", "on-air"), ("bob", "waiting"), ("carol", "away")],
    );
    let mut refused = Publisher::start(&onair.publish_url(&carol_key), "blue");
    assert_eq!(
        refused.wait_exit(SWITCH),
        Some(false),
        "a disabled key was accepted"
    );
    assert!(
        !onair.log_lines(&["carol", "which is disabled"]).is_empty(),
        "{}",
        onair.log_text()
    );
    // a regenerated key: the old one is refused, the new one publishes
    let (code, v) = onair.call("POST", "/api/streamers/bob/key", "");
    assert_eq!(code, 200, "{v}");
    let new_key = v["key"].as_str().expect("key").to_string();
    assert_ne!(new_key, bob_key);
    wait_queue(
        &onair,
        &[("alice", "on-air"), ("bob", "away"), ("carol", "away")],
    );
    let mut old = Publisher::start(&onair.publish_url(&bob_key), "green");
    assert_eq!(
        old.wait_exit(SWITCH),
        Some(false),
        "the old key was accepted"
    );
    let _bob = Publisher::start(&onair.publish_url(&new_key), "green");
    wait_queue(
        &onair,
        &[("alice", "on-air"), ("bob", "waiting"), ("carol", "away")],
    );
}
