//! onair's configuration: `onair.toml` layered with `ONAIR_…` environment variables.
//!
//! Environment variables use `__` between table and key, so `fallback.stall_timeout_ms` is
//! `ONAIR_FALLBACK__STALL_TIMEOUT_MS=500`, and `ingest.keys` is a comma-separated list
//! (`ONAIR_INGEST__KEYS=key-a,key-b`). Every validation error names the key it is about.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The smallest stall timeout we accept, in milliseconds. Below it a healthy publisher's normal
/// jitter (network, encoder, keyframe bursts) would be taken for a stall.
pub const MIN_STALL_TIMEOUT_MS: u64 = 300;

/// x264 tunes, as x264 names them. `zerolatency` (the default) adds no encoder delay; the others
/// add x264's lookahead (about one second at 30 fps) to the stream's latency.
pub const X264_TUNES: &[&str] = &[
    "zerolatency",
    "film",
    "animation",
    "grain",
    "stillimage",
    "psnr",
    "ssim",
    "fastdecode",
];

/// x264 presets, fastest first, as x264 names them.
pub const X264_PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

/// The whole configuration. Every section has a default, so an empty file is a valid config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder for what onair keeps between runs: the database (`onair.db`, SQLite), the
    /// generated stream key (`stream-key`) and preview key (`preview-key`). Default
    /// `onair-data` (working directory).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub fallback: FallbackConfig,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub scripts: ScriptsConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub recording: RecordingConfig,
    #[serde(default)]
    pub accounts: AccountsConfig,
    /// Platforms to stream to, as `[[destination]]` tables (the channel `default`'s; with
    /// `[[channel]]` tables each channel lists its own).
    #[serde(default, rename = "destination")]
    pub destinations: Vec<DestinationConfig>,
    /// `[[channel]]` tables. None: the top-level tables are the one channel `default`.
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    /// `[profile.NAME]` tables: encodes a destination can ask for with `profile = "NAME"`, in
    /// addition to the built-in ones ([`builtin_profiles`]); a table with a built-in's name
    /// replaces it. Every field a table leaves out is [`OutputConfig`]'s default.
    #[serde(default, rename = "profile")]
    pub profiles: std::collections::BTreeMap<String, OutputConfig>,
}

/// One `[[channel]]`: an independent stream with its own stream keys, fallback, encode and
/// destinations. A table it does not set (`fallback`, `output`) is the top-level one, whole.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// 1 to 64 lowercase letters, digits, '-' or '_'; in URLs (`/api/channels/ID`) and events.
    pub id: String,
    /// Shown on the slate and in the API. Default: the id.
    pub name: Option<String>,
    /// The stream keys that publish to this channel. Empty: one is generated on first start
    /// into `data_dir/stream-key-ID`.
    #[serde(default)]
    pub keys: Vec<String>,
    pub fallback: Option<FallbackConfig>,
    pub output: Option<OutputConfig>,
    #[serde(default, rename = "destination")]
    pub destinations: Vec<DestinationConfig>,
}

/// A channel as it runs: from the config (resolved against the top-level tables) or created at
/// run time (then kept, as JSON, in the database).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ChannelSpec {
    pub id: String,
    pub name: String,
    pub keys: Vec<String>,
    pub fallback: FallbackConfig,
    pub output: OutputConfig,
    /// The destinations defined with it (in the config); run-time ones live in the database.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
}

/// Why `id` cannot name a channel, or `None` when it can.
pub fn channel_id_error(id: &str) -> Option<String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    (!ok).then(|| format!("{id:?} must be 1 to 64 lowercase letters, digits, '-' or '_'"))
}

/// Why `key` cannot be a stream key, or `None` when it can.
/// Stream keys shorter than this are accepted with a warning: onair's own are 32 hex digits
/// after a prefix (128 bits); a short key can be guessed by anyone who can reach the RTMP port.
pub const STREAM_KEY_ADVISED_LEN: usize = 16;

/// The warning for a short stream key (`at`: where it is set, e.g. `channel court-1`).
pub fn short_stream_key_warning(at: &str, key: &str) -> Option<String> {
    let n = key.chars().count();
    (n < STREAM_KEY_ADVISED_LEN).then(|| {
        format!(
            "{at}: a stream key of {n} characters is easy to guess; use {STREAM_KEY_ADVISED_LEN} or more (with no keys set onair generates one of 37)"
        )
    })
}

pub fn stream_key_error(key: &str) -> Option<String> {
    (key.is_empty() || key.len() > 256 || key.contains('/') || key.chars().any(char::is_whitespace))
        .then(|| "a stream key must be 1 to 256 characters, without '/' or spaces".to_string())
}

/// The one channel of a config without `[[channel]]` tables.
pub const DEFAULT_CHANNEL: &str = "default";

fn default_data_dir() -> PathBuf {
    PathBuf::from("onair-data")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            ingest: IngestConfig::default(),
            fallback: FallbackConfig::default(),
            output: OutputConfig::default(),
            http: HttpConfig::default(),
            scripts: ScriptsConfig::default(),
            plugins: PluginsConfig::default(),
            media: MediaConfig::default(),
            recording: RecordingConfig::default(),
            accounts: AccountsConfig::default(),
            destinations: Vec::new(),
            channels: Vec::new(),
            profiles: Default::default(),
        }
    }
}

/// Why `name` cannot name a profile, or `None` when it can.
pub fn profile_name_error(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (!ok).then(|| format!("{name:?} must be 1 to 64 letters, digits, '-' or '_'"))
}

impl Config {
    /// The profiles destinations can name: [`builtin_profiles`] with `[profile.NAME]` over them.
    pub fn profiles(&self) -> Profiles {
        let mut all: Profiles = builtin_profiles()
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect();
        all.extend(self.profiles.clone());
        all
    }

