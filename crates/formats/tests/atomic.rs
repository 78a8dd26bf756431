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
