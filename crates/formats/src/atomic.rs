//! Atomic output files.
//!
//! Make treats an existing target as done, so a half-written file left by a crash or a
//! Ctrl-C would silently poison later runs. Every output therefore goes to a temporary file
//! in the destination folder (same filesystem, so the final rename is atomic), is fsynced,
//! and only then renamed over the destination.
//!
//! A run with several outputs collects them in an [`Outputs`] set: it refuses, before any
//! work, an output that is also an input or two outputs that are one file; it stages every
//! output to a temporary file; and it renames them only when all are ready, so a failed run
//! leaves none of them. A destination that is not a regular file (`-`, `/dev/null`, a FIFO)
//! is streamed into as it is, never renamed over: renaming a temporary file over
//! `/dev/null` would replace the device for the whole machine. A symlink is written through
//! (its target is replaced, the link stays).
//!
//! Temporary paths are registered while they exist, so a SIGINT/SIGTERM handler (hd-cli
//! installs one) can remove them with [`remove_temps`] before the process dies.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
/// and a file can be created there. `-` (stdout) and existing non-regular files (written in
/// place) always pass; for a symlink, the folder of its target is probed.
pub fn check_writable(path: &Path) -> Result<(), Error> {
    let target = match dest(path)? {
        Dest::Stdout | Dest::Stream(_) => return Ok(()),
        Dest::Replace(p) => p,
    };
    let label = path.display().to_string();
    if target.file_name().is_none() {
        return Err(Error::invalid(&label, "output path has no file name"));
    }
    tempfile::Builder::new()
        .prefix(".hd-probe")
        .tempfile_in(parent_dir(&target))
        .map(drop)
        .map_err(|e| Error::io(&label, "cannot write beside it", e))
}

// ---------------------------------------------------------------------------------------
// Temporary paths to remove on a signal.

static TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Keeps `path` on the list [`remove_temps`] deletes until dropped. Register temporary files
/// and folders that must not outlive an interrupted run.
#[derive(Debug)]
#[must_use = "the path is unregistered when the guard is dropped"]
pub struct TempGuard(PathBuf);

/// Registers a temporary file or folder for [`remove_temps`].
pub fn register_temp(path: &Path) -> TempGuard {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    TEMPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.clone());
    TempGuard(path)
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        let mut v = TEMPS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = v.iter().rposition(|p| *p == self.0) {
            v.swap_remove(i);
        }
    }
}

/// Deletes every registered temporary file and folder (for a signal handler; the process is
/// about to die, so errors are ignored). Returns how many paths were registered.
pub fn remove_temps() -> usize {
    let v = TEMPS.lock().unwrap_or_else(|e| e.into_inner());
    for p in v.iter() {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir_all(p);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(p);
            }
            Err(_) => {}
        }
    }
    v.len()
}

// ---------------------------------------------------------------------------------------
// Where an output really goes.

/// How an output path is written.
enum Dest {
    /// stdout.
    Stdout,
    /// An existing file that is not a regular file (device, FIFO, socket): opened and
    /// written in place.
    Stream(PathBuf),
    /// A regular file (existing or not), after following symlinks: temp beside it + rename.
    Replace(PathBuf),
}

/// Follows symlinks (also dangling ones, whose target does not exist yet) to the path that
/// is really written.
fn follow_links(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(t) => {
                p = match p.parent() {
                    Some(dir) if t.is_relative() => dir.join(t),
                    _ => t,
                }
            }
            Err(_) => break,
        }
    }
    p
}

fn dest(path: &Path) -> Result<Dest, Error> {
    if is_dash(path) {
        return Ok(Dest::Stdout);
    }
    let label = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::invalid(&label, "is a folder, expected a file")),
        Ok(m) if !m.is_file() => Ok(Dest::Stream(path.to_path_buf())),
        _ => Ok(Dest::Replace(follow_links(path))),
    }
}

