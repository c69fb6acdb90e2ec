//! Real parts for end-to-end tests: nginx-rtmp as the platform, ffmpeg as OBS and as the viewer,
//! the onair binary under test. Every process is killed when its handle drops.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// E2E tests share 2 cores: run them one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A port nothing listens on, below Linux's ephemeral range (32768–60999): a port the kernel
/// handed out with `bind(0)` can be taken by an outgoing connection (ffmpeg, a destination)
/// before the test's server binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 120) as u16 * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = 20_000 + (p - 20_000) % 12_000;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    wait_until(timeout, || TcpStream::connect(("127.0.0.1", port)).is_ok())
}

/// A minimal HTTP/1.0 GET: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, &[], "")
}

/// A minimal HTTP/1.0 request: (status code, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    request_on(s, method, path, headers, body)
}

/// Like [`http_request`], from the local address `ip` (any 127.x.y.z: onair holds one client
/// network to 64 HTTP connections, so a test's flood of more comes from several).
pub fn http_request_from(
    ip: &str,
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String)> {
    let s = connect_from(ip, port).ok()?;
    request_on(s, method, path, &[], body)
}

fn request_on(
    mut s: TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// A tiny HTTP/1.1 server on a free loopback port for the tests' own peers (webhook receivers,
/// match APIs, echo servers). `handle(method, body)` answers `(status, content type, body)`.
pub fn http_server(handle: impl Fn(&str, &[u8]) -> (u16, String, Vec<u8>) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let method = line.split_whitespace().next().unwrap_or("").to_string();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let (status, ctype, out) = handle(&method, &body);
            let mut s = r.into_inner();
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                out.len()
            );
            let _ = s.write_all(&out);
        }
    });
    port
}

