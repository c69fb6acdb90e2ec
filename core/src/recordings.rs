//! The ledger of the files recordings wrote (table `recording_files` in `data_dir/onair.db`):
//! retention (`max_total_gib`) deletes only files listed here for the recording's channel and
//! destination, so a file in the folder that onair did not write stays, whatever its name.
//!
//! Why the database and not a manifest file in the recording's folder: `data_dir` is onair's own
//! (mode 0700), so nobody else who can write to a shared recording folder can add a line that
//! gets their neighbour's files deleted; a row is committed (WAL, `synchronous = FULL`) as its
//! file opens, off the streaming thread, with the retention that follows; and the folder stays
//! free of onair's bookkeeping. The cost: a file whose row never made it (a crash in the
//! milliseconds between, a database error: logged), or written before this ledger existed, or
//! under another channel or destination name, is never deleted by retention; delete those by
//! hand. Every failure keeps files rather than deleting one that is not onair's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::Db;
use crate::media::output::recording::Ledger;

/// [`Ledger`] over the database.
pub struct DbLedger(pub Arc<Db>);

impl Ledger for DbLedger {
    fn wrote(&self, channel: &str, destination: &str, path: &Path) -> Result<(), String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.0
            .conn()
            .execute(
                "INSERT INTO recording_files (path, channel, destination, created_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path) DO UPDATE
                 SET channel = excluded.channel, destination = excluded.destination,
                     created_at = excluded.created_at",
                (path.to_string_lossy(), channel, destination, now),
            )
            .map(|_| ())
            .map_err(|e| self.0.err(e).to_string())
    }

    fn written(&self, channel: &str, destination: &str) -> Result<BTreeSet<PathBuf>, String> {
        let conn = self.0.conn();
        conn.prepare("SELECT path FROM recording_files WHERE channel = ?1 AND destination = ?2")
            .and_then(|mut st| {
                st.query_map((channel, destination), |r| r.get::<_, String>(0))
                    .and_then(|rows| rows.map(|r| r.map(PathBuf::from)).collect())
            })
            .map_err(|e| self.0.err(e).to_string())
    }

    fn forget(&self, path: &Path) {
        if let Err(e) = self.0.conn().execute(
            "DELETE FROM recording_files WHERE path = ?1",
            [path.to_string_lossy()],
        ) {
            tracing::warn!(file = %path.display(), error = %self.0.err(e), "recording ledger: row not removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::output::recording::{Pattern, retain};

    #[test]
    fn a_foreign_mp4_in_the_folder_survives_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(&dir.path().join("data")).expect("db"));
        let ledger = DbLedger(db.clone());
        let rec = dir.path().join("rec");
        std::fs::create_dir_all(&rec).expect("mkdir");
        let url = format!("file://{}/{{channel}}-{{utc}}.mp4", rec.display());
        let p = Pattern::new(
            &crate::config::DestinationUrl::parse(&url).expect("url"),
            "main",
            "archive",
        )
        .expect("pattern");
        // someone's own video, named like a recording and older than all of them
        let foreign = rec.join("main-2001-01-01T00-00-00Z.mp4");
        std::fs::write(&foreign, vec![0u8; 4096]).expect("write");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut own = Vec::new();
        for utc in ["2026-01-01T00-00-00Z", "2026-01-01T01-00-00Z"] {
            let path = p.next_path(utc);
            ledger.wrote("main", "archive", &path).expect("wrote");
            std::fs::write(&path, vec![0u8; 1024]).expect("write");
            std::thread::sleep(std::time::Duration::from_millis(20));
            own.push(path);
        }
        let keep = p.next_path("2026-01-01T02-00-00Z");
        ledger.wrote("main", "archive", &keep).expect("wrote");
        // a limit below everything: all it may delete goes, but only that
        let deleted = retain(&p, 1, &keep, &ledger, "main", "archive").expect("retain");
        assert_eq!(deleted, own);
        assert!(
            foreign.exists(),
            "retention deleted a file onair did not write"
        );
        assert_eq!(
            ledger.written("main", "archive").expect("read"),
            [keep.clone()].into_iter().collect()
        );
        assert!(ledger.written("main", "other").expect("read").is_empty());
        // the ledger outlives the process
        drop(ledger);
        drop(db);
        let db = Arc::new(Db::open(&dir.path().join("data")).expect("reopen"));
        assert_eq!(
            DbLedger(db).written("main", "archive").expect("read"),
            [keep].into_iter().collect()
        );
    }
}