/// What identifies a file: device and inode when it exists, else its absolute path with the
/// folder's symlinks resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileId {
    Stdio,
    #[cfg(unix)]
    Inode(u64, u64),
    Path(PathBuf),
}

fn file_id(path: &Path) -> FileId {
    if is_dash(path) {
        return FileId::Stdio;
    }
    #[cfg(unix)]
    if let Ok(m) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        return FileId::Inode(m.dev(), m.ino());
    }
    let p = follow_links(path);
    if let Ok(c) = std::fs::canonicalize(&p) {
        return FileId::Path(c);
    }
    let abs = std::path::absolute(&p).unwrap_or(p);
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => FileId::Path(
            std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .join(name),
        ),
        _ => FileId::Path(abs),
    }
}

/// True for a character device such as `/dev/null`: several outputs may all be discarded.
fn is_char_device(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

// ---------------------------------------------------------------------------------------
// The output set of one run.

enum Staged {
    /// Already streamed (stdout, a device, a FIFO).
    Done,
    /// Complete in a temporary file, renamed onto `dest` at commit.
    Temp {
        tmp: tempfile::TempPath,
        dest: PathBuf,
        label: String,
        _guard: TempGuard,
    },
}

/// Every output of one run (see the module docs): checked against the inputs and each other
/// before the work, staged while it runs, committed together at the end. Dropping the set
/// without [`Outputs::commit`] deletes every staged temporary file.
#[derive(Default)]
pub struct Outputs {
    inputs: Vec<(String, PathBuf)>,
    outputs: Vec<(String, PathBuf)>,
    dirs: Vec<(String, PathBuf)>,
    staged: Vec<Staged>,
    /// A declaration refused before [`Outputs::check`] (reported by it).
    refused: Option<Error>,
    /// Output folders declared by [`Outputs::output_in_dir`]: created when staged into.
    new_dirs: Vec<PathBuf>,
    /// Folders this run created for its outputs: removed again unless committed.
    created: Vec<(PathBuf, TempGuard)>,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("dirs", &self.dirs)
            .field("staged", &self.staged.len())
            .finish()
    }
}

