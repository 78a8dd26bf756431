//! Atomic output files.
//!
//! Make treats an existing target as done, so a half-written file left by a crash or a
//! Ctrl-C would silently poison later runs. Every output therefore goes to a temporary file
//! in the destination folder (same filesystem, so the final rename is atomic), is fsynced,
//! and only then renamed over the destination.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::Error;

/// The label used in messages for a path: `<stdout>` for `-`, else the path as given.
pub(crate) fn out_label(path: &Path) -> String {
    if is_dash(path) {
        "<stdout>".to_string()
    } else {
        path.display().to_string()
    }
}

/// The label used in messages for a path: `<stdin>` for `-`, else the path as given.
pub(crate) fn in_label(path: &Path) -> String {
    if is_dash(path) {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

pub(crate) fn is_dash(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Checks, before any long computation, that `path` can later be written: its folder exists
/// and a file can be created there. `-` (stdout) always passes.
pub fn check_writable(path: &Path) -> Result<(), Error> {
    if is_dash(path) {
        return Ok(());
    }
    let label = path.display().to_string();
    if path.file_name().is_none() {
        return Err(Error::invalid(&label, "output path has no file name"));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".hd-probe")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| Error::io(&label, "cannot write beside it", e))
}

/// Writes via a temp file in the destination folder, fsync, rename. "-" means stdout (no
/// atomicity needed). On error no file is left behind, and an existing destination is
/// untouched.
///
/// The closure gets a buffered writer; it need not flush. The temporary file is named
/// `.<name>.<random>.tmp`, so it is hidden and matches no make pattern for the real output.
/// New files get the usual permissions (0666 minus the umask), not tempfile's private 0600.
pub fn write_atomic(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), Error> {
    if is_dash(path) {
        let label = out_label(path);
        let stdout = io::stdout();
        let mut w = BufWriter::new(stdout.lock());
        f(&mut w).map_err(|e| Error::io(&label, "cannot write", e))?;
        return w.flush().map_err(|e| Error::io(&label, "cannot write", e));
    }

    let label = path.display().to_string();
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid(&label, "output path has no file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!(".{}.", file_name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder
        .tempfile_in(dir)
        .map_err(|e| Error::io(&label, "cannot create a temporary file beside it", e))?;

    // From here on, any early return drops `tmp`, which deletes the temporary file.
    let mut w = BufWriter::new(tmp);
    f(&mut w).map_err(|e| Error::io(&label, "cannot write", e))?;
    let tmp = w
        .into_inner()
        .map_err(|e| Error::io(&label, "cannot write", e.into_error()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(&label, "cannot sync", e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(&label, "cannot rename the temporary file onto it", e.error))?;

    // Make the rename itself durable; failure here loses nothing already visible, and some
    // filesystems refuse to fsync a directory, so it is not an error.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
