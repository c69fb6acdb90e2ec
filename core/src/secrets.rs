//! Secrets onair makes for itself on first start, so that it is closed by default: a stream key
//! when `ingest.keys` is empty, and the preview key when `http.preview_key` is unset. Each is
//! one file in `data_dir` (mode 0600), made once and read on every later start.

use std::io::Write;
use std::path::{Path, PathBuf};

/// File of the generated stream key, in `data_dir`.
pub const STREAM_KEY_FILE: &str = "stream-key";
/// File of the generated preview key, in `data_dir`.
pub const PREVIEW_KEY_FILE: &str = "preview-key";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("data_dir: cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is empty or not one line of letters, digits, '_' and '-': delete it to generate a new one"
    )]
    Malformed { path: PathBuf },
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// `prefix` + 32 random hex digits (128 bits), e.g. `live_3f9c…`.
pub fn generate(prefix: &str) -> Result<String, SecretError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{prefix}{hex}"))
}

/// The secret in `data_dir/file`, generated with `prefix` and stored if the file does not
/// exist. Returns it and whether it was made now.
pub fn load_or_create(
    data_dir: &Path,
    file: &str,
    prefix: &str,
) -> Result<(String, bool), SecretError> {
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let s = text.trim().to_string();
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(SecretError::Malformed { path });
            }
            Ok((s, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            private_dir(data_dir).map_err(|source| SecretError::CreateDir {
                path: data_dir.to_path_buf(),
                source,
            })?;
            let secret = generate(prefix)?;
            write_private(&path, &secret)?;
            Ok((secret, true))
        }
        Err(source) => Err(SecretError::Read { path, source }),
    }
}

/// Creates `dir` (and its parents) as onair's private folder, mode 0700: it holds the database
/// with the platforms' stream keys, the generated keys and the uploaded media. An existing
/// folder that others may read or enter is narrowed to 0700 (logged).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        tracing::info!(
            dir = %dir.display(),
            "data_dir was mode {:o}: narrowed to 0700 (it holds the platforms' stream keys)",
            mode & 0o777
        );
    }
    Ok(())
}

/// Narrows `path` to mode 0600 if it exists (the database and its WAL files).
pub fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `text` to `path` readable by the owner only, atomically (temp file + rename).
fn write_private(path: &Path, text: &str) -> Result<(), SecretError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let err = |source| SecretError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(format!("{text}\n").as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, made) = load_or_create(dir.path(), STREAM_KEY_FILE, "live_").expect("create");
        assert!(made && a.starts_with("live_") && a.len() == 37, "{a}");
        let (b, made) = load_or_create(dir.path(), STREAM_KEY_FILE, "live_").expect("read");
        assert!(!made);
        assert_eq!(a, b);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(STREAM_KEY_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(generate("").expect("gen"), generate("").expect("gen"));
    }

    #[test]
    fn data_dir_is_private_even_when_it_existed_open() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let made = root.path().join("a/b");
        private_dir(&made).expect("create");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&made), 0o700);
        let open = root.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&open).expect("narrow");
        assert_eq!(mode(&open), 0o700);
    }

    #[test]
    fn a_tampered_file_is_an_error_not_a_weak_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(STREAM_KEY_FILE), "  \n").expect("write");
        assert!(matches!(
            load_or_create(dir.path(), STREAM_KEY_FILE, "live_"),
            Err(SecretError::Malformed { .. })
        ));
    }
}
