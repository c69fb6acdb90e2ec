//! `onair run` and `onair check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gst::prelude::*;
use tokio::net::TcpListener;

use onair::config::{self, Config};
use onair::engine::{Core, Counters, Engine};
use onair::media::fallback::{self, MediaKind};
use onair::media::ingest::Ingest;
use onair::policy::{Policy, PolicyOptions};
use onair::{media, redact};

#[derive(Parser)]
#[command(
    name = "onair",
    version,
    about = "Keeps a live stream on air: RTMP in, fallback on drop or stall, one persistent connection per platform."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Run {
        /// Config file. Default ./onair.toml; without it, the built-in defaults.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate the config, the policy script and the fallback media, and print what would run.
    Check {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Manage the control room's admin users (kept in data_dir/onair.db; works while onair runs).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[arg(short, long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user. Asks for the password twice on a terminal; otherwise reads one line from
    /// stdin (`echo "$PASSWORD" | onair user add NAME`).
    Add { name: String },
    /// List users.
    List,
    /// Delete a user and end their sessions.
    Delete { name: String },
}

/// The config file to read: the one given, else `./onair.toml` if present, else none.
fn config_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        let default = PathBuf::from("onair.toml");
        default.exists().then_some(default)
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config_path(config)),
        Command::Check { config } => check(config_path(config)),
        Command::User { action, config } => user(action, config_path(config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let cfg = Config::load(path)?;
    if cfg.ingest.allow_any_key {
        tracing::warn!("ingest.allow_any_key: any stream key is accepted (loopback only)");
    }
    Ok(cfg)
}

/// What the user must copy when onair made it: generated stream keys (channel, key, file) and
/// the preview key.
struct Generated {
    /// Channel, key, file, and whether it was made on this start (printed in full only then).
    stream_keys: Vec<(String, String, PathBuf, bool)>,
    preview_key: Option<(String, PathBuf, bool)>,
}

/// Closed by default: a config channel without keys (and `allow_any_key` off) gets one generated
/// on first start, kept in `data_dir/stream-key` (channel `default`) or `stream-key-ID`;
/// likewise the preview key. Returns the channels with their keys filled in.
fn resolve_secrets(
    cfg: &mut Config,
) -> anyhow::Result<(Vec<onair::config::ChannelSpec>, Generated)> {
    use onair::secrets::{PREVIEW_KEY_FILE, STREAM_KEY_FILE, load_or_create};
    let mut g = Generated {
        stream_keys: Vec::new(),
        preview_key: None,
    };
    let mut specs = cfg.channel_specs();
    for spec in &mut specs {
        if !spec.keys.is_empty() || cfg.ingest.allow_any_key {
            continue;
        }
        let file = if spec.id == onair::channel::destinations::DEFAULT_CHANNEL {
            STREAM_KEY_FILE.to_string()
        } else {
            format!("{STREAM_KEY_FILE}-{}", spec.id)
        };
        let (key, made) = load_or_create(&cfg.data_dir, &file, "live_")?;
        let path = cfg.data_dir.join(&file);
        if made {
            tracing::info!(channel = %spec.id, file = %path.display(), "no stream keys set: generated one");
        }
        spec.keys = vec![key.clone()];
        g.stream_keys.push((spec.id.clone(), key, path, made));
    }
    if cfg.http.preview && cfg.http.preview_key.is_none() {
        let (key, made) = load_or_create(&cfg.data_dir, PREVIEW_KEY_FILE, "pv_")?;
        cfg.http.preview_key = Some(key.clone());
        g.preview_key = Some((key, cfg.data_dir.join(PREVIEW_KEY_FILE), made));
    }
    Ok((specs, g))
}

/// The OBS "Server" field for this ingest.
fn obs_server(cfg: &Config) -> String {
    let addr = cfg.ingest.rtmp_listen;
    let host = if addr.ip().is_unspecified() {
        "<this machine's address>".to_string()
    } else {
        addr.ip().to_string()
    };
    format!("rtmp://{host}:{}/{}", addr.port(), cfg.ingest.app)
}

/// Prints the generated secrets on stdout (the log only ever shows them redacted): in full on
/// the start that made them, redacted with the file that holds them on later starts (a
/// terminal's scrollback or a service's captured stdout should not hold them again and again).
fn print_generated(cfg: &Config, g: &Generated) {
    for (channel, key, path, made) in &g.stream_keys {
        println!("OBS → Settings → Stream (channel {channel})");
        println!("  Service     Custom...");
        println!("  Server      {}", obs_server(cfg));
        if *made {
            println!("  Stream Key  {key}");
            println!(
                "  (generated now, kept in {}; set the channel's keys to choose your own)",
                path.display()
            );
        } else {
            println!(
                "  Stream Key  {} (generated earlier: the whole key is in {}, and in the control room)",
                onair::redact::key(key),
                path.display()
            );
        }
    }
    if let Some((key, path, made)) = &g.preview_key {
        if *made {
            println!("Preview: http://{}/preview.flv?key={key}", cfg.http.listen);
        } else {
            println!(
                "Preview: http://{}/preview.flv?key=… (the key is in {})",
                cfg.http.listen,
                path.display()
            );
        }
    }
}

/// While no control-room user exists: the one-time link that creates the first admin in the
/// browser (the token rides in the URL's fragment, which browsers never send, so it stays out of
/// proxy and server logs), on stdout like the other secrets; the log says where to look.
fn print_setup_link(cfg: &Config, auth: &onair::auth::Auth) {
    if cfg.http.open_local && cfg.http.admin_token.is_none() {
        tracing::warn!(
            "no control-room user yet and http.open_local = true: the API answers any request made on this machine without a login (never run it behind a reverse proxy); create a user with `onair user add NAME`"
        );
        return;
    }
    match auth.setup_token() {
        Ok(Some(token)) => {
            let host = if cfg.http.listen.ip().is_unspecified() {
                format!("<this machine's address>:{}", cfg.http.listen.port())
            } else {
                cfg.http.listen.to_string()
            };
            println!(
                "Control room setup (no admin user yet; the link works once, until onair restarts):"
            );
            println!("  http://{host}/#setup={token}");
            tracing::info!(
                "no control-room user yet: open the one-time setup link printed on stdout, or run `onair user add NAME`"
            );
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "no setup link: create a user with `onair user add NAME`")
        }
    }
}