/// Runs curl (`-s`, 5 s limit): (HTTP status, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// nginx with the RTMP module, on free loopback ports, apps `app` and `app2`.
pub struct Nginx {
    pub rtmp_port: u16,
    pub http_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nginx {
    pub fn start() -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = Nginx {
            rtmp_port: free_port(),
            http_port: free_port(),
            dir,
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        std::fs::create_dir_all(d.join("logs")).expect("logs dir");
        let module = ["/usr/lib/nginx/modules/ngx_rtmp_module.so"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("libnginx-mod-rtmp is installed (tools/setup-debian.sh)");
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
load_module {module};
events {{ worker_connections 128; }}
rtmp {{
  server {{
    listen 127.0.0.1:{rtmp};
    application app {{ live on; }}
    application app2 {{ live on; }}
  }}
}}
http {{
  access_log off;
  client_body_temp_path {d}/tmp;
  proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp;
  scgi_temp_path {d}/tmp;
  server {{
    listen 127.0.0.1:{http};
    location /stat {{ rtmp_stat all; }}
  }}
}}
"#,
            d = d.display(),
            rtmp = self.rtmp_port,
            http = self.http_port,
        );
        std::fs::write(d.join("nginx.conf"), conf).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (nginx-light) is installed");
        self.child = Some(child);
        assert!(
            wait_port(self.rtmp_port, Duration::from_secs(10)),
            "nginx did not listen"
        );
    }

    pub fn url(&self, app: &str, stream: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{stream}", self.rtmp_port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Publishing clients of `app` (from `/stat`): each one's connection age in ms.
    pub fn publishers(&self, app: &str) -> Vec<u64> {
        let Some((_, xml)) = http_get(self.http_port, "/stat") else {
            return Vec::new();
        };
        let Some(start) = xml.find(&format!("<name>{app}</name>")) else {
            return Vec::new();
        };
        let section = &xml[start..];
        let section = &section[..section.find("</application>").unwrap_or(section.len())];
        section
            .split("<client>")
            .skip(1)
            // the stream's own <publishing/> follows its last client: look inside each client
            .map(|c| &c[..c.find("</client>").unwrap_or(c.len())])
            .filter(|c| c.contains("<publishing/>"))
            .filter_map(|c| {
                let t = c.split("<time>").nth(1)?.split("</time>").next()?;
                t.parse().ok()
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The connection ages (ms) of onair's publish on `app` must show one connection, never re-opened,
/// that is at least as old as `since`.
pub fn assert_one_connection_since(nginx: &Nginx, app: &str, since: Instant) {
    let pubs = nginx.publishers(app);
    assert_eq!(pubs.len(), 1, "publish sessions on {app}: {pubs:?}");
    let age_ms = since.elapsed().as_millis() as u64;
    assert!(
        pubs[0] + 500 >= age_ms,
        "the output connection on {app} was re-opened: {} ms old, test ran {age_ms} ms",
        pubs[0]
    );
}

/// The onair binary under test, with its log captured.
pub struct Onair {
    pub dir: tempfile::TempDir,
    pub rtmp_port: u16,
    pub http_port: u16,
    pub log: PathBuf,
    child: Child,
    pub ready_at: Instant,
}

/// The admin token every test config sets (`http.admin_token`).
pub const TOKEN: &str = "test-admin-token-0123456789";
/// The preview key every test config sets (`http.preview_key`).
pub const PREVIEW_KEY: &str = "test-preview-key-0123";

fn spawn_onair(dir: &Path, log: &Path) -> Child {
    Command::new(onair_bin())
        .args(["run", "-c"])
        .arg(dir.join("onair.toml"))
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn onair")
}

/// The binary under test: this build's, or `TEST_ONAIR_BIN` to run the tests against a release
/// build or another version (not `ONAIR_…`: onair reads those as config keys).
pub fn onair_bin() -> String {
    std::env::var("TEST_ONAIR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_onair").to_string())
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Onair {
    /// Starts onair with `extra` TOML appended to a config that sets free ports, the test keys
    /// `test-key-123` and `test-key-456` (none when `extra` has `[[channel]]` tables), 640x360
    /// output and the repo's scripts. Waits until it is ready.
    pub fn start(extra: &str) -> Onair {
        Self::start_with(extra, |_| {})
    }

    /// Like [`Self::start`]; `prepare` may put files in the config's directory first.
    pub fn start_with(extra: &str, prepare: impl FnOnce(&Path)) -> Onair {
        Self::start_full("", extra, prepare)
    }

    /// Like [`Self::start_with`]; `ingest` is more lines for the `[ingest]` table.
    pub fn start_full(ingest: &str, extra: &str, prepare: impl FnOnce(&Path)) -> Onair {
        Self::start_tables(ingest, "", extra, prepare)
    }

    /// Like [`Self::start_full`]; `http` is more lines for the `[http]` table.
    pub fn start_tables(
        ingest: &str,
        http: &str,
        extra: &str,
        prepare: impl FnOnce(&Path),
    ) -> Onair {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        let rtmp_port = free_port();
        let http_port = free_port();
        let scripts = if extra.contains("[scripts]") {
            String::new()
        } else {
            format!(
                "[scripts]\ndir = \"{}\"\nstore = \"store.json\"\n",
                repo_root().join("scripts").display()
            )
        };
        // with [[channel]] tables each channel lists its own keys
        let keys = if extra.contains("[[channel]]") {
            ""
        } else {
            "keys = [\"test-key-123\", \"test-key-456\"]\n"
        };
        let mut cfg = format!(
            "[ingest]\nrtmp_listen = \"127.0.0.1:{rtmp_port}\"\n{keys}{ingest}\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\nadmin_token = \"{TOKEN}\"\npreview_key = \"{PREVIEW_KEY}\"\n{http}\n{scripts}"
        );
        if !extra.contains("[output]") {
            cfg.push_str("[output]\nwidth = 640\nheight = 360\nvideo_bitrate_kbps = 800\n");
        }
        cfg.push_str(extra);
        let path = dir.path().join("onair.toml");
        std::fs::write(&path, cfg).expect("write config");
        let log = dir.path().join("onair.log");
        let child = spawn_onair(dir.path(), &log);
        let mut o = Onair {
            dir,
            rtmp_port,
            http_port,
            log,
            child,
            ready_at: Instant::now(),
        };
        assert!(
            o.wait_log("rtmp ingest ready", Duration::from_secs(60)),
            "onair did not start:\n{}",
            o.log_text()
        );
        o.ready_at = Instant::now();
        o
    }

    /// Kills the process with SIGKILL: no clean-up of any kind.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process with SIGKILL (no clean-up of any kind), then starts it again on the same
    /// folder, config and ports, and waits until it is ready. The old log is kept as
    /// `onair.log.1`.
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::rename(&self.log, self.dir.path().join("onair.log.1"));
        self.child = spawn_onair(self.dir.path(), &self.log);
        assert!(
            self.wait_log("rtmp ingest ready", Duration::from_secs(60)),
            "onair did not start again:\n{}",
            self.log_text()
        );
        self.ready_at = Instant::now();
    }

    /// `/preview.flv` with the preview key.
    pub fn preview_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/preview.flv?key={PREVIEW_KEY}",
            self.http_port
        )
    }

    pub fn publish_url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.rtmp_port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_text().contains(needle))
    }

    /// Lines of the log containing all of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }

    pub fn status(&self) -> serde_json::Value {
        self.get_json("/api/status")
    }

    /// `GET path` with the admin token; asserts 200 and returns the JSON body.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let auth = format!("Bearer {TOKEN}");
        let (code, body) =
            http_request(self.http_port, "GET", path, &[("Authorization", &auth)], "")
                .unwrap_or_else(|| panic!("{path} does not answer"));
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"))
    }

