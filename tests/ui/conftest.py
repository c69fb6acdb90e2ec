"""Real processes for the control room's browser tests, as tests/support/mod.rs starts them:
nginx-rtmp as the platform, ffmpeg as OBS and as the platform's viewer, the onair binary under
test with a private config and an admin user. Every process is killed at teardown."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ONAIR_BIN_PATH = os.environ.get("TEST_ONAIR_BIN", str(REPO / "target" / "debug" / "onair"))
SCREENSHOTS = Path(os.environ.get("TEST_SCREENSHOTS", REPO / "target" / "ui-screenshots"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]

ADMIN = "admin"
PASSWORD = "correct horse battery"
TOKEN = "test-admin-token-0123456789"  # http.admin_token, as tests/support sets it
PREVIEW_KEY = "test-preview-key-0123"
STREAM_KEY = "test-key-123"
WIDTH, HEIGHT = 640, 360


def wait_until(timeout, fn, step=0.1):
    """Calls fn until it returns something truthy (returned) or timeout seconds pass (None)."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= end:
            return None
        time.sleep(step)


_next_port = [0]


def free_port():
    """A free loopback port in 20000–32000, below Linux's ephemeral range (see tests/support)."""
    if not _next_port[0]:
        _next_port[0] = 20000 + (os.getpid() % 120) * 100
    while True:
        p = 20000 + (_next_port[0] - 20000) % 12000
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Processes:
    """Every child process a test starts; all killed at teardown."""

    def __init__(self):
        self.children = []

    def spawn(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.children.append(p)
        return p

    def kill_all(self):
        for p in reversed(self.children):
            if p.poll() is None:
                try:
                    os.kill(p.pid, 18)  # SIGCONT first: a stopped child cannot die
                except OSError:
                    pass
                p.kill()
            p.wait(timeout=10)
            for s in (p.stdout, p.stderr, p.stdin):
                if s:
                    s.close()
        self.children.clear()


class Nginx:
    """nginx with the RTMP module on free loopback ports, apps `app` and `app2`, /stat on HTTP."""

    def __init__(self, procs, root):
        self.dir = Path(root) / "nginx"
        (self.dir / "logs").mkdir(parents=True)
        self.rtmp_port, self.http_port = free_port(), free_port()
        module = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
        assert Path(module).exists(), "libnginx-mod-rtmp is installed (tools/setup-debian.sh)"
        d = self.dir
        conf = f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
load_module {module};
events {{ worker_connections 128; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.rtmp_port};
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
    listen 127.0.0.1:{self.http_port};
    location /stat {{ rtmp_stat all; }}
  }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        procs.spawn(["nginx", "-p", str(d), "-c", str(d / "nginx.conf")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(10, lambda: port_open(self.rtmp_port)), "nginx did not listen"

    def url(self, app, stream):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{stream}"

    def publishers(self, app):
        """Publishing clients of `app` from /stat: [{id, time_ms, stream}]."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/stat", timeout=5) as r:
                root = ET.fromstring(r.read())
        except (OSError, ET.ParseError):
            return []
        out = []
        for a in root.iter("application"):
            if a.findtext("name") != app:
                continue
            for stream in a.iter("stream"):
                for c in stream.iter("client"):
                    if c.find("publishing") is not None:
                        out.append({"id": c.findtext("id"), "time_ms": int(c.findtext("time") or 0),
                                    "stream": stream.findtext("name")})
        return out


class Onair:
    """The onair binary under test, its config in a temp dir (as tests/support writes it);
    `extra_config` is TOML appended to it (tables such as `[profile.NAME]`)."""

    def __init__(self, procs, root, destination_url, extra_config="", first_start=False):
        """`first_start`: as a newcomer runs it, with no admin token and no user (its stdout,
        where the setup link goes, is kept in `self.stdout`)."""
        self.dir = Path(root)
        self.rtmp_port, self.http_port = free_port(), free_port()
        self.data_dir = self.dir / "onair-data"
        self.scripts_dir = self.dir / "scripts"  # a copy of the repo's: tests add files to it
        shutil.copytree(REPO / "scripts", self.scripts_dir)
        self.config = self.dir / "onair.toml"
        self.config.write_text(
            f'data_dir = "{self.data_dir}"\n'
            f'[ingest]\nrtmp_listen = "127.0.0.1:{self.rtmp_port}"\n'
            f'keys = ["{STREAM_KEY}", "test-key-456"]\n\n'
            f'[http]\nlisten = "127.0.0.1:{self.http_port}"\n'
            + ('' if first_start else f'admin_token = "{TOKEN}"\n') +
            f'preview_key = "{PREVIEW_KEY}"\n'
            f'[scripts]\ndir = "{self.scripts_dir}"\nstore = "store.json"\n'
            f'[output]\nwidth = {WIDTH}\nheight = {HEIGHT}\nvideo_bitrate_kbps = 800\n'
            f'[media]\nmax_upload_mib = 2\n'
            f'[[destination]]\nname = "main"\nurl = "{destination_url}"\n'
            + extra_config
        )
        if not first_start:
            add = subprocess.run([ONAIR_BIN_PATH, "user", "add", ADMIN, "-c", str(self.config)],
                                 input=PASSWORD + "\n", text=True, capture_output=True,
                                 cwd=self.dir, timeout=60)
            assert add.returncode == 0, f"onair user add failed: {add.stdout}{add.stderr}"
        self.log = self.dir / "onair.log"
        self.stdout = self.dir / "onair.stdout"
        env = dict(os.environ, RUST_LOG="info")
        with open(self.log, "wb") as log, open(self.stdout, "wb") as out:
            self.proc = procs.spawn([ONAIR_BIN_PATH, "run", "-c", str(self.config)], cwd=self.dir, env=env,
                                    stdout=out, stderr=log)
        assert wait_until(60, lambda: "rtmp ingest ready" in self.log_text(), 0.2), \
            f"onair did not start:\n{self.log_text()[-4000:]}"
        self.base = f"http://127.0.0.1:{self.http_port}"

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def publish_url(self, key=STREAM_KEY):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    def call(self, method, path, body=None):
        """An API call with the admin bearer token: (status, JSON or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, None

    def channel(self, cid="default"):
        status, v = self.call("GET", f"/api/channels/{cid}")
        assert status == 200, f"GET /api/channels/{cid}: {status} {v}"
        return v

    def media_files(self):
        d = self.data_dir / "media"
        return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


def start_publisher(procs, url):
    """ffmpeg as OBS: testsrc + a 440 Hz tone, H.264 + AAC, 1 s GOP, FLV over RTMP."""
    return procs.spawn(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", f"testsrc=s={WIDTH}x{HEIGHT}:r=30",
         "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-f", "flv", url],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def grab_rgb(url, w=WIDTH, h=HEIGHT):
    """One decoded RGB24 frame of `url` (waits for a keyframe), or None."""
    try:
        out = subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-rw_timeout", "10000000", "-i", url,
             "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None
    return out.stdout if len(out.stdout) == w * h * 3 else None


def mean_rgb(frame):
    """Mean (R, G, B) of an RGB24 frame."""
    n = len(frame) // 3
    return tuple(sum(frame[i::3]) / n for i in range(3))


def platform_colour(nginx, stream="main", app="app"):
    """Mean colour of what the platform (nginx) receives now."""
    f = grab_rgb(nginx.url(app, stream))
    return mean_rgb(f) if f else None


class Stack:
    """nginx as the platform, onair publishing `default` to it as destination `main`, ffmpeg
    publishing testsrc to onair. `extra_config`: TOML appended to onair's config."""

    def __init__(self, root, extra_config="", first_start=False):
        self.procs = Processes()
        try:
            self.nginx = Nginx(self.procs, root)
            self.onair = Onair(self.procs, root, self.nginx.url("app", "main"), extra_config,
                               first_start)
            self.publisher = start_publisher(self.procs, self.onair.publish_url())
            # no token on a first start: the platform receiving is the sign it runs
            ok = wait_until(30, lambda: (first_start or self.onair.channel().get("on_air") == "live")
                            and self.nginx.publishers("app"), 0.25)
            assert ok, f"not live on the platform:\n{self.onair.log_text()[-4000:]}"
        except BaseException:
            self.procs.kill_all()
            raise

    @property
    def base(self):
        return self.onair.base


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "onair_config(toml): TOML appended to the config of the test's onair (stack)")
    config.addinivalue_line(
        "markers", "onair_first_start: the stack's onair has no admin token and no user")


@pytest.fixture
def stack(request):
    """The Stack; a test marked `@pytest.mark.onair_config(TOML)` gets TOML appended to onair's
    config."""
    marker = request.node.get_closest_marker("onair_config")
    root = tempfile.mkdtemp(prefix="onair-ui-")
    first = request.node.get_closest_marker("onair_first_start") is not None
    s = Stack(root, marker.args[0] if marker else "", first)
    yield s
    s.procs.kill_all()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def browser_type_launch_args():
    return {"executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture(scope="session")
def browser_context_args():
    return {"viewport": {"width": 1280, "height": 720}}


@pytest.fixture(autouse=True)
def screenshot(request, page, stack):
    """Every test leaves a screenshot named after it in $TEST_SCREENSHOTS (taken before the
    stack stops, so it shows the page as the test left it). A test that works in a page of its
    own context (a phone) names it with `shown_page`; that context is closed here."""
    yield
    target = getattr(request.node, "shown_page", None) or page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        target.screenshot(path=str(SCREENSHOTS / f"{request.node.originalname}.png"), full_page=True)
    except Exception as e:  # a crashed page must not hide the test's own failure
        print(f"screenshot failed: {e}")
    if target is not page:
        target.context.close()


def shown_page(request, page):
    """Makes `page` (of another context) the one the test's screenshot shows; returns it."""
    request.node.shown_page = page
    return page


def login(page, base, password=PASSWORD, expect_ok=True):
    """Fills and sends the login form; returns the /api/login response status."""
    page.goto(base + "/")
    page.get_by_test_id("login-form").wait_for()
    return submit_login(page, password, expect_ok)


def submit_login(page, password, expect_ok=False):
    page.get_by_test_id("login-name").fill(ADMIN)
    page.get_by_test_id("login-password").fill(password)
    with page.expect_response(lambda r: r.url.endswith("/api/login")) as resp:
        page.get_by_test_id("login-submit").click()
    status = resp.value.status
    if expect_ok:
        assert status == 200, f"login refused: {status} {resp.value.text()}"
        page.get_by_test_id("channel-default").wait_for(timeout=10000)
    return status


def session_cookie(page):
    return [c for c in page.context.cookies() if c["name"] == "onair_session"]


def wait_text(page, testid, text, timeout):
    """Waits until the element `data-testid=testid` reads exactly `text` (timeout in ms).
    A function, not a string: the page's CSP forbids eval."""
    page.wait_for_function(
        "([id, want]) => { const e = document.querySelector(`[data-testid=\"${id}\"]`);"
        " return e !== null && e.textContent.trim() === want; }",
        arg=[testid, text], timeout=timeout)


def wait_value(page, testid, value, timeout):
    """Waits until the element `data-testid=testid` has .value === value (timeout in ms)."""
    page.wait_for_function(
        "([id, want]) => { const e = document.querySelector(`[data-testid=\"${id}\"]`);"
        " return e !== null && e.value === want; }",
        arg=[testid, value], timeout=timeout)


def wait_playing(page, cid, timeout=30000):
    """Waits until channel `cid`'s preview <video> has a frame and its clock runs."""
    page.wait_for_function(
        "([id]) => { const v = document.querySelector(`[data-testid=\"preview-${id}\"]`);"
        " return v !== null && v.readyState >= 2 && v.currentTime > 0; }",
        arg=[cid], timeout=timeout)


def create_channel(onair, body):
    """POST /api/channels with the bearer token; returns the answer (a ChannelView + stream_keys)."""
    status, v = onair.call("POST", "/api/channels", body)
    assert status == 201, f"POST /api/channels {body}: {status} {v}"
    return v
