//! Hot reload as a user sees it: one save is one reload (and the generation then stays put),
//! state such as timers survives until the next real change, and what a script does at its top
//! level takes effect on swap. Runs the real binary; the output is checked on `/preview.flv`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

const LOAD: Duration = Duration::from_secs(10);
/// How long a generation must stay unchanged after a save.
const STABLE: Duration = Duration::from_secs(3);

/// `name`'s generation in `/api/scripts` (or `/api/plugins`), 0 if it is not listed.
fn generation(onair: &Onair, api: &str, name: &str) -> u64 {
    onair
        .get_json(api)
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["generation"].as_u64())
        .unwrap_or(0)
}

/// Waits until `name` reaches generation `want`, then checks it stays there for [`STABLE`].
fn loaded_once(onair: &Onair, api: &str, name: &str, want: u64, what: &str) {
    assert!(
        wait_until(LOAD, || generation(onair, api, name) >= want),
        "{what}: {name} never reached generation {want}"
    );
    // an observation window, not a synchronisation: nothing on disk changes during it
    std::thread::sleep(STABLE);
    let now = generation(onair, api, name);
    assert_eq!(
        now,
        want,
        "{what}: {name} was loaded {} times for one change",
        now + 1 - want
    );
}

fn scripts_dir(onair: &Onair) -> std::path::PathBuf {
    onair.dir.path().join("s")
}

fn write_atomically(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, dir.join(name)).expect("rename onto");
}

#[test]
fn one_save_is_one_reload_and_timers_survive_until_the_next_change() {
    let _serial = serial();
    let failover = std::fs::read_to_string(repo_root().join("scripts/failover.lua")).expect("read");
    let onair = Onair::start_with(
        "[scripts]\ndir = \"s\"\nstore = \"store.json\"\n[plugins]\ndir = \"plugins\"\n",
        |dir| {
            std::fs::create_dir_all(dir.join("s")).expect("mkdir");
            std::fs::create_dir_all(dir.join("plugins")).expect("mkdir");
            std::fs::write(dir.join("s/failover.lua"), &failover).expect("write");
            std::fs::write(dir.join("s/a.lua"), "-- a, version 1\n").expect("write");
        },
    );
    let dir = scripts_dir(&onair);
    assert_eq!(generation(&onair, "/api/scripts", "failover.lua"), 1);
    assert_eq!(generation(&onair, "/api/scripts", "a.lua"), 1);

    // an in-place write of an existing script
    std::fs::write(dir.join("failover.lua"), format!("{failover}\n-- edited\n")).expect("write");
    loaded_once(&onair, "/api/scripts", "failover.lua", 2, "in-place write");

    // a new script
    std::fs::write(dir.join("b.lua"), "onair.log.info('b loaded')\n").expect("write");
    loaded_once(&onair, "/api/scripts", "b.lua", 1, "new file");

    // a save by rename onto an existing script (what vim and many editors do)
    write_atomically(&dir, "a.lua", "-- a, version 2\n");
    loaded_once(&onair, "/api/scripts", "a.lua", 2, "rename onto");

    // the same bytes saved again, and a touch: nothing to reload
    std::fs::write(dir.join("a.lua"), "-- a, version 2\n").expect("write");
    let _ = std::process::Command::new("touch")
        .arg(dir.join("b.lua"))
        .status();
    std::thread::sleep(STABLE);
    assert_eq!(
        generation(&onair, "/api/scripts", "a.lua"),
        2,
        "same content reloaded"
    );
    assert_eq!(
        generation(&onair, "/api/scripts", "b.lua"),
        1,
        "touch reloaded"
    );
    // and the failover script, untouched since its edit, is still at its generation
    assert_eq!(generation(&onair, "/api/scripts", "failover.lua"), 2);

    // a timer set at load fires after an edit (a reload would throw it away before it is due)
    let timer = |v: u32| {
        format!("onair.after(2000, function() onair.log.info('timer of version {v} fired') end)\n")
    };
    std::fs::write(dir.join("t.lua"), timer(1)).expect("write");
    assert!(
        onair.wait_log("timer of version 1 fired", LOAD),
        "the timer of a new script never fired"
    );
    std::fs::write(dir.join("t.lua"), timer(2)).expect("write");
    assert!(
        onair.wait_log("timer of version 2 fired", LOAD),
        "the timer of an edited script never fired"
    );
    assert_eq!(generation(&onair, "/api/scripts", "t.lua"), 2);
    assert_eq!(onair.log_lines(&["timer of version 2 fired"]).len(), 1);

    // a dropped-in plugin loads once and stays
    let wasm = repo_root().join("target/plugins/wasm32-wasip2/release/scoreboard.wasm");
    assert!(wasm.exists(), "run plugins/build.sh first");
    std::fs::copy(&wasm, onair.dir.path().join("plugins/scoreboard.wasm")).expect("copy");
    loaded_once(&onair, "/api/plugins", "scoreboard", 1, "dropped-in plugin");
    // copied over with the same bytes: not reloaded
    std::fs::copy(&wasm, onair.dir.path().join("plugins/scoreboard.wasm")).expect("copy");
    std::thread::sleep(STABLE);
    assert_eq!(
        generation(&onair, "/api/plugins", "scoreboard"),
        1,
        "same bytes reloaded"
    );

    let loads = onair.log_lines(&["script loaded"]).len();
    // failover 2, a 2, b 1, t 2
    assert_eq!(loads, 7, "script loads in the log:\n{}", onair.log_text());
}