    /// The channels this config defines, resolved: the `[[channel]]` tables, or else the
    /// top-level tables as the one channel `default`.
    pub fn channel_specs(&self) -> Vec<ChannelSpec> {
        if self.channels.is_empty() {
            return vec![ChannelSpec {
                id: DEFAULT_CHANNEL.into(),
                name: self.fallback.channel_name.clone(),
                keys: self.ingest.keys.clone(),
                fallback: self.fallback.clone(),
                output: self.output.clone(),
                destinations: self.destinations.clone(),
            }];
        }
        self.channels
            .iter()
            .map(|c| {
                let name = c.name.clone().unwrap_or_else(|| c.id.clone());
                let fallback = c.fallback.clone().unwrap_or_else(|| FallbackConfig {
                    channel_name: name.clone(),
                    ..self.fallback.clone()
                });
                ChannelSpec {
                    id: c.id.clone(),
                    name,
                    keys: c.keys.clone(),
                    fallback,
                    output: c.output.clone().unwrap_or_else(|| self.output.clone()),
                    destinations: c.destinations.clone(),
                }
            })
            .collect()
    }
}

/// Checks `[fallback]` (or a channel's); `key` is its place in the file, e.g. `channel[0].fallback`.
pub fn fallback_error(key: &str, f: &FallbackConfig) -> Option<(String, String)> {
    (f.stall_timeout_ms < MIN_STALL_TIMEOUT_MS).then(|| {
        (
            format!("{key}.stall_timeout_ms"),
            format!(
                "{} is below the minimum {MIN_STALL_TIMEOUT_MS}",
                f.stall_timeout_ms
            ),
        )
    })
}

/// Checks `[output]` (or a channel's); `key` is its place in the file, e.g. `channel[0].output`.
pub fn output_error(key: &str, o: &OutputConfig) -> Option<(String, String)> {
    for (field, v, lo, hi) in [
        ("width", o.width, 16, 3840),
        ("height", o.height, 16, 2160),
        ("fps", o.fps, 1, 120),
        ("video_bitrate_kbps", o.video_bitrate_kbps, 100, 50_000),
        ("audio_bitrate_kbps", o.audio_bitrate_kbps, 32, 512),
        ("keyframe_interval_s", o.keyframe_interval_s, 1, 10),
        ("x264_threads", o.x264_threads, 0, 16),
    ] {
        if v < lo || v > hi {
            return Some((
                format!("{key}.{field}"),
                format!("{v} is outside {lo}..={hi}"),
            ));
        }
    }
    for (field, v) in [("width", o.width), ("height", o.height)] {
        if v % 2 != 0 {
            return Some((
                format!("{key}.{field}"),
                format!("{v} must be even for 4:2:0 video"),
            ));
        }
    }
    if !X264_TUNES.contains(&o.x264_tune.as_str()) {
        return Some((
            format!("{key}.x264_tune"),
            format!("{:?} is not one of {}", o.x264_tune, X264_TUNES.join(", ")),
        ));
    }
    if !X264_PRESETS.contains(&o.x264_preset.as_str()) {
        return Some((
            format!("{key}.x264_preset"),
            format!(
                "{:?} is not one of {}",
                o.x264_preset,
                X264_PRESETS.join(", ")
            ),
        ));
    }
    None
}

/// Checks a destination list; `key` is its place in the file, e.g. `channel[0].destination`.
fn destinations_error(
    key: &str,
    list: &[DestinationConfig],
    profiles: &Profiles,
) -> Option<(String, String)> {
    let mut names = std::collections::HashSet::new();
    for (i, d) in list.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if d.name.is_empty() || d.name == "preview" {
            return Some((
                format!("{key}.name"),
                format!("{:?} is empty or reserved", d.name),
            ));
        }
        if !names.insert(d.name.as_str()) {
            return Some((
                format!("{key}.name"),
                format!("{:?} is used by two destinations", d.name),
            ));
        }
        if let Err(e) = DestinationUrl::parse(&d.url) {
            return Some((format!("{key}.url"), e));
        }
        if let Some((field, e)) = d.options_error(profiles) {
            return Some((format!("{key}.{field}"), e));
        }
    }
    None
}

/// `[ingest]`: where publishers (OBS) connect.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// TCP address of the RTMP server. Default `0.0.0.0:1935`, RTMP's registered port.
    pub rtmp_listen: SocketAddr,
    /// The RTMP application publishers use: OBS's Server is `rtmp://HOST:PORT/<app>`. Default `live`.
    pub app: String,
    /// Accepted stream keys. Empty: onair generates one on first start, stores it in
    /// `data_dir/stream-key` and prints it with the OBS settings.
    pub keys: Vec<String>,
    /// Accept any stream key (only with `keys` empty). Refused unless `rtmp_listen` is a
    /// loopback address. Default false.
    pub allow_any_key: bool,
    /// Milliseconds a connection has from TCP accept to `publish` (handshake and `connect`
    /// included) before it is closed. Default 5000 (OBS needs a few round trips: well under 1 s
    /// on a working link; a stranger holds a connection slot no longer than this).
    pub connect_timeout_ms: u64,
    /// RTMP connections open at once, publishing or not; more are refused at accept. Default 64.
    pub max_connections: u32,
    /// RTMP connections open at once from one client address (an IPv6 client's /64). Default 8
    /// (OBS uses 1; a reconnecting OBS briefly 2).
    pub max_connections_per_ip: u32,
    /// Largest audio or video RTMP message a publisher may send once its publish is accepted,
    /// in KiB (a video frame is one message: a 1080p keyframe at 10 Mbit/s is well under
    /// 2 MiB). Default 8192. Before publish every message is capped at 16 KiB, and command
    /// and data messages at 64 KiB always.
    pub max_message_kib: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            rtmp_listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            app: "live".into(),
            keys: Vec::new(),
            allow_any_key: false,
            connect_timeout_ms: 5_000,
            max_connections: 64,
            max_connections_per_ip: 8,
            max_message_kib: 8192,
        }
    }
}

/// `[fallback]`: what the output shows while no live feed is on air.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackConfig {
    /// An image (PNG, JPEG) or a video file (looped, with its audio). Absent → the built-in slate.
    /// A relative path is relative to the working directory.
    pub media: Option<PathBuf>,
    /// How long, in milliseconds, a publisher may send no media while its connection stays open
    /// before it counts as stalled. Minimum 300.
    pub stall_timeout_ms: u64,
    /// The slate's headline.
    pub slate_text: String,
    /// The channel name shown under the slate's headline.
    pub channel_name: String,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            media: None,
            stall_timeout_ms: 1000,
            slate_text: "We'll be right back".into(),
            channel_name: "onair".into(),
        }
    }
}

