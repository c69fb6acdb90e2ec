//! The WASM plugin host against fixture components built from `plugins/` (`plugins/build.sh`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onair::action::Action;
use onair::event::*;
use onair::wasm::{PluginHost, PluginLimits, World};

fn artefact(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run plugins/build.sh (the README's test command does)",
        p.display()
    );
    p
}

/// Limits with a generous deadline: tests share two cores, and only the deadline test needs the
/// real 100 ms.
fn relaxed() -> PluginLimits {
    PluginLimits {
        deadline: Duration::from_secs(2),
        ..PluginLimits::default()
    }
}

fn host_with(files: &[(&str, &str)]) -> (tempfile::TempDir, PluginHost) {
    host_with_limits(files, relaxed())
}

fn host_with_limits(
    files: &[(&str, &str)],
    limits: PluginLimits,
) -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (artefact_name, as_name) in files {
        std::fs::copy(
            artefact(artefact_name),
            dir.path().join(format!("{as_name}.wasm")),
        )
        .expect("copy");
    }
    let host = PluginHost::new(dir.path(), limits).expect("host");
    host.load_all();
    (dir, host)
}

fn stall() -> Event {
    Event::Stall(Stall {
        channel: "default".into(),
        session: 3,
        key: "k…y".into(),
        silent_ms: 1000,
        on_air: true,
    })
}
fn publish() -> Event {
    Event::Publish(Publish {
        channel: "default".into(),
        session: 3,
        key: "k…y".into(),
        account: None,
        addr: "203.0.113.5:5000".into(),
    })
}
fn resume() -> Event {
    Event::Resume(Resume {
        channel: "default".into(),
        session: 3,
        key: "k…y".into(),
        stalled_ms: 1500,
        on_air: true,
    })
}

