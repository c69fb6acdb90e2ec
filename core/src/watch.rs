//! Hot reload: a folder (scripts, plugins) is watched with notify, debounced 150 ms, and the
//! paths whose content changed are handed to a callback that reloads them, 150–300 ms after the
//! last write.
//!
//! Only events that can change what a file holds count: create, data write, rename onto or away,
//! delete, and a close after writing. Opening or reading a file (which every load does) and
//! metadata changes (`touch`, `chmod`) are ignored, so a load never triggers another load. The
//! hosts also skip a reload when a file's content hash is unchanged (an editor that saves the
//! same bytes, or one save seen as several events).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecommendedWatcher;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

/// Debounce window: editors write a file in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// How often the debouncer's thread looks for settled events: a change is handed on 150–300 ms
/// after the last write. (The library's default, a quarter of the window, woke the thread 27
/// times a second per watched folder, for nothing most of the time.)
pub const TICK: Duration = DEBOUNCE;

pub type Watcher = Debouncer<RecommendedWatcher, RecommendedCache>;

/// Whether an event of this kind can change a file's content (or whether it exists).
pub fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any | EventKind::Other => false,
    }
}

/// A content hash for "did this file change since it was loaded" (not cryptographic; compared
/// within one process only).
pub fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Watches `dir` recursively; `on_change` gets the paths whose content changed (deduplicated,
/// sorted).
pub fn watch(
    dir: &Path,
    on_change: impl Fn(Vec<PathBuf>) + Send + 'static,
) -> notify::Result<Watcher> {
    let handle = move |res: DebounceEventResult| match res {
        Ok(events) => {
            let mut paths: Vec<_> = events
                .iter()
                .filter(|e| changes_content(&e.kind))
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
    };
    let mut debouncer = new_debouncer(DEBOUNCE, Some(TICK), handle)?;
    debouncer.watch(dir, notify::RecursiveMode::Recursive)?;
    Ok(debouncer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    #[test]
    fn reads_and_metadata_are_not_changes() {
        for k in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ] {
            assert!(!changes_content(&k), "{k:?} counted as a change");
        }
    }

    #[test]
    fn writes_renames_and_deletes_are_changes() {
        for k in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(changes_content(&k), "{k:?} not counted as a change");
        }
    }
}
