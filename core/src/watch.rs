//! Hot reload: a folder (scripts, plugins) is watched with notify, debounced 150 ms, and the
//! changed paths are handed to a callback that reloads them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecommendedWatcher;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

/// Debounce window: editors write a file in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

pub type Watcher = Debouncer<RecommendedWatcher, RecommendedCache>;

/// Watches `dir` recursively; `on_change` gets the changed paths (deduplicated, sorted).
pub fn watch(
    dir: &Path,
    on_change: impl Fn(Vec<PathBuf>) + Send + 'static,
) -> notify::Result<Watcher> {
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| match res {
        Ok(events) => {
            let mut paths: Vec<_> = events
                .iter()
                .flat_map(|e| e.paths.iter().cloned())
                .collect();
            paths.sort();
            paths.dedup();
            if !paths.is_empty() {
                on_change(paths);
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "file watcher");
            }
        }
    })?;
    debouncer.watch(dir, notify::RecursiveMode::Recursive)?;
    Ok(debouncer)
}