fn init_media() -> anyhow::Result<()> {
    media::init()?;
    let missing = media::missing_elements();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(f, h)| format!("{f} ({h})")).collect();
        bail!("GStreamer elements missing: {}", list.join(", "));
    }
    Ok(())
}

/// What OBS asks for, in its own words, for one channel.
fn obs_settings(cfg: &Config, spec: &onair::config::ChannelSpec) -> String {
    let key = match spec.keys.first() {
        Some(k) => format!("one of its keys ({})", redact::key(k)),
        None if cfg.ingest.allow_any_key => "any (ingest.allow_any_key)".into(),
        None => "generated on first start into data_dir".into(),
    };
    format!(
        "channel {}: OBS → Settings → Stream: Service \"Custom...\", Server \"{}\", Stream Key {key}",
        spec.id,
        obs_server(cfg)
    )
}

fn user(action: UserAction, path: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = load_config(path.as_deref())?;
    let db = Arc::new(onair::db::Db::open(&cfg.data_dir)?);
    let auth = onair::auth::Auth::new(db.clone(), std::time::Duration::from_secs(3600));
    match action {
        UserAction::Add { name } => {
            let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                let p = rpassword::prompt_password(format!("password for {name}: "))?;
                if rpassword::prompt_password("again: ")? != p {
                    bail!("the passwords differ: nothing changed");
                }
                p
            } else {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from stdin")?;
                line.trim_end_matches(['\r', '\n']).to_string()
            };
            let first = !auth.has_users();
            auth.add_user(&name, &password)?;
            println!(
                "user {name} added to {}: log in at http://{}/",
                db.path().display(),
                cfg.http.listen
            );
            if first && cfg.http.admin_token.is_none() {
                println!(
                    "note: with a user, the API needs a login: scripts and curl (and a Prometheus scraping /metrics) need http.admin_token now"
                );
            }
        }
        UserAction::List => {
            for (name, created) in auth.users()? {
                println!("{name}\tcreated {created} (unix s)");
            }
        }
        UserAction::Delete { name } => {
            auth.delete_user(&name)?;
            println!("user {name} deleted; their sessions ended");
        }
    }
    Ok(())
}

