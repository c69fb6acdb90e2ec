//! Where run-time requests may reach on disk. Actions from the API, Lua scripts and WASM plugins
//! name paths: a recording's folder, fallback media, an overlay's PNG or font. Each is checked
//! here against folders the operator chose, after symlinks and `..` are resolved, so that a
//! policy can neither write recordings (and have their retention delete files) wherever onair
//! may write, nor put on air any file onair may read.
//!
//! - **Recording roots** (key `recording.roots`): `data_dir/recordings`, the folders of the
//!   `file://` destinations in the config file (up to the first `{…}` in the path: the operator
//!   wrote them), and the folders listed. A recording added or changed at run time elsewhere is
//!   refused.
//! - **Media roots** (key `media.roots`, default `["media"]`): the media gallery
//!   (`data_dir/media`), `scripts.dir` (a script's own PNGs and fonts), the folders of the
//!   configured fallback media, and the folders listed. The rest of `data_dir` (the database,
//!   the keys) never is. Fonts may also come from the system's font folders.
//!
//! A root covers everything under it. Roots are resolved once, when the channels load; a checked
//! path is resolved at each check (every symlink followed, `..` applied) and must end up under
//! a root. A part of the path that does not exist yet (a recording's new folder) is taken as
//! written and may not hold `..`; a dangling symlink is refused.

use std::path::{Component, Path, PathBuf};

use crate::action::{Action, LayerSource};
use crate::config::Config;

/// System folders text layers may take fonts from (besides the media roots).
pub const FONT_DIRS: &[&str] = &["/usr/share/fonts", "/usr/local/share/fonts"];

/// Why a path was refused. The message names the config key that would allow it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RootError {
    /// Under none of the roots.
    #[error(
        "{path} is outside the {what} folders ({roots}): to allow it, add its folder to {key} in the config file"
    )]
    Outside {
        path: String,
        what: &'static str,
        roots: String,
        key: &'static str,
    },
    /// Inside `data_dir` but not in a root there (the gallery): onair's database and keys.
    #[error(
        "{path} is inside data_dir ({dir}), which holds onair's database and keys: not usable as {what} (whatever {key} says)"
    )]
    Private {
        path: String,
        dir: String,
        what: &'static str,
        key: &'static str,
    },
    /// The path cannot be resolved (a dangling symlink, `..` after a missing folder, an I/O
    /// error).
    #[error("{path}: {message} (checked against {key})")]
    Unresolvable {
        path: String,
        message: String,
        key: &'static str,
    },
}

/// A set of folders a kind of path must lie under.
#[derive(Debug, Clone)]
pub struct Roots {
    /// The config key that adds folders, for messages.
    key: &'static str,
    /// What the paths are (`recording`, `media`), for messages.
    what: &'static str,
    /// Resolved folders.
    dirs: Vec<PathBuf>,
    /// Resolved folders refused even under a root, unless a deeper root lies inside them.
    private: Vec<PathBuf>,
}

