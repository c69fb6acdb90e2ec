//! A registry of channels on a private data folder, for the unit tests of the channel's seams:
//! the config's one channel (`default`, key `live_default_key`) kept stopped, no ingest, no
//! pipelines unless a test starts one.

use std::sync::Arc;

use super::{Channels, Shared};
use crate::config::Config;
use crate::db::Db;

pub struct Fixture {
    pub channels: Arc<Channels>,
    pub shared: Arc<Shared>,
    pub cfg: Config,
    pub dir: tempfile::TempDir,
    /// Kept alive: the channels' tasks run on it.
    _rt: tokio::runtime::Runtime,
}

impl Fixture {
    /// The config's channel stopped (as a restart after a stop leaves it).
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        for d in ["data/media", "scripts", "plugins"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("folders");
        }
        let mut cfg = Config::default();
        cfg.data_dir = data.clone();
        cfg.scripts.dir = dir.path().join("scripts");
        cfg.plugins.dir = dir.path().join("plugins");
        cfg.media.roots = vec![data.join("media")];
        cfg.ingest.keys = vec!["live_default_key".into()];
        let db = Arc::new(Db::open(&data).expect("database"));
        db.conn()
            .execute(
                "INSERT INTO channels (id, owner, spec, started) VALUES ('default', 'config', NULL, 0)",
                [],
            )
            .expect("stopped row");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let plugins = crate::wasm::PluginHost::new(&cfg.plugins.dir, Default::default())
            .expect("plugin host");
        let shared = Arc::new(Shared {
            db: db.clone(),
            events: tokio::sync::mpsc::unbounded_channel().0,
            ingest: std::sync::OnceLock::new(),
            plugins: Arc::new(plugins),
            runtime: rt.handle().clone(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            file: "onair.toml".into(),
            changes: tokio::sync::broadcast::channel(64).0,
            profiles: Arc::new(cfg.profiles()),
            streamers: Arc::new(crate::streamers::Streamers::new(
                db,
                std::time::Duration::from_secs(3600),
                &cfg.accounts,
            )),
        });
        let channels = Channels::load(cfg.channel_specs(), &cfg, shared.clone()).expect("load");
        Fixture {
            channels,
            shared,
            cfg,
            dir,
            _rt: rt,
        }
    }

    /// The channels as a restart would load them from the same database.
    pub fn reload(&self) -> Arc<Channels> {
        Channels::load(self.cfg.channel_specs(), &self.cfg, self.shared.clone()).expect("reload")
    }

    /// How many rows of `table` belong to channel `id` (`channels` by id, others by channel).
    pub fn rows(&self, table: &str, id: &str) -> i64 {
        let column = if table == "channels" { "id" } else { "channel" };
        self.shared
            .db
            .conn()
            .query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?1"),
                [id],
                |r| r.get(0),
            )
            .expect("count")
    }
}
