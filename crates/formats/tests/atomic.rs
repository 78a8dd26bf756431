//! Atomic writes: nothing left behind on failure, an existing target kept intact.

use std::io;

use hd_formats::atomic::write_atomic;

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("out.txt");
    write_atomic(&p, |w| w.write_all(b"hello")).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"hello");
    assert_eq!(entries(d.path()), ["out.txt"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Not tempfile's private 0600: readable by group/others unless the umask says no.
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_ne!(mode & 0o777, 0o600, "mode {mode:o}");
    }
}

#[test]
fn failure_leaves_nothing_behind() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("out.txt");
    let e = write_atomic(&p, |w| {
        w.write_all(&[b'x'; 100_000])?; // past the buffer, so the temp file has content
        Err(io::Error::other("simulated failure"))
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: cannot write: simulated failure", p.display())
    );
    assert!(entries(d.path()).is_empty(), "{:?}", entries(d.path()));
}

#[test]
fn failure_keeps_existing_target() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("out.txt");
    std::fs::write(&p, b"old").unwrap();
    write_atomic(&p, |w| {
        w.write_all(b"new, half")?;
        Err(io::Error::other("boom"))
    })
    .unwrap_err();
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert_eq!(entries(d.path()), ["out.txt"]);
    // And a successful write replaces it.
    write_atomic(&p, |w| w.write_all(b"new")).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new");
}

#[test]
fn missing_directory_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("no/such/dir/out.txt");
    let e = write_atomic(&p, |w| w.write_all(b"x")).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot create a temporary file beside it: ",
            p.display()
        )),
        "{e}"
    );
    assert_eq!(e.io_kind(), Some(io::ErrorKind::NotFound));
}

#[test]
fn relative_path_without_folder() {
    // "out.txt" has an empty parent; it must mean the current directory.
    let d = tempfile::tempdir().unwrap();
    let old = std::env::current_dir().unwrap();
    std::env::set_current_dir(d.path()).unwrap();
    let r = write_atomic(std::path::Path::new("rel.txt"), |w| w.write_all(b"ok"));
    std::env::set_current_dir(old).unwrap();
    r.unwrap();
    assert_eq!(std::fs::read(d.path().join("rel.txt")).unwrap(), b"ok");
}

// ---------------------------------------------------------------------------------------
// Outputs that are not regular files, outputs that are inputs, all-or-nothing.

use hd_formats::atomic::Outputs;
use std::path::Path;

fn mknod(args: &[&str]) -> bool {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(unix)]
fn file_type(p: &Path) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::symlink_metadata(p).unwrap().file_type();
    match () {
        _ if t.is_symlink() => "symlink",
        _ if t.is_fifo() => "fifo",
        _ if t.is_char_device() => "char device",
        _ if t.is_file() => "file",
        _ => "other",
    }
}

/// A temp file renamed over a device or FIFO replaces it (as root, over
/// `/dev/null`, for the whole machine). A device node made in a temp folder stands in for
/// `/dev/null`, so a regression cannot damage the machine running the test.
#[cfg(unix)]
#[test]
fn device_and_fifo_outputs_are_streamed_not_replaced() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("pipe");
    assert!(mknod(&["mkfifo", fifo.to_str().unwrap()]));
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    write_atomic(&fifo, |w| w.write_all(b"through the pipe")).unwrap();
    assert_eq!(reader.join().unwrap(), b"through the pipe");
    assert_eq!(file_type(&fifo), "fifo");

    // A character device like /dev/null (1, 3); needs root, which is when it matters.
    let null = d.path().join("null");
    if mknod(&["mknod", null.to_str().unwrap(), "c", "1", "3"]) {
        write_atomic(&null, |w| w.write_all(b"discarded")).unwrap();
        assert_eq!(file_type(&null), "char device");
        // Several outputs may all be discarded into one device.
        Outputs::new()
            .output("--out", &null)
            .output("--rows", &null)
            .check()
            .unwrap();
    }
    assert!(
        entries(d.path()).iter().all(|e| !e.ends_with(".tmp")),
        "{:?}",
        entries(d.path())
    );
}

/// A symlink is written through: the link stays, its target changes.
#[cfg(unix)]
#[test]
fn symlink_outputs_are_written_through() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("real")).unwrap();
    let target = d.path().join("real/out.txt");
    std::fs::write(&target, b"old").unwrap();
    let link = d.path().join("link.txt");
    std::os::unix::fs::symlink("real/out.txt", &link).unwrap();
    write_atomic(&link, |w| w.write_all(b"new")).unwrap();
    assert_eq!(file_type(&link), "symlink");
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    // A dangling link creates its target.
    let dangling = d.path().join("dangling.txt");
    std::os::unix::fs::symlink("real/later.txt", &dangling).unwrap();
    write_atomic(&dangling, |w| w.write_all(b"made")).unwrap();
    assert_eq!(file_type(&dangling), "symlink");
    assert_eq!(
        std::fs::read(d.path().join("real/later.txt")).unwrap(),
        b"made"
    );
    assert_eq!(entries(&d.path().join("real")), ["later.txt", "out.txt"]);
}