/// `[output]`: the one encode that every destination receives.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Output width in pixels (even). Default 1280.
    pub width: u32,
    /// Output height in pixels (even). Default 720.
    pub height: u32,
    /// Output frame rate in frames per second, constant. Default 30.
    pub fps: u32,
    /// Video bitrate in kbit/s, CBR. Default 3000 (inside Twitch's 6000 kbit/s ceiling for 720p30).
    pub video_bitrate_kbps: u32,
    /// AAC-LC audio bitrate in kbit/s. Default 160 (Twitch recommends up to 160).
    pub audio_bitrate_kbps: u32,
    /// Keyframe interval in seconds. Default 2 (Twitch and YouTube require 2 s).
    pub keyframe_interval_s: u32,
    /// x264 preset, one of [`X264_PRESETS`]. Default `veryfast`.
    pub x264_preset: String,
    /// x264 tune, one of [`X264_TUNES`]. Default `zerolatency`.
    pub x264_tune: String,
    /// x264 encoder threads, 0..=16. Default 0: one thread for the fast presets (`ultrafast`,
    /// `superfast`, `veryfast`) up to 1920x1080 at 30 fps (a single-threaded `veryfast` encode
    /// costs ~5 % less CPU than two slice threads and takes ~6 ms per 720p frame here, so it adds
    /// no noticeable latency), x264's own choice for anything heavier.
    pub x264_threads: u32,
    /// What the destinations without a profile (and the preview) receive: `encode` (default)
    /// the program encoded here, or `copy` the publisher's own H.264/AAC packets untouched, with a
    /// still fallback (the slate or an image) encoded once at this size and frame rate and
    /// spliced in on keyframes. In copy mode the publisher must send this `width`x`height` and
    /// 48 kHz AAC (OBS: Settings → Video → Output (Scaled) Resolution, Settings → Audio → Sample
    /// Rate); a publisher that does not is not put on air, and the status says why. Only for
    /// `[output]` and a channel's `output`, not for a `[profile.NAME]`.
    pub mode: OutputMode,
}

/// How a channel's own output is made: see [`OutputConfig::mode`].
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// Decoded, switched, overlaid and encoded here (x264, AAC).
    #[default]
    Encode,
    /// The publisher's own packets forwarded; a matched still fallback spliced in on keyframes.
    Copy,
}

impl OutputMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputMode::Encode => "encode",
            OutputMode::Copy => "copy",
        }
    }
}

/// Pixels per second up to which an encode (at a fast preset) or a decode runs on one thread
/// (1920x1080 at 30 fps): about 14 ms per frame for `veryfast` on one core here, half the
/// frame period.
pub const ONE_THREAD_PIXEL_RATE: u64 = 1920 * 1080 * 30;

/// The x264 presets fast enough for [`OutputConfig::encoder_threads`]'s one-thread rule.
const ONE_THREAD_PRESETS: [&str; 3] = ["ultrafast", "superfast", "veryfast"];

impl OutputConfig {
    /// The x264 `threads` value: [`Self::x264_threads`], or for 0, one thread for a fast preset
    /// up to [`ONE_THREAD_PIXEL_RATE`] and x264's automatic choice (0) otherwise.
    pub fn encoder_threads(&self) -> u32 {
        let pixel_rate = u64::from(self.width) * u64::from(self.height) * u64::from(self.fps);
        match self.x264_threads {
            0 if pixel_rate <= ONE_THREAD_PIXEL_RATE
                && ONE_THREAD_PRESETS.contains(&self.x264_preset.as_str()) =>
            {
                1
            }
            n => n,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
            video_bitrate_kbps: 3000,
            audio_bitrate_kbps: 160,
            keyframe_interval_s: 2,
            x264_preset: "veryfast".into(),
            x264_tune: "zerolatency".into(),
            x264_threads: 0,
            mode: OutputMode::Encode,
        }
    }
}

/// An encode at `width`x`height`, `fps`, `video_bitrate_kbps` video and `audio_bitrate_kbps`
/// audio, 2 s keyframes, `veryfast`, `zerolatency`.
fn profile(width: u32, height: u32, fps: u32, video: u32, audio: u32) -> OutputConfig {
    OutputConfig {
        width,
        height,
        fps,
        video_bitrate_kbps: video,
        audio_bitrate_kbps: audio,
        ..OutputConfig::default()
    }
}

/// The profiles every config has, named after the platform rule each follows. All use 2 s
/// keyframes (both platforms require 2 s) and CBR.
/// - Twitch, "Broadcasting Guidelines" (help.twitch.tv): 1080p60 6000 kbit/s (the ceiling for
///   non-partners), 720p60 4500, 720p30 3000; audio AAC up to 160 kbit/s.
/// - YouTube, "Choose live encoder settings, bitrates, and resolutions" (support.google.com,
///   the H.264 table, upper end of each range): 1080p60 9000 kbit/s, 1080p30 6000, 720p60 6000,
///   720p30 4000; audio AAC 128 kbit/s stereo.
pub fn builtin_profiles() -> Vec<(&'static str, OutputConfig)> {
    vec![
        ("twitch-1080p60", profile(1920, 1080, 60, 6000, 160)),
        ("twitch-720p60", profile(1280, 720, 60, 4500, 160)),
        ("twitch-720p30", profile(1280, 720, 30, 3000, 160)),
        ("youtube-1080p60", profile(1920, 1080, 60, 9000, 128)),
        ("youtube-1080p30", profile(1920, 1080, 30, 6000, 128)),
        ("youtube-720p60", profile(1280, 720, 60, 6000, 128)),
        ("youtube-720p30", profile(1280, 720, 30, 4000, 128)),
    ]
}

/// The profiles a destination can name: the built-in ones with the config's `[profile.NAME]`
/// tables over them, by name.
pub type Profiles = std::collections::BTreeMap<String, OutputConfig>;

