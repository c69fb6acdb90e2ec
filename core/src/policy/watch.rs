//! Hot reload: the scripts folder is watched (notify, debounced 150 ms) and changed `.lua` files
//! are handed to the policy thread, which reloads them.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use notify::RecommendedWatcher;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::Job;

/// Debounce window: editors write a file in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

pub type Watcher = Debouncer<RecommendedWatcher, RecommendedCache>;

pub fn watch(dir: &Path, jobs: mpsc::Sender<Job>) -> notify::Result<Watcher> {
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| match res {
        Ok(events) => {
            let mut paths: Vec<_> = events
                .iter()
                .flat_map(|e| e.paths.iter().cloned())
                .collect();
            paths.sort();
            paths.dedup();
            if !paths.is_empty() {
                let _ = jobs.send(Job::Changed(paths));
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "script watcher");
            }
        }
    })?;
    debouncer.watch(dir, notify::RecursiveMode::Recursive)?;
    Ok(debouncer)
}