impl Outputs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an input; `what` names it in messages (e.g. `--prompts`).
    pub fn input(mut self, what: &str, path: &Path) -> Self {
        self.inputs.push((what.to_string(), path.to_path_buf()));
        self
    }

    /// Declares an output; `what` names it in messages (e.g. `--out`).
    pub fn output(mut self, what: &str, path: &Path) -> Self {
        self.outputs.push((what.to_string(), path.to_path_buf()));
        self
    }

    /// Declares an output folder (written by its own staging, e.g. a model export): checked
    /// against the inputs and other outputs like a file, but not probed for writing.
    pub fn output_dir(mut self, what: &str, path: &Path) -> Self {
        self.dirs.push((what.to_string(), path.to_path_buf()));
        self
    }

    /// Declares the files `names` inside an output folder (`what`, e.g. `--out-dir`): each
    /// is checked like an output file (an input inside the folder with one of these names
    /// is refused). The folder need not exist: it is created when the first file is staged,
    /// so a run that fails before writing leaves no folder behind. `-` is refused: a folder
    /// cannot be stdout.
    pub fn output_in_dir(mut self, what: &str, dir: &Path, names: &[&str]) -> Self {
        if is_dash(dir) {
            self.refused.get_or_insert(Error::usage(format!(
                "{what} -: an output folder cannot be stdout; give a folder path"
            )));
            return self;
        }
        if dir.exists() && !dir.is_dir() {
            self.refused.get_or_insert(Error::usage(format!(
                "{what} {}: exists and is not a folder",
                dir.display()
            )));
            return self;
        }
        for n in names {
            self.outputs.push((what.to_string(), dir.join(n)));
        }
        self.new_dirs.push(dir.to_path_buf());
        self
    }

    /// True when `path` goes into a folder declared with [`Outputs::output_in_dir`].
    fn in_new_dir(&self, path: &Path) -> bool {
        let parent = parent_dir(path);
        self.new_dirs.iter().any(|d| d == parent)
    }

    /// [`Outputs::input`] for an optional path.
    pub fn input_opt(self, what: &str, path: Option<&Path>) -> Self {
        match path {
            Some(p) => self.input(what, p),
            None => self,
        }
    }

    /// [`Outputs::output`] for an optional path.
    pub fn output_opt(self, what: &str, path: Option<&Path>) -> Self {
        match path {
            Some(p) => self.output(what, p),
            None => self,
        }
    }

    /// Before any work: no output is an input, no two outputs are one file (a usage error,
    /// [`Error::is_usage`]), and every output can be created ([`check_writable`]).
    pub fn check(mut self) -> Result<Self, Error> {
        if let Some(e) = self.refused.take() {
            return Err(e);
        }
        let stdin: Vec<&str> = self
            .inputs
            .iter()
            .filter(|(_, p)| is_dash(p))
            .map(|(w, _)| w.as_str())
            .collect();
        if let [a, b, ..] = stdin[..] {
            return Err(Error::usage(format!(
                "{a} - and {b} -: both would read stdin, which holds one input; give one of \
                 them a file path"
            )));
        }
        let outs: Vec<(FileId, &(String, PathBuf))> = self
            .outputs
            .iter()
            .chain(&self.dirs)
            .map(|o| (file_id(&o.1), o))
            .collect();
        for (i, (id, (what, path))) in outs.iter().enumerate() {
            for (iid, (iwhat, ipath)) in self.inputs.iter().map(|x| (file_id(&x.1), x)) {
                // `-` as an input is stdin and as an output stdout: not the same stream.
                if *id == iid && *id != FileId::Stdio {
                    return Err(Error::usage(format!(
                        "{what} {} is the same file as {iwhat} {}: writing it would destroy \
                         the input; choose another output path",
                        path.display(),
                        ipath.display()
                    )));
                }
            }
            for (id2, (what2, path2)) in &outs[..i] {
                if id == id2 && !is_char_device(path) {
                    return Err(Error::usage(format!(
                        "{what} {} and {what2} {} are the same file; give each output its own \
                         path",
                        path.display(),
                        path2.display()
                    )));
                }
            }
        }
        for (_, p) in &self.outputs {
            if matches!(dest(p)?, Dest::Stream(_)) {
                continue;
            }
            if self.in_new_dir(p) {
                check_writable_or_creatable(p)?;
            } else {
                check_writable(p)?;
            }
        }
        Ok(self)
    }

    /// Writes one output: streamed now when `path` is `-` or not a regular file, else into a
    /// temporary file beside it (beside the symlink's target for a symlink) that
    /// [`Outputs::commit`] renames into place.
    pub fn stage(
        &mut self,
        path: &Path,
        f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), Error> {
        if self.in_new_dir(path) && std::fs::metadata(path).is_err() {
            self.create_parent(path)?;
        }
        let staged = stage(path, f)?;
        self.staged.push(staged);
        Ok(())
    }

    /// Creates the missing folders above an output, remembering the top-most one created
    /// (removed again if the run fails or is interrupted before [`Outputs::commit`]).
    fn create_parent(&mut self, path: &Path) -> Result<(), Error> {
        let parent = parent_dir(&follow_links(path)).to_path_buf();
        if parent.is_dir() {
            return Ok(());
        }
        let mut top = parent.clone();
        while let Some(up) = top
            .parent()
            .filter(|u| !u.as_os_str().is_empty() && !u.exists())
        {
            top = up.to_path_buf();
        }
        let label = parent.display().to_string();
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io(&label, "cannot create the output folder", e))?;
        let guard = register_temp(&top);
        self.created.push((top, guard));
        Ok(())
    }

    /// Renames every staged output into place, in the order staged.
    pub fn commit(mut self) -> Result<(), Error> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        // The folders created for the outputs now hold them: keep them.
        let created = std::mem::take(&mut self.created);
        for s in std::mem::take(&mut self.staged) {
            if let Staged::Temp {
                tmp,
                dest,
                label,
                _guard,
            } = s
            {
                tmp.persist(&dest).map_err(|e| {
                    Error::io(&label, "cannot rename the temporary file onto it", e.error)
                })?;
                let dir = parent_dir(&dest).to_path_buf();
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        // Make the renames durable; failure here loses nothing already visible, and some
        // filesystems refuse to fsync a folder, so it is not an error.
        #[cfg(unix)]
        for d in dirs {
            if let Ok(d) = std::fs::File::open(d) {
                let _ = d.sync_all();
            }
        }
        drop(created);
        Ok(())
    }
}

