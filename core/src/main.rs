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
use onair::media::fallback::{self, Fallback, MediaKind};
use onair::media::fanout::FanOut;
use onair::media::ingest::Ingest;
use onair::media::output::Outputs;
use onair::media::program::Program;
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

/// What the user must copy when onair made it: the generated stream key and preview URL.
struct Generated {
    stream_key: Option<(String, PathBuf)>,
    preview_key: Option<(String, PathBuf)>,
}

/// Closed by default: with `ingest.keys` empty (and `allow_any_key` off) the stream key comes
/// from `data_dir/stream-key`, generated on first start; likewise the preview key.
fn resolve_secrets(cfg: &mut Config) -> anyhow::Result<Generated> {
    use onair::secrets::{PREVIEW_KEY_FILE, STREAM_KEY_FILE, load_or_create};
    let mut g = Generated {
        stream_key: None,
        preview_key: None,
    };
    if cfg.ingest.keys.is_empty() && !cfg.ingest.allow_any_key {
        let (key, made) = load_or_create(&cfg.data_dir, STREAM_KEY_FILE, "live_")?;
        let path = cfg.data_dir.join(STREAM_KEY_FILE);
        if made {
            tracing::info!(file = %path.display(), "ingest.keys is empty: generated a stream key");
        }
        cfg.ingest.keys = vec![key.clone()];
        g.stream_key = Some((key, path));
    }
    if cfg.http.preview && cfg.http.preview_key.is_none() {
        let (key, _) = load_or_create(&cfg.data_dir, PREVIEW_KEY_FILE, "pv_")?;
        cfg.http.preview_key = Some(key.clone());
        g.preview_key = Some((key, cfg.data_dir.join(PREVIEW_KEY_FILE)));
    }
    Ok(g)
}