#[test]
fn policy_actions_round_trip() {
    let (_d, host) = host_with(&[("priority_failover", "priority-failover")]);
    let info = host.info();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].world, Some(World::Policy));
    assert_eq!(info[0].version, Some("0.1.0"));
    assert!(info[0].loaded && info[0].last_error.is_none(), "{info:?}");
    assert_eq!(
        host.on_event(&stall()),
        vec![Action::Switch {
            to: Source::Fallback,
            media: None,
            reason: "stall of session 3: no media for 1000 ms".into(),
            session: None,
        }]
    );
    assert_eq!(
        host.on_event(&publish()),
        vec![Action::Switch {
            to: Source::Live,
            media: None,
            reason: "publish of session 3".into(),
            session: None,
        }]
    );
    let up = Event::DestinationUp(DestinationUp {
        channel: "default".into(),
        name: "a".into(),
        url: "u".into(),
        attempt: 1,
    });
    assert!(host.on_event(&up).is_empty());
    // the same decisions as the shipped Lua policy and the built-in default
    for ev in [stall(), publish(), resume()] {
        let targets = |v: &[Action]| -> Vec<Source> {
            v.iter()
                .filter_map(|a| match a {
                    Action::Switch { to, .. } => Some(*to),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            targets(&host.on_event(&ev)),
            targets(&onair::policy::builtin::decide(&ev)),
            "{}",
            ev.name()
        );
    }
}

const MATCH: &str = r#"{"home": {"name": "IND", "score": "187/4"}, "away": {"name": "AUS", "score": 154}, "clock": "18.3 ov", "title": "2nd T20I"}"#;

fn pixel(img: &onair::wasm::Image, x: u32, y: u32) -> [u8; 4] {
    let i = (y * img.stride + x * 4) as usize;
    [
        img.pixels[i],
        img.pixels[i + 1],
        img.pixels[i + 2],
        img.pixels[i + 3],
    ]
}

#[test]
fn overlay_image_has_the_size_asked_and_real_pixels() {
    let (_d, host) = host_with(&[("scoreboard", "scoreboard")]);
    assert_eq!(host.info()[0].world, Some(World::Overlay));
    let img = host.render("scoreboard", 640, 96, MATCH).expect("render");
    assert_eq!((img.width, img.height), (640, 96));
    assert!(img.stride >= 640 * 4 && img.pixels.len() >= (img.stride * 96) as usize);
    assert!(
        pixel(&img, 0, 0)[3] < 40,
        "a rounded corner is transparent: {:?}",
        pixel(&img, 0, 0)
    );
    let opaque = img.pixels.chunks_exact(4).filter(|p| p[3] > 200).count();
    assert!(
        opaque > 640 * 96 / 2,
        "the panel covers the layer ({opaque} opaque pixels)"
    );
    let bright = img
        .pixels
        .chunks_exact(4)
        .filter(|p| p[3] > 200 && p[0] > 200 && p[1] > 200 && p[2] > 200)
        .count();
    assert!(
        bright > 200,
        "there is light text on the panel ({bright} pixels)"
    );
    // the score changes the pixels, and the same data gives the same bytes
    let again = host.render("scoreboard", 640, 96, MATCH).expect("render");
    assert_eq!(img, again);
    let other = host
        .render("scoreboard", 640, 96, &MATCH.replace("187/4", "191/4"))
        .expect("render");
    assert_ne!(img.pixels, other.pixels);
    // errors name the problem
    let e = host
        .render("scoreboard", 640, 96, "{not json")
        .expect_err("bad json");
    assert!(e.contains("not JSON"), "{e}");
    let e = host
        .render(
            "scoreboard",
            640,
            96,
            r#"{"away": {"name": "A", "score": 1}}"#,
        )
        .expect_err("missing");
    assert!(e.contains("home"), "{e}");
    let e = host.render("nope", 10, 10, "{}").expect_err("no plugin");
    assert!(e.contains("no overlay plugin named \"nope\""), "{e}");
}

#[test]
fn scoreboard_matches_its_golden_image() {
    let (_d, host) = host_with(&[("scoreboard", "scoreboard")]);
    let img = host.render("scoreboard", 0, 0, MATCH).expect("render");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/scoreboard.png");
    if std::env::var_os("ONAIR_BLESS").is_some() {
        let f = std::fs::File::create(&golden).expect("create golden");
        let mut enc = png::Encoder::new(f, img.width, img.height);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().expect("header");
        let rows: Vec<u8> = (0..img.height)
            .flat_map(|y| {
                img.pixels[(y * img.stride) as usize..][..(img.width * 4) as usize].to_vec()
            })
            .collect();
        w.write_image_data(&rows).expect("write");
        // a blessed run is never a pass: nothing was compared
        panic!(
            "blessed {}: check the picture, then run again without ONAIR_BLESS to compare",
            golden.display()
        );
    }
    let want = onair::media::overlay::load_png(&golden)
        .expect("tests/golden/scoreboard.png (ONAIR_BLESS=1 writes it)");
    assert_eq!(
        (img.width, img.height),
        (want.width, want.height),
        "size changed"
    );
    let mut off = 0usize;
    for y in 0..img.height {
        for x in 0..img.width {
            let (a, b) = (pixel(&img, x, y), pixel(&want, x, y));
            if a.iter().zip(b).any(|(p, q)| p.abs_diff(q) > 2) {
                off += 1;
            }
        }
    }
    let total = (img.width * img.height) as usize;
    assert!(
        off * 1000 <= total,
        "{off} of {total} pixels differ from the golden image (re-bless with ONAIR_BLESS=1 if intended)"
    );
}

#[test]
fn a_guest_loop_is_interrupted_at_the_deadline_and_the_plugin_keeps_working() {
    let (_d, host) = host_with_limits(&[("misbehave", "misbehave")], PluginLimits::default());
    let t = Instant::now();
    let actions = host.on_event(&stall());
    let took = t.elapsed();
    assert!(actions.is_empty());
    assert!(took < Duration::from_secs(3), "the loop ran {took:?}");
    let err = host.info()[0].last_error.clone().unwrap_or_default();
    assert!(err.contains("deadline of 100 ms exceeded"), "{err}");
    // a fresh instance answers the next call
    assert_eq!(host.on_event(&publish()).len(), 1);
}

#[test]
fn a_guest_allocating_past_the_cap_is_refused() {
    let (_d, host) = host_with(&[("misbehave", "misbehave")]);
    assert!(host.on_event(&resume()).is_empty());
    let err = host.info()[0].last_error.clone().unwrap_or_default();
    assert!(err.contains("memory cap of 64 MiB reached"), "{err}");
    assert_eq!(
        host.on_event(&publish()).len(),
        1,
        "the plugin works again after the refusal"
    );
}

/// `relaxed()` with `grants` for plugin `name`.
fn granted(name: &str, grants: &[&str]) -> PluginLimits {
    let caps = grants
        .iter()
        .map(|g| g.parse().expect("capability"))
        .collect();
    PluginLimits {
        grants: [(name.to_string(), caps)].into_iter().collect(),
        ..relaxed()
    }
}

#[test]
fn policy_plugins_of_0_1_0_0_2_0_and_0_3_0_loaded_together_all_act() {
    let (_d, host) = host_with_limits(
        &[
            ("priority_failover", "priority-failover"),
            ("channel_policy", "channel-policy"),
            ("recording_policy", "recording-policy"),
        ],
        granted("recording-policy", &["destinations"]),
    );
    let info = host.info();
    let versions: Vec<(&str, Option<&str>, bool)> = info
        .iter()
        .map(|i| (i.name.as_str(), i.version, i.loaded))
        .collect();
    assert_eq!(
        versions,
        [
            ("channel-policy", Some("0.2.0"), true),
            ("priority-failover", Some("0.1.0"), true),
            ("recording-policy", Some("0.3.0"), true)
        ],
        "{info:?}"
    );
    let stall_on = |channel: &str| {
        Event::Stall(Stall {
            channel: channel.into(),
            session: 3,
            key: "k…y".into(),
            silent_ms: 1000,
            on_air: true,
        })
    };
    assert_eq!(
        host.on_event(&stall_on("court-2")),
        vec![
            // 0.2.0: it saw the channel, and addressed its second action to another one
            Action::Switch {
                to: Source::Fallback,
                media: None,
                reason: "channel-policy: stall on court-2".into(),
                session: None,
            },
            Action::OnChannel {
                channel: "big-screen".into(),
                action: Box::new(Action::OverlayHide {
                    name: "replay".into()
                }),
            },
            // 0.1.0: unchanged, its actions go to the event's channel
            Action::Switch {
                to: Source::Fallback,
                media: None,
                reason: "stall of session 3: no media for 1000 ms".into(),
                session: None,
            },
            // 0.3.0: nothing on a stall
        ]
    );
    // 0.3.0: destinations with a profile and recording options
    let added: Vec<Action> = host
        .on_event(&publish())
        .into_iter()
        .filter(|a| matches!(a, Action::DestinationAdd { .. }))
        .collect();
    assert_eq!(
        added,
        vec![
            Action::DestinationAdd {
                name: "archive".into(),
                url: "file:///srv/rec/default-{utc}.mp4".into(),
                profile: Some("small".into()),
                segment_minutes: Some(30),
                max_total_gib: Some(2.5),
            },
            Action::DestinationAdd {
                name: "twitch".into(),
                url: "rtmp://live.twitch.tv/app/live_key".into(),
                profile: Some("twitch-720p60".into()),
                segment_minutes: None,
                max_total_gib: None,
            },
        ]
    );
    assert!(host.info().iter().all(|i| i.last_error.is_none()));
}

#[test]
fn destination_add_without_the_destinations_grant_is_refused_naming_the_plugin() {
    // granted everything else: `network` is WASI's sockets, not the right to add destinations
    let (_d, host) = host_with_limits(
        &[("recording_policy", "recording-policy")],
        granted("recording-policy", &["network", "env"]),
    );
    assert!(
        host.on_event(&publish()).is_empty(),
        "a plugin without the grant added destinations"
    );
    let info = host.info();
    let err = info[0].last_error.clone().unwrap_or_default();
    assert!(
        err.contains("destination-add")
            && err.contains("\"recording-policy\"")
            && err.contains("destinations"),
        "{err}"
    );
    assert!(info[0].loaded, "the plugin keeps running: {info:?}");
    // a grant for another plugin is not this one's
    let (_d, host) = host_with_limits(
        &[("recording_policy", "recording-policy")],
        granted("scoreboard", &["destinations"]),
    );
    assert!(host.on_event(&publish()).is_empty());
}

#[test]
fn a_wrong_version_component_is_rejected_with_a_clear_message() {
    let (_d, host) = host_with(&[("wrong_version", "wrong-version")]);
    let info = &host.info()[0];
    assert!(!info.loaded);
    let err = info.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("built for onair:plugin@0.9.0")
            && err.contains("onair:plugin@0.3.0 and @0.2.0 and @0.1.0"),
        "{err}"
    );
}