/// `[http]`: the API and the preview.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// TCP address of the HTTP server. Default `127.0.0.1:8080` (local only).
    pub listen: SocketAddr,
    /// Serve the output as HTTP-FLV at `/preview.flv`. Default true.
    pub preview: bool,
    /// Bearer token for `/api/*` and script routes declared with `{auth=true}` (≥ 16
    /// characters), for scripts and curl; people log in to the control room instead (users made
    /// with `onair user add NAME`, or the first one in the browser through the one-time setup
    /// link onair prints at start while no user exists). With neither a token nor a user,
    /// everything answers 401 (unless [`Self::open_local`]).
    pub admin_token: Option<String>,
    /// A read-only bearer token for `GET /metrics` only (≥ 16 characters), for a Prometheus
    /// scraper, so it need not hold `admin_token`. Default none (/metrics takes the admin token
    /// or a login).
    pub metrics_token: Option<String>,
    /// With neither a token nor a user, answer requests made on this machine to a loopback
    /// `listen` without a login. Default false: a reverse proxy on the same machine
    /// (nginx's plain `proxy_pass http://127.0.0.1:8080;`) makes every outside request look
    /// local, and no header tells it apart. Only for a machine nothing else can reach.
    pub open_local: bool,
    /// How long a control-room login lasts, in hours. Default 12.
    pub session_ttl_hours: u32,
    /// Key for `/preview.flv?key=…` (≥ 16 characters; the admin bearer token works too).
    /// Unset: generated on first start into `data_dir/preview-key`.
    pub preview_key: Option<String>,
    /// Preview viewers at once; more are answered 503. Default 8.
    pub preview_max_viewers: u32,
    /// Largest request body, in KiB, on any route; a larger `Content-Length` is answered 413
    /// before authentication, routing or reading (script routes also stop reading a chunked
    /// body there). Default 1024.
    pub max_body_kib: u32,
    /// `GET /api/events` clients at once; more are answered 503. Default 32.
    pub max_sse_clients: u32,
    /// Reverse proxies in front of onair (addresses or CIDR ranges, e.g. `["127.0.0.1",
    /// "10.0.0.0/8"]`). A request from one of them is counted against the client address its
    /// `X-Forwarded-For` names (the rightmost entry that is not itself a trusted proxy) for
    /// the login and sign-up limits and their log lines; from anywhere else the header is
    /// ignored, so it cannot be forged. Default none: every request is its TCP peer.
    pub trusted_proxies: Vec<String>,
}

impl HttpConfig {
    /// [`Self::trusted_proxies`] parsed; an entry that does not parse is skipped (the config
    /// check refuses it first, naming it).
    pub fn proxies(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_proxy(p).ok())
            .collect()
    }
}

/// An address (`10.0.0.1`, `::1`) or a CIDR range (`10.0.0.0/8`).
fn parse_proxy(p: &str) -> Result<ipnet::IpNet, String> {
    p.parse::<ipnet::IpNet>()
        .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{p:?} is neither an IP address nor a CIDR range like 10.0.0.0/8"))
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            preview: true,
            admin_token: None,
            metrics_token: None,
            open_local: false,
            session_ttl_hours: 12,
            preview_key: None,
            preview_max_viewers: 8,
            max_body_kib: 1024,
            max_sse_clients: 32,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[media]`: the media gallery (`data_dir/media`), where uploaded fallback images and videos
/// live, and the folders run-time requests may take media from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Largest upload, in MiB; a larger one is refused with 413 and leaves no file. Default 1024.
    pub max_upload_mib: u64,
    /// Folders (with everything under them) that fallback media, overlay PNGs and fonts named at
    /// run time (API, Lua, plugins) may come from, besides the gallery, `scripts.dir` and the
    /// folders of the configured `fallback.media`. Relative to the working directory.
    /// Default `["media"]`. See [`crate::roots`].
    pub roots: Vec<PathBuf>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_mib: 1024,
            roots: vec![PathBuf::from("media")],
        }
    }
}

/// `[recording]`: where recordings added at run time may write.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Folders (with everything under them) where a recording added at run time (API, Lua,
    /// plugins) may write, besides `data_dir/recordings` and the folders of the `file://`
    /// destinations in this file. Relative to the working directory. Default none.
    /// See [`crate::roots`].
    pub roots: Vec<PathBuf>,
}

/// Why a `roots` list is wrong, as (key, message); `key` is the list's, e.g. `media.roots`.
pub fn roots_error(key: &str, roots: &[PathBuf]) -> Option<(String, String)> {
    for (i, r) in roots.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let problem = if r.as_os_str().is_empty() {
            Some("is empty: name a folder".to_string())
        } else if r.components().any(|c| c == std::path::Component::ParentDir) {
            Some(format!(
                "{}: '..' is not allowed: name the folder itself",
                r.display()
            ))
        } else if r.parent().is_none() {
            Some(format!(
                "{}: the whole file system cannot be a root: name a folder",
                r.display()
            ))
        } else if r.exists() && !r.is_dir() {
            Some(format!("{} is not a folder", r.display()))
        } else {
            None
        };
        if let Some(message) = problem {
            return Some((key, message));
        }
    }
    None
}

/// `[accounts]`: streamer accounts, each with its own stream key (see `/signup.html`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Whether anyone reaching the HTTP server may create a streamer account at
    /// `/signup.html`. Default false: only admins create them (`POST /api/streamers`).
    pub signup: bool,
    /// The channel a new account's stream key publishes to. Default `default` (the channel of
    /// a config without `[[channel]]` tables; with them, name one).
    pub channel: String,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            signup: false,
            channel: DEFAULT_CHANNEL.to_string(),
        }
    }
}

/// `[scripts]`: the Lua policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptsConfig {
    /// Folder of Lua scripts: every top-level `*.lua` is loaded in name order and reloaded on
    /// save; `failover.lua` holds the switching policy. Default `scripts`.
    pub dir: PathBuf,
    /// The JSON file behind `onair.store` in older onair, imported once into the database
    /// (`data_dir/onair.db`) and renamed `….json.imported`. Default `onair-store.json`.
    pub store: PathBuf,
    /// Memory each script may use, in MiB. Default 64.
    pub memory_limit_mib: u32,
    /// Wall time one handler call may run, in milliseconds. Default 100.
    pub time_limit_ms: u64,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("scripts"),
            store: PathBuf::from("onair-store.json"),
            memory_limit_mib: 64,
            time_limit_ms: 100,
        }
    }
}

/// `[plugins]`: WASM plugins (WIT package `onair:plugin@0.1.0`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder of `.wasm` components, watched: a new file loads, a changed one reloads, a
    /// deleted one unloads. Default `plugins` (a missing folder means no plugins).
    pub dir: PathBuf,
    /// Wall time per plugin call, in milliseconds. Default 100.
    pub deadline_ms: u64,
    /// Memory per plugin instance, in MiB. Default 64.
    pub memory_limit_mib: u32,
    /// Capabilities per plugin name (file name without `.wasm`): WASI's `env`, `network`,
    /// `dir:PATH`, and `destinations` (the `destination-add` action). Nothing is granted by
    /// default.
    pub grants: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("plugins"),
            deadline_ms: 100,
            memory_limit_mib: 64,
            grants: Default::default(),
        }
    }
}

