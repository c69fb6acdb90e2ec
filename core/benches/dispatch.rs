//! `cargo bench --bench dispatch`: one `stall` event dispatched to a Lua handler that returns a
//! `switch` action. Prints the median and p99 of (a) the call into the script and (b) the whole
//! round trip through the policy thread, as the engine does it. Goal: median ≤ 50 µs.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onair::event::{Event, Stall};
use onair::policy::script::{Script, Services};
use onair::policy::{Policy, PolicyOptions};

const SCRIPT: &str = r#"
onair.on("stall", function(ev)
  if ev.on_air then
    onair.switch("fallback", { reason = "stall of session " .. ev.session .. ": no media for " .. ev.silent_ms .. " ms" })
  end
end)"#;

fn stall() -> Event {
    Event::Stall(Stall {
        channel: "default".into(),
        session: 7,
        key: "live…a9f3".into(),
        silent_ms: 1000,
        on_air: true,
    })
}

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
    let runs = 5000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (jobs, _rx) = crossbeam_channel::unbounded();
    let services = Arc::new(Services {
        dir: dir.path().to_path_buf(),
        store: std::sync::Mutex::new(None),
        core: Arc::default(),
        jobs,
        runtime: None,
        http: reqwest::Client::new(),
        memory_limit: 64 << 20,
        time_limit: Duration::from_millis(100),
    });
    let script =
        Script::from_source(Path::new("failover.lua"), SCRIPT, 1, &services).expect("loads");
    let ev = stall();
    let mut direct = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let (actions, _) = script.dispatch(&ev).expect("dispatch");
        direct.push(t.elapsed());
        assert_eq!(actions.len(), 1);
    }
    report("script dispatch (event → Lua handler → action)", direct);

    std::fs::write(dir.path().join("failover.lua"), SCRIPT).expect("write");
    let (policy, errors) = Policy::start(PolicyOptions {
        dir: dir.path().to_path_buf(),
        db: Some(std::sync::Arc::new(onair::db::Db::memory().expect("db"))),
        store_import: None,
        core: Arc::default(),
        actions: None,
        runtime: None,
        watch: false,
        memory_limit: 64 << 20,
        time_limit: Duration::from_millis(100),
        plugins: None,
        metrics: None,
    });
    assert!(errors.is_empty(), "{errors:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut round = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let actions = rt.block_on(policy.decide(ev.clone()));
        round.push(t.elapsed());
        assert_eq!(actions.len(), 1);
    }
    report(
        "policy round trip (engine → policy thread → actions)",
        round,
    );
}
