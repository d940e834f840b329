//! Files only this process's user may read: the revocation log and the dev signing key and users.
//! One place for the modes, so no caller can forget one.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `dir` and its parents, the new ones with mode 0700.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Options that create files with mode 0600; the caller adds how it opens them.
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}