/// An output that is an input, or two outputs that are one file, is a
/// usage error before any work: by the same spelling, another spelling, a hard link, a
/// symlink, or a file that does not exist yet.
#[test]
fn outputs_may_not_be_inputs_or_each_other() {
    let d = tempfile::tempdir().unwrap();
    let p = |s: &str| d.path().join(s);
    std::fs::write(p("in.csv"), b"id,prompt\n").unwrap();
    std::fs::create_dir(p("sub")).unwrap();
    #[cfg(unix)]
    {
        std::fs::hard_link(p("in.csv"), p("hard.csv")).unwrap();
        std::os::unix::fs::symlink("in.csv", p("soft.csv")).unwrap();
    }
    let cases: Vec<(PathBuf, PathBuf, bool)> = vec![
        // (output, input or other output, is it an input)
        (p("in.csv"), p("in.csv"), true),
        (p("sub/../in.csv"), p("in.csv"), true),
        #[cfg(unix)]
        (p("hard.csv"), p("in.csv"), true),
        #[cfg(unix)]
        (p("soft.csv"), p("in.csv"), true),
        (p("new.csv"), p("./new.csv"), false),
        (p("sub/../new.csv"), p("new.csv"), false),
    ];
    for (out, other, is_input) in cases {
        let set = if is_input {
            Outputs::new()
                .input("--prompts", &other)
                .output("--out", &out)
        } else {
            Outputs::new()
                .output("--out", &other)
                .output("--summary", &out)
        };
        let e = set.check().unwrap_err();
        assert!(e.is_usage(), "{out:?} vs {other:?}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(&out.display().to_string()), "{msg}");
        assert!(
            msg.contains(if is_input { "--prompts" } else { "--out" }),
            "{msg}"
        );
    }
    // Distinct files, and stdin in with stdout out, are fine.
    Outputs::new()
        .input("--prompts", &p("in.csv"))
        .input("--stdin", Path::new("-"))
        .output("--out", Path::new("-"))
        .output("--rows", &p("rows.csv"))
        .check()
        .unwrap();
}

use std::path::PathBuf;

/// When one output of a run fails, none appears and existing files keep
/// their contents.
#[test]
fn a_failed_output_leaves_no_output_of_the_run() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.safetensors");
    let b = d.path().join("b.csv");
    std::fs::write(&b, b"old b").unwrap();
    let mut outs = Outputs::new()
        .output("--out", &a)
        .output("--spectrum", &b)
        .check()
        .unwrap();
    outs.stage(&a, |w| w.write_all(b"a")).unwrap();
    outs.stage(&b, |_| Err(io::Error::other("render failed")))
        .unwrap_err();
    drop(outs);
    assert_eq!(entries(d.path()), ["b.csv"]);
    assert_eq!(std::fs::read(&b).unwrap(), b"old b");

    let mut outs = Outputs::new();
    outs.stage(&a, |w| w.write_all(b"a")).unwrap();
    outs.stage(&b, |w| w.write_all(b"b")).unwrap();
    // Staged but not committed: only hidden temporaries exist.
    assert!(!a.exists());
    outs.commit().unwrap();
    assert_eq!(entries(d.path()), ["a.safetensors", "b.csv"]);
}

/// An output folder is created when its first file is staged, and removed again when the
/// run fails before committing: a failed run leaves no empty folder behind.
#[test]
fn an_output_folder_appears_only_with_its_files() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("new/out");
    let names = ["a.csv", "b.csv"];
    // Checked but nothing staged (a failure found after the model loads): no folder.
    let outs = Outputs::new()
        .output_in_dir("--out-dir", &dir, &names)
        .check()
        .unwrap();
    drop(outs);
    assert!(!d.path().join("new").exists());
    // One file staged, then a failure: the folder goes again, with its temporary file.
    let mut outs = Outputs::new()
        .output_in_dir("--out-dir", &dir, &names)
        .check()
        .unwrap();
    outs.stage(&dir.join("a.csv"), |w| w.write_all(b"a"))
        .unwrap();
    drop(outs);
    assert!(!d.path().join("new").exists());
    // A committed run keeps it.
    let mut outs = Outputs::new()
        .output_in_dir("--out-dir", &dir, &names)
        .check()
        .unwrap();
    for n in names {
        outs.stage(&dir.join(n), |w| w.write_all(b"x")).unwrap();
    }
    outs.commit().unwrap();
    assert_eq!(entries(&dir), ["a.csv", "b.csv"]);
    // An existing folder is never removed by a failed run.
    let outs = Outputs::new()
        .output_in_dir("--out-dir", &dir, &names)
        .check()
        .unwrap();
    drop(outs);
    assert_eq!(entries(&dir), ["a.csv", "b.csv"]);
}

#[test]
fn an_output_folder_may_not_hold_an_input_or_be_stdout_or_a_file() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("classify");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("layers.csv"), b"x").unwrap();
    let e = Outputs::new()
        .input("--rows", &dir.join("layers.csv"))
        .output_in_dir("--out-dir", &dir, &["components.csv", "layers.csv"])
        .check()
        .unwrap_err();
    assert!(e.is_usage());
    assert!(e.to_string().contains("is the same file as --rows"), "{e}");
    let e = Outputs::new()
        .output_in_dir("--out-dir", Path::new("-"), &["a.csv"])
        .check()
        .unwrap_err();
    assert!(e.is_usage());
    assert_eq!(
        e.to_string(),
        "--out-dir -: an output folder cannot be stdout; give a folder path"
    );
    let e = Outputs::new()
        .output_in_dir("--out", &dir.join("layers.csv"), &["a.csv"])
        .check()
        .unwrap_err();
    assert!(e.is_usage());
    assert!(
        e.to_string()
            .ends_with("layers.csv: exists and is not a folder"),
        "{e}"
    );
    assert_eq!(entries(&dir), ["layers.csv"]);
}

#[test]
fn two_inputs_from_stdin_are_a_usage_error() {
    let e = Outputs::new()
        .input("--acts", Path::new("-"))
        .input("--components", Path::new("-"))
        .check()
        .unwrap_err();
    assert!(e.is_usage());
    assert_eq!(
        e.to_string(),
        "--acts - and --components -: both would read stdin, which holds one input; give one of them a file path"
    );
}