/// `path` made absolute (against the working directory) with every symlink and `..` resolved.
/// The trailing part that does not exist yet is kept as written; it may hold no `..`, and a
/// dangling symlink is refused (its target could appear later, anywhere).
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut existing = abs.as_path();
    let mut missing: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut found) => {
                found.extend(missing.iter().rev());
                return Ok(found);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if existing.symlink_metadata().is_ok() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{} is a symlink to nothing", existing.display()),
                    ));
                }
                match existing.components().next_back() {
                    Some(Component::Normal(name)) => missing.push(name),
                    Some(Component::CurDir) => {}
                    Some(Component::ParentDir) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "'..' after a folder that does not exist",
                        ));
                    }
                    _ => return Err(e),
                }
                existing = existing.parent().ok_or(e)?;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Roots {
    /// `dirs` (and `private`) resolved now; one that cannot be resolved is left out, logged.
    pub fn new(
        key: &'static str,
        what: &'static str,
        dirs: impl IntoIterator<Item = PathBuf>,
        private: impl IntoIterator<Item = PathBuf>,
    ) -> Roots {
        let resolve_all = |list: Vec<PathBuf>| {
            let mut out: Vec<PathBuf> = Vec::new();
            for d in list {
                match resolve(&d) {
                    Ok(r) if !out.contains(&r) => out.push(r),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(key, folder = %d.display(), error = %e, "folder left out of the roots")
                    }
                }
            }
            out
        };
        Roots {
            key,
            what,
            dirs: resolve_all(dirs.into_iter().collect()),
            private: resolve_all(private.into_iter().collect()),
        }
    }

    /// The resolved folders.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Whether `path` lies under a root (and not in a private folder). Errors name `key`.
    pub fn check(&self, path: &Path) -> Result<(), RootError> {
        let shown = path.display().to_string();
        let resolved = resolve(path).map_err(|e| RootError::Unresolvable {
            path: shown.clone(),
            message: e.to_string(),
            key: self.key,
        })?;
        let Some(root) = self
            .dirs
            .iter()
            .filter(|d| resolved.starts_with(d))
            .max_by_key(|d| d.components().count())
        else {
            let roots: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            return Err(RootError::Outside {
                path: shown,
                what: self.what,
                roots: if roots.is_empty() {
                    "none".into()
                } else {
                    roots.join(", ")
                },
                key: self.key,
            });
        };
        if let Some(p) = self
            .private
            .iter()
            // a root strictly inside a private folder (data_dir/media) opens only itself; a
            // root that is the private folder itself (media.roots = [data_dir]) opens nothing
            .find(|p| {
                resolved.starts_with(p) && (root.as_path() == p.as_path() || !root.starts_with(p))
            })
        {
            return Err(RootError::Private {
                path: shown,
                dir: p.display().to_string(),
                what: self.what,
                key: self.key,
            });
        }
        Ok(())
    }
}

/// The folder a recording URL writes to, up to its first `{…}` (`file:///rec/{channel}/{utc}.mp4`
/// → `/rec`). `None` for a URL that is not a recording, or whose folder would be the whole file
/// system (`file:///{channel}/{utc}.mp4`: name a folder in `recording.roots` instead).
pub fn recording_folder(url: &str) -> Option<PathBuf> {
    let path = Path::new(url.strip_prefix("file://")?);
    let mut dir = PathBuf::new();
    for c in path.parent()?.components() {
        if c.as_os_str().to_string_lossy().contains('{') {
            break;
        }
        dir.push(c);
    }
    dir.parent().is_some().then_some(dir)
}