impl Drop for Outputs {
    /// An uncommitted set (a failed run): its temporary files go, then the folders it
    /// created for them, which hold nothing else.
    fn drop(&mut self) {
        self.staged.clear();
        for (dir, _guard) in self.created.drain(..).rev() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// [`check_writable`], or, when the output's folder does not exist yet, that the nearest
/// existing folder above it is one where folders can be created.
fn check_writable_or_creatable(path: &Path) -> Result<(), Error> {
    let target = follow_links(path);
    let parent = parent_dir(&target);
    if parent.exists() {
        return check_writable(path);
    }
    let label = path.display().to_string();
    let mut up = parent;
    while !up.exists() {
        up = match up.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    if !up.is_dir() {
        return Err(Error::invalid(
            &label,
            format!("cannot create its folder: {} is not a folder", up.display()),
        ));
    }
    tempfile::Builder::new()
        .prefix(".hd-probe")
        .tempdir_in(up)
        .map(drop)
        .map_err(|e| Error::io(&label, "cannot create its folder", e))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn stage(path: &Path, f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<Staged, Error> {
    let label = out_label(path);
    let target = match dest(path)? {
        Dest::Stdout => {
            let stdout = io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            f(&mut w).map_err(|e| Error::io(&label, "cannot write", e))?;
            w.flush()
                .map_err(|e| Error::io(&label, "cannot write", e))?;
            return Ok(Staged::Done);
        }
        Dest::Stream(p) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| Error::io(&label, "cannot open for writing", e))?;
            let mut w = BufWriter::new(file);
            f(&mut w).map_err(|e| Error::io(&label, "cannot write", e))?;
            w.flush()
                .map_err(|e| Error::io(&label, "cannot write", e))?;
            return Ok(Staged::Done);
        }
        Dest::Replace(p) => p,
    };
    let file_name = target
        .file_name()
        .ok_or_else(|| Error::invalid(&label, "output path has no file name"))?;
    let dir = parent_dir(&target);
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
    let guard = register_temp(tmp.path());

    // From here on, any early return drops `tmp`, which deletes the temporary file.
    let mut w = BufWriter::new(tmp);
    f(&mut w).map_err(|e| Error::io(&label, "cannot write", e))?;
    let tmp = w
        .into_inner()
        .map_err(|e| Error::io(&label, "cannot write", e.into_error()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(&label, "cannot sync", e))?;
    Ok(Staged::Temp {
        tmp: tmp.into_temp_path(),
        dest: target,
        label,
        _guard: guard,
    })
}

/// Writes one output on its own: via a temp file in the destination folder, fsync, rename;
/// `-`, devices and FIFOs are streamed in place (see the module docs). On error no file is
/// left behind, and an existing destination is untouched.
///
/// The closure gets a buffered writer; it need not flush. The temporary file is named
/// `.<name>.<random>.tmp`, so it is hidden and matches no make pattern for the real output.
/// New files get the usual permissions (0666 minus the umask), not tempfile's private 0600.
pub fn write_atomic(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), Error> {
    let mut o = Outputs::new();
    o.stage(path, f)?;
    o.commit()
}