fn check(path: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = load_config(path.as_deref())?;
    println!("config: {} OK", config::source_name(path.as_deref()));
    init_media()?;
    println!("media: all GStreamer elements present");
    let plugins = plugin_host(&cfg)?;
    let plugin_errors: Vec<String> = plugins
        .info()
        .into_iter()
        .filter_map(|i| i.last_error)
        .collect();
    if !plugin_errors.is_empty() {
        bail!(
            "plugins in {} failed to load:\n  {}",
            cfg.plugins.dir.display(),
            plugin_errors.join("\n  ")
        );
    }
    for p in plugins.info() {
        println!("plugin: {} loads ({:?} world)", p.name, p.world);
    }
    // an empty store in memory: check changes nothing on disk
    let db = Arc::new(onair::db::Db::memory().context("an in-memory database")?);
    let (policy, errors) = Policy::start(policy_options(&cfg, db, None, None, None, false));
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(n, e)| format!("{n}: {e}")).collect();
        bail!(
            "scripts in {} failed to load:\n  {}",
            cfg.scripts.dir.display(),
            list.join("\n  ")
        );
    }
    for s in policy.scripts() {
        println!("script: {} loads ({} route(s))", s.name, s.routes.len());
    }
    println!("would run:");
    println!(
        "  ingest: rtmp on {} app {:?}",
        cfg.ingest.rtmp_listen, cfg.ingest.app
    );
    for spec in cfg.channel_specs() {
        let fb = match &spec.fallback.media {
            None => "slate".to_string(),
            Some(p) => match fallback::probe(p)
                .with_context(|| format!("channel {}: fallback.media", spec.id))?
            {
                MediaKind::Image => format!("image {}", p.display()),
                MediaKind::Video {
                    has_audio,
                    duration_ms,
                } => format!(
                    "video {} ({:.1} s loop, {})",
                    p.display(),
                    duration_ms as f64 / 1000.0,
                    if has_audio { "with audio" } else { "silent" }
                ),
            },
        };
        let o = &spec.output;
        println!("  {}", obs_settings(&cfg, &spec));
        println!(
            "    fallback: {fb}, stall timeout {} ms",
            spec.fallback.stall_timeout_ms
        );
        println!(
            "    output: {}x{}@{} H.264 High CBR {} kbit/s, keyframe every {} s, x264 {}; AAC-LC 48 kHz stereo {} kbit/s",
            o.width,
            o.height,
            o.fps,
            o.video_bitrate_kbps,
            o.keyframe_interval_s,
            o.x264_preset,
            o.audio_bitrate_kbps
        );
        let profiles = cfg.profiles();
        for d in &spec.destinations {
            let encode = match d
                .profile
                .as_deref()
                .and_then(|p| Some((p, profiles.get(p)?)))
            {
                Some((name, p)) => format!(
                    ", profile {name} ({}x{}@{} {} kbit/s, keyframe every {} s)",
                    p.width, p.height, p.fps, p.video_bitrate_kbps, p.keyframe_interval_s
                ),
                None => String::new(),
            };
            let recording = if d.is_recording() {
                format!(
                    ", recording: fragmented MP4, a file every {} min{}",
                    d.segment_minutes
                        .unwrap_or(onair::media::output::recording::DEFAULT_SEGMENT_MINUTES),
                    d.max_total_gib
                        .map(|g| format!(", at most {g} GiB"))
                        .unwrap_or_default()
                )
            } else {
                String::new()
            };
            println!(
                "    destination {}: {}{encode}{recording}{}",
                d.name,
                redact::url(&d.url),
                if d.enabled { "" } else { " (disabled)" }
            );
        }
    }
    if cfg.http.preview {
        println!("  preview: http://{}/preview.flv", cfg.http.listen);
    }
    println!("  api: http://{}/api/status", cfg.http.listen);
    Ok(())
}