#[test]
fn drop_in_replace_corrupt_and_delete_while_watched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Arc::new(PluginHost::new(dir.path(), relaxed()).expect("host"));
    let h = host.clone();
    let _w = onair::watch::watch(dir.path(), move |paths| h.changed(&paths)).expect("watch");
    let info = || host.info();
    let target = dir.path().join("scoreboard.wasm");
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(5), "{what}: {:?}", info());
            std::thread::sleep(Duration::from_millis(20));
        }
        t.elapsed()
    };

    std::fs::copy(artefact("scoreboard"), &target).expect("drop in");
    let t1 = wait("drop in", &|| {
        info()
            .first()
            .is_some_and(|i| i.loaded && i.generation == 1)
    });
    // the same bytes again: nothing to reload
    std::fs::copy(artefact("scoreboard"), &target).expect("copy again");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(info()[0].generation, 1, "the same bytes were reloaded");
    // a new build: the same component with a custom section appended (id 0, name "v", "2")
    let mut rebuilt = std::fs::read(artefact("scoreboard")).expect("read");
    rebuilt.extend_from_slice(&[0, 3, 1, b'v', b'2']);
    std::fs::write(&target, rebuilt).expect("replace");
    let t2 = wait("replace", &|| {
        info().first().is_some_and(|i| i.generation == 2)
    });
    std::fs::write(&target, b"\0asm garbage").expect("corrupt");
    let t3 = wait("corrupt", &|| {
        info().first().is_some_and(|i| i.last_error.is_some())
    });
    let i = info()[0].clone();
    assert_eq!(i.generation, 2, "the previous version stays");
    assert!(
        i.last_error
            .as_deref()
            .unwrap_or("")
            .contains("not a valid WebAssembly component"),
        "{i:?}"
    );
    let r = host.render("scoreboard", 320, 48, MATCH);
    assert!(r.is_ok(), "generation 2 still renders: {:?}", r.err());
    std::fs::remove_file(&target).expect("delete");
    let t4 = wait("delete", &|| info().is_empty());
    assert!(host.render("scoreboard", 320, 48, MATCH).is_err());
    eprintln!("drop-in {t1:?}, replace {t2:?}, corrupt {t3:?}, delete {t4:?}");
}
