//! The embedded store: an append-only file of JSON lines, one entry each.
//!
//! Durability: a logout is acknowledged only after its line is written and `fdatasync`ed; when the
//! file is created, its directory is fsynced too, so the file itself survives a power loss.
//! A crash mid-write can leave only the last line torn: opening cuts it off (or ends it, when it
//! is a whole entry that lacks only its newline) before anything is appended, so the next line
//! starts on a line of its own; a bad line anywhere else stops loading rather than silently
//! forget a revocation. Compaction writes the live entries to a temporary file, fsyncs it,
//! renames it over the log, makes it the file appends go to, and only then fsyncs the directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Entry, RevocationStore, StoreError, StoreFuture};

/// A revocation log on local disk.
pub struct FileStore {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

crate::opaque_debug!(FileStore);

impl FileStore {
    /// Opens (or creates) the log at `path`, creating its directory with mode 0700.
    pub fn open(path: &Path) -> io::Result<FileStore> {
        let dir = parent(path);
        crate::private_fs::create_dir(&dir)?;
        let existed = path.exists();
        let mut file = open_append(path)?;
        if existed {
            mend_torn_tail(path, &mut file)?;
        } else {
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
    crate::private_fs::options().create(true).append(true).open(path)
}

/// Leaves the log ending in a newline. A last line without one is what a crash mid-write leaves:
/// were it kept as is, the next append would be glued to it and become a bad line in the middle,
/// which stops the next start-up. A whole entry lacking only its newline is ended (it may have
/// been acknowledged); anything else is cut off (it cannot have been: its fsync never returned).
fn mend_torn_tail(path: &Path, file: &mut File) -> io::Result<()> {
    let text = fs::read(path)?;
    if text.is_empty() || text.ends_with(b"\n") {
        return Ok(());
    }
    let start = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if serde_json::from_slice::<Entry>(&text[start..]).is_ok() {
        file.write_all(b"\n")?;
    } else {
        tracing::warn!("cutting off a torn last line in the revocation file (a crash mid-write)");
        file.set_len(start as u64)?;
    }
    file.sync_all()
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
            compact_file(&path, &mut current, now, || Ok(()))
        }))
    }
}

/// Rewrites the log with the entries live at `now`. The handle that wrote the new file becomes the
/// append handle as soon as the rename has happened, before anything else can fail: were it
/// reopened after the directory fsync, a failure in between would leave appends going to the
/// unlinked old file, and logouts acknowledged from then on would vanish at the next start.
/// `after_rename` runs between the rename and the directory fsync (tests make it fail).
fn compact_file(
    path: &Path,
    current: &mut File,
    now: u64,
    after_rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let entries = parse(&fs::read_to_string(path)?, now)?;
    let tmp = path.with_extension("compacting");
    // A leftover from a compaction that crashed; `create_new` below wants the name free (and
    // append mode cannot be combined with truncation).
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut out = crate::private_fs::options().create_new(true).append(true).open(&tmp)?;
    let mut lines = String::new();
    for entry in &entries {
        lines.push_str(&serde_json::to_string(entry).expect("entries serialise"));
        lines.push('\n');
    }
    out.write_all(lines.as_bytes())?;
    out.sync_all()?;
    fs::rename(&tmp, path)?;
    *current = out;
    after_rename()?;
    sync_dir(&parent(path))
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
        let entries = vec![
            Entry::Jti { id: "a".into(), until: NOW + 10, issuer: None, iss: None },
            Entry::Origin { id: "b".into(), until: NOW + 1000, issuer: None, iss: None },
        ];
        store.append(&entries).await.unwrap();
        drop(store);
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.load(NOW).await.unwrap(), entries);
        store.compact(NOW + 100).await.unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
        store.append(&[Entry::Jti { id: "c".into(), until: NOW + 500, issuer: None, iss: None }]).await.unwrap();
        assert_eq!(store.load(NOW + 100).await.unwrap().len(), 2, "appends go to the compacted file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    /// What a decision sees after a restart: the log reopened and loaded, then one check per token.
    async fn after_restart(path: &Path) -> Vec<Result<(), crate::authz::error::Denied>> {
        let store = FileStore::open(path).expect("the log opens after a restart");
        let revocations = crate::revocation::Revocations::new(std::sync::Arc::new(store), false, None);
        revocations.reload(NOW).await.expect("the log loads after a restart");
        ["before", "after", "never"]
            .iter()
            .map(|jti| revocations.check(&crate::revocation::tests::claims(jti, jti, NOW - 60), NOW))
            .collect()
    }

    fn logout(jti: &str) -> Entry {
        Entry::Jti { id: jti.into(), until: NOW + 600, issuer: None, iss: None }
    }

    /// Both logged-out tokens refused; the positive control, a token never logged out, passes.
    fn both_refused_and_a_live_token_passes() -> Vec<Result<(), crate::authz::error::Denied>> {
        let revoked = Err(crate::authz::error::Invalid::Revoked.into());
        vec![revoked, revoked, Ok(())]
    }

    #[tokio::test]
    async fn a_logout_appended_after_a_torn_last_line_is_still_refused_after_a_restart() {
        let path = dir("torn-tail").join("revocations.jsonl");
        let store = FileStore::open(&path).unwrap();
        store.append(&[logout("before")]).await.unwrap();
        drop(store);
        // A crash mid-write: half a line, no newline.
        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(br#"{"kind":"jti","id":"x","un"#).unwrap();
        let store = FileStore::open(&path).unwrap();
        store.append(&[logout("after")]).await.expect("the logout is acknowledged");
        drop(store);
        assert_eq!(after_restart(&path).await, both_refused_and_a_live_token_passes());
    }

    #[tokio::test]
    async fn a_whole_last_entry_without_its_newline_is_kept_and_ended() {
        let path = dir("unended-tail").join("revocations.jsonl");
        let line = serde_json::to_string(&logout("before")).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, line).unwrap();
        let store = FileStore::open(&path).unwrap();
        store.append(&[logout("after")]).await.expect("the logout is acknowledged");
        drop(store);
        assert_eq!(after_restart(&path).await, both_refused_and_a_live_token_passes());
    }

    #[tokio::test]
    async fn a_logout_after_a_compaction_that_failed_past_its_rename_is_still_refused_after_a_restart() {
        let path = dir("compaction-fault").join("revocations.jsonl");
        let store = FileStore::open(&path).unwrap();
        store.append(&[logout("before")]).await.unwrap();
        let failed = {
            let mut current = store.file.lock().unwrap();
            compact_file(&path, &mut current, NOW, || Err(io::Error::other("directory fsync failed")))
        };
        assert!(failed.is_err(), "the injected fault reaches the caller");
        store.append(&[logout("after")]).await.expect("the logout is acknowledged");
        drop(store);
        assert_eq!(after_restart(&path).await, both_refused_and_a_live_token_passes());
    }

    #[test]
    fn a_torn_last_line_is_ignored_but_a_bad_middle_line_is_an_error() {
        let good = r#"{"kind":"jti","id":"a","until":1800000010}"#;
        assert_eq!(parse(&format!("{good}\n{{\"kind\":\"jt"), NOW).unwrap().len(), 1);
        assert!(parse(&format!("{{\"kind\":\"jt\n{good}\n"), NOW).is_err());
    }
}