/// `db` and `store_import`: see [`PolicyOptions`].
fn policy_options(
    cfg: &Config,
    db: Arc<onair::db::Db>,
    store_import: Option<PathBuf>,
    actions: Option<tokio::sync::mpsc::UnboundedSender<Vec<onair::action::Action>>>,
    runtime: Option<tokio::runtime::Handle>,
    watch: bool,
) -> PolicyOptions {
    PolicyOptions {
        dir: cfg.scripts.dir.clone(),
        db: Some(db),
        store_import,
        core: Arc::default(),
        actions,
        runtime,
        watch,
        memory_limit: cfg.scripts.memory_limit_mib as usize * 1024 * 1024,
        time_limit: std::time::Duration::from_millis(cfg.scripts.time_limit_ms),
        plugins: None,
        metrics: None,
    }
}

/// The WASM plugin host for `[plugins]`, with every plugin of the folder loaded.
fn plugin_host(cfg: &Config) -> anyhow::Result<onair::wasm::SharedHost> {
    let p = &cfg.plugins;
    let mut grants = std::collections::BTreeMap::new();
    for (name, list) in &p.grants {
        let caps: Result<Vec<onair::wasm::Capability>, String> =
            list.iter().map(|g| g.parse()).collect();
        let caps = caps.map_err(|e| anyhow::anyhow!("plugins.grants.{name}: {e}"))?;
        grants.insert(name.clone(), caps);
    }
    let limits = onair::wasm::PluginLimits {
        deadline: std::time::Duration::from_millis(p.deadline_ms),
        memory: p.memory_limit_mib as usize * 1024 * 1024,
        grants,
    };
    let host =
        onair::wasm::PluginHost::new(&p.dir, limits).context("starting the WASM plugin host")?;
    host.load_all();
    Ok(Arc::new(host))
}

fn run(path: Option<PathBuf>) -> anyhow::Result<()> {
    let mut cfg = load_config(path.as_deref())?;
    let (specs, generated) = resolve_secrets(&mut cfg)?;
    for spec in &specs {
        for k in &spec.keys {
            let at = format!("channel {} (onair.toml)", spec.id);
            if let Some(w) = onair::config::short_stream_key_warning(&at, k) {
                tracing::warn!("{w}");
            }
        }
    }
    let db = Arc::new(onair::db::Db::open(&cfg.data_dir)?);
    init_media()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let file = config::source_name(path.as_deref());
    rt.block_on(serve(cfg, specs, generated, db, file))
}

