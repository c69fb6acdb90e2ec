//! The embedded database: SQLite (rusqlite, bundled) in `data_dir/onair.db`, for what onair keeps
//! between runs and what the API and scripts change at run time.
//!
//! - Schema migrations are the files in `core/migrations/`, applied in order inside one
//!   transaction each and recorded in `PRAGMA user_version`; a database newer than this onair is
//!   refused rather than misread.
//! - WAL journal with `synchronous = FULL`: a write that returned is on disk, so a crash (even a
//!   power cut) loses nothing that was acknowledged, and readers never block the writer.
//! - One connection behind a mutex. Writes are small and rare (API edits, `onair.store.set`), so
//!   nothing waits long; nothing holds it across I/O other than SQLite's own.

use parking_lot::{Mutex, MutexGuard};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// The database file inside `data_dir`.
pub const DB_FILE: &str = "onair.db";

/// Migrations, oldest first: `user_version` N means the first N are applied.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_store", include_str!("../migrations/0001_store.sql")),
    (
        "0002_destinations",
        include_str!("../migrations/0002_destinations.sql"),
    ),
    (
        "0003_channels",
        include_str!("../migrations/0003_channels.sql"),
    ),
    (
        "0004_channel_state",
        include_str!("../migrations/0004_channel_state.sql"),
    ),
    ("0005_users", include_str!("../migrations/0005_users.sql")),
    (
        "0006_destination_options",
        include_str!("../migrations/0006_destination_options.sql"),
    ),
    (
        "0007_streamers",
        include_str!("../migrations/0007_streamers.sql"),
    ),
    (
        "0008_recording_files",
        include_str!("../migrations/0008_recording_files.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("data_dir: cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make {path} readable by its owner only (mode 0600): {source}")]
    Private {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this onair knows ({known}): run the newer onair, or restore a backup"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

pub struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Db {
    /// Opens (or creates) `data_dir/onair.db` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Db, DbError> {
        crate::secrets::private_dir(data_dir).map_err(|source| DbError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let sql = |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        // the platforms' stream keys live here: owner only (SQLite gives its -wal and -shm
        // files the database's mode; older ones are narrowed too)
        for file in [
            DB_FILE.to_string(),
            format!("{DB_FILE}-wal"),
            format!("{DB_FILE}-shm"),
        ] {
            let p = data_dir.join(file);
            crate::secrets::private_file(&p)
                .map_err(|source| DbError::Private { path: p, source })?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        migrate(&mut conn, &path)?;
        Ok(Db {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// A database in memory, for `onair check` and tests: same schema, nothing kept.
    pub fn memory() -> Result<Db, DbError> {
        let path = PathBuf::from(":memory:");
        let mut conn = Connection::open_in_memory().map_err(|source| DbError::Sqlite {
            path: path.clone(),
            source,
        })?;
        migrate(&mut conn, &path)?;
        Ok(Db {
            path,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for one short operation.
    pub fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// Wraps a rusqlite error with this database's path.
    pub fn err(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let sql = |source| DbError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    for (i, (name, text)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(text).map_err(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(db = %path.display(), migration = name, "database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_and_its_folder_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        let db = Db::open(&dir).expect("open");
        db.conn()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
        assert_eq!(mode(&dir.join(format!("{DB_FILE}-wal"))), 0o600);
    }

    #[test]
    fn migrates_once_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).expect("open");
        let v: i64 = db
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(v, MIGRATIONS.len() as i64);
        drop(db);
        // a second open applies nothing and keeps the data
        let db = Db::open(dir.path()).expect("reopen");
        db.conn()
            .execute("INSERT INTO store (key, value) VALUES ('k', '1')", [])
            .expect("insert");
        db.conn()
            .pragma_update(None, "user_version", 99)
            .expect("bump");
        drop(db);
        assert!(matches!(
            Db::open(dir.path()),
            Err(DbError::TooNew { found: 99, .. })
        ));
    }
}