/// One `[[destination]]`: a platform endpoint that receives the output.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// A short unique name, used in logs, events and the API (`twitch`, `youtube`).
    pub name: String,
    /// `rtmp://` or `rtmps://` URL with the stream key included, as the platform shows it,
    /// e.g. `rtmp://live.twitch.tv/app/live_123_abc`.
    pub url: String,
    /// Whether onair connects to it. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The encode it receives: a `[profile.NAME]` or a built-in profile (`twitch-720p60`, …).
    /// Default: the channel's `[output]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Recordings (`file://` URLs) only: minutes per file; a new file starts at the first
    /// keyframe after that. Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_minutes: Option<u32>,
    /// Recordings only: the most their files may take in total, in GiB (2^30 bytes); when a new
    /// file starts beyond it, the oldest files of this recording are deleted. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_gib: Option<f64>,
}

impl DestinationConfig {
    /// A destination at `url`, enabled, with the channel's encode and no recording options.
    pub fn new(name: &str, url: &str) -> DestinationConfig {
        DestinationConfig {
            name: name.into(),
            url: url.into(),
            enabled: true,
            profile: None,
            segment_minutes: None,
            max_total_gib: None,
        }
    }

    /// Whether it writes files (`file://`) rather than publishing over RTMP.
    pub fn is_recording(&self) -> bool {
        self.url.starts_with("file://")
    }

    /// Why its fields other than the name and URL are wrong, as (field, message); `profiles` are
    /// the names it may use.
    pub fn options_error(&self, profiles: &Profiles) -> Option<(&'static str, String)> {
        if let Some(p) = &self.profile
            && !profiles.contains_key(p)
        {
            let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
            return Some((
                "profile",
                format!("no profile named {p:?}: one of {}", names.join(", ")),
            ));
        }
        if !self.is_recording() {
            for (field, set) in [
                ("segment_minutes", self.segment_minutes.is_some()),
                ("max_total_gib", self.max_total_gib.is_some()),
            ] {
                if set {
                    return Some((field, "only a recording (file:// URL) has it".into()));
                }
            }
        }
        if self
            .segment_minutes
            .is_some_and(|m| !(1..=24 * 60).contains(&m))
        {
            return Some(("segment_minutes", "must be 1..=1440".into()));
        }
        if self
            .max_total_gib
            .is_some_and(|g| !(g.is_finite() && g > 0.0))
        {
            return Some(("max_total_gib", "must be a positive number of GiB".into()));
        }
        None
    }
}

fn yes() -> bool {
    true
}

/// A destination URL that passed [`destination_url_error`]. Made once where a URL enters onair
/// (the config file, an API body, Lua, a plugin's action, a database row); the outputs take only
/// this type and never check again. Shown redacted (`{}` and `{:?}`).
#[derive(Clone, PartialEq, Eq)]
pub struct DestinationUrl(String);

impl DestinationUrl {
    /// Checks `url`. The error says why, with the stream key redacted.
    pub fn parse(url: &str) -> Result<DestinationUrl, String> {
        match destination_url_error(url) {
            Some(e) => Err(e),
            None => Ok(DestinationUrl(url.to_string())),
        }
    }

    /// The URL in full, with its stream key: only for connecting.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A `file://` recording rather than a platform.
    pub fn is_recording(&self) -> bool {
        self.0.starts_with("file://")
    }
}

impl std::fmt::Display for DestinationUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::redact::url(&self.0))
    }
}

impl std::fmt::Debug for DestinationUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DestinationUrl({self})")
    }
}

/// Why `url` cannot be a destination, with its stream key redacted; `None` when it can. The one
/// check the config, the API, Lua and plugins share ([`DestinationUrl::parse`] makes it). A destination is `rtmp://` or
/// `rtmps://`, or a recording: `file:///absolute/path/NAME.mp4` whose file name contains
/// `{utc}` (each file's start, `2026-11-23T19-30-00Z`) and may contain `{channel}` and
/// `{destination}`.
pub fn destination_url_error(url: &str) -> Option<String> {
    if let Some(path) = url.strip_prefix("file://") {
        let file = path.rsplit('/').next().unwrap_or("");
        return if !path.starts_with('/') {
            Some(format!(
                "{url} must be file:// and an absolute path (file:///…)"
            ))
        } else if !file.ends_with(".mp4") {
            Some(format!(
                "{url}: a recording is fragmented MP4: the file name must end in .mp4"
            ))
        } else if !file.contains("{utc}") {
            Some(format!(
                "{url}: the file name must contain {{utc}} so that each file gets its own name"
            ))
        } else if path.split('/').any(|c| c == "..") {
            Some(format!("{url}: '..' is not allowed in the path"))
        } else {
            None
        };
    }
    (!(url.starts_with("rtmp://") || url.starts_with("rtmps://"))).then(|| {
        format!(
            "{} must start with rtmp://, rtmps:// or (a recording) file:///",
            crate::redact::url(url)
        )
    })
}

/// A configuration that could not be loaded or is not valid. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {file}: {message}")]
    Load { file: String, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

/// Where a configuration came from, for messages.
pub fn source_name(path: Option<&Path>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "built-in defaults".into(),
    }
}

impl Config {
    /// Loads `path` (when given and present) under the built-in defaults, then applies `ONAIR_…`
    /// environment variables, then validates.
    ///
    /// Errors: [`ConfigError::Load`] for unreadable TOML or a value of the wrong type (the message
    /// names the key), [`ConfigError::Invalid`] for a value out of range.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = source_name(path);
        let mut builder = config::Config::builder();
        if let Some(p) = path {
            builder = builder.add_source(
                config::File::from(p)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix("ONAIR")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("ingest.keys")
                .with_list_parse_key("media.roots")
                .with_list_parse_key("recording.roots")
                .try_parsing(true),
        );
        Self::build(builder, &file)
    }