async fn serve(
    cfg: Config,
    specs: Vec<onair::config::ChannelSpec>,
    generated: Generated,
    db: Arc<onair::db::Db>,
    config_file: String,
) -> anyhow::Result<()> {
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (publish_tx, publish_rx) = tokio::sync::mpsc::unbounded_channel();

    // Bind first: a busy port is a clear error before anything goes on air.
    let rtmp = TcpListener::bind(cfg.ingest.rtmp_listen)
        .await
        .with_context(|| {
            format!(
                "ingest.rtmp_listen: cannot listen on {}",
                cfg.ingest.rtmp_listen
            )
        })?;
    let http = TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {}", cfg.http.listen))?;

    let (commands_tx, commands_rx) = tokio::sync::mpsc::unbounded_channel();
    let plugins = plugin_host(&cfg)?;
    let plugin_watch = {
        let host = plugins.clone();
        match onair::watch::watch(&cfg.plugins.dir, move |paths| {
            host.changed(&paths);
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::info!(dir = %cfg.plugins.dir.display(), error = %e, "plugins folder not watched (create it to use plugins)");
                None
            }
        }
    };
    let metrics = Arc::new(onair::metrics::Metrics::new());
    let session_ttl = std::time::Duration::from_secs(u64::from(cfg.http.session_ttl_hours) * 3600);
    let streamers = Arc::new(onair::streamers::Streamers::new(
        db.clone(),
        session_ttl,
        &cfg.accounts,
    ));
    let shared = Arc::new(onair::channel::Shared {
        db: db.clone(),
        events: events_tx.clone(),
        ingest: std::sync::OnceLock::new(),
        plugins: plugins.clone(),
        runtime: tokio::runtime::Handle::current(),
        metrics: metrics.clone(),
        file: config_file.clone(),
        changes: tokio::sync::broadcast::channel(64).0,
        profiles: Arc::new(cfg.profiles()),
        streamers: streamers.clone(),
    });
    let obs: Vec<String> = specs.iter().map(|s| obs_settings(&cfg, s)).collect();
    let channels =
        tokio::task::block_in_place(|| onair::channel::Channels::load(specs, &cfg, shared.clone()))
            .context("loading the channels")?;
    let ingest = Ingest::new(&cfg.ingest, channels.clone(), publish_tx);
    let _ = shared.ingest.set(ingest.clone());

    let mut opts = policy_options(
        &cfg,
        db.clone(),
        Some(cfg.scripts.store.clone()),
        Some(commands_tx.clone()),
        Some(tokio::runtime::Handle::current()),
        true,
    );
    opts.plugins = Some(plugins.clone());
    opts.metrics = Some(metrics.clone());
    let core_cell = opts.core.clone();
    let (policy, _errors) = Policy::start(opts); // already logged; `onair run` goes on
    let (bus_tx, _) = tokio::sync::broadcast::channel(256);
    let core = Arc::new(Core {
        channels: channels.clone(),
        ingest: ingest.clone(),
        policy,
        counters: Counters::default(),
        started: Instant::now(),
        events: bus_tx,
        preview_viewers: AtomicU64::new(0),
        sse_clients: AtomicU64::new(0),
        commands: commands_tx,
        plugins,
        metrics,
        auth: Arc::new(onair::auth::Auth::new(db.clone(), session_ttl)),
        streamers,
        gallery: Arc::new(onair::gallery::Gallery::new(
            cfg.data_dir.join("media"),
            cfg.media.max_upload_mib,
        )),
        ingest_listen: cfg.ingest.rtmp_listen,
        ingest_app: cfg.ingest.app.clone(),
        trusted_proxies: cfg.http.proxies().into(),
    });
    core.gallery.sweep();
    forward_changes(&core);
    let _ = core_cell.set(Arc::new(onair::engine::CoreView(Arc::downgrade(&core))));

    tokio::spawn(ingest.serve(rtmp));
    let routes = onair::http::routes(core.clone(), &cfg.http);
    // header read timeout, connection caps (a reverse proxy's own address is not held to the
    // per-network one: every client behind it arrives from there)
    let limits = onair::http::serve::Limits {
        exempt: cfg.http.proxies(),
        ..Default::default()
    };
    tokio::spawn(onair::http::serve::serve(http, routes, limits));
    let engine = tokio::spawn(Engine::new(core.clone()).run(events_rx, publish_rx, commands_rx));

    tracing::info!(listen = %cfg.ingest.rtmp_listen, "rtmp ingest ready");
    for line in obs {
        tracing::info!("{line}");
    }
    if cfg.http.preview {
        tracing::info!(
            "preview: http://{}/preview.flv?key={} (ffplay, VLC, mpv)",
            cfg.http.listen,
            cfg.http
                .preview_key
                .as_deref()
                .map(redact::key)
                .unwrap_or_default()
        );
    }
    print_generated(&cfg, &generated);
    tracing::info!("control room: http://{}/", cfg.http.listen);
    if !core.auth.has_users() {
        print_setup_link(&cfg, &core.auth);
    }
    tracing::info!("status: http://{}/api/status", cfg.http.listen);

    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        _ = terminate() => tracing::info!("terminated: stopping"),
        _ = engine => tracing::error!("engine stopped"),
    }
    drop(plugin_watch);
    for c in channels.all() {
        if let Some(p) = c.program() {
            let _ = p.pipeline().set_state(gst::State::Null);
        }
    }
    Ok(())
}

/// Script and plugin reloads as `changed` notifications for the control room.
fn forward_changes(core: &Arc<Core>) {
    for (what, mut rx) in [
        ("scripts", core.policy.watch_scripts()),
        ("plugins", core.plugins.watch_info()),
    ] {
        let shared = core.channels.shared().clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                shared.changed(what, None);
            }
        });
    }
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
