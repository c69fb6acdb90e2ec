//! `cargo bench --bench plugins` (after `plugins/build.sh`): a policy plugin call round trip
//! (event in, actions out; goal ≤ 100 µs median), loading the scoreboard component (goal: a
//! dropped-in plugin runs within 1 s), and one scoreboard render at 1280x720.

use std::path::Path;
use std::time::{Duration, Instant};

use onair::event::{Event, Stall};
use onair::wasm::{PluginHost, PluginLimits};

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "{name}: median {:.1} µs, p99 {:.1} µs ({} runs)",
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

fn main() {
    let release =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/wasm32-wasip2/release");
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["priority_failover.wasm", "scoreboard.wasm"] {
        std::fs::copy(release.join(f), dir.path().join(f)).expect("run plugins/build.sh first");
    }
    let host = PluginHost::new(dir.path(), PluginLimits::default()).expect("host");
    let mut loads = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        host.load(&dir.path().join("scoreboard.wasm"))
            .expect("load");
        loads.push(t.elapsed());
    }
    report(
        "scoreboard.wasm load (read, compile, validate, instantiate)",
        loads,
    );
    host.load_all();

    let ev = Event::Stall(Stall {
        channel: "default".into(),
        session: 7,
        key: "live…a9f3".into(),
        silent_ms: 1000,
        on_air: true,
    });
    let mut calls = Vec::new();
    for _ in 0..5000 {
        let t = Instant::now();
        let actions = host.on_event(&ev);
        calls.push(t.elapsed());
        assert_eq!(actions.len(), 1);
    }
    report("policy plugin call (event → on-event → actions)", calls);

    let data = r#"{"home":{"name":"IND","score":"187/4"},"away":{"name":"AUS","score":154},"clock":"18.3 ov","title":"2nd T20I"}"#;
    let mut renders = Vec::new();
    for i in 0..50 {
        let d = data.replace("187/4", &format!("{}/4", 100 + i));
        let t = Instant::now();
        let img = host.render("scoreboard", 1280, 720, &d).expect("render");
        renders.push(t.elapsed());
        assert_eq!((img.width, img.height), (1280, 720));
    }
    report("scoreboard render 1280x720", renders);
}