    /// Parses TOML `text` (no environment variables) under the built-in defaults and validates
    /// it; `file` names it in messages. Errors as [`Self::load`].
    pub fn from_toml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let builder = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml));
        Self::build(builder, file)
    }

    fn build(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
        file: &str,
    ) -> Result<Config, ConfigError> {
        let built = builder.build().map_err(|e| ConfigError::Load {
            file: file.into(),
            message: e.to_string(),
        })?;
        let cfg: Config = built.try_deserialize().map_err(|e| ConfigError::Load {
            file: file.into(),
            message: e.to_string(),
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Checks ranges and cross-field rules. `file` is used in the messages only.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        match self.first_problem() {
            Some((key, message)) => Err(ConfigError::Invalid {
                file: file.into(),
                key,
                message,
            }),
            None => Ok(()),
        }
    }

    /// The first problem found, the checks taken in this order (of several problems, the
    /// order decides which one is reported).
    fn first_problem(&self) -> Option<Problem> {
        let profiles = self.profiles();
        self.program_problem()
            .or_else(|| self.scripts_problem())
            .or_else(|| self.http_access_problem())
            .or_else(|| self.media_problem())
            .or_else(|| self.preview_key_problem())
            .or_else(|| self.ingest_limits_problem())
            .or_else(|| self.http_limits_problem())
            .or_else(|| self.ingest_keys_problem())
            .or_else(|| destinations_error("destination", &self.destinations, &profiles))
            .or_else(|| self.channels_problem(&profiles))
    }

    /// `[fallback]`, `[output]` and each `[profile.NAME]`.
    fn program_problem(&self) -> Option<Problem> {
        fallback_error("fallback", &self.fallback)
            .or_else(|| output_error("output", &self.output))
            .or_else(|| {
                self.profiles.iter().find_map(|(name, p)| {
                    let key = format!("profile.{name}");
                    match profile_name_error(name) {
                        Some(e) => Some((key, e)),
                        None if p.mode == OutputMode::Copy => Some((
                            format!("{key}.mode"),
                            "a profile is an encode: \"copy\" is for [output] and a channel's output only".into(),
                        )),
                        None => output_error(&key, p),
                    }
                })
            })
    }

    /// `[scripts]`.
    fn scripts_problem(&self) -> Option<Problem> {
        let sc = &self.scripts;
        out_of_range(
            "scripts.memory_limit_mib",
            sc.memory_limit_mib.into(),
            1,
            4096,
        )
        .or_else(|| out_of_range("scripts.time_limit_ms", sc.time_limit_ms, 10, 10_000))
    }

    /// Who gets in over HTTP: the tokens, the open mode, the sessions.
    fn http_access_problem(&self) -> Option<Problem> {
        let http = &self.http;
        for (key, token) in [
            ("http.admin_token", &http.admin_token),
            ("http.metrics_token", &http.metrics_token),
        ] {
            if token.as_deref().is_some_and(|t| t.len() < 16) {
                return invalid(key, "must be at least 16 characters");
            }
        }
        if http.metrics_token.is_some() && http.metrics_token == http.admin_token {
            return invalid(
                "http.metrics_token",
                "must differ from http.admin_token (it is the read-only one)",
            );
        }
        if http.open_local && !http.listen.ip().is_loopback() {
            return invalid(
                "http.open_local",
                format!(
                    "only with a loopback http.listen ({} is reachable from other machines)",
                    http.listen
                ),
            );
        }
        out_of_range(
            "http.session_ttl_hours",
            http.session_ttl_hours.into(),
            1,
            24 * 365,
        )
    }

    /// `[media]` and `[recording]`: the upload limit and the roots.
    fn media_problem(&self) -> Option<Problem> {
        out_of_range(
            "media.max_upload_mib",
            self.media.max_upload_mib,
            1,
            64 * 1024,
        )
        .or_else(|| roots_error("media.roots", &self.media.roots))
        .or_else(|| roots_error("recording.roots", &self.recording.roots))
    }

    /// `http.preview_key`.
    fn preview_key_problem(&self) -> Option<Problem> {
        let weak = |t: &str| {
            t.len() < 16 || t.contains(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-')
        };
        if self.http.preview_key.as_deref().is_some_and(weak) {
            return invalid(
                "http.preview_key",
                "must be at least 16 letters, digits, '_' or '-'",
            );
        }
        None
    }

    /// `[ingest]`: who may publish, and the RTMP server's limits.
    fn ingest_limits_problem(&self) -> Option<Problem> {
        let ingest = &self.ingest;
        if ingest.allow_any_key && !ingest.keys.is_empty() {
            return invalid(
                "ingest.allow_any_key",
                "contradicts ingest.keys: remove one of them",
            );
        }
        if ingest.allow_any_key && !ingest.rtmp_listen.ip().is_loopback() {
            return invalid(
                "ingest.allow_any_key",
                format!(
                    "accepting any stream key on {} (reachable from other machines) is refused: list keys in ingest.keys (or leave it empty for a generated one), or listen on 127.0.0.1",
                    ingest.rtmp_listen
                ),
            );
        }
        if let Some(p) = out_of_range(
            "ingest.connect_timeout_ms",
            ingest.connect_timeout_ms,
            1000,
            120_000,
        ) {
            return Some(p);
        }
        for (key, n) in [
            ("ingest.max_connections", ingest.max_connections),
            (
                "ingest.max_connections_per_ip",
                ingest.max_connections_per_ip,
            ),
        ] {
            if n == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        out_of_range(
            "ingest.max_message_kib",
            ingest.max_message_kib.into(),
            64,
            16 * 1024,
        )
        .map(|(key, message)| {
            (
                key,
                format!("{message} (RTMP's length field stops at 16 MiB)"),
            )
        })
    }

    /// `http.max_body_kib` and `http.trusted_proxies`.
    fn http_limits_problem(&self) -> Option<Problem> {
        out_of_range(
            "http.max_body_kib",
            self.http.max_body_kib.into(),
            1,
            1024 * 1024,
        )
        .or_else(|| {
            self.http
                .trusted_proxies
                .iter()
                .enumerate()
                .find_map(|(i, p)| {
                    parse_proxy(p)
                        .err()
                        .map(|e| (format!("http.trusted_proxies[{i}]"), e))
                })
        })
    }

    /// `ingest.app` and `ingest.keys`.
    fn ingest_keys_problem(&self) -> Option<Problem> {
        let app = &self.ingest.app;
        if app.is_empty() || app.contains('/') {
            return invalid(
                "ingest.app",
                format!("{app:?} must be one non-empty path segment"),
            );
        }
        self.ingest
            .keys
            .iter()
            .enumerate()
            .find_map(|(i, k)| stream_key_error(k).map(|e| (format!("ingest.keys[{i}]"), e)))
    }

    /// `[[channel]]`: not beside top-level keys or destinations; ids and stream keys used once;
    /// each channel's own tables.
    fn channels_problem(&self, profiles: &Profiles) -> Option<Problem> {
        if !self.channels.is_empty() {
            if !self.ingest.keys.is_empty() {
                return invalid(
                    "ingest.keys",
                    "with [[channel]] tables each channel lists its own keys: move them to a channel's keys",
                );
            }
            if !self.destinations.is_empty() {
                return invalid(
                    "destination",
                    "with [[channel]] tables each channel lists its own destinations: move them to [[channel.destination]]",
                );
            }
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashMap::new();
        for (i, c) in self.channels.iter().enumerate() {
            let at = format!("channel[{i}]");
            if let Some(e) = channel_id_error(&c.id) {
                return Some((format!("{at}.id"), e));
            }
            if !ids.insert(c.id.as_str()) {
                return invalid(
                    &format!("{at}.id"),
                    format!("{:?} is used by two channels", c.id),
                );
            }
            for (j, k) in c.keys.iter().enumerate() {
                if let Some(e) = stream_key_error(k) {
                    return Some((format!("{at}.keys[{j}]"), e));
                }
                if let Some(other) = keys.insert(k.as_str(), c.id.as_str()) {
                    return invalid(
                        &format!("{at}.keys[{j}]"),
                        format!(
                            "this stream key is also channel {other:?}'s: a key publishes to one channel"
                        ),
                    );
                }
            }
            let problem = c
                .fallback
                .as_ref()
                .and_then(|f| fallback_error(&format!("{at}.fallback"), f))
                .or_else(|| {
                    c.output
                        .as_ref()
                        .and_then(|o| output_error(&format!("{at}.output"), o))
                })
                .or_else(|| {
                    destinations_error(&format!("{at}.destination"), &c.destinations, profiles)
                });
            if problem.is_some() {
                return problem;
            }
        }
        None
    }
}

/// A key of the config and what is wrong with its value.
type Problem = (String, String);

fn invalid(key: &str, message: impl Into<String>) -> Option<Problem> {
    Some((key.into(), message.into()))
}

/// `value` outside `min..=max`, as "VALUE is outside MIN..=MAX" under `key`.
fn out_of_range(key: &str, value: u64, min: u64, max: u64) -> Option<Problem> {
    (!(min..=max).contains(&value))
        .then(|| (key.into(), format!("{value} is outside {min}..={max}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("onair.toml");
        std::fs::write(&p, toml).expect("write");
        Config::load(Some(&p))
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = load_str("").expect("valid");
        assert_eq!(c.ingest.rtmp_listen.port(), 1935);
        assert_eq!(c.fallback.stall_timeout_ms, 1000);
        assert_eq!(c.output.keyframe_interval_s, 2);
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert!(c.destinations.is_empty());
    }

    #[test]
    fn one_encoder_thread_only_for_fast_presets_up_to_1080p30() {
        let out = |width, height, fps, preset: &str, threads| OutputConfig {
            width,
            height,
            fps,
            x264_preset: preset.into(),
            x264_threads: threads,
            ..OutputConfig::default()
        };
        assert_eq!(out(1280, 720, 30, "veryfast", 0).encoder_threads(), 1);
        assert_eq!(out(1920, 1080, 30, "superfast", 0).encoder_threads(), 1);
        assert_eq!(
            out(1920, 1080, 60, "veryfast", 0).encoder_threads(),
            0,
            "1080p60: auto"
        );
        assert_eq!(
            out(1280, 720, 30, "medium", 0).encoder_threads(),
            0,
            "slow preset: auto"
        );
        assert_eq!(
            out(1280, 720, 30, "veryfast", 4).encoder_threads(),
            4,
            "set: kept"
        );
    }

    #[test]
    fn profiles_and_recordings_are_checked_with_the_key_named() {
        let key_of = |toml: &str| match load_str(toml) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{toml}: {other:?}"),
        };
        assert_eq!(key_of("[profile.hd]\nfps = 500\n"), "profile.hd.fps");
        assert_eq!(
            key_of("[profile.hd]\nx264_threads = 64\n"),
            "profile.hd.x264_threads"
        );
        assert_eq!(
            key_of("[http]\ntrusted_proxies = [\"10.0.0.1\", \"proxy.lan\"]\n"),
            "http.trusted_proxies[1]"
        );
        let ok = load_str("[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\"]\n")
            .expect("addresses and ranges");
        assert_eq!(ok.http.proxies().len(), 3);
        assert_eq!(
            key_of("[profile.hd]\nx264_tune = \"fast\"\n"),
            "profile.hd.x264_tune"
        );
        assert_eq!(
            key_of("[[destination]]\nname = \"a\"\nurl = \"rtmp://x/app/k\"\nprofile = \"nope\"\n"),
            "destination[0].profile"
        );
        assert_eq!(
            key_of("[[destination]]\nname = \"a\"\nurl = \"file:///rec/a.mp4\"\n"),
            "destination[0].url"
        );
        assert_eq!(
            key_of(
                "[[destination]]\nname = \"a\"\nurl = \"rtmp://x/app/k\"\nsegment_minutes = 5\n"
            ),
            "destination[0].segment_minutes"
        );
        let c = load_str(
            "[profile.twitch-720p60]\nvideo_bitrate_kbps = 4000\nfps = 60\n\
             [[destination]]\nname = \"t\"\nurl = \"rtmp://x/app/k\"\nprofile = \"youtube-1080p30\"\n\
             [[destination]]\nname = \"r\"\nurl = \"file:///rec/{channel}-{utc}.mp4\"\nsegment_minutes = 30\n",
        )
        .expect("valid");
        let p = c.profiles();
        assert_eq!(
            p["twitch-720p60"].video_bitrate_kbps, 4000,
            "a table replaces a built-in"
        );
        assert_eq!(
            (p["youtube-1080p30"].width, p["youtube-1080p30"].fps),
            (1920, 30)
        );
        assert!(c.destinations[1].is_recording());
    }

    #[test]
    fn contract_keys_parse() {
        let c = load_str(
            r#"
[ingest]
rtmp_listen = "127.0.0.1:19350"
keys = ["my-secret-key"]
[fallback]
media = "media/brb.png"
stall_timeout_ms = 500
[output]
width = 640
height = 360
fps = 25
video_bitrate_kbps = 1200
audio_bitrate_kbps = 128
keyframe_interval_s = 2
x264_preset = "ultrafast"
[http]
listen = "127.0.0.1:18080"
[scripts]
dir = "s"
[[destination]]
name = "twitch"
url = "rtmp://live.twitch.tv/app/live_123_abc"
"#,
        )
        .expect("valid");
        assert_eq!(c.ingest.keys, vec!["my-secret-key"]);
        assert_eq!(
            c.fallback.media.as_deref(),
            Some(Path::new("media/brb.png"))
        );
        assert_eq!(c.output.fps, 25);
        assert_eq!(c.destinations[0].name, "twitch");
        assert!(c.destinations[0].enabled);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_str("[fallback]\nstall_timeout_ms = 50\n").expect_err("too small");
        assert!(
            e.to_string()
                .contains("fallback.stall_timeout_ms: 50 is below the minimum 300"),
            "{e}"
        );
        let e = load_str("[output]\nwidth = 641\n").expect_err("odd");
        assert!(e.to_string().contains("output.width"), "{e}");
        let e = load_str("[output]\nx264_preset = \"turbo\"\n").expect_err("preset");
        assert!(e.to_string().contains("output.x264_preset"), "{e}");
        let e = load_str("[output]\nfps = \"fast\"\n").expect_err("type");
        assert!(e.to_string().contains("fps"), "{e}");
        let e = load_str("[outptu]\nfps = 30\n").expect_err("unknown table");
        assert!(e.to_string().contains("outptu"), "{e}");
    }

    #[test]
    fn roots_are_checked_with_the_key_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").expect("write");
        let c = load_str("").expect("valid");
        assert_eq!(c.media.roots, vec![PathBuf::from("media")]);
        assert!(c.recording.roots.is_empty());
        let c = load_str("[recording]\nroots = [\"/srv/rec\", \"rec\"]\n").expect("valid");
        assert_eq!(c.recording.roots.len(), 2);
        for (toml, key) in [
            (
                "[recording]\nroots = [\"/srv/rec\", \"\"]\n",
                "recording.roots[1]",
            ),
            ("[recording]\nroots = [\"/\"]\n", "recording.roots[0]"),
            ("[media]\nroots = [\"media/../..\"]\n", "media.roots[0]"),
            (
                &format!("[media]\nroots = [\"{}\"]\n", file.display()),
                "media.roots[0]",
            ),
            ("[recording]\nroot = [\"/srv\"]\n", "root"),
        ] {
            let e = load_str(toml).expect_err(toml);
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn destination_urls_are_checked_and_redacted_in_errors() {
        let e = load_str("[[destination]]\nname = \"x\"\nurl = \"http://h/app/live_123456789\"\n")
            .expect_err("scheme");
        let msg = e.to_string();
        assert!(msg.contains("destination[0].url"), "{msg}");
        assert!(!msg.contains("live_123456789"), "key leaked: {msg}");
        let e = load_str(
            "[[destination]]\nname = \"x\"\nurl = \"rtmp://a/b/c\"\n[[destination]]\nname = \"x\"\nurl = \"rtmp://a/b/d\"\n",
        )
        .expect_err("dup");
        assert!(e.to_string().contains("destination[1].name"), "{e}");
    }

    #[test]
    fn channels_resolve_against_the_top_level_tables_and_errors_name_the_channel() {
        let c = load_str(
            "[output]\nwidth = 640\nheight = 360\n[fallback]\nslate_text = \"Back soon\"\n\
             [[channel]]\nid = \"a\"\nkeys = [\"key-a\"]\n\
             [[channel.destination]]\nname = \"yt\"\nurl = \"rtmp://x/app/k\"\n\
             [[channel]]\nid = \"b\"\nname = \"Court B\"\n[channel.output]\nfps = 60\n",
        )
        .expect("valid");
        let specs = c.channel_specs();
        assert_eq!(specs.len(), 2);
        assert_eq!((specs[0].id.as_str(), specs[0].name.as_str()), ("a", "a"));
        assert_eq!(specs[0].output.width, 640, "the top-level [output]");
        assert_eq!(specs[0].fallback.slate_text, "Back soon");
        assert_eq!(
            specs[0].fallback.channel_name, "a",
            "the slate shows the channel"
        );
        assert_eq!(specs[0].destinations[0].name, "yt");
        assert_eq!(specs[1].output.fps, 60);
        assert_eq!(
            specs[1].output.width, 1280,
            "a channel's [output] replaces the whole table"
        );
        assert!(specs[1].keys.is_empty());
        // without [[channel]]: the top level is the channel `default`
        let one = load_str("[ingest]\nkeys = [\"k-12345678\"]\n").expect("valid");
        let specs = one.channel_specs();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].id, "default");
        assert_eq!(specs[0].keys, vec!["k-12345678".to_string()]);

        for (toml, key) in [
            ("[[channel]]\nid = \"Court A\"\n", "channel[0].id"),
            (
                "[[channel]]\nid = \"a\"\n[[channel]]\nid = \"a\"\n",
                "channel[1].id",
            ),
            (
                "[[channel]]\nid = \"a\"\nkeys = [\"k\"]\n[[channel]]\nid = \"b\"\nkeys = [\"k\"]\n",
                "channel[1].keys[0]",
            ),
            (
                "[[channel]]\nid = \"a\"\n[channel.output]\nwidth = 641\n",
                "channel[0].output.width",
            ),
            (
                "[[channel]]\nid = \"a\"\n[channel.fallback]\nstall_timeout_ms = 5\n",
                "channel[0].fallback.stall_timeout_ms",
            ),
            (
                "[[channel]]\nid = \"a\"\n[[channel.destination]]\nname = \"x\"\nurl = \"http://h/a/k\"\n",
                "channel[0].destination[0].url",
            ),
            (
                "[ingest]\nkeys = [\"k-12345678\"]\n[[channel]]\nid = \"a\"\n",
                "ingest.keys",
            ),
        ] {
            let e = load_str(toml).expect_err(toml);
            assert!(e.to_string().contains(&format!("{key}:")), "{toml}: {e}");
        }
    }
}