/// One decoded RGB24 frame of onair's preview.
fn grab(onair: &Onair) -> Vec<u8> {
    grab_rgb(&onair.preview_url(), 640, 360)
}

/// Mean absolute difference over a rectangle of two 640-wide RGB24 frames.
fn region_mae(a: &[u8], b: &[u8], (x0, y0, w, h): (usize, usize, usize, usize)) -> f64 {
    let mut sum = 0u64;
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            let i = (y * 640 + x) * 3;
            for c in 0..3 {
                sum += u64::from(a[i + c].abs_diff(b[i + c]));
            }
        }
    }
    sum as f64 / (w * h * 3) as f64
}

fn overlay_layers(onair: &Onair) -> usize {
    onair.status()["overlay"].as_array().map_or(0, Vec::len)
}

#[test]
fn top_level_overlay_text_shows_on_swap_and_not_from_a_broken_file() {
    let _serial = serial();
    let failover = std::fs::read_to_string(repo_root().join("scripts/failover.lua")).expect("read");
    let onair = Onair::start_with("[scripts]\ndir = \"s\"\nstore = \"store.json\"\n", |dir| {
        std::fs::create_dir_all(dir.join("s")).expect("mkdir");
        std::fs::write(dir.join("s/failover.lua"), &failover).expect("write");
    });
    let dir = scripts_dir(&onair);
    // the text box: white 40 px text at (40, 280) on the slate
    let rect = (40, 280, 300, 50);
    let call = r##"onair.overlay.text("lower", "Back in 5", { x = 40, y = 280, size = 40, color = "#ffffff" })"##;
    // the first frames after start-up may precede the slate: wait until two grabs agree
    let mut before = grab(&onair);
    assert!(
        wait_until(LOAD, || {
            let next = grab(&onair);
            let stable = region_mae(&before, &next, rect) < 3.0;
            before = next;
            stable
        }),
        "the slate itself keeps changing in the text box: the pixel check would mean nothing"
    );

    // broken: the same call, then an error at load → the file is refused and nothing shows
    std::fs::write(
        dir.join("lower.lua"),
        format!("{call}\nerror('broken on purpose')\n"),
    )
    .expect("write");
    assert!(
        onair.wait_log("script not loaded", LOAD),
        "the broken file was not reported"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        overlay_layers(&onair),
        0,
        "a failed load applied its actions"
    );
    let broken = grab(&onair);
    let mae = region_mae(&before, &broken, rect);
    assert!(
        mae < 3.0,
        "the text box changed after a failed load (MAE {mae:.1})"
    );

    // fixed: the same call alone → on the output
    std::fs::write(dir.join("lower.lua"), format!("{call}\n")).expect("write");
    assert!(
        wait_until(LOAD, || overlay_layers(&onair) == 1),
        "the top-level overlay call was not applied:\n{}",
        onair.log_text()
    );
    let mut mae = 0.0;
    assert!(
        wait_until(LOAD, || {
            mae = region_mae(&before, &grab(&onair), rect);
            mae > 15.0
        }),
        "the text did not reach the output (MAE {mae:.1})"
    );
    assert_eq!(generation(&onair, "/api/scripts", "lower.lua"), 1);
}