    /// `method path` with the admin token and a JSON `body`: the status and the JSON answer
    /// (null when the body is not JSON).
    pub fn call(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {TOKEN}");
        let (code, text) = http_request(
            self.http_port,
            method,
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .unwrap_or_else(|| panic!("{method} {path} does not answer"));
        (
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// CPU seconds (user + system) the process has used so far, from `/proc/PID/stat`.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // the fields after the command name (in parentheses): state is field 3, so field N is
        // at N - 3; utime and stime are fields 14 and 15, in clock ticks (100 per second)
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| {
            rest.get(n - 3)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field(14) + field(15)) as f64 / 100.0
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Onair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- onair log ---\n{}", self.log_text());
        }
    }
}

/// ffmpeg publishing a solid colour with a 440 Hz tone, as OBS would (H.264 + AAC, 1 s GOP).
pub struct Publisher {
    child: Child,
}

impl Publisher {
    pub fn start(url: &str, color: &str) -> Publisher {
        Self::start_args(url, color, true)
    }

    pub fn start_args(url: &str, color: &str, audio: bool) -> Publisher {
        Self::start_codec(url, color, audio, "aac")
    }

    /// Like [`Self::start_args`] with another audio codec (an ffmpeg encoder name).
    pub fn start_codec(url: &str, color: &str, audio: bool, acodec: &str) -> Publisher {
        Self::start_lavfi(
            url,
            &format!("color=c={color}:s=640x360:r=30"),
            audio,
            acodec,
        )
    }

    /// Publishes the lavfi video source `video` (e.g. `testsrc2=s=640x360:r=30`, a moving
    /// picture) with the tone.
    pub fn start_video(url: &str, video: &str) -> Publisher {
        Self::start_lavfi(url, video, true, "aac")
    }

    /// Publishes the lavfi sources `video` and `audio` (AAC).
    pub fn start_av(url: &str, video: &str, audio: &str) -> Publisher {
        Self::start_sources(url, video, Some(audio), "aac")
    }

    fn start_lavfi(url: &str, video: &str, audio: bool, acodec: &str) -> Publisher {
        let tone = audio.then_some("sine=f=440:sample_rate=48000");
        Self::start_sources(url, video, tone, acodec)
    }

    fn start_sources(url: &str, video: &str, audio: Option<&str>, acodec: &str) -> Publisher {
        let mut cmd = Command::new("ffmpeg");
        cmd.args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(video);
        if let Some(audio) = audio {
            cmd.args(["-f", "lavfi", "-i", audio]);
        }
        cmd.args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
        ]);
        if audio.is_some() {
            cmd.args(["-c:a", acodec, "-b:a", "96k"]);
        }
        cmd.args(["-f", "flv"]).arg(url);
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg is installed");
        Publisher { child }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGKILL: the TCP connection closes without an unpublish.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the connection stays open, silent.
    pub fn stop(&self) {
        self.signal("-STOP");
    }

