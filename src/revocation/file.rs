//! The embedded store: an append-only file of JSON lines, one entry each.
//!
//! Durability: a logout is acknowledged only after its line is written and `fdatasync`ed; when the
//! file is created, its directory is fsynced too, so the file itself survives a power loss.
//! A crash mid-write can leave only the last line torn, which loading ignores; a bad line anywhere
//! else stops loading rather than silently forget a revocation. Compaction rewrites the live
//! entries to a temporary file, fsyncs it, renames it over the log and fsyncs the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Entry, RevocationStore, StoreError, StoreFuture};

/// A revocation log on local disk.
pub struct FileStore {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl FileStore {
    /// Opens (or creates) the log at `path`, creating its directory with mode 0700.
    pub fn open(path: &Path) -> io::Result<FileStore> {
        let dir = parent(path);
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        let existed = path.exists();
        let file = open_append(path)?;
        if !existed {
            file.sync_all()?;
            sync_dir(&dir)?;
        }
        Ok(FileStore { path: path.to_owned(), file: Arc::new(Mutex::new(file)) })
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // On Unix a directory is fsynced through a read-only handle.
    File::open(dir)?.sync_all()
}

/// Parses the log; tolerates only a torn last line.
fn parse(text: &str, now: u64) -> io::Result<Vec<Entry>> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Entry>(line) {
            Ok(entry) if entry.until() > now => entries.push(entry),
            Ok(_) => {}
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {
                tracing::warn!("ignoring a torn last line in the revocation file (a crash mid-write)");
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("line {}: {e}", i + 1))),
        }
    }
    Ok(entries)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(StoreError::Io),
        Err(e) => Err(StoreError::Io(io::Error::other(e.to_string()))),
    }
}

impl RevocationStore for FileStore {
    fn load(&self, now: u64) -> StoreFuture<'_, Vec<Entry>> {
        let path = self.path.clone();
        Box::pin(blocking(move || parse(&fs::read_to_string(&path)?, now)))
    }

    fn append<'a>(&'a self, entries: &'a [Entry]) -> StoreFuture<'a, ()> {
        let mut lines = String::new();
        for entry in entries {
            lines.push_str(&serde_json::to_string(entry).expect("entries serialise"));
            lines.push('\n');
        }
        let file = self.file.clone();
        Box::pin(blocking(move || {
            let mut file = file.lock().expect("revocation file lock");
            file.write_all(lines.as_bytes())?;
            file.sync_data()
        }))
    }

    fn compact(&self, now: u64) -> StoreFuture<'_, ()> {
        let path = self.path.clone();
        let file = self.file.clone();
        Box::pin(blocking(move || {
            let mut current = file.lock().expect("revocation file lock");
            let entries = parse(&fs::read_to_string(&path)?, now)?;
            let tmp = path.with_extension("compacting");
            {
                let mut out = OpenOptions::new();
                out.create(true).write(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut out, 0o600);
                let mut out = out.open(&tmp)?;
                for entry in &entries {
                    writeln!(out, "{}", serde_json::to_string(entry).expect("entries serialise"))?;
                }
                out.sync_all()?;
            }
            fs::rename(&tmp, &path)?;
            sync_dir(&parent(&path))?;
            *current = open_append(&path)?;
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cognito-authz-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn entries_survive_reopening_and_compaction_drops_expired_ones() {
        let path = dir("file-store").join("revocations.jsonl");
        let store = FileStore::open(&path).unwrap();
        let entries =
            vec![Entry::Jti { id: "a".into(), until: NOW + 10 }, Entry::Origin { id: "b".into(), until: NOW + 1000 }];
        store.append(&entries).await.unwrap();
        drop(store);
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.load(NOW).await.unwrap(), entries);
        store.compact(NOW + 100).await.unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
        store.append(&[Entry::Jti { id: "c".into(), until: NOW + 500 }]).await.unwrap();
        assert_eq!(store.load(NOW + 100).await.unwrap().len(), 2, "appends go to the compacted file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_torn_last_line_is_ignored_but_a_bad_middle_line_is_an_error() {
        let good = r#"{"kind":"jti","id":"a","until":1800000010}"#;
        assert_eq!(parse(&format!("{good}\n{{\"kind\":\"jt"), NOW).unwrap().len(), 1);
        assert!(parse(&format!("{{\"kind\":\"jt\n{good}\n"), NOW).is_err());
    }
}
