//! `onair.obs`: a script talks to OBS over obs-websocket v5. The OBS side is a small server in
//! this test speaking the documented handshake (Hello with an authentication challenge,
//! Identify, Identified) and requests (Request → RequestResponse), with subprotocol
//! `obswebsocket.json`, as OBS 28+ does.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use sha2::Digest;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const PASSWORD: &str = "obs-password-1";
const SALT: &str = "c2FsdC1vZi10aGUtdGVzdA==";
const CHALLENGE: &str = "Y2hhbGxlbmdlLW9mLXRoZS10ZXN0";

#[derive(Default)]
struct FakeObs {
    /// Identified connections so far.
    identified: AtomicUsize,
    /// Identify messages refused for a wrong password.
    refused: AtomicUsize,
    /// (requestType, requestData) in arrival order.
    requests: Mutex<Vec<(String, serde_json::Value)>>,
    /// Set to close every open connection (OBS quits).
    drop_all: AtomicBool,
}

fn expected_auth() -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let secret = b64.encode(sha2::Sha256::digest(format!("{PASSWORD}{SALT}")));
    b64.encode(sha2::Sha256::digest(format!("{secret}{CHALLENGE}")))
}

/// Starts the fake OBS on a free loopback port, on its own thread and runtime.
fn fake_obs() -> (u16, Arc<FakeObs>) {
    let state = Arc::new(FakeObs::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let st = state.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(tcp, st.clone()));
            }
        });
    });
    (port, state)
}

/// OBS answers with the subprotocol the client asked for (tungstenite's callback shape).
#[allow(clippy::result_large_err)]
fn subprotocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let asked = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if asked.split(',').any(|p| p.trim() == "obswebsocket.json") {
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            "obswebsocket.json".parse().expect("header"),
        );
    }
    Ok(resp)
}

async fn serve(tcp: tokio::net::TcpStream, st: Arc<FakeObs>) {
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, subprotocol).await else {
        return;
    };
    let hello = serde_json::json!({"op": 0, "d": {
        "obsWebSocketVersion": "5.5.2", "rpcVersion": 1,
        "authentication": {"challenge": CHALLENGE, "salt": SALT}}});
    if ws.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    let mut identified = false;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if identified && st.drop_all.load(Ordering::SeqCst) {
                    let _ = ws.close(None).await;
                    return;
                }
                continue;
            }
        };
        let Some(Ok(Message::Text(t))) = msg else {
            return;
        };
        let v: serde_json::Value = serde_json::from_str(&t).expect("client sends JSON");
        match v["op"].as_i64() {
            Some(1) => {
                if v["d"]["authentication"].as_str() != Some(expected_auth().as_str()) {
                    st.refused.fetch_add(1, Ordering::SeqCst);
                    let _ = ws
                        .close(Some(CloseFrame {
                            code: CloseCode::from(4009),
                            reason: "Authentication failed.".into(),
                        }))
                        .await;
                    return;
                }
                identified = true;
                st.identified.fetch_add(1, Ordering::SeqCst);
                let ok = serde_json::json!({"op": 2, "d": {"negotiatedRpcVersion": 1}});
                let _ = ws.send(Message::text(ok.to_string())).await;
            }
            Some(6) if identified => {
                let d = &v["d"];
                let kind = d["requestType"].as_str().unwrap_or("").to_string();
                let data = d["requestData"].clone();
                st.requests
                    .lock()
                    .expect("lock")
                    .push((kind.clone(), data.clone()));
                let missing = kind == "SetCurrentProgramScene" && data["sceneName"] == "Nowhere";
                let status = if missing {
                    serde_json::json!({"result": false, "code": 600, "comment": "No source was found by the name of `Nowhere`."})
                } else {
                    serde_json::json!({"result": true, "code": 100})
                };
                let mut resp = serde_json::json!({"op": 7, "d": {
                    "requestType": kind, "requestId": d["requestId"], "requestStatus": status}});
                if kind == "GetCurrentProgramScene" {
                    resp["d"]["responseData"] = serde_json::json!({"sceneName": "Live"});
                }
                let _ = ws.send(Message::text(resp.to_string())).await;
            }
            _ => return, // a request before Identify: OBS closes too
        }
    }
}