    pub fn cont(&self) {
        self.signal("-CONT");
    }

    /// Waits for ffmpeg to exit by itself: `Some(success)`, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<bool> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st.success());
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.cont();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One decoded video frame seen by the viewer.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub at: Instant,
    pub pts: f64,
    /// Mean Y, U, V of the frame.
    pub yuv: (u32, u32, u32),
}

impl Frame {
    pub fn is_red(&self) -> bool {
        self.yuv.2 > 200 && self.yuv.1 < 120
    }
    /// Green (U≈91, V≈81), also when letterboxed with black bars.
    pub fn is_green(&self) -> bool {
        self.yuv.1 < 115 && self.yuv.2 < 110
    }
    pub fn is_blue(&self) -> bool {
        self.yuv.1 > 200 && self.yuv.2 < 140
    }
}

/// ffmpeg reading a stream and logging every frame (video: mean colour; audio: pts).
pub struct Viewer {
    child: Child,
    pub video: Arc<Mutex<Vec<Frame>>>,
    pub audio: Arc<Mutex<Vec<(Instant, f64)>>>,
}

impl Viewer {
    pub fn start(url: &str) -> Viewer {
        let mut child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostats",
                "-loglevel",
                "info",
                "-fflags",
                "nobuffer",
                "-rw_timeout",
                "15000000",
                "-i",
            ])
            .arg(url)
            .args([
                "-filter_complex",
                "[0:v]scale=16:16,showinfo[v];[0:a]ashowinfo[a]",
                "-map",
                "[v]",
                "-map",
                "[a]",
                "-f",
                "null",
                "-",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg is installed");
        let video: Arc<Mutex<Vec<Frame>>> = Arc::default();
        let audio: Arc<Mutex<Vec<(Instant, f64)>>> = Arc::default();
        let stderr = child.stderr.take().expect("piped");
        let (v, a) = (video.clone(), audio.clone());
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let now = Instant::now();
                let pts = line
                    .split("pts_time:")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|p| p.parse::<f64>().ok());
                let Some(pts) = pts else { continue };
                if line.contains("Parsed_showinfo") {
                    let mean = line.split("mean:[").nth(1).and_then(|r| {
                        let nums: Vec<u32> = r
                            .split(']')
                            .next()?
                            .split_whitespace()
                            .filter_map(|n| n.parse().ok())
                            .collect();
                        (nums.len() >= 3).then(|| (nums[0], nums[1], nums[2]))
                    });
                    if let Some(yuv) = mean {
                        v.lock().expect("lock").push(Frame { at: now, pts, yuv });
                    }
                } else if line.contains("Parsed_ashowinfo") {
                    a.lock().expect("lock").push((now, pts));
                }
            }
        });
        Viewer {
            child,
            video,
            audio,
        }
    }

    pub fn frames(&self) -> Vec<Frame> {
        self.video.lock().expect("lock").clone()
    }

    /// Waits for a frame arriving after `since` that satisfies `want`.
    pub fn wait_for(
        &self,
        since: Instant,
        timeout: Duration,
        want: impl Fn(&Frame) -> bool,
    ) -> bool {
        wait_until(timeout, || {
            self.video
                .lock()
                .expect("lock")
                .iter()
                .rev()
                .take_while(|f| f.at >= since)
                .any(&want)
        })
    }

    /// Largest video PTS step in ms, and the number of steps that went backwards.
    pub fn video_pts_gaps(&self) -> (f64, usize) {
        gaps(self.frames().iter().map(|f| f.pts))
    }

    pub fn audio_pts_gaps(&self) -> (f64, usize) {
        gaps(self.audio.lock().expect("lock").iter().map(|a| a.1))
    }

    /// Largest wait between two video frames arriving, in ms.
    pub fn max_arrival_gap_ms(&self) -> f64 {
        self.max_arrival_gap_ms_from(0)
    }

    /// Largest wait between two video frames arriving from frame `first` on, in ms.
    pub fn max_arrival_gap_ms_from(&self, first: usize) -> f64 {
        let f = self.frames();
        f.get(first..)
            .unwrap_or_default()
            .windows(2)
            .map(|w| (w[1].at - w[0].at).as_secs_f64() * 1000.0)
            .fold(0.0, f64::max)
    }
}

