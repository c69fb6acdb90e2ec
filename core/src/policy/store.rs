//! `onair.store`: a small JSON key-value store shared by all scripts. Values survive reloads and
//! restarts. Every change is written to disk atomically (a temporary file in the same folder,
//! then a rename), so a crash leaves the old or the new file, never a torn one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {message}")]
    Io { path: String, message: String },
}

pub struct Store {
    path: PathBuf,
    values: BTreeMap<String, Value>,
}

impl Store {
    /// Opens the store at `path`. A missing file is an empty store; an unreadable or corrupt one
    /// is an error (it is not overwritten).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let values = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Io {
                path: path.display().to_string(),
                message: format!("not a JSON object: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(StoreError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        Ok(Store {
            path: path.to_path_buf(),
            values,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Sets (or, with `None`, deletes) a key and writes the store to disk.
    pub fn set(&mut self, key: &str, value: Option<Value>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.values.insert(key.to_string(), v),
            None => self.values.remove(key),
        };
        self.write()
    }

    fn write(&self) -> Result<(), StoreError> {
        let err = |e: &dyn std::fmt::Display| StoreError::Io {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| err(&e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| err(&e))?;
        serde_json::to_writer_pretty(&mut tmp, &self.values).map_err(|e| err(&e))?;
        tmp.as_file().sync_all().map_err(|e| err(&e))?;
        tmp.persist(&self.path).map_err(|e| err(&e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_a_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("state/store.json");
        let mut s = Store::open(&p).expect("empty");
        s.set("queue", Some(serde_json::json!(["a", "b"])))
            .expect("set");
        s.set("n", Some(serde_json::json!(3))).expect("set");
        s.set("n", None).expect("delete");
        let s = Store::open(&p).expect("reopen");
        assert_eq!(s.get("queue"), Some(&serde_json::json!(["a", "b"])));
        assert_eq!(s.get("n"), None);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_wipe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("store.json");
        std::fs::write(&p, "{not json").expect("write");
        assert!(Store::open(&p).is_err());
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "{not json");
    }
}