/// The folder `media` is in (`brb.png` → the working directory).
fn folder_of(media: &Path) -> PathBuf {
    match media.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What an action may still do once its paths are checked: the action (whole, or without the
/// refused part), and what was refused and why.
#[derive(Debug)]
pub struct Screened {
    pub action: Option<Action>,
    pub refused: Option<Refusal>,
}

/// A path refused in an action: what happens instead, and why.
#[derive(Debug, thiserror::Error)]
#[error("{consequence}: {error}")]
pub struct Refusal {
    /// e.g. `fallback media refused, the fallback is unchanged`.
    pub consequence: &'static str,
    pub error: RootError,
}

/// Every root set, built once from the config.
#[derive(Debug, Clone)]
pub struct Confinement {
    pub recordings: Roots,
    pub media: Roots,
    pub fonts: Roots,
}

impl Confinement {
    /// The roots `cfg` allows (see the module doc).
    pub fn new(cfg: &Config) -> Confinement {
        let channels = cfg.channel_specs();
        let recordings = std::iter::once(cfg.data_dir.join("recordings"))
            .chain(
                channels
                    .iter()
                    .flat_map(|c| &c.destinations)
                    .filter_map(|d| recording_folder(&d.url)),
            )
            .chain(cfg.recording.roots.iter().cloned());
        let media: Vec<PathBuf> = [cfg.data_dir.join("media"), cfg.scripts.dir.clone()]
            .into_iter()
            .chain(
                channels
                    .iter()
                    .filter_map(|c| c.fallback.media.as_deref())
                    .chain(cfg.fallback.media.as_deref())
                    .map(folder_of),
            )
            .chain(cfg.media.roots.iter().cloned())
            .collect();
        let private = [cfg.data_dir.clone()];
        Confinement {
            recordings: Roots::new("recording.roots", "recording", recordings, []),
            fonts: Roots::new(
                "media.roots",
                "media and font",
                media
                    .iter()
                    .cloned()
                    .chain(FONT_DIRS.iter().map(PathBuf::from)),
                private.clone(),
            ),
            media: Roots::new("media.roots", "media", media, private),
        }
    }

    /// Refuses a recording (`file://` URL) of channel `channel`'s destination `destination`
    /// whose folder is outside the recording roots; any other URL passes.
    pub fn recording(
        &self,
        url: &crate::config::DestinationUrl,
        channel: &str,
        destination: &str,
    ) -> Result<(), RootError> {
        if !url.is_recording() {
            return Ok(());
        }
        let pattern = crate::media::output::recording::Pattern::new(url, channel, destination)
            .map_err(|message| RootError::Unresolvable {
                path: url.as_str().into(),
                message,
                key: self.recordings.key,
            })?;
        self.recordings.check(&pattern.dir)
    }

    /// Fallback media named at run time.
    pub fn fallback_media(&self, path: &Path) -> Result<(), RootError> {
        self.media.check(path)
    }

    /// Checks the paths `action` names (fallback media, an overlay's PNG or font). A switch
    /// whose media is refused still switches, to the fallback as it is: the stream comes first.
    pub fn screen(&self, action: Action) -> Screened {
        let refused = |consequence, error| Screened {
            action: None,
            refused: Some(Refusal { consequence, error }),
        };
        let allowed = |action| Screened {
            action: Some(action),
            refused: None,
        };
        match action {
            Action::Switch {
                to,
                media: Some(media),
                reason,
                session,
            } => match self.media.check(&media) {
                Ok(()) => allowed(Action::Switch {
                    to,
                    media: Some(media),
                    reason,
                    session,
                }),
                Err(error) => Screened {
                    action: Some(Action::Switch {
                        to,
                        media: None,
                        reason,
                        session,
                    }),
                    refused: Some(Refusal {
                        consequence: "switch: fallback media refused, the fallback is unchanged (the switch goes ahead)",
                        error,
                    }),
                },
            },
            Action::SetFallback { media: Some(media) } => match self.media.check(&media) {
                Ok(()) => allowed(Action::SetFallback { media: Some(media) }),
                Err(e) => refused("fallback media refused, the fallback is unchanged", e),
            },
            Action::OverlaySet { layer } => {
                let checked = match &layer.source {
                    LayerSource::Png { path } => self.media.check(path),
                    LayerSource::Text {
                        font: Some(font), ..
                    } => self.fonts.check(font),
                    _ => Ok(()),
                };
                match checked {
                    Ok(()) => allowed(Action::OverlaySet { layer }),
                    Err(e) => refused("overlay layer not shown", e),
                }
            }
            Action::OnChannel { channel, action } => {
                let Screened { action, refused } = self.screen(*action);
                Screened {
                    action: action.map(|a| Action::OnChannel {
                        channel,
                        action: Box::new(a),
                    }),
                    refused,
                }
            }
            other => allowed(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Layer;

    fn roots(dirs: &[&Path], private: &[&Path]) -> Roots {
        Roots::new(
            "media.roots",
            "media",
            dirs.iter().map(|d| d.to_path_buf()),
            private.iter().map(|d| d.to_path_buf()),
        )
    }

    #[test]
    fn symlinks_and_dot_dot_do_not_escape_a_root() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("media");
        let outside = t.path().join("secret");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(root.join("ok.png"), b"x").expect("write");
        std::fs::write(outside.join("key.png"), b"x").expect("write");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
        std::os::unix::fs::symlink(outside.join("key.png"), root.join("key.png")).expect("symlink");
        std::os::unix::fs::symlink(outside.join("gone.png"), root.join("dangling.png"))
            .expect("symlink");
        let r = roots(&[&root], &[]);
        assert_eq!(r.check(&root.join("ok.png")), Ok(()));
        assert_eq!(
            r.check(&root.join("new/later.png")),
            Ok(()),
            "not there yet"
        );
        for bad in [
            outside.join("key.png"),
            root.join("../secret/key.png"),
            root.join("link/key.png"),
            root.join("key.png"),
            PathBuf::from("/etc/passwd"),
        ] {
            match r.check(&bad) {
                Err(RootError::Outside { key, .. }) => assert_eq!(key, "media.roots"),
                other => panic!("{}: {other:?}", bad.display()),
            }
        }
        for bad in [
            root.join("dangling.png"),
            root.join("new/../../secret/key.png"),
        ] {
            assert!(
                matches!(r.check(&bad), Err(RootError::Unresolvable { .. })),
                "{}",
                bad.display()
            );
        }
        let e = r.check(Path::new("/etc/passwd")).expect_err("outside");
        assert!(
            e.to_string().contains("media.roots") && e.to_string().contains("/etc/passwd"),
            "{e}"
        );
    }

    #[test]
    fn data_dir_is_private_except_for_a_root_inside_it() {
        let t = tempfile::tempdir().expect("tempdir");
        let data = t.path().join("onair-data");
        std::fs::create_dir_all(data.join("media")).expect("mkdir");
        std::fs::write(data.join("onair.db"), b"x").expect("write");
        std::fs::write(data.join("media/brb.png"), b"x").expect("write");
        // the working directory is a root (the config's fallback media is there), data_dir is in it
        let r = roots(&[t.path(), &data.join("media")], &[&data]);
        assert_eq!(r.check(&data.join("media/brb.png")), Ok(()));
        assert_eq!(r.check(&t.path().join("other.png")), Ok(()));
        assert!(matches!(
            r.check(&data.join("onair.db")),
            Err(RootError::Private { .. })
        ));
        assert!(matches!(
            r.check(&data.join("media/../stream-key")),
            Err(RootError::Private { .. })
        ));
        // a root that is data_dir itself opens nothing of it (review: it opened the database)
        let r = roots(&[&data], &[&data]);
        assert!(matches!(
            r.check(&data.join("onair.db")),
            Err(RootError::Private { .. })
        ));
    }

    #[test]
    fn the_config_decides_the_roots() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = |s: &str| t.path().join(s);
        let toml = format!(
            "data_dir = \"{data}\"\n[fallback]\nmedia = \"{fb}\"\n[scripts]\ndir = \"{scripts}\"\n\
             [media]\nroots = [\"{extra}\"]\n[recording]\nroots = [\"{rec_extra}\"]\n\
             [[destination]]\nname = \"r\"\nurl = \"file://{rec}/{{channel}}/{{utc}}.mp4\"\n",
            data = p("data").display(),
            fb = p("fallback/brb.png").display(),
            scripts = p("scripts").display(),
            extra = p("extra").display(),
            rec_extra = p("rec-extra").display(),
            rec = p("rec").display(),
        );
        let cfg = Config::from_toml(&toml, "onair.toml").expect("config");
        let c = Confinement::new(&cfg);
        let resolved = |s: &str| resolve(&p(s)).expect("resolve");
        assert_eq!(
            c.recordings.dirs(),
            [
                resolved("data/recordings"),
                resolved("rec"),
                resolved("rec-extra")
            ]
        );
        assert_eq!(
            c.media.dirs(),
            [
                resolved("data/media"),
                resolved("scripts"),
                resolved("fallback"),
                resolved("extra")
            ]
        );
        let checked = |u: &str| crate::config::DestinationUrl::parse(u).expect("url");
        let url = |dir: &str| {
            checked(&format!(
                "file://{}/{{channel}}-{{utc}}.mp4",
                p(dir).display()
            ))
        };
        assert_eq!(c.recording(&url("rec/main"), "main", "r"), Ok(()));
        assert_eq!(c.recording(&url("data/recordings"), "main", "r"), Ok(()));
        assert_eq!(
            c.recording(&checked("rtmp://anywhere/app/key"), "main", "r"),
            Ok(())
        );
        assert_eq!(recording_folder("file:///{channel}/{utc}.mp4"), None);
        let e = c
            .recording(&checked("file:///etc/cron.d/{utc}.mp4"), "main", "r")
            .expect_err("outside");
        assert!(e.to_string().contains("recording.roots"), "{e}");
        assert!(c.fonts.check(Path::new("/usr/share/fonts/x.ttf")).is_ok());
        assert!(c.media.check(Path::new("/usr/share/fonts/x.ttf")).is_err());
    }

    #[test]
    fn actions_lose_only_the_refused_path() {
        let t = tempfile::tempdir().expect("tempdir");
        let cfg = Config {
            data_dir: t.path().join("data"),
            scripts: crate::config::ScriptsConfig {
                dir: t.path().join("scripts"),
                ..Default::default()
            },
            ..Config::default()
        };
        let c = Confinement::new(&cfg);
        let inside = t.path().join("scripts/brb.png");
        let switch = |media: Option<PathBuf>| Action::Switch {
            to: crate::event::Source::Fallback,
            media,
            reason: "stall".into(),
            session: None,
        };
        // allowed: unchanged
        let s = c.screen(switch(Some(inside.clone())));
        assert_eq!(
            (s.action, s.refused.is_none()),
            (Some(switch(Some(inside.clone()))), true)
        );
        // a switch still switches, without the media
        let s = c.screen(switch(Some("/etc/passwd".into())));
        assert_eq!(s.action, Some(switch(None)));
        let why = s.refused.expect("refused").to_string();
        assert!(
            why.contains("fallback is unchanged") && why.contains("media.roots"),
            "{why}"
        );
        // set-fallback and overlays with a refused path do nothing, also on another channel
        let layer = |source| Layer {
            name: "l".into(),
            source,
            x: 0,
            y: 0,
            width: 0,
            height: 0,
            z: 0,
            live_only: false,
        };
        for a in [
            Action::SetFallback {
                media: Some("/etc/shadow".into()),
            },
            Action::OnChannel {
                channel: "b".into(),
                action: Box::new(Action::SetFallback {
                    media: Some(t.path().join("data/onair.db")),
                }),
            },
            Action::OverlaySet {
                layer: layer(LayerSource::Png {
                    path: "/home/someone/photo.png".into(),
                }),
            },
            Action::OverlaySet {
                layer: layer(LayerSource::Text {
                    text: "x".into(),
                    size_px: 10,
                    color: 0,
                    font: Some("/root/.ssh/id_ed25519".into()),
                }),
            },
        ] {
            let s = c.screen(a.clone());
            assert!(s.action.is_none() && s.refused.is_some(), "{a:?}");
        }
        // the slate, the default font and pathless actions pass
        for a in [
            Action::SetFallback { media: None },
            Action::OverlaySet {
                layer: layer(LayerSource::Text {
                    text: "x".into(),
                    size_px: 10,
                    color: 0,
                    font: None,
                }),
            },
            Action::ChannelStop,
        ] {
            let s = c.screen(a.clone());
            assert_eq!((s.action, s.refused.is_none()), (Some(a), true));
        }
    }
}