/// Prints the generated secrets on stdout (the log only ever shows them redacted).
fn print_generated(cfg: &Config, g: &Generated) {
    if let Some((key, path)) = &g.stream_key {
        let addr = cfg.ingest.rtmp_listen;
        let host = if addr.ip().is_unspecified() {
            "<this machine's address>".to_string()
        } else {
            addr.ip().to_string()
        };
        println!("OBS → Settings → Stream");
        println!("  Service     Custom...");
        println!(
            "  Server      rtmp://{host}:{}/{}",
            addr.port(),
            cfg.ingest.app
        );
        println!("  Stream Key  {key}");
        println!(
            "  (generated, kept in {}; set ingest.keys to choose your own)",
            path.display()
        );
    }
    if let Some((key, _)) = &g.preview_key {
        println!("Preview: http://{}/preview.flv?key={key}", cfg.http.listen);
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

/// What OBS asks for, in its own words.
fn obs_settings(cfg: &Config) -> String {
    let addr = cfg.ingest.rtmp_listen;
    let host = if addr.ip().is_unspecified() {
        "<this machine's address>".to_string()
    } else {
        addr.ip().to_string()
    };
    let key = match cfg.ingest.keys.first() {
        Some(k) => format!("one of ingest.keys ({})", redact::key(k)),
        None if cfg.ingest.allow_any_key => "any (ingest.allow_any_key)".into(),
        None => format!(
            "generated on first start into {}",
            cfg.data_dir.join(onair::secrets::STREAM_KEY_FILE).display()
        ),
    };
    format!(
        "OBS → Settings → Stream: Service \"Custom...\", Server \"rtmp://{host}:{}/{}\", Stream Key {key}",
        addr.port(),
        cfg.ingest.app
    )
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
    let fb = match &cfg.fallback.media {
        None => "slate".to_string(),
        Some(p) => match fallback::probe(p)? {
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
    let o = &cfg.output;
    println!("would run:");
    println!(
        "  ingest: rtmp on {} app {:?}, {} key(s)",
        cfg.ingest.rtmp_listen,
        cfg.ingest.app,
        cfg.ingest.keys.len()
    );
    println!("  {}", obs_settings(&cfg));
    println!(
        "  fallback: {fb}, stall timeout {} ms",
        cfg.fallback.stall_timeout_ms
    );
    println!(
        "  output: {}x{}@{} H.264 High CBR {} kbit/s, keyframe every {} s, x264 {}; AAC-LC 48 kHz stereo {} kbit/s",
        o.width,
        o.height,
        o.fps,
        o.video_bitrate_kbps,
        o.keyframe_interval_s,
        o.x264_preset,
        o.audio_bitrate_kbps
    );
    if cfg.http.preview {
        println!("  preview: http://{}/preview.flv", cfg.http.listen);
    }
    println!("  api: http://{}/api/status", cfg.http.listen);
    for d in &cfg.destinations {
        println!(
            "  destination {}: {}{}",
            d.name,
            redact::url(&d.url),
            if d.enabled { "" } else { " (disabled)" }
        );
    }
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
        status: Arc::default(),
        actions,
        runtime,
        watch,
        memory_limit: cfg.scripts.memory_limit_mib as usize * 1024 * 1024,
        time_limit: std::time::Duration::from_millis(cfg.scripts.time_limit_ms),
        plugins: None,
    }
}

/// The WASM plugin host for `[plugins]`, with every plugin of the folder loaded.
fn plugin_host(cfg: &Config) -> anyhow::Result<onair::wasm::SharedHost> {
    let p = &cfg.plugins;
    let mut grants = std::collections::BTreeMap::new();
    for (name, list) in &p.grants {
        let caps: Result<Vec<onair::wasm::Capability>, String> =
            list.iter().map(|g| g.parse()).collect();
        grants.insert(name.clone(), caps.map_err(anyhow::Error::msg)?);
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
    let generated = resolve_secrets(&mut cfg)?;
    let db = Arc::new(onair::db::Db::open(&cfg.data_dir)?);
    init_media()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let file = config::source_name(path.as_deref());
    rt.block_on(serve(cfg, generated, db, file))
}

async fn serve(
    cfg: Config,
    generated: Generated,
    db: Arc<onair::db::Db>,
    config_file: String,
) -> anyhow::Result<()> {
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (publish_tx, publish_rx) = tokio::sync::mpsc::unbounded_channel();
    let fanout = Arc::new(FanOut::new());

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

    let program = Program::build(&cfg.output, fanout.clone(), events_tx.clone())?;
    let fallback = Fallback::start(program.clone(), &cfg.fallback)?;
    program
        .pipeline()
        .set_state(gst::State::Playing)
        .context("starting the program pipeline")?;
    watch_bus(program.pipeline());

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
    let mut opts = policy_options(
        &cfg,
        db.clone(),
        Some(cfg.scripts.store.clone()),
        Some(commands_tx.clone()),
        Some(tokio::runtime::Handle::current()),
        true,
    );
    opts.plugins = Some(plugins.clone());
    let status_cell = opts.status.clone();
    let (policy, _errors) = Policy::start(opts); // already logged; `onair run` goes on
    let ingest = Ingest::new(&cfg, program.clone(), events_tx.clone(), publish_tx);
    use onair::destinations::{DEFAULT_CHANNEL, Destinations};
    let dests = Destinations::load(&db, DEFAULT_CHANNEL, &cfg.destinations)
        .context("loading the destinations kept in the database")?;
    let outputs = Outputs::start(&dests, fanout.clone(), events_tx.clone());
    let destinations = Destinations::new(
        db.clone(),
        outputs.clone(),
        DEFAULT_CHANNEL,
        &cfg.destinations,
        &config_file,
    );
    let (bus_tx, _) = tokio::sync::broadcast::channel(256);
    let core = Arc::new(Core {
        program: program.clone(),
        ingest: ingest.clone(),
        outputs,
        destinations,
        channel_name: cfg.fallback.channel_name.clone(),
        fallback,
        policy,
        counters: Counters::default(),
        started: Instant::now(),
        events: bus_tx,
        preview_viewers: AtomicU64::new(0),
        sse_clients: AtomicU64::new(0),
        commands: commands_tx,
        plugins,
    });
    let weak = Arc::downgrade(&core);
    let _ = status_cell.set(Box::new(move || {
        weak.upgrade()
            .and_then(|c| serde_json::to_value(c.status()).ok())
            .unwrap_or(serde_json::Value::Null)
    }));

    tokio::spawn(ingest.serve(rtmp));
    let routes = onair::http::routes(core.clone(), fanout, &cfg.http);
    tokio::spawn(warp::serve(routes).incoming(http).run());
    let engine = tokio::spawn(Engine::new(core.clone()).run(events_rx, publish_rx, commands_rx));

    tracing::info!(listen = %cfg.ingest.rtmp_listen, "rtmp ingest ready");
    tracing::info!("{}", obs_settings(&cfg));
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
    tracing::info!("status: http://{}/api/status", cfg.http.listen);

    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        _ = terminate() => tracing::info!("terminated: stopping"),
        _ = engine => tracing::error!("engine stopped"),
    }
    drop(plugin_watch);
    let _ = program.pipeline().set_state(gst::State::Null);
    Ok(())
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Logs the program pipeline's errors and warnings. An error there is logged, never fatal:
/// destinations stay connected.
fn watch_bus(pipeline: &gst::Pipeline) {
    let Some(bus) = pipeline.bus() else { return };
    std::thread::Builder::new()
        .name("program-bus".into())
        .spawn(move || {
            for msg in bus.iter_timed(gst::ClockTime::NONE) {
                match msg.view() {
                    gst::MessageView::Error(e) => tracing::error!(
                        source = ?e.src().map(|s| s.path_string()),
                        error = %e.error(),
                        debug = ?e.debug(),
                        "program pipeline error"
                    ),
                    gst::MessageView::Warning(w) => tracing::warn!(
                        source = ?w.src().map(|s| s.path_string()),
                        warning = %w.error(),
                        debug = ?w.debug(),
                        "program pipeline warning"
                    ),
                    _ => {}
                }
            }
        })
        .ok();
}