fn gaps(pts: impl Iterator<Item = f64>) -> (f64, usize) {
    let v: Vec<f64> = pts.collect();
    let steps: Vec<f64> = v.windows(2).map(|w| w[1] - w[0]).collect();
    let max = steps.iter().copied().fold(0.0, f64::max) * 1000.0;
    (max, steps.iter().filter(|d| **d <= 0.0).count())
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs ffprobe on `url` for about `seconds`, returning its JSON.
pub fn ffprobe_json(url: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(url)
        .output()
        .expect("ffprobe is installed");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ffprobe output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Makes a media file with ffmpeg from lavfi inputs.
pub fn make_media(path: &Path, args: &[&str]) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(path)
        .status()
        .expect("ffmpeg");
    assert!(st.success(), "making {}", path.display());
}

/// A TCP connection to 127.0.0.1:`port` from the local address `ip`.
pub fn connect_from(ip: &str, port: u16) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local: std::net::SocketAddr = format!("{ip}:0")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(local)?;
        socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await?
            .into_std()
    })?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// A publisher written with rml_rtmp's client session: handshake, `connect`, `publish`, then
/// whatever bytes a test wants to send (malformed chunks included).
pub struct RawPublisher {
    pub stream: TcpStream,
}

impl RawPublisher {
    /// Connects to `rtmp://127.0.0.1:port/app` and publishes `key`. Errors: the refusal or the
    /// I/O error, as text.
    pub fn publish(port: u16, app: &str, key: &str) -> Result<RawPublisher, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        Self::publish_on(stream, app, key)
    }

    /// Like [`Self::publish`], from the local address `ip` (any 127.x.y.z works on Linux).
    pub fn publish_from(ip: &str, port: u16, app: &str, key: &str) -> Result<RawPublisher, String> {
        let stream = connect_from(ip, port).map_err(|e| e.to_string())?;
        Self::publish_on(stream, app, key)
    }

    /// Runs the client side of the RTMP handshake on `stream`. Returns the bytes the server sent
    /// after it.
    pub fn handshake(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
        use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
        let e = |e: &dyn std::fmt::Debug| format!("{e:?}");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|x| e(&x))?;
        let mut hs = Handshake::new(PeerType::Client);
        let p0p1 = hs.generate_outbound_p0_and_p1().map_err(|x| e(&x))?;
        stream.write_all(&p0p1).map_err(|x| e(&x))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buf).map_err(|x| e(&x))?;
            if n == 0 {
                return Err("closed during the handshake".into());
            }
            match hs.process_bytes(&buf[..n]).map_err(|x| e(&x))? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    stream.write_all(&response_bytes).map_err(|x| e(&x))?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    stream.write_all(&response_bytes).map_err(|x| e(&x))?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    /// One RTMP message as chunks: a SetChunkSize of 128 KiB (so the message goes as one chunk),
    /// then the message (`type_id`, on chunk stream 3, message stream 1). `payload` ≤ 128 KiB.
    pub fn message(type_id: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 2, 0, 0];
        let len = payload.len() as u32;
        b.extend_from_slice(&[
            0x03,
            0,
            0,
            0,
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
        ]);
        b.extend_from_slice(&[type_id, 1, 0, 0, 0]);
        b.extend_from_slice(payload);
        b
    }

    /// An AMF0 payload: the string `name` (and `second` if given), a number, then `levels`
    /// objects each holding the next under the key "a", never closed (4 bytes a level): what
    /// a recursive AMF0 reader descends into before it notices the end.
    pub fn deep_amf0(name: &str, second: Option<&str>, levels: usize) -> Vec<u8> {
        let mut b = Vec::new();
        for s in std::iter::once(name).chain(second) {
            b.push(0x02);
            b.extend_from_slice(&(s.len() as u16).to_be_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        b.extend_from_slice(&[0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
        for _ in 0..levels {
            b.extend_from_slice(&[0x03, 0, 1, b'a']);
        }
        b
    }

    /// Reads until the server closes the connection; `false` if it stays open past `timeout`.
    pub fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
        let _ = stream.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 4096];
        let since = Instant::now();
        while since.elapsed() < timeout {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
        false
    }

    fn publish_on(stream: TcpStream, app: &str, key: &str) -> Result<RawPublisher, String> {
        use rml_rtmp::sessions::{
            ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
            PublishRequestType,
        };
        let e = |e: &dyn std::fmt::Debug| format!("{e:?}");
        let mut stream = stream;
        let leftover = Self::handshake(&mut stream)?;
        let mut buf = vec![0u8; 64 * 1024];
        let (mut session, initial) =
            ClientSession::new(ClientSessionConfig::new()).map_err(|x| e(&x))?;
        let send = |stream: &mut TcpStream, r: ClientSessionResult| -> Result<(), String> {
            if let ClientSessionResult::OutboundResponse(p) = r {
                stream.write_all(&p.bytes).map_err(|x| e(&x))?;
            }
            Ok(())
        };
        for r in initial {
            send(&mut stream, r)?;
        }
        let r = session
            .request_connection(app.to_string())
            .map_err(|x| e(&x))?;
        send(&mut stream, r)?;
        let mut pending = leftover;
        let mut wait_for = |stream: &mut TcpStream,
                            session: &mut ClientSession,
                            want: &dyn Fn(&ClientSessionEvent) -> bool|
         -> Result<(), String> {
            loop {
                if !pending.is_empty() {
                    let results = session.handle_input(&pending).map_err(|x| e(&x))?;
                    pending.clear();
                    let mut done = false;
                    for r in results {
                        match r {
                            ClientSessionResult::RaisedEvent(ev) if want(&ev) => done = true,
                            ClientSessionResult::RaisedEvent(ev) => {
                                if format!("{ev:?}").contains("Rejected") {
                                    return Err(format!("{ev:?}"));
                                }
                            }
                            other => send(stream, other)?,
                        }
                    }
                    if done {
                        return Ok(());
                    }
                }
                let n = stream.read(&mut buf).map_err(|x| e(&x))?;
                if n == 0 {
                    return Err("closed by the server".into());
                }
                pending.extend_from_slice(&buf[..n]);
            }
        };
        wait_for(&mut stream, &mut session, &|ev| {
            matches!(ev, ClientSessionEvent::ConnectionRequestAccepted)
        })?;
        let r = session
            .request_publishing(key.to_string(), PublishRequestType::Live)
            .map_err(|x| e(&x))?;
        send(&mut stream, r)?;
        wait_for(&mut stream, &mut session, &|ev| {
            matches!(ev, ClientSessionEvent::PublishRequestAccepted)
        })?;
        Ok(RawPublisher { stream })
    }

    /// Chunks that would make rml_rtmp 0.8's `ChunkDeserializer::get_message_data` compute
    /// `message_length - payload_so_far` with the payload longer than the new length (a panic on
    /// overflow in debug builds, "capacity overflow" in release): a chunk size of 4096, a 5000-byte
    /// message's first 4096 bytes, then a type-1 header on the same chunk stream announcing 10
    /// bytes, then enough bytes for either build to reach the bad arithmetic.
    pub fn parser_crash_bytes() -> Vec<u8> {
        let mut b = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]; // set chunk size 4096
        b.extend_from_slice(&[20, 0, 0, 0, 0x00, 0x13, 0x88, 9, 1, 0, 0, 0]); // csid 20, 5000 bytes, video
        b.extend(std::iter::repeat_n(0x27u8, 4096));
        b.extend_from_slice(&[0x40 | 20, 0, 0, 0, 0, 0, 10, 9]); // type 1: 10 bytes
        b.extend(std::iter::repeat_n(0u8, 8192));
        b
    }
}

/// One decoded RGB24 frame of `url` (waits for a keyframe).
pub fn grab_rgb(url: &str, w: usize, h: usize) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "10000000",
            "-i",
            url,
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    assert_eq!(
        out.stdout.len(),
        w * h * 3,
        "grab failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
