//! `onair.store`: a small JSON key-value store shared by all scripts, in the `store` table of
//! the database (`data_dir/onair.db`). Values survive reloads and restarts; a `set` returns only
//! once its transaction is on disk. Reads come from a copy kept in memory (onair is the only
//! writer).
//!
//! Older onair kept the store in a JSON file (`scripts.store`, default `onair-store.json`): when
//! the table is empty and that file exists, it is imported once, in one transaction, and renamed
//! to `<name>.imported`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::db::{Db, DbError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("store import {path}: {message}")]
    Import { path: String, message: String },
}

pub struct Store {
    db: Arc<Db>,
    values: BTreeMap<String, Value>,
}

impl Store {
    /// Loads the store from `db`, importing `legacy_json` first when the table is empty and the
    /// file exists. A corrupt legacy file is an error (it is neither imported nor touched).
    pub fn open(db: Arc<Db>, legacy_json: Option<&Path>) -> Result<Store, StoreError> {
        let mut store = Store {
            values: load(&db)?,
            db,
        };
        if store.values.is_empty()
            && let Some(path) = legacy_json
            && path.exists()
        {
            store.import(path)?;
        }
        Ok(store)
    }

    fn import(&mut self, path: &Path) -> Result<(), StoreError> {
        let err = |message: String| StoreError::Import {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let values: BTreeMap<String, Value> =
            serde_json::from_slice(&bytes).map_err(|e| err(format!("not a JSON object: {e}")))?;
        {
            let mut conn = self.db.conn();
            let tx = conn.transaction().map_err(|e| self.db.err(e))?;
            for (k, v) in &values {
                tx.execute(
                    "INSERT OR REPLACE INTO store (key, value) VALUES (?1, ?2)",
                    (k, v.to_string()),
                )
                .map_err(|e| self.db.err(e))?;
            }
            tx.commit().map_err(|e| self.db.err(e))?;
        }
        let done = path.with_extension("json.imported");
        if let Err(e) = std::fs::rename(path, &done) {
            tracing::warn!(file = %path.display(), error = %e, "store imported, but the old file could not be renamed");
        }
        tracing::info!(file = %path.display(), keys = values.len(), db = %self.db.path().display(), "onair.store imported into the database");
        self.values = values;
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Sets (or, with `None`, deletes) a key. Returns once it is on disk; on an error nothing
    /// changed.
    pub fn set(&mut self, key: &str, value: Option<Value>) -> Result<(), StoreError> {
        {
            let conn = self.db.conn();
            match &value {
                Some(v) => conn.execute(
                    "INSERT INTO store (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, v.to_string()),
                ),
                None => conn.execute("DELETE FROM store WHERE key = ?1", [key]),
            }
            .map_err(|e| self.db.err(e))?;
        }
        match value {
            Some(v) => self.values.insert(key.to_string(), v),
            None => self.values.remove(key),
        };
        Ok(())
    }

    /// Every key and value, as stored.
    pub fn all(&self) -> &BTreeMap<String, Value> {
        &self.values
    }
}

/// Reads every key of the `store` table (values that are not JSON are skipped with a warning).
pub fn load(db: &Db) -> Result<BTreeMap<String, Value>, StoreError> {
    let conn = db.conn();
    let mut stmt = conn
        .prepare("SELECT key, value FROM store")
        .map_err(|e| db.err(e))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(|e| db.err(e))?;
    let mut values = BTreeMap::new();
    for row in rows {
        let (k, text) = row.map_err(|e| db.err(e))?;
        match serde_json::from_str(&text) {
            Ok(v) => {
                values.insert(k, v);
            }
            Err(e) => {
                tracing::warn!(key = %k, error = %e, "onair.store: a value is not JSON: skipped")
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_a_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(dir.path()).expect("db"));
        let mut s = Store::open(db, None).expect("empty");
        s.set("queue", Some(serde_json::json!(["a", "b"])))
            .expect("set");
        s.set("n", Some(serde_json::json!(3))).expect("set");
        s.set("n", None).expect("delete");
        drop(s);
        let db = Arc::new(Db::open(dir.path()).expect("db"));
        let s = Store::open(db, None).expect("reopen");
        assert_eq!(s.get("queue"), Some(&serde_json::json!(["a", "b"])));
        assert_eq!(s.get("n"), None);
    }

    #[test]
    fn a_legacy_json_file_is_imported_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let legacy = dir.path().join("onair-store.json");
        std::fs::write(&legacy, r#"{"a": 1, "b": {"c": [true]}}"#).expect("write");
        let db = Arc::new(Db::open(&dir.path().join("data")).expect("db"));
        let mut s = Store::open(db.clone(), Some(&legacy)).expect("import");
        assert_eq!(s.get("b"), Some(&serde_json::json!({"c": [true]})));
        assert!(!legacy.exists() && dir.path().join("onair-store.json.imported").exists());
        s.set("a", Some(serde_json::json!(2))).expect("set");
        // a file that shows up again later is not imported over newer values
        std::fs::write(&legacy, r#"{"a": 1}"#).expect("write");
        let s = Store::open(db, Some(&legacy)).expect("reopen");
        assert_eq!(s.get("a"), Some(&serde_json::json!(2)));
    }

    #[test]
    fn a_corrupt_legacy_file_is_an_error_not_a_wipe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("store.json");
        std::fs::write(&p, "{not json").expect("write");
        let db = Arc::new(Db::open(dir.path()).expect("db"));
        assert!(Store::open(db, Some(&p)).is_err());
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "{not json");
    }
}