/// A script that connects to OBS and exposes requests as routes, the last callback result
/// kept in the store.
fn script(port: u16, password: &str) -> String {
    format!(
        r#"
local obs = onair.obs.connect({{ host = "127.0.0.1", port = {port}, password = "{password}" }})
onair.route("POST", "/scene/:name", function(req)
  local id = obs:request("SetCurrentProgramScene", {{ sceneName = req.params.name }}, function(r, err)
    onair.store.set("obs.last", err and {{ err = err }} or {{ ok = r.ok, code = r.code, comment = r.comment }})
  end)
  return {{ json = {{ id = id }} }}
end)
onair.route("POST", "/current", function()
  obs:request("GetCurrentProgramScene", nil, function(r, err)
    onair.store.set("obs.last", err and {{ err = err }} or {{ ok = r.ok, scene = r.data.sceneName }})
  end)
  return {{ json = {{}} }}
end)
onair.route("GET", "/last", function() return {{ json = onair.store.get("obs.last") or {{ none = true }} }} end)
"#
    )
}

fn start(port: u16, password: &str) -> Onair {
    let text = script(port, password);
    Onair::start_with(
        "[scripts]\ndir = \"s\"\nstore = \"store.json\"\n",
        move |dir| {
            std::fs::create_dir_all(dir.join("s")).expect("mkdir");
            std::fs::write(dir.join("s").join("obs.lua"), text).expect("write");
        },
    )
}

/// Calls `path` and waits for `/last` to change from `before`; returns it.
fn ask(onair: &Onair, path: &str) -> serde_json::Value {
    let before = onair.call("GET", "/last", "").1;
    let (code, v) = onair.call("POST", path, "");
    assert_eq!(code, 200, "{v}");
    let mut last = before.clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            last = onair.call("GET", "/last", "").1;
            last != before
        }),
        "no callback for {path}"
    );
    last
}

#[test]
fn a_script_switches_obs_scenes_and_the_client_reconnects_after_obs_restarts() {
    let _serial = serial();
    let (port, obs) = fake_obs();
    let onair = start(port, PASSWORD);
    assert!(wait_until(Duration::from_secs(10), || obs
        .identified
        .load(Ordering::SeqCst)
        == 1));
    assert!(onair.wait_log("obs-websocket connected", Duration::from_secs(5)));

    let r = ask(&onair, "/scene/BRB");
    assert_eq!(
        (r["ok"].as_bool(), r["code"].as_i64()),
        (Some(true), Some(100)),
        "{r}"
    );
    assert_eq!(
        obs.requests.lock().expect("lock").last().cloned(),
        Some((
            "SetCurrentProgramScene".to_string(),
            serde_json::json!({"sceneName": "BRB"})
        ))
    );
    // OBS's own failure comes back as it is
    let r = ask(&onair, "/scene/Nowhere");
    assert_eq!(
        (r["ok"].as_bool(), r["code"].as_i64()),
        (Some(false), Some(600)),
        "{r}"
    );
    assert!(r["comment"].as_str().is_some_and(|c| c.contains("Nowhere")));
    // response data reaches the script
    let r = ask(&onair, "/current");
    assert_eq!(r["scene"].as_str(), Some("Live"), "{r}");

    // OBS goes away: a request fails at once with the reason; then the client is back by itself
    obs.drop_all.store(true, Ordering::SeqCst);
    assert!(onair.wait_log("obs-websocket: connection lost", Duration::from_secs(5)));
    obs.drop_all.store(false, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(10), || obs
            .identified
            .load(Ordering::SeqCst)
            == 2),
        "did not reconnect:\n{}",
        onair.log_text()
    );
    let r = ask(&onair, "/scene/Live");
    assert_eq!(r["ok"].as_bool(), Some(true), "{r}");
    // still one connection: no reconnect storm
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(obs.identified.load(Ordering::SeqCst), 2);
}

#[test]
fn a_wrong_obs_password_is_named_in_the_log_and_requests_fail_with_it() {
    let _serial = serial();
    let (port, obs) = fake_obs();
    let onair = start(port, "not-the-password");
    assert!(
        onair.wait_log("OBS refused the password", Duration::from_secs(10)),
        "{}",
        onair.log_text()
    );
    assert_eq!(obs.identified.load(Ordering::SeqCst), 0);
    let r = ask(&onair, "/scene/BRB");
    assert!(
        r["err"]
            .as_str()
            .is_some_and(|e| e.contains("not connected to OBS")),
        "{r}"
    );
    assert!(obs.requests.lock().expect("lock").is_empty());
    // it keeps trying, with backoff (1 s, 2 s, 4 s …), not in a tight loop
    std::thread::sleep(Duration::from_secs(4));
    let tries = obs.refused.load(Ordering::SeqCst);
    assert!((2..=5).contains(&tries), "{tries} attempts in ~5 s");
    // onair itself is fine
    assert_eq!(onair.call("GET", "/api/status", "").0, 200);
}
